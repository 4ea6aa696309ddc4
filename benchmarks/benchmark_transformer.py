"""InstructAudio's MM-DiT against diffusers' own MM-DiT (`SD3Transformer2DModel`) at the same size, and the fraction
of the machine's dense matmul rate that each reaches.

What is measured, per size (width, heads, joint layers):

- `SD3Transformer2DModel` with the same width, heads and number of joint blocks, QK-RMSNorm (as ours), patch size 1
  over an `H x W = latent_frames` latent grid with our latent channels, so its image tokens are our audio frames, and
  `1 + instruction_len + phoneme_len` text tokens of width `instruction_dim` (our register + instruction + phoneme
  tokens); `pooled_projection_dim` is small (32).
- Ours in several variants (see `VARIANTS`): "matched" (linear GELU MLP of ratio 4 like SD3, no single blocks, no
  phoneme-encoder layers: the phonemes are embedded and projected, like SD3's context embedder), the same with the
  demo's 2-layer phoneme encoder, one denoising step of that model with the text stream precomputed (what the
  pipeline runs per step), and, at the demo width, the demo configuration as shipped.
- For each: forward under `no_grad` and forward + backward (of `mean(output**2)`), fp32 by default, batch 2 (a
  classifier-free-guidance batch) of equal-length samples, random weights (zero-initialised layers of ours are
  re-randomised so no branch is trivially zero). Timing: interleaved rounds over all candidates of a size, median.
  Peak memory: tensor bytes above the weights and inputs (see `common.py`).
- FLOPs: counted analytically for one forward (`instructaudio_forward_flops`, `sd3_forward_flops`: every matmul,
  convolutions as `kernel_size` x matmuls, attention `QK^T` and `AV` over the actual joint sequence) and checked
  against `torch.utils.flop_counter` (run once with the math SDPA backend, since the counter does not see the CPU
  flash kernel); forward + backward uses that counter. The machine's rate is the median of large `torch.mm`
  calls, measured in the same run; the table prints achieved GFLOP/s and the fraction of that rate.

    python benchmarks/benchmark_transformer.py --threads 1 --output transformer_benchmark.json
    python benchmarks/benchmark_transformer.py --device cuda --dtype bf16 --repeats 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel
from diffusers.utils import logging as diffusers_logging

from common import (
    MIB,
    add_common_arguments,
    counted_flops,
    format_table,
    load_average,
    machine_description,
    matmul_rate,
    paired_ratio,
    profile_call,
    ratio,
    setup,
    summarize,
    time_interleaved,
    write_json,
)
from instructaudio_diffusers import InstructAudioTransformerModel

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo" / "transformer" / "config.json"
POOLED_PROJECTION_DIM = 32

# Ours, as overrides of the demo configuration; "step" reuses the "+ phoneme encoder" model with the text stream
# precomputed, "demo as shipped" runs only at the demo's own width.
MATCHED = {"num_single_layers": 0, "ff_kernel_size": 1, "ff_mult": 4.0}
VARIANTS = {
    "matched": {**MATCHED, "phoneme_encoder_layers": 0},
    "matched + phoneme encoder": MATCHED,
    "matched, step (text precomputed)": MATCHED,
    "demo as shipped": None,
}

ONLY_OURS = [
    "key-padding masks over both streams (SD3 attends to every token)",
    "aligned RoPE with per-sample positions in every attention (SD3 adds a fixed 2-D sin-cos table once)",
    "phoneme encoder (a small transformer) in the text path, in the '+ phoneme encoder' and demo rows",
    "single (audio-only) blocks and a convolutional (kernel 3) FFN, in the demo row only",
    "instruction RMSNorm and a learned register token; packing of valid text tokens",
]
ONLY_THEIRS = [
    "text queries, and attention for them, in the last (context-pre-only) block, whose text output is discarded",
    "a pooled-text embedding added to the timestep embedding",
]


def demo_config() -> dict:
    return {
        key: value for key, value in json.loads(DEMO_CONFIG.read_text()).items() if not key.startswith("_")
    }


def _mm(rows: int, inner: int, cols: int) -> int:
    return 2 * rows * inner * cols


def instructaudio_forward_flops(
    config: dict,
    batch_size: int,
    latent_frames: int,
    instruction_len: int,
    phoneme_len: int,
    text_encoder: bool,
    joint_condition_built: bool = False,
) -> dict[str, int]:
    """
    FLOPs of one `InstructAudioTransformerModel.forward` (matmuls, convolutions, attention; elementwise work, norms
    and RoPE excluded), by part. `text_encoder=False` leaves out the text stream (precomputed), and
    `joint_condition_built=True` the placement of the phonemes on the frames (a one-hot `frames x text` product and
    a projection, for `phoneme_alignment` other than "none"), which the pipeline builds once per generation. The
    text stream is `1 + instruction_len + phoneme_len` tokens (no padding).
    """
    b, t, c = batch_size, latent_frames, config["in_channels"]
    d, k = config["hidden_size"], config["ff_kernel_size"]
    ff = int(d * config["ff_mult"])
    s = 1 + instruction_len + phoneme_len
    n = s + t
    parts = dict.fromkeys(["text encoder", "embeddings", "adaln", "projections", "attention", "ffn"], 0)
    if text_encoder:
        p, pk, pf = (
            config[f"phoneme_encoder_{name}"] for name in ("hidden_size", "ff_kernel_size", "ff_size")
        )
        layer = 4 * _mm(b * phoneme_len, p, p) + 4 * b * phoneme_len**2 * p
        layer += _mm(b * phoneme_len, p * pk, pf) + _mm(b * phoneme_len, pf * pk, p)
        parts["text encoder"] = (
            config["phoneme_encoder_layers"] * layer
            + _mm(b * phoneme_len, p, d)
            + _mm(b * instruction_len, config["instruction_dim"], d)
        )
        if config.get("pooled_instruction_conditioning"):
            parts["text encoder"] += _mm(b, config["instruction_dim"], d) + _mm(b, d, d)
    parts["embeddings"] = _mm(b, config["timestep_embedding_dim"], d) + _mm(b, d, d) + _mm(b * t, c, d)
    if not joint_condition_built and config.get("phoneme_alignment", "none") != "none":
        parts["embeddings"] += _mm(b * t, s, d) + _mm(b * t, d, d)

    def ffn(tokens: int) -> int:
        return _mm(b * tokens, d * k, ff) + _mm(b * tokens, ff * k, d)

    for index in range(config["num_joint_layers"]):
        last = index == config["num_joint_layers"] - 1
        parts["adaln"] += _mm(b, d, 6 * d) + _mm(b, d, (2 if last else 6) * d)
        parts["projections"] += _mm(b * t, d, d) * 4 + _mm(b * s, d, d) * (2 if last else 4)
        parts["attention"] += 4 * b * (t if last else n) * n * d
        parts["ffn"] += ffn(t) + (0 if last else ffn(s))
    for _ in range(config["num_single_layers"]):
        parts["adaln"] += _mm(b, d, 6 * d)
        parts["projections"] += _mm(b * t, d, d) * 4
        parts["attention"] += 4 * b * t * t * d
        parts["ffn"] += ffn(t)
    parts["adaln"] += _mm(b, d, 2 * d)
    parts["embeddings"] += _mm(b * t, d, c)
    parts["total"] = sum(parts.values())
    return parts


def sd3_forward_flops(config: dict, batch_size: int, image_tokens: int, text_tokens: int) -> dict[str, int]:
    """FLOPs of one `SD3Transformer2DModel.forward` (matmuls, convolutions, attention), by part; patch size 1."""
    b, t, s = batch_size, image_tokens, text_tokens
    n, c = s + t, config["in_channels"]
    d = config["num_attention_heads"] * config["attention_head_dim"]
    parts = dict.fromkeys(["text encoder", "embeddings", "adaln", "projections", "attention", "ffn"], 0)
    parts["text encoder"] = _mm(b * s, config["joint_attention_dim"], d)
    parts["embeddings"] = _mm(b * t, c, d) + _mm(b, 256, d) + _mm(b, d, d)
    parts["embeddings"] += _mm(b, config["pooled_projection_dim"], d) + _mm(b, d, d) + _mm(b * t, d, c)
    for index in range(config["num_layers"]):
        last = index == config["num_layers"] - 1
        parts["adaln"] += _mm(b, d, 6 * d) + _mm(b, d, (2 if last else 6) * d)
        parts["projections"] += _mm(b * t, d, d) * 4 + _mm(b * s, d, d) * (3 if last else 4)
        parts["attention"] += 4 * b * n * n * d
        parts["ffn"] += 2 * _mm(b * t, d, 4 * d) + (0 if last else 2 * _mm(b * s, d, 4 * d))
    parts["adaln"] += _mm(b, d, 2 * d)
    parts["total"] = sum(parts.values())
    return parts


def latent_grid(tokens: int) -> tuple[int, int]:
    """`(H, W)` with `H * W == tokens` and H the largest divisor not above sqrt(tokens)."""
    height = max(h for h in range(1, int(tokens**0.5) + 1) if tokens % h == 0)
    return height, tokens // height


def randomize_zero_parameters(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised weights (AdaLN-Zero, output layer) small random values, as any trained model has."""
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))


def build_candidates(args, width: int, heads: int, device, dtype) -> tuple[dict, dict]:
    """Models, inputs and FLOP counts for one size. Returns `(candidates, flops)` keyed by row name."""
    generator = torch.Generator().manual_seed(args.seed)
    b, t, l1, l2 = args.batch_size, args.latent_frames, args.instruction_len, args.phoneme_len
    base = {
        **demo_config(),
        "hidden_size": width,
        "num_attention_heads": heads,
        "num_joint_layers": args.joint_layers,
    }
    base["max_audio_frames"] = max(base["max_audio_frames"], t)

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    ones = {"dtype": torch.bool, "device": device}
    ours_inputs = {
        "hidden_states": rand(b, base["in_channels"], t),
        "timestep": torch.rand(b, generator=generator).to(device) * 1000,
        "encoder_hidden_states": rand(b, l1, base["instruction_dim"]),
        "encoder_attention_mask": torch.ones(b, l1, **ones),
        "phoneme_ids": torch.randint(1, base["phoneme_vocab_size"], (b, l2), generator=generator).to(device),
        "phoneme_attention_mask": torch.ones(b, l2, **ones),
        "audio_attention_mask": torch.ones(b, t, **ones),
    }
    # For `phoneme_alignment="durations"` (the demo's), each phoneme's frames: as even as `t` allows, summing to it.
    durations = torch.full((b, l2), t // l2, device=device)
    durations[:, : t % l2] += 1
    candidates, flops, models = {}, {}, {}
    for name, overrides in VARIANTS.items():
        if overrides is None:
            if width != demo_config()["hidden_size"] or heads != demo_config()["num_attention_heads"]:
                continue
            config = {**demo_config(), "max_audio_frames": base["max_audio_frames"]}
        else:
            config = {**base, **overrides}
        key = json.dumps(config, sort_keys=True)
        if key not in models:
            torch.manual_seed(args.seed)
            models[key] = InstructAudioTransformerModel(**config).eval()
            randomize_zero_parameters(models[key], generator)
            models[key].to(device, dtype)
        model = models[key]
        step = "step" in name
        placed = {"phoneme_durations": durations} if config["phoneme_alignment"] == "durations" else {}
        if step:
            with torch.no_grad():
                condition = model.encode_text_condition(
                    *(
                        ours_inputs[k]
                        for k in ("encoder_hidden_states", "encoder_attention_mask", "phoneme_ids")
                    ),
                    **placed,
                )
            inputs = {k: ours_inputs[k] for k in ("hidden_states", "timestep", "audio_attention_mask")}
            inputs["text_condition"] = condition
        else:
            inputs = {**ours_inputs, **placed}
        candidates[name] = (model, inputs, not step)
        flops[name] = instructaudio_forward_flops(config, b, t, l1, l2, text_encoder=not step)

    height, grid_width = latent_grid(t)
    sd3_config = {
        "sample_size": max(height, grid_width),
        "patch_size": 1,
        "in_channels": base["in_channels"],
        "out_channels": base["in_channels"],
        "num_layers": args.joint_layers,
        "attention_head_dim": width // heads,
        "num_attention_heads": heads,
        "joint_attention_dim": base["instruction_dim"],
        "caption_projection_dim": width,
        "pooled_projection_dim": POOLED_PROJECTION_DIM,
        "pos_embed_max_size": max(height, grid_width),
        "qk_norm": "rms_norm",
    }
    torch.manual_seed(args.seed)
    sd3 = SD3Transformer2DModel(**sd3_config).eval().to(device, dtype)
    sd3_inputs = {
        "hidden_states": rand(b, base["in_channels"], height, grid_width),
        "encoder_hidden_states": rand(b, 1 + l1 + l2, base["instruction_dim"]),
        "pooled_projections": rand(b, POOLED_PROJECTION_DIM),
        "timestep": ours_inputs["timestep"],
    }
    candidates["SD3Transformer2DModel"] = (sd3, sd3_inputs, True)
    flops["SD3Transformer2DModel"] = sd3_forward_flops(sd3_config, b, t, 1 + l1 + l2)
    return candidates, flops


def forward_fn(model, inputs):
    def run():
        with torch.no_grad():
            return model(**inputs, return_dict=False)[0]

    return run


def forward_backward_fn(model, inputs):
    def run():
        model.zero_grad(set_to_none=True)
        model(**inputs, return_dict=False)[0].float().square().mean().backward()

    return run


def measure_size(args, width: int, heads: int, device, dtype) -> dict:
    candidates, flops = build_candidates(args, width, heads, device, dtype)
    forward = {name: forward_fn(model, inputs) for name, (model, inputs, _) in candidates.items()}
    backward = {
        name: forward_backward_fn(model, inputs)
        for name, (model, inputs, trains) in candidates.items()
        if trains
    }
    load_before = load_average()
    forward_times = time_interleaved(forward, device, args.repeats, args.warmup)
    backward_times = (
        time_interleaved(backward, device, args.repeats, args.warmup) if not args.forward_only else {}
    )
    load_after = load_average()
    rows = {}
    for name, (model, _, _) in candidates.items():
        model.zero_grad(set_to_none=True)
        peak, kernels = profile_call(forward[name], device)
        row = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "flops_forward": flops[name],
            "forward": summarize(forward_times[name]),
            "forward_vs_sd3": paired_ratio(forward_times[name], forward_times["SD3Transformer2DModel"]),
            "forward_vs_sd3_min": min(forward_times[name]) / min(forward_times["SD3Transformer2DModel"]),
            "peak_memory_forward_mib": peak / MIB,
            "attention_kernels": kernels,
        }
        if args.check_flops:
            row["counted_flops_forward"] = counted_flops(forward[name])
        if name in backward_times:
            model.zero_grad(set_to_none=True)
            row["forward_backward"] = summarize(backward_times[name])
            row["forward_backward_vs_sd3"] = paired_ratio(
                backward_times[name], backward_times["SD3Transformer2DModel"]
            )
            row["forward_backward_vs_sd3_min"] = min(backward_times[name]) / min(
                backward_times["SD3Transformer2DModel"]
            )
            row["peak_memory_forward_backward_mib"] = profile_call(backward[name], device)[0] / MIB
            if args.check_flops:
                row["counted_flops_forward_backward"] = counted_flops(backward[name])
            model.zero_grad(set_to_none=True)
        rows[name] = row
    return {"width": width, "heads": heads, "load_average": [load_before, load_after], "rows": rows}


def print_size(result: dict, args, peak_gflops: float) -> None:
    rows, theirs = result["rows"], result["rows"]["SD3Transformer2DModel"]
    print(
        f"\n== width {result['width']}, {result['heads']} heads, {args.joint_layers} joint layers; batch "
        f"{args.batch_size}, {args.latent_frames} audio frames, {1 + args.instruction_len + args.phoneme_len} text "
        f"tokens; load {result['load_average'][0]:.2f} -> {result['load_average'][1]:.2f}"
    )
    header = ["model", "params M", "fwd ms", "/SD3", "min /SD3", "fwd+bwd ms", "/SD3", "min /SD3"]
    header += ["peak fwd MiB", "/SD3", "peak f+b MiB", "/SD3"]
    table = []
    for name, row in rows.items():
        fb = row.get("forward_backward", {}).get("median_ms")
        peak_fb = row.get("peak_memory_forward_backward_mib")
        table.append(
            [
                name,
                row["parameters"] / 1e6,
                row["forward"]["median_ms"],
                row["forward_vs_sd3"],
                row["forward_vs_sd3_min"],
                fb,
                row.get("forward_backward_vs_sd3"),
                row.get("forward_backward_vs_sd3_min"),
                row["peak_memory_forward_mib"],
                ratio(row["peak_memory_forward_mib"], theirs["peak_memory_forward_mib"]),
                peak_fb,
                ratio(peak_fb, theirs.get("peak_memory_forward_backward_mib")),
            ]
        )
    print(format_table(header, table))

    header = [
        "model",
        "fwd GFLOP",
        "counted",
        "fwd GFLOP/s",
        "of mm peak",
        "f+b GFLOP",
        "f+b GFLOP/s",
        "of mm peak",
    ]
    table = []
    for name, row in rows.items():
        fwd_flops = row["flops_forward"]["total"]
        achieved = fwd_flops / row["forward"]["median_ms"] / 1e6
        fb_flops = row.get("counted_flops_forward_backward")
        fb_achieved = (
            fb_flops / row["forward_backward"]["median_ms"] / 1e6
            if fb_flops and "forward_backward" in row
            else None
        )
        table.append(
            [
                name,
                fwd_flops / 1e9,
                row["counted_flops_forward"] / 1e9 if "counted_flops_forward" in row else None,
                achieved,
                achieved / peak_gflops,
                fb_flops / 1e9 if fb_flops else None,
                fb_achieved,
                ratio(fb_achieved, peak_gflops),
            ]
        )
    print(format_table(header, table))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'256x4,512x8' -> [(256, 4), (512, 8)] (width x heads)."""
    return [tuple(int(value) for value in item.split("x")) for item in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=9, warmup=1)
    parser.add_argument("--sizes", default="256x4,512x8", help="width x heads, comma separated")
    parser.add_argument("--joint-layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2, help="2 = one classifier-free-guidance batch")
    parser.add_argument("--latent-frames", type=int, default=430, help="430 = 10 s at 43 latent frames/s")
    parser.add_argument("--instruction-len", type=int, default=32)
    parser.add_argument("--phoneme-len", type=int, default=137, help="with the register: 170 text tokens")
    parser.add_argument("--forward-only", action="store_true", help="skip forward + backward")
    parser.add_argument(
        "--no-check-flops", dest="check_flops", action="store_false", help="skip the FLOP counter"
    )
    parser.add_argument("--matmul-size", type=int, default=None, help="default: 2048 on CPU, 8192 on CUDA")
    args = parser.parse_args()
    device, dtype = setup(args)
    # `ModelMixin.to(dtype)` warns about fp32 modules that neither model has.
    diffusers_logging.set_verbosity_error()

    machine = machine_description(device, dtype)
    print(machine)
    matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    rate_before = matmul_rate(device, dtype, matmul_size)
    sizes = [measure_size(args, width, heads, device, dtype) for width, heads in parse_sizes(args.sizes)]
    rate_after = matmul_rate(device, dtype, matmul_size)
    peak = max(rate_before["median_gflops"], rate_after["median_gflops"])
    print(
        f"dense matmul rate ({matmul_size}^3 torch.mm, median of 5): {rate_before['median_gflops']:.1f} GFLOP/s "
        f"before, {rate_after['median_gflops']:.1f} after; the higher is the reference below"
    )
    for result in sizes:
        print_size(result, args, peak)
    kernels = sorted(
        {k for result in sizes for row in result["rows"].values() for k in row["attention_kernels"]}
    )
    print(f"\nSDPA kernels run (all rows): {', '.join(kernels)}")
    print(
        "time: median of the rounds; '/SD3': median over rounds of ours / SD3 in the same round; 'min /SD3': best "
        "ours / best SD3 (the least disturbed calls, useful under load); memory: ours / SD3. Below 1 = ours faster "
        "or smaller.\nOurs does, SD3 does not:"
    )
    print("\n".join(f"  - {note}" for note in ONLY_OURS))
    print("SD3 does, ours does not:")
    print("\n".join(f"  - {note}" for note in ONLY_THEIRS))
    write_json(
        args.output,
        {
            "benchmark": "transformer",
            "machine": machine,
            "args": vars(args),
            "matmul_rate": [rate_before, rate_after],
            "sizes": sizes,
            "only_ours": ONLY_OURS,
            "only_theirs": ONLY_THEIRS,
        },
    )


if __name__ == "__main__":
    main()
