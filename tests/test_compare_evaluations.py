"""benchmarks/compare_evaluations.py: two evaluation runs compared on the cases both finished."""

import json
import runpy
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def write_run(folder: Path, steps: int, rows: list[dict]) -> str:
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"header": {"steps": steps}}))
    (folder / "cases.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return str(folder)


def row(case_id, gender_ok, errors, generation_s=1.0, **extra):
    return {
        "id": case_id,
        "attributes": {"gender": {"expected": "male", "predicted": "?", "value": 1.0, "correct": gender_ok}},
        "asr": {"errors": errors, "reference_words": 10},
        "generation_s": generation_s,
        "audio_s": 2.0,
        **extra,
    }


def test_only_cases_both_runs_finished_count(tmp_path, capsys):
    main = runpy.run_path(str(BENCHMARKS / "compare_evaluations.py"), run_name="compare")["main"]
    slow = write_run(tmp_path / "a", 32, [row("x", True, 1), row("y", True, 3), row("z", False, 9)])
    # Case z failed in the fast run and case w exists only there: both are left out.
    fast = write_run(
        tmp_path / "b",
        16,
        [row("x", True, 2, 0.5), row("y", False, 4, 0.5), {"id": "z", "error": "boom"}, row("w", True, 0)],
    )
    output = tmp_path / "compare.json"
    assert main([slow, fast, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("2 shared cases")
    assert "| gender | 100.0 % (n=2) | 50.0 % (n=2) |" in printed
    assert "| english_wer | 20.0 % (n=2) | 30.0 % (n=2) |" in printed
    results = json.loads(output.read_text())
    assert results["a"]["rtf"]["value"] == 0.5 and results["b"]["rtf"]["value"] == 0.25


def test_disjoint_runs_are_an_error(tmp_path, capsys):
    main = runpy.run_path(str(BENCHMARKS / "compare_evaluations.py"), run_name="compare")["main"]
    a = write_run(tmp_path / "a", 32, [row("x", True, 1)])
    b = write_run(tmp_path / "b", 16, [row("y", True, 1)])
    assert main([a, b]) == 2 and "share no successful case" in capsys.readouterr().err
