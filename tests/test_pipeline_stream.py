"""The pipeline's chunked vocoding and `InstructAudioPipeline.stream`, on tiny components."""

import numpy as np
import pytest

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.pipelines.pipeline_instructaudio import VOCODER_CHUNK_FRAMES
from instructaudio_diffusers.testing_utils import get_dummy_components, get_dummy_inputs

pytestmark = pytest.mark.usefixtures("single_thread")

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def pipe():
    pipe = InstructAudioPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_inputs(**overrides) -> dict:
    inputs = get_dummy_inputs()
    del inputs["output_type"]
    return {**inputs, "audio_length_in_s": 0.2, **overrides}


def test_the_pipeline_vocodes_in_chunks_like_the_whole_clip(pipe, monkeypatch):
    assert pipe.vocoder_chunk_frames == VOCODER_CHUNK_FRAMES
    whole, chunked = [], []
    for setting, outputs in ((None, whole), (7, chunked)):
        monkeypatch.setattr(pipe, "vocoder_chunk_frames", setting)
        outputs.append(pipe(**call_inputs()).audios[0])
    assert whole[0].shape == chunked[0].shape == (1600,)
    assert np.abs(whole[0] - chunked[0]).max() <= TOLERANCE


@pytest.mark.parametrize("chunk_frames", [7, None])
def test_stream_yields_the_waveform_of_a_call_chunk_by_chunk(pipe, chunk_frames):
    expected = pipe(**call_inputs()).audios[0]
    chunks = list(pipe.stream(chunk_frames=chunk_frames, first_chunk_frames=None, **call_inputs()))
    hop_length = pipe.vae.config.hop_length
    frames = len(expected) // hop_length
    size = chunk_frames or VOCODER_CHUNK_FRAMES
    assert len(chunks) == -(-frames // size)
    assert all(isinstance(c, np.ndarray) and c.ndim == 1 and c.dtype == np.float32 for c in chunks)
    assert [len(c) for c in chunks[:-1]] == [size * hop_length] * (len(chunks) - 1)
    assert np.abs(np.concatenate(chunks) - expected).max() <= TOLERANCE


def test_stream_starts_small_and_doubles(pipe):
    expected = pipe(**call_inputs()).audios[0]
    chunks = list(pipe.stream(chunk_frames=8, first_chunk_frames=1, **call_inputs()))
    sizes = [len(c) // pipe.vae.config.hop_length for c in chunks]
    assert sizes[:4] == [1, 2, 4, 8] and all(size <= 8 for size in sizes)
    assert np.abs(np.concatenate(chunks) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("sizes", [{"chunk_frames": 0}, {"first_chunk_frames": -1}])
def test_bad_chunk_sizes_are_refused_before_generating(pipe, monkeypatch, sizes):
    def fail(*args, **kwargs):
        raise AssertionError("the pipeline ran although the chunk size was bad")

    monkeypatch.setattr(InstructAudioPipeline, "__call__", fail)
    with pytest.raises(ValueError, match="must be a positive integer"):
        next(pipe.stream(**call_inputs(**sizes)))


def test_stream_is_lazy(pipe, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the pipeline ran before a chunk was asked for")

    monkeypatch.setattr(InstructAudioPipeline, "__call__", fail)
    pipe.stream(**call_inputs())


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"output_type": "pt"}, TypeError, "takes no output_type"),
        ({"return_dict": False}, TypeError, "takes no return_dict"),
        ({"instruction": ["A calm man speaks.", "A woman speaks."]}, ValueError, "makes one output"),
        ({"num_waveforms_per_prompt": 2}, ValueError, "makes one output"),
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
        ({"chunk_frames": 0}, ValueError, "chunk_frames must be a positive integer"),
    ],
)
def test_stream_refuses_what_it_cannot_yield(pipe, overrides, error, match):
    with pytest.raises(error, match=match):
        next(pipe.stream(**call_inputs(**overrides)))
