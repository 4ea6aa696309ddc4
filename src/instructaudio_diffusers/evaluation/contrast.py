"""Paired instruction contrasts: when only one attribute of the instruction changes, does the audio change
that way?

A contrast pair (see `cases`) is two generations with the same text, seed and length whose instructions
differ in one attribute. Its sides are ordered so that the *positive* side is the one the attribute's
feature should be higher for, and the pair's statistic is the feature of the positive side relative to the
negative side; the pair **succeeds** when the statistic is beyond the attribute's margin (`MEASURES`):

| attribute | positive side | statistic | succeeds when |
|---|---|---|---|
| gender | female | median F0 ratio, in semitones | > margin |
| pitch | high | median F0 ratio, in semitones | > margin |
| rate | fast | phones per second ratio - 1, in % | > margin |
| loudness | loud | active-speech level difference, in dB | > margin |
| tempo | faster BPM | log of the measured tempo ratio / log of the instructed ratio (1 = exact) | within 1 +- margin |
| mode | major | major-minor key-profile score difference at the pair's shared tonic | > margin |
| instrument | the first side's instrument | timbre moved along the axis between the two instruments' centroids, in centroid distances | > margin |
| dialogue | woman first | (S0/S1 F0 ratio of the woman-first side) / (that of the man-first side), in semitones | > margin |

Instrument: with standardised timbre vectors `x` and the calibration's instrument centroids `c_p`, `c_n`,
the statistic is `((x_p - x_n) . (c_p - c_n)) / |c_p - c_n|^2`, which is proportional to how much closer
each side is to its own instrument's centroid than to the other's (the difference of squared distances),
scaled so that 1 means "moved the whole distance between the centroids". It needs a calibration that has
both instruments; otherwise the pair is unscored.

Tempo: the measured ratio is `music.tempo_ratio` (the shift between the two sides' onset autocorrelations
on a log-lag axis), not the ratio of two beat-tracker estimates, whose octave and 3:2 errors on 6-s pieces
failed 8 of the 20 ground-truth pairs; the beat-tracked tempo stays as the absolute "within 8 %" column.
Mode: `music.mode_contrast` scores both sides at one tonic estimated from both, so a minor side cannot pass
for its relative major.

Dialogue: each side's turns are found from its own audio (`prosody.split_turns`: the active speech divided
by the turns' phoneme counts and snapped to the nearest silence), never from the reference; each speaker's
F0 is the median over its turns.

A side whose feature cannot be measured (no voiced frame, no beat) makes the pair fail, not vanish, so
silent or broken output cannot escape the accuracy. The margins were chosen on the ground-truth pairs of
the demo corpus (`training/corpus/contrast.py`, both sides rendered from the same sentence): each sits
well inside the ground truth's range (its smallest statistic is several margins away; see README
"Evaluation") and far above the run-to-run noise of the measurement, so a pass means a deliberate change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cases import CONTRAST_EXPECT_KEYS, EvaluationCase
from .classifiers import Calibration, NearestCentroidClassifier
from .music import mode_contrast, tempo_ratio

CONTRAST_ATTRIBUTES = tuple(CONTRAST_EXPECT_KEYS)


@dataclass(frozen=True)
class ContrastMeasure:
    """How one attribute's pairs are scored: the statistic's unit and the band a success must fall in."""

    unit: str
    margin: float
    two_sided: bool = False  # success when |statistic - 1| <= margin (tempo) instead of statistic > margin
    description: str = ""

    def succeeds(self, statistic: float) -> bool:
        if self.two_sided:
            return abs(statistic - 1.0) <= self.margin
        return statistic > self.margin


MEASURES: dict[str, ContrastMeasure] = {
    "gender": ContrastMeasure("semitones", 4.0, description="median F0, female over male side"),
    "pitch": ContrastMeasure("semitones", 2.0, description="median F0, high over low side"),
    "rate": ContrastMeasure("%", 15.0, description="phones per second, fast over slow side, minus 1"),
    "loudness": ContrastMeasure("dB", 6.0, description="active-speech level, loud minus soft side"),
    "tempo": ContrastMeasure(
        "log ratio / instructed",
        0.25,
        two_sided=True,
        description="log tempo ratio (onset autocorrelation shift) over log instructed ratio",
    ),  # fmt: skip
    "mode": ContrastMeasure(
        "score", 0.1, description="Krumhansl major-minor score at the shared tonic, major minus minor side"
    ),
    "instrument": ContrastMeasure(
        "centroid distances", 0.2, description="timbre shift along the axis between the two instruments"
    ),
    "dialogue": ContrastMeasure(
        "semitones", 4.0, description="S0/S1 F0 interval, woman-first minus man-first side"
    ),
}


@dataclass(frozen=True)
class ContrastPair:
    """Both sides of one pair, positive side first (see the module docstring)."""

    pair: str
    attribute: str
    positive: EvaluationCase
    negative: EvaluationCase


def _is_positive(attribute: str, case: EvaluationCase, other: EvaluationCase) -> bool:
    key = CONTRAST_EXPECT_KEYS[attribute][1]
    value, other_value = case.expect[key], other.expect[key]
    if attribute == "gender":
        return value == "female"
    if attribute == "dialogue":
        return value[0] == "female"
    if attribute == "tempo":
        return value > other_value
    if attribute == "instrument":
        return True  # unordered: the side listed first is the positive one
    order = {"pitch": ("low", "normal", "high"), "rate": ("slow", "normal", "fast"),
             "loudness": ("soft", "normal", "loud"), "mode": ("minor", "major")}[attribute]  # fmt: skip
    return order.index(value) > order.index(other_value)


def build_pairs(cases: list[EvaluationCase]) -> list[ContrastPair]:
    """The contrast pairs of a validated case list (`cases.check_pairs` has run), in file order."""
    sides: dict[str, list[EvaluationCase]] = {}
    for case in cases:
        if case.contrast:
            sides.setdefault(case.contrast["pair"], []).append(case)
    pairs = []
    for pair, group in sides.items():
        if len(group) != 2:
            continue  # a --limit cut the pair in half: it cannot be scored
        first, second = group
        attribute = first.contrast["attribute"]
        positive, negative = (first, second) if _is_positive(attribute, first, second) else (second, first)
        pairs.append(ContrastPair(pair, attribute, positive, negative))
    return pairs


def _semitones(high: float | None, low: float | None) -> float | None:
    if not high or not low:
        return None
    return float(12.0 * np.log2(high / low))


def _speaker_interval(features: dict[str, Any]) -> float | None:
    """S0 F0 over S1 F0 in semitones, from a dialogue's per-speaker F0."""
    speaker_f0 = features.get("speaker_f0_hz") or {}
    return _semitones(speaker_f0.get("0"), speaker_f0.get("1"))


def _instrument_shift(
    positive: dict[str, Any], negative: dict[str, Any], pair: ContrastPair, calibration: Calibration
) -> float | None:
    classifier = calibration.classifiers.get("instrument")
    wanted = (pair.positive.expect["instrument"], pair.negative.expect["instrument"])
    if not isinstance(classifier, NearestCentroidClassifier) or not set(wanted) <= set(classifier.centroids):
        raise LookupError("no calibrated centroids for these instruments")
    if not positive.get("timbre") or not negative.get("timbre"):
        return None
    mean, scale = np.array(classifier.mean), np.array(classifier.scale)

    def standardised(timbre: dict[str, float]) -> np.ndarray:
        return (np.array([timbre[name] for name in classifier.features]) - mean) / scale

    axis = np.array(classifier.centroids[wanted[0]]) - np.array(classifier.centroids[wanted[1]])
    shift = standardised(positive["timbre"]) - standardised(negative["timbre"])
    return float(shift @ axis / (axis @ axis))


def pair_statistic(
    pair: ContrastPair, positive: dict[str, Any], negative: dict[str, Any], calibration: Calibration
) -> float | None:
    """The pair's statistic from both sides' feature dicts (`ClipAnalyzer.measure`); None when a side has no
    measurable feature.

    Raises:
        LookupError: the attribute cannot be scored at all with this calibration (instrument centroids).
    """
    attribute = pair.attribute
    if attribute in ("gender", "pitch"):
        return _semitones(positive.get("f0_median_hz"), negative.get("f0_median_hz"))
    if attribute == "rate":
        fast, slow = positive.get("phones_per_s"), negative.get("phones_per_s")
        return 100.0 * (fast / slow - 1.0) if fast and slow else None
    if attribute == "loudness":
        loud, soft = positive.get("level_dbfs"), negative.get("level_dbfs")
        return loud - soft if loud is not None and soft is not None else None
    if attribute == "tempo":
        fast, slow = positive.get("onset_autocorrelation"), negative.get("onset_autocorrelation")
        measured = tempo_ratio(fast, slow) if fast and slow else None
        instructed = pair.positive.expect["tempo_bpm"] / pair.negative.expect["tempo_bpm"]
        return float(np.log(measured) / np.log(instructed)) if measured else None
    if attribute == "mode":
        major, minor = positive.get("chroma"), negative.get("chroma")
        return mode_contrast(np.array(major), np.array(minor)) if major and minor else None
    if attribute == "instrument":
        return _instrument_shift(positive, negative, pair, calibration)
    first, second = _speaker_interval(positive), _speaker_interval(negative)
    return first - second if first is not None and second is not None else None


def judge_pair(
    pair: ContrastPair, positive: dict[str, Any], negative: dict[str, Any], calibration: Calibration
) -> dict[str, Any]:
    """`{"pair", "attribute", "positive", "negative", "statistic", "unit", "margin", "success"}`;
    `success` is None only when the attribute cannot be scored with this calibration."""
    measure = MEASURES[pair.attribute]
    try:
        statistic = pair_statistic(pair, positive, negative, calibration)
        success = statistic is not None and measure.succeeds(statistic)
    except LookupError:
        statistic, success = None, None
    return {
        "pair": pair.pair,
        "attribute": pair.attribute,
        "positive": pair.positive.id,
        "negative": pair.negative.id,
        "statistic": statistic,
        "unit": measure.unit,
        "margin": measure.margin,
        "success": success,
    }


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96); None for no trials."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def summarize_pairs(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per attribute: accuracy over scored pairs, its Wilson 95 % interval, the median statistic, the margin."""
    summary = {}
    for attribute in CONTRAST_ATTRIBUTES:
        rows = [row for row in results if row["attribute"] == attribute]
        if not rows:
            continue
        scored = [row for row in rows if row["success"] is not None]
        correct = sum(bool(row["success"]) for row in scored)
        statistics = [row["statistic"] for row in scored if row["statistic"] is not None]
        summary[attribute] = {
            "accuracy": correct / len(scored) if scored else None,
            "correct": correct,
            "n": len(scored),
            "ci95": wilson_interval(correct, len(scored)),
            "median_statistic": float(np.median(statistics)) if statistics else None,
            "min_statistic": float(np.min(statistics)) if statistics else None,
            "unit": MEASURES[attribute].unit,
            "margin": MEASURES[attribute].margin,
            "unscored": len(rows) - len(scored),
        }
    return summary
