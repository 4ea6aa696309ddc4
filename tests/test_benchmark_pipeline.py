"""benchmarks/benchmark_pipeline.py: end to end, per stage, with the streaming columns and the length ratio."""

import runpy
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_times_every_stage_the_stream_and_the_length_ratio(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling modules
    bench = runpy.run_path(str(BENCHMARKS / "benchmark_pipeline.py"), run_name="pipeline")
    # The demo-size pipeline with random weights; short clips and two steps keep it quick.
    argv = ["--threads", "1", "--seconds", "0.5", "1", "--steps", "2", "--repeats", "1", "--warmup", "0"]
    payload = bench["main"]([*argv, "--stream"])
    results = {row["audio_seconds"]: row for row in payload["results"]}
    assert sorted(results) == pytest.approx([0.5, 1.0], abs=0.02)
    for row in results.values():
        assert all(row[stage] > 0 for stage in bench["STAGES"])
        assert sum(row[stage] for stage in bench["STAGES"]) <= row["wall"]
        assert 0 < row["stream_first"] <= row["stream_last"]
        assert 0 < row["first_audio_fraction"] == pytest.approx(row["stream_first"] / row["wall"], rel=1e-6)
    printed = capsys.readouterr().out
    assert "first / wall" in printed and "RTF at 1.0 s / RTF at 0.5 s: 2 steps" in printed
