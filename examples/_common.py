"""Shared by the example scripts: their options, and generating one clip into a WAV file."""

from __future__ import annotations

import argparse
import sys

import torch

from instructaudio_diffusers import write_wav
from instructaudio_diffusers.pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS
from instructaudio_diffusers.pretrained import TINY_RANDOM, ModelNotFoundError, load_pipeline


def parse_args(description: str, default_output: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model",
        default=None,
        help=f"pipeline folder or Hub repo id (default: the shipped demo model); {TINY_RANDOM}: random weights",
    )
    parser.add_argument("--output", default=default_output, help="WAV file to write")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_INFERENCE_STEPS,
        help=f"denoising steps (default {DEFAULT_INFERENCE_STEPS})",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def generate_and_save(args: argparse.Namespace, **call_kwargs) -> None:
    try:
        pipe, is_random = load_pipeline(args.model)
    except ModelNotFoundError as err:
        sys.exit(f"error: {err}")
    if is_random:
        print(
            "Using TINY RANDOM weights: the output is noise-like and only shows that the pipeline runs end to "
            "end; pass --model with a trained pipeline for real audio.",
            file=sys.stderr,
        )
        call_kwargs["audio_length_in_s"] = 1.0  # the toy model places no more than a few seconds
    audio = pipe(
        **call_kwargs, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed)
    ).audios[0]
    write_wav(args.output, audio, pipe.sampling_rate)
    print(f"wrote {args.output}: {len(audio) / pipe.sampling_rate:.2f} s at {pipe.sampling_rate} Hz")
