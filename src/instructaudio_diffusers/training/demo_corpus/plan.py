"""The corpus plan: every clip's id, render parameters and metadata row, decided before any audio exists.

A clip's plan depends only on (corpus seed, part, index, split): its random generator is
`default_rng([seed, part id, index, split])`, sentence pools are built from the seed alone, and nothing
depends on the scale or on other clips. So the same id always means the same clip, a smaller `--scale`
plans a prefix of a larger one, and any number of workers render identical bytes.

`render_job` turns a clip's render parameters into audio; it is what the worker processes run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import music, sentences, speech
from .instructions import (
    Instruction,
    choose_speech_mentions,
    dialogue_instruction,
    music_instruction,
    pace_of,
    speech_instruction,
)

__all__ = ["GENERATOR_VERSION", "PARTS", "Job", "Plan", "plan_corpus", "render_job"]

# Bump when rendering changes in a way that should invalidate audio from earlier runs.
GENERATOR_VERSION = 1
PARTS = ("speech_en", "speech_zh", "dialogue", "music")
_PART_IDS = {"speech_en": 1, "speech_zh": 2, "dialogue": 3, "music": 4}
_SPLIT_IDS = {"train": 0, "held_out": 1}

# Clip counts at --scale 1, from the target hours and mean clip lengths measured on this generator:
# English speech 8 h at ~4.3 s; Chinese speech ~3 h at ~5 s, sized so that it reads >= 3,000 distinct
# sentences; dialogue >= 500 clips at ~7 s; music 3 h at 10 s (uniform 5-15 s).
TARGET_CLIPS = {"speech_en": 6760, "speech_zh": 2320, "dialogue": 600, "music": 1080}
HELD_OUT_CASES = {"speech_en": 80, "speech_zh": 50, "dialogue": 30, "music": 60}
# Sentence pools (independent of scale): >= 5,000 / 3,000 distinct training sentences at scale 1.
POOL_SIZES = {"en": (6000, 300), "zh": (3600, 200), "exchanges": (1000, 100)}  # (total, held out)
_CROSS_LANGUAGE_ODDS = 0.15  # instruction in the other language than the text
_TWO_SENTENCE_ODDS = 0.3


@dataclass
class Job:
    """One clip to render: where it goes, how to render it, and its metadata row (minus measured fields)."""

    clip_id: str
    split: str  # train | held_out
    relative_path: str  # inside the split's folder
    render: dict[str, Any]
    row: dict[str, Any]

    @property
    def render_hash(self) -> str:
        payload = json.dumps({"version": GENERATOR_VERSION, "render": self.render}, sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Plan:
    """All jobs of a corpus, held-out first, and the sentence statistics the summary reports."""

    jobs: list[Job]
    pools: dict[str, int]  # pool sizes per split, and distinct sentences the speech parts read


def _derived_seed(seed: int, *tags: int) -> int:
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0])


class _Pools:
    """Sentence and exchange pools of one corpus seed, split into training and held-out parts."""

    def __init__(self, seed: int):
        total, held = POOL_SIZES["en"]
        self.en = sentences.split_held_out(
            sentences.english_sentences(total, _derived_seed(seed, 11)), held, seed
        )
        total, held = POOL_SIZES["zh"]
        self.zh = sentences.split_held_out(
            sentences.chinese_sentences(total, _derived_seed(seed, 12)), held, seed
        )
        total, held = POOL_SIZES["exchanges"]
        self.exchanges = sentences.split_held_out(
            sentences.exchanges(total, _derived_seed(seed, 13)), held, seed
        )
        # One fixed shuffle per pool, so consecutive clips take different sentences.
        self._orders = {
            name: np.random.default_rng(_derived_seed(seed, 14, i)).permutation(len(getattr(self, name)[0]))
            for i, name in enumerate(("en", "zh", "exchanges"))
        }

    def pick(self, name: str, split: str, position: int) -> Any:
        """Item `position` of a pool (wrapping around): a sentence, or an exchange of (en, zh) turns."""
        pool = getattr(self, name)[0 if split == "train" else 1]
        if split == "train":
            return pool[int(self._orders[name][position % len(pool)])]
        return pool[position % len(pool)]


def _weighted_persona(
    personas: tuple[speech.Persona, ...], rng: np.random.Generator, **must: str
) -> speech.Persona:
    """A persona drawn by weight among those matching `must` (e.g. gender="male"), or among all if none do."""
    matching = [p for p in personas if all(getattr(p, key) == value for key, value in must.items())]
    pool = matching or list(personas)
    weights = np.array([p.weight for p in pool])
    return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]


def _instruction_language(text_language: str, rng: np.random.Generator) -> str:
    other = {"en": "zh", "zh": "en"}
    return other[text_language] if rng.random() < _CROSS_LANGUAGE_ODDS else text_language


def _common_row(
    job_id: str, part: str, task: str, text: str, language: str, instruction: Instruction
) -> dict[str, Any]:
    return {
        "instruction": instruction.text,
        "text": text,
        "language": language,
        "task": task,
        "id": job_id,
        "part": part,
        "instruction_language": instruction.language,
        "instruction_templates": instruction.template_ids,
        "instruction_mentions": instruction.mentioned,
    }


def _speech_job(
    part: str, index: int, split: str, pools: _Pools, rng: np.random.Generator, cursor: int
) -> tuple[Job, int]:
    """One speech clip, reading sentences from position `cursor` of its pool; returns the next cursor."""
    language = "en" if part == "speech_en" else "zh"
    persona = _weighted_persona(_personas_for(language), rng)
    prosody = speech.sample_prosody(rng)
    count = 2 if split == "train" and rng.random() < _TWO_SENTENCE_ODDS else 1
    text = " ".join(pools.pick(language, split, cursor + k) for k in range(count))
    attributes = speech.persona_attributes(persona, prosody)
    held_out = split == "held_out"
    mentions = choose_speech_mentions(attributes, language, rng, held_out)
    instruction = speech_instruction(_instruction_language(language, rng), mentions, rng, held_out)
    clip_id = _clip_id(part, index, split)
    render = {
        "kind": "speech",
        "text": text,
        "persona": persona.name,
        "prosody": asdict(prosody),
        "seed": int(rng.integers(2**31)),
    }
    row = {**_common_row(clip_id, part, "speech", text, language, instruction), **attributes}
    return Job(clip_id, split, f"{part}/{clip_id}.wav", render, row), cursor + count


def _dialogue_job(index: int, split: str, pools: _Pools, rng: np.random.Generator) -> Job:
    exchange = pools.pick("exchanges", split, index)
    if split == "train":
        language = str(rng.choice(["en", "zh", "mixed"], p=[0.4, 0.35, 0.25]))
    else:  # evaluation cases are English or Chinese (the harness scores one language per case)
        language = str(rng.choice(["en", "zh"]))
    speaker_languages = [language, language] if language != "mixed" else list(rng.permutation(["en", "zh"]))
    first = _weighted_persona(_personas_for(speaker_languages[0]), rng)
    other_gender = {"female": "male", "male": "female"}[first.gender]
    want = other_gender if rng.random() < 0.8 else first.gender
    candidates = tuple(p for p in _personas_for(speaker_languages[1]) if p.name != first.name)
    second = _weighted_persona(candidates, rng, gender=want)
    speakers = [first, second]
    prosodies = [
        speech.Prosody(
            int(rng.integers(-40, 41)),
            round(float(rng.uniform(0.95, 1.05)), 3),
            round(float(rng.uniform(-1.0, 1.0)), 2),
        )
        for _ in speakers
    ]
    turn_count = int(rng.integers(2, 5))
    turns = [
        {"speaker": t % 2, "text": exchange[t][0 if speaker_languages[t % 2] == "en" else 1]}
        for t in range(turn_count)
    ]
    gaps = [round(float(rng.uniform(0.25, 0.7)), 3) for _ in range(turn_count - 1)]
    text = " ".join(f"[S{turn['speaker']}] {turn['text']}" for turn in turns)
    instruction_language = (
        str(rng.choice(["en", "zh"])) if language == "mixed" else _instruction_language(language, rng)
    )
    held_out = split == "held_out"
    instruction = dialogue_instruction(
        instruction_language, [{"gender": s.gender, "age": s.age} for s in speakers], rng, held_out
    )
    clip_id = _clip_id("dialogue", index, split)
    render = {
        "kind": "dialogue",
        "turns": turns,
        "personas": [s.name for s in speakers],
        "prosodies": [asdict(p) for p in prosodies],
        "gaps_s": gaps,
        "seed": int(rng.integers(2**31)),
    }
    row = _common_row(clip_id, "dialogue", "dialogue", text, language, instruction)
    row["speaker_genders"] = [s.gender for s in speakers]
    for number, (persona, prosody, spoken) in enumerate(zip(speakers, prosodies, speaker_languages)):
        attributes = speech.persona_attributes(persona, prosody)
        for key in ("engine", "voice", "persona", "gender", "age", "accent"):
            row[f"s{number}_{key}"] = attributes[key]
        row[f"s{number}_language"] = spoken
    row["turns"] = turn_count
    row["gaps_s"] = gaps
    row["loudness"] = "normal"  # every turn is set to the reference level (+-1 dB)
    return Job(clip_id, split, f"dialogue/{clip_id}.wav", render, row)


def _personas_for(language: str) -> tuple[speech.Persona, ...]:
    return speech.ENGLISH_PERSONAS if language == "en" else speech.CHINESE_PERSONAS


def _music_job(index: int, split: str, rng: np.random.Generator) -> Job:
    spec = music.sample_music_spec(rng, seed=int(rng.integers(2**31)))
    attributes = {
        "genre": spec.genre,
        "instrument": spec.instrument,
        "bpm": spec.bpm,
        "pace": pace_of(spec.bpm),
        "key": music.key_name(spec.tonic, spec.mode),
        "tonic": spec.tonic,
        "mode": spec.mode,
        "atmosphere": music.atmosphere(spec.mode, spec.bpm),
        "drums": spec.drums,
        "loudness": "normal",  # rendered at the reference level
    }
    language = "zh" if rng.random() < 0.4 else "en"
    instruction = music_instruction(language, attributes, rng, split == "held_out")
    clip_id = _clip_id("music", index, split)
    # Instrumental music has no text; its `language` is the instruction's, which the evaluation harness
    # requires (en|zh) and prepare_dataset accepts.
    row = {**_common_row(clip_id, "music", "music", "", language, instruction), **attributes}
    return Job(clip_id, split, f"music/{clip_id}.wav", {"kind": "music", "spec": asdict(spec)}, row)


def _clip_id(part: str, index: int, split: str) -> str:
    return f"{'heldout_' if split == 'held_out' else ''}{part}_{index:06d}"


def scaled(count: int, scale: float) -> int:
    """`count * scale`, rounded, but at least one clip per part so every part is exercised."""
    return max(1, int(round(count * scale)))


def plan_corpus(seed: int, scale: float, parts: tuple[str, ...] = PARTS) -> Plan:
    """Every job of the corpus (training and held-out) for `seed` at `scale`, in a stable order."""
    pools = _Pools(seed)
    jobs: list[Job] = []
    sizes: dict[str, int] = {}
    for split, targets in (("held_out", HELD_OUT_CASES), ("train", TARGET_CLIPS)):
        for part in parts:
            cursor = 0  # sentences are read in pool order, so the corpus uses as many distinct ones as it can
            for index in range(scaled(targets[part], scale)):
                rng = np.random.default_rng([seed, _PART_IDS[part], index, _SPLIT_IDS[split]])
                if part in ("speech_en", "speech_zh"):
                    job, cursor = _speech_job(part, index, split, pools, rng, cursor)
                    jobs.append(job)
                    pool_size = len(getattr(pools, "en" if part == "speech_en" else "zh")[_SPLIT_IDS[split]])
                    sizes[f"{part}_{split}_distinct_sentences"] = min(cursor, pool_size)
                elif part == "dialogue":
                    jobs.append(_dialogue_job(index, split, pools, rng))
                else:
                    jobs.append(_music_job(index, split, rng))
    sizes.update(
        {
            f"{name}_{split}_pool": len(getattr(pools, name)[position])
            for name in ("en", "zh", "exchanges")
            for position, split in enumerate(("train", "held_out"))
        }
    )
    return Plan(jobs, sizes)


def held_out_sentences(seed: int) -> dict[str, tuple[list, list]]:
    """The (training, held-out) pools of a seed, for checks that they are disjoint."""
    pools = _Pools(seed)
    return {"en": pools.en, "zh": pools.zh, "exchanges": pools.exchanges}


# ---------------------------------------------------------------------------------------------- rendering
def render_job(render: dict[str, Any], workdir: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Audio (float32, 22,050 Hz) of one job and what rendering learned (e.g. the engine's input text)."""
    kind = render["kind"]
    if kind == "music":
        return music.render_music(music.MusicSpec(**render["spec"])), {}
    if kind == "speech":
        persona = speech.persona_by_name(render["persona"])
        prosody = speech.Prosody(**render["prosody"])
        audio, spoken = speech.render_turn(render["text"], persona, prosody, workdir, seed=render["seed"])
        return audio, {"engine_text": spoken}
    if kind == "dialogue":
        turns, spoken = [], []
        for number, turn in enumerate(render["turns"]):
            persona = speech.persona_by_name(render["personas"][turn["speaker"]])
            prosody = speech.Prosody(**render["prosodies"][turn["speaker"]])
            audio, text = speech.render_turn(
                turn["text"], persona, prosody, workdir, seed=render["seed"] + number
            )
            turns.append(audio)
            spoken.append(text)
        return speech.concatenate_turns(turns, render["gaps_s"]), {"engine_text": " | ".join(spoken)}
    raise ValueError(f"Unknown job kind {kind!r}.")
