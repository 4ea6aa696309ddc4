"""What `InstructAudioPipeline.from_pretrained` checks in a saved folder, before and after loading.

Before: every component folder `model_index.json` declares is present; each safetensors file holds every byte its
header describes; each model config has only known keys, values of the annotated types, finite and not negative
where the default is not; each model's tensor names and shapes are exactly those its config builds. After:
stored tensors were all used (for classes not checked before) and every weight is finite. Each error names the
component and the file and says what to restore.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import types
import typing
from typing import Any

import torch
from diffusers import ModelMixin

MODEL_INDEX = "model_index.json"
#: The library name `model_index.json` records for this package's components (its root exports them all).
PACKAGE = "instructaudio_diffusers"


def _component_class(entry: Any) -> type | None:
    """The class a normalised index entry names, from already imported modules only (never imports)."""
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0]):
        return None
    module = sys.modules.get(entry[0])
    found = getattr(module, entry[1], None) if module is not None else None
    return found if isinstance(found, type) else None


def read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}): the {what} is damaged; restore or re-save it."
        ) from None


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
        weight_map = read_json(index_path, "shard index").get("weight_map", {})
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
            config = read_json(config_path, f"{name} configuration")
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
