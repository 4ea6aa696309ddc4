"""Attribute classifiers fit on ground-truth corpus audio, and the calibration file that stores them.

Two kinds, both small enough to read in a JSON file:

- `ThresholdClassifier` (ordinal attributes on one scalar feature): classes ordered low to high, one
  boundary between each adjacent pair, chosen on the calibration split to minimise the errors between
  those two classes (ties: the boundary nearest the midpoint of their medians). Optional groups (e.g. one
  set of rate boundaries per language) fall back to the pooled boundaries when a group lacks data.
- `NearestCentroidClassifier` (instrument, genre): features standardised with the calibration split's
  mean and standard deviation; a clip gets the class whose mean vector is nearest (Euclidean).

Attribute -> feature:

| attribute | feature | groups |
|---|---|---|
| gender | median F0 (Hz) | - |
| pitch | median F0 in semitones relative to the gender's norm (median F0 of its normal-pitch clips) | - |
| rate | phonemes per second of active speech | language |
| loudness | RMS dBFS of the active frames | task |
| mode | Krumhansl major - minor correlation | - |
| instrument, genre | timbre vector (`music.TIMBRE_FEATURES`) | - |

Without calibration (`Calibration.uncalibrated()`), only the attributes with a textbook decision rule are
classified: gender at 150 Hz (between typical male ~85-155 Hz and female ~165-255 Hz speaking F0) and mode
at a score of 0 (the better-correlating profile wins).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cases import ORDINAL_CLASSES

CALIBRATION_VERSION = 1
POOLED = "*"
DEFAULT_GENDER_THRESHOLD_HZ = 150.0
#: Which measured feature each ordinal attribute is classified on, and what groups its boundaries.
THRESHOLD_FEATURES: dict[str, tuple[str, str | None]] = {
    "gender": ("f0_median_hz", None),
    "pitch": ("f0_semitones_re_gender_norm", None),
    "rate": ("phones_per_s", "language"),
    "loudness": ("level_dbfs", None),
    "mode": ("mode_score", None),
}
_MIN_PER_CLASS = 2  # a group needs this many clips of each adjacent class to get its own boundary


def _best_boundary(lower: np.ndarray, upper: np.ndarray) -> float:
    """Boundary between two 1-D samples (lower class below, upper above) with the fewest errors."""
    values = np.unique(np.concatenate([lower, upper]))
    candidates = (values[:-1] + values[1:]) / 2 if values.size > 1 else values
    errors = np.array([(lower > cut).sum() + (upper <= cut).sum() for cut in candidates])
    best = candidates[errors == errors.min()]
    midpoint = (np.median(lower) + np.median(upper)) / 2
    return float(best[np.argmin(np.abs(best - midpoint))])


@dataclass
class ThresholdClassifier:
    """Ordered classes on one scalar feature; `boundaries[group]` has `len(classes) - 1` ascending cuts."""

    feature: str
    classes: tuple[str, ...]
    boundaries: dict[str, list[float]]

    @classmethod
    def fit(
        cls,
        feature: str,
        classes: tuple[str, ...],
        values: list[float],
        labels: list[str],
        groups: list[str] | None = None,
    ) -> ThresholdClassifier:
        """Fit pooled boundaries, plus per-group ones where each adjacent class pair has enough clips.

        Raises:
            ValueError: when some adjacent pair of classes has no example at all.
        """
        values_array, labels_array = np.asarray(values, dtype=np.float64), np.asarray(labels)
        groups_array = np.asarray(groups if groups is not None else [POOLED] * len(values))

        def boundaries_for(mask: np.ndarray, minimum: int) -> list[float] | None:
            cuts = []
            for lower, upper in zip(classes[:-1], classes[1:]):
                low, high = (
                    values_array[mask & (labels_array == lower)],
                    values_array[mask & (labels_array == upper)],
                )
                if low.size < minimum or high.size < minimum:
                    return None
                cuts.append(_best_boundary(low, high))
            return sorted(cuts)

        pooled = boundaries_for(np.ones(values_array.size, dtype=bool), 1)
        if pooled is None:
            counts = {name: int((labels_array == name).sum()) for name in classes}
            raise ValueError(f"cannot fit {feature}: every class needs calibration clips, got {counts}.")
        fitted = {POOLED: pooled}
        for group in sorted(set(groups_array.tolist()) - {POOLED}):
            own = boundaries_for(groups_array == group, _MIN_PER_CLASS)
            if own is not None:
                fitted[group] = own
        return cls(feature, tuple(classes), fitted)

    def predict(self, value: float | None, group: str | None = None) -> str | None:
        """Class of `value` (None for a missing value), using the group's boundaries when it has its own."""
        if value is None or not np.isfinite(value):
            return None
        cuts = self.boundaries.get(group or POOLED, self.boundaries[POOLED])
        return self.classes[int(np.searchsorted(cuts, value, side="right"))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "threshold",
            "feature": self.feature,
            "classes": list(self.classes),
            "boundaries": self.boundaries,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdClassifier:
        return cls(
            data["feature"], tuple(data["classes"]), {k: list(v) for k, v in data["boundaries"].items()}
        )


@dataclass
class NearestCentroidClassifier:
    """Standardised features; the class with the nearest mean vector wins."""

    features: tuple[str, ...]
    mean: list[float]
    scale: list[float]
    centroids: dict[str, list[float]]

    @classmethod
    def fit(
        cls, features: tuple[str, ...], rows: list[dict[str, float]], labels: list[str]
    ) -> NearestCentroidClassifier:
        """Fit on feature dicts (one per clip) and their labels; needs at least two classes."""
        if len(set(labels)) < 2:
            raise ValueError(f"nearest-centroid needs at least two classes, got {sorted(set(labels))}.")
        matrix = np.array([[row[name] for name in features] for row in rows], dtype=np.float64)
        mean, scale = matrix.mean(axis=0), matrix.std(axis=0)
        scale[scale < 1e-9] = 1.0  # a constant feature carries no information; keep it harmless
        standardised = (matrix - mean) / scale
        labels_array = np.asarray(labels)
        centroids = {
            name: standardised[labels_array == name].mean(axis=0).tolist() for name in sorted(set(labels))
        }
        return cls(tuple(features), mean.tolist(), scale.tolist(), centroids)

    def predict(self, row: dict[str, float] | None) -> str | None:
        if row is None:
            return None
        vector = (np.array([row[name] for name in self.features]) - np.array(self.mean)) / np.array(
            self.scale
        )
        names = list(self.centroids)
        distances = [np.linalg.norm(vector - np.array(self.centroids[name])) for name in names]
        return names[int(np.argmin(distances))]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.centroids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "nearest_centroid",
            "features": list(self.features),
            "mean": self.mean,
            "scale": self.scale,
            "centroids": self.centroids,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NearestCentroidClassifier:
        return cls(tuple(data["features"]), data["mean"], data["scale"], data["centroids"])


Classifier = ThresholdClassifier | NearestCentroidClassifier


@dataclass
class Calibration:
    """Fitted classifiers plus what the ground truth itself scores (ceilings and reference WER/MCD).

    Attributes:
        classifiers: attribute name -> classifier.
        gender_norm_hz: gender -> median F0 of its normal-pitch calibration clips (the pitch reference).
        ceiling: metric name -> what the classifiers/measures score on held-out ground truth.
        reference: ground-truth WER and MCD sanity values.
        source: where it came from (`{"kind": "ground_truth", "path", "fingerprint", ...}` or defaults).
    """

    classifiers: dict[str, Classifier] = field(default_factory=dict)
    gender_norm_hz: dict[str, float] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def uncalibrated(cls) -> Calibration:
        """Textbook rules only (see the module docstring); every other attribute stays unclassified."""
        return cls(
            classifiers={
                "gender": ThresholdClassifier(
                    "f0_median_hz", ORDINAL_CLASSES["gender"], {POOLED: [DEFAULT_GENDER_THRESHOLD_HZ]}
                ),
                "mode": ThresholdClassifier("mode_score", ORDINAL_CLASSES["mode"], {POOLED: [0.0]}),
            },
            source={"kind": "defaults", "note": "not fit on ground truth: gender at 150 Hz, mode at score 0"},
        )

    def pitch_semitones(self, f0_hz: float | None, gender: str | None) -> float | None:
        """F0 relative to the gender's norm in semitones; None without F0, gender or norm."""
        norm = self.gender_norm_hz.get(gender or "")
        if f0_hz is None or norm is None:
            return None
        return float(12.0 * np.log2(f0_hz / norm))

    def predict(self, attribute: str, features: dict[str, Any], group: str | None = None) -> str | None:
        """Predicted class of `attribute` from a clip's feature dict; None when it cannot be classified."""
        classifier = self.classifiers.get(attribute)
        if classifier is None:
            return None
        if isinstance(classifier, NearestCentroidClassifier):
            return classifier.predict(features.get("timbre"))
        return classifier.predict(features.get(classifier.feature), group)

    def save(self, path: str | os.PathLike) -> None:
        data = {
            "version": CALIBRATION_VERSION,
            "source": self.source,
            "classifiers": {name: classifier.to_dict() for name, classifier in self.classifiers.items()},
            "gender_norm_hz": self.gender_norm_hz,
            "ceiling": self.ceiling,
            "reference": self.reference,
        }
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a file written by `save`; raises ValueError for another version or a malformed file."""
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not a calibration file ({err.msg}).") from None
        if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
            raise ValueError(
                f"{path}: calibration version {data.get('version')!r}, expected {CALIBRATION_VERSION}."
            )
        readers = {
            "threshold": ThresholdClassifier.from_dict,
            "nearest_centroid": NearestCentroidClassifier.from_dict,
        }
        return cls(
            classifiers={name: readers[item["kind"]](item) for name, item in data["classifiers"].items()},
            gender_norm_hz={k: float(v) for k, v in data.get("gender_norm_hz", {}).items()},
            ceiling=data.get("ceiling", {}),
            reference=data.get("reference", {}),
            source=data.get("source", {}),
        )
