"""Checkpoints of the training scripts: written atomically, read without running code, refused clearly.

A checkpoint is `output_dir/checkpoint-<step>/`: what `accelerator.save_state` writes (model weights as
safetensors; optimizer, scheduler and random-number states as torch pickles) plus what the scripts save
themselves, as JSON and safetensors only (`CheckpointState`): the loop's position in
`training_state.json` and, with `--use_ema`, the EMA weights as a model folder.

Pickles can run code when loaded, so a shared or downloaded run folder must not be trusted blindly.
Resuming first opens every file it will read (`find_checkpoint`, before any data or model is loaded), the
pickles with torch's `weights_only` unpickler, which builds tensors and plain containers and nothing else,
and refuses the checkpoint, naming the file, when one needs more or is damaged; accelerate then loads the
same files (`load_checkpoint`; it too uses `weights_only` for everything it wrote). A damaged checkpoint names the newest
earlier one that reads whole, and `--resume_from_checkpoint latest` falls back to it, saying so.

Checkpoints written before this format kept the loop position (and the Mel-VAE's EMA) in accelerate's
`custom_checkpoint_<i>.pkl` files, which accelerate loads with `weights_only=False`; they are still
resumed, their pickles read here with `weights_only` like every other file, and accelerate never sees them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .tracking import write_json

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
# Suffix of checkpoint folders still being written; never matched by `_CHECKPOINT_PATTERN`.
_PARTIAL_SUFFIX = ".partial"
TRAINING_STATE_FILE = "training_state.json"
# accelerate's files for objects passed to `register_for_checkpointing`, which the scripts no longer use.
_LEGACY_STATE_PATTERN = re.compile(r"^custom_checkpoint_(\d+)\.pkl$")
# Suffixes of files written with torch.save / pickle, and so opened here with `weights_only` first.
PICKLE_SUFFIXES = (".bin", ".pkl", ".pt", ".pth", ".ckpt")
# EMAModel's counters and settings, stored in its folder's config.json next to the model's own keys.
_EMA_KEYS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from; the message names the file and what to do instead.

    `kind` is "unsafe" (a pickle that needs more than tensors and plain data), "damaged" (a file that does
    not read whole) or "mismatch" (it does not fit this run); `file` is the offending file, when one is.
    """

    def __init__(self, message: str, kind: str = "mismatch", file: Path | None = None):
        super().__init__(message)
        self.kind = kind
        self.file = file


# ---------------------------------------------------------------------------------------------- finding
def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a complete checkpoint folder's name (`checkpoint-<step>`), `None` for any other name."""
    match = _CHECKPOINT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in `output_dir` as `(step, path)`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = ((checkpoint_step(entry), entry) for entry in output_dir.iterdir() if entry.is_dir())
    return sorted((step, entry) for step, entry in steps if step is not None)


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """The checkpoint folder to resume from, or `None` for a fresh start.

    'latest' with no checkpoint yet is a fresh start (so one command both starts and resumes a run);
    an explicit path that does not exist is an error.
    """
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        path = Path(output_dir) / resume_from_checkpoint
    if not path.is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder."
        )
    return path


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints beyond `total_limit`; returns the deleted folders."""
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    doomed = [path for _, path in checkpoints[: max(len(checkpoints) - total_limit, 0)]]
    for path in doomed:
        logger.info("Removing old checkpoint %s (checkpoints_total_limit=%d)", path, total_limit)
        shutil.rmtree(path)
    return doomed


# ---------------------------------------------------------------------------------------------- what the scripts save
class CheckpointState:
    """What a training script keeps in its checkpoints besides accelerate's state, as JSON and safetensors.

    Args:
        progress: The loop's position (`TrainingProgress`), saved as `training_state.json`.
        ema: The run's `EMAModel`, or `None` without `--use_ema`.
        ema_folder: Folder of the EMA in a checkpoint: a model folder (`EMAModel.save_pretrained`: config with
            the EMA's counters, weights as safetensors).
        ema_parameter_names: Names of the parameters the EMA follows, in its order (`named_parameters()` of
            the model it was built on), to put the saved tensors back in place.
    """

    def __init__(
        self,
        progress,
        ema=None,
        ema_folder: str = "ema",
        ema_parameter_names: list[str] | None = None,
    ):
        if ema is not None and ema_parameter_names is None:
            raise ValueError("ema_parameter_names are needed to load an EMA back.")
        self.progress = progress
        self.ema = ema
        self.ema_folder = ema_folder
        self.ema_parameter_names = ema_parameter_names

    def save(self, folder: Path) -> None:
        write_json(folder / TRAINING_STATE_FILE, self.progress.state_dict())
        if self.ema is not None:
            self.ema.save_pretrained(str(folder / self.ema_folder))

    def load(self, folder: Path, legacy_states: list[dict[str, Any]], device=None) -> None:
        """Restore from `folder`, or from the states of an older checkpoint's `custom_checkpoint_*.pkl`."""
        progress = next((state for state in legacy_states if "global_step" in state), None)
        state_file = folder / TRAINING_STATE_FILE
        if state_file.is_file():
            progress = json.loads(state_file.read_text(encoding="utf-8"))
        if progress is None:
            raise CheckpointError(
                f"{folder} lacks {TRAINING_STATE_FILE}: it is incomplete; resume from another checkpoint.",
                "damaged",
            )
        self.progress.load_state_dict(progress)

        ema_dir = folder / self.ema_folder
        legacy_ema = next((state for state in legacy_states if "shadow_params" in state), None)
        has_ema = ema_dir.is_dir() or legacy_ema is not None
        if self.ema is None:
            if has_ema:
                raise CheckpointError(
                    f"{folder} holds EMA weights but this run has no --use_ema: pass --use_ema to carry them on."
                )
            return
        if not has_ema:
            raise CheckpointError(
                f"{folder} has no EMA weights ({self.ema_folder}/): it was saved without --use_ema; resume "
                "without it, or start a new run."
            )
        state = legacy_ema if not ema_dir.is_dir() else self._read_ema_folder(ema_dir)
        self.ema.load_state_dict(state)
        if device is not None:
            self.ema.to(device)

    def _read_ema_folder(self, ema_dir: Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        config = json.loads((ema_dir / "config.json").read_text(encoding="utf-8"))
        tensors = {}
        for weights in sorted(ema_dir.glob("*.safetensors")):
            tensors.update(load_file(weights))
        missing = [name for name in self.ema_parameter_names if name not in tensors]
        if missing:
            raise CheckpointError(
                f"{ema_dir} lacks {len(missing)} of the EMA's tensors (e.g. {missing[0]!r}): it is damaged or "
                "belongs to another model.",
                "damaged",
                ema_dir,
            )
        return {
            **{key: config[key] for key in _EMA_KEYS if key in config},
            "shadow_params": [tensors[name] for name in self.ema_parameter_names],
        }


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    total_limit: int | None = None,
    state: CheckpointState | None = None,
) -> Path:
    """`accelerator.save_state` (and `state`) into `output_dir/checkpoint-<step>`, atomically, then prune.

    The state is written to `checkpoint-<step>.partial` and renamed only once every process is done,
    so a crash mid-save leaves the previous checkpoint as the latest one and the partial folder is
    ignored (and cleared by the next save). Pruning happens after the rename, never before, so a
    failed save cannot cost an older checkpoint. Every process must call this.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / f"{CHECKPOINT_PREFIX}{step}{_PARTIAL_SUFFIX}"
    # With save_on_each_node every node writes its own copy, so each node's first process renames it.
    owner = (
        accelerator.is_local_main_process
        if accelerator.project_configuration.save_on_each_node
        else accelerator.is_main_process
    )
    if owner and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if owner and state is not None:
        state.save(partial)
    accelerator.wait_for_everyone()
    if owner:
        if final.exists():  # re-saving a step (e.g. a resumed run): swap, then drop the old copy
            stale = output_dir / f"{final.name}.old"
            if stale.exists():
                shutil.rmtree(stale)
            os.replace(final, stale)
            os.replace(partial, final)
            shutil.rmtree(stale)
        else:
            os.replace(partial, final)
        prune_checkpoints(output_dir, total_limit)
        logger.info("Saved state to %s", final)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------------------------------------- reading safely
def _load_pickle(path: Path):
    """A torch pickle through the `weights_only` unpickler (accelerate's, which also allows numpy arrays)."""
    from accelerate.utils import load

    # Memory-mapped, the tensors of a many-GB optimizer state are not read, only the pickle that lists them.
    return load(path, map_location="cpu", mmap=zipfile.is_zipfile(path))


def _problem(path: Path) -> tuple[str, str] | None:
    """`("unsafe" | "damaged", reason)` for a file resuming would read, or `None` when it reads whole.

    torch.save writes a zip archive whose pickle builds only tensors and plain data (protocol 2), so a
    pickle file that is not such an archive, or whose pickle `weights_only` refuses, is unsafe; a zip that
    does not open (cut short: its index is at the end) is damaged.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt"):
                pass  # the header and that the file covers every tensor it lists
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in PICKLE_SUFFIXES:
            with open(path, "rb") as handle:
                head = handle.read(2)
            if head[:1] == pickle.PROTO:
                return "unsafe", "a bare pickle, not a torch.save archive: loading it could run any code"
            if head != b"PK":
                return "damaged", "not a torch.save archive"
            _load_pickle(path)
    except pickle.UnpicklingError as err:
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        found = (
            f"a pickled {unsupported.group(1)}" if unsupported else "pickle instructions torch never writes"
        )
        return "unsafe", f"it holds {found}, which would run when loaded"
    except Exception as err:  # a cut-short zip, a bad header, invalid JSON: all mean damaged here
        first = (str(err).splitlines() or ["unreadable"])[0].split(". ")[0]
        return "damaged", f"cut short or corrupted: {type(err).__name__}: {first}"
    return None


def check_checkpoint_files(checkpoint: Path) -> None:
    """Open every file in `checkpoint` as resuming would, without running code; raise at the first bad one.

    Raises:
        CheckpointError: naming the file, of kind "unsafe" or "damaged".
    """
    for path in sorted(entry for entry in checkpoint.rglob("*") if entry.is_file()):
        problem = _problem(path)
        if problem is None:
            continue
        kind, reason = problem
        name = path.relative_to(checkpoint.parent)
        if kind == "unsafe":
            message = (
                f"Refusing to resume from {checkpoint}: {name} is not what these scripts save ({reason}). "
                "A checkpoint from an untrusted source can run any code this way; delete it, or load it by "
                "hand only if you trust where it came from."
            )
        else:
            message = f"{checkpoint} is damaged: {name} cannot be read ({reason})."
        raise CheckpointError(message, kind, name)


def _readable_before(checkpoint: Path) -> Path | None:
    """The newest checkpoint older than `checkpoint` (in its folder) whose files all read."""
    newest = checkpoint_step(checkpoint)
    if newest is None:
        return None
    for step, candidate in reversed(list_checkpoints(checkpoint.parent)):
        if step >= newest:
            continue
        try:
            check_checkpoint_files(candidate)
        except CheckpointError:
            continue
        return candidate
    return None


def _legacy_states(checkpoint: Path) -> list[dict[str, Any]]:
    """The states an older checkpoint kept in `custom_checkpoint_<i>.pkl`, in index order (already checked)."""
    files = sorted(
        (int(match.group(1)), entry)
        for entry in checkpoint.iterdir()
        if (match := _LEGACY_STATE_PATTERN.match(entry.name))
    )
    return [_load_pickle(path) for _, path in files]


@contextlib.contextmanager
def _without_legacy_states(checkpoint: Path) -> Iterator[Path]:
    """The checkpoint as accelerate may load it: without `custom_checkpoint_*.pkl`, which it would unpickle
    with `weights_only=False` (and count against the objects registered, of which there are none now).

    For an older checkpoint that has them, a temporary folder of links to everything else stands in for it.
    """
    names = [entry.name for entry in checkpoint.iterdir()]
    if not any(_LEGACY_STATE_PATTERN.match(name) for name in names):
        yield checkpoint
        return
    view = Path(tempfile.mkdtemp(prefix=f".{checkpoint.name}.resume-", dir=checkpoint.parent))
    try:
        for name in names:
            if not _LEGACY_STATE_PATTERN.match(name):
                os.symlink(checkpoint.absolute() / name, view / name)
        yield view
    finally:
        shutil.rmtree(view)  # removes the links, never what they point to


def find_checkpoint(output_dir: str | os.PathLike, resume_from: str | None) -> Path | None:
    """The checkpoint `--resume_from_checkpoint` names, its files checked; `None` for a fresh start.

    Cheap (no tensor is read), so the scripts call it before loading data and models. A damaged checkpoint
    asked for by name is refused with the name of the newest earlier one that reads whole; with 'latest',
    that one is chosen instead and a warning says so. An unsafe one is always refused.

    Raises:
        CheckpointError: the checkpoint cannot be resumed; the message says which file and what to do.
    """
    checkpoint = resolve_checkpoint(output_dir, resume_from)
    while checkpoint is not None:
        try:
            check_checkpoint_files(checkpoint)
            return checkpoint
        except CheckpointError as err:
            if err.kind != "damaged":
                raise
            earlier = _readable_before(checkpoint)
            if earlier is None or resume_from != "latest":
                hint = (
                    f" The newest earlier checkpoint that reads whole is {earlier}: resume with "
                    f"--resume_from_checkpoint {earlier} (or 'latest', which falls back to it)."
                    if earlier is not None
                    else " No earlier checkpoint in its folder reads whole either."
                )
                raise CheckpointError(f"{err}{hint}", err.kind, err.file) from None
            logger.warning(
                "%s Resuming from %s instead, the newest checkpoint that reads whole.", err, earlier
            )
            checkpoint = earlier
    return None


def load_checkpoint(accelerator, checkpoint: Path, state: CheckpointState) -> None:
    """Load a checkpoint `find_checkpoint` returned: accelerate's state, then the script's own."""
    accelerator.print(f"Resuming from {checkpoint}")
    legacy = _legacy_states(checkpoint)
    with _without_legacy_states(checkpoint) as loadable:
        accelerator.load_state(str(loadable))
    state.load(checkpoint, legacy, device=accelerator.device)
