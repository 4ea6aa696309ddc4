"""Check phoneme durations against the demo corpus synthesizers' own phone timings.

The demo corpus (`training/make_demo_corpus.py`) comes from flite and espeak-ng, which know where each phone lies.
`reference` re-renders clips with the engines' timings (flite `-psdur`, libespeak-ng phoneme events;
`timings`), aligns them with the processor's tokens (`reference`) and writes, per
clip, the reference boundaries and the **oracle durations** (latent frames per token, summing to the
clip's frames). `score` measures any durations at the reference boundaries, per language, next to the
uniform stretch (token k of L at k*T/L):

    python training/check_alignment.py reference --corpus_dir data/demo_corpus --output_dir runs/align-truth \\
        [--split train] [--parts speech_en] [--limit 2000] [--num_workers 2]
    python training/check_alignment.py score --dataset data/prepared [--corpus_dir data/demo_corpus] \\
        [--reference runs/align-truth/reference.jsonl] [--output report.json]
    python training/check_alignment.py score --corpus_dir data/demo_corpus --durations durations.jsonl ...

`reference` writes into --output_dir:

    reference.jsonl          one record per clip (tokens, reference boundaries, oracle durations, checks);
                             a rerun reuses the records it finds and computes only the missing clips
    oracle_durations.jsonl   {"id", "durations"} per clip that passed the checks, for training on
    timing_check.json        how the timings fit the stored audio, per engine and language

`score` reads durations from a prepared dataset's `durations` column (rows keyed by their corpus `id`)
or from a JSONL of {"id", "durations"}; references missing from --reference are computed (and saved
there) from the corpus folder, which a prepared dataset's rows lead back to when --corpus_dir is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ...pretrained import DEFAULT_MODEL
from .alignment_check import RECORD_VERSION, clip_record, format_report, score_records
from .reference import FRAMES_PER_SECOND
from .speech import warm_up
from .timings import clip_timings, planned_renders

#: The demo model's processor in a source checkout; an installed package has none, and `--processor` is needed.
DEFAULT_PROCESSOR = os.path.join(DEFAULT_MODEL, "processor") if DEFAULT_MODEL else None
TIMED_PARTS = ("speech_en", "speech_zh", "dialogue")
FRAME_MS = 1000 / FRAMES_PER_SECOND  # one latent frame, 23.2 ms
REFERENCE_FILE, ORACLE_FILE, CHECK_FILE = "reference.jsonl", "oracle_durations.jsonl", "timing_check.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reference = commands.add_parser(
        "reference", help="Synthesizer timings -> references and oracle durations."
    )
    reference.add_argument("--corpus_dir", required=True, help="A folder written by make_demo_corpus.py.")
    reference.add_argument("--output_dir", required=True, help="Where the three output files go.")
    reference.add_argument("--split", choices=("train", "held_out"), default="train")
    reference.add_argument("--parts", nargs="+", choices=TIMED_PARTS, default=list(TIMED_PARTS))
    reference.add_argument("--limit", type=int, default=None, help="Only the first N clips by id.")
    score = commands.add_parser("score", help="Boundary errors of given durations, per language.")
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset", help="A prepared dataset (prepare_dataset.py) with a 'durations' column."
    )
    source.add_argument("--durations", help='JSONL of {"id", "durations"} (needs --corpus_dir).')
    score.add_argument("--corpus_dir", default=None, help="The corpus the clips come from.")
    score.add_argument("--reference", default=None, help="reference.jsonl to reuse and extend.")
    score.add_argument("--output", default=None, help="Write the report as JSON here too.")
    for command in (reference, score):
        command.add_argument("--processor", default=DEFAULT_PROCESSOR, help="Saved InstructAudioProcessor.")
        command.add_argument("--num_workers", type=int, default=2, help="Worker processes (1: in-process).")
        command.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "score" and args.durations and not args.corpus_dir:
        parser.error("--durations needs --corpus_dir.")
    if args.processor is None:
        parser.error(
            "--processor is needed: the demo model's processor ships with the source checkout "
            "(checkpoints/instructaudio-demo/processor), not with the installed package."
        )
    return args


# ---------------------------------------------------------------------------------------------- records
_PROCESSOR = None


def _load_processor(path: str) -> None:
    global _PROCESSOR
    from instructaudio_diffusers.processing import InstructAudioProcessor

    _PROCESSOR = InstructAudioProcessor.from_pretrained(path)
    warm_up()


def _record(row: dict[str, Any], render: dict[str, Any]) -> dict[str, Any]:
    """Worker: one clip's record (see `alignment_check.clip_record`); `row["audio_file"]` is its wav."""
    tokens = _PROCESSOR.phonemize(row["text"])
    with tempfile.TemporaryDirectory(prefix="clip_timings_") as workdir:
        timings = clip_timings(render, workdir)
    audio, _ = sf.read(row["audio_file"], dtype="float32")
    return {**clip_record(row, tokens, timings, audio), "render_hash": row.get("render_hash")}


def _failed(row: dict[str, Any], error: Exception) -> dict[str, Any]:
    return {"id": row["id"], "version": RECORD_VERSION, "language": row["language"], "task": row["task"],
            "render_hash": row.get("render_hash"),
            "excluded": f"timings failed: {type(error).__name__}: {error}", "reference": None}  # fmt: skip


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def ensure_records(
    rows: list[dict[str, Any]], corpus_dir: Path, cache: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Records of `rows` (metadata rows of `corpus_dir` with their wav path added as `audio_file`),
    reusing those in `cache` (same render hash) and appending the ones computed there."""
    cached = {record["id"]: record for record in read_jsonl(cache)}
    todo = [row for row in rows if not _is_current(cached.get(row["id"]), row)]
    if todo:
        renders = planned_renders(corpus_dir, todo)
        _load_processor(args.processor)  # before the workers fork, so each inherits it
        cache.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo), desc="clips", unit="clip", disable=args.no_progress, dynamic_ncols=True)
        with open(cache, "a", encoding="utf-8") as handle:
            for row, record in _run_all(todo, renders, args.num_workers):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                cached[row["id"]] = record
                bar.update(1)
        bar.close()
    return {row["id"]: cached[row["id"]] for row in rows}


def _is_current(record: dict[str, Any] | None, row: dict[str, Any]) -> bool:
    """A cached record still holds: same audio (render hash), same code (record version), and it did not
    fail (a rerun retries failures)."""
    return (
        record is not None
        and record.get("reference") is not None
        and record.get("render_hash") == row.get("render_hash")
        and record.get("version", 1) == RECORD_VERSION
    )


def _run_all(rows, renders, num_workers: int):
    """Yield `(row, record)` as clips finish; a clip whose timings fail gets a record saying why."""
    if num_workers == 1:
        for row in rows:
            try:
                yield row, _record(row, renders[row["id"]])
            except Exception as err:  # noqa: BLE001 - reported per clip
                yield row, _failed(row, err)
        return
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=get_context("fork")) as pool:
        queue = iter(rows)
        pending = {}

        def submit_next() -> None:
            row = next(queue, None)
            if row is not None:
                pending[pool.submit(_record, row, renders[row["id"]])] = row

        for _ in range(4 * num_workers):  # a bounded window keeps memory flat
            submit_next()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                row = pending.pop(future)
                try:
                    yield row, future.result()
                except Exception as err:  # noqa: BLE001 - reported per clip
                    yield row, _failed(row, err)
                submit_next()


# ---------------------------------------------------------------------------------------------- reference
def _distribution(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    return {"count": int(array.size), "median": round(float(np.median(array)), 2),
            "p5": round(float(np.percentile(array, 5)), 2), "p95": round(float(np.percentile(array, 95)), 2)}  # fmt: skip


def timing_check(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the timings fit the audio, per `language/engine` and overall (see `alignment_check.audio_checks`)."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        checks = record.get("checks")
        for group in ("all", f"{record['language']}/{record.get('engine', '?')}"):
            values = groups[group]
            values["clips"].append(1)
            values["excluded"].append(bool(record["excluded"]))
            if not checks:
                continue
            values["length_match"].append(checks["length_match"])
            values["matched_share"].append(record["matched_share"])
            values["onset_errors_ms"] += checks["onset_errors_ms"]
            values["offset_errors_ms"] += checks["offset_errors_ms"]
            values["silence_levels_db"] += checks["silence_levels_db"]
            values["vowel_levels_db"] += checks["vowel_levels_db"]
    summary = {}
    for group, values in sorted(groups.items()):
        summary[group] = {
            "clips": len(values["clips"]),
            "excluded": int(sum(values["excluded"])),
            "length_match": int(sum(values["length_match"])),
            "matched_share": _distribution(values["matched_share"]),
        }
        for edges in ("onset", "offset"):
            errors = values[f"{edges}_errors_ms"]
            summary[group][f"{edges}_errors_ms"] = _distribution(errors)
            for frames in (1, 2):
                share = float(np.mean(np.abs(errors) <= frames * FRAME_MS)) if errors else None
                summary[group][f"{edges}s_within_{frames}_frames"] = share
        summary[group].update(
            {
                "silence_levels_db": _distribution(values["silence_levels_db"]),
                "vowel_levels_db": _distribution(values["vowel_levels_db"]),
            }
        )
    return summary


def reference_command(args: argparse.Namespace) -> int:
    corpus_dir, output_dir = Path(args.corpus_dir), Path(args.output_dir)
    audio_dir = corpus_dir / "held_out" if args.split == "held_out" else corpus_dir
    rows = [
        {**row, "audio_file": str(audio_dir / row["path"])}
        for row in read_jsonl(audio_dir / "metadata.jsonl")
        if row.get("part") in args.parts
    ]
    rows.sort(key=lambda row: row["id"])
    rows = rows[: args.limit] if args.limit else rows
    if not rows:
        print(f"no {'/'.join(args.parts)} rows in {audio_dir / 'metadata.jsonl'}", file=sys.stderr)
        return 1
    records = ensure_records(rows, corpus_dir, output_dir / REFERENCE_FILE, args)
    usable = [record for record in records.values() if not record["excluded"]]
    partial = output_dir / (ORACLE_FILE + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for record in usable:
            durations = record["reference"]["oracle_durations"]
            handle.write(json.dumps({"id": record["id"], "durations": durations}) + "\n")
    os.replace(partial, output_dir / ORACLE_FILE)  # a trainer reading it never sees half a file
    check = timing_check(list(records.values()))
    (output_dir / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    print(f"{len(records)} clips, {len(usable)} with oracle durations in {output_dir / ORACLE_FILE}")
    excluded = defaultdict(int)
    for record in records.values():
        if record["excluded"]:
            excluded[record["excluded"].split(":")[0].split(" only")[0]] += 1
    if excluded:
        print("excluded: " + ", ".join(f"{count} ({why})" for why, count in excluded.items()))
    print(format_report(score_records(list(records.values()))))
    return 0


# ---------------------------------------------------------------------------------------------- score
def _dataset_rows(dataset_dir: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Rows of a prepared dataset (with `audio_file`) and their durations, by corpus id."""
    from ..data import load_prepared_dataset, resolve_audio_path

    dataset = load_prepared_dataset(dataset_dir)
    missing = {"id", "durations", "part", "render_hash"} - set(dataset.column_names)
    if missing:
        # The truth exists only for the demo corpus: its rows carry the plan's part and render hash.
        raise SystemExit(f"{dataset_dir} lacks the column(s) {sorted(missing)}; is it the demo corpus?")
    wanted = ("id", "text", "language", "task", "part", "render_hash", "audio_path", "source_path",
              "audio_path_absolute", "engine", "s0_engine", "s1_engine")  # fmt: skip
    rows = dataset.select_columns([c for c in wanted if c in dataset.column_names]).to_list()
    durations = {row["id"]: np.asarray(values) for row, values in zip(rows, dataset["durations"])}
    for row in rows:
        row["audio_file"] = resolve_audio_path(row, dataset_dir)
    return rows, durations


def _corpus_of(audio_file: str) -> Path:
    """The corpus folder (the one with corpus_config.json) that holds `audio_file`."""
    for folder in Path(audio_file).resolve().parents:
        if (folder / "corpus_config.json").is_file():
            return folder
    raise SystemExit(f"no corpus_config.json above {audio_file}; pass --corpus_dir.")


def score_command(args: argparse.Namespace) -> int:
    if args.dataset:
        rows, durations = _dataset_rows(args.dataset)
        corpus_dir = Path(args.corpus_dir) if args.corpus_dir else _corpus_of(rows[0]["audio_file"])
    else:
        corpus_dir = Path(args.corpus_dir)
        durations = {entry["id"]: np.asarray(entry["durations"]) for entry in read_jsonl(args.durations)}
        metadata = {
            row["id"]: {**row, "audio_file": str(folder / row["path"])}
            for folder in (corpus_dir, corpus_dir / "held_out")
            for row in read_jsonl(folder / "metadata.jsonl")
        }
        missing = sorted(set(durations) - set(metadata))
        if missing:
            print(f"{len(missing)} ids are not in {corpus_dir}: {missing[:5]}", file=sys.stderr)
        rows = [metadata[key] for key in sorted(durations) if key in metadata]
    rows = [row for row in rows if row.get("task") in ("speech", "dialogue")]
    cache = Path(args.reference) if args.reference else Path(tempfile.mkdtemp()) / REFERENCE_FILE
    records = ensure_records(rows, corpus_dir, cache, args)
    report = score_records(list(records.values()), durations)
    print(format_report(report))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def main(args: argparse.Namespace) -> int:
    return reference_command(args) if args.command == "reference" else score_command(args)
