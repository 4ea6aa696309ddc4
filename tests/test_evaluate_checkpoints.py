"""training/evaluate_checkpoints.py: which transformers it evaluates, and the cases it picks."""

import json
from pathlib import Path

import pytest

from instructaudio_diffusers.training import checkpoint_evaluation as evaluate_checkpoints

REPO = Path(__file__).resolve().parents[1]


def make_run(root: Path, steps: list[int], ema: bool = True) -> Path:
    for step in steps:
        for name in ("transformer", "transformer_ema") if ema else ("transformer",):
            (root / f"checkpoint-{step}" / name).mkdir(parents=True)
    (root / "checkpoint-900.partial" / "transformer").mkdir(parents=True)  # still being written
    return root


def test_a_run_gives_its_checkpoints_oldest_first_preferring_ema(tmp_path):
    run = make_run(tmp_path / "run", [200, 100, 1000])
    found = evaluate_checkpoints.transformer_folders([str(run)], every=1)
    assert [folder for _, folder in found] == [
        run / f"checkpoint-{s}" / "transformer_ema" for s in (100, 200, 1000)
    ]
    assert [f.parent.name for _, f in evaluate_checkpoints.transformer_folders([str(run)], every=200)] == [
        "checkpoint-200",
        "checkpoint-1000",
    ]


def test_single_checkpoints_and_transformer_folders_are_accepted(tmp_path):
    run = make_run(tmp_path / "run", [300], ema=False)
    transformer = tmp_path / "exported" / "transformer"
    transformer.mkdir(parents=True)
    (transformer / "config.json").write_text("{}")
    found = evaluate_checkpoints.transformer_folders([str(run / "checkpoint-300"), str(transformer)], every=1)
    assert [folder for _, folder in found] == [run / "checkpoint-300" / "transformer", transformer]
    with pytest.raises(SystemExit, match="neither a transformer folder"):
        evaluate_checkpoints.transformer_folders([str(tmp_path / "empty")], every=1)


def test_cases_are_filtered_and_oracle_durations_must_cover_them(tmp_path):
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "a", "task": "speech", "language": "en", "text": "Hi.", "instruction": "A man."},
        {"id": "b", "task": "speech", "language": "zh", "text": "你好。", "instruction": "A woman."},
        {"id": "c", "task": "speech", "language": "en", "text": "Yes.", "instruction": "A woman."},
    ]
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows))
    oracle = tmp_path / "oracle.jsonl"
    oracle.write_text(json.dumps({"id": "a", "durations": [1, 2, 3]}) + "\n")
    common = ["--pipeline", "p", "--checkpoints", "r", "--cases", str(cases), "--out", str(tmp_path / "o")]
    assert [c["id"] for c in evaluate_checkpoints.load_cases(evaluate_checkpoints.parse_args(common))] == [
        "a",
        "c",
    ]
    args = evaluate_checkpoints.parse_args(
        [*common, "--limit", "1", "--durations", "oracle", "--oracle_durations", str(oracle)]
    )
    assert evaluate_checkpoints.load_cases(args)[0]["oracle_durations"] == [1, 2, 3]
    args = evaluate_checkpoints.parse_args(
        [*common, "--durations", "oracle", "--oracle_durations", str(oracle)]
    )
    with pytest.raises(SystemExit, match=r"no durations for \['c'\]"):
        evaluate_checkpoints.load_cases(args)
    with pytest.raises(SystemExit):
        evaluate_checkpoints.parse_args([*common, "--durations", "oracle"])


def test_only_results_with_the_same_settings_count_as_done(tmp_path):
    settings = {"steps": 16, "guidance": 2.0, "sway_sampling_coef": -1.0}
    rows = [
        {
            "checkpoint": "a",
            "settings": {"steps": 16, "guidance": 2.0},
        },  # before sway was recorded: the default
        {"checkpoint": "b", "settings": {**settings, "sway_sampling_coef": 0.0}},
        {"checkpoint": "c", "settings": {**settings, "steps": 32}},
        {"checkpoint": "d", "settings": settings},
    ]
    out = tmp_path / "curve.jsonl"
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert evaluate_checkpoints.finished_checkpoints(out, settings) == {"a", "d"}
    assert evaluate_checkpoints.finished_checkpoints(out, {**settings, "sway_sampling_coef": 0.0}) == {"b"}
    assert evaluate_checkpoints.finished_checkpoints(tmp_path / "missing.jsonl", settings) == set()
    assert (
        evaluate_checkpoints.parse_args(
            [
                "--pipeline",
                "p",
                "--checkpoints",
                "c",
                "--cases",
                "x",
                "--out",
                "o",
                "--sway_sampling_coef",
                "0",
            ]
        ).sway_sampling_coef
        == 0.0
    )
