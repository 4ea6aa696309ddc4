"""Contrast pairs: two clips of the same sentence whose instructions differ in exactly one attribute.

The evaluation asks "when I change the instruction, does the audio change that way?". Each pair here is the
ground truth for that question: both sides read the same held-out sentence (or play the same piece) with the
same voice, prosody and seed, except for the one attribute the pair is about, and both instructions are
written from the held-out paraphrase templates with one random generator per pair, so they use the same
frame and the same phrase positions and differ only in the words for that attribute.

| attribute | side `a` / side `b` | what is rendered differently |
|---|---|---|
| gender | a woman / a man | a female and a male persona of the same engine and language (adult or young) |
| pitch | high / low voice | one persona, `sox pitch` +200..+350 / -200..-350 cents |
| rate | quickly / slowly | one persona, `sox tempo` 1.18..1.32 / 0.74..0.84 |
| loudness | loudly / softly | one persona, +7 / -11 dB (+-1) around the reference level |
| tempo | faster / slower BPM | one piece, tempos 1.35..1.7x apart inside the genre's usual range |
| mode | major / minor | one piece, same tonic, other scale |
| instrument | instrument x / instrument y | one piece, another lead instrument |
| dialogue | a woman first, then a man / a man first, then a woman | the two personas swap speaker tags |

Sentences come from the held-out pools, starting past the positions the 220 held-out cases read, so the
pairs add unseen sentences rather than repeat those. Nothing here changes a training or held-out job: the
pairs are a separate split with their own ids and random streams (`default_rng([seed, 5, attribute, index])`).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np

from . import music, speech
from .instructions import Instruction, dialogue_instruction, music_contrast_instruction, speech_instruction

__all__ = ["CONTRAST_ATTRIBUTES", "CONTRAST_PART_ID", "MUSIC_PAIR_SECONDS", "plan_contrast_pairs"]

CONTRAST_ATTRIBUTES = ("gender", "pitch", "rate", "loudness", "tempo", "mode", "instrument", "dialogue")
CONTRAST_PART_ID = 5  # after the corpus parts 1-4, so no random stream is shared with them
#: Length of every music pair (the corpus' shortest piece): enough bars for a beat tracker, short to generate.
MUSIC_PAIR_SECONDS = 6.0
# First held-out pool positions the pairs read: past what the held-out cases use (80 en, 50 zh, 30 exchanges).
_FIRST_POSITION = {"en": 100, "zh": 60, "exchanges": 40}
_GENDER_PAIRS = {
    "en": (("flite_slt", "flite_rms"), ("flite_slt", "flite_kal16"), ("espeak_en-us_f3", "espeak_en-us_m3"),
           ("espeak_en_f2", "espeak_en_m1"), ("espeak_en-us_f4", "espeak_en-gb-x-rp_m7")),
    "zh": (("espeak_zh_f2", "espeak_zh_m3"), ("espeak_zh_f3", "espeak_zh_m7"), ("espeak_zh_f4", "espeak_zh_m1"),
           ("espeak_zh_f5", "espeak_zh_m3")),
}  # fmt: skip
_TEMPO_RATIO = (1.35, 1.7)
_SIDE_VALUES = {"gender": ("female", "male"), "pitch": ("high", "low"), "rate": ("fast", "slow"),
                "loudness": ("loud", "soft"), "mode": ("major", "minor")}  # fmt: skip


def _adult_personas(language: str) -> list[speech.Persona]:
    personas = speech.ENGLISH_PERSONAS if language == "en" else speech.CHINESE_PERSONAS
    return [persona for persona in personas if persona.age in ("young", "adult")]


def _neutral_prosody(attribute: str, value: str, rng: np.random.Generator) -> speech.Prosody:
    """Normal pitch, rate and level except for `attribute`, drawn from the corpus' own ranges for `value`."""
    if attribute == "pitch":
        return speech.Prosody(pitch_cents=int(rng.integers(*speech._PITCH_RANGES[value])))
    if attribute == "rate":
        return speech.Prosody(tempo=round(float(rng.uniform(*speech._RATE_RANGES[value])), 3))
    if attribute == "loudness":
        return speech.Prosody(gain_db=speech._LOUDNESS_DB[value] + round(float(rng.uniform(-1, 1)), 2))
    return speech.Prosody()


class _Sentences:
    """Held-out sentences and exchanges of one corpus seed, read in order from `_FIRST_POSITION`."""

    def __init__(self, pools: dict[str, tuple[list, list]]):
        self.pools = {name: held_out for name, (_, held_out) in pools.items()}
        self.cursor = dict(_FIRST_POSITION)

    def next(self, name: str) -> Any:
        pool = self.pools[name]
        item = pool[self.cursor[name] % len(pool)]
        self.cursor[name] += 1
        return item


def _row(clip_id: str, task: str, text: str, language: str, instruction: Instruction) -> dict[str, Any]:
    return {
        "instruction": instruction.text,
        "text": text,
        "language": language,
        "task": task,
        "id": clip_id,
        "part": f"contrast_{task}",
        "instruction_language": instruction.language,
        "instruction_templates": instruction.template_ids,
        "instruction_mentions": instruction.mentioned,
    }


def _languages(index: int) -> tuple[str, str]:
    """(text language, instruction language): pairs cycle through all four combinations."""
    return ("en", "zh")[index % 2], ("en", "zh")[(index // 2) % 2]


def _speech_pair(attribute: str, index: int, rng: np.random.Generator, sentences: _Sentences):
    language, instruction_language = _languages(index)
    text = sentences.next(language)
    instruction_seed = int(rng.integers(2**31))
    render_seed = int(rng.integers(2**31))
    if attribute == "gender":
        options = _GENDER_PAIRS[language]
        names = options[int(rng.integers(len(options)))]
        personas = [speech.persona_by_name(name) for name in names]
    else:
        candidates = _adult_personas(language)
        persona = candidates[int(rng.integers(len(candidates)))]
        personas = [persona, persona]
    sides = []
    for persona, value in zip(personas, _SIDE_VALUES[attribute]):
        prosody = _neutral_prosody(attribute, value, rng)
        mentioned = (
            {"gender": persona.gender}
            if attribute == "gender"
            else {"gender": persona.gender, attribute: value}
        )
        instruction = speech_instruction(
            instruction_language, mentioned, np.random.default_rng(instruction_seed), held_out=True
        )
        render = {"kind": "speech", "text": text, "persona": persona.name, "prosody": asdict(prosody),
                  "seed": render_seed}  # fmt: skip
        row_attributes = speech.persona_attributes(persona, prosody)
        sides.append((value, "speech", text, language, instruction, render, row_attributes))
    return sides


def _dialogue_pair(index: int, rng: np.random.Generator, sentences: _Sentences):
    language, instruction_language = _languages(index)
    exchange = sentences.next("exchanges")
    female_names, male_names = zip(*_GENDER_PAIRS[language])
    female = speech.persona_by_name(female_names[int(rng.integers(len(female_names)))])
    male = speech.persona_by_name(male_names[int(rng.integers(len(male_names)))])
    prosody = {persona.name: speech.Prosody(int(rng.integers(-40, 41)), round(float(rng.uniform(0.95, 1.05)), 3))
               for persona in (female, male)}  # fmt: skip
    turn_count = int(rng.integers(2, 4))
    turns = [{"speaker": t % 2, "text": exchange[t][0 if language == "en" else 1]} for t in range(turn_count)]
    gaps = [round(float(rng.uniform(0.25, 0.7)), 3) for _ in range(turn_count - 1)]
    text = " ".join(f"[S{turn['speaker']}] {turn['text']}" for turn in turns)
    instruction_seed, render_seed = int(rng.integers(2**31)), int(rng.integers(2**31))
    sides = []
    for value, order in (("female_first", (female, male)), ("male_first", (male, female))):
        # Ages are left unsaid (age None), so the two instructions differ in the speakers' order only.
        instruction = dialogue_instruction(
            instruction_language, [{"gender": p.gender, "age": None} for p in order],
            np.random.default_rng(instruction_seed), held_out=True,
        )  # fmt: skip
        render = {"kind": "dialogue", "turns": turns, "personas": [p.name for p in order],
                  "prosodies": [asdict(prosody[p.name]) for p in order], "gaps_s": gaps, "seed": render_seed}  # fmt: skip
        attributes: dict[str, Any] = {"speaker_genders": [p.gender for p in order], "turns": turn_count,
                                      "gaps_s": gaps, "loudness": "normal"}  # fmt: skip
        for number, persona in enumerate(order):
            for key, field in (
                ("persona", "name"),
                ("gender", "gender"),
                ("age", "age"),
                ("engine", "engine"),
            ):
                attributes[f"s{number}_{key}"] = getattr(persona, field)
        sides.append((value, "dialogue", text, language, instruction, render, attributes))
    return sides


def _music_pair(attribute: str, index: int, rng: np.random.Generator):
    instruction_language = ("en", "zh")[index % 2]
    spec = replace(music.sample_music_spec(rng, seed=int(rng.integers(2**31))), duration_s=MUSIC_PAIR_SECONDS)
    if attribute == "tempo":
        # Genres whose usual range holds two tempos at least 1.35x apart; both tempos inside that range.
        genres = [g for g in music.GENRES if music.genre_bpm_range(g)[1] / music.genre_bpm_range(g)[0] >= 1.4]
        genre = genres[int(rng.integers(len(genres)))]
        low_bound, high_bound = music.genre_bpm_range(genre)
        ratio = float(rng.uniform(*_TEMPO_RATIO))
        ratio = min(ratio, high_bound / low_bound)
        slow = int(rng.integers(low_bound, max(low_bound, int(high_bound / ratio)) + 1))
        spec = replace(spec, genre=genre)
        variants = [("fast", replace(spec, bpm=int(round(slow * ratio)))), ("slow", replace(spec, bpm=slow))]
    elif attribute == "mode":
        variants = [(mode, replace(spec, mode=mode)) for mode in _SIDE_VALUES["mode"]]
    else:
        first, second = rng.choice(len(music.INSTRUMENTS), size=2, replace=False)
        variants = [
            (music.INSTRUMENTS[i], replace(spec, instrument=music.INSTRUMENTS[i])) for i in (first, second)
        ]
    instruction_seed = int(rng.integers(2**31))
    sides = []
    for value, variant in variants:
        attributes = {"genre": variant.genre, "instrument": variant.instrument, "bpm": variant.bpm,
                      "key": music.key_name(variant.tonic, variant.mode), "tonic": variant.tonic,
                      "mode": variant.mode, "drums": variant.drums, "loudness": "normal"}  # fmt: skip
        instruction = music_contrast_instruction(
            instruction_language, attributes, np.random.default_rng(instruction_seed)
        )
        sides.append((value, "music", "", instruction_language, instruction,
                      {"kind": "music", "spec": asdict(variant)}, attributes))  # fmt: skip
    return sides


def plan_contrast_pairs(seed: int, pools: dict[str, tuple[list, list]], pairs_per_attribute: int = 20):
    """`(clip_id, relative_path, render, row)` for both sides of every pair, pair by pair.

    Args:
        seed: the corpus seed (the same sentence pools as the corpus it accompanies).
        pools: `{"en" | "zh" | "exchanges": (training, held_out)}` of that seed; only held-out items are read.
        pairs_per_attribute: pairs for each of `CONTRAST_ATTRIBUTES`.
    """
    sentences = _Sentences(pools)
    planned = []
    for attribute_id, attribute in enumerate(CONTRAST_ATTRIBUTES):
        for index in range(pairs_per_attribute):
            rng = np.random.default_rng([seed, CONTRAST_PART_ID, attribute_id, index])
            if attribute in ("gender", "pitch", "rate", "loudness"):
                sides = _speech_pair(attribute, index, rng, sentences)
            elif attribute == "dialogue":
                sides = _dialogue_pair(index, rng, sentences)
            else:
                sides = _music_pair(attribute, index, rng)
            pair_id = f"contrast_{attribute}_{index:03d}"
            for (value, task, text, language, instruction, render, attributes), side in zip(sides, "ab"):
                clip_id = f"{pair_id}_{side}"
                row = {**_row(clip_id, task, text, language, instruction), **attributes,
                       "contrast": {"pair": pair_id, "attribute": attribute, "value": value}}  # fmt: skip
                planned.append((clip_id, f"{task}/{clip_id}.wav", render, row))
    return planned
