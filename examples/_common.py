"""Shared by the example scripts: load a pipeline, or tiny random weights when no model is given."""

from __future__ import annotations

import argparse
import sys

import torch

from instructaudio_diffusers import InstructAudioPipeline, write_wav


def parse_args(description: str, default_output: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model", default=None, help="pipeline folder or Hub repo id (default: tiny random weights)"
    )
    parser.add_argument("--output", default=default_output, help="WAV file to write")
    parser.add_argument("--steps", type=int, default=32, help="denoising steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_pipeline(model: str | None) -> InstructAudioPipeline:
    if model is None:
        from instructaudio_diffusers.testing_utils import get_dummy_components

        print(
            "No --model given: using TINY RANDOM weights. The output is noise-like and only shows that the "
            "pipeline runs end to end; pass --model with a trained pipeline for real audio.",
            file=sys.stderr,
        )
        return InstructAudioPipeline(**get_dummy_components())
    return InstructAudioPipeline.from_pretrained(model)


def generate_and_save(args: argparse.Namespace, **call_kwargs) -> None:
    pipe = load_pipeline(args.model)
    if args.model is None:
        call_kwargs.setdefault("audio_length_in_s", 1.0)
    audio = pipe(
        **call_kwargs, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed)
    ).audios[0]
    write_wav(args.output, audio, pipe.sampling_rate)
    print(f"wrote {args.output}: {len(audio) / pipe.sampling_rate:.2f} s at {pipe.sampling_rate} Hz")
