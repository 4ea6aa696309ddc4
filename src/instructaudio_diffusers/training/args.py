"""Command-line options the training scripts share, `--config` files (JSON or YAML) as defaults, and the checks
that refuse a bad value before any model loads."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)


# ---------------------------------------------------------------------------------------------- arguments
def add_common_training_args(
    parser: argparse.ArgumentParser, *, learning_rate: float, train_batch_size: int, output_dir: str
) -> argparse.ArgumentParser:
    """Add the options every training script has: data, output, schedule, optimizer, checkpoints, logging,
    the Hub.

    Defaults for the learning rate, batch size and output folder differ per model and are passed in.
    """
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset_dir", type=str, default=None, help="A dataset folder written by prepare_dataset.py."
    )
    group.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="A prepared dataset folder, or a folder of audio files with a metadata.jsonl or metadata.csv "
        "(the prepare_dataset.py input), which is validated and prepared into --cache_dir on first use.",
    )
    group.add_argument(
        "--dataset_name",
        type=str,
        default=None,
        help="A Hub dataset repo holding audio files and a metadata.jsonl/.csv (the --train_data_dir layout), "
        "downloaded into --cache_dir (offline: from the cache).",
    )
    group.add_argument(
        "--cache_dir",
        type=str,
        default=None,
        help="Where --dataset_name is downloaded and a raw --train_data_dir is prepared "
        "(default: the Hub cache, and <output_dir>/prepared_data).",
    )
    group.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="Train on this many clips (a random subset drawn with --seed), e.g. to debug a run quickly.",
    )
    group.add_argument("--audio_root", type=str, default=None, help="Where the audio lives if it moved.")

    group = parser.add_argument_group("run")
    group.add_argument(
        "--output_dir",
        type=str,
        default=output_dir,
        help=f"Run folder: checkpoints, logs, final model (default {output_dir}).",
    )
    group.add_argument(
        "--logging_dir", type=str, default="logs", help="TensorBoard folder, relative to --output_dir."
    )
    group.add_argument("--seed", type=int, default=0, help="Seed of model init, data order, crops and noise.")
    group.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Overrides the accelerate config. On CPU keep 'no': bf16 autocast is far slower there.",
    )
    group.add_argument("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere+ GPUs.")
    group.add_argument(
        "--cpu",
        action="store_true",
        help="Run on CPU even where an accelerator exists. Several CPU processes (torchrun) need it, or "
        "ACCELERATE_USE_CPU=true, to get gloo DDP instead of independent single-process runs.",
    )
    group.add_argument(
        "--report_to", type=str, default="tensorboard", help="'tensorboard', 'wandb', 'all' or 'none'."
    )
    group.add_argument("--tracker_project_name", type=str, default=None, help="Tracker run name.")
    group.add_argument("--dataloader_num_workers", type=int, default=0, help="Data loading worker processes.")

    group = parser.add_argument_group("schedule and optimizer")
    group.add_argument(
        "--train_batch_size", type=int, default=train_batch_size, help="Batch size per device."
    )
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--num_train_epochs", type=int, default=100)
    group.add_argument(
        "--max_train_steps", type=int, default=None, help="Optimizer steps; overrides --num_train_epochs."
    )
    group.add_argument("--learning_rate", type=float, default=learning_rate)
    group.add_argument(
        "--scale_lr",
        action="store_true",
        help="Multiply the learning rate by batch size x accumulation x processes.",
    )
    group.add_argument("--lr_scheduler", type=str, default="constant_with_warmup", choices=_LR_SCHEDULERS)
    group.add_argument("--lr_warmup_steps", type=int, default=500)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_weight_decay", type=float, default=1e-2)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm (0: off).")
    group.add_argument(
        "--use_ema", action="store_true", help="Keep an EMA of the weights; it is what gets saved."
    )
    group.add_argument("--ema_decay", type=float, default=0.999)

    group = parser.add_argument_group("checkpoints and validation")
    group.add_argument(
        "--checkpointing_steps", type=int, default=1000, help="Save resumable state every N optimizer steps."
    )
    group.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints."
    )
    group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="'latest' (newest complete checkpoint in --output_dir, or a fresh start if none) or a path.",
    )
    group.add_argument(
        "--validation_steps", type=int, default=500, help="Validate every N optimizer steps (0: off)."
    )

    group = parser.add_argument_group("hub")
    group.add_argument("--push_to_hub", action="store_true", help="Upload the final model to the Hub.")
    group.add_argument(
        "--hub_model_id", type=str, default=None, help="Repo id (default: the output folder's name)."
    )
    group.add_argument("--hub_token", type=str, default=None, help="Token (default: the logged-in one).")
    group.add_argument("--hub_private", action="store_true")
    return parser


def check_common_training_args(args: argparse.Namespace) -> None:
    """Raise `ValueError` for option values that would only fail (or silently misbehave) later."""
    sources = [name for name in ("dataset_dir", "train_data_dir", "dataset_name") if getattr(args, name)]
    if len(sources) != 1:
        raise ValueError(
            "give the training data as one of --dataset_dir (a prepare_dataset.py folder), --train_data_dir (that "
            f"or a folder of audio + metadata.jsonl) or --dataset_name (a Hub dataset repo); got {sources or 'none'}."
        )
    if args.max_train_samples is not None and args.max_train_samples < 1:
        raise ValueError(f"--max_train_samples must be >= 1 when given, got {args.max_train_samples}.")
    if args.push_to_hub:
        from huggingface_hub import constants

        # Fail before hours of training, not at the upload.
        if constants.HF_HUB_OFFLINE:
            raise ValueError(
                "--push_to_hub needs the Hub, but HF_HUB_OFFLINE is set; unset it or upload the "
                "output folder later with `hf upload`."
            )
    positive = ["train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "checkpointing_steps"]
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1 when given, got {value}.")
    for name in ("lr_warmup_steps", "validation_steps", "dataloader_num_workers", "max_grad_norm"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}.")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be positive, got {args.learning_rate}.")
    if not 0.0 < args.ema_decay < 1.0:
        raise ValueError(f"--ema_decay must be in (0, 1), got {args.ema_decay}.")


#: Options that name files or folders, in both training scripts. Relative values in a --config file are resolved
#: against the config's project (see `config_base_dir`), so a config works from any directory.
PATH_OPTIONS = (
    "output_dir", "dataset_dir", "train_data_dir", "cache_dir", "audio_root", "transformer_config", "vae_config",
    "vae", "vocoder", "processor",
)  # fmt: skip
#: Options that take a folder or something else (a Hub repo id, a checkpoint name inside --output_dir): resolved
#: like paths only when the resolved path exists.
PATH_OR_HUB_OPTIONS = (
    "pretrained_model_name_or_path",
    "pretrained_vae",
    "text_encoder",
    "resume_from_checkpoint",
)
_PROJECT_MARKERS = ("setup.py", "pyproject.toml", ".git")


def config_base_dir(config_path: str | os.PathLike) -> Path:
    """What relative paths in a config file are relative to: the nearest folder at or above the config that holds
    setup.py, pyproject.toml or .git (the repository for `training/configs/*`), else the config's own folder."""
    folder = Path(config_path).resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in _PROJECT_MARKERS):
            return candidate
    return folder


def apply_config_file_defaults(parser: argparse.ArgumentParser, input_args: list[str] | None) -> list[str]:
    """Make `--config FILE` (JSON or YAML; keys = option names) the parser's defaults; flags still win.

    Keys starting with "_" are comments. Relative paths in the file are resolved against `config_base_dir`,
    never the current directory. Returns the command line to parse.
    """
    input_args = sys.argv[1:] if input_args is None else list(input_args)
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config", type=str, default=None)
    config_path = config_parser.parse_known_args(input_args)[0].config
    if not config_path:
        return input_args
    if not os.path.isfile(config_path):
        parser.error(f"--config {config_path}: no such file ({os.path.abspath(config_path)}).")
    with open(config_path, encoding="utf-8") as handle:
        text = handle.read()
    if config_path.endswith((".yaml", ".yml")):
        import yaml

        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            parser.error(f"--config {config_path} is not valid YAML: {err}")
    else:
        try:
            loaded = json.loads(text)
        except ValueError as err:
            parser.error(f"--config {config_path} is not valid JSON: {err}")
    if not isinstance(loaded, dict):
        parser.error(f"--config {config_path} must map option names to values.")
    defaults = {key: value for key, value in loaded.items() if not key.startswith("_")}
    unknown = sorted(set(defaults) - {action.dest for action in parser._actions})
    if unknown:
        parser.error(f"{config_path}: unknown option(s) {unknown}.")
    data_options = ("dataset_dir", "train_data_dir", "dataset_name")
    if any(arg.split("=")[0] in {f"--{name}" for name in data_options} for arg in input_args):
        # The training data is one choice: a data option on the command line replaces the file's.
        defaults = {key: value for key, value in defaults.items() if key not in data_options}
    base = config_base_dir(config_path)
    for key, value in defaults.items():
        if not isinstance(value, str) or not value or os.path.isabs(value) or value == "latest":
            continue
        resolved = str(base / value)
        if key in PATH_OPTIONS or (key in PATH_OR_HUB_OPTIONS and os.path.exists(resolved)):
            defaults[key] = resolved
    parser.set_defaults(**defaults)
    for action in parser._actions:  # what the file provides is no longer required on the command line
        if action.dest in defaults:
            action.required = False
    return input_args


def check_input_paths(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]
) -> None:
    """Refuse, before any model loads, an input file or folder that does not exist, naming the option, the path
    and (for a value from --config) what it was resolved against. Options that also take a Hub repo id are only
    checked when the value cannot be one."""
    for name in names:
        value = getattr(args, name, None)
        if not value or os.path.exists(value):
            continue
        if name in PATH_OR_HUB_OPTIONS and not (
            os.path.isabs(value) or value.startswith((".", "~")) or value.count("/") > 1
        ):
            continue  # may be a Hub repo id; its loader says whether it is one
        hint = ""
        if (
            getattr(args, "config", None) and parser.get_default(name) == value
        ):  # the value came from the file
            hint = (
                f" (relative paths in --config {args.config} are relative to {config_base_dir(args.config)})"
            )
        parser.error(f"--{name} {value}: no such file or folder{hint}.")
