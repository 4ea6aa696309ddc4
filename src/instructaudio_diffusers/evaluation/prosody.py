"""Speech signal measurements: activity, level, F0 (pyworld), speaking rate, and dialogue turn splitting.

Everything runs on 10 ms frames of a 16 kHz copy of the clip, so energy frames and pyworld's F0 frames
(`frame_period=10`) line up one to one.

- **Activity**: a frame is active when its RMS level is within `ACTIVE_RANGE_DB` of the loudest frame
  (and above an absolute floor). Speech time is the number of active frames, so leading/trailing silence,
  a model's padded tail and pauses between phrases never dilute the speaking rate or the level.
- **Level**: RMS over the active frames in dBFS, close to the quantity the corpus sets its loudness labels
  with (RMS from the first to the last active frame); not a perceptual loudness. Pauses are left out
  here so that a model's long silences cannot make a loud clip read as soft.
- **F0**: pyworld DIO + StoneMask (harvest is ~30x slower and gives the same medians on clean speech);
  the clip's F0 is the median over frames that are both voiced and active.
- **Rate**: phonemes per second of speech time. Active time is used instead of strictly voiced time:
  unvoiced consonants are part of speaking, and a whisper has no voiced frames at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..audio.io import resample
from ._optional import import_pyworld

ANALYSIS_SAMPLING_RATE = 16000
FRAME_S = 0.01
ACTIVE_RANGE_DB = 35.0
ABSOLUTE_FLOOR_DBFS = -70.0
F0_RANGE_HZ = (60.0, 600.0)  # covers low male voices to child proxies raised by +450 cents
_MIN_GAP_S = 0.12  # shorter silences are stop closures, not turn changes


def to_analysis_rate(audio: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Mono float64 copy at `ANALYSIS_SAMPLING_RATE` (pyworld wants float64)."""
    audio = np.asarray(audio, dtype=np.float32)
    return resample(audio, sampling_rate, ANALYSIS_SAMPLING_RATE).astype(np.float64)


def frame_levels_db(audio: np.ndarray, sampling_rate: int = ANALYSIS_SAMPLING_RATE) -> np.ndarray:
    """RMS level of each non-overlapping 10 ms frame in dBFS, shape `(num_frames,)`."""
    hop = int(round(FRAME_S * sampling_rate))
    num_frames = max(1, int(np.ceil(audio.size / hop)))
    padded = np.zeros(num_frames * hop, dtype=np.float64)
    padded[: audio.size] = audio
    power = np.mean(np.square(padded.reshape(num_frames, hop)), axis=1)
    return 10.0 * np.log10(power + 1e-12)


def active_mask(levels_db: np.ndarray) -> np.ndarray:
    """Frames within `ACTIVE_RANGE_DB` of the loudest frame and above `ABSOLUTE_FLOOR_DBFS`."""
    floor = max(float(levels_db.max()) - ACTIVE_RANGE_DB, ABSOLUTE_FLOOR_DBFS)
    return levels_db > floor


def f0_contour(audio: np.ndarray, sampling_rate: int = ANALYSIS_SAMPLING_RATE) -> np.ndarray:
    """F0 in Hz of each 10 ms frame (0 where unvoiced), from pyworld DIO refined by StoneMask."""
    pyworld = import_pyworld()
    audio = np.ascontiguousarray(audio, dtype=np.float64)
    low, high = F0_RANGE_HZ
    coarse, times = pyworld.dio(audio, sampling_rate, f0_floor=low, f0_ceil=high, frame_period=FRAME_S * 1000)
    return pyworld.stonemask(audio, coarse, times, sampling_rate)


def median_f0(f0: np.ndarray, active: np.ndarray) -> float | None:
    """Median F0 over frames that are voiced and active; None when fewer than 5 such frames (~50 ms)."""
    count = min(f0.size, active.size)
    voiced = f0[:count][(f0[:count] > 0) & active[:count]]
    return float(np.median(voiced)) if voiced.size >= 5 else None


def semitones(f0_hz: float, reference_hz: float) -> float:
    """Interval from `reference_hz` to `f0_hz` in semitones (+12 = an octave higher)."""
    return float(12.0 * np.log2(f0_hz / reference_hz))


def count_phones(tokens: list[str]) -> int:
    """Phones among processor tokens: everything but `<...>` (language, pause, word boundary) and `[...]` tags."""
    return sum(1 for token in tokens if not token.startswith(("<", "[")))


@dataclass(frozen=True)
class SpeechFeatures:
    """Measurements of one speech clip; `None` where the clip has no basis for a value."""

    duration_s: float
    active_s: float
    level_dbfs: float | None
    f0_median_hz: float | None
    voiced_s: float
    phones: int
    phones_per_s: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class SpeechAnalysis:
    """Frame-level analysis kept for turn splitting: levels, activity and F0 on 10 ms frames."""

    levels_db: np.ndarray
    active: np.ndarray
    f0: np.ndarray


def analyse_speech(audio: np.ndarray, sampling_rate: int) -> SpeechAnalysis:
    """Levels, activity and F0 of a clip on the shared 10 ms frame grid."""
    audio = to_analysis_rate(audio, sampling_rate)
    levels = frame_levels_db(audio)
    f0 = f0_contour(audio) if audio.size >= ANALYSIS_SAMPLING_RATE * 0.05 else np.zeros(levels.size)
    count = min(levels.size, f0.size)
    return SpeechAnalysis(levels[:count], active_mask(levels[:count]), f0[:count])


def speech_features(analysis: SpeechAnalysis, phones: int, frames: slice = slice(None)) -> SpeechFeatures:
    """Clip-level features from a frame analysis, optionally restricted to `frames` (one dialogue turn)."""
    levels, active, f0 = analysis.levels_db[frames], analysis.active[frames], analysis.f0[frames]
    active_s = float(active.sum()) * FRAME_S
    return SpeechFeatures(
        duration_s=levels.size * FRAME_S,
        active_s=active_s,
        level_dbfs=_level_of(levels, active),
        f0_median_hz=median_f0(f0, active),
        voiced_s=float(((f0 > 0) & active).sum()) * FRAME_S,
        phones=phones,
        phones_per_s=phones / active_s if active_s > 0 and phones > 0 else None,
    )


def _level_of(levels_db: np.ndarray, active: np.ndarray) -> float | None:
    """RMS level in dBFS of the active frames (power-averaged), None when none is active."""
    if not active.any():
        return None
    return float(10.0 * np.log10(np.mean(np.power(10.0, levels_db[active] / 10.0))))


def active_level_dbfs(audio: np.ndarray, sampling_rate: int) -> float | None:
    """RMS level in dBFS of a clip's active frames (see the module docstring), without any F0 analysis."""
    levels = frame_levels_db(to_analysis_rate(audio, sampling_rate))
    return _level_of(levels, active_mask(levels))


def _silent_runs(active: np.ndarray, start: int, end: int) -> list[tuple[int, int]]:
    """`[run_start, run_end)` of inactive frames strictly inside `[start, end)`."""
    runs, run_start = [], None
    for index in range(start, end):
        if not active[index] and run_start is None:
            run_start = index
        elif active[index] and run_start is not None:
            runs.append((run_start, index))
            run_start = None
    return runs


def split_turns(active: np.ndarray, weights: list[float]) -> list[tuple[int, int]]:
    """Frame ranges `[start, end)` of consecutive dialogue turns.

    Method: the speech between the first and last active frame is divided in proportion to `weights`
    (each turn's phoneme count), measured in *active* frames so that pauses do not shift the split. Each
    provisional boundary then snaps to the longest silence (>= 120 ms) whose centre lies within half of
    the shorter neighbouring turn's expected length; a boundary with no such silence stays where the
    proportional split put it. Synthetic dialogues put a clear gap between turns, so the snap finds the
    real change of speaker while the weighting decides which gap it is.

    Args:
        active: `(num_frames,)` activity mask on 10 ms frames.
        weights: one positive weight per turn, in order.

    Returns:
        One `(start, end)` per turn; contiguous, covering the active span.
    """
    if not weights or any(weight <= 0 for weight in weights):
        raise ValueError(f"turn weights must be positive, got {weights}.")
    indices = np.flatnonzero(active)
    if indices.size == 0:
        return [(0, 0)] * len(weights)  # silence: no turn has any frame
    first, last = int(indices[0]), int(indices[-1]) + 1
    if len(weights) == 1:
        return [(first, last)]
    cumulative_active = np.cumsum(active)
    total = float(cumulative_active[-1])
    shares = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    expected_lengths = shares * (last - first)
    gaps = [gap for gap in _silent_runs(active, first, last) if (gap[1] - gap[0]) * FRAME_S >= _MIN_GAP_S]
    boundaries: list[int] = []
    for index, fraction in enumerate(np.cumsum(shares)[:-1]):
        target = int(np.searchsorted(cumulative_active, fraction * total))
        window = 0.5 * min(expected_lengths[index], expected_lengths[index + 1])
        previous = boundaries[-1] if boundaries else first
        nearby = [gap for gap in gaps if abs((gap[0] + gap[1]) / 2 - target) <= window and gap[0] > previous]
        if nearby:
            best = max(nearby, key=lambda gap: gap[1] - gap[0])
            target = (best[0] + best[1]) // 2
        boundaries.append(max(target, previous))
    edges = [first, *boundaries, last]
    return [(edges[index], edges[index + 1]) for index in range(len(weights))]
