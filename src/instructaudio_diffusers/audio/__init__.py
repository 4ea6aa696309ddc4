"""Signal <-> mel: nothing in here knows about models or pipelines."""

from .io import load_audio, resample, to_mono, write_wav
from .mel import LOG_MEL_FLOOR, MelSettings, MelSpectrogram

__all__ = ["LOG_MEL_FLOOR", "MelSettings", "MelSpectrogram", "load_audio", "resample", "to_mono", "write_wav"]
