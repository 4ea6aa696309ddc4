"""Markup parsing and language-run splitting for instruction-audio text.

The processor's input is plain text with three kinds of markup:

- bracket tags: speaker tags `[S0]`..`[S<n-1>]` and lyrics structure tags (`[verse]`, `[Chorus 2]`, ...);
- pronunciation overrides in braces, right after what they override: `行{hang2}` (one Han character,
  one pinyin syllable) or `about{AH0 B AW1 T}` (one English word, its ARPAbet phones);
- everything else, which is split into language runs by script.

This module only finds the markup and the runs and reports malformed input with its character position;
it knows nothing of phones, so validating what is inside an override is the processor's job.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from .vocab import SPEAKER_TOKENS, canonical_lyrics_token

Language = Literal["en", "zh"]

_SPEAKER_TAG_PATTERN = re.compile(r"^s(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class StructureTag:
    """A speaker or lyrics tag, as its vocabulary token, with its character position in the input."""

    token: str
    position: int

    @property
    def is_speaker(self) -> bool:
        return self.token.startswith("[S")


@dataclass(frozen=True)
class Override:
    """A user pronunciation for the span `[start, end)` of the surrounding text.

    `start`/`end` index the text the override belongs to (a `TextSegment` or, after splitting, a
    `LanguageRun`); `position` is where the opening brace stood in the user's input, for error messages.
    """

    start: int
    end: int
    language: Language
    value: str
    position: int

    def shifted(self, offset: int) -> Override:
        return Override(self.start - offset, self.end - offset, self.language, self.value, self.position)


@dataclass
class TextSegment:
    """Text between two tags, with the markup removed and the overrides that apply to it."""

    text: str
    overrides: list[Override] = field(default_factory=list)


@dataclass
class LanguageRun:
    """A maximal stretch of a text segment read in one language."""

    language: Language
    text: str
    overrides: list[Override] = field(default_factory=list)


def is_han(char: str) -> bool:
    """Whether `char` is a CJK ideograph (read as Mandarin here)."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= code <= 0x4DBF  # Extension A
        or 0xF900 <= code <= 0xFAFF  # Compatibility Ideographs
        or 0x20000 <= code <= 0x3134F  # Extensions B-G
    )


def is_latin_letter(char: str) -> bool:
    """Whether `char` is a Latin letter, full-width and accented forms included."""
    folded = unicodedata.normalize("NFKC", char)
    if not folded or not folded[0].isalpha():
        return False
    return unicodedata.name(folded[0], "").startswith("LATIN")


@functools.lru_cache(maxsize=8192)
def script_of(char: str) -> Language | None:
    """The language a character's script implies, or `None` for digits, symbols, spaces and the rest."""
    # Cached: this runs once per input character and the Unicode lookups dominate otherwise.
    if char.isascii():
        return "en" if char.isalpha() else None
    if is_han(char):
        return "zh"
    if is_latin_letter(char):
        return "en"
    return None


def parse_markup(text: str, num_speakers: int) -> list[StructureTag | TextSegment]:
    """Split `text` into tags and text segments and attach the overrides to their segment.

    Args:
        text: The user's text.
        num_speakers: Speaker tags `[S0]`..`[S<num_speakers - 1>]` are accepted.

    Returns:
        Tags and segments in input order. Segments never contain markup characters; empty segments are
        omitted.

    Raises:
        ValueError: for an unclosed or unmatched bracket or brace, an unknown tag, a speaker tag beyond
            `num_speakers`, or an override that does not follow a Han character or an English word. The
            message names the problem and its character position (0-based) in `text`.
    """
    items: list[StructureTag | TextSegment] = []
    buffer: list[str] = []
    overrides: list[Override] = []

    def flush() -> None:
        if buffer:
            items.append(TextSegment("".join(buffer), list(overrides)))
        buffer.clear()
        overrides.clear()

    index = 0
    while index < len(text):
        char = text[index]
        if char in "[{":
            closer = "]" if char == "[" else "}"
            end = _find_closer(text, index, closer)
            body = text[index + 1 : end]
            if char == "[":
                flush()
                items.append(StructureTag(_tag_token(body, index, num_speakers), index))
            else:
                overrides.append(_make_override(buffer, overrides, body, index))
            index = end + 1
            continue
        if char in "]}":
            opener = "[" if char == "]" else "{"
            raise ValueError(f"Unmatched '{char}' at character {index}: no '{opener}' opens it.")
        buffer.append(char)
        index += 1
    flush()
    return items


def _find_closer(text: str, start: int, closer: str) -> int:
    """Index of the bracket closing the one at `start`; markup may not nest."""
    for index in range(start + 1, len(text)):
        if text[index] == closer:
            return index
        if text[index] in "[]{}":
            break
    raise ValueError(f"Unbalanced '{text[start]}' at character {start}: it is not closed by '{closer}'.")


def _tag_token(body: str, position: int, num_speakers: int) -> str:
    speaker = _SPEAKER_TAG_PATTERN.match(body.strip())
    if speaker is not None:
        speaker_index = int(speaker.group(1))
        if speaker_index >= num_speakers:
            raise ValueError(
                f"Unknown speaker tag '[{body}]' at character {position}: this processor has "
                f"num_speakers={num_speakers} (tags [S0]..[S{num_speakers - 1}])."
            )
        return SPEAKER_TOKENS[speaker_index]
    lyrics_token = canonical_lyrics_token(body)
    if lyrics_token is None:
        raise ValueError(
            f"Unknown tag '[{body}]' at character {position}: expected a speaker tag "
            f"[S0]..[S{num_speakers - 1}] or a lyrics tag ([verse], [chorus], [pre-chorus], [bridge], "
            "[intro], [outro], [inst])."
        )
    return lyrics_token


def _make_override(buffer: list[str], previous: list[Override], body: str, position: int) -> Override:
    """Bind the override `{body}` at `position` to the character or word that ends `buffer`."""
    value = body.strip()
    if not value:
        raise ValueError(f"Empty pronunciation override '{{}}' at character {position}.")
    end = len(buffer)
    last = buffer[-1] if buffer else ""
    if last and is_han(last):
        language: Language = "zh"
        start = end - 1
    elif last and is_latin_letter(last):
        language = "en"
        start = end
        # An English word is its letters with inner apostrophes and hyphens ("don't", "co-op").
        while start > 0 and (is_latin_letter(buffer[start - 1]) or buffer[start - 1] in "'-"):
            start -= 1
        while buffer[start] in "'-":
            start += 1
    else:
        raise ValueError(
            f"Pronunciation override '{{{body}}}' at character {position} must directly follow a Han "
            "character or an English word (no space in between)."
        )
    if previous and previous[-1].end == end:
        raise ValueError(
            f"Second pronunciation override '{{{body}}}' at character {position} for the same text."
        )
    return Override(start, end, language, value, position)


def split_language_runs(segment: TextSegment, default_language: Language) -> list[LanguageRun]:
    """Split a segment into runs by script and hand each run the overrides inside it.

    Han characters are Chinese and Latin letters English. Everything else (digits, spaces, punctuation,
    symbols, emoji) is neutral and joins a neighbouring run, so that it is normalized in the language it
    is read in: neutral text before the first or after the last lettered character joins that run, and
    neutral text between two runs of the same language joins them. Between two different languages the
    neutral text is cut once: the part glued to the left run (no space) and any later punctuation stay
    left, and the cut falls before the first whitespace-separated chunk that is glued to the right run or
    holds a digit, because a number is read in the language of what it counts
    ("在2025年" -> zh, "I have 3 个" -> the 3 is zh). A number glued to both sides belongs to the
    English word it touches ("Python3编程", "重5kg的箱子": units, models and names).
    A segment without any lettered character is one run in `default_language`.
    """
    text = segment.text
    scripts = [script_of(char) for char in text]
    # Maximal blocks of equal script, neutral blocks included: (language or None, start, end).
    blocks: list[tuple[Language | None, int, int]] = []
    for index, script in enumerate(scripts):
        if blocks and blocks[-1][0] == script:
            blocks[-1] = (script, blocks[-1][1], index + 1)
        else:
            blocks.append((script, index, index + 1))

    lettered = [block for block in blocks if block[0] is not None]
    if not lettered:
        spans = [(default_language, 0, len(text))]
    else:
        spans = []
        for position, (script, start, end) in enumerate(blocks):
            if script is not None:
                spans.append((script, start, end))
                continue
            left = blocks[position - 1][0] if position > 0 else None
            right = blocks[position + 1][0] if position + 1 < len(blocks) else None
            if left is None or right is None or left == right:
                spans.append((left or right, start, end))  # type: ignore[arg-type]
            else:
                cut = _neutral_cut(text, start, end, right)
                spans.extend(span for span in ((left, start, cut), (right, cut, end)) if span[1] < span[2])

    runs: list[LanguageRun] = []
    run_bounds: list[tuple[int, int]] = []
    for language, start, end in spans:
        if runs and runs[-1].language == language:
            runs[-1].text += text[start:end]
            run_bounds[-1] = (run_bounds[-1][0], end)
        else:
            runs.append(LanguageRun(language, text[start:end]))
            run_bounds.append((start, end))
    for override in segment.overrides:
        # An override spans letters of one script only, so it always lies inside exactly one run.
        run, (start, _) = next(
            (run, bounds)
            for run, bounds in zip(runs, run_bounds)
            if bounds[0] <= override.start and override.end <= bounds[1]
        )
        run.overrides.append(override.shifted(start))
    return runs


def _neutral_cut(text: str, start: int, end: int, right: Language) -> int:
    """Where neutral text between two different languages passes from the left run to the right one."""
    block = text[start:end]
    if not any(char.isspace() for char in block) and any(char.isdigit() for char in block):
        # A number glued to a Latin word on one side and Han on the other is part of that word: a unit,
        # a model or a name (重5kg, 5G手机, COVID-19疫情), which only English normalization can read.
        return start if right == "en" else end
    for chunk in re.finditer(r"\S+", block):
        glued_left = chunk.start() == 0
        glued_right = start + chunk.end() == end
        if not glued_left and (glued_right or any(char.isdigit() for char in chunk.group())):
            return start + chunk.start()
    return end
