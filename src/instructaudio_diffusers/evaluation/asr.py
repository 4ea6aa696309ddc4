"""Intelligibility: word error rates against offline Whisper transcripts (faster-whisper / CTranslate2).

Two Whisper models, both loaded from installed wheels (`whisper_models`): tiny.en (English only) and the
multilingual base model, which gives a second English WER column and the Mandarin CER (`mandarin`).

Both sides of a WER are normalized the same way, with the package's own English normalizer, so that
"Dr. Smith paid $5" and "doctor smith paid five dollars", or "3:30" and "three thirty", count as equal:
markup (speaker/lyrics tags, pronunciation overrides) removed -> `normalize_english` (numbers, times,
currencies, abbreviations, case) -> pause marks dropped -> hyphenated words split ("twenty-one" matches
Whisper's "twenty one"). The alignment itself is jiwer's, which also gives the substitution / deletion /
insertion breakdown: a WER above 100 % is insertions, e.g. a model that babbles longer than the text.

Whisper itself is kept from writing digits and currency signs in English (those tokens are suppressed while
decoding, as WhisperX's `suppress_numerals` does): left alone it writes a spoken "three thirty" as "3.30",
"330" or "$330", which no text normalizer can map back reliably, and on flite speech that alone cost 2-4
points of WER. Spelled out, its numbers meet the spoken-form reference word for word.

Decoding is beam search (5) at temperature 0 only, with at most `MAX_TOKENS_PER_S` tokens per second of
audio: without that cap, babble or a long pause sends Whisper into repetition loops whose temperature
fallbacks cost ~10x the time of a normal clip (measured: 24 s against 3 s for one Mandarin clip).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.io import resample
from ..processing.english import normalize_english
from ._optional import import_jiwer, import_optional
from .whisper_models import tiny_en_path
from .whisper_models import whisper_model_path as whisper_model_path_of

WHISPER_SAMPLING_RATE = 16000
#: Decoding cap: read speech is 2-4 words (English) or ~4-5 syllables (Mandarin) per second, ~1-2 tokens each.
MAX_TOKENS_PER_S = 12
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


@dataclass(frozen=True)
class WordErrors:
    """Alignment counts of one utterance (words, or characters / syllables for Mandarin); sum these over a set
    for a corpus rate."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference unit; an empty reference scores 0 when the hypothesis is empty too, else 1."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_words

    def to_dict(self) -> dict[str, int]:
        return {"substitutions": self.substitutions, "deletions": self.deletions, "insertions": self.insertions,
                "errors": self.errors, "reference_words": self.reference_words}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordErrors:
        return cls(data["substitutions"], data["deletions"], data["insertions"], data["reference_words"])


def align_units(reference: list[str], hypothesis: list[str]) -> WordErrors:
    """jiwer's alignment of two token sequences (words, characters or syllables; no token has a space)."""
    if not reference:
        return WordErrors(0, 0, len(hypothesis), 0)
    if not hypothesis:
        return WordErrors(0, len(reference), 0, len(reference))
    output = import_jiwer().process_words(" ".join(reference), " ".join(hypothesis))
    return WordErrors(output.substitutions, output.deletions, output.insertions, len(reference))


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Normalize both texts and align the words of `hypothesis` with those of `reference`."""
    return align_units(normalize_for_wer(reference), normalize_for_wer(hypothesis))


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
    """Folder of Whisper tiny.en (kept for callers that test for the English weights), or None."""
    return tiny_en_path()


class WhisperTranscriber:
    """Offline ASR with faster-whisper on CPU.

    Args:
        model_path: A CTranslate2 Whisper folder; defaults to the folder of `model`.
        compute_type: CTranslate2 compute type; `int8` is ~2x faster than `float32` on CPU at equal WER
            on clean synthetic speech.
        beam_size: Whisper's default (5).
        cpu_threads: 0 lets CTranslate2 decide.
        spell_numbers: Suppress digit and currency tokens so numbers come out as words (module docstring);
            only for English.
        model: `tiny.en` (English only) or `base` (multilingual).
        language: `en` or `zh`; tiny.en knows English only.
    """

    def __init__(
        self,
        model_path: str | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int = 0,
        spell_numbers: bool = True,
        model: str = "tiny.en",
        language: str = "en",
    ) -> None:
        faster_whisper = import_optional("faster_whisper", "Word and character error rates (Whisper ASR)")
        if model == "tiny.en" and language != "en":
            raise ValueError("Whisper tiny.en transcribes English only; use model='base' for Mandarin.")
        self.model_path = model_path or whisper_model_path_of(model)
        self.model_name, self.language, self.beam_size = model, language, beam_size
        self._model: Any = faster_whisper.WhisperModel(
            self.model_path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
        )
        # -1 is faster-whisper's default set (Whisper's non-speech symbols); numeral tokens are added to it.
        spell = spell_numbers and language == "en"
        self._suppress_tokens = [-1] + (self._numeral_token_ids() if spell else [])

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
        seconds = audio.size / WHISPER_SAMPLING_RATE
        segments, _ = self._model.transcribe(
            audio.astype(np.float32, copy=False),
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            # Each clip is one utterance: no context carry-over, no VAD cutting, no timestamps needed.
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
            suppress_tokens=self._suppress_tokens,
            max_new_tokens=int(MAX_TOKENS_PER_S * seconds) + 8,
            # Every clip here is meant to be speech: a transcript Whisper doubts is still its best reading,
            # not silence (with the default threshold, 3 of 20 Mandarin ground-truth clips came back empty).
            no_speech_threshold=None,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()
