"""Held-out intelligibility and voice of training checkpoints: the training curve of a run (WER against steps).

    python training/evaluate_checkpoints.py --pipeline checkpoints/instructaudio-demo \
        --checkpoints runs/demo/instructaudio --cases evaluation/demo_held_out_cases.jsonl \
        --task speech --language en --limit 30 --out runs/demo/curve.jsonl

Each checkpoint's transformer (`checkpoint-N/transformer_ema`, else `transformer`) goes into the pipeline given by
`--pipeline` (its VAE, vocoder, processor and instruction encoder), which generates the first `--limit` cases of
the task and language. Word error rate comes from the evaluation's English Whisper models (Mandarin: toneless
pinyin syllable error rate), and the voice's gender from the calibration the evaluation fitted on ground truth.

`--durations oracle` places the phonemes by the given per-token durations (`--oracle_durations`: JSON lines of
`{"id", "durations"}` in latent frames, e.g. a synthesizer's own timings) instead of the transformer's
predictions: the gap between the two runs is what the duration predictor costs.

One JSON line per checkpoint goes to `--out` (appended; checkpoints already there with the same settings are
skipped, so the command can be rerun as a run goes on); each case's transcript goes to `<out>.cases.jsonl`.
The full evaluation (contrast pairs, music, dialogue) is `python -m instructaudio_diffusers.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .checkpointing import checkpoint_step, list_checkpoints


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="Pipeline folder whose other components to use.")
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        help="Training output folders (all their checkpoint-N), single checkpoint-N folders, or transformer folders.",
    )
    parser.add_argument("--cases", required=True, help="Evaluation case file (JSON lines).")
    parser.add_argument("--out", required=True, help="JSON lines file, one line per checkpoint (appended).")
    parser.add_argument("--task", default="speech", choices=["speech", "dialogue"])
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--limit", type=int, default=30, help="First N cases of the task and language.")
    parser.add_argument(
        "--every", type=int, default=1, help="Only checkpoints whose step is a multiple of this."
    )
    parser.add_argument("--durations", default="predicted", choices=["predicted", "oracle"])
    parser.add_argument(
        "--oracle_durations", default=None, help="JSON lines of {id, durations} (latent frames)."
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="The evaluation's calibration.json (gender from ground truth); without it no gender is judged.",
    )
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument(
        "--sway_sampling_coef",
        type=float,
        default=-1.0,
        help="Sway sampling of the noise levels, as the pipeline's argument (default -1, the pipeline's; 0: uniform).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.durations == "oracle" and not args.oracle_durations:
        parser.error("--durations oracle needs --oracle_durations.")
    if args.limit < 1 or args.every < 1:
        parser.error("--limit and --every must be at least 1.")
    return args


def transformer_folders(paths: list[str], every: int) -> list[tuple[str, Path]]:
    """`(label, transformer folder)` for every checkpoint named, oldest first within a run."""
    found = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            found.append((str(path), path))
            continue
        step = checkpoint_step(path)
        checkpoints = list_checkpoints(path) or ([(step, path)] if step is not None else [])
        if not checkpoints:
            raise SystemExit(
                f"{path} is neither a transformer folder, a checkpoint-N folder nor a training run."
            )
        for step, checkpoint in checkpoints:
            if step % every:
                continue
            folder = next(
                checkpoint / n for n in ("transformer_ema", "transformer") if (checkpoint / n).is_dir()
            )
            found.append((f"{checkpoint}:{folder.name}", folder))
    return found


def load_cases(args: argparse.Namespace) -> list[dict]:
    with open(args.cases, encoding="utf-8") as handle:
        cases = [json.loads(line) for line in handle if line.strip()]
    cases = [c for c in cases if c["task"] == args.task and c["language"] == args.language][: args.limit]
    if not cases:
        raise SystemExit(f"{args.cases} has no {args.task} cases in {args.language!r}.")
    if args.durations == "oracle":
        with open(args.oracle_durations, encoding="utf-8") as handle:
            oracle = {row["id"]: row["durations"] for row in map(json.loads, handle)}
        missing = [c["id"] for c in cases if c["id"] not in oracle]
        if missing:
            raise SystemExit(
                f"{args.oracle_durations} has no durations for {missing[:5]} ({len(missing)} cases)."
            )
        for case in cases:
            case["oracle_durations"] = oracle[case["id"]]
    return cases


def evaluate(pipe, cases: list[dict], args: argparse.Namespace, measurer, calibration) -> tuple[dict, list]:
    import numpy as np
    import torch

    from instructaudio_diffusers.evaluation.analysis import judge
    from instructaudio_diffusers.evaluation.asr import WordErrors, corpus_wer

    frame_rate = pipe.vae.latent_frame_rate
    errors: dict[str, list] = {}
    genders, rows = [], []
    for index, case in enumerate(cases):
        extra = {}
        if args.durations == "oracle":
            extra["phoneme_durations_in_s"] = [
                np.asarray(case["oracle_durations"], dtype=np.float64) / frame_rate
            ]
        output = pipe(
            instruction=case["instruction"],
            text=case["text"],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            sway_sampling_coef=args.sway_sampling_coef,
            generator=torch.Generator().manual_seed(args.seed + index),
            **extra,
        )
        audio = output.audios[0]
        measured = measurer.measure(
            audio, pipe.sampling_rate, case["task"], case["language"], case["text"], None
        )
        row = {"id": case["id"], "text": case["text"], "seconds": round(len(audio) / pipe.sampling_rate, 3)}
        for model, result in (measured.get("asr") or {}).items():
            counts = result if args.language == "en" else result["pinyin"]
            errors.setdefault(model, []).append(WordErrors.from_dict(counts))
            row[f"hypothesis_{model}"] = result["hypothesis"]
        if calibration is not None and "gender" in case.get("expect", {}):
            expect = {"gender": case["expect"]["gender"]}
            verdict = judge(measured["features"], expect, calibration, args.language, args.task)["gender"]
            row["gender"] = verdict
            if verdict["correct"] is not None:
                genders.append(bool(verdict["correct"]))
        rows.append(row)
    unit = "wer" if args.language == "en" else "pinyin_ser"
    summary = {f"{unit}_{model}": corpus_wer(results) for model, results in sorted(errors.items())}
    summary["cases"] = len(cases)
    if genders:
        summary["gender_accuracy"] = sum(genders) / len(genders)
    return summary, rows


def finished_checkpoints(out: Path, settings: dict) -> set[str]:
    """Labels of the checkpoints `out` already holds a result for, evaluated with exactly `settings`."""
    done = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            # Rows written before sway sampling was a setting used the pipeline's default.
            if {"sway_sampling_coef": -1.0, **row.get("settings", {})} == settings:
                done.add(row["checkpoint"])
    return done


def main(args: argparse.Namespace) -> list[dict]:
    import torch

    from instructaudio_diffusers import InstructAudioPipeline
    from instructaudio_diffusers.evaluation.classifiers import Calibration
    from instructaudio_diffusers.evaluation.measure import Measurer

    from .export import load_transformer

    if args.threads:
        torch.set_num_threads(args.threads)
    cases = load_cases(args)
    settings = {
        k: getattr(args, k)
        for k in ("task", "language", "limit", "durations", "steps", "guidance", "sway_sampling_coef", "seed")
    }
    settings["cases_file"] = os.path.basename(args.cases)
    out = Path(args.out)
    done = finished_checkpoints(out, settings)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    measurer = Measurer(asr=True)
    base = InstructAudioPipeline.from_pretrained(args.pipeline)
    results = []
    for label, folder in transformer_folders(args.checkpoints, args.every):
        if label in done:
            continue
        started = time.time()
        transformer = load_transformer(folder)
        pipe = InstructAudioPipeline(**{**base.components, "transformer": transformer})
        pipe.set_progress_bar_config(disable=True)
        summary, rows = evaluate(pipe, cases, args, measurer, calibration)
        result = {
            "checkpoint": label,
            **summary,
            "settings": settings,
            "seconds": round(time.time() - started, 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        with open(str(out) + ".cases.jsonl", "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({"checkpoint": label, "settings": settings, **row}) + "\n")
        print(json.dumps(result), flush=True)
        results.append(result)
    return results
