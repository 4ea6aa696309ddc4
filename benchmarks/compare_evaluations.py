"""Compare two evaluation runs on the cases they share, e.g. the same model at 32 and at 16 denoising steps.

    python benchmarks/compare_evaluations.py runs/eval/demo_32 runs/eval/demo_16 [--output compare.json]

Each run is an `--out` folder of `python -m instructaudio_diffusers.evaluation`. Only cases present (and not
failed) in both runs count, and only contrast pairs whose two sides are both shared, so a run made with
`--limit` or `--quick` is compared fairly with a full one. Prints one table: contrast accuracies, attribute
accuracies, English WER (Whisper tiny.en and base), Mandarin CER and pinyin syllable error rate, Mandarin MCD,
tempo and dialogue results and the real-time factor. Runs written before contrast pairs and the second ASR
model existed (their `asr` holds the tiny.en result directly, and there is no `pairs.jsonl`) still compare on
what they have.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from instructaudio_diffusers.evaluation.contrast import summarize_pairs
from instructaudio_diffusers.evaluation.report import CLASSIFIED_ATTRIBUTES, summarize_verdicts

#: (name, path inside a row's `asr`, language of the rows it covers); an old row's `asr` is the tiny.en result.
RATES = (
    ("english_wer", ("tiny.en",), "en"),
    ("english_wer_base", ("base",), "en"),
    ("mandarin_cer", ("base", "cer"), "zh"),
    ("mandarin_pinyin_ser", ("base", "pinyin"), "zh"),
)


def read_run(folder: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    path = Path(folder)
    header = json.loads((path / "summary.json").read_text(encoding="utf-8"))["header"]
    rows = {}
    for line in (path / "cases.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "error" not in row:
            rows[row["id"]] = row
    pairs_file = path / "pairs.jsonl"
    pairs = []
    if pairs_file.is_file():
        pairs = [
            json.loads(line) for line in pairs_file.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    return header, rows, [pair for pair in pairs if pair.get("audio", "generated") == "generated"]


def _asr(row: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    entry = row.get("asr")
    if isinstance(entry, dict) and "errors" in entry:  # a run from before the second ASR model
        return entry if path == ("tiny.en",) else None
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def rate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    words = sum(entry["reference_words"] for entry in entries)
    errors = sum(entry["errors"] for entry in entries)
    return {"value": errors / words if words else None, "n": len(entries)}


def measure(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = summarize_verdicts(row.get("attributes", {}) for row in rows)
    mcd = [row["mcd_db"] for row in rows if "mcd_db" in row]
    generation_s = sum(row["generation_s"] for row in rows)
    audio_s = sum(row["audio_s"] for row in rows)
    contrast = summarize_pairs(pairs)
    return {
        **{f"contrast_{name}": entry for name, entry in contrast.items()},
        **{
            name: verdicts["attributes"][name]
            for name in CLASSIFIED_ATTRIBUTES
            if verdicts["attributes"][name]["n"]
        },
        **{
            name: rate(entries)
            for name, path, language in RATES
            if (entries := [e for row in rows if row.get("language") == language and (e := _asr(row, path))])
        },  # fmt: skip
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
    (header_a, rows_a, pairs_a), (header_b, rows_b, pairs_b) = read_run(args.run_a), read_run(args.run_b)
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        print("error: the two runs share no successful case", file=sys.stderr)
        return 2
    shared_set = set(shared)

    def shared_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [pair for pair in pairs if {pair["positive"], pair["negative"]} <= shared_set]

    results = {
        "cases": len(shared),
        "a": {
            "run": args.run_a,
            "steps": header_a["steps"],
            **measure([rows_a[i] for i in shared], shared_pairs(pairs_a)),
        },
        "b": {
            "run": args.run_b,
            "steps": header_b["steps"],
            **measure([rows_b[i] for i in shared], shared_pairs(pairs_b)),
        },
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
