"""Evaluation cases (what to generate and what to expect) and the ground-truth corpus, read and validated.

Case file (`CASES.jsonl`, as `training/make_demo_corpus.py` writes `held_out_cases.jsonl`), one JSON
object per line; blank lines are skipped:

    {"id": "en_0007", "task": "speech", "language": "en",
     "instruction": "A woman speaks quickly and loudly.", "text": "Meet me at 3:30.",
     "audio_length_in_s": 2.5, "expect": {"gender": "female", "rate": "fast", "loudness": "loud"}}

- `id`: letters, digits, `.`, `_`, `-` (it names `wavs/<id>.wav`), unique in the file;
- `task`: `speech` | `dialogue` | `music`;
- `language`: `en` | `zh` | `mixed` (code-switched) for speech and dialogue; ignored for music (may be `""`);
- `instruction`: non-empty; `text`: what to say (`[S0]`/`[S1]` tags for a dialogue; may be empty for music);
- `audio_length_in_s` (optional): positive number; absent lets the model's duration predictor decide;
- `expect` (optional), measured attributes: `gender` (female/male), `pitch` (low/normal/high), `rate`
  (slow/normal/fast) for speech; `speakers` (one gender per speaker tag, in tag order) for a dialogue;
  `tempo_bpm` (number), `pace` (slow/medium/fast), `key` ("E flat major"), `mode` (major/minor),
  `instrument`, `genre` (free words, lower case) for music; `loudness` (soft/normal/loud) for any task.
  Attributes the instructions state but no offline measurement can check (`UNMEASURED_ATTRIBUTES`: age,
  accent, emotion, style, speaker ages, atmosphere, drums) are accepted and reported as unmeasured.

- `contrast` (optional): `{"pair": PAIR_ID, "attribute": NAME}` makes the case one side of a contrast pair
  (`contrast.CONTRAST_ATTRIBUTES`: gender, pitch, rate, loudness, tempo, mode, instrument, dialogue). A pair
  has exactly two cases with the same task, language, text and `audio_length_in_s`, different instructions,
  and `expect` dicts that differ in the pair's attribute only (`CONTRAST_EXPECT_KEYS`; a dialogue pair swaps
  `speakers`). Both sides are generated with the pair's seed.
- `reference_audio` (optional): ground-truth audio of the case, relative to `--references DIR`; with that
  option every such file must exist, and the same measurements run on it (the ground-truth column).

Other top-level keys are ignored (the corpus generator adds provenance such as `stated`); unknown `expect`
keys are errors, because a misspelt attribute would otherwise silently never be checked.

Ground truth (`--ground_truth DIR`): `DIR/metadata.jsonl`, one object per clip with `path` (relative to DIR),
`task`, `language`, `text`, and the true attributes under the names the corpus generator writes: `gender`,
`pitch`, `rate`, `loudness`, `bpm` (or `tempo_bpm`), `pace`, `key`, `mode`, `instrument`, `genre`, and for
dialogues `speaker_genders` (or `speakers`: genders, or objects with a `gender` field).
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

TASKS = ("speech", "dialogue", "music")
SPEECH_LANGUAGES = ("en", "zh", "mixed")
GENDERS = ("female", "male")
#: Ordinal attributes and their classes, low to high (the order the threshold classifiers use).
ORDINAL_CLASSES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "pitch": ("low", "normal", "high"),
    "rate": ("slow", "normal", "fast"),
    "loudness": ("soft", "normal", "loud"),
    "mode": ("minor", "major"),
    "pace": ("slow", "medium", "fast"),
}
#: Stated by instructions but beyond offline measurement here; accepted in `expect`, reported as unmeasured.
UNMEASURED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "age": ("speech",),
    "accent": ("speech",),
    "emotion": ("speech",),
    "style": ("speech",),
    "speaker_ages": ("dialogue",),
    "atmosphere": ("music",),
    "drums": ("music",),
}
#: Which tasks each `expect` key may be given for.
EXPECT_TASKS: dict[str, tuple[str, ...]] = {
    **{name: ("speech",) for name in ("gender", "pitch", "rate")},
    "loudness": TASKS,
    "speakers": ("dialogue",),
    **{name: ("music",) for name in ("tempo_bpm", "pace", "key", "mode", "instrument", "genre")},
    **UNMEASURED_ATTRIBUTES,
}
_KEY_NAME = re.compile(r"^\s*([A-Ga-g])(?:\s*(sharp|flat|#|b))?\s+(major|minor)\s*$")
_NATURAL_PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
_SPEAKER_TAG = re.compile(r"\[\s*[sS](\d+)\s*\]")
TEMPO_RANGE_BPM = (20.0, 400.0)
#: Contrast attribute -> (the task it applies to, the `expect` key whose value the two sides differ in).
CONTRAST_EXPECT_KEYS: dict[str, tuple[str, str]] = {
    "gender": ("speech", "gender"),
    "pitch": ("speech", "pitch"),
    "rate": ("speech", "rate"),
    "loudness": ("speech", "loudness"),
    "tempo": ("music", "tempo_bpm"),
    "mode": ("music", "mode"),
    "instrument": ("music", "instrument"),
    "dialogue": ("dialogue", "speakers"),
}


class CaseFileError(ValueError):
    """A case or metadata file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class EvaluationCase:
    """One thing to generate and the attributes its audio should have."""

    id: str
    task: str
    language: str
    instruction: str
    text: str
    audio_length_in_s: float | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    contrast: dict[str, str] | None = None  # {"pair", "attribute"} for one side of a contrast pair
    reference_audio: str | None = None  # relative to the --references folder
    line: int = field(default=0, compare=False)  # where the case file states it, for error messages

    @property
    def seed_key(self) -> str:
        """What the case's seed derives from: its pair for a contrast side (both sides share it), else its id."""
        return self.contrast["pair"] if self.contrast else self.id

    def to_dict(self) -> dict[str, Any]:
        row = {
            "id": self.id,
            "task": self.task,
            "language": self.language,
            "instruction": self.instruction,
            "text": self.text,
            "audio_length_in_s": self.audio_length_in_s,
            "expect": dict(self.expect),
        }
        if self.contrast:
            row["contrast"] = dict(self.contrast)
        if self.reference_audio:
            row["reference_audio"] = self.reference_audio
        return row


@dataclass(frozen=True)
class GroundTruthItem:
    """One clip of the ground-truth corpus with its true attributes, in the same vocabulary as `expect`."""

    path: str  # absolute
    task: str
    language: str
    text: str
    attributes: dict[str, Any]

    @property
    def key(self) -> str:
        """Stable identity used for the calibration/held-out split: the file name."""
        return os.path.basename(self.path)


def speaker_indices(text: str) -> list[int]:
    """Distinct speaker-tag numbers of a dialogue text in order of first appearance ([S1] ... [S0] -> [1, 0])."""
    return list(dict.fromkeys(int(match.group(1)) for match in _SPEAKER_TAG.finditer(text)))


def _jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; malformed JSON raises naming the line."""
    if not os.path.isfile(path):
        raise CaseFileError(f"{path}: no such file.")
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as err:
                raise CaseFileError(f"{path}:{line_number}: not valid JSON ({err.msg}).") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_key_name(text: Any) -> tuple[int, str] | None:
    """`(pitch class, mode)` of a key name such as "E flat major", "F# minor" or "c major"; None if unreadable."""
    match = _KEY_NAME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    letter, accidental, mode = match.groups()
    shift = {"sharp": 1, "#": 1, "flat": -1, "b": -1}.get(accidental or "", 0)
    return (_NATURAL_PITCH_CLASSES[letter.lower()] + shift) % 12, mode


def _check_expect(expect: Any, task: str, text: str) -> dict[str, Any]:
    """Validated copy of a case's `expect`; raises ValueError (without location) on the first problem."""
    if not isinstance(expect, dict):
        raise ValueError(f"'expect' must be an object, got {type(expect).__name__}.")
    checked: dict[str, Any] = {}
    for name, value in expect.items():
        if name not in EXPECT_TASKS:
            raise ValueError(f"unknown expect key {name!r}; known keys: {', '.join(sorted(EXPECT_TASKS))}.")
        if task not in EXPECT_TASKS[name]:
            raise ValueError(f"expect.{name} applies to {'/'.join(EXPECT_TASKS[name])} cases, not {task}.")
        if name in UNMEASURED_ATTRIBUTES:
            pass  # any value: it is only reported
        elif name in ORDINAL_CLASSES:
            if value not in ORDINAL_CLASSES[name]:
                raise ValueError(f"expect.{name} must be one of {ORDINAL_CLASSES[name]}, got {value!r}.")
        elif name == "tempo_bpm":
            low, high = TEMPO_RANGE_BPM
            if not _is_number(value) or not low <= value <= high:
                raise ValueError(f"expect.tempo_bpm must be a number in [{low:g}, {high:g}], got {value!r}.")
            value = float(value)
        elif name == "key":
            if parse_key_name(value) is None:
                raise ValueError(
                    f"expect.key must name a key like 'E flat major' or 'F# minor', got {value!r}."
                )
        elif name in ("instrument", "genre"):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"expect.{name} must be a non-empty string, got {value!r}.")
            value = value.strip().lower()
        elif name == "speakers":
            if not isinstance(value, list) or not value or any(gender not in GENDERS for gender in value):
                raise ValueError(f"expect.speakers must be a non-empty list of {GENDERS}, got {value!r}.")
            tags = speaker_indices(text)
            if sorted(tags) != list(range(len(value))):
                raise ValueError(
                    f"expect.speakers gives {len(value)} genders but the text's speaker tags are "
                    f"{' '.join(f'[S{tag}]' for tag in tags)} (expected [S0]..[S{len(value) - 1}])."
                )
        checked[name] = value
    return checked


def parse_case(record: Any) -> EvaluationCase:
    """Validate one decoded case object; raises ValueError naming the offending field."""
    if not isinstance(record, dict):
        raise ValueError(f"each line must be a JSON object, got {type(record).__name__}.")
    for key in ("id", "task", "instruction", "text"):
        if key not in record:
            raise ValueError(f"missing required key {key!r}.")
    case_id, task, language = record["id"], record["task"], record.get("language")
    if not isinstance(case_id, str) or not _ID_PATTERN.match(case_id):
        raise ValueError(
            f"'id' must be a non-empty string of letters, digits, '.', '_', '-', got {case_id!r}."
        )
    if task not in TASKS:
        raise ValueError(f"'task' must be one of {TASKS}, got {task!r}.")
    if task == "music":
        language = language or ""  # music has no spoken language; the corpus writes ""
    elif language not in SPEECH_LANGUAGES:
        raise ValueError(f"'language' of a {task} case must be one of {SPEECH_LANGUAGES}, got {language!r}.")
    instruction, text = record["instruction"], record["text"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("'instruction' must be a non-empty string.")
    if not isinstance(text, str) or (task != "music" and not text.strip()):
        raise ValueError(f"'text' must be a string, non-empty for a {task} case.")
    if task == "dialogue" and not speaker_indices(text):
        raise ValueError("a dialogue 'text' needs speaker tags ([S0] ... [S1] ...).")
    length = record.get("audio_length_in_s")
    if length is not None and (not _is_number(length) or length <= 0):
        raise ValueError(f"'audio_length_in_s' must be a positive number, got {length!r}.")
    expect = _check_expect(record.get("expect", {}), task, text)
    contrast = _check_contrast(record.get("contrast"), task)
    reference = record.get("reference_audio")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        raise ValueError(f"'reference_audio' must be a non-empty path, got {reference!r}.")
    return EvaluationCase(
        case_id, task, language, instruction, text, None if length is None else float(length), expect,
        contrast, reference,
    )  # fmt: skip


def _check_contrast(contrast: Any, task: str) -> dict[str, str] | None:
    if contrast is None:
        return None
    if not isinstance(contrast, dict) or not isinstance(contrast.get("pair"), str) or not contrast["pair"]:
        raise ValueError(
            f"'contrast' must be an object with a 'pair' id and an 'attribute', got {contrast!r}."
        )
    attribute = contrast.get("attribute")
    if attribute not in CONTRAST_EXPECT_KEYS:
        raise ValueError(
            f"unknown contrast attribute {attribute!r}; known: {', '.join(CONTRAST_EXPECT_KEYS)}."
        )
    wanted_task = CONTRAST_EXPECT_KEYS[attribute][0]
    if task != wanted_task:
        raise ValueError(f"a {attribute} contrast pairs {wanted_task} cases, not {task}.")
    return {"pair": contrast["pair"], "attribute": attribute}


def _pair_problem(first: EvaluationCase, second: EvaluationCase) -> str | None:
    """Why two cases cannot be the sides of one contrast pair, or None when they can."""
    attribute = first.contrast["attribute"]
    if second.contrast["attribute"] != attribute:
        return f"its sides name different attributes ({attribute}, {second.contrast['attribute']})."
    for name in ("task", "language", "text", "audio_length_in_s"):
        if getattr(first, name) != getattr(second, name):
            return f"its sides differ in {name} ({getattr(first, name)!r} vs {getattr(second, name)!r})."
    if first.instruction == second.instruction:
        return "its sides have the same instruction."
    key = CONTRAST_EXPECT_KEYS[attribute][1]
    if key not in first.expect or key not in second.expect:
        return f"a {attribute} pair needs expect.{key} on both sides."
    if first.expect[key] == second.expect[key]:
        return f"its sides expect the same {key} ({first.expect[key]!r})."
    names = set(first.expect) | set(second.expect)
    # A dialogue pair swaps its speakers, and with them whatever else is stated per speaker.
    allowed = {key, "speaker_ages"} if attribute == "dialogue" else {key}
    others = sorted(name for name in names - allowed if first.expect.get(name) != second.expect.get(name))
    if others:
        return f"its sides differ in more than one attribute: {', '.join([key, *others])}."
    if attribute == "dialogue":
        speakers = first.expect[key]
        if len(set(speakers)) != 2 or second.expect[key] != speakers[::-1]:
            return f"a dialogue pair needs two speakers of different gender in swapped order, got {speakers} and {second.expect[key]}."
    return None


def check_pairs(cases: list[EvaluationCase], path: str | os.PathLike) -> None:
    """Every contrast pair has exactly two sides that differ in its attribute only.

    Raises:
        CaseFileError: `path:line: problem`, naming the line of the side that breaks the rule.
    """
    sides: dict[str, list[EvaluationCase]] = {}
    for case in cases:
        if case.contrast:
            group = sides.setdefault(case.contrast["pair"], [])
            if len(group) == 2:
                raise CaseFileError(
                    f"{path}:{case.line}: pair {case.contrast['pair']!r} already has two sides "
                    f"(lines {group[0].line} and {group[1].line})."
                )
            group.append(case)
    for pair, group in sides.items():
        if len(group) == 1:
            raise CaseFileError(f"{path}:{group[0].line}: pair {pair!r} has only this side.")
        problem = _pair_problem(*group)
        if problem:
            raise CaseFileError(f"{path}:{group[1].line}: pair {pair!r}: {problem}")


def load_cases(path: str | os.PathLike) -> list[EvaluationCase]:
    """Read and validate a case file.

    Raises:
        CaseFileError: for a missing file, an empty file, malformed JSON, an invalid case, a duplicate id or
            a broken contrast pair (`check_pairs`); the message is `path:line: problem`.
    """
    cases: list[EvaluationCase] = []
    seen: dict[str, int] = {}
    for line_number, record in _jsonl_records(path):
        try:
            case = parse_case(record)
        except ValueError as err:
            raise CaseFileError(f"{path}:{line_number}: {err}") from None
        if case.id in seen:
            raise CaseFileError(
                f"{path}:{line_number}: duplicate id {case.id!r} (first on line {seen[case.id]})."
            )
        seen[case.id] = line_number
        cases.append(replace(case, line=line_number))
    if not cases:
        raise CaseFileError(f"{path}: contains no cases.")
    check_pairs(cases, path)
    return cases


def resolve_references(cases: list[EvaluationCase], folder: str | os.PathLike, path: str) -> dict[str, str]:
    """`{case id: absolute reference audio path}` for the cases that name one.

    Raises:
        CaseFileError: `path:line: ...` for a case whose reference audio is not in `folder`.
    """
    found = {}
    for case in cases:
        if case.reference_audio:
            audio = os.path.abspath(os.path.join(folder, case.reference_audio))
            if not os.path.isfile(audio):
                raise CaseFileError(f"{path}:{case.line}: reference audio {audio} does not exist.")
            found[case.id] = audio
    return found


def _speaker_genders(row: dict[str, Any]) -> list[str] | None:
    speakers = row.get("speakers", row.get("speaker_genders"))
    if not isinstance(speakers, list) or not speakers:
        return None
    genders = [speaker.get("gender") if isinstance(speaker, dict) else speaker for speaker in speakers]
    return genders if all(gender in GENDERS for gender in genders) else None


def _true_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """The expect-vocabulary attributes a metadata row states, limited to those its task can be checked for
    (a dialogue row's overall `gender` is not an attribute of one voice); absent or unknown values are left out."""
    attributes: dict[str, Any] = {}
    for name, classes in ORDINAL_CLASSES.items():
        if row.get(name) in classes:
            attributes[name] = row[name]
    tempo = row.get("tempo_bpm", row.get("bpm"))
    if _is_number(tempo) and tempo > 0:
        attributes["tempo_bpm"] = float(tempo)
    if parse_key_name(row.get("key")) is not None:
        attributes["key"] = row["key"]
    for name in ("instrument", "genre"):
        if isinstance(row.get(name), str) and row[name].strip():
            attributes[name] = row[name].strip().lower()
    speakers = _speaker_genders(row)
    if speakers is not None:
        attributes["speakers"] = speakers
    return {name: value for name, value in attributes.items() if row["task"] in EXPECT_TASKS[name]}


def load_ground_truth(folder: str | os.PathLike) -> list[GroundTruthItem]:
    """Read `folder/metadata.jsonl`; rows need `path`, `task` and `text`, and the file must exist.

    Raises:
        CaseFileError: naming the line of a row that lacks a field or points at a missing file.
    """
    metadata = os.path.join(folder, "metadata.jsonl")
    items: list[GroundTruthItem] = []
    for line_number, row in _jsonl_records(metadata):
        where = f"{metadata}:{line_number}"
        if not isinstance(row, dict):
            raise CaseFileError(f"{where}: each line must be a JSON object.")
        missing = [key for key in ("path", "task", "text") if key not in row]
        if missing:
            raise CaseFileError(f"{where}: missing {', '.join(missing)}.")
        if row["task"] not in TASKS:
            raise CaseFileError(f"{where}: task {row['task']!r} is not one of {TASKS}.")
        path = os.path.join(folder, row["path"])
        if not os.path.isfile(path):
            raise CaseFileError(f"{where}: audio file {path} does not exist.")
        language = row.get("language") or ""
        items.append(GroundTruthItem(path, row["task"], language, row["text"] or "", _true_attributes(row)))
    if not items:
        raise CaseFileError(f"{metadata}: contains no rows.")
    return items


def split_ground_truth(
    items: list[GroundTruthItem], calibration_fraction: float = 0.5
) -> tuple[list[GroundTruthItem], list[GroundTruthItem]]:
    """Deterministic `(calibration, held_out)` split by a hash of each file name.

    Hashing (rather than position) keeps every clip on the same side when the metadata is reordered or
    grows, so a saved calibration never silently starts being scored on its own fitting data.
    """
    calibration, held_out = [], []
    for item in items:
        bucket = zlib.crc32(item.key.encode("utf-8")) % 1000 / 1000.0
        (calibration if bucket < calibration_fraction else held_out).append(item)
    return calibration, held_out


def fingerprint(folder: str | os.PathLike) -> str:
    """CRC32 of the ground truth's metadata file: changes whenever the corpus is regenerated."""
    with open(os.path.join(folder, "metadata.jsonl"), "rb") as handle:
        return f"{zlib.crc32(handle.read()):08x}"
