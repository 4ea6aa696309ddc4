"""The vocoder that renders validation audio during training: a converted or trained model folder, or
Griffin-Lim from the mel settings, checked against the mel front end it must invert."""

from __future__ import annotations

import json
import os

import torch

from instructaudio_diffusers.audio import MelSettings


def load_vocoder(vocoder_path: str | os.PathLike | None, mel_settings: MelSettings, device: torch.device):
    """A vocoder for validation audio: the model at `vocoder_path`, or Griffin-Lim from the mel settings.

    The class is read from the folder's `config.json`: transformers' `SpeechT5HifiGan` (what
    `instructaudio-convert-hifigan` writes by default), `HifiGanVocoder` or `GriffinLimVocoder`.
    """
    from instructaudio_diffusers import GriffinLimVocoder, HifiGanVocoder
    from instructaudio_diffusers.models import check_vocoder_mel_settings

    if vocoder_path is None:
        return GriffinLimVocoder(**mel_settings.as_dict()).to(device).eval()
    config_path = os.path.join(vocoder_path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"--vocoder {vocoder_path}: no {config_path}; convert one with instructaudio-convert-hifigan."
        )
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    class_name = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if class_name == "SpeechT5HifiGan":
        from transformers import SpeechT5HifiGan as vocoder_class
    else:
        vocoder_class = {"HifiGanVocoder": HifiGanVocoder, "GriffinLimVocoder": GriffinLimVocoder}.get(
            class_name
        )
    if vocoder_class is None:
        raise ValueError(
            f"{vocoder_path} holds a {class_name!r}; expected SpeechT5HifiGan, HifiGanVocoder or GriffinLimVocoder."
        )
    vocoder = vocoder_class.from_pretrained(vocoder_path).to(device).eval()
    check_vocoder_mel_settings(vocoder, mel_settings, source=f"the VAE (--vocoder {vocoder_path})")
    return vocoder
