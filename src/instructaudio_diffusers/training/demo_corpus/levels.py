"""Level and file helpers shared by the speech and music renderers."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

SAMPLING_RATE = 22050
REFERENCE_DBFS = -20.0  # RMS over the active part of a "normal loudness" clip


def active_bounds(
    audio: np.ndarray, floor_db: float = -45.0, sampling_rate: int = SAMPLING_RATE
) -> tuple[int, int]:
    """First and last sample of the part louder than `floor_db` below the loudest 20 ms frame."""
    frame = int(0.02 * sampling_rate)
    usable = audio[: audio.size // frame * frame].reshape(-1, frame)
    if usable.size == 0:
        return 0, audio.size
    rms = np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1)) + 1e-12
    active = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    return int(active[0]) * frame, int(active[-1] + 1) * frame


def set_level(audio: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """Scale so the active part's RMS is REFERENCE_DBFS + gain_db; a soft knee keeps peaks below full scale.

    Levels are set on the active part, not the whole file, so that pauses and margins do not make a
    sparse clip louder than a dense one labelled the same.
    """
    start, end = active_bounds(audio)
    rms = float(np.sqrt(np.mean(np.square(audio[start:end], dtype=np.float64)))) + 1e-12
    scaled = audio * (10 ** ((REFERENCE_DBFS + gain_db) / 20) / rms)
    knee = 0.8
    magnitude = np.abs(scaled)
    limited = knee + (1 - knee) * np.tanh((magnitude - knee) / (1 - knee))
    return np.where(magnitude > knee, np.sign(scaled) * limited, scaled).astype(np.float32)


def write_wav_atomic(path: str, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> None:
    """Write 16-bit PCM through a temporary name, so a killed run never leaves a truncated wav behind."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.partial"
    sf.write(partial, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
    os.replace(partial, path)
