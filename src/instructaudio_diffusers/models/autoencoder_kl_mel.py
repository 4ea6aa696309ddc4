"""Mel-VAE: a KL autoencoder from log-mel spectrograms to a compact latent sequence and back.

The network is 1-D over time with the mel bins as channels. A 2-D (frequency x time) VAE would model
local spectral shapes well, but the generator consumes a *sequence* of latent frames, and a 1-D model
gives exactly that with a fraction of the compute; it is what the paper's 40-channel 43 Hz latent implies.

Every normalisation is a per-frame LayerNorm over channels instead of diffusers' GroupNorm: GroupNorm
pools statistics over the whole time axis, so padding or the length of the clip would change every
frame. With per-frame norms the model is *time-local* (each output frame sees a bounded window), so a
long input can be processed in overlapping tiles with exactly the same result as in one piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ..audio.mel import LOG_MEL_FLOOR, MelSettings, MelSpectrogram


class MelDiagonalGaussianDistribution(DiagonalGaussianDistribution):
    """diffusers' posterior, with KL and NLL summed over every non-batch dimension.

    The parent sums over dims (1, 2, 3), which only exists for image latents; ours are `(B, C, T)`.
    """

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        dims = list(range(1, self.mean.ndim))
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)
        return 0.5 * torch.sum(
            (self.mean - other.mean).pow(2) / other.var
            + self.var / other.var
            - 1.0
            - self.logvar
            + other.logvar,
            dim=dims,
        )

    def nll(self, sample: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
        dims = list(range(1, sample.ndim)) if dims is None else list(dims)
        return super().nll(sample, dims=dims)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a `(B, C, T)` tensor, independently for every frame."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden_states.transpose(1, 2)).transpose(1, 2)


class ResnetBlock1D(nn.Module):
    """Pre-norm residual block: (norm, SiLU, dilated conv) twice, plus a 1x1 skip when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        self.norm1 = ChannelLayerNorm(in_channels)
        self.conv1 = nn.Conv1d(
            in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)
        )
        self.norm2 = ChannelLayerNorm(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = self.skip(hidden_states)
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states)))
        hidden_states = self.conv2(F.silu(self.norm2(hidden_states)))
        return hidden_states + residual

    def receptive_radius(self) -> int:
        """Frames on each side that influence one output frame."""
        return self.conv1.dilation[0] * (self.conv1.kernel_size[0] // 2) + self.conv2.kernel_size[0] // 2


def _resnet_stack(in_channels: int, out_channels: int, num_layers: int, kernel_size: int) -> nn.ModuleList:
    # Dilations 1, 3, 9, ... widen the receptive field geometrically at no extra cost.
    return nn.ModuleList(
        ResnetBlock1D(
            in_channels if i == 0 else out_channels, out_channels, kernel_size, dilation=3 ** (i % 3)
        )
        for i in range(num_layers)
    )


class MelEncoder(nn.Module):
    """`(B, n_mels, T)` log-mel -> `(B, 2 * latent_channels, T / r)` posterior parameters."""

    def __init__(
        self, n_mels, latent_channels, block_out_channels, downsample_factors, layers_per_block, kernel_size
    ):
        super().__init__()
        self.conv_in = nn.Conv1d(n_mels, block_out_channels[0], kernel_size, padding=kernel_size // 2)
        self.stages = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for i, channels in enumerate(block_out_channels):
            previous = block_out_channels[max(i - 1, 0)]
            self.stages.append(_resnet_stack(previous, channels, layers_per_block, kernel_size))
            if i < len(downsample_factors):
                # A strided conv whose kernel equals its stride maps every r frames to exactly one latent.
                factor = downsample_factors[i]
                self.downsamplers.append(nn.Conv1d(channels, channels, factor, stride=factor))
        self.mid = _resnet_stack(
            block_out_channels[-1], block_out_channels[-1], layers_per_block, kernel_size
        )
        self.norm_out = ChannelLayerNorm(block_out_channels[-1])
        self.conv_out = nn.Conv1d(
            block_out_channels[-1], 2 * latent_channels, kernel_size, padding=kernel_size // 2
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(mel)
        for i, stage in enumerate(self.stages):
            for block in stage:
                hidden_states = block(hidden_states)
            if i < len(self.downsamplers):
                hidden_states = self.downsamplers[i](hidden_states)
        for block in self.mid:
            hidden_states = block(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


class MelDecoder(nn.Module):
    """`(B, latent_channels, T / r)` latent -> `(B, n_mels, T)` log-mel."""

    def __init__(
        self, n_mels, latent_channels, block_out_channels, downsample_factors, layers_per_block, kernel_size
    ):
        super().__init__()
        channels = list(reversed(block_out_channels))
        factors = list(reversed(downsample_factors))
        self.conv_in = nn.Conv1d(latent_channels, channels[0], kernel_size, padding=kernel_size // 2)
        self.mid = _resnet_stack(channels[0], channels[0], layers_per_block, kernel_size)
        self.stages = nn.ModuleList()
        self.upsample_factors = []
        self.upsamplers = nn.ModuleList()
        for i, width in enumerate(channels):
            previous = channels[max(i - 1, 0)]
            self.stages.append(_resnet_stack(previous, width, layers_per_block, kernel_size))
            if i < len(factors):
                # Nearest upsampling then a conv avoids the checkerboard artefacts of transposed convs.
                self.upsample_factors.append(factors[i])
                self.upsamplers.append(nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2))
        self.norm_out = ChannelLayerNorm(channels[-1])
        self.conv_out = nn.Conv1d(channels[-1], n_mels, kernel_size, padding=kernel_size // 2)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(latents)
        for block in self.mid:
            hidden_states = block(hidden_states)
        for i, stage in enumerate(self.stages):
            for block in stage:
                hidden_states = block(hidden_states)
            if i < len(self.upsamplers):
                hidden_states = F.interpolate(
                    hidden_states, scale_factor=self.upsample_factors[i], mode="nearest"
                )
                hidden_states = self.upsamplers[i](hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


class AutoencoderKLMel(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""KL autoencoder between log-mel spectrograms and latent frame sequences.

    The mel front end's parameters live in this config, so training, encoding and vocoding all read
    them from one place: `vae.mel_settings` ([`MelSettings`]), and the matching front end from
    [`~AutoencoderKLMel.mel_spectrogram`]; the pipeline checks its vocoder against them.

    Parameters:
        sampling_rate, n_fft, hop_length, win_length, n_mels, mel_fmin, mel_fmax: The log-mel front end, as in
            [`MelSettings`] (same defaults: 22.05 kHz, 1024-point FFT and window, hop 256, 80 bands, 0-8000 Hz);
            `n_mels` is also the input and output channels.
        latent_channels (`int`, defaults to 24): Channels of the latent sequence.
        block_out_channels (`tuple[int]`, defaults to `(128, 256)`): Widths of the encoder stages (the
            decoder mirrors them).
        downsample_factors (`tuple[int]`, defaults to `(2,)`): Time downsampling between consecutive
            stages; their product `r` maps `T` mel frames to `ceil(T / r)` latent frames.
        layers_per_block (`int`, defaults to 2): Residual blocks per stage.
        kernel_size (`int`, defaults to 3): Odd convolution kernel size.
        scaling_factor (`float`, defaults to 1.0): Multiplies the standardised latents the generator sees.
        latents_mean (`list[float]`, *optional*): Per-channel latent mean, measured after VAE training.
        latents_std (`list[float]`, *optional*): Per-channel latent standard deviation.
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["ResnetBlock1D"]

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
        latent_channels: int = 24,
        block_out_channels: tuple[int, ...] = (128, 256),
        downsample_factors: tuple[int, ...] = (2,),
        layers_per_block: int = 2,
        kernel_size: int = 3,
        scaling_factor: float = 1.0,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        if len(downsample_factors) != len(block_out_channels) - 1:
            raise ValueError(
                f"downsample_factors needs one factor between each pair of stages: got {len(downsample_factors)} "
                f"factors for {len(block_out_channels)} stages."
            )
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so frames stay aligned, got {kernel_size}.")
        for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if stats is not None and len(stats) != latent_channels:
                raise ValueError(f"{name} has {len(stats)} values for {latent_channels} latent channels.")
        if latents_std is not None and min(latents_std) <= 0:
            raise ValueError("latents_std must be positive.")
        # Refuses an impossible mel front end when the VAE is built, not when it is first used.
        MelSettings(sampling_rate, n_fft, hop_length, win_length, n_mels, mel_fmin, mel_fmax)

        args = (
            n_mels,
            latent_channels,
            block_out_channels,
            downsample_factors,
            layers_per_block,
            kernel_size,
        )
        self.encoder = MelEncoder(*args)
        self.decoder = MelDecoder(*args)
        self.use_slicing = False
        self.use_tiling = False
        self.tile_latent_frames = 512

    # ------------------------------------------------------------------ helpers
    @property
    def time_downsample_factor(self) -> int:
        """Mel frames per latent frame (`r`)."""
        return math.prod(self.config.downsample_factors)

    @property
    def latent_frame_rate(self) -> float:
        """Latent frames per second of audio."""
        return self.config.sampling_rate / (self.config.hop_length * self.time_downsample_factor)

    @property
    def mel_settings(self) -> MelSettings:
        """The settings of the log-mel front end this VAE was trained on: the pipeline's mel configuration."""
        return MelSettings.from_config(self.config)

    def mel_spectrogram(self) -> MelSpectrogram:
        """The log-mel front end this VAE was trained on (a new module on the VAE's device)."""
        return self.mel_settings.spectrogram().to(self.device)

    def num_latent_frames(self, num_mel_frames: int) -> int:
        """Latent frames produced for `num_mel_frames` mel frames: `ceil(num_mel_frames / r)`."""
        return -(-num_mel_frames // self.time_downsample_factor)

    def enable_tiling(self, tile_latent_frames: int = 512) -> None:
        """Process long inputs in overlapping time tiles of `tile_latent_frames` latent frames.

        The model is time-local, so the tiles overlap by its receptive field and the result equals the
        untiled one up to float rounding, with memory bounded by the tile size.
        """
        if tile_latent_frames < 1:
            raise ValueError(f"tile_latent_frames must be >= 1, got {tile_latent_frames}.")
        self.use_tiling = True
        self.tile_latent_frames = tile_latent_frames

    def receptive_radius(self) -> tuple[int, int]:
        """Latent frames of context each side needed for (encoder, decoder) tiles to match untiled output."""
        r, k = self.time_downsample_factor, self.config.kernel_size
        radius_encoder, scale = 0.0, 1
        # Encoder: convs at mel resolution count 1/scale latent frames each.
        radius_encoder += (k // 2) / r
        for i, stage in enumerate(self.encoder.stages):
            radius_encoder += sum(block.receptive_radius() for block in stage) * scale / r
            if i < len(self.encoder.downsamplers):
                scale *= self.config.downsample_factors[i]
        radius_encoder += (sum(block.receptive_radius() for block in self.encoder.mid) + k // 2) * scale / r
        radius_decoder = k // 2 + sum(block.receptive_radius() for block in self.decoder.mid)
        scale = 1
        for i, stage in enumerate(self.decoder.stages):
            radius_decoder += sum(block.receptive_radius() for block in stage) / scale
            if i < len(self.decoder.upsamplers):
                scale *= self.decoder.upsample_factors[i]
                radius_decoder += (k // 2) / scale
        radius_decoder += (k // 2) / scale
        return math.ceil(radius_encoder) + 1, math.ceil(radius_decoder) + 1

    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw posterior latents -> the standardised, scaled latents the generator is trained on."""
        mean, std = self._latent_stats(latents)
        return (latents - mean) / std * self.config.scaling_factor

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of [`~AutoencoderKLMel.normalize_latents`]."""
        mean, std = self._latent_stats(latents)
        return latents / self.config.scaling_factor * std + mean

    def _latent_stats(self, latents: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        config = self.config
        mean = (
            0.0
            if config.latents_mean is None
            else torch.tensor(config.latents_mean).to(latents).view(1, -1, 1)
        )
        std = (
            1.0 if config.latents_std is None else torch.tensor(config.latents_std).to(latents).view(1, -1, 1)
        )
        return mean, std

    def _check_input(self, tensor: torch.Tensor, channels: int, what: str) -> None:
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            raise ValueError(f"{what} must be a floating-point torch.Tensor.")
        if tensor.ndim != 3:
            raise ValueError(
                f"{what} must have shape (batch, {channels}, frames), got {tuple(tensor.shape)}."
            )
        if tensor.shape[1] != channels:
            raise ValueError(f"{what} has {tensor.shape[1]} channels but this VAE expects {channels}.")
        if tensor.shape[0] == 0 or tensor.shape[2] == 0:
            raise ValueError(f"{what} is empty: shape {tuple(tensor.shape)}.")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{what} contains NaN or infinite values.")

    # ------------------------------------------------------------------ encode
    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        r = self.time_downsample_factor
        # Pad the tail with silence up to a multiple of r; decode() with num_frames crops it back.
        remainder = (-mel.shape[-1]) % r
        if remainder:
            mel = F.pad(mel, (0, remainder), value=LOG_MEL_FLOOR)
        if self.use_tiling and mel.shape[-1] > self.tile_latent_frames * r:
            return self._tiled(self.encoder, mel, r, self.receptive_radius()[0], upsample=False)
        return self.encoder(mel)

    @apply_forward_hook
    def encode(self, mel: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """Encode log-mel `(B, n_mels, T)` into a posterior over latents `(B, latent_channels, ceil(T / r))`.

        Returns:
            [`~diffusers.models.modeling_outputs.AutoencoderKLOutput`] with `latent_dist`, or a tuple.
        """
        self._check_input(mel, self.config.n_mels, "mel")
        mel = mel.to(self.dtype)
        if self.use_slicing and mel.shape[0] > 1:
            moments = torch.cat([self._encode(item) for item in mel.split(1)])
        else:
            moments = self._encode(mel)
        posterior = MelDiagonalGaussianDistribution(moments)
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    # ------------------------------------------------------------------ decode
    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and latents.shape[-1] > self.tile_latent_frames:
            return self._tiled(
                self.decoder, latents, self.time_downsample_factor, self.receptive_radius()[1], upsample=True
            )
        return self.decoder(latents)

    @apply_forward_hook
    def decode(
        self, latents: torch.Tensor, num_frames: int | None = None, return_dict: bool = True
    ) -> DecoderOutput | tuple:
        """Decode raw latents `(B, latent_channels, T')` into log-mel `(B, n_mels, num_frames or T' * r)`.

        `num_frames` crops the `r`-frame padding added by `encode` back off.
        """
        self._check_input(latents, self.config.latent_channels, "latents")
        latents = latents.to(self.dtype)
        if self.use_slicing and latents.shape[0] > 1:
            mel = torch.cat([self._decode(item) for item in latents.split(1)])
        else:
            mel = self._decode(latents)
        if num_frames is not None:
            if not 0 < num_frames <= mel.shape[-1]:
                raise ValueError(f"num_frames={num_frames} is outside 1..{mel.shape[-1]} for these latents.")
            mel = mel[..., :num_frames]
        if not return_dict:
            return (mel,)
        return DecoderOutput(sample=mel)

    def _tiled(
        self, module: nn.Module, inputs: torch.Tensor, r: int, radius: int, upsample: bool
    ) -> torch.Tensor:
        """Run `module` over overlapping time tiles (sizes in latent frames) and stitch the centres."""
        scale_in, scale_out = (1, r) if upsample else (r, 1)
        total = inputs.shape[-1] // scale_in
        tile = self.tile_latent_frames
        pieces = []
        for start in range(0, total, tile):
            stop = min(start + tile, total)
            lo, hi = max(start - radius, 0), min(stop + radius, total)
            out = module(inputs[..., lo * scale_in : hi * scale_in])
            pieces.append(out[..., (start - lo) * scale_out : (stop - lo) * scale_out])
        return torch.cat(pieces, dim=-1)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple:
        """Reconstruct log-mel `(B, n_mels, T)`; the output has the same `T`."""
        posterior = self.encode(sample).latent_dist
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(latents, num_frames=sample.shape[-1], return_dict=return_dict)
