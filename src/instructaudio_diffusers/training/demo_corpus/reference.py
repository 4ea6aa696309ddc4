"""Reference token boundaries and oracle durations from synthesizer timings, and boundary scoring.

The processor's tokens and the synthesizer's phones are two phone strings of one utterance that differ
in inventory, in dialect and in the odd word (a G2P choice, a linking r). Both are mapped onto common
units (`phone_sets`) and aligned by a global (Needleman-Wunsch) alignment whose costs follow the units'
broad classes: a vowel may stand for another vowel, never for a silence; silences cost little to skip on
the synthesizer's side and nothing on a word boundary's or a tag's.

From the alignment every synthesizer phone goes to one token, in order, so the tokens tile the clip:
an aligned phone to its token; a silence the text does not mark to the nearest word boundary, tag or
pause token; any other unaligned phone to the token before it. Rounding the token ends to latent frames
gives the **oracle durations**. A token boundary is a **reference boundary** where a phone or pause token
meets its own matched phone (same broad class) at a boundary the synthesizer itself timed; the errors
of other durations are measured there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .levels import SAMPLING_RATE
from .phone_sets import (
    CONSONANT,
    GLIDE,
    OPTIONAL_SILENCE,
    PAUSE,
    PHONE,
    SILENCE,
    SILENCE_CLASS,
    VOWEL,
    engine_units,
    token_units,
    unit_class,
)
from .timings import SynthPhone

__all__ = [
    "FRAMES_PER_SECOND",
    "Reference",
    "align_units",
    "boundary_errors",
    "build_reference",
    "latent_frames",
    "summarize_errors",
    "uniform_durations",
]

HOP_LENGTH = 256  # the demo Mel-VAE's mel hop, samples at 22,050 Hz
LATENT_DOWNSAMPLING = 2  # mel frames per latent frame
FRAMES_PER_SECOND = SAMPLING_RATE / (HOP_LENGTH * LATENT_DOWNSAMPLING)

# Costs of the alignment. Skipping a real phone costs 1; a substitution within a class costs less than
# skipping both, a vowel for a consonant almost as much, and a silence never stands for a phone.
_DELETION_COST = {PHONE: 1.0, PAUSE: 0.5, OPTIONAL_SILENCE: 0.0}
_INSERTION_COST_PHONE, _INSERTION_COST_SILENCE = 1.0, 0.3
_SUBSTITUTION_COST = {
    frozenset({VOWEL}): 0.6,
    frozenset({CONSONANT}): 0.8,
    frozenset({GLIDE}): 0.6,
    frozenset({GLIDE, VOWEL}): 0.5,
    frozenset({GLIDE, CONSONANT}): 0.8,
    frozenset({VOWEL, CONSONANT}): 1.6,
}
_UNKNOWN_COST = 1.0
_NEVER = 1e6
# Pairs whose boundaries are trusted: same class, or a glide for a vowel or a consonant.
_MATCHING_CLASSES = {frozenset({VOWEL}), frozenset({CONSONANT}), frozenset({GLIDE}), frozenset({SILENCE_CLASS}),
                     frozenset({GLIDE, VOWEL}), frozenset({GLIDE, CONSONANT})}  # fmt: skip


def latent_frames(num_samples: int) -> int:
    """Latent frames of a clip of `num_samples` samples: `ceil((num_samples // 256) / 2)`."""
    return math.ceil((num_samples // HOP_LENGTH) / LATENT_DOWNSAMPLING)


def uniform_durations(num_tokens: int, num_frames: int) -> np.ndarray:
    """Durations of today's uniform stretch: frame `j` of `T` goes to token `floor((j + 0.5) * L / T)`."""
    tokens = np.floor((np.arange(num_frames) + 0.5) * num_tokens / num_frames).astype(np.int64)
    return np.bincount(tokens, minlength=num_tokens)


# ---------------------------------------------------------------------------------------------- alignment
def _pair_cost(unit_a: str, unit_b: str) -> float:
    if unit_a == unit_b:
        return 0.0
    classes = frozenset({unit_class(unit_a), unit_class(unit_b)})
    if SILENCE_CLASS in classes:
        return _NEVER
    return _SUBSTITUTION_COST.get(classes, _UNKNOWN_COST)


def _matches(unit_a: str, unit_b: str) -> bool:
    return frozenset({unit_class(unit_a), unit_class(unit_b)}) in _MATCHING_CLASSES


def align_units(
    units_a: list[str], units_b: list[str], deletion_costs: np.ndarray, insertion_costs: np.ndarray
) -> list[tuple[int | None, int | None]]:
    """Global alignment of two unit strings, minimising the summed cost.

    Args:
        units_a, units_b: the two strings (processor units, synthesizer units).
        deletion_costs: `(len(units_a),)` cost of leaving each unit of `a` unaligned.
        insertion_costs: `(len(units_b),)` cost of leaving each unit of `b` unaligned.

    Returns:
        The alignment in order, as `(index in a, index in b)` pairs with `None` for a gap.
    """
    n, m = len(units_a), len(units_b)
    substitution = np.array([[_pair_cost(a, b) for b in units_b] for a in units_a]).reshape(n, m)
    # Row by row: a cell comes from the diagonal or from above, then insertions run along the row,
    # which is a running minimum once the row's insertion costs are taken out as a cumulative sum.
    insertion_sum = np.concatenate([[0.0], np.cumsum(insertion_costs)])
    cost = np.empty((n + 1, m + 1))
    cost[0] = insertion_sum
    for i in range(1, n + 1):
        entry = np.empty(m + 1)
        entry[0] = cost[i - 1, 0] + deletion_costs[i - 1]
        entry[1:] = np.minimum(
            cost[i - 1, :-1] + substitution[i - 1], cost[i - 1, 1:] + deletion_costs[i - 1]
        )
        cost[i] = insertion_sum + np.minimum.accumulate(entry - insertion_sum)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and np.isclose(cost[i, j], cost[i - 1, j - 1] + substitution[i - 1, j - 1]):
            i, j = i - 1, j - 1
            pairs.append((i, j))
        elif i > 0 and np.isclose(cost[i, j], cost[i - 1, j] + deletion_costs[i - 1]):
            i -= 1
            pairs.append((i, None))
        else:
            j -= 1
            pairs.append((None, j))
    return pairs[::-1]


# ---------------------------------------------------------------------------------------------- reference
@dataclass
class Reference:
    """A clip's reference boundaries and oracle durations.

    Attributes:
        tokens: the processor's tokens.
        latent_frames: `T`, the clip's latent frames.
        boundary_index: `(B,)` int, `k` of each reference boundary: the boundary between token `k - 1`
            and token `k`, which a set of durations places at `sum(durations[:k])`.
        boundary_seconds: `(B,)` where the synthesizer put it, seconds.
        oracle_durations: `(len(tokens),)` int latent frames summing to `latent_frames`.
        counts: phone tokens, matched phone tokens, synthesizer phones, unaligned and unknown phones.
    """

    tokens: list[str]
    latent_frames: int
    boundary_index: np.ndarray
    boundary_seconds: np.ndarray
    oracle_durations: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def boundary_frames(self) -> np.ndarray:
        """`(B,)` reference boundaries rounded to latent frames (where the oracle durations put them)."""
        return np.clip(np.round(self.boundary_seconds * FRAMES_PER_SECOND), 0, self.latent_frames).astype(int)

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "latent_frames": self.latent_frames,
            "boundary_index": self.boundary_index.tolist(),
            "boundary_seconds": [round(float(s), 5) for s in self.boundary_seconds],
            "oracle_durations": self.oracle_durations.tolist(),
            "counts": self.counts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        return cls(
            list(data["tokens"]),
            int(data["latent_frames"]),
            np.asarray(data["boundary_index"], dtype=int),
            np.asarray(data["boundary_seconds"], dtype=float),
            np.asarray(data["oracle_durations"], dtype=int),
            dict(data.get("counts", {})),
        )


def _prepare_phones(phones: list[SynthPhone]) -> list[tuple[tuple[str, ...], float, float]]:
    """`(units, start, end)` per phone: unit-less phones (linking marks) join the phone before them,
    consecutive silences become one, and names the tables lack become the unknown unit `?`."""
    prepared: list[tuple[tuple[str, ...], float, float]] = []
    for phone in phones:
        units = engine_units(phone.phone_set, phone.name)
        units = ("?",) if units is None else units
        if prepared and (not units or (units == (SILENCE,) and prepared[-1][0] == (SILENCE,))):
            previous_units, start, _ = prepared[-1]
            prepared[-1] = (previous_units, start, phone.end_s)
        elif units:
            prepared.append((units, phone.start_s, phone.end_s))
    return prepared


def build_reference(tokens: list[str], phones: list[SynthPhone], num_samples: int) -> Reference:
    """Align `tokens` with the synthesizer's `phones` (tiling the clip) and derive the reference.

    Args:
        tokens: the processor's token strings (`processor.phonemize(text)`).
        phones: the clip's phones in clip seconds (`timings.clip_timings`).
        num_samples: the clip's length in samples at 22,050 Hz.
    """
    token_of_unit, kinds, units_a, deletion = [], [], [], []
    for index, token in enumerate(tokens):
        units, kind = token_units(token)
        kinds.append(kind)
        units_a += units
        token_of_unit += [index] * len(units)
        deletion += [_DELETION_COST[kind]] * len(units)
    prepared = _prepare_phones(phones)
    # Each synthesizer unit: its phone, its span (a phone's span shared equally by its units), and
    # whether it starts or ends the phone (only those edges were timed by the synthesizer).
    units_b, phone_of_unit, spans, first_of_phone, last_of_phone = [], [], [], [], []
    for phone_index, (units, start, end) in enumerate(prepared):
        edges = np.linspace(start, end, len(units) + 1)
        for position, unit in enumerate(units):
            units_b.append(unit)
            phone_of_unit.append(phone_index)
            spans.append((edges[position], edges[position + 1]))
            first_of_phone.append(position == 0)
            last_of_phone.append(position == len(units) - 1)
    insertion = [_INSERTION_COST_SILENCE if unit == SILENCE else _INSERTION_COST_PHONE for unit in units_b]
    pairs = align_units(units_a, units_b, np.array(deletion), np.array(insertion))

    partner_of_b = {b: a for a, b in pairs if a is not None and b is not None}
    owner = _owners(units_b, partner_of_b, token_of_unit, kinds)
    num_frames = latent_frames(num_samples)
    duration_s = num_samples / SAMPLING_RATE
    token_end = np.zeros(len(tokens))
    first_owned: dict[int, int] = {}
    last_owned: dict[int, int] = {}
    for b, token in enumerate(owner):
        first_owned.setdefault(token, b)
        last_owned[token] = b
    cursor = 0.0
    for token in range(len(tokens)):
        if token in last_owned:
            cursor = spans[last_owned[token]][1]
        token_end[token] = cursor
    token_end[-1] = duration_s
    end_frames = np.clip(np.round(token_end * FRAMES_PER_SECOND), 0, num_frames).astype(int)
    end_frames[-1] = num_frames
    oracle = np.diff(np.concatenate([[0], end_frames]))

    first_unit_of_token: dict[int, int] = {}
    last_unit_of_token: dict[int, int] = {}
    for a, token in enumerate(token_of_unit):
        first_unit_of_token.setdefault(token, a)
        last_unit_of_token[token] = a
    boundaries: dict[int, float] = {}
    matched_tokens = 0
    for token, kind in enumerate(kinds):
        if kind == OPTIONAL_SILENCE or token not in first_owned:
            continue
        start_b, end_b = first_owned[token], last_owned[token]
        a_first, a_last = first_unit_of_token[token], last_unit_of_token[token]
        start_ok = (
            partner_of_b.get(start_b) == a_first
            and first_of_phone[start_b]
            and _matches(units_a[a_first], units_b[start_b])
        )
        end_ok = (
            partner_of_b.get(end_b) == a_last
            and last_of_phone[end_b]
            and _matches(units_a[a_last], units_b[end_b])
        )
        if start_ok and 0 < token:
            boundaries[token] = spans[start_b][0]
        if end_ok and token + 1 < len(tokens):
            boundaries[token + 1] = spans[end_b][1]
        matched_tokens += kind == PHONE and start_ok and end_ok
    index = np.array(sorted(boundaries), dtype=int)
    counts = {
        "phone_tokens": kinds.count(PHONE),
        "matched_phone_tokens": int(matched_tokens),
        "synth_phones": len(prepared),
        "unaligned_synth_units": sum(1 for b in range(len(units_b)) if b not in partner_of_b),
        "unknown_synth_phones": sum(1 for units, _, _ in prepared if units == ("?",)),
    }
    return Reference(
        list(tokens), num_frames, index, np.array([boundaries[k] for k in index], dtype=float), oracle, counts
    )


def _owners(
    units_b: list[str], partner_of_b: dict[int, int], token_of_unit: list[int], kinds: list[str]
) -> list[int]:
    """The token each synthesizer unit belongs to, non-decreasing along the clip.

    An aligned unit belongs to its partner's token. An unaligned silence goes to the first token from
    the current one on that may hold a silence (word boundary, tag, pause) and lies before the next
    aligned unit's token; other unaligned units stay with the current token.
    """
    next_aligned = [len(kinds) - 1] * len(units_b)
    upcoming = len(kinds) - 1
    for b in range(len(units_b) - 1, -1, -1):
        if b in partner_of_b:
            upcoming = token_of_unit[partner_of_b[b]]
        next_aligned[b] = upcoming
    owners: list[int] = []
    current: int | None = None
    for b, unit in enumerate(units_b):
        if b in partner_of_b:
            current = token_of_unit[partner_of_b[b]]
        else:
            low = 0 if current is None else current
            holders = [t for t in range(low, next_aligned[b] + 1) if kinds[t] != PHONE]
            if unit == SILENCE and holders:
                current = holders[0]
            elif current is None:
                current = next_aligned[b]
        owners.append(current)
    return owners


# ---------------------------------------------------------------------------------------------- scoring
def boundary_errors(durations: np.ndarray, reference: Reference) -> np.ndarray:
    """Signed errors, in latent frames, of `durations` at the reference boundaries (hypothesis - reference).

    Args:
        durations: `(len(reference.tokens),)` int latent frames per token, summing to `reference.latent_frames`.

    Raises:
        ValueError: when the durations do not have one entry per token or do not sum to the clip's frames.
    """
    durations = np.asarray(durations)
    if durations.shape != (len(reference.tokens),):
        raise ValueError(
            f"{durations.shape[0] if durations.ndim else 0} durations for {len(reference.tokens)} tokens."
        )
    if int(durations.sum()) != reference.latent_frames or (durations < 0).any():
        raise ValueError(
            f"durations sum to {int(durations.sum())} frames (min {durations.min()}); the clip has "
            f"{reference.latent_frames} and none may be negative."
        )
    position = np.concatenate([[0], np.cumsum(durations)])
    return position[reference.boundary_index] - reference.boundary_frames


def summarize_errors(errors: np.ndarray) -> dict[str, float]:
    """Median absolute error (latent frames), share within 2 frames, mean absolute error, and the count."""
    absolute = np.abs(np.asarray(errors, dtype=float))
    if absolute.size == 0:
        return {"boundaries": 0, "median_abs_frames": float("nan"), "within_2_frames": float("nan"),
                "mean_abs_frames": float("nan")}  # fmt: skip
    return {
        "boundaries": int(absolute.size),
        "median_abs_frames": float(np.median(absolute)),
        "within_2_frames": float(np.mean(absolute <= 2)),
        "mean_abs_frames": float(absolute.mean()),
    }
