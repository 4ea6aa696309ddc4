"""Time and peak memory of one denoising step of the InstructAudio transformer against the audio length, and a check
that the masked attention never materialises a sequence x sequence matrix.

What is measured: one `forward` of the demo configuration (or `--config`) on a classifier-free-guidance batch, as
the pipeline runs it at every step: batch 2, the conditional sample with `--instruction-len` instruction tokens and
`--phonemes-per-second` phonemes per second of audio, the unconditional one with instruction and phonemes dropped
(all-False masks, as the pipeline builds it), so the text stream carries padding and the boolean key-padding mask is
exercised; the text stream (`encode_text_condition`, with the phonemes spread evenly over the frames for models that
place them by durations) and the joint condition (`prepare_joint_condition`) are built once per length, as the
pipeline builds them once per generation. Audio lengths are converted
to latent frames at 43 per second. Timing: interleaved rounds over all lengths, median; peak memory: tensor bytes
above weights and inputs (`common.py`), with the SDPA kernel(s) that ran.

The attention check: with a memory-efficient SDPA kernel the peak grows about linearly with the joint sequence
length N (the growth exponent between consecutive lengths is printed: ~1 linear, ~2 quadratic); a materialised
attention matrix alone would take `batch x heads x N x N` elements (4 bytes each in fp32), also printed. For
contrast, the memory of the math SDPA backend (which does materialise it) is measured up to `--math-max-seconds`.

The demo configuration accepts up to 2048 latent frames (47.6 s); this benchmark raises `max_audio_frames` to the
longest length asked for, which changes no weight.

    python benchmarks/benchmark_scaling.py --threads 1 --output scaling_benchmark.json
    python benchmarks/benchmark_scaling.py --device cuda --dtype bf16 --seconds 5,10,30,60,120,240
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmark_transformer import instructaudio_forward_flops, randomize_zero_parameters
from common import (
    MIB,
    add_common_arguments,
    format_table,
    load_average,
    machine_description,
    profile_call,
    setup,
    summarize,
    time_interleaved,
    write_json,
)
from instructaudio_diffusers import InstructAudioTransformerModel
from instructaudio_diffusers.pipelines.pipeline_instructaudio import fit_durations

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo" / "transformer" / "config.json"
LATENT_FRAMES_PER_SECOND = 43


def cfg_inputs(model, config: dict, seconds: float, args, device, dtype, generator) -> dict:
    """Latents, timestep, and the precomputed text stream and joint condition of a CFG batch for `seconds` of
    audio."""
    frames = round(seconds * LATENT_FRAMES_PER_SECOND)
    phonemes = round(seconds * args.phonemes_per_second)
    instruction_len = args.instruction_len
    conditional = torch.tensor([True, False], device=device)
    with torch.no_grad():
        text_condition = model.encode_text_condition(
            torch.randn(2, instruction_len, config["instruction_dim"], generator=generator).to(device, dtype),
            conditional[:, None].expand(2, instruction_len),
            torch.randint(1, config["phoneme_vocab_size"], (2, phonemes), generator=generator).to(device),
            conditional[:, None].expand(2, phonemes),
        )
        if model.phoneme_alignment == "durations":
            phoneme_mask = conditional[:, None].expand(2, phonemes)
            durations = fit_durations(torch.ones(2, phonemes), phoneme_mask, torch.full((2,), frames))
            text_condition = text_condition.with_durations(durations.to(device))
        audio_mask = torch.ones(2, frames, dtype=torch.bool, device=device)
        joint_condition = model.prepare_joint_condition(text_condition, audio_mask)
    return {
        "hidden_states": torch.randn(2, config["in_channels"], frames, generator=generator).to(device, dtype),
        "timestep": torch.full((2,), 500.0, device=device),
        "text_condition": text_condition,
        "joint_condition": joint_condition,
    }


def step_fn(model, inputs):
    def run():
        with torch.no_grad():
            return model(**inputs, return_dict=False)[0]

    return run


def growth_exponents(sizes: list[int], values: list[float]) -> list[float | None]:
    """`log(v[i] / v[i-1]) / log(n[i] / n[i-1])` for consecutive points (None for the first)."""
    exponents = [None]
    for (n0, v0), (n1, v1) in zip(zip(sizes, values), zip(sizes[1:], values[1:])):
        exponents.append(math.log(v1 / v0) / math.log(n1 / n0) if v0 > 0 and v1 > 0 else None)
    return exponents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=5, warmup=1)
    parser.add_argument("--seconds", default="5,10,30,60,120", help="audio lengths, comma separated")
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="transformer config.json (default: demo)")
    parser.add_argument("--instruction-len", type=int, default=32)
    parser.add_argument(
        "--phonemes-per-second", type=float, default=13.7, help="conditional sample's phonemes"
    )
    parser.add_argument(
        "--math-max-seconds",
        type=float,
        default=30,
        help="also measure the memory of the math SDPA backend up to this length (0: never)",
    )
    args = parser.parse_args()
    device, dtype = setup(args)
    diffusers_logging.set_verbosity_error()
    seconds = [float(value) for value in args.seconds.split(",")]

    config = {k: v for k, v in json.loads(Path(args.config).read_text()).items() if not k.startswith("_")}
    config["max_audio_frames"] = max(
        config["max_audio_frames"], round(max(seconds) * LATENT_FRAMES_PER_SECOND)
    )
    model = InstructAudioTransformerModel(**config).eval()
    generator = torch.Generator().manual_seed(args.seed)
    randomize_zero_parameters(model, generator)
    model.to(device, dtype)

    inputs = {length: cfg_inputs(model, config, length, args, device, dtype, generator) for length in seconds}
    steps = {f"{length:g} s": step_fn(model, inputs[length]) for length in seconds}

    machine = machine_description(device, dtype)
    print(machine)
    load_before = load_average()
    times = time_interleaved(steps, device, args.repeats, args.warmup)
    load_after = load_average()

    results = []
    for length, (name, step) in zip(seconds, steps.items()):
        frames = inputs[length]["hidden_states"].shape[-1]
        text_len = inputs[length]["text_condition"].hidden_states.shape[1]
        joint_len = frames + text_len
        peak, kernels = profile_call(step, device)
        math_peak = None
        if length <= args.math_max_seconds:
            with sdpa_kernel(SDPBackend.MATH):
                math_peak = profile_call(step, device)[0]
        matrix_bytes = 2 * config["num_attention_heads"] * joint_len**2 * dtype.itemsize
        flops = instructaudio_forward_flops(
            config, 2, frames, args.instruction_len, text_len - 1 - args.instruction_len, text_encoder=False
        )["total"]
        timing = summarize(times[name])
        results.append(
            {
                "seconds": length,
                "latent_frames": frames,
                "text_len": text_len,
                "joint_len": joint_len,
                "step": timing,
                "flops": flops,
                "gflops_per_s": flops / timing["median_ms"] / 1e6,
                "peak_memory_mib": peak / MIB,
                "peak_memory_math_sdpa_mib": None if math_peak is None else math_peak / MIB,
                "attention_matrix_mib": matrix_bytes / MIB,
                "attention_kernels": kernels,
            }
        )

    joint = [result["joint_len"] for result in results]
    time_growth = growth_exponents(joint, [result["step"]["median_ms"] for result in results])
    memory_growth = growth_exponents(joint, [result["peak_memory_mib"] for result in results])
    for result, time_exponent, memory_exponent in zip(results, time_growth, memory_growth):
        result["time_growth_exponent"], result["memory_growth_exponent"] = time_exponent, memory_exponent

    print(
        f"demo transformer, one CFG step (batch 2, text precomputed); load {load_before:.2f} -> {load_after:.2f}; "
        f"median of {args.repeats} interleaved rounds"
    )
    header = [
        "audio s",
        "frames",
        "joint N",
        "step ms",
        "min ms",
        "ms/frame",
        "t~N^x",
        "GFLOP",
        "GFLOP/s",
        "peak MiB",
    ]
    header += ["m~N^x", "N x N attn MiB", "peak MiB, math SDPA"]
    table = [
        [
            f"{r['seconds']:g}",
            r["latent_frames"],
            r["joint_len"],
            r["step"]["median_ms"],
            r["step"]["min_ms"],
            r["step"]["median_ms"] / r["latent_frames"],
            r["time_growth_exponent"],
            r["flops"] / 1e9,
            r["gflops_per_s"],
            r["peak_memory_mib"],
            r["memory_growth_exponent"],
            r["attention_matrix_mib"],
            r["peak_memory_math_sdpa_mib"],
        ]
        for r in results
    ]
    print(format_table(header, table))
    kernels = sorted({kernel for result in results for kernel in result["attention_kernels"]})
    print(f"SDPA kernels run with the key-padding mask: {', '.join(kernels) or 'none seen'}")
    print(
        "x: growth exponent against the joint length N between consecutive rows (1 = linear, 2 = quadratic); "
        "'N x N attn MiB': one attention matrix over the joint sequence, batch x heads x N x N elements"
    )
    write_json(
        args.output,
        {
            "benchmark": "scaling",
            "machine": machine,
            "args": vars(args),
            "config": config,
            "load_average": [load_before, load_after],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
