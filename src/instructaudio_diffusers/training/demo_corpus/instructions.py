"""Natural-language instructions written from a clip's true attributes, in English or Chinese.

An instruction is a frame ("{subject} speaks {mods}.") filled with one paraphrase per mentioned attribute,
all drawn from `phrases_en` / `phrases_zh`. Which attributes are mentioned is itself sampled (a clip's
neutral pitch is usually left unsaid, as people do), and the result records the ids of every frame and
phrase it used plus the attributes it states, so evaluation knows exactly what was asked.

Held-out split: the last `HELD_OUT_PER_LIST` entries of every frame and phrase list are reserved for
evaluation. `held_out=False` never draws them, `held_out=True` draws only them, so training and evaluation
instructions are disjoint in wording while covering the same attribute values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import phrases_en, phrases_zh
from .music import key_name

__all__ = [
    "HELD_OUT_PER_LIST",
    "Instruction",
    "choose_speech_mentions",
    "dialogue_instruction",
    "iter_template_ids",
    "music_contrast_instruction",
    "music_instruction",
    "pace_of",
    "speech_instruction",
]

HELD_OUT_PER_LIST = 2
_BANKS = {"en": phrases_en, "zh": phrases_zh}
_ZH_KEY_NAMES = ("C", "升C", "D", "升D", "E", "F", "升F", "G", "升G", "A", "升A", "B")
_ZH_FLAT_KEY_NAMES = ("C", "降D", "D", "降E", "E", "F", "降G", "G", "降A", "A", "降B", "B")
_OPTIONAL_GROUP = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"{([a-z0-9_]+)}")


@dataclass
class Instruction:
    """Text plus provenance: the ids of the frame and phrases used, and the attributes the text states."""

    text: str
    language: str
    template_ids: list[str] = field(default_factory=list)
    mentioned: dict[str, object] = field(default_factory=dict)


def _split(options: tuple[str, ...], held_out: bool) -> range:
    if len(options) < 8 + HELD_OUT_PER_LIST:
        raise ValueError(f"Every paraphrase list needs >= {8 + HELD_OUT_PER_LIST} entries; got {options!r}.")
    cut = len(options) - HELD_OUT_PER_LIST
    return range(cut, len(options)) if held_out else range(cut)


class _Writer:
    """Draws frames and phrases for one instruction and remembers which ones it used."""

    def __init__(self, language: str, rng: np.random.Generator, held_out: bool):
        self.language, self.rng, self.held_out = language, rng, held_out
        self.bank = _BANKS[language]
        self.ids: list[str] = []

    def _draw(self, options: tuple[str, ...], id_prefix: str, avoid: set[str] = frozenset()) -> str:
        indices = [i for i in _split(options, self.held_out) if options[i] not in avoid] or list(
            _split(options, self.held_out)
        )
        index = int(self.rng.choice(indices))
        self.ids.append(f"{id_prefix}.{index}")
        return options[index]

    def frame(self, task: str) -> str:
        frames = getattr(self.bank, f"{task.upper()}_FRAMES")
        return self._draw(frames, f"{self.language}.frame.{task}")

    def phrase(self, kind: str, value: str, avoid: set[str] = frozenset(), **fill: object) -> str:
        text = self._draw(self.bank.PHRASES[kind][value], f"{self.language}.{kind}.{value}", avoid)
        return text.format(**fill) if fill else text

    def finish(self, frame: str, slots: dict[str, str]) -> str:
        """Fill `frame`: drop `[...]` groups with an empty slot, fill slots, fix articles and capitals."""

        def group(match: re.Match[str]) -> str:
            names = _SLOT.findall(match.group(1))
            return match.group(1) if all(slots.get(name) for name in names) else ""

        text = _OPTIONAL_GROUP.sub(group, frame)
        text = _SLOT.sub(lambda m: "{a}" if m.group(1) == "a" else slots.get(m.group(1), ""), text)
        if self.language == "en":
            text = re.sub(
                r"{a} (\W*)(\w)",
                lambda m: ("an " if m.group(2).lower() in "aeiou" else "a ") + m.group(1) + m.group(2),
                text,
            )
            text = re.sub(r"\s+", " ", text).strip()
            text = text[0].upper() + text[1:]
        return text


def _join_mods(language: str, mods: list[str]) -> str:
    if language == "zh":
        return "".join(mods)
    if len(mods) <= 1:
        return "".join(mods)
    return ", ".join(mods[:-1]) + " and " + mods[-1]


def _subject_key(gender: str, age: str | None) -> str:
    return f"{gender}.{age}" if age else gender


# Probability of stating an attribute, by whether its value is the unremarkable default.
_SPEECH_MENTION = {"age": {"child": 0.9, "elderly": 0.9, "young": 0.6, "adult": 0.4}}
_DEFAULT_ACCENT = {"en": "american", "zh": "standard_mandarin"}
_MOD_ORDER = ("accent", "emotion", "pitch", "loudness", "rate", "style")


def choose_speech_mentions(
    attributes: dict[str, str], text_language: str, rng: np.random.Generator, held_out: bool = False
) -> dict[str, str]:
    """Which true attributes an instruction states. Held-out cases state every non-default attribute.

    Gender is always stated. Pitch/rate/loudness that only follow from an emotion proxy are mostly left
    implicit (a "sad" clip is slow and soft by construction).
    """
    mentioned = {"gender": attributes["gender"]}
    if held_out or rng.random() < _SPEECH_MENTION["age"][attributes["age"]]:
        mentioned["age"] = attributes["age"]
    accent_is_default = attributes["accent"] == _DEFAULT_ACCENT[text_language]
    accent_odds = (0.0 if held_out else 0.1) if accent_is_default else (1.0 if held_out else 0.75)
    if rng.random() < accent_odds:
        mentioned["accent"] = attributes["accent"]
    emotional = attributes["emotion"] != "neutral"
    emotion_odds = (1.0 if held_out else 0.85) if emotional else (0.0 if held_out else 0.1)
    if rng.random() < emotion_odds:
        mentioned["emotion"] = attributes["emotion"]
    for kind in ("pitch", "rate", "loudness"):
        if attributes["style"] == "whisper" and kind in ("pitch", "loudness"):
            continue  # a whisper has no pitch and is soft by nature
        if attributes[kind] == "normal":
            odds = 0.0 if held_out else 0.05
        else:
            odds = (0.0 if held_out else 0.25) if emotional else (1.0 if held_out else 0.7)
        if rng.random() < odds:
            mentioned[kind] = attributes[kind]
    if attributes["style"] != "normal":
        mentioned["style"] = attributes["style"]
    return mentioned


def speech_instruction(
    language: str, mentioned: dict[str, str], rng: np.random.Generator, held_out: bool = False
) -> Instruction:
    """Describe one speaker; `mentioned` comes from `choose_speech_mentions`."""
    writer = _Writer(language, rng, held_out)
    frame = writer.frame("speech")
    subject = writer.phrase("subject", _subject_key(mentioned["gender"], mentioned.get("age")))
    mods = [writer.phrase(kind, mentioned[kind]) for kind in _MOD_ORDER if kind in mentioned]
    text = writer.finish(frame, {"subject": subject, "mods": _join_mods(language, mods)})
    return Instruction(text, language, writer.ids, dict(mentioned))


def dialogue_instruction(
    language: str, speakers: list[dict[str, str]], rng: np.random.Generator, held_out: bool = False
) -> Instruction:
    """Describe both speakers of a dialogue by gender (always) and age (often), S0 first."""
    writer = _Writer(language, rng, held_out)
    frame = writer.frame("dialogue")
    slots: dict[str, str] = {}
    mentioned: dict[str, object] = {"speakers": [speaker["gender"] for speaker in speakers]}
    ages: list[str | None] = []
    for index, speaker in enumerate(speakers):
        age = speaker["age"] if held_out or rng.random() < _SPEECH_MENTION["age"][speaker["age"]] else None
        ages.append(age)
        slots[f"s{index}"] = writer.phrase(
            "subject", _subject_key(speaker["gender"], age), avoid=set(slots.values())
        )
    if any(ages):
        mentioned["speaker_ages"] = ages
    return Instruction(writer.finish(frame, slots), language, writer.ids, mentioned)


def pace_of(bpm: int) -> str:
    """Tempo word class: slow below 85 BPM, fast from 120, medium between."""
    return "slow" if bpm < 85 else "fast" if bpm >= 120 else "medium"


def _key_text(language: str, tonic: int, mode: str) -> str:
    if language == "en":
        return key_name(tonic, mode)
    flats = tonic in ({1, 3, 8, 10} if mode == "major" else {3, 10})
    return (_ZH_FLAT_KEY_NAMES if flats else _ZH_KEY_NAMES)[tonic] + ("大调" if mode == "major" else "小调")


def music_instruction(
    language: str, attributes: dict[str, object], rng: np.random.Generator, held_out: bool = False
) -> Instruction:
    """Describe a piece from its `MusicSpec` attributes (+ `atmosphere`). Held-out cases state them all."""
    writer = _Writer(language, rng, held_out)
    frame = writer.frame("music")
    bpm, mode = int(attributes["bpm"]), str(attributes["mode"])
    mentioned: dict[str, object] = {"genre": attributes["genre"]}
    slots = {"genre": writer.phrase("genre", str(attributes["genre"]))}
    if held_out or rng.random() < 0.9:
        mentioned["instrument"] = attributes["instrument"]
        slots["instrument"] = writer.phrase("instrument", str(attributes["instrument"]))
    if held_out or rng.random() < 0.7:
        mentioned["tempo_bpm"] = bpm
        slots["tempo"] = writer.phrase("tempo", "any", bpm=bpm)
    if rng.random() < (0.5 if held_out else 0.4 if "tempo" in slots else 0.8):
        mentioned["pace"] = pace_of(bpm)
        slots["pace"] = writer.phrase("pace", pace_of(bpm))
    draw = 0.0 if held_out else rng.random()
    if draw < 0.45:
        mentioned.update(key=_key_text("en", int(attributes["tonic"]), mode), mode=mode)
        slots["key"] = writer.phrase("key", "any", key=_key_text(language, int(attributes["tonic"]), mode))
    elif draw < 0.8:
        mentioned["mode"] = mode
        slots["key"] = writer.phrase("mode", mode)
    if held_out or rng.random() < 0.7:
        mentioned["atmosphere"] = attributes["atmosphere"]
        slots["atmosphere"] = writer.phrase("atmosphere", str(attributes["atmosphere"]))
    if held_out or rng.random() < 0.6:
        mentioned["drums"] = bool(attributes["drums"])
        slots["drums"] = writer.phrase("drums", "on" if attributes["drums"] else "off")
    return Instruction(writer.finish(frame, slots), language, writer.ids, mentioned)


def music_contrast_instruction(
    language: str, attributes: dict[str, object], rng: np.random.Generator
) -> Instruction:
    """Describe a piece by genre, lead instrument, tempo and mode only, from the held-out templates.

    For contrast pairs: the words that follow from the tempo or mode (pace, atmosphere) and the key's tonic
    are left out, so two pieces that differ in one of these attributes get instructions that differ in the
    words for that attribute alone (given equal generators).
    """
    writer = _Writer(language, rng, held_out=True)
    frame = writer.frame("music")
    bpm, mode = int(attributes["bpm"]), str(attributes["mode"])
    slots = {
        "genre": writer.phrase("genre", str(attributes["genre"])),
        "instrument": writer.phrase("instrument", str(attributes["instrument"])),
        "tempo": writer.phrase("tempo", "any", bpm=bpm),
        "key": writer.phrase("mode", mode),
    }
    mentioned = {
        "genre": attributes["genre"],
        "instrument": attributes["instrument"],
        "tempo_bpm": bpm,
        "mode": mode,
    }
    return Instruction(writer.finish(frame, slots), language, writer.ids, mentioned)


def iter_template_ids(language: str, held_out: bool):
    """Every frame and phrase id of one language and split (what the disjointness check compares)."""
    bank = _BANKS[language]
    for task in ("speech", "dialogue", "music"):
        frames = getattr(bank, f"{task.upper()}_FRAMES")
        for index in _split(frames, held_out):
            yield f"{language}.frame.{task}.{index}", frames[index]
    for kind, values in bank.PHRASES.items():
        for value, options in values.items():
            for index in _split(options, held_out):
                yield f"{language}.{kind}.{value}.{index}", options[index]
