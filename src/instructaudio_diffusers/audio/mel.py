"""Log-mel front end shared by the VAE, the vocoder and training.

The convention is HiFi-GAN's: the waveform is reflect-padded by ``(n_fft - hop_length) / 2`` on both
sides, framed without centring, the STFT magnitude is projected on slaney mel filters, and the log is
taken of the magnitude clamped at ``1e-5``. With that padding a waveform of ``L`` samples gives exactly
``L // hop_length`` frames, and a vocoder upsampling by ``hop_length`` maps ``F`` frames back to
``F * hop_length`` samples, so lengths round-trip without bookkeeping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank

#: Value of a silent frame in log-mel space: ``log(1e-5)``.
LOG_MEL_FLOOR = math.log(1e-5)


@dataclasses.dataclass(frozen=True)
class MelSettings:
    r"""The seven settings of the log-mel front end, validated, with their defaults in one place.

    The VAE, the Griffin-Lim vocoder and the aligner store these seven values flat in their configs (so their
    `config.json` files stay plain); each builds its front end with `MelSettings.from_config(config)`, and a
    vocoder or a converted checkpoint is checked against them with `mismatches`.

    Parameters:
        sampling_rate (`int`): Sample rate of the waveform in Hz.
        n_fft (`int`): FFT size.
        hop_length (`int`): Hop between frames in samples; one mel frame per `hop_length` samples.
        win_length (`int`, *optional*): Hann window length, defaults to `n_fft`.
        n_mels (`int`): Number of slaney mel bands.
        mel_fmin (`float`): Lowest band edge in Hz.
        mel_fmax (`float`, *optional*): Highest band edge in Hz, defaults to Nyquist.
    """

    sampling_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None
    n_mels: int = 80
    mel_fmin: float = 0.0
    mel_fmax: float | None = 8000.0

    def __post_init__(self):
        if self.window_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft}).")
        if (self.n_fft - self.hop_length) % 2:
            # Symmetric padding of (n_fft - hop) / 2 is what makes L samples give exactly L // hop frames.
            raise ValueError(
                f"n_fft - hop_length must be even, got n_fft={self.n_fft}, hop_length={self.hop_length}."
            )
        if not 0 <= self.mel_fmin < self.highest_frequency <= self.sampling_rate / 2:
            raise ValueError(
                f"Need 0 <= mel_fmin < mel_fmax <= sampling_rate / 2, got mel_fmin={self.mel_fmin}, "
                f"mel_fmax={self.mel_fmax}, sampling_rate={self.sampling_rate}."
            )

    @classmethod
    def from_config(cls, config: Mapping, **overrides) -> MelSettings:
        """The settings stored flat in a model's `config` (a diffusers `FrozenDict` or any mapping); missing
        ones take their defaults, `overrides` replace stored ones (e.g. `n_mels=config.num_mel_bins`)."""
        values = {field.name: config[field.name] for field in dataclasses.fields(cls) if field.name in config}
        return cls(**{**values, **overrides})

    @property
    def window_length(self) -> int:
        """The Hann window's length in samples (`win_length`, or `n_fft` when unset)."""
        return self.win_length or self.n_fft

    @property
    def highest_frequency(self) -> float:
        """The top band edge in Hz (`mel_fmax`, or Nyquist when unset)."""
        return self.mel_fmax or self.sampling_rate / 2

    def as_dict(self) -> dict:
        """The seven values, as model configs store them."""
        return dataclasses.asdict(self)

    def mismatches(self, other: Mapping) -> list[str]:
        """`"name=theirs (ours X)"` for every setting in `other` that differs from these, comparing what the
        front end computes (an unset window or top frequency equals its default); names not in `other` are not
        compared, so a vocoder that only knows its sample rate, bands and hop is checked on those."""
        resolved = self.as_dict() | {"win_length": self.window_length, "mel_fmax": self.highest_frequency}
        problems = []
        for name, theirs in other.items():
            if name == "win_length" and theirs is None:
                theirs = other.get("n_fft", self.n_fft)
            if name == "mel_fmax" and theirs is None:
                theirs = other.get("sampling_rate", self.sampling_rate) / 2
            if theirs is None or float(theirs) != float(resolved[name]):
                problems.append(f"{name}={theirs} (ours {resolved[name]})")
        return problems

    def spectrogram(self) -> MelSpectrogram:
        """A new log-mel front end with these settings."""
        return MelSpectrogram(**self.as_dict())


class MelSpectrogram(nn.Module):
    r"""Batched, differentiable log-mel spectrogram on any device.

    Parameters: the seven settings of [`MelSettings`] (same names, defaults and checks); `settings` holds them.
    `win_length` and `mel_fmax` read back resolved (the window length, the top band edge in Hz).
    """

    def __init__(
        self,
        sampling_rate: int = MelSettings.sampling_rate,
        n_fft: int = MelSettings.n_fft,
        hop_length: int = MelSettings.hop_length,
        win_length: int | None = MelSettings.win_length,
        n_mels: int = MelSettings.n_mels,
        mel_fmin: float = MelSettings.mel_fmin,
        mel_fmax: float | None = MelSettings.mel_fmax,
    ):
        super().__init__()
        self.settings = MelSettings(sampling_rate, n_fft, hop_length, win_length, n_mels, mel_fmin, mel_fmax)
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = self.settings.window_length
        self.n_mels = n_mels
        self.mel_fmin = mel_fmin
        self.mel_fmax = self.settings.highest_frequency

        filters = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=mel_fmin,
            max_frequency=self.mel_fmax,
            sampling_rate=sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        # Buffers are derived from the config, so they are not saved with any model's weights.
        self.register_buffer("mel_filters", torch.from_numpy(filters.T.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    @property
    def padding(self) -> int:
        """Reflect padding applied to each side of the waveform, in samples."""
        return (self.n_fft - self.hop_length) // 2

    def num_frames(self, num_samples: int) -> int:
        """Number of mel frames for a waveform of `num_samples` samples: ``num_samples // hop_length``."""
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram.

        Args:
            waveform (`torch.Tensor`): `(num_samples,)` or `(batch, num_samples)`, float, in [-1, 1].

        Returns:
            `torch.Tensor`: log-mel of shape `(batch, n_mels, num_samples // hop_length)` (the batch
            dimension is kept even for 1-D input).
        """
        if not torch.is_tensor(waveform) or not waveform.is_floating_point():
            raise ValueError("waveform must be a floating-point torch.Tensor.")
        if waveform.ndim == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.ndim != 2:
            raise ValueError(
                f"waveform must have shape (num_samples,) or (batch, num_samples), got {tuple(waveform.shape)}."
            )
        min_samples = max(self.hop_length, self.padding + 1)
        if waveform.shape[-1] < min_samples:
            raise ValueError(
                f"waveform has {waveform.shape[-1]} samples; at least {min_samples} are needed for one mel frame "
                f"({min_samples / self.sampling_rate * 1000:.1f} ms at {self.sampling_rate} Hz)."
            )
        if not torch.isfinite(waveform).all():
            raise ValueError("waveform contains NaN or infinite values.")

        padded = nn.functional.pad(
            waveform.unsqueeze(1), (self.padding, self.padding), mode="reflect"
        ).squeeze(1)
        spec = torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(dtype=waveform.dtype),
            center=False,
            return_complex=True,
        )
        # sqrt(|X|^2 + eps) rather than |X| keeps the gradient finite at exact zeros.
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.matmul(self.mel_filters.to(magnitude.dtype), magnitude)
        return torch.log(torch.clamp(mel, min=1e-5))

    def extra_repr(self) -> str:
        return (
            f"sampling_rate={self.sampling_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"win_length={self.win_length}, n_mels={self.n_mels}, mel_fmin={self.mel_fmin}, mel_fmax={self.mel_fmax}"
        )
