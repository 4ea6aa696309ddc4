"""benchmarks/benchmark_transformer.py: every row runs, and its analytic FLOP count is what torch's counter sees."""

import argparse
import runpy
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_analytic_flops_of_every_row_match_the_counter(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling modules
    bench = runpy.run_path(str(BENCHMARKS / "benchmark_transformer.py"), run_name="transformer")
    demo = bench["demo_config"]()
    args = argparse.Namespace(
        seed=0, batch_size=2, latent_frames=24, instruction_len=5, phoneme_len=7, joint_layers=2
    )
    # At the demo's own width, so the "demo as shipped" row (phonemes placed by durations) runs too.
    candidates, flops = bench["build_candidates"](
        args, demo["hidden_size"], demo["num_attention_heads"], torch.device("cpu"), torch.float32
    )
    assert "demo as shipped" in candidates and "SD3Transformer2DModel" in candidates
    for name, (model, inputs, _) in candidates.items():
        assert bench["counted_flops"](bench["forward_fn"](model, inputs)) == flops[name]["total"], name
