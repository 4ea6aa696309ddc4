"""Lazy imports of the evaluation extra's heavy dependencies, with an error that says what to install.

The evaluation harness needs librosa, pyworld, pysptk, jiwer, OpenCC, pypinyin, faster-whisper and the Whisper
weight wheels; none of them is a dependency of the package itself (STYLE habit 10, except pypinyin, which
the processor needs anyway), so each is imported on first use only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import sys
import types
from types import ModuleType

EVAL_EXTRA_HINT = "pip install -e '.[eval]' (from a checkout of instructaudio-diffusers)"


def import_optional(module_name: str, purpose: str) -> ModuleType:
    """Import `module_name`, or raise an `ImportError` naming the `eval` extra and what needed it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the Python module `{module_name}`, which could not be imported ({err}). "
            f"Install the evaluation extra: {EVAL_EXTRA_HINT}"
        ) from err


def import_librosa() -> ModuleType:
    return import_optional("librosa", "Tempo, key and timbre analysis")


def _import_with_pkg_resources_stand_in(module_name: str, purpose: str) -> ModuleType:
    """Import a module whose release still imports `pkg_resources`, which setuptools >= 81 no longer ships.

    pyworld 0.3.5 reads its version through `pkg_resources.get_distribution`, pysptk 1.0.1 imports it for
    `resource_filename` (used only to locate its bundled example clip). When that is the only failure, a
    stand-in answering both from `importlib` is registered for the duration of the import and removed
    afterwards, so nothing else in the process ever sees it.
    """
    try:
        return import_optional(module_name, purpose)
    except ImportError as err:
        if not isinstance(err.__cause__, ModuleNotFoundError) or err.__cause__.name != "pkg_resources":
            raise
    stand_in = types.ModuleType("pkg_resources")
    stand_in.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
    stand_in.resource_filename = lambda package, resource: str(importlib.resources.files(package) / resource)
    sys.modules["pkg_resources"] = stand_in
    try:
        for name in [
            name for name in sys.modules if name == module_name or name.startswith(module_name + ".")
        ]:
            del sys.modules[name]  # half-initialised modules from the failed attempt
        return import_optional(module_name, purpose)
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]


def import_pyworld() -> ModuleType:
    return _import_with_pkg_resources_stand_in("pyworld", "F0 and spectral-envelope analysis")


def import_pysptk() -> ModuleType:
    return _import_with_pkg_resources_stand_in("pysptk", "Mel-cepstral distortion (SPTK's sp2mc)")


def import_jiwer() -> ModuleType:
    return import_optional("jiwer", "Word and character error rates")


def import_opencc() -> ModuleType:
    return import_optional("opencc", "Traditional-to-simplified conversion of Mandarin transcripts")
