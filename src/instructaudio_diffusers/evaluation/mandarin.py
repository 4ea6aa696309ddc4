"""Mandarin intelligibility: character error rate (CER) and toneless pinyin syllable error rate of Whisper
base transcripts.

Whisper base often writes Mandarin in traditional characters (這/这, 們/们, 會議/会议), which a plain CER counts
as errors although the words are right, so the transcript is first converted to simplified characters with
OpenCC (`t2s`, the maintained converter of the OpenCC project, phrase-aware: 會議 -> 会议). Then both sides
get the same normalization: speaker/lyrics tags and overrides removed, `normalize_chinese` (the processor's
own reading: numbers, dates, times and percentages in characters, punctuation reduced to pause marks), and
everything but Han characters dropped (a Latin word Whisper writes counts as one unit).

- **CER**: jiwer's character alignment of the two normalized strings.
- **Pinyin syllable error rate**: pypinyin's toneless reading (`Style.NORMAL`, the same call on both sides)
  aligned syllable by syllable. It forgives homophones (他/她, 在/再, a wrong but same-sounding character),
  which says whether the *speech* was right even where Whisper's choice of characters was not; tones are
  dropped because Whisper base is not reliable enough on them to judge a synthesizer's tones.
"""

from __future__ import annotations

import functools
import re
import warnings

from ..processing.chinese_normalizer import normalize_chinese
from ._optional import import_opencc
from .asr import WordErrors, align_units, strip_markup

_KEEP = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff0-9]")
_LATIN_OR_OTHER = re.compile(r"([A-Za-z]+(?:'[A-Za-z]+)*)|([^A-Za-z]+)")


@functools.lru_cache(maxsize=1)
def _to_simplified():
    return import_opencc().OpenCC("t2s").convert


def to_simplified(text: str) -> str:
    """Traditional characters (and phrases) to simplified ones; simplified text passes unchanged."""
    return _to_simplified()(text)


def cer_units(text: str) -> list[str]:
    """What a CER counts in `text`: each Han character, and each Latin word as one unit (lower case).

    Whisper sometimes writes a Latin word for Mandarin it cannot place; `normalize_chinese` reads Chinese runs
    only, so Latin words are split off first and count as one (wrong) unit each, not one per letter.
    """
    units: list[str] = []
    for latin, other in _LATIN_OR_OTHER.findall(to_simplified(strip_markup(text))):
        if latin:
            units.append(latin.lower())
            continue
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # characters without a reading are dropped, as intended
            units.extend(_KEEP.findall(normalize_chinese(other)) if other.strip() else [])
    return units


def normalize_for_cer(text: str) -> str:
    """`cer_units` joined: the characters of `text` as scored (see the module docstring)."""
    return "".join(cer_units(text))


def pinyin_syllables(units: list[str]) -> list[str]:
    """Toneless pinyin of `cer_units`: each Han character's syllable (pypinyin reads them in context); a
    Latin word stays one unit, so it counts as a wrong syllable rather than vanishing."""
    from pypinyin import Style, lazy_pinyin

    syllables: list[str] = []
    run: list[str] = []
    for unit in [*units, None]:
        if unit is not None and not unit.isascii():
            run.append(unit)
            continue
        if run:
            syllables += [s for s in lazy_pinyin("".join(run), style=Style.NORMAL, errors="ignore") if s]
            run = []
        if unit is not None:
            syllables.append(unit)
    return syllables


def character_errors(reference: str, hypothesis: str) -> WordErrors:
    """Character alignment of two Mandarin texts after `normalize_for_cer` (units: characters)."""
    return align_units(cer_units(reference), cer_units(hypothesis))


def syllable_errors(reference: str, hypothesis: str) -> WordErrors:
    """Toneless pinyin syllable alignment of two Mandarin texts (units: syllables)."""
    return align_units(pinyin_syllables(cer_units(reference)), pinyin_syllables(cer_units(hypothesis)))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of one utterance (0 = perfect; can exceed 1 with insertions)."""
    return character_errors(reference, hypothesis).wer
