"""HiFi-GAN generator (Kong et al., 2020) as a diffusers model: log-mel -> waveform.

The module names follow the official implementation (``conv_pre``, ``resblocks.N.convs1/convs2``,
``conv_post``; only ``ups`` is spelled ``upsamplers``) so that converting a checkpoint is a rename of
the weight-norm tensors and nothing else (see ``conversion/convert_hifigan.py``).

Weight norm and serialization: the config field ``use_weight_norm`` records whether the convolutions
currently carry a weight-norm parametrization. ``remove_weight_norm()`` folds it and sets the field to
``False``; ``apply_weight_norm()`` does the reverse. ``__init__`` builds whichever form the config
says, so ``save_pretrained``/``from_pretrained`` round-trip bit-exactly in both forms and a folded
(inference) checkpoint never has to be re-normalized on load.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..audio.mel import MelSettings


@dataclass
class VocoderOutput(BaseOutput):
    """Output of every vocoder in this package.

    Args:
        waveform (`torch.Tensor`): `(batch, frames * hop_length)` audio in [-1, 1] at the vocoder's
            `sampling_rate`.
    """

    waveform: torch.Tensor


def check_mel_input(mel: torch.Tensor, n_mels: int, min_frames: int = 1) -> None:
    """Raise a `ValueError` naming the problem unless `mel` is a finite `(batch, n_mels, frames)` tensor.

    Shared by all vocoders so that swapping one for another never changes what input is accepted.
    """
    if not torch.is_tensor(mel) or not mel.is_floating_point():
        raise ValueError(f"mel must be a floating-point torch.Tensor, got {type(mel).__name__}.")
    if mel.ndim != 3:
        hint = " (add a batch dimension with mel.unsqueeze(0))" if mel.ndim == 2 else ""
        raise ValueError(f"mel must have shape (batch, n_mels, frames), got {tuple(mel.shape)}{hint}.")
    if mel.shape[1] != n_mels:
        raise ValueError(
            f"mel has {mel.shape[1]} mel bins but the vocoder expects n_mels={n_mels} "
            f"(shape {tuple(mel.shape)}; layout is (batch, n_mels, frames))."
        )
    if mel.shape[0] == 0 or mel.shape[2] < min_frames:
        raise ValueError(
            f"mel has shape {tuple(mel.shape)}; need a non-empty batch and at least {min_frames} frame(s)."
        )
    if not torch.isfinite(mel).all():
        raise ValueError("mel contains NaN or infinite values.")


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 convolution unchanged (odd kernels)."""
    return (kernel_size * dilation - dilation) // 2


class HifiGanResBlock1(nn.Module):
    r"""HiFi-GAN "ResBlock1": per dilation, a dilated conv then an undilated conv, with a residual sum.

    Parameters:
        channels (`int`): Number of input and output channels.
        kernel_size (`int`): Odd kernel size of every convolution.
        dilations (`tuple[int, ...]`): Dilation of the first convolution of each residual unit.
        leaky_relu_slope (`float`): Negative slope of the activations.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], leaky_relu_slope: float):
        super().__init__()
        self.leaky_relu_slope = leaky_relu_slope
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilations
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(batch, channels, samples)` -> same shape."""
        for dilated_conv, conv in zip(self.convs1, self.convs2):
            residual = nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope)
            residual = dilated_conv(residual)
            residual = nn.functional.leaky_relu(residual, self.leaky_relu_slope)
            hidden_states = hidden_states + conv(residual)
        return hidden_states


class HifiGanResBlock2(nn.Module):
    r"""HiFi-GAN "ResBlock2" (the lighter V3 block): one dilated conv per residual unit.

    Parameters:
        channels (`int`): Number of input and output channels.
        kernel_size (`int`): Odd kernel size of every convolution.
        dilations (`tuple[int, ...]`): Dilation of each residual unit.
        leaky_relu_slope (`float`): Negative slope of the activations.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], leaky_relu_slope: float):
        super().__init__()
        self.leaky_relu_slope = leaky_relu_slope
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(batch, channels, samples)` -> same shape."""
        for conv in self.convs:
            hidden_states = hidden_states + conv(
                nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope)
            )
        return hidden_states


class HifiGanVocoder(ModelMixin, ConfigMixin):
    r"""HiFi-GAN generator: a log-mel spectrogram in HiFi-GAN's convention (see `audio.MelSpectrogram`)
    to a waveform, upsampling time by `hop_length = prod(upsample_rates)`.

    Defaults are the V1 configuration of the paper (the "universal" checkpoint converted by
    `instructaudio-convert-hifigan`).

    Parameters:
        sampling_rate (`int`): Sample rate of the produced waveform in Hz (metadata for the pipeline).
        n_mels (`int`): Number of mel bins of the input (input channels).
        upsample_rates (`tuple[int, ...]`): Stride of each transposed-convolution upsampler; their product
            is the hop length of the mel front end.
        upsample_kernel_sizes (`tuple[int, ...]`): Kernel size of each upsampler (one per rate).
        upsample_initial_channel (`int`): Channels after the input convolution; halved by every upsampler.
        resblock_kernel_sizes (`tuple[int, ...]`): Kernel size of each residual block of the multi-receptive
            field fusion that follows every upsampler.
        resblock_dilation_sizes (`tuple[tuple[int, ...], ...]`): Dilations of each of those residual blocks.
        resblock (`str`): `"1"` (V1/V2 block: dilated + undilated conv per unit) or `"2"` (V3 block).
        leaky_relu_slope (`float`): Negative slope of the activations inside the network.
        post_leaky_relu_slope (`float`): Slope of the activation before the output convolution. The
            official implementation calls `leaky_relu` there without a slope, i.e. PyTorch's 0.01, and its
            checkpoints were trained that way.
        use_weight_norm (`bool`): Whether the convolutions carry a weight-norm parametrization (training
            form). Maintained by `apply_weight_norm()`/`remove_weight_norm()`; inference checkpoints store
            `False` with the folded weights.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["HifiGanResBlock1", "HifiGanResBlock2"]

    @register_to_config
    def __init__(
        self,
        sampling_rate: int = 22050,
        n_mels: int = 80,
        upsample_rates: tuple[int, ...] = (8, 8, 2, 2),
        upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4),
        upsample_initial_channel: int = 512,
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        resblock: str = "1",
        leaky_relu_slope: float = 0.1,
        post_leaky_relu_slope: float = 0.01,
        use_weight_norm: bool = True,
    ):
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError(
                f"upsample_rates {list(upsample_rates)} and upsample_kernel_sizes {list(upsample_kernel_sizes)} "
                "must have the same length."
            )
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError(
                f"resblock_kernel_sizes {list(resblock_kernel_sizes)} and resblock_dilation_sizes "
                f"{[list(d) for d in resblock_dilation_sizes]} must have the same length."
            )
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            # Output length is exactly rate * input length only when (kernel - rate) is even and >= 0.
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(
                    f"upsample kernel {kernel} with rate {rate}: need kernel >= rate and kernel - rate even "
                    "so that each upsampler multiplies the length exactly by its rate."
                )
        if any(k % 2 == 0 for k in resblock_kernel_sizes):
            raise ValueError(f"resblock_kernel_sizes must be odd, got {list(resblock_kernel_sizes)}.")
        if upsample_initial_channel % (2 ** len(upsample_rates)):
            raise ValueError(
                f"upsample_initial_channel ({upsample_initial_channel}) must be divisible by "
                f"2 ** len(upsample_rates) = {2 ** len(upsample_rates)}: every upsampler halves the channels."
            )
        block_classes = {"1": HifiGanResBlock1, "2": HifiGanResBlock2}
        if str(resblock) not in block_classes:
            raise ValueError(f'resblock must be "1" or "2", got {resblock!r}.')
        block_class = block_classes[str(resblock)]

        self.num_kernels = len(resblock_kernel_sizes)
        self.leaky_relu_slope = leaky_relu_slope
        self.post_leaky_relu_slope = post_leaky_relu_slope

        self.conv_pre = nn.Conv1d(n_mels, upsample_initial_channel, 7, padding=3)
        self.upsamplers = nn.ModuleList()
        # Flat list, `num_kernels` blocks per upsampler, as in the official code (keeps its key layout).
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.upsamplers.append(
                nn.ConvTranspose1d(channels, channels // 2, kernel, stride=rate, padding=(kernel - rate) // 2)
            )
            channels //= 2
            for block_kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block_class(channels, block_kernel, tuple(dilations), leaky_relu_slope))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3)

        # The paper's initialisation: N(0, 0.01) convolutions keep an untrained generator's output small,
        # which is what its GAN training starts from. (Pretrained weights overwrite this.)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)

        self.gradient_checkpointing = False
        if use_weight_norm:
            for module in self._convolutions():
                weight_norm(module)

    @property
    def hop_length(self) -> int:
        """Waveform samples produced per mel frame: the product of `upsample_rates`."""
        return math.prod(self.config.upsample_rates)

    def _convolutions(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]

    def apply_weight_norm(self) -> None:
        """Re-parametrize every convolution with weight norm (for training). Idempotent."""
        for module in self._convolutions():
            if not parametrize.is_parametrized(module, "weight"):
                weight_norm(module)
        self.register_to_config(use_weight_norm=True)

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (for inference; same outputs, fewer ops). Idempotent."""
        for module in self._convolutions():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        self.register_to_config(use_weight_norm=False)

    def forward(self, mel: torch.Tensor, return_dict: bool = True) -> VocoderOutput | tuple[torch.Tensor]:
        """Synthesize a waveform.

        Args:
            mel (`torch.Tensor`): `(batch, n_mels, frames)` natural-log mel magnitudes, floor `log(1e-5)`.
            return_dict (`bool`): Return a `VocoderOutput` (default) or a one-element tuple.

        Returns:
            `VocoderOutput` with `waveform` of shape `(batch, frames * hop_length)` in [-1, 1].
        """
        check_mel_input(mel, self.config.n_mels)
        hidden_states = self.conv_pre(mel.to(self.conv_pre.bias.dtype))
        for stage, upsampler in enumerate(self.upsamplers):
            hidden_states = upsampler(nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope))
            # Multi-receptive field fusion: average of parallel residual blocks with different kernels.
            blocks = self.resblocks[stage * self.num_kernels : (stage + 1) * self.num_kernels]
            fused = 0.0
            for block in blocks:
                if torch.is_grad_enabled() and self.gradient_checkpointing:
                    fused = fused + self._gradient_checkpointing_func(block, hidden_states)
                else:
                    fused = fused + block(hidden_states)
            hidden_states = fused / self.num_kernels
        hidden_states = nn.functional.leaky_relu(hidden_states, self.post_leaky_relu_slope)
        waveform = torch.tanh(self.conv_post(hidden_states)).squeeze(1)

        if not return_dict:
            return (waveform,)
        return VocoderOutput(waveform=waveform)


def _is_speecht5_hifigan(vocoder: nn.Module) -> bool:
    from transformers import SpeechT5HifiGan

    return isinstance(vocoder, SpeechT5HifiGan)


def vocoder_mel_settings(vocoder: nn.Module) -> dict:
    """The mel settings a vocoder states, by [`MelSettings`] name: all seven for `GriffinLimVocoder`, which owns
    a front end; `sampling_rate`, `n_mels` and `hop_length` for a HiFi-GAN (this package's `HifiGanVocoder`, or
    transformers' `SpeechT5HifiGan`, the stock V1 generator with `model_in_dim` mels), which cannot know the rest.
    """
    if _is_speecht5_hifigan(vocoder):
        config = vocoder.config
        return {
            "sampling_rate": config.sampling_rate,
            "n_mels": config.model_in_dim,
            "hop_length": math.prod(config.upsample_rates),
        }
    settings = getattr(vocoder, "mel_settings", None)
    if settings is not None:
        return settings.as_dict()
    return {
        "sampling_rate": vocoder.config.sampling_rate,
        "n_mels": vocoder.config.n_mels,
        "hop_length": vocoder.hop_length,
    }


def check_vocoder_mel_settings(vocoder: nn.Module, settings: MelSettings, source: str = "the VAE") -> None:
    """Raise a `ValueError` naming every setting in which `vocoder` (see `vocoder_mel_settings`) disagrees with
    the mel front end it must invert, `settings` (of `source`)."""
    problems = settings.mismatches(vocoder_mel_settings(vocoder))
    if problems:
        raise ValueError(
            f"The vocoder ({type(vocoder).__name__}) does not fit the mels of {source}: "
            + ", ".join(problems)
            + ". Use a vocoder trained on the same mel front end."
        )


def _input_span(conv: nn.Module, first: int, last: int) -> tuple[int, int]:
    """Input positions (padding included) that outputs `first..last` of a 1-D (transposed) convolution read."""
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    reach = dilation * (kernel - 1)
    # A transposed convolution writes input i to outputs i * stride - padding + j * dilation, 0 <= j < kernel.
    if isinstance(conv, nn.ConvTranspose1d):
        return -((reach - first - padding) // stride), (last + padding) // stride
    return first * stride - padding, last * stride - padding + reach


def _residual_block_span(block: nn.Module, first: int, last: int) -> tuple[int, int]:
    """Input span of a HiFi-GAN residual block: units run in order, each `x + convs(x)`."""
    units = list(zip(block.convs1, block.convs2)) if hasattr(block, "convs1") else [(c,) for c in block.convs]
    for unit in reversed(units):
        low, high = first, last
        for conv in reversed(unit):
            low, high = _input_span(conv, low, high)
        first, last = min(first, low), max(last, high)
    return first, last


def receptive_field_frames(vocoder: nn.Module) -> tuple[int, int] | None:
    """Mel frames before and after its own frame that the output samples of a HiFi-GAN generator depend on.

    Computed from the generator's layers (`HifiGanVocoder` or transformers' `SpeechT5HifiGan`): the samples of one
    frame are traced back through the output convolution, each stage's residual blocks and upsampler, and the input
    convolution, and at every stage the positions they read must lie inside the frames given. So vocoding a
    stretch of frames with this much context on both sides gives the same samples as the whole clip: inside it,
    no layer ever reads the zero padding at the stretch's edges. (Each end of a span follows only the same end of
    the span it comes from, so tracing the frame's first and last samples together is exact.) `None` for vocoders
    without a finite receptive field (Griffin-Lim's iterations spread every frame over the whole clip).
    """
    upsamplers = getattr(vocoder, "upsamplers", None) or getattr(vocoder, "upsampler", None)
    if upsamplers is None or not hasattr(vocoder, "conv_pre"):
        return None
    rates = [upsampler.stride[0] for upsampler in upsamplers]
    per_stage = len(vocoder.resblocks) // len(upsamplers)
    rate = math.prod(rates)  # positions per mel frame at the current layer
    first, last = _input_span(vocoder.conv_post, 0, rate - 1)  # the samples of frame 0
    before = after = 0
    for stage in reversed(range(len(upsamplers))):
        before, after = max(before, -(first // rate)), max(after, last // rate)
        blocks = vocoder.resblocks[stage * per_stage : (stage + 1) * per_stage]
        spans = [_residual_block_span(block, first, last) for block in blocks]
        first, last = min(low for low, _ in spans), max(high for _, high in spans)
        before, after = max(before, -(first // rate)), max(after, last // rate)
        first, last = _input_span(upsamplers[stage], first, last)
        rate //= rates[stage]
    before, after = max(before, -first), max(after, last)
    first, last = _input_span(vocoder.conv_pre, first, last)
    return max(before, -first), max(after, last)


def _vocode_whole(vocoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    mel = mel.to(vocoder.dtype)
    if _is_speecht5_hifigan(vocoder):
        return vocoder(mel.transpose(1, 2))  # SpeechT5HifiGan reads (batch, frames, n_mels)
    return vocoder(mel, return_dict=False)[0]


def chunk_windows(
    frames: int, chunk_frames: int, context: tuple[int, int], first_chunk_frames: int | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """`(start, end, context_start, context_end)` of each chunk of `frames` mel frames, in order: the chunk's own
    frames `start..end` and the frames to vocode for them, with `context = (before, after)` frames on either side
    (fewer at the clip's edges, where the whole clip has its own padding).

    Chunks are `chunk_frames` long; with `first_chunk_frames`, the first is that long and each next one twice the
    one before, up to `chunk_frames`. A stream then starts early and stays gapless whenever the vocoder runs
    faster than half real time (each chunk takes less time than the audio already out lasts)."""
    before, after = context
    size, start = min(first_chunk_frames or chunk_frames, chunk_frames), 0
    while start < frames:
        end = min(start + size, frames)
        yield start, end, max(start - before, 0), min(end + after, frames)
        start, size = end, min(2 * size, chunk_frames)


def frames_vocoded(vocoder: nn.Module, frames: int, chunk_frames: int | None) -> int:
    """Mel frames the network runs on when `vocode(vocoder, mel, chunk_frames)` vocodes `frames`: the clip itself, or
    every chunk with its context (what the chunks' overlap costs, e.g. in a FLOP count)."""
    context = receptive_field_frames(vocoder)
    if chunk_frames is None or context is None or frames <= chunk_frames:
        return frames
    return sum(stop - begin for _, _, begin, stop in chunk_windows(frames, chunk_frames, context))


def check_chunk_frames(chunk_frames: int, first_chunk_frames: int | None = None) -> None:
    """Raise a `ValueError` naming the argument unless both are positive integers (`first_chunk_frames` may be
    `None`)."""
    for name, value in (("chunk_frames", chunk_frames), ("first_chunk_frames", first_chunk_frames)):
        if value is None and name == "first_chunk_frames":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer (mel frames per chunk), got {value!r}.")


def vocode_chunks(
    vocoder: nn.Module, mel: torch.Tensor, chunk_frames: int, first_chunk_frames: int | None = None
) -> Iterator[torch.Tensor]:
    """Vocode `(batch, n_mels, frames)` log-mel `chunk_frames` frames at a time, yielding `(batch, samples)` waveform
    chunks in order; their concatenation is `vocode(vocoder, mel)`, up to floating-point rounding. With
    `first_chunk_frames`, the chunks start that small and double up to `chunk_frames` (see `chunk_windows`), for
    a stream's first audio sooner.

    Each chunk is run with `receptive_field_frames(vocoder)` frames of context on both sides (see `chunk_windows`),
    and the context's samples are dropped. So the work and the memory grow linearly with the length, and the first
    chunk is ready after a fraction of the whole time. A vocoder without a receptive field (Griffin-Lim) yields the
    whole clip as one chunk.

    Raises:
        ValueError: `chunk_frames` or `first_chunk_frames` is not a positive integer.
    """
    check_chunk_frames(chunk_frames, first_chunk_frames)
    context = receptive_field_frames(vocoder)
    if context is None or mel.shape[-1] <= min(chunk_frames, first_chunk_frames or chunk_frames):
        yield _vocode_whole(vocoder, mel)
        return
    hop_length = vocoder_mel_settings(vocoder)["hop_length"]
    windows = chunk_windows(mel.shape[-1], chunk_frames, context, first_chunk_frames)
    for start, end, context_start, context_end in windows:
        waveform = _vocode_whole(vocoder, mel[..., context_start:context_end])
        yield waveform[..., (start - context_start) * hop_length : (end - context_start) * hop_length]


def vocode(vocoder: nn.Module, mel: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
    """Run any vocoder `vocoder_mel_settings` accepts: `(batch, n_mels, frames)` log-mel -> `(batch, samples)`.

    Args:
        chunk_frames (`int`, *optional*): Vocode this many mel frames at a time (see `vocode_chunks`), for time and
            memory linear in the length; by default the whole clip in one call.
    """
    if chunk_frames is None:
        return _vocode_whole(vocoder, mel)
    return torch.cat(list(vocode_chunks(vocoder, mel, chunk_frames)), dim=-1)
