"""Aggregation and output: `summary.json`, `summary.md`, `model_card_evaluation.md`, `cases.jsonl`, `pairs.jsonl`.

Every measure is reported for the generated audio next to the same measure on ground truth: the reference
audio of the same cases when the case file has it (`--references`), else the held-out ceiling of the
calibration. Accuracies carry the number of cases behind them and a Wilson 95 % confidence interval.

`summary["tasks"]` holds one table per task (speech, dialogue, music); `summary.md` and the model card's
evaluation section are rendered from it. The older top-level keys (`generated`, `ground_truth`, `wer`, `mcd`,
`rtf`) keep their meaning, so earlier reports and tools stay comparable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .contrast import MEASURES, summarize_pairs, wilson_interval
from .music import TEMPO_TOLERANCE

#: Classified attributes in report order (tempo and dialogue have their own sections).
CLASSIFIED_ATTRIBUTES = ("gender", "pitch", "rate", "loudness", "pace", "key", "mode", "instrument", "genre")
#: Per task: its contrast attributes and its absolute (classifier) attributes, in table order.
TASK_LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "speech": {"contrast": ("gender", "pitch", "rate", "loudness"), "absolute": ("gender", "pitch", "rate", "loudness")},
    "dialogue": {"contrast": ("dialogue",), "absolute": ("speaker_order", "speakers")},
    "music": {"contrast": ("tempo", "mode", "instrument"),
              "absolute": ("mode", "instrument", "genre", "pace", "key", "loudness")},
}  # fmt: skip
#: Intelligibility measures: (name, label, where in a measurement's `asr`, language).
INTELLIGIBILITY = (
    ("english_wer_tiny_en", "English WER (Whisper tiny.en)", ("tiny.en",), "en"),
    ("english_wer_base", "English WER (Whisper base)", ("base",), "en"),
    ("mandarin_cer", "Mandarin CER (Whisper base, simplified)", ("base", "cer"), "zh"),
    ("mandarin_pinyin_ser", "Mandarin toneless pinyin syllable error rate", ("base", "pinyin"), "zh"),
)


def _fraction(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _accuracy(flags: list[bool]) -> dict[str, Any]:
    correct = int(sum(flags))
    return {
        "accuracy": _fraction(flags),
        "correct": correct,
        "n": len(flags),
        "ci95": wilson_interval(correct, len(flags)),
    }


def summarize_verdicts(verdicts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Accuracy per attribute, tempo statistics and dialogue pass rate over many clips' `judge` results.

    Returns:
        `{"attributes": {name: {"accuracy", "correct", "n", "ci95"}}, "tempo": {...},
        "dialogue": {"pass_rate", "n", "ci95"}}`; only scored results (`correct` not None) count.
    """
    scored: dict[str, list[bool]] = {
        name: [] for name in (*CLASSIFIED_ATTRIBUTES, "speakers", "speaker_order")
    }
    tempo_rows: list[dict[str, Any]] = []
    for verdict in verdicts:
        for name, result in verdict.items():
            if name == "tempo_bpm":
                tempo_rows.append(result)
            elif result.get("correct") is not None:
                scored.setdefault(name, []).append(bool(result["correct"]))
    attributes = {name: _accuracy(flags) for name, flags in scored.items() if name != "speakers"}
    errors = [row["error_percent"] for row in tempo_rows if row["error_percent"] is not None]
    within = [bool(row["within"]) for row in tempo_rows]
    tempo = {
        "n": len(tempo_rows),
        "median_error_percent": float(np.median(errors)) if errors else None,
        "within_tolerance": _fraction(within),
        "within_ci95": wilson_interval(int(sum(within)), len(within)),
        "within_tolerance_allowing_octave": _fraction([row["within_allowing_octave"] for row in tempo_rows]),
        "octave_errors": int(sum(row["octave_error"] for row in tempo_rows)),
        "no_estimate": int(sum(row["error_percent"] is None for row in tempo_rows)),
        "tolerance_percent": 100 * TEMPO_TOLERANCE,
    }
    speakers = _accuracy(scored["speakers"])
    dialogue = {"pass_rate": speakers["accuracy"], "n": speakers["n"], "ci95": speakers["ci95"]}
    return {"attributes": attributes, "tempo": tempo, "dialogue": dialogue}


def summarize_rates(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus error rate (errors / reference units) with its substitution / deletion / insertion totals, from
    alignment dicts (`WordErrors.to_dict`); `corpus_wer` repeats `rate` under the name older reports used."""
    totals = {key: int(sum(result.get(key, 0) for result in results))
              for key in ("substitutions", "deletions", "insertions", "errors", "reference_words")}  # fmt: skip
    rate = totals["errors"] / totals["reference_words"] if totals["reference_words"] else None
    per_utterance = [
        result["errors"] / result["reference_words"] for result in results if result["reference_words"]
    ]
    return {
        "rate": rate if results else None,
        "corpus_wer": rate if results else None,
        "mean_utterance_rate": float(np.mean(per_utterance)) if per_utterance else None,
        "n": len(results),
        **totals,
    }


def summarize_values(values: list[float]) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)) if values else None,
        "median": float(np.median(values)) if values else None,
        "n": len(values),
    }


def summarize_rtf(rows: list[dict[str, Any]], model_load_s: float | None = None) -> dict[str, Any]:
    """Real-time factor: generation wall time / generated audio seconds, over all cases and per case."""
    timed = [row for row in rows if row.get("audio_s")]
    generation_s, audio_s = sum(row["generation_s"] for row in timed), sum(row["audio_s"] for row in timed)
    return {
        "total": generation_s / audio_s if audio_s else None,
        "generation_s": generation_s,
        "audio_s": audio_s,
        "per_case": summarize_values([row["rtf"] for row in timed]),
        "model_load_s": model_load_s,
    }


def _asr_entry(measured: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    entry = (measured or {}).get("asr")
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def _intelligibility(rows: list[dict[str, Any]], source: str | None) -> dict[str, dict[str, Any]]:
    """Each `INTELLIGIBILITY` measure over `rows` (generated) or over their references (`source="reference"`)."""
    summary = {}
    for name, _, path, language in INTELLIGIBILITY:
        measured = [
            row.get("reference") if source == "reference" else row
            for row in rows
            if row["language"] == language
        ]
        entries = [entry for entry in (_asr_entry(item, path) for item in measured) if entry is not None]
        summary[name] = summarize_rates(entries)
    return summary


# ------------------------------------------------------------------------------------------- tables
def _cell_accuracy(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not entry or not entry.get("n"):
        return None
    return {
        "value": entry["accuracy"],
        "n": entry["n"],
        "correct": entry["correct"],
        "ci95": entry.get("ci95"),
    }


def _cell_rate(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not entry or not entry.get("n"):
        return None
    return {"value": entry["rate"], "n": entry["n"], **{key: entry[key] for key in
            ("substitutions", "deletions", "insertions", "reference_words")}}  # fmt: skip


def _cell_value(value: float | None, n: int) -> dict[str, Any] | None:
    return None if value is None or not n else {"value": value, "n": n}


def task_tables(
    rows: list[dict[str, Any]],
    pairs: dict[str, list[dict[str, Any]]],
    truth_verdicts: dict[str, dict[str, Any]],
    truth_rows: dict[str, list[dict[str, Any]]] | None,
) -> dict[str, list[dict[str, Any]]]:
    """One list of table rows per task present: `{"measure", "kind", "generated", "ground_truth", ...}`.

    Args:
        rows: the finished case rows. pairs: pair verdicts of generated audio and ground truth.
        truth_verdicts: per task, `summarize_verdicts` of the ground truth (references or ceiling).
        truth_rows: per task, the rows whose references carry ASR (None without references).
    """
    tables: dict[str, list[dict[str, Any]]] = {}
    for task, layout in TASK_LAYOUT.items():
        task_rows = [row for row in rows if row["task"] == task]
        if not task_rows:
            continue
        table: list[dict[str, Any]] = []
        contrast = {audio: summarize_pairs([p for p in results if p["attribute"] in layout["contrast"]])
                    for audio, results in pairs.items()}  # fmt: skip
        for attribute in layout["contrast"]:
            generated, truth = contrast["generated"].get(attribute), contrast["ground_truth"].get(attribute)
            if generated or truth:
                measure = MEASURES[attribute]
                table.append({
                    "measure": f"contrast: {attribute}", "kind": "accuracy",
                    "note": f"{measure.description}; margin {measure.margin:g} {measure.unit}",
                    "generated": _cell_accuracy(generated), "ground_truth": _cell_accuracy(truth),
                })  # fmt: skip
        if task in ("speech", "dialogue"):
            generated_asr = _intelligibility(task_rows, None)
            truth_asr = _intelligibility(truth_rows.get(task, []), "reference") if truth_rows else {}
            for name, label, _, _ in INTELLIGIBILITY:
                if generated_asr[name]["n"]:
                    table.append({"measure": label, "kind": "rate", "generated": _cell_rate(generated_asr[name]),
                                  "ground_truth": _cell_rate(truth_asr.get(name))})  # fmt: skip
        if task == "speech":
            mcd = [row["mcd_db"] for row in task_rows if "mcd_db" in row]
            truth_mcd = [row["reference"]["mcd_db"] for row in (truth_rows or {}).get(task, [])
                         if "mcd_db" in row.get("reference", {})]  # fmt: skip
            if mcd:
                table.append({"measure": "Mandarin MCD vs espeak-ng (dB, secondary)", "kind": "value",
                              "generated": _cell_value(float(np.mean(mcd)), len(mcd)),
                              "ground_truth": _cell_value(float(np.mean(truth_mcd)) if truth_mcd else None,
                                                          len(truth_mcd))})  # fmt: skip
        generated_verdicts = summarize_verdicts(row.get("attributes", {}) for row in task_rows)
        truth = truth_verdicts.get(task) or {}
        if task == "music" and generated_verdicts["tempo"]["n"]:
            tempo, tempo_truth = generated_verdicts["tempo"], truth.get("tempo", {})
            table.append({"measure": f"tempo within {tempo['tolerance_percent']:g} % (absolute)", "kind": "accuracy",
                          "generated": _tempo_cell(tempo), "ground_truth": _tempo_cell(tempo_truth)})  # fmt: skip
            table.append({"measure": "tempo median error (%)", "kind": "value",
                          "generated": _cell_value(tempo["median_error_percent"], tempo["n"] - tempo["no_estimate"]),
                          "ground_truth": _cell_value(tempo_truth.get("median_error_percent"),
                                                      tempo_truth.get("n", 0) - tempo_truth.get("no_estimate", 0))})  # fmt: skip
        for attribute in layout["absolute"]:
            generated = _cell_accuracy(generated_verdicts["attributes"].get(attribute)) if attribute != "speakers" else \
                _cell_accuracy({"accuracy": generated_verdicts["dialogue"]["pass_rate"], "correct": _correct(generated_verdicts["dialogue"]),
                                "n": generated_verdicts["dialogue"]["n"], "ci95": generated_verdicts["dialogue"].get("ci95")})  # fmt: skip
            truth_cell = _truth_attribute(truth, attribute)
            if generated or truth_cell:
                label = {
                    "speakers": "speakers' genders (classifier)",
                    "speaker_order": "speaker order (F0 of the turns)",
                }
                table.append({"measure": f"{label.get(attribute, attribute)} (absolute)", "kind": "accuracy",
                              "generated": generated, "ground_truth": truth_cell})  # fmt: skip
        rtf = summarize_rtf(task_rows)
        table.append({"measure": "real-time factor", "kind": "value",
                      "generated": _cell_value(rtf["total"], len(task_rows)), "ground_truth": None})  # fmt: skip
        tables[task] = table
    return tables


def _correct(dialogue: dict[str, Any]) -> int:
    return int(round((dialogue.get("pass_rate") or 0.0) * dialogue.get("n", 0)))


def _tempo_cell(tempo: dict[str, Any]) -> dict[str, Any] | None:
    if not tempo or not tempo.get("n") or tempo.get("within_tolerance") is None:
        return None
    correct = int(round(tempo["within_tolerance"] * tempo["n"]))
    return {"value": tempo["within_tolerance"], "n": tempo["n"], "correct": correct,
            "ci95": wilson_interval(correct, tempo["n"])}  # fmt: skip


def _truth_attribute(truth: dict[str, Any], attribute: str) -> dict[str, Any] | None:
    if attribute == "speakers":
        dialogue = truth.get("dialogue") or {}
        if not dialogue.get("n"):
            return None
        correct = _correct(dialogue)
        return {"value": dialogue["pass_rate"], "n": dialogue["n"], "correct": correct,
                "ci95": wilson_interval(correct, dialogue["n"])}  # fmt: skip
    entry = (truth.get("attributes") or {}).get(attribute)
    if entry and entry.get("n") and "ci95" not in entry:  # a calibration written before intervals existed
        entry = {**entry, "ci95": wilson_interval(entry["correct"], entry["n"])}
    return _cell_accuracy(entry)


# ------------------------------------------------------------------------------------------- summary
def build_summary(
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    pairs: dict[str, list[dict[str, Any]]],
    calibration: Any,
    unmeasured: dict[str, int],
) -> dict[str, Any]:
    """The whole `summary.json` (module docstring) from the case rows, pair verdicts and calibration."""
    done = [row for row in rows if "error" not in row]
    with_reference = [row for row in done if "reference" in row]
    if with_reference:
        truth_source = "references of the same cases"
        truth_by_task = {task: summarize_verdicts(row["reference"]["attributes"] for row in with_reference
                                                  if row["task"] == task) for task in TASK_LAYOUT}  # fmt: skip
        truth_all = summarize_verdicts(row["reference"]["attributes"] for row in with_reference)
        truth_rows = {task: [row for row in with_reference if row["task"] == task] for task in TASK_LAYOUT}
    else:
        truth_source = "held-out ceiling of the calibration" if calibration.ceiling else None
        truth_all = calibration.ceiling or None
        truth_by_task = {task: calibration.ceiling or {} for task in TASK_LAYOUT}
        truth_rows = None
    english = [row for row in done if row["language"] == "en"]
    reference_wer = (
        summarize_rates([entry for entry in (_asr_entry(row["reference"], ("tiny.en",)) for row in with_reference
                                             if row["language"] == "en") if entry])
        if with_reference else (calibration.reference or {}).get("wer")
    )  # fmt: skip
    truth_mcd = [row["reference"]["mcd_db"] for row in with_reference if "mcd_db" in row["reference"]]
    return {
        "header": {**header, "ground_truth_source": truth_source},
        "tasks": task_tables(done, pairs, truth_by_task, truth_rows),
        "contrast": {
            "generated": summarize_pairs(pairs["generated"]),
            "ground_truth": summarize_pairs(pairs["ground_truth"]) if pairs["ground_truth"] else None,
        },
        "intelligibility": {
            "generated": _intelligibility(done, None),
            "ground_truth": _intelligibility(with_reference, "reference") if with_reference else None,
        },
        "generated": summarize_verdicts(row["attributes"] for row in done),
        "ground_truth": truth_all,
        "ceiling": calibration.ceiling or None,
        "wer": {
            "generated": summarize_rates(
                [e for e in (_asr_entry(row, ("tiny.en",)) for row in english) if e]
            ),
            "ground_truth": reference_wer,
        },
        "mcd": {
            "generated": summarize_values([row["mcd_db"] for row in done if "mcd_db" in row]),
            "ground_truth": summarize_values(truth_mcd)
            if with_reference
            else (calibration.reference or {}).get("mcd"),
        },
        "rtf": summarize_rtf(done, header.get("model_load_s")),
        "unmeasured": unmeasured,
        "failures": [{"id": row["id"], "error": row["error"]} for row in rows if "error" in row],
    }


def write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_summary(out_dir: str, summary: dict[str, Any]) -> None:
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(render_markdown(summary))
    with open(os.path.join(out_dir, "model_card_evaluation.md"), "w", encoding="utf-8") as handle:
        handle.write(render_model_card_section(summary))


# ------------------------------------------------------------------------------------------- markdown
def _number(value: Any, digits: int = 3, percent: bool = False, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}{unit}"


def render_cell(cell: dict[str, Any] | None, kind: str) -> str:
    """`87.5 % [71.9-95.0] (14/16)` for accuracies, `12.3 % (n=40; S/D/I 30/5/14)` for error rates."""
    if not cell:
        return "n/a"
    if kind == "accuracy":
        interval = cell.get("ci95")
        band = f" [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]" if interval else ""
        return f"{_number(cell['value'], percent=True)}{band} ({cell['correct']}/{cell['n']})"
    if kind == "rate":
        return (f"{_number(cell['value'], percent=True)} (n={cell['n']}; S/D/I "
                f"{cell['substitutions']}/{cell['deletions']}/{cell['insertions']} of {cell['reference_words']})")  # fmt: skip
    return f"{_number(cell['value'], 2)} (n={cell['n']})"


def _task_table_lines(summary: dict[str, Any], notes: bool) -> list[str]:
    lines = []
    for task, table in summary["tasks"].items():
        lines += [f"### {task.capitalize()}", "", "| measure | generated | ground truth |", "|---|---|---|"]
        for row in table:
            label = row["measure"] + (f" <br><sub>{row['note']}</sub>" if notes and row.get("note") else "")
            lines.append(
                f"| {label} | {render_cell(row['generated'], row['kind'])} | {render_cell(row['ground_truth'], row['kind'])} |"
            )
        lines.append("")
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """Human-readable summary: header, one table per task (generated vs. ground truth), speed, failures."""
    header = summary["header"]
    lines = ["# InstructAudio evaluation", ""]
    if header.get("self_test"):
        lines += [
            "> **Self-test run** (`--model tiny-random`): a tiny *random* pipeline exercises the harness end to "
            "end. The numbers below measure nothing about a trained model.",
            "",
        ]
    calibration = header["calibration"]
    lines += [
        f"- model: `{header['model']}`; cases: `{header['cases_file']}`{' (--quick)' if header.get('quick') else ''} "
        f"({header['num_cases']} cases, {header['num_failed']} failed)",
        f"- sampling: {header['steps']} steps, guidance {header['guidance']}, seed {header['seed']}; "
        f"output {header['sampling_rate']} Hz",
        f"- calibration: {calibration.get('kind')}"
        + (f" from `{calibration.get('path')}`" if calibration.get("path") else "")
        + (f" ({calibration.get('note')})" if calibration.get("note") else ""),
        f"- ground truth column: {header.get('ground_truth_source') or 'none (no --references, no calibration)'}",
        "- accuracies: value [Wilson 95 % interval] (correct/cases); error rates: corpus rate "
        "(utterances; substitutions/deletions/insertions of reference units)",
        "",
        "## Results by task",
        "",
        *_task_table_lines(summary, notes=True),
    ]
    rtf = summary["rtf"]
    lines += [
        "## Speed",
        "",
        f"- real-time factor (generation time / audio time): {_number(rtf['total'])} over all cases "
        f"({rtf['generation_s']:.2f} s for {rtf['audio_s']:.2f} s of audio); per case median "
        f"{_number(rtf['per_case']['median'])}; model load {_number(rtf.get('model_load_s'), 2, unit=' s')}; "
        f"whole run {_number(header.get('wall_s'), 0, unit=' s')}"
        + (
            f" ({header['resumed_cases']} cases resumed from an earlier run)"
            if header.get("resumed_cases")
            else ""
        ),
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


def render_model_card_section(summary: dict[str, Any]) -> str:
    """The model card's evaluation section, written from the same tables as `summary.md`."""
    header = summary["header"]
    lines = [
        "## Evaluation",
        "",
        f"Measured offline with `python -m instructaudio_diffusers.evaluation` on {header['num_cases']} cases "
        f"(`{os.path.basename(header['cases_file'])}`{', --quick subset' if header.get('quick') else ''}; "
        f"{header['steps']} steps, guidance {header['guidance']}). Ground truth: "
        f"{header.get('ground_truth_source') or 'not measured'}, through the same measurement.",
        "",
        "Contrast accuracy is the share of instruction pairs (same text, seed and length, one attribute changed) "
        "whose audio moved the instructed way by more than the stated margin; absolute accuracies are the "
        "calibrated classifiers of earlier reports. Brackets: Wilson 95 % intervals; S/D/I: substitutions, "
        "deletions, insertions.",
        "",
        *_task_table_lines(summary, notes=False),
    ]
    return "\n".join(lines)
