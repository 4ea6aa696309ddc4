"""Prepared datasets (`training/prepare_dataset.py`): finding one from the data options, loading it, drawing a
subset, and finding each clip's audio file wherever it moved."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def load_prepared_dataset(dataset_dir: str | os.PathLike):
    """Load a dataset written by `prepare_dataset.py` (a `datasets.Dataset` saved with `save_to_disk`)."""
    from datasets import load_from_disk

    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "state.json").is_file():
        raise FileNotFoundError(
            f"{dataset_dir} is not a prepared dataset (no state.json); run training/prepare_dataset.py first."
        )
    dataset = load_from_disk(str(dataset_dir))
    if "audio_path" not in dataset.column_names:
        raise ValueError(f"{dataset_dir} has no 'audio_path' column; was it written by prepare_dataset.py?")
    return dataset


def resolve_audio_path(
    row: dict[str, Any], dataset_dir: str | os.PathLike, audio_root: str | os.PathLike | None = None
) -> str:
    """Find a row's audio file, surviving moves of the dataset, of the audio, or of both together.

    Tried in order: `audio_root / source_path` (when the caller says where the audio now lives), the
    path relative to the dataset folder (both moved together), the absolute path (only the dataset
    moved).
    """
    candidates = []
    if audio_root is not None and row.get("source_path"):
        candidates.append(os.path.join(audio_root, row["source_path"]))
    candidates.append(os.path.normpath(os.path.join(dataset_dir, row["audio_path"])))
    if row.get("audio_path_absolute"):
        candidates.append(row["audio_path_absolute"])
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"audio for row {row.get('source_path') or row['audio_path']!r} not found; tried {candidates}. "
        "Pass --audio_root with the folder that now holds the audio."
    )


def _is_prepared(folder: str | os.PathLike) -> bool:
    return Path(folder, "state.json").is_file()


def resolve_training_data(args: argparse.Namespace) -> str:
    """The prepared dataset folder to train on, from --dataset_dir, --train_data_dir or --dataset_name.

    A raw folder (audio + metadata.jsonl/.csv, local or downloaded from the Hub) is validated and prepared by
    `prepare_dataset.py` into --cache_dir (default `<output_dir>/prepared_data`) the first time, keyed by the
    folder and its metadata file, and reused afterwards. Call it on the main process first.
    """
    if args.dataset_dir:
        return args.dataset_dir
    if args.dataset_name:
        from huggingface_hub import snapshot_download

        source = snapshot_download(args.dataset_name, repo_type="dataset", cache_dir=args.cache_dir)
    else:
        source = args.train_data_dir
        if not os.path.isdir(source):
            raise FileNotFoundError(f"--train_data_dir {source}: no such folder.")
    if _is_prepared(source):
        return source
    metadata = next(
        (Path(source, name) for name in ("metadata.jsonl", "metadata.csv") if Path(source, name).is_file()),
        None,
    )
    if metadata is None:
        raise FileNotFoundError(
            f"{source} is neither a prepared dataset (no state.json) nor a folder of audio with a metadata.jsonl or "
            "metadata.csv (columns path, instruction, text, language, task; see training/prepare_dataset.py)."
        )
    stat = metadata.stat()
    key = hashlib.sha1(f"{metadata.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = Path(args.cache_dir or Path(args.output_dir, "prepared_data"), f"{Path(source).name}-{key}")
    if not _is_prepared(target):
        from . import preparation

        logger.info("Preparing %s into %s (bad rows go to its %s)", source, target, "bad_rows.jsonl")
        command = ["--audio_dir", str(source), "--metadata", str(metadata), "--output_dir", str(target)]
        if preparation.main(preparation.parse_args(command)) != 0:
            raise ValueError(f"preparing {source} failed; see {target.parent} and the log above.")
    return str(target)


def subset_for_training(dataset, args: argparse.Namespace):
    """The dataset, or a random `--max_train_samples` clips of it (drawn with `--seed`, kept in dataset order)."""
    if args.max_train_samples is None or args.max_train_samples >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(args.seed).permutation(len(dataset))[: args.max_train_samples])
    return dataset.select(keep.tolist())
