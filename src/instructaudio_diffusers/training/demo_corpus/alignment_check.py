"""Checking durations against the synthesizers' truth: one record per clip, and the per-language report.

A clip's record holds its reference (`reference.Reference`) and checks that the timings fit the stored
audio: the re-rendered length against the file's; at every edge between speech and a silence of the
timings (the clip's start and end, pauses), where the audio's level crosses a threshold; and the level
inside the synthesizer's silences and vowels.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .levels import SAMPLING_RATE, active_bounds
from .phone_sets import GLIDE, SILENCE, VOWEL, engine_units, unit_class
from .reference import Reference, boundary_errors, build_reference, summarize_errors, uniform_durations
from .timings import ClipTimings

__all__ = [
    "MIN_MATCHED_SHARE",
    "RECORD_VERSION",
    "audio_checks",
    "clip_record",
    "format_report",
    "score_records",
]

# Bump when a record's content changes, so that cached records of older code are computed again.
RECORD_VERSION = 1
# A clip whose alignment matches fewer of its phone tokens than this is left out of the scores.
MIN_MATCHED_SHARE = 0.6
_SILENCE_MIN_S, _VOWEL_MIN_S, _INSIDE_S = 0.08, 0.05, 0.02  # phones long enough to measure, edges skipped
# Speech/silence edges: a 10 ms window every 5 ms is speech when within 20 dB of the active part's RMS
# (the engines' silences and reverberant tails lie 35-60 dB below). The crossing is searched within
# 100 ms of the timed edge, on the speech side up to the silence's middle. Only edges at a sonorant
# (vowel, glide, nasal, liquid) are measured: a stop's closure or a weak fricative is quiet by nature.
_BLOCK_S, _SPEECH_DB, _SEARCH_S, _EDGE_MIN_SILENCE_S = 0.005, -20.0, 0.1, 0.05
_SONORANT_CONSONANTS = frozenset({"M", "N", "NG", "L", "R", "m", "n", "ng", "l"})


def _level_db(audio: np.ndarray, start_s: float, end_s: float, reference_rms: float) -> float:
    part = audio[int(start_s * SAMPLING_RATE) : int(end_s * SAMPLING_RATE)]
    rms = float(np.sqrt(np.mean(np.square(part, dtype=np.float64)))) if part.size else 0.0
    return 20 * np.log10((rms + 1e-9) / reference_rms)


def _is_silence(units: tuple[str, ...] | None) -> bool:
    return units == (SILENCE,)


def _is_sonorant(units: tuple[str, ...] | None) -> bool:
    return bool(units) and all(
        unit_class(unit) in (VOWEL, GLIDE) or unit in _SONORANT_CONSONANTS for unit in units
    )


def _edge_errors(
    timings: ClipTimings, audio: np.ndarray, active_rms: float
) -> tuple[list[float], list[float]]:
    """Timed minus heard edge, seconds: `(onsets, offsets)`, a sonorant starting after / stopping before a
    silence of at least `_EDGE_MIN_SILENCE_S` (consecutive silence phones taken together)."""
    block = int(_BLOCK_S * SAMPLING_RATE)
    blocks = audio[: audio.size // block * block].reshape(-1, block).astype(np.float64)
    energy = np.mean(np.square(blocks), axis=1)
    window_db = 10 * np.log10((energy[:-1] + energy[1:]) / 2 + 1e-18) - 20 * np.log10(active_rms)
    centres = np.arange(1, blocks.shape[0]) * _BLOCK_S
    speech = window_db > _SPEECH_DB
    spans: list[tuple[float, float, tuple[str, ...] | None]] = []  # silences merged
    for phone in timings.phones:
        units = engine_units(phone.phone_set, phone.name)
        if spans and _is_silence(units) and _is_silence(spans[-1][2]):
            spans[-1] = (spans[-1][0], phone.end_s, units)
        else:
            spans.append((phone.start_s, phone.end_s, units))
    onsets, offsets = [], []
    for index, (start, end, units) in enumerate(spans):
        if not _is_silence(units) or end - start < _EDGE_MIN_SILENCE_S:
            continue
        middle = (start + end) / 2
        if index > 0 and _is_sonorant(spans[index - 1][2]):
            near = np.flatnonzero(
                (centres >= start - _SEARCH_S) & (centres <= min(middle, start + _SEARCH_S)) & speech
            )
            if near.size:
                offsets.append(start - centres[near[-1]])
        if index + 1 < len(spans) and _is_sonorant(spans[index + 1][2]):
            near = np.flatnonzero(
                (centres >= max(middle, end - _SEARCH_S)) & (centres <= end + _SEARCH_S) & speech
            )
            if near.size:
                onsets.append(end - centres[near[0]])
    return onsets, offsets


def audio_checks(timings: ClipTimings, audio: np.ndarray) -> dict[str, Any]:
    """How the timings fit `audio` (the stored clip, float samples at 22,050 Hz).

    Returns:
        `length_match` (re-rendered length == file length); `onset_errors_ms` and `offset_errors_ms`
        (timed minus heard time of a sonorant starting after, or stopping before, a silence); and the
        interior levels (dB against the active part's RMS, 20 ms off each side) of the engines'
        silences and of vowels long enough to measure.
    """
    start, end = active_bounds(audio)
    active_rms = float(np.sqrt(np.mean(np.square(audio[start:end], dtype=np.float64)))) + 1e-12
    silences, vowels = [], []
    for phone in timings.phones:
        units = engine_units(phone.phone_set, phone.name)
        length = phone.end_s - phone.start_s
        inside = (phone.start_s + _INSIDE_S, phone.end_s - _INSIDE_S)
        if _is_silence(units) and phone.phone_set != "silence" and length >= _SILENCE_MIN_S:
            silences.append(_level_db(audio, *inside, active_rms))
        elif units and len(units) == 1 and unit_class(units[0]) == VOWEL and length >= _VOWEL_MIN_S:
            vowels.append(_level_db(audio, *inside, active_rms))
    onsets, offsets = _edge_errors(timings, audio, active_rms)
    return {
        "length_match": timings.num_samples == audio.size,
        "onset_errors_ms": [round(1000 * error, 1) for error in onsets],
        "offset_errors_ms": [round(1000 * error, 1) for error in offsets],
        "silence_levels_db": [round(level, 1) for level in silences],
        "vowel_levels_db": [round(level, 1) for level in vowels],
    }


def clip_record(
    row: dict[str, Any], tokens: list[str], timings: ClipTimings, audio: np.ndarray
) -> dict[str, Any]:
    """The JSON record of one clip: identity, reference, checks, and whether it is scored (and why not)."""
    reference = build_reference(tokens, timings.phones, timings.num_samples)
    checks = audio_checks(timings, audio)
    counts = reference.counts
    matched_share = counts["matched_phone_tokens"] / max(1, counts["phone_tokens"])
    excluded = None
    if not checks["length_match"]:
        excluded = f"re-rendered length {timings.num_samples} differs from the file's {audio.size} samples"
    elif matched_share < MIN_MATCHED_SHARE:
        excluded = f"only {matched_share:.0%} of phone tokens matched the synthesizer's phones"
    engines = sorted({row[key] for key in ("engine", "s0_engine", "s1_engine") if row.get(key)})
    return {
        "id": row["id"],
        "version": RECORD_VERSION,
        "language": row["language"],
        "task": row["task"],
        "engine": "+".join(engines),
        "num_samples": timings.num_samples,
        "matched_share": round(matched_share, 4),
        "excluded": excluded,
        "checks": checks,
        "reference": reference.to_json(),
    }


def score_records(
    records: list[dict[str, Any]], durations: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Per-language (and per language and engine) boundary scores of `durations` and of the uniform stretch.

    Args:
        records: clip records (`clip_record`); excluded ones are counted, not scored.
        durations: `{clip id: (tokens,) int durations}`; `None` scores only the uniform stretch.

    Returns:
        `{"groups": {group: {"clips", "durations": summary, "uniform": summary}}, "skipped": {id: why}}`,
        groups named `en`, `zh`, `mixed`, `all`, and `en/flite` etc.
    """
    errors: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: {"durations": [], "uniform": []})
    clips: dict[str, int] = defaultdict(int)
    skipped: dict[str, str] = {}
    for record in records:
        if record["excluded"]:
            skipped[record["id"]] = f"excluded: {record['excluded']}"
            continue
        reference = Reference.from_json(record["reference"])
        groups = ("all", record["language"], f"{record['language']}/{record['engine']}")
        if durations is not None:
            if record["id"] not in durations:
                skipped[record["id"]] = "no durations given"
                continue
            try:
                given = boundary_errors(durations[record["id"]], reference)
            except ValueError as err:
                skipped[record["id"]] = f"unusable durations: {err}"
                continue
            for group in groups:
                errors[group]["durations"].append(given)
        uniform = boundary_errors(
            uniform_durations(len(reference.tokens), reference.latent_frames), reference
        )
        for group in groups:
            errors[group]["uniform"].append(uniform)
            clips[group] += 1
    report = {
        group: {
            "clips": clips[group],
            **{name: summarize_errors(np.concatenate(values)) for name, values in by_kind.items() if values},
        }
        for group, by_kind in sorted(errors.items(), key=lambda item: (item[0] != "all", item[0]))
    }
    return {"groups": report, "skipped": skipped}


def format_report(report: dict[str, Any]) -> str:
    """The report as a table: per group, median absolute error (frames) and share within 2 frames."""
    lines = [f"{'group':<24}{'clips':>7}{'boundaries':>12}   durations: median / <=2   uniform: median / <=2"]
    for group, entry in report["groups"].items():
        cells = []
        for name in ("durations", "uniform"):
            summary = entry.get(name)
            cells.append(
                f"{summary['median_abs_frames']:>6.1f} / {summary['within_2_frames']:>5.1%}"
                if summary
                else f"{'-':>15}"
            )
        count = (entry.get("durations") or entry["uniform"])["boundaries"]
        lines.append(f"{group:<24}{entry['clips']:>7}{count:>12}   {cells[0]:>23}   {cells[1]:>21}")
    if report["skipped"]:
        reasons: dict[str, int] = defaultdict(int)
        for why in report["skipped"].values():
            reasons[why.split(":")[0]] += 1
        lines.append("skipped: " + ", ".join(f"{count} ({why})" for why, count in sorted(reasons.items())))
    return "\n".join(lines)
