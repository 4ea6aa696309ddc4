"""Helpers shared by the training scripts (Mel-VAE now, the MM-DiT next).

Nothing in the package imports this file; the scripts put their own folder on `sys.path` and import
it as `utils`. Everything here is about running training well (arguments, resumable data order,
logging; checkpoints are in `checkpoints.py`); models and losses live with the script that trains them.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def adamw_from_args(args: argparse.Namespace, parameters) -> torch.optim.AdamW:
    """AdamW with the shared `--learning_rate`/`--adam_*` options."""
    return torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def lr_scheduler_from_args(args: argparse.Namespace, optimizer, max_train_steps: int, num_processes: int):
    """diffusers' `get_scheduler` for `--lr_scheduler`/`--lr_warmup_steps`, before `accelerator.prepare`.

    A prepared scheduler steps once per process per optimizer step, hence the scaling by `num_processes`.
    """
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


def create_accelerator(args: argparse.Namespace):
    """The run's `Accelerator`: TensorBoard under `output_dir/logging_dir`, accumulation, precision.

    Also configures logging so every process logs its rank and only the main one logs at INFO.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
        cpu=args.cpu,
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    if not accelerator.is_local_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    return accelerator


def finish_training(accelerator) -> None:
    """`accelerator.end_training()` once the prepared models are gone; the caller drops its own references first.

    `end_training` destroys the process group. A DDP wrapper that outlives it leaves its reducer as the
    group's last owner, so gloo's worker threads are joined in the reducer's destructor with the GIL held, and
    a worker that needs the GIL to free a finished collective deadlocks the process at exit (seen in CI: two
    CPU processes, torch 2.13). Freed while the group is still registered, the reducer merely lets go of it,
    and the group is destroyed by `destroy_process_group`, whose destructor releases the GIL.
    """
    accelerator.wait_for_everyone()  # no collective is in flight
    accelerator.free_memory()  # accelerate's references to the wrappers, then a garbage collection
    accelerator.end_training()


def tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """`args` as a flat dict TensorBoard's hparams accept (scalars and strings only)."""
    config = {}
    for key, value in vars(args).items():
        if value is None:
            continue
        config[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return config


# ---------------------------------------------------------------------------------------------- data order
class EpochSeededSampler(Sampler):
    """Yields `(index, epoch)` keys in an order that is a pure function of `(seed, epoch)`.

    Resuming exactly then needs no sampler state: set the epoch, skip the batches already consumed.
    The epoch travels with each index so that per-item randomness (random crops) can be drawn from
    `item_rng(seed, epoch, index)` in the dataset, identical in any worker process and after a resume.

    It deliberately has no `generator` attribute: accelerate would replace or re-seed that.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        if num_samples < 1:
            raise ValueError("the dataset is empty: nothing to train on.")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        for index in order.tolist():
            yield index, self.epoch


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one dataset item in one epoch (see `EpochSeededSampler`)."""
    return np.random.default_rng([seed, epoch, index])


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator that is a pure function of integer `keys` (e.g. seed, epoch, batch, rank).

    Noise drawn from it is the same whether or not the run was interrupted and resumed, unlike noise
    from the global RNG. CPU generators also give the same numbers on any accelerator.
    """
    derived = int(np.random.SeedSequence([int(key) for key in keys]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(derived)


@dataclass
class TrainingProgress:
    """Where the loop stands; saved in every checkpoint (`checkpoints.CheckpointState`) for exact resume.

    `batches_in_epoch` counts micro-batches of `epoch` already consumed by this process.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])

    def resume_position(self, batches_per_epoch: int) -> tuple[int, int]:
        """`(epoch, batches to skip)` to continue with; a finished epoch rolls over to the next one."""
        if self.batches_in_epoch >= batches_per_epoch:
            return self.epoch + 1, 0
        return self.epoch, self.batches_in_epoch


def training_length(
    batches_per_epoch: int,
    gradient_accumulation_steps: int,
    max_train_steps: int | None,
    num_train_epochs: int,
) -> tuple[int, int]:
    """`(max_train_steps, num_train_epochs)` made consistent.

    accelerate forces an optimizer step at the end of every epoch, so an epoch has
    `ceil(batches / accumulation)` updates.
    """
    updates_per_epoch = math.ceil(batches_per_epoch / gradient_accumulation_steps)
    if max_train_steps is None:
        max_train_steps = num_train_epochs * updates_per_epoch
    return max_train_steps, math.ceil(max_train_steps / updates_per_epoch)


# ---------------------------------------------------------------------------------------------- datasets
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


# ---------------------------------------------------------------------------------------------- audio I/O
def load_vocoder(vocoder_path: str | os.PathLike | None, mel_config: dict[str, Any], device: torch.device):
    """A vocoder for validation audio: the model at `vocoder_path`, or Griffin-Lim from the mel config.

    The class is read from the folder's `config.json`: transformers' `SpeechT5HifiGan` (what
    `instructaudio-convert-hifigan` writes by default), `HifiGanVocoder` or `GriffinLimVocoder`.
    """
    from instructaudio_diffusers import GriffinLimVocoder, HifiGanVocoder
    from instructaudio_diffusers.models import vocoder_mel_settings

    if vocoder_path is None:
        keys = ("sampling_rate", "n_fft", "hop_length", "win_length", "n_mels", "mel_fmin", "mel_fmax")
        return GriffinLimVocoder(**{key: mel_config[key] for key in keys}).to(device).eval()
    config_path = os.path.join(vocoder_path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"--vocoder {vocoder_path}: no {config_path}; convert one with instructaudio-convert-hifigan."
        )
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    class_name = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if class_name == "SpeechT5HifiGan":
        from transformers import SpeechT5HifiGan as vocoder_class
    else:
        vocoder_class = {"HifiGanVocoder": HifiGanVocoder, "GriffinLimVocoder": GriffinLimVocoder}.get(
            class_name
        )
    if vocoder_class is None:
        raise ValueError(
            f"{vocoder_path} holds a {class_name!r}; expected SpeechT5HifiGan, HifiGanVocoder or GriffinLimVocoder."
        )
    vocoder = vocoder_class.from_pretrained(vocoder_path).to(device).eval()
    settings = dict(zip(("sampling_rate", "n_mels", "hop_length"), vocoder_mel_settings(vocoder)))
    for key, value in settings.items():
        if value != mel_config[key]:
            raise ValueError(
                f"vocoder {key}={value} does not match the VAE's mel front end ({mel_config[key]})."
            )
    return vocoder


# ---------------------------------------------------------------------------------------------- plots, logs
def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            'Plotting mel spectrograms needs matplotlib: pip install -e ".[training]" (in the checkout) or pip install matplotlib.'
        ) from err
    matplotlib.use("Agg", force=False)  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_mel(
    mel: torch.Tensor | np.ndarray,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Render a log-mel `(n_mels, frames)` as an image; write it as PNG when `path` is given.

    Returns:
        `np.ndarray`: the PNG decoded as `(height, width, 3)` uint8 RGB, ready for TensorBoard.
    """
    plt = _pyplot()
    if torch.is_tensor(mel):
        mel = mel.detach().float().cpu().numpy()
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise ValueError(f"mel must be (n_mels, frames), got shape {mel.shape}.")
    width = min(max(4.0, mel.shape[1] / 40.0), 16.0)
    figure, axis = plt.subplots(figsize=(width, 3.0), dpi=100)
    image = axis.imshow(mel, origin="lower", aspect="auto", interpolation="none", vmin=vmin, vmax=vmax)
    axis.set_xlabel("frame")
    axis.set_ylabel("mel bin")
    if title:
        axis.set_title(title)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    if path is not None:
        Path(path).write_bytes(buffer.getvalue())
    buffer.seek(0)
    return (plt.imread(buffer, format="png")[..., :3] * 255).round().astype(np.uint8)


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
