"""Build the synthetic demo corpus (docs/design.md §5) in one command: speech, dialogue and music with instructions.

    python training/make_demo_corpus.py --output_dir data/demo_corpus [--scale 1.0] [--num_workers 2] [--seed 0]

Output (22,050 Hz mono 16-bit wavs; `data/` is git-ignored):

    <output_dir>/metadata.jsonl          training rows, the format `training/prepare_dataset.py` reads
    <output_dir>/{speech_en,speech_zh,dialogue,music}/*.wav
    <output_dir>/held_out/metadata.jsonl reference renders of the held-out cases (same format)
    <output_dir>/held_out/...wav
    <output_dir>/held_out_cases.jsonl    evaluation cases: id, task, language, instruction, text,
                                         audio_length_in_s, expect, reference_audio
    <output_dir>/summary.json            hours and clip counts per part, attribute distributions, throughput
    <output_dir>/corpus_config.json      seed and generator version (a rerun must use the same seed)

Rows carry, besides `path, instruction, text, language, task`, every true attribute of the clip (engine,
voice, gender, age, accent, pitch/rate/loudness/emotion/style labels with the numbers behind them, or
genre, instrument, bpm, key, mode, atmosphere, drums; both speakers of a dialogue), the ids of the
instruction templates used and the attributes the instruction states.

Deterministic and resumable: each clip is planned from (seed, part, index) alone and rendered by a pure
function, so a clip id always gives the same bytes whatever the worker count. A clip is done when its wav
exists and `metadata.jsonl` has its row with the same render hash; rows are appended as clips finish, so
killing the run loses only the clips in flight, and a rerun renders only what is missing. At the end
`metadata.jsonl` is rewritten in plan order. `--scale` multiplies every clip count (a smaller scale plans a
prefix of a larger one).

Needs Debian's flite, espeak-ng and sox on PATH for the speech parts (`--parts music` needs none).

Contrast pairs for the evaluation (`contrast`) are a separate build into their own folder:

    python training/make_demo_corpus.py --output_dir data/contrast_corpus --contrast_pairs 20 [--seed 0]

writes `<output_dir>/metadata.jsonl` (ground truth of both sides of every pair), the wavs, and
`<output_dir>/contrast_cases.jsonl`, the evaluation cases with a `contrast` field and one length per pair.
They read the held-out sentences of the same seed and never change a corpus job or its render hash.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .contrast import plan_contrast_pairs
from .levels import SAMPLING_RATE, write_wav_atomic
from .plan import GENERATOR_VERSION, PARTS, Job, held_out_sentences, plan_corpus, render_job
from .speech import missing_tools, warm_up

METADATA_FILE = "metadata.jsonl"
HELD_OUT_DIR = "held_out"
CASES_FILE = "held_out_cases.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "corpus_config.json"
CONTRAST_CASES_FILE = "contrast_cases.jsonl"
# The `expect` keys of the evaluation case format (instructaudio_diffusers.evaluation.cases), per task.
EXPECT_KEYS = {
    "speech": ("gender", "pitch", "rate", "loudness"),
    "dialogue": ("speakers", "loudness"),
    "music": ("tempo_bpm", "mode", "instrument", "genre", "loudness"),
}
# Attributes whose distribution the summary reports, per task.
_DISTRIBUTIONS = {
    "speech": ("language", "gender", "age", "accent", "engine", "emotion", "style", "pitch", "rate", "loudness",
               "instruction_language"),
    "dialogue": ("language", "speaker_genders", "instruction_language"),
    "music": ("genre", "instrument", "mode", "atmosphere", "pace", "drums", "instruction_language"),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Corpus folder (created; reused when resuming).")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="Multiplies every clip count (tests: 0.002)."
    )
    parser.add_argument("--num_workers", type=int, default=2, help="Worker processes (1: render in-process).")
    parser.add_argument(
        "--seed", type=int, default=0, help="Corpus seed; a rerun in the same folder must match."
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="Parts to build.")
    parser.add_argument("--no_progress", action="store_true", help="Hide the progress bar.")
    parser.add_argument(
        "--contrast_pairs",
        type=int,
        default=0,
        help="Build only the evaluation's contrast pairs, this many per attribute, into --output_dir.",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.num_workers < 1 or args.contrast_pairs < 0:
        parser.error("--scale must be > 0, --num_workers >= 1 and --contrast_pairs >= 0.")
    return args


# ---------------------------------------------------------------------------------------------- state on disk
def _folder(output_dir: Path, split: str) -> Path:
    return output_dir / HELD_OUT_DIR if split == "held_out" else output_dir


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a metadata file by id; a line cut short by a killed run is skipped, not fatal."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                rows[row["id"]] = row
    return rows


def _check_config(output_dir: Path, seed: int) -> None:
    """Refuse to mix two seeds in one folder: ids would collide with different audio."""
    path = output_dir / CONFIG_FILE
    config = {"seed": seed, "generator_version": GENERATOR_VERSION, "sampling_rate": SAMPLING_RATE}
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous.get("seed") != seed:
            raise SystemExit(
                f"{output_dir} was built with --seed {previous.get('seed')}; use it or a new folder."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _is_done(job: Job, output_dir: Path, rows: dict[str, dict[str, Any]]) -> bool:
    row = rows.get(job.clip_id)
    wav = _folder(output_dir, job.split) / job.relative_path
    return (
        row is not None
        and row.get("render_hash") == job.render_hash
        and "duration_s" in row
        and wav.is_file()
    )


def _write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)


# ---------------------------------------------------------------------------------------------- rendering
def render_to_disk(job: Job, output_dir: str) -> dict[str, Any]:
    """Worker entry point: render one job, write its wav atomically, return its complete metadata row."""
    with tempfile.TemporaryDirectory(prefix="demo_corpus_") as workdir:
        audio, info = render_job(job.render, workdir)
    path = _folder(Path(output_dir), job.split) / job.relative_path
    write_wav_atomic(str(path), audio)
    return _final_row(job, round(audio.size / SAMPLING_RATE, 4), info)


def _final_row(job: Job, duration_s: float, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": job.relative_path,
        **job.row,
        "duration_s": duration_s,
        "sampling_rate": SAMPLING_RATE,
        **info,
        "render_hash": job.render_hash,
    }


def _open_for_append(path: Path):
    """Open a metadata file for appending rows, first ending a line that a killed run left unfinished."""
    unfinished = False
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as existing:
            existing.seek(-1, os.SEEK_END)
            unfinished = existing.read(1) != b"\n"
    handle = open(path, "a", encoding="utf-8")
    if unfinished:
        handle.write("\n")
    return handle


def render_all(
    jobs: list[Job], output_dir: Path, num_workers: int, progress: bool
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Render `jobs`, appending each finished row to its split's metadata file.

    Returns the new rows and `{clip id: error}` for clips that failed; a failure does not stop the run
    (a rerun retries exactly the failed clips).
    """
    handles = {
        split: _open_for_append(_folder(output_dir, split) / METADATA_FILE)
        for split in {job.split for job in jobs}
    }
    finished: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    bar = tqdm(total=len(jobs), desc="clips", unit="clip", disable=not progress, dynamic_ncols=True)

    def record(job: Job, outcome: Callable[[], dict[str, Any]]) -> None:
        try:
            row = outcome()
        except Exception as err:  # noqa: BLE001 - any engine/sox failure is reported per clip
            failed[job.clip_id] = f"{type(err).__name__}: {err}"
            tqdm.write(f"{job.clip_id} failed: {failed[job.clip_id]}", file=sys.stderr)
        else:
            handles[job.split].write(json.dumps(row, ensure_ascii=False) + "\n")
            handles[job.split].flush()  # a row on disk means its wav is complete
            finished.append(row)
        bar.update(1)

    try:
        if num_workers == 1:
            for job in jobs:
                record(job, lambda job=job: render_to_disk(job, str(output_dir)))
        else:
            pool = ProcessPoolExecutor(max_workers=num_workers)
            try:
                queue = iter(jobs)
                pending: dict[Future, Job] = {}

                def submit_next() -> None:
                    job = next(queue, None)
                    if job is not None:
                        pending[pool.submit(render_to_disk, job, str(output_dir))] = job

                # A bounded window of futures keeps memory flat and lets an interrupt stop promptly.
                for _ in range(4 * num_workers):
                    submit_next()
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(pending.pop(future), future.result)
                        submit_next()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
        for handle in handles.values():
            handle.close()
    return finished, failed


# ---------------------------------------------------------------------------------------------- outputs
def held_out_cases(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation cases from the held-out rows: what was asked and the reference render.

    `expect` holds the stated attributes the evaluation harness scores (`EXPECT_KEYS`; it rejects unknown
    keys); `stated` holds everything the instruction states (age, emotion, accent, key, drums, ...).
    """
    return [
        {
            "id": row["id"],
            "task": row["task"],
            "language": row["language"],
            "instruction": row["instruction"],
            "instruction_language": row["instruction_language"],
            "text": row["text"],
            "audio_length_in_s": row["duration_s"],
            "expect": {
                key: value
                for key, value in row["instruction_mentions"].items()
                if key in EXPECT_KEYS[row["task"]]
            },
            "stated": row["instruction_mentions"],
            "reference_audio": f"{HELD_OUT_DIR}/{row['path']}",
        }
        for row in rows
    ]


def _value_key(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def summarize(
    rows: list[dict[str, Any]],
    held_rows: list[dict[str, Any]],
    plan_pools: dict[str, int],
    rendered: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """Hours and counts per part, attribute distributions, and this run's throughput."""
    parts: dict[str, dict[str, Any]] = {}
    for row in rows:
        part = parts.setdefault(row["part"], {"clips": 0, "hours": 0.0})
        part["clips"] += 1
        part["hours"] += row["duration_s"] / 3600
    for part in parts.values():
        part["hours"] = round(part["hours"], 3)
    distributions = {
        task: {
            name: dict(Counter(_value_key(r.get(name)) for r in rows if r["task"] == task).most_common())
            for name in names
        }
        for task, names in _DISTRIBUTIONS.items()
    }
    audio_s = sum(row["duration_s"] for row in rendered)
    return {
        "clips": len(rows),
        "hours": round(sum(row["duration_s"] for row in rows) / 3600, 3),
        "parts": parts,
        "held_out": {
            "clips": len(held_rows),
            "hours": round(sum(r["duration_s"] for r in held_rows) / 3600, 3),
            "by_task": dict(Counter(r["task"] for r in held_rows)),
        },
        "distinct_texts": len({row["text"] for row in rows if row["text"]}),
        "sentence_pools": plan_pools,
        "distributions": distributions,
        "this_run": {
            "clips_rendered": len(rendered),
            "seconds": round(seconds, 1),
            "clips_per_second": round(len(rendered) / seconds, 3) if seconds and rendered else None,
            "audio_hours_per_wall_hour": round(audio_s / seconds, 2) if seconds and rendered else None,
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"corpus: {summary['clips']} clips, {summary['hours']:.2f} h"]
    lines += [
        f"  {name:<10} {part['clips']:>6} clips {part['hours']:>7.2f} h"
        for name, part in summary["parts"].items()
    ]
    held = summary["held_out"]
    lines.append(
        f"held out: {held['clips']} reference clips ({held['hours']:.2f} h), cases by task {held['by_task']}"
    )
    run = summary["this_run"]
    lines.append(
        f"this run: {run['clips_rendered']} clips in {run['seconds']} s "
        f"({run['clips_per_second']} clips/s, {run['audio_hours_per_wall_hour']} audio h per wall h)"
    )
    return "\n".join(lines)


def contrast_cases(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation cases of the contrast pairs: both sides get the longer side's length (a pair is generated
    at one length), the stated attributes the harness scores, and the pair they belong to."""
    pair_length: dict[str, float] = {}
    for row in rows:
        pair = row["contrast"]["pair"]
        pair_length[pair] = max(pair_length.get(pair, 0.0), row["duration_s"])
    return [
        {
            "id": row["id"],
            "task": row["task"],
            "language": row["language"],
            "instruction": row["instruction"],
            "instruction_language": row["instruction_language"],
            "text": row["text"],
            "audio_length_in_s": round(pair_length[row["contrast"]["pair"]], 2),
            "expect": {
                key: value
                for key, value in row["instruction_mentions"].items()
                if key in EXPECT_KEYS[row["task"]]
            },
            "contrast": row["contrast"],
            "reference_audio": row["path"],
        }
        for row in rows
    ]


def build_contrast_pairs(args: argparse.Namespace) -> int:
    """Render the contrast pairs (`--contrast_pairs`) into their own folder; resumable like the corpus."""
    output_dir = Path(args.output_dir)
    missing = missing_tools()
    if missing:
        print(
            f"{', '.join(missing)} not found: contrast pairs need flite, espeak-ng and sox.", file=sys.stderr
        )
        return 2
    _check_config(output_dir, args.seed)
    jobs = [
        Job(clip_id, "contrast", path, render, row)
        for clip_id, path, render, row in plan_contrast_pairs(
            args.seed, held_out_sentences(args.seed), args.contrast_pairs
        )
    ]
    existing = read_rows(output_dir / METADATA_FILE)
    todo = [job for job in jobs if not _is_done(job, output_dir, existing)]
    print(f"{len(jobs)} contrast clips planned, rendering {len(todo)} with {args.num_workers} worker(s)")
    if todo:
        warm_up()
    rendered, failed = render_all(todo, output_dir, args.num_workers, not args.no_progress)
    fresh = {row["id"]: row for row in rendered}
    rows = []
    for job in jobs:
        if job.clip_id in failed:
            continue
        previous = fresh.get(job.clip_id) or existing[job.clip_id]
        measured = {key: previous[key] for key in ("duration_s", "engine_text") if key in previous}
        rows.append(_final_row(job, measured.pop("duration_s"), measured))
    _write_jsonl_atomic(output_dir / METADATA_FILE, rows)
    complete = {
        pair for pair, count in Counter(row["contrast"]["pair"] for row in rows).items() if count == 2
    }
    cases = contrast_cases([row for row in rows if row["contrast"]["pair"] in complete])
    _write_jsonl_atomic(output_dir / CONTRAST_CASES_FILE, cases)
    print(f"{len(complete)} complete pairs, {len(cases)} cases in {output_dir / CONTRAST_CASES_FILE}")
    if failed:
        print(
            f"{len(failed)} clip(s) failed (rerun to retry): {', '.join(sorted(failed)[:10])}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    if args.contrast_pairs:
        return build_contrast_pairs(args)
    output_dir = Path(args.output_dir)
    speech_parts = [part for part in args.parts if part != "music"]
    missing = missing_tools()
    if speech_parts and missing:
        print(
            f"{', '.join(missing)} not found: the speech parts need Debian's flite, espeak-ng and sox "
            "(apt-get install flite espeak-ng sox), or build only --parts music.",
            file=sys.stderr,
        )
        return 2
    _check_config(output_dir, args.seed)
    (output_dir / HELD_OUT_DIR).mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(args.seed, args.scale, tuple(args.parts))
    existing = {
        split: read_rows(_folder(output_dir, split) / METADATA_FILE) for split in ("train", "held_out")
    }
    todo = [job for job in plan.jobs if not _is_done(job, output_dir, existing[job.split])]
    print(
        f"{len(plan.jobs)} clips planned, {len(plan.jobs) - len(todo)} already done, rendering {len(todo)} "
        f"with {args.num_workers} worker(s)"
    )
    started = time.time()
    if speech_parts and todo:
        warm_up()  # before the workers fork, so each inherits the loaded front ends
    try:
        rendered, failed = render_all(todo, output_dir, args.num_workers, not args.no_progress)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished clips are saved; run the same command again to resume.", file=sys.stderr
        )
        return 130
    seconds = time.time() - started

    fresh = {row["id"]: row for row in rendered}
    final: dict[str, list[dict[str, Any]]] = {"train": [], "held_out": []}
    for job in plan.jobs:
        if job.clip_id in failed:
            continue
        # Reused audio keeps its measured fields, but the row is rewritten from the current plan.
        previous = fresh.get(job.clip_id) or existing[job.split][job.clip_id]
        measured = {key: previous[key] for key in ("duration_s", "engine_text") if key in previous}
        final[job.split].append(_final_row(job, measured.pop("duration_s"), measured))
    for split, rows in final.items():
        _write_jsonl_atomic(_folder(output_dir, split) / METADATA_FILE, rows)
    _write_jsonl_atomic(output_dir / CASES_FILE, held_out_cases(final["held_out"]))
    summary = summarize(final["train"], final["held_out"], plan.pools, rendered, seconds)
    summary["failed"] = failed
    summary["settings"] = {
        "seed": args.seed,
        "scale": args.scale,
        "num_workers": args.num_workers,
        "parts": args.parts,
        "generator_version": GENERATOR_VERSION,
    }
    (output_dir / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(format_summary(summary))
    if failed:
        print(
            f"{len(failed)} clip(s) failed and are left out (rerun to retry): "
            f"{', '.join(sorted(failed)[:10])}",
            file=sys.stderr,
        )
        return 1
    return 0
