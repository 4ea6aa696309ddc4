"""One clip -> measured features -> attribute verdicts; the same code scores generated and ground-truth audio.

`ClipAnalyzer.measure` turns a waveform into a flat feature dict (speech: F0, level, phonemes/s; dialogue:
per-turn and per-speaker F0; music: tempo, key/mode score, timbre vector, level). `judge` compares those
features with an `expect` dict through a `Calibration`. `fit_calibration` fits the classifiers from
measured ground-truth clips. Because ceilings are computed by calling `judge` on held-out ground truth,
a ceiling and a generated-audio accuracy are always the same measurement applied to different audio.

Dialogue turns: the text is split at its speaker tags; each turn's weight is its phoneme count, and
`prosody.split_turns` divides the clip's active speech in those proportions, snapping each boundary to a
nearby silence. A speaker's F0 is the median over the voiced frames of all of that speaker's turns.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from .cases import ORDINAL_CLASSES, GroundTruthItem, parse_key_name
from .classifiers import THRESHOLD_FEATURES, Calibration, NearestCentroidClassifier, ThresholdClassifier
from .music import TIMBRE_FEATURES, analyse_music, pace_of_tempo, tempo_error
from .prosody import (
    FRAME_S,
    active_level_dbfs,
    analyse_speech,
    count_phones,
    median_f0,
    speech_features,
    split_turns,
)

_TURN_SPLIT = re.compile(r"\[\s*[sS](\d+)\s*\]")


def dialogue_turns(text: str) -> list[tuple[int, str]]:
    """`(speaker index, turn text)` for each tagged turn of a dialogue text, in order; untagged lead-in is dropped."""
    pieces = _TURN_SPLIT.split(text)
    return [
        (int(pieces[i]), pieces[i + 1].strip()) for i in range(1, len(pieces) - 1, 2) if pieces[i + 1].strip()
    ]


class ClipAnalyzer:
    """Measures clips. Holds the phoneme processor (for phoneme counts), built on first use.

    Args:
        processor: an `InstructAudioProcessor`; the default one is built when None. Any processor gives
            the same phonemes, and one shared instance keeps ground truth and generated audio comparable.
    """

    def __init__(self, processor: Any | None = None) -> None:
        self._processor = processor
        self._phone_counts: dict[str, int] = {}

    @property
    def processor(self) -> Any:
        if self._processor is None:
            from ..processing import InstructAudioProcessor

            self._processor = InstructAudioProcessor()
        return self._processor

    def phones(self, text: str) -> int:
        """Number of phones the processor reads in `text` (0 when it cannot read it)."""
        if text not in self._phone_counts:
            try:
                with warnings.catch_warnings():
                    # Characters the processor drops are its business, not the evaluation's.
                    warnings.simplefilter("ignore", UserWarning)
                    self._phone_counts[text] = count_phones(self.processor.phonemize(text))
            except ValueError:
                self._phone_counts[text] = 0
        return self._phone_counts[text]

    def measure(self, audio: np.ndarray, sampling_rate: int, task: str, text: str) -> dict[str, Any]:
        """Feature dict of one clip (see the module docstring); every value is JSON-serialisable."""
        if task == "music":
            return {
                **analyse_music(audio, sampling_rate),
                "level_dbfs": active_level_dbfs(audio, sampling_rate),
            }
        analysis = analyse_speech(audio, sampling_rate)
        if task == "speech":
            return speech_features(analysis, self.phones(text)).to_dict()
        turns = dialogue_turns(text)
        weights = [float(max(self.phones(turn_text), 1)) for _, turn_text in turns]
        spans = split_turns(analysis.active, weights) if turns else []
        voiced_by_speaker: dict[int, list[np.ndarray]] = defaultdict(list)
        turn_rows = []
        for (speaker, _), (start, end) in zip(turns, spans):
            frames = slice(start, end)
            voiced_by_speaker[speaker].append(
                analysis.f0[frames][analysis.active[frames] & (analysis.f0[frames] > 0)]
            )
            turn_rows.append({
                "speaker": speaker,
                "start_s": start * FRAME_S,
                "end_s": end * FRAME_S,
                "f0_median_hz": median_f0(analysis.f0[frames], analysis.active[frames]),
            })  # fmt: skip
        speaker_f0 = {}
        for speaker, pieces in sorted(voiced_by_speaker.items()):
            voiced = np.concatenate(pieces)
            speaker_f0[str(speaker)] = float(np.median(voiced)) if voiced.size >= 5 else None
        whole = speech_features(analysis, sum(self.phones(turn_text) for _, turn_text in turns)).to_dict()
        return {**whole, "turns": turn_rows, "speaker_f0_hz": speaker_f0}


def _verdict(expected: Any, predicted: Any, value: Any, scorable: bool) -> dict[str, Any]:
    """One attribute's result. `correct` is None only when the attribute cannot be scored at all (no
    classifier, or a class the calibration never saw); a clip with no measurable feature (no voiced frame,
    no beat) is wrong, not unscored, so silent or noisy output cannot escape the accuracy."""
    correct = (predicted == expected) if scorable else None
    return {"expected": expected, "predicted": predicted, "value": value, "correct": correct}


def judge(
    features: dict[str, Any], expect: dict[str, Any], calibration: Calibration, language: str, task: str
) -> dict[str, dict[str, Any]]:
    """Compare measured features with the expected attributes.

    Pitch is judged relative to the norm of the expected gender when the case states one, else of the
    predicted gender. Rate boundaries are per language and loudness boundaries per task where the
    calibration has them. Pace is the tempo estimate's tempo word and key the full 24-key Krumhansl
    estimate (tonic and mode must both match); neither needs calibration. Attributes in
    `UNMEASURED_ATTRIBUTES` are skipped.

    Returns:
        attribute -> `{"expected", "predicted", "value", "correct"}`; `tempo_bpm` adds the fields of
        `music.tempo_error` (its `correct` is `within`); `speakers` predicts one gender per speaker.
    """
    results: dict[str, dict[str, Any]] = {}
    classifiers = calibration.classifiers
    groups = {"rate": language, "loudness": task}
    for attribute, expected in expect.items():
        if attribute in ("gender", "loudness", "mode", "rate"):
            predicted = calibration.predict(attribute, features, groups.get(attribute))
            value = features.get(THRESHOLD_FEATURES[attribute][0])
            results[attribute] = _verdict(expected, predicted, value, attribute in classifiers)
        elif attribute == "pitch":
            gender = expect.get("gender") or calibration.predict("gender", features)
            relative = calibration.pitch_semitones(features.get("f0_median_hz"), gender)
            predicted = calibration.predict("pitch", {"f0_semitones_re_gender_norm": relative})
            results[attribute] = _verdict(expected, predicted, relative, "pitch" in classifiers)
        elif attribute in ("instrument", "genre"):
            classifier = classifiers.get(attribute)
            scorable = classifier is not None and expected in classifier.classes
            results[attribute] = _verdict(expected, calibration.predict(attribute, features), None, scorable)
        elif attribute == "pace":
            tempo = features.get("tempo_bpm")
            results[attribute] = _verdict(expected, pace_of_tempo(tempo), tempo, True)
        elif attribute == "key":
            found = features.get("key")  # spelled "C# major"; the case may say "D flat major"
            correct = found is not None and parse_key_name(found) == parse_key_name(expected)
            results[attribute] = {"expected": expected, "predicted": found, "value": None, "correct": correct}
        elif attribute == "tempo_bpm":
            estimate = features.get("tempo_bpm")
            comparison = tempo_error(estimate, float(expected))
            results[attribute] = {
                "expected": expected,
                "predicted": estimate,
                "correct": comparison["within"],
                **comparison,
            }
        elif attribute == "speakers":
            speaker_f0 = features.get("speaker_f0_hz", {})
            predicted = [
                calibration.predict("gender", {"f0_median_hz": speaker_f0.get(str(index))})
                for index in range(len(expected))
            ]
            results[attribute] = _verdict(list(expected), predicted, speaker_f0, "gender" in classifiers)
            if len(expected) == 2 and len(set(expected)) == 2:
                results["speaker_order"] = _speaker_order(expected, speaker_f0)
    return results


def _speaker_order(expected: list[str], speaker_f0: dict[str, float | None]) -> dict[str, Any]:
    """Whether the higher-F0 speaker is the one described as the woman: needs no calibration, since it
    compares the two speakers of one clip with each other rather than with a threshold."""
    first, second = speaker_f0.get("0"), speaker_f0.get("1")
    predicted = None
    if first and second:
        predicted = ["female", "male"] if first > second else ["male", "female"]
    return _verdict(list(expected), predicted, speaker_f0, True)


def _labelled(
    measured: list[tuple[GroundTruthItem, dict]], attribute: str, feature: str, tasks: tuple[str, ...]
) -> list[tuple[float, str, GroundTruthItem]]:
    """(value, label, item) for ground-truth clips of `tasks` that have both the label and the feature."""
    rows = []
    for item, features in measured:
        value = features.get(feature)
        if item.task in tasks and attribute in item.attributes and value is not None:
            rows.append((float(value), item.attributes[attribute], item))
    return rows


def fit_calibration(
    measured: list[tuple[GroundTruthItem, dict[str, Any]]], source: dict[str, Any]
) -> Calibration:
    """Fit every classifier the calibration clips support; the ones they cannot support are listed in
    `source["skipped"]` with the reason (e.g. a corpus without music has no instrument classifier), and
    gender and mode then fall back to their uncalibrated textbook rules."""
    calibration = Calibration(source=dict(source))
    skipped: dict[str, str] = {}
    gender_rows = _labelled(measured, "gender", "f0_median_hz", ("speech",))
    for gender in ORDINAL_CLASSES["gender"]:
        normal = [
            value
            for value, label, item in gender_rows
            if label == gender and item.attributes.get("pitch") == "normal"
        ]
        anyone = [value for value, label, _ in gender_rows if label == gender]
        if normal or anyone:
            calibration.gender_norm_hz[gender] = float(np.median(normal or anyone))

    def fit_threshold(
        attribute: str, rows: list[tuple[float, str, GroundTruthItem]], group_by: str | None
    ) -> None:
        if not rows:
            skipped[attribute] = "no labelled calibration clips"
            return
        values, labels, items = zip(*rows)
        groups = [getattr(item, group_by) for item in items] if group_by else None
        try:
            calibration.classifiers[attribute] = ThresholdClassifier.fit(
                THRESHOLD_FEATURES[attribute][0],
                ORDINAL_CLASSES[attribute],
                list(values),
                list(labels),
                groups,
            )
        except ValueError as err:
            skipped[attribute] = str(err)

    fit_threshold("gender", gender_rows, None)
    pitch_rows = []
    for value, _, item in _labelled(measured, "pitch", "f0_median_hz", ("speech",)):
        relative = calibration.pitch_semitones(value, item.attributes.get("gender"))
        if relative is not None:
            pitch_rows.append((relative, item.attributes["pitch"], item))
    fit_threshold("pitch", pitch_rows, None)
    fit_threshold("rate", _labelled(measured, "rate", "phones_per_s", ("speech",)), "language")
    fit_threshold("loudness", _labelled(measured, "loudness", "level_dbfs", ("speech", "music")), "task")
    fit_threshold("mode", _labelled(measured, "mode", "mode_score", ("music",)), None)
    for attribute in ("instrument", "genre"):
        rows = [(features["timbre"], item.attributes[attribute]) for item, features in measured
                if item.task == "music" and attribute in item.attributes and "timbre" in features]  # fmt: skip
        try:
            if not rows:
                raise ValueError("no labelled calibration clips")
            timbres, labels = zip(*rows)
            calibration.classifiers[attribute] = NearestCentroidClassifier.fit(
                TIMBRE_FEATURES, list(timbres), list(labels)
            )
        except ValueError as err:
            skipped[attribute] = str(err)
    # A corpus too small for some classifier still gets the textbook rule where one exists (gender, mode).
    for name, rule in Calibration.uncalibrated().classifiers.items():
        if name not in calibration.classifiers:
            calibration.classifiers[name] = rule
            skipped[name] = f"{skipped.get(name, 'not fit')}; using the uncalibrated default"
    calibration.source["skipped"] = skipped
    return calibration
