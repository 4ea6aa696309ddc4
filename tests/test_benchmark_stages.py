"""benchmarks/benchmark_stages.py: its analytic FLOP counts are what torch's FLOP counter sees."""

import runpy
from pathlib import Path

import pytest
import torch

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.testing_utils import get_dummy_components

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("alignment", ["none", "durations"])
def test_analytic_flops_of_every_stage_match_the_counter(monkeypatch, alignment):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling modules
    stages = runpy.run_path(str(BENCHMARKS / "benchmark_stages.py"), run_name="stages")
    components = get_dummy_components(phoneme_alignment=alignment, pooled_instruction_conditioning=True)
    pipe = InstructAudioPipeline(**components)
    pipe.vocoder_chunk_frames = 100  # the clip's 250 mel frames in three chunks, whose context counts too
    length = stages["build_stages"](pipe, 0.5, torch.device("cpu"), seed=0)

    def counted(call):
        return stages["counted_flops"](stages["no_grad"](call))

    for stage, flops in length["flops"].items():
        assert counted(length["calls"][stage]) == flops, stage
    assert counted(length["step_rebuilding"]) == length["step_rebuilding_flops"]
