"""Chunked vocoding: the receptive field computed from the layers, and chunks that add up to the whole clip."""

from __future__ import annotations

import pytest
import torch

from instructaudio_diffusers.conversion.convert_hifigan import to_speecht5_hifigan
from instructaudio_diffusers.models import vocoder_hifigan
from instructaudio_diffusers.models.vocoder_griffin_lim import GriffinLimVocoder
from instructaudio_diffusers.models.vocoder_hifigan import (
    HifiGanVocoder,
    receptive_field_frames,
    vocode,
    vocode_chunks,
)

pytestmark = pytest.mark.usefixtures("single_thread")

#: Largest difference allowed between chunked and whole-clip waveforms (in [-1, 1], float32).
TOLERANCE = 1e-5
# hop 256 = 8 * 8 * 4, the package's mel front end.
TINY_V1 = {
    "upsample_rates": (8, 8, 4),
    "upsample_kernel_sizes": (16, 16, 8),
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": (3, 7),
    "resblock_dilation_sizes": ((1, 3, 5), (1, 3, 5)),
}
TINY_V3 = {**TINY_V1, "resblock_dilation_sizes": ((1, 3), (1, 3)), "resblock": "2"}


def signal_preserving(model: HifiGanVocoder, seed: int = 0) -> HifiGanVocoder:
    """Redraw every convolution with unit-gain weights, so activations stay of order 1 through the layers.

    The paper's N(0, 0.01) initialisation shrinks the signal at every layer, which would make an error at the
    edge of the receptive field far too small to see.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            # Conv1d weights are (out, in, kernel): every output reads in * kernel taps; ConvTranspose1d weights
            # are (in, out, kernel), and every output reads kernel / stride taps of each input channel.
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.Conv1d):
                fan_in = weight[0].numel()
            elif isinstance(module, torch.nn.ConvTranspose1d):
                fan_in = weight.shape[0] * weight.shape[2] / module.stride[0]
            else:
                continue
            weight.copy_(torch.randn(weight.shape, generator=generator) / fan_in**0.5)
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def tiny_vocoder(config: dict = TINY_V1) -> HifiGanVocoder:
    return signal_preserving(HifiGanVocoder(**config, use_weight_norm=False))


def random_mel(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(seed)) * 2.0 - 6.0


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_receptive_field_of_the_v1_generator():
    # The official V1 layout (what the demo pipeline vocodes with) and its stock transformers form.
    v1 = HifiGanVocoder(use_weight_norm=False)
    assert receptive_field_frames(v1) == receptive_field_frames(to_speecht5_hifigan(v1)) == (13, 13)
    assert receptive_field_frames(GriffinLimVocoder()) is None


@pytest.mark.parametrize("config", [TINY_V1, TINY_V3], ids=["resblock1", "resblock2"])
def test_a_frame_influences_no_sample_beyond_the_receptive_field(config):
    model = tiny_vocoder(config)
    before, after = receptive_field_frames(model)
    mel, frame = random_mel(1, 40), 20
    changed = mel.clone()
    changed[..., frame] += 1.0
    with torch.no_grad():
        moved = (model(changed).waveform - model(mel).waveform).abs()[0] > 0
    moved_frames = moved.nonzero().flatten() // model.hop_length
    # A sample of frame f reads frames f - before .. f + after, so frame 20 reaches frames 20 - after .. 20 + before.
    assert frame - after <= moved_frames.min() and moved_frames.max() <= frame + before


@pytest.mark.parametrize(
    "batch, frames, chunk_frames",
    [
        (1, 50, 7),  # boundaries inside the clip, a short last chunk
        (2, 48, 16),  # a batch, the clip a whole number of chunks
        (1, 30, 1),  # one frame per chunk: context on both sides of every frame
        (2, 5, 16),  # shorter than one chunk
        (1, 16, 16),  # exactly one chunk
        (1, 17, 16),  # one frame past a chunk
    ],
)
@pytest.mark.parametrize("config", [TINY_V1, TINY_V3], ids=["resblock1", "resblock2"])
def test_chunked_vocoding_equals_the_whole_clip(config, batch, frames, chunk_frames):
    model = tiny_vocoder(config)
    mel = random_mel(batch, frames)
    with torch.no_grad():
        whole = vocode(model, mel)
        chunks = list(vocode_chunks(model, mel, chunk_frames))
        assert whole.abs().mean() > 0.1  # a signal the comparison can see
        assert max_difference(vocode(model, mel, chunk_frames=chunk_frames), whole) <= TOLERANCE
    assert len(chunks) == -(-frames // chunk_frames)
    assert [chunk.shape[-1] for chunk in chunks[:-1]] == [chunk_frames * model.hop_length] * (len(chunks) - 1)
    assert max_difference(torch.cat(chunks, dim=-1), whole) <= TOLERANCE


@pytest.mark.parametrize("frames", [50, 3, 9])
def test_chunks_that_start_small_double_up_to_the_chunk_size(frames):
    model = tiny_vocoder(TINY_V3)
    mel = random_mel(1, frames)
    with torch.no_grad():
        whole = vocode(model, mel)
        chunks = list(vocode_chunks(model, mel, 16, first_chunk_frames=3))
    sizes = [chunk.shape[-1] // model.hop_length for chunk in chunks]
    schedule = [3, 6, 12, 16, 16, 16]  # 3 frames, doubling, then 16 at a time
    assert sizes[:-1] == schedule[: len(sizes) - 1] and 0 < sizes[-1] <= schedule[len(sizes) - 1]
    assert sum(sizes) == frames
    assert max_difference(torch.cat(chunks, dim=-1), whole) <= TOLERANCE


@pytest.mark.parametrize("name", ["chunk_frames", "first_chunk_frames"])
@pytest.mark.parametrize("value", [0, -4, 2.5, True])
def test_bad_chunk_sizes_are_named(name, value):
    sizes = {"chunk_frames": 16, "first_chunk_frames": 4, name: value}
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer"):
        next(vocode_chunks(tiny_vocoder(), random_mel(1, 40), **sizes))


def test_the_stock_speecht5_form_chunks_alike():
    model = to_speecht5_hifigan(tiny_vocoder())
    mel = random_mel(2, 40)
    with torch.no_grad():
        assert max_difference(vocode(model, mel, chunk_frames=9), vocode(model, mel)) <= TOLERANCE


@pytest.mark.parametrize("side", ["before", "after"])
def test_one_frame_less_context_breaks_equality(monkeypatch, side):
    """The context is not generous: with one frame less on either side, the chunks' edges differ."""
    model = tiny_vocoder(TINY_V3)
    before, after = receptive_field_frames(model)
    short = (before - 1, after) if side == "before" else (before, after - 1)
    monkeypatch.setattr(vocoder_hifigan, "receptive_field_frames", lambda vocoder: short)
    mel = random_mel(1, 40)
    with torch.no_grad():
        assert max_difference(vocode(model, mel, chunk_frames=10), vocode(model, mel)) > 100 * TOLERANCE


def test_griffin_lim_is_vocoded_whole():
    vocoder = GriffinLimVocoder(n_iter=2)
    mel = random_mel(1, 12)
    chunks = list(vocode_chunks(vocoder, mel, 4))
    assert len(chunks) == 1 and torch.equal(chunks[0], vocode(vocoder, mel))


@pytest.mark.parametrize("chunk_frames", [0, -3, 2.5, True])
def test_chunk_frames_must_be_a_positive_integer(chunk_frames):
    with pytest.raises(ValueError, match="chunk_frames must be a positive integer"):
        vocode(tiny_vocoder(), random_mel(1, 8), chunk_frames=chunk_frames)
