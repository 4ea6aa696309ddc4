"""Weight-free vocoder: log-mel -> linear magnitude -> fast Griffin-Lim phase reconstruction.

A fallback for when no neural vocoder is available (and a baseline for one). It inverts exactly the
analysis `audio.MelSpectrogram` performs: the same slaney filters, window and HiFi-GAN framing (reflect
padding of ``(n_fft - hop_length) / 2``, no centring), so ``F`` frames give ``F * hop_length`` samples
and the output of one can be swapped for the other in a pipeline.
"""

from __future__ import annotations

import os

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from ..audio.mel import MelSettings, MelSpectrogram
from .vocoder_hifigan import VocoderOutput, check_mel_input

# Multiplicative non-negative least-squares updates refining the clamped pseudo-inverse. They converge
# quickly; past ~30 the log-mel error of the final audio no longer changes.
_NNLS_ITERATIONS = 30
# `from_pretrained` options that concern finding config.json; every other loading option (dtype,
# device maps, offloading, ...) is about weights, which this model has none of.
_CONFIG_LOADING_KWARGS = (
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "local_files_only",
    "revision",
    "subfolder",
    "user_agent",
)


class GriffinLimVocoder(ModelMixin, ConfigMixin):
    r"""Log-mel to waveform without learned weights: mel inversion + fast Griffin-Lim.

    The mel magnitudes are mapped back to a non-negative linear magnitude spectrogram (pseudo-inverse of
    the mel filters, clamped at zero, then refined by non-negative least squares), and a phase is found
    by the fast Griffin-Lim algorithm (Perraudin, Balazs and Sondergaard, 2013): alternating projections
    between the target magnitude and consistent spectrograms, with momentum.

    Computation is in float32 whatever the input dtype; the waveform is returned in the input's dtype.

    Parameters:
        sampling_rate, n_fft, hop_length, win_length, n_mels, mel_fmin, mel_fmax: The mel front end to invert,
            as in [`MelSettings`] (same defaults); each mel frame gives `hop_length` samples.
        n_iter (`int`): Griffin-Lim iterations.
        momentum (`float`): Fast Griffin-Lim momentum in [0, 1); 0 is the classic algorithm, 0.99 the
            value recommended by the paper.
        power (`float`): Exponent applied to the recovered magnitude before phase reconstruction; values
            above 1 sharpen harmonics and suppress the smeared noise floor at the cost of loudness.
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["MelSpectrogram"]

    @register_to_config
    def __init__(
        self,
        sampling_rate: int = MelSettings.sampling_rate,
        n_fft: int = MelSettings.n_fft,
        hop_length: int = MelSettings.hop_length,
        win_length: int | None = MelSettings.win_length,
        n_mels: int = MelSettings.n_mels,
        mel_fmin: float = MelSettings.mel_fmin,
        mel_fmax: float | None = MelSettings.mel_fmax,
        n_iter: int = 32,
        momentum: float = 0.99,
        power: float = 1.0,
    ):
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be at least 1, got {n_iter}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        if power <= 0:
            raise ValueError(f"power must be positive, got {power}.")
        # Owning the analysis module guarantees identical filters, window and padding.
        self.mel_spectrogram = MelSpectrogram(
            sampling_rate=sampling_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            mel_fmin=mel_fmin,
            mel_fmax=mel_fmax,
        )
        filters = self.mel_spectrogram.mel_filters.double()
        # Derived from the config like the filters: not saved, so the state dict is empty.
        self.register_buffer("mel_pinv", torch.linalg.pinv(filters).float(), persistent=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> GriffinLimVocoder:
        """Build the vocoder from a folder (or Hub repo) holding only `config.json`.

        `save_pretrained` writes no weights file because there are no weights, which the generic
        `ModelMixin.from_pretrained` would reject. Hub options (`subfolder`, `revision`, `token`, ...)
        are honoured; weight-loading options (`torch_dtype`, `low_cpu_mem_usage`, ...) have nothing to
        act on and are ignored, except that a single-device `device_map` moves the (tiny) buffers.
        """
        config = cls.load_config(
            pretrained_model_name_or_path, **{k: kwargs[k] for k in _CONFIG_LOADING_KWARGS if k in kwargs}
        )
        model = cls.from_config(config)
        model.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        device_map = kwargs.get("device_map")
        if isinstance(device_map, (str, int, torch.device)):
            try:
                device = torch.device(device_map)
            except RuntimeError:  # a placement strategy such as "balanced": nothing to place
                device = None
            if device is not None:
                model.to(device)
        return model.eval()

    @property
    def mel_settings(self) -> MelSettings:
        """The settings of the log-mel front end this vocoder inverts."""
        return self.mel_spectrogram.settings

    @property
    def hop_length(self) -> int:
        """Waveform samples produced per mel frame (same property as `HifiGanVocoder.hop_length`)."""
        return self.config.hop_length

    @property
    def min_frames(self) -> int:
        """Fewest input frames: reflect padding needs a signal longer than the padding."""
        return self.mel_spectrogram.padding // self.config.hop_length + 1

    def mel_to_magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """Invert the mel projection.

        Args:
            mel (`torch.Tensor`): `(batch, n_mels, frames)` log-mel.

        Returns:
            `torch.Tensor`: `(batch, n_fft // 2 + 1, frames)` non-negative linear STFT magnitude, float32.
        """
        # Buffers in float32 even after a pipeline-wide `.to(torch.float16)`: see the class docstring.
        filters = self.mel_spectrogram.mel_filters.float()  # (n_mels, n_freq)
        mel_magnitude = mel.float().exp()
        magnitude = torch.matmul(self.mel_pinv.float(), mel_magnitude).clamp(min=1e-8)
        # Lee-Seung multiplicative updates for min ||filters @ x - mel||^2 s.t. x >= 0: they keep x
        # non-negative by construction and fix the ringing the plain pseudo-inverse leaves between bands.
        # Bins no filter covers (above mel_fmax) get a zero numerator and go to zero.
        numerator = torch.matmul(filters.T, mel_magnitude)
        gram = torch.matmul(filters.T, filters)
        for _ in range(_NNLS_ITERATIONS):
            magnitude = magnitude * numerator / (torch.matmul(gram, magnitude) + 1e-10)
        return magnitude

    def _stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` -> complex `(batch, n_freq, samples // hop)`, framed as `MelSpectrogram`."""
        mel = self.mel_spectrogram
        padding = (mel.padding, mel.padding)
        padded = nn.functional.pad(waveform.unsqueeze(1), padding, mode="reflect").squeeze(1)
        return torch.stft(
            padded,
            n_fft=mel.n_fft,
            hop_length=mel.hop_length,
            win_length=mel.win_length,
            window=mel.window.float(),
            center=False,
            return_complex=True,
        )

    def _istft(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Least-squares inverse of `_stft`: complex `(batch, n_freq, frames)` -> `(batch, frames * hop)`.

        Written out (windowed overlap-add divided by the squared-window envelope) because `torch.istft`
        with `center=False` refuses the Hann window's zero-envelope end samples; those lie in the reflect
        padding, which is cut off here anyway.
        """
        mel = self.mel_spectrogram
        num_frames = spectrogram.shape[-1]
        padded_length = (num_frames - 1) * mel.hop_length + mel.n_fft
        # torch.stft centres a shorter window inside the n_fft frame; do the same.
        offset = (mel.n_fft - mel.win_length) // 2
        window = nn.functional.pad(mel.window.float(), (offset, mel.n_fft - mel.win_length - offset))
        frames = torch.fft.irfft(spectrogram, n=mel.n_fft, dim=1) * window[:, None]

        def overlap_add(columns: torch.Tensor) -> torch.Tensor:  # (batch, n_fft, frames) -> (batch, length)
            return nn.functional.fold(
                columns,
                output_size=(1, padded_length),
                kernel_size=(1, mel.n_fft),
                stride=(1, mel.hop_length),
            ).flatten(1)

        signal = overlap_add(frames)
        envelope = overlap_add((window**2)[None, :, None].expand(1, -1, num_frames))
        signal = signal / torch.where(envelope > 1e-11, envelope, torch.ones_like(envelope))
        return signal[:, mel.padding : mel.padding + num_frames * mel.hop_length]

    def forward(
        self,
        mel: torch.Tensor,
        return_dict: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> VocoderOutput | tuple[torch.Tensor]:
        """Synthesize a waveform.

        Args:
            mel (`torch.Tensor`): `(batch, n_mels, frames)` natural-log mel magnitudes, floor `log(1e-5)`;
                at least `min_frames` (2 for the default config) frames.
            return_dict (`bool`): Return a `VocoderOutput` (default) or a one-element tuple.
            generator (`torch.Generator` or list of them, *optional*): Draws a random initial phase
                (one generator per batch element, or one for all). Without it the initial phase is zero,
                so the output is deterministic.

        Returns:
            `VocoderOutput` with `waveform` of shape `(batch, frames * hop_length)`, clipped to [-1, 1].
        """
        check_mel_input(mel, self.config.n_mels, min_frames=self.min_frames)
        magnitude = self.mel_to_magnitude(mel).pow(self.config.power)

        if generator is None:
            angles = torch.ones_like(magnitude, dtype=torch.complex64)
        else:
            # A complex Gaussian has a uniformly distributed phase.
            noise = randn_tensor((*magnitude.shape, 2), generator=generator, device=magnitude.device)
            angles = torch.view_as_complex(noise)
            angles = angles / angles.abs().clamp(min=1e-16)

        # Fast Griffin-Lim: project onto consistent spectrograms, extrapolate with momentum, keep the
        # target magnitude. `previous` is the last consistent spectrogram.
        momentum = self.config.momentum / (1.0 + self.config.momentum)
        previous = torch.zeros_like(angles)
        for _ in range(self.config.n_iter):
            rebuilt = self._stft(self._istft(magnitude * angles))
            angles = rebuilt - momentum * previous
            angles = angles / angles.abs().clamp(min=1e-16)
            previous = rebuilt
        waveform = self._istft(magnitude * angles).clamp(-1.0, 1.0).to(mel.dtype)

        if not return_dict:
            return (waveform,)
        return VocoderOutput(waveform=waveform)
