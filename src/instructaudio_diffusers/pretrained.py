"""Which pipeline to run, by name: the one loader of the command line, the web demo, the examples and the
evaluation.

A name is a pipeline folder, a Hub repo id, `tiny-random` (the seeded toy pipeline of the tests, built in code:
its output is noise, and it is only ever built when asked for by name), or `None` for the demo model.

The demo model is a folder of the source checkout (`checkpoints/instructaudio-demo`), not part of the package:
an install from a wheel does not have it, and asking for it there says so and names the flag to pass instead,
rather than looking for it next to the installed files. Importing this module does not import torch, so the
command line can check its arguments before loading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The name that builds the toy pipeline of the tests (random weights): tries an interface before any model exists.
TINY_RANDOM = "tiny-random"


def _demo_model_in_checkout() -> str | None:
    package = Path(__file__).resolve().parent
    checkout = package.parent.parent
    if package.parent.name == "src" and (checkout / "setup.py").is_file():
        return str(checkout / "checkpoints" / "instructaudio-demo")
    return None


#: Where the shipped demo pipeline lives in a source checkout; `None` when the package is installed from a wheel,
#: which does not ship it.
DEFAULT_MODEL: str | None = _demo_model_in_checkout()


class ModelNotFoundError(FileNotFoundError):
    """The demo model was asked for (no `--model`) and is not here; the message says which flag to pass instead."""


def resolve_model(model: str | None) -> str:
    """`model`, or the demo model's folder when `model` is `None`.

    Raises:
        ModelNotFoundError: `model` is `None` and the demo model is missing, either because the package is
            installed from a wheel or because this checkout does not hold it (yet).
    """
    if model is not None:
        return model
    instead = (
        "Pass --model with a pipeline folder or Hub repo id, or "
        f"--model {TINY_RANDOM} to try it with random weights (the output is noise)."
    )
    if DEFAULT_MODEL is None:
        raise ModelNotFoundError(
            "The demo model ships with the source checkout of instructaudio-diffusers "
            f"(checkpoints/instructaudio-demo), not with the installed package. {instead}"
        )
    if not os.path.isdir(DEFAULT_MODEL):
        raise ModelNotFoundError(
            f"The demo model is not at {DEFAULT_MODEL} (it is not trained yet, or this checkout lacks it). {instead}"
        )
    return DEFAULT_MODEL


def load_pipeline(model: str | None = None, torch_dtype=None):
    """Load the pipeline named `model` (see the module docstring).

    Args:
        model: A pipeline folder, a Hub repo id, `"tiny-random"`, or `None` for the demo model.
        torch_dtype: Cast every component to this dtype (components rebuilt from installed packages, which do not
            take `torch_dtype`, too).

    Returns:
        `(pipeline, is_random)`; `is_random` is True for `tiny-random`, whose output is noise.

    Raises:
        ModelNotFoundError: `model` is `None` and the demo model is missing.
        OSError, ValueError: the folder or repo holds no loadable pipeline.
    """
    import torch

    from .pipelines import InstructAudioPipeline

    if model == TINY_RANDOM:
        from .testing_utils import get_dummy_components

        pipe, is_random = InstructAudioPipeline(**get_dummy_components()), True
    else:
        kwargs = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
        pipe, is_random = InstructAudioPipeline.from_pretrained(resolve_model(model), **kwargs), False
    if torch_dtype is not None:
        for component in pipe.components.values():
            # ModelMixin.to warns about float32 modules even when a model has none: cast as plain nn.Modules.
            if (
                isinstance(component, torch.nn.Module)
                and getattr(component, "dtype", torch_dtype) != torch_dtype
            ):
                torch.nn.Module.to(component, dtype=torch_dtype)
    return pipe, is_random
