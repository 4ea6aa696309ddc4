"""Aggregation and output: `summary.json`, `summary.md` and `cases.jsonl`.

Every metric is reported for the generated audio next to the same metric on held-out ground truth (its
ceiling or reference), so a number is always read against what the measurement itself can achieve.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .asr import WordErrors, corpus_wer
from .music import TEMPO_TOLERANCE

#: Classified attributes in report order (tempo and dialogue have their own sections).
CLASSIFIED_ATTRIBUTES = ("gender", "pitch", "rate", "loudness", "pace", "key", "mode", "instrument", "genre")


def _fraction(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def summarize_verdicts(verdicts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Accuracy per attribute, tempo statistics and dialogue pass rate over many clips' `judge` results.

    Returns:
        `{"attributes": {name: {"accuracy", "correct", "n"}}, "tempo": {...}, "dialogue": {"pass_rate", "n"}}`;
        only scored results (`correct` not None) count.
    """
    scored: dict[str, list[bool]] = {name: [] for name in (*CLASSIFIED_ATTRIBUTES, "speakers")}
    tempo_rows: list[dict[str, Any]] = []
    for verdict in verdicts:
        for name, result in verdict.items():
            if name == "tempo_bpm":
                tempo_rows.append(result)
            elif result.get("correct") is not None:
                scored.setdefault(name, []).append(bool(result["correct"]))
    attributes = {
        name: {"accuracy": _fraction(flags), "correct": int(sum(flags)), "n": len(flags)}
        for name, flags in scored.items()
        if name != "speakers"
    }
    errors = [row["error_percent"] for row in tempo_rows if row["error_percent"] is not None]
    tempo = {
        "n": len(tempo_rows),
        "median_error_percent": float(np.median(errors)) if errors else None,
        "within_tolerance": _fraction([row["within"] for row in tempo_rows]),
        "within_tolerance_allowing_octave": _fraction([row["within_allowing_octave"] for row in tempo_rows]),
        "octave_errors": int(sum(row["octave_error"] for row in tempo_rows)),
        "no_estimate": int(sum(row["error_percent"] is None for row in tempo_rows)),
        "tolerance_percent": 100 * TEMPO_TOLERANCE,
    }
    dialogue = {"pass_rate": _fraction(scored["speakers"]), "n": len(scored["speakers"])}
    return {"attributes": attributes, "tempo": tempo, "dialogue": dialogue}


def summarize_wer(results: list[WordErrors]) -> dict[str, Any]:
    """Corpus WER (errors / reference words) and the mean of per-utterance WERs."""
    return {
        "corpus_wer": corpus_wer(results),
        "mean_utterance_wer": float(np.mean([result.wer for result in results])) if results else None,
        "n": len(results),
    }


def summarize_values(values: list[float]) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)) if values else None,
        "median": float(np.median(values)) if values else None,
        "n": len(values),
    }


def summarize_rtf(rows: list[dict[str, Any]], model_load_s: float) -> dict[str, Any]:
    """Real-time factor: generation wall time / generated audio seconds, over all cases and per case."""
    timed = [row for row in rows if row.get("audio_s")]
    generation_s, audio_s = sum(row["generation_s"] for row in timed), sum(row["audio_s"] for row in timed)
    per_case = [row["rtf"] for row in timed]
    return {
        "total": generation_s / audio_s if audio_s else None,
        "generation_s": generation_s,
        "audio_s": audio_s,
        "per_case": summarize_values(per_case),
        "model_load_s": model_load_s,
    }


def write_cases(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_summary(out_dir: str, summary: dict[str, Any]) -> None:
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(render_markdown(summary))


def _number(value: Any, digits: int = 3, percent: bool = False, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}{unit}"


def _estimated(tempo: dict[str, Any]) -> str:
    return f"{tempo.get('n', 0) - tempo.get('no_estimate', 0)} of {tempo.get('n', 0)}"


def _accuracy_cell(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("n"):
        return "n/a"
    return f"{_number(entry['accuracy'], percent=True)} ({entry['correct']}/{entry['n']})"


def render_markdown(summary: dict[str, Any]) -> str:
    """Human-readable summary: header, then one table per metric family (generated vs. ground truth)."""
    header, generated, truth = summary["header"], summary["generated"], summary["ground_truth"] or {}
    lines = ["# InstructAudio evaluation", ""]
    if header.get("self_test"):
        lines += [
            "> **Self-test run** (`--model tiny-random`): a tiny *random* pipeline exercises the harness end to "
            "end. The numbers below measure nothing about a trained model.",
            "",
        ]
    calibration = header["calibration"]
    lines += [
        f"- model: `{header['model']}`; cases: `{header['cases_file']}` ({header['num_cases']} cases, "
        f"{header['num_failed']} failed)",
        f"- sampling: {header['steps']} steps, guidance {header['guidance']}, seed {header['seed']}; "
        f"output {header['sampling_rate']} Hz",
        f"- calibration: {calibration.get('kind')}"
        + (f" from `{calibration.get('path')}`" if calibration.get("path") else "")
        + (f" ({calibration.get('note')})" if calibration.get("note") else ""),
        "",
        "## Attribute accuracy",
        "",
        "| attribute | generated | ground-truth ceiling |",
        "|---|---|---|",
    ]
    for name in CLASSIFIED_ATTRIBUTES:
        ours, ceiling = generated["attributes"].get(name), truth.get("attributes", {}).get(name)
        if (ours and ours["n"]) or (ceiling and ceiling["n"]):
            lines.append(f"| {name} | {_accuracy_cell(ours)} | {_accuracy_cell(ceiling)} |")
    tempo, tempo_truth = generated["tempo"], truth.get("tempo", {})
    dialogue, dialogue_truth = generated["dialogue"], truth.get("dialogue", {})
    wer, wer_truth = summary["wer"]["generated"], summary["wer"]["ground_truth"] or {}
    mcd, mcd_truth = summary["mcd"]["generated"], summary["mcd"]["ground_truth"] or {}
    rtf = summary["rtf"]
    lines += [
        "",
        "## Tempo, dialogue, intelligibility, Mandarin MCD",
        "",
        "| metric | generated | ground truth |",
        "|---|---|---|",
        f"| tempo: median error (clips with an estimate) | "
        f"{_number(tempo['median_error_percent'], 1, unit=' %')} ({_estimated(tempo)}) | "
        f"{_number(tempo_truth.get('median_error_percent'), 1, unit=' %')} ({_estimated(tempo_truth)}) |",
        f"| tempo: within {tempo['tolerance_percent']:g} % | {_number(tempo['within_tolerance'], percent=True)} | "
        f"{_number(tempo_truth.get('within_tolerance'), percent=True)} |",
        f"| tempo: within, octave errors allowed | {_number(tempo['within_tolerance_allowing_octave'], percent=True)} "
        f"({tempo['octave_errors']} octave errors) | "
        f"{_number(tempo_truth.get('within_tolerance_allowing_octave'), percent=True)} |",
        f"| dialogue pass rate | {_number(dialogue['pass_rate'], percent=True)} (n={dialogue['n']}) | "
        f"{_number(dialogue_truth.get('pass_rate'), percent=True)} (n={dialogue_truth.get('n', 0)}) |",
        f"| English WER (Whisper tiny.en) | {_number(wer['corpus_wer'], percent=True)} (n={wer['n']}) | "
        f"{_number(wer_truth.get('corpus_wer'), percent=True)} (n={wer_truth.get('n', 0)}) |",
        f"| Mandarin MCD vs espeak-ng (dB) | {_number(mcd['mean'], 2)} (n={mcd['n']}) | "
        f"{_number(mcd_truth.get('mean'), 2)} (n={mcd_truth.get('n', 0)}) |",
        "",
        "## Speed",
        "",
        f"- real-time factor (generation time / audio time): {_number(rtf['total'])} over all cases "
        f"({rtf['generation_s']:.2f} s for {rtf['audio_s']:.2f} s of audio); per case median "
        f"{_number(rtf['per_case']['median'])}; model load {rtf['model_load_s']:.2f} s",
        "",
    ]
    if summary.get("unmeasured"):
        counts = ", ".join(f"{name} ({count})" for name, count in summary["unmeasured"].items())
        lines += [f"Stated by instructions but not measured offline: {counts}.", ""]
    if summary["failures"]:
        lines += (
            ["## Failed cases", ""]
            + [f"- `{item['id']}`: {item['error']}" for item in summary["failures"]]
            + [""]
        )
    return "\n".join(lines)
