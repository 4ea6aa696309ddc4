"""Audio file helpers: read anything soundfile reads, mix to mono, resample, write WAV."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels of a `(num_samples, channels)` array (soundfile's layout); 1-D passes through."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be (num_samples,) or (num_samples, channels), got shape {audio.shape}.")
    return audio.mean(axis=1)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling of a mono float array (scipy's `resample_poly`)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}.")
    if orig_sr == target_sr:
        return audio
    ratio = Fraction(target_sr, orig_sr).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(audio.dtype, copy=False)


def load_audio(path: str | os.PathLike, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32.

    Args:
        path: any file format soundfile (libsndfile) reads: WAV, FLAC, OGG, MP3, ...
        sampling_rate: resample to this rate when given.

    Returns:
        `(audio, sampling_rate)` with `audio` a 1-D float32 array in [-1, 1].
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no audio file at {path!s}")
    try:
        audio, file_sr = sf.read(path, dtype="float32", always_2d=False)
    except sf.LibsndfileError as err:
        raise ValueError(f"cannot decode audio file {path!s}: {err}") from err
    audio = to_mono(audio)
    if audio.size == 0:
        raise ValueError(f"audio file {path!s} contains no samples.")
    if sampling_rate is not None:
        audio = resample(audio, file_sr, sampling_rate)
        file_sr = sampling_rate
    return audio.astype(np.float32, copy=False), file_sr


def write_wav(path: str | os.PathLike, audio, sampling_rate: int) -> None:
    """Write a mono (or `(num_samples, channels)`) float waveform as 16-bit PCM WAV, clipping to [-1, 1]."""
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and audio.shape[0] < audio.shape[1] and audio.shape[0] <= 8:
        audio = audio.T  # (channels, samples) -> soundfile's (samples, channels)
    if audio.size == 0:
        raise ValueError("refusing to write an empty waveform.")
    if not np.isfinite(audio).all():
        raise ValueError("waveform contains NaN or infinite values.")
    sf.write(path, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16")
