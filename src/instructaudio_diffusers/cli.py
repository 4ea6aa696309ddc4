"""`instructaudio` console command.

    instructaudio generate --instruction "A young woman speaks cheerfully." --text "Hello there!" \\
        --output out.wav [--seconds S] [--steps N] [--guidance G] [--seed K] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

#: Where the shipped demo pipeline lives in a source checkout; `--model` overrides it.
DEFAULT_MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "checkpoints", "instructaudio-demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructaudio", description="Instruction-driven speech and music.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate one clip and write it as WAV")
    generate.add_argument("--instruction", required=True, help="what the audio should sound like")
    generate.add_argument("--text", default="", help="words or lyrics; [S0]/[S1] for dialogue; empty = music")
    generate.add_argument("--output", required=True, help="WAV file to write")
    generate.add_argument("--seconds", type=float, default=None, help="length; default: predicted")
    generate.add_argument("--steps", type=int, default=32, help="denoising steps (default 32)")
    generate.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--model", default=None, help="pipeline folder or Hub repo id (default: the demo model)"
    )
    return parser


def _fail(message: str) -> int:
    print(f"instructaudio: error: {message}", file=sys.stderr)
    return 2


def generate(args: argparse.Namespace) -> int:
    import torch

    from .audio import write_wav
    from .pipelines import InstructAudioPipeline

    model = args.model or os.path.normpath(DEFAULT_MODEL)
    if args.model is None and not os.path.isdir(model):
        return _fail(
            f"the demo model is not at {model}; pass --model with a trained pipeline folder or repo id."
        )
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        return _fail(f"output folder {output_dir} does not exist.")
    try:
        pipe = InstructAudioPipeline.from_pretrained(model)
    except (OSError, ValueError) as err:
        return _fail(f"cannot load a pipeline from {model}: {err}")
    start = time.perf_counter()
    try:
        audio = pipe(
            instruction=args.instruction,
            text=args.text,
            audio_length_in_s=args.seconds,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator().manual_seed(args.seed),
        ).audios[0]
    except ValueError as err:  # bad instruction/text/length: the message already says what is wrong
        return _fail(str(err))
    elapsed = time.perf_counter() - start
    write_wav(args.output, audio, pipe.sampling_rate)
    seconds = len(audio) / pipe.sampling_rate
    print(
        f"wrote {args.output}: {seconds:.2f} s of audio in {elapsed:.1f} s (real-time factor {elapsed / seconds:.2f})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return generate(args)  # the only command so far; argparse rejects any other


if __name__ == "__main__":
    sys.exit(main())
