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
        "language": "en",
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


def test_new_runs_compare_contrast_pairs_and_both_asr_models(tmp_path, capsys):
    main = runpy.run_path(str(BENCHMARKS / "compare_evaluations.py"), run_name="compare")["main"]

    def new_row(case_id, tiny_errors, base_errors):
        counts = {"substitutions": 0, "deletions": 0, "insertions": 0, "reference_words": 10}
        return {
            "id": case_id,
            "language": "en",
            "attributes": {},
            "generation_s": 1.0,
            "audio_s": 2.0,
            "asr": {"tiny.en": {**counts, "errors": tiny_errors}, "base": {**counts, "errors": base_errors}},
        }

    def pair(name, success):
        return {
            "audio": "generated",
            "pair": name,
            "attribute": "pitch",
            "positive": f"{name}a",
            "negative": f"{name}b",
            "statistic": 3.0 if success else 0.5,
            "success": success,
        }

    runs = []
    for folder, outcomes in (("a", (True, True)), ("b", (True, False))):
        rows = [new_row(f"{name}{side}", 1, 3) for name in ("p", "q") for side in "ab"]
        path = write_run(tmp_path / folder, 32, rows)
        pairs = [
            pair("p", outcomes[0]),
            pair("q", outcomes[1]),
            {**pair("p", False), "audio": "ground_truth"},
        ]
        (tmp_path / folder / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
        runs.append(path)
    # Run b lacks case qb: pair q is not shared and drops out of both sides of the comparison.
    (tmp_path / "b" / "cases.jsonl").write_text(
        "\n".join(json.dumps(new_row(i, 1, 3)) for i in ("pa", "pb", "qa")) + "\n"
    )
    # A Mandarin row: its base entry holds CER and pinyin counts, and must not be read as an English WER.
    counts = {"substitutions": 1, "deletions": 0, "insertions": 0, "errors": 1, "reference_words": 4}
    mandarin = {"id": "zh", "language": "zh", "attributes": {}, "generation_s": 1.0, "audio_s": 2.0,
                "asr": {"base": {"hypothesis": "x", "cer": counts, "pinyin": {**counts, "errors": 0}}}}  # fmt: skip
    for folder in ("a", "b"):
        with open(tmp_path / folder / "cases.jsonl", "a") as handle:
            handle.write(json.dumps(mandarin) + "\n")
    assert main(runs) == 0
    printed = capsys.readouterr().out
    assert "| mandarin_cer | 25.0 % (n=1) | 25.0 % (n=1) |" in printed
    assert "| contrast_pitch | 100.0 % (n=1) | 100.0 % (n=1) |" in printed
    assert "| english_wer | 10.0 % (n=3) | 10.0 % (n=3) |" in printed
    assert "| english_wer_base | 30.0 % (n=3) | 30.0 % (n=3) |" in printed
