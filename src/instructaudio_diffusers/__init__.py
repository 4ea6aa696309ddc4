"""instructaudio-diffusers: instruction-driven speech, dialogue and music generation (InstructAudio)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# Public names and the module each comes from. They are imported on first access (PEP 562), so that the
# `instructaudio` command, whose module lives in this package, can answer `--help` and refuse bad arguments
# without first importing torch, diffusers and transformers (seconds on a small machine).
#
# diffusers loads a saved component by importing the module named in model_index.json and looking up its
# loadable base classes on it (`getattr(module, "ModelMixin", None)`, ...); re-exporting those keeps the
# package root loadable too, and attribute access makes them resolve here like any other name.
_EXPORTS = {
    "ModelMixin": "diffusers",
    "PreTrainedTokenizer": "transformers",
    "MelSpectrogram": ".audio",
    "load_audio": ".audio",
    "write_wav": ".audio",
    "AutoencoderKLMel": ".models",
    "GriffinLimVocoder": ".models",
    "HifiGanVocoder": ".models",
    "InstructAudioTransformerModel": ".models",
    "InstructAudioPipeline": ".pipelines",
    "InstructAudioProcessor": ".processing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from diffusers import ModelMixin
    from transformers import PreTrainedTokenizer

    from .audio import MelSpectrogram, load_audio, write_wav
    from .models import AutoencoderKLMel, GriffinLimVocoder, HifiGanVocoder, InstructAudioTransformerModel
    from .pipelines import InstructAudioPipeline
    from .processing import InstructAudioProcessor
