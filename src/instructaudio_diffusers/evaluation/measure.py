"""Everything measured on one clip, generated or ground truth, by the same code: features, ASR, MCD.

`Measurer.measure` returns the clip's measurement dict:

- `features`: `ClipAnalyzer.measure` (F0, level, phones/s, dialogue turns; tempo, key, timbre for music);
- `asr` (English speech/dialogue): `{"tiny.en": ..., "base": ...}`, each the Whisper transcript with its word
  alignment counts (`WordErrors.to_dict`) and `wer`;
- `asr` (Mandarin speech/dialogue): `{"base": {"hypothesis", "cer": counts, "pinyin": counts}}`;
- `mcd_db` (Mandarin speech): MCD against espeak-ng (`mcd`), or `mcd_skipped` with the reason.

Measurements of ground-truth references do not change between runs, so `ReferenceCache` keeps them in a JSON
lines file keyed by the audio file (path, size, modification time), the text and `MEASUREMENT_VERSION`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from .analysis import ClipAnalyzer
from .asr import WhisperTranscriber, word_errors
from .mandarin import character_errors, syllable_errors
from .mcd import mel_cepstral_distortion, render_espeak_pinyin

logger = logging.getLogger(__name__)

#: Bump when a measurement changes, so cached reference measurements are redone.
MEASUREMENT_VERSION = 3
#: Bump when only the transcription changes: cached and resumed measurements then redo their `asr` entry
#: alone, from the audio, instead of everything.
ASR_VERSION = 2
ENGLISH_ASR_MODELS = ("tiny.en", "base")


def wants_english_asr(task: str, language: str) -> bool:
    return language == "en" and task in ("speech", "dialogue")


def wants_mandarin_asr(task: str, language: str) -> bool:
    return language == "zh" and task in ("speech", "dialogue")


class Measurer:
    """Shared measuring tools for one run: the clip analyzer and, on first need, the Whisper models.

    Args:
        asr: transcribe speech (English WER, Mandarin CER); False skips every Whisper model.
        compute_type: CTranslate2 compute type of both Whisper models.
    """

    def __init__(self, asr: bool = True, compute_type: str = "int8") -> None:
        self.analyzer = ClipAnalyzer()
        self.asr = asr
        self.compute_type = compute_type
        self._transcribers: dict[tuple[str, str], WhisperTranscriber] = {}

    def transcriber(self, model: str, language: str) -> WhisperTranscriber:
        key = (model, language)
        if key not in self._transcribers:
            # One CTranslate2 model per (model, language); the base model is small enough to hold twice.
            self._transcribers[key] = WhisperTranscriber(
                compute_type=self.compute_type, model=model, language=language
            )
        return self._transcribers[key]

    def load_asr(self, english: bool, mandarin: bool) -> None:
        """Load the needed Whisper models now: a missing wheel should stop the run before generation."""
        if not self.asr:
            return
        if english:
            for model in ENGLISH_ASR_MODELS:
                self.transcriber(model, "en")
        if mandarin:
            self.transcriber("base", "zh")

    def intelligibility(self, audio: np.ndarray, sampling_rate: int, task: str, language: str, text: str):
        """The `asr` entry of a measurement (module docstring), or None when the clip gets no ASR."""
        if not self.asr:
            return None
        if wants_english_asr(task, language):
            results = {}
            for model in ENGLISH_ASR_MODELS:
                hypothesis = self.transcriber(model, "en").transcribe(audio, sampling_rate)
                errors = word_errors(text, hypothesis)
                results[model] = {"hypothesis": hypothesis, **errors.to_dict(), "wer": errors.wer}
            return results
        if wants_mandarin_asr(task, language):
            hypothesis = self.transcriber("base", "zh").transcribe(audio, sampling_rate)
            characters, syllables = character_errors(text, hypothesis), syllable_errors(text, hypothesis)
            return {"base": {"hypothesis": hypothesis,
                             "cer": {**characters.to_dict(), "rate": characters.wer},
                             "pinyin": {**syllables.to_dict(), "rate": syllables.wer}}}  # fmt: skip
        return None

    def measure(
        self, audio: np.ndarray, sampling_rate: int, task: str, language: str, text: str, gender: str | None
    ) -> dict[str, Any]:
        """Measurement dict of one clip (module docstring)."""
        measured: dict[str, Any] = {"features": self.analyzer.measure(audio, sampling_rate, task, text)}
        self.refresh_asr(measured, audio, sampling_rate, task, language, text)
        if task == "speech" and language == "zh":
            # A text espeak-ng's pinyin voice cannot read (Latin letters) has no reference: skip, not fail.
            try:
                measured["mcd_db"] = self.mcd(audio, sampling_rate, text, gender)
            except ValueError as err:
                measured["mcd_skipped"] = str(err)
        return measured

    def refresh_asr(
        self,
        measured: dict[str, Any],
        audio: np.ndarray,
        sampling_rate: int,
        task: str,
        language: str,
        text: str,
    ) -> None:
        """Set (or redo) the `asr` entry of a measurement dict, stamped with `ASR_VERSION`."""
        asr = self.intelligibility(audio, sampling_rate, task, language, text)
        measured.pop("asr", None)
        if asr is not None:
            measured["asr"], measured["asr_version"] = asr, ASR_VERSION

    @staticmethod
    def needs_asr_refresh(measured: dict[str, Any]) -> bool:
        return "asr" in measured and measured.get("asr_version") != ASR_VERSION

    @staticmethod
    def mcd(audio: np.ndarray, sampling_rate: int, text: str, gender: str | None) -> float:
        """MCD in dB of a Mandarin clip against espeak-ng reading the same text (`mcd`)."""
        reference, reference_sr = render_espeak_pinyin(text, gender)
        return mel_cepstral_distortion(reference, reference_sr, audio, sampling_rate)


class ReferenceCache:
    """Reference measurements on disk (JSON lines), so ground truth is measured once, not on every run."""

    def __init__(self, path: str, asr: bool) -> None:
        self.path, self.asr = path, asr
        self._entries: dict[str, dict[str, Any]] = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a killed run
                    self._entries[entry["key"]] = entry["measured"]

    def key(self, audio_path: str, task: str, language: str, text: str, gender: str | None) -> str:
        stat = os.stat(audio_path)
        return json.dumps([audio_path, stat.st_size, stat.st_mtime_ns, task, language, text, gender,
                           MEASUREMENT_VERSION, self.asr])  # fmt: skip

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, key: str, measured: dict[str, Any]) -> None:
        self._entries[key] = measured
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "measured": measured}, ensure_ascii=False) + "\n")
