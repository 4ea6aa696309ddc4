"""What a run records besides checkpoints: tracker hyper-parameters, TensorBoard audio and images, JSON files
written atomically, and the upload of the finished run folder to the Hub."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class TrainingSummary:
    """What a training script's `main` returns: the last optimizer step, every step's loss (and, where measured,
    clips per second) in this run, and the output folder."""

    global_step: int
    losses: list[float] = field(default_factory=list)
    output_dir: str = ""
    samples_per_second: list[float] = field(default_factory=list)


def tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """`args` as a flat dict TensorBoard's hparams accept (scalars and strings only)."""
    config = {}
    for key, value in vars(args).items():
        if value is None:
            continue
        config[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return config


def plot_mel(
    mel: torch.Tensor | np.ndarray,
    sampling_rate: int,
    hop_length: int,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Render a log-mel `(n_mels, frames)` with the package's one mel picture; write it as PNG when `path` is given.

    Returns:
        `np.ndarray`: the picture as `(height, width, 3)` uint8 RGB, ready for TensorBoard.
    """
    from ..audio.plot import figure_to_rgb, mel_figure

    if torch.is_tensor(mel):
        mel = mel.detach().float().cpu().numpy()
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise ValueError(f"mel must be (n_mels, frames), got shape {mel.shape}.")
    figure = mel_figure([mel], sampling_rate, hop_length, [title] if title else (), vmin=vmin, vmax=vmax)
    if path is not None:
        figure.savefig(path, format="png")
    return figure_to_rgb(figure)


def tensorboard_writer(accelerator):
    """The TensorBoard `SummaryWriter` of the accelerator's trackers, or `None` when not logging there."""
    if not accelerator.is_main_process:
        return None
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            return tracker.writer
    return None


def log_audio(
    accelerator, tag: str, waveform: torch.Tensor | np.ndarray, sampling_rate: int, step: int
) -> None:
    """Log a mono waveform `(num_samples,)` in [-1, 1] to TensorBoard (no-op without a TensorBoard tracker)."""
    writer = tensorboard_writer(accelerator)
    if writer is None:
        return
    if torch.is_tensor(waveform):
        waveform = waveform.detach().float().cpu().numpy()
    writer.add_audio(
        tag, np.clip(np.asarray(waveform).reshape(1, -1), -1.0, 1.0), step, sample_rate=sampling_rate
    )


def log_image(accelerator, tag: str, image: np.ndarray, step: int) -> None:
    """Log a `(height, width, 3)` uint8 image to TensorBoard (no-op without a TensorBoard tracker)."""
    writer = tensorboard_writer(accelerator)
    if writer is not None:
        writer.add_image(tag, image, step, dataformats="HWC")


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON through a temporary file and `os.replace`, so readers never see half a file."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    os.replace(temporary, path)


def push_folder_to_hub(args: argparse.Namespace, ignore_patterns: list[str], commit_message: str) -> str:
    """Upload `--output_dir` to `--hub_model_id` (default: the folder's name); returns the repo id."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = args.hub_model_id or Path(args.output_dir).absolute().name
    repo_id = create_repo(repo_id, exist_ok=True, private=args.hub_private, token=args.hub_token).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=args.output_dir,
        commit_message=commit_message,
        ignore_patterns=ignore_patterns,
        token=args.hub_token,
    )
    logger.info("Pushed %s to https://huggingface.co/%s", args.output_dir, repo_id)
    return repo_id
