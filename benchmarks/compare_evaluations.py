"""Compare two evaluation runs on the cases they share, e.g. the same model at 32 and at 16 denoising steps.

    python benchmarks/compare_evaluations.py runs/eval/demo_32 runs/eval/demo_16 [--output compare.json]

Each run is an `--out` folder of `python -m instructaudio_diffusers.evaluation`. Only cases present (and not
failed) in both runs count, so a run made with `--limit` is compared fairly with a full one. Prints one table:
attribute accuracies, English WER, Mandarin MCD, tempo and dialogue results and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from instructaudio_diffusers.evaluation.asr import WordErrors, corpus_wer
from instructaudio_diffusers.evaluation.report import CLASSIFIED_ATTRIBUTES, summarize_verdicts


def read_run(folder: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    path = Path(folder)
    header = json.loads((path / "summary.json").read_text(encoding="utf-8"))["header"]
    rows = {}
    for line in (path / "cases.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "error" not in row:
            rows[row["id"]] = row
    return header, rows


def measure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = summarize_verdicts(row.get("attributes", {}) for row in rows)
    errors = [WordErrors(row["asr"]["errors"], row["asr"]["reference_words"]) for row in rows if "asr" in row]
    mcd = [row["mcd_db"] for row in rows if "mcd_db" in row]
    generation_s = sum(row["generation_s"] for row in rows)
    audio_s = sum(row["audio_s"] for row in rows)
    return {
        **{
            name: verdicts["attributes"][name]
            for name in CLASSIFIED_ATTRIBUTES
            if verdicts["attributes"][name]["n"]
        },
        "english_wer": {"value": corpus_wer(errors) if errors else None, "n": len(errors)},
        "mandarin_mcd_db": {"value": sum(mcd) / len(mcd) if mcd else None, "n": len(mcd)},
        "tempo_within_tolerance": {
            "value": verdicts["tempo"]["within_tolerance"],
            "n": verdicts["tempo"]["n"],
        },
        "dialogue_pass_rate": {"value": verdicts["dialogue"]["pass_rate"], "n": verdicts["dialogue"]["n"]},
        "rtf": {"value": generation_s / audio_s if audio_s else None, "n": len(rows)},
    }


def cell(entry: dict[str, Any], percent: bool) -> str:
    value = entry.get("accuracy", entry.get("value"))
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} % (n={entry['n']})" if percent else f"{value:.3f} (n={entry['n']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", help="evaluation output folder")
    parser.add_argument("run_b", help="evaluation output folder")
    parser.add_argument("--output", help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    (header_a, rows_a), (header_b, rows_b) = read_run(args.run_a), read_run(args.run_b)
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        print("error: the two runs share no successful case", file=sys.stderr)
        return 2
    results = {
        "cases": len(shared),
        "a": {"run": args.run_a, "steps": header_a["steps"], **measure([rows_a[i] for i in shared])},
        "b": {"run": args.run_b, "steps": header_b["steps"], **measure([rows_b[i] for i in shared])},
    }
    label_a, label_b = (
        f"{args.run_a} ({header_a['steps']} steps)",
        f"{args.run_b} ({header_b['steps']} steps)",
    )
    print(f"{len(shared)} shared cases\n\n| metric | {label_a} | {label_b} |\n|---|---|---|")
    for name in results["a"]:
        if name in ("run", "steps") or name not in results["b"]:
            continue
        percent = name not in ("mandarin_mcd_db", "rtf")
        print(f"| {name} | {cell(results['a'][name], percent)} | {cell(results['b'][name], percent)} |")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
