"""`instructaudio` console command.

    instructaudio generate --instruction "A young woman speaks cheerfully." --text "Hello there!" \\
        --output out.wav [--seconds S] [--steps N] [--guidance G] [--seed K] [--model PATH] [--overwrite] \\
        [--device cpu|cuda|...] [--dtype float32|float16|bfloat16] [--threads N]

Every argument, and the output path, is checked before torch is imported and the model is loaded, so a
mistake costs a fraction of a second rather than a model load and a whole generation.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time

from .pretrained import ModelNotFoundError, load_pipeline, resolve_model

#: Mirror the pipeline's default steps and bounds (`pipelines/`), which cannot be imported without torch.
DEFAULT_STEPS = 16
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
#: `torch.Generator.manual_seed` takes seeds below 2**64.
MAX_SEED = 2**64 - 1
DTYPES = ("float32", "float16", "bfloat16")
OUTPUT_EXTENSIONS = (".wav",)


def _integer(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def _number(low: float, high: float | None = None, *, low_inclusive: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            if high is None:
                bound = f"a finite number {'>=' if low_inclusive else '>'} {low:g}"
            else:
                bound = f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructaudio", description="Instruction-driven speech and music.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate one clip and write it as WAV")
    generate.add_argument("--instruction", required=True, help="what the audio should sound like")
    generate.add_argument("--text", default="", help="words or lyrics; [S0]/[S1] for dialogue; empty = music")
    generate.add_argument("--output", required=True, help="WAV file to write (its folder must exist)")
    generate.add_argument(
        "--overwrite", action="store_true", help="replace --output if it exists (default: refuse)"
    )
    generate.add_argument(
        "--seconds", type=_number(0.0, low_inclusive=False), default=None, help="length; default: predicted"
    )
    generate.add_argument(
        "--steps",
        type=_integer(1, MAX_STEPS),
        default=DEFAULT_STEPS,
        help=f"denoising steps, 1-{MAX_STEPS} (default {DEFAULT_STEPS})",
    )
    generate.add_argument(
        "--guidance",
        type=_number(1.0, MAX_GUIDANCE),
        default=2.0,
        help=f"classifier-free guidance scale, 1 (off) to {MAX_GUIDANCE:g} (default 2)",
    )
    generate.add_argument("--seed", type=_integer(0, MAX_SEED), default=0, help="0 to 2**64-1 (default 0)")
    generate.add_argument(
        "--model", default=None, help="pipeline folder or Hub repo id (default: the demo model)"
    )
    generate.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps, ... (default: cuda when available, else cpu)"
    )
    generate.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="weights and activations (default float32; float16 is for GPUs, bfloat16 for recent CPUs/GPUs)",
    )
    generate.add_argument(
        "--threads",
        type=_integer(1),
        default=None,
        help="CPU threads for torch (default: torch's choice, one per core); on a busy or shared machine 1 "
        "is often fastest",
    )
    generate.add_argument(
        "--stream",
        action="store_true",
        help="write the WAV chunk by chunk as the vocoder produces it, so the file grows while it runs (a run that "
        "fails or is interrupted removes it). Default: write it whole at the end, replacing --output atomically",
    )
    return parser


def _fail(message: str) -> int:
    print(f"instructaudio: error: {message}", file=sys.stderr)
    return 2


def check_output_path(path: str, overwrite: bool) -> str | None:
    """What is wrong with writing the result to `path`, or `None` when it can be written."""
    extension = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        return f"--output {path} is a folder; give a file name such as {os.path.join(path, 'out.wav')}."
    if extension not in OUTPUT_EXTENSIONS:
        shown = f"extension {extension!r}" if extension else "no extension"
        return f"--output {path} has {shown}; the output is written as WAV, so name it *.wav."
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"output folder {folder} does not exist."
    if os.path.exists(path) and not overwrite:
        return f"--output {path} already exists; pass --overwrite to replace it."
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"--output {path} is not writable."
    try:  # os.access answers yes to root everywhere; creating a file there is the real test
        handle, probe = tempfile.mkstemp(prefix=".instructaudio-", suffix=".wav", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write to the output folder {folder}: {err.strerror}."
    return None


def _write_atomically(path: str, audio, sampling_rate: int) -> None:
    """Write through a temporary file in the same folder, so an existing file is replaced whole or not at all."""
    from .audio import write_wav

    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".instructaudio-", suffix=".wav", dir=folder)
    os.close(handle)
    try:
        write_wav(temporary, audio, sampling_rate)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _select_device(requested: str | None):
    """`(torch.device, None)`, or `(None, message)` when the device cannot be used here."""
    import torch

    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), None
    try:
        device = torch.device(requested)
        torch.empty(1, device=device)  # raises for a device this machine or this torch build lacks
    except (RuntimeError, AssertionError, ValueError) as err:
        return None, f"--device {requested} cannot be used here: {str(err).splitlines()[0]}"
    return device, None


def generate(args: argparse.Namespace) -> int:
    problem = check_output_path(args.output, args.overwrite)
    if problem:
        return _fail(problem)
    try:
        model = resolve_model(args.model)
    except ModelNotFoundError as err:
        return _fail(str(err))

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, problem = _select_device(args.device)
    if problem:
        return _fail(problem)
    dtype = getattr(torch, args.dtype)
    try:
        pipe, _ = load_pipeline(model, torch_dtype=dtype)
    except (OSError, ValueError) as err:
        return _fail(f"cannot load a pipeline from {model}: {err}")
    pipe = pipe.to(device)
    if args.seconds is not None:
        shortest, longest = 1.0 / pipe.vae.latent_frame_rate, pipe.max_audio_length_in_s
        if not shortest <= args.seconds <= longest:
            return _fail(
                f"--seconds must be from {shortest:.3f} to {longest:.2f} for this model, got {args.seconds:g}."
            )
    arguments = dict(
        instruction=args.instruction,
        text=args.text,
        audio_length_in_s=args.seconds,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=torch.Generator().manual_seed(args.seed),
    )
    start = time.perf_counter()
    if args.stream:
        return _stream_to_file(pipe, arguments, args.output, start)
    try:
        audio = pipe(**arguments).audios[0]
    except (TypeError, ValueError) as err:  # bad instruction/text: the message already says what is wrong
        return _fail(str(err))
    elapsed = time.perf_counter() - start
    _write_atomically(args.output, audio, pipe.sampling_rate)
    _report(args.output, len(audio) / pipe.sampling_rate, elapsed)
    return 0


def _stream_to_file(pipe, arguments: dict, path: str, start: float) -> int:
    """Write `pipe.stream`'s chunks to `path` as 16-bit PCM WAV (as `write_wav` does) while they arrive."""
    import numpy as np
    import soundfile as sf

    chunks = pipe.stream(**arguments)
    try:
        first = next(chunks)  # the pipeline checks its arguments here, before the file is touched
    except (TypeError, ValueError) as err:
        return _fail(str(err))
    first_chunk_after = time.perf_counter() - start
    samples = 0
    try:
        with sf.SoundFile(path, "w", samplerate=pipe.sampling_rate, channels=1, subtype="PCM_16") as wav:
            for chunk in itertools.chain([first], chunks):
                wav.write(np.clip(chunk, -1.0, 1.0))
                samples += len(chunk)
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)  # a clip cut short must not pass for the whole one
        raise
    _report(path, samples / pipe.sampling_rate, time.perf_counter() - start, first_chunk_after)
    return 0


def _report(path: str, seconds: float, elapsed: float, first_chunk_after: float | None = None) -> None:
    first = "" if first_chunk_after is None else f"; first chunk after {first_chunk_after:.1f} s"
    print(
        f"wrote {path}: {seconds:.2f} s of audio in {elapsed:.1f} s (real-time factor {elapsed / seconds:.2f}{first})"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return generate(args)  # the only command so far; argparse rejects any other


if __name__ == "__main__":
    sys.exit(main())
