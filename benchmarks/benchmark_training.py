"""Training throughput with frame-budget dynamic batching against fixed-size padded batches.

Same data, same model, same training step (`instructaudio_objective.flow_matching_losses`, backward, gradient
clipping, AdamW), a fixed number of optimizer steps per mode and round, modes interleaved round by round
(the order rotated every round) so that load from other processes lands on both alike.

- Data: `--num_clips` synthetic clips of 2-20 s (uniform) as latents at the demo's 43 Hz latent rate, with
  12 phonemes per second and 10-30 instruction tokens, like speech from the corpus.
- Fixed: `--batch_size` clips per batch in random order, each batch padded to its longest clip.
- Dynamic: `FrameBudgetBatchSampler` with the same peak size, `batch_size x longest clip` padded frames, so
  both need the same memory at worst; clips of similar length share a batch.
- Model: `configs/demo/transformer/config.json` (the demo size) unless `--config` names another one.

Reported per mode: clips per batch, padding fraction, seconds per step (median), clips per second and real
(unpadded) latent frames per second over all measured steps; then the dynamic / fixed ratio of clips per second.

    python benchmarks/benchmark_training.py --threads 2
    python benchmarks/benchmark_training.py --device cuda --dtype bf16 --batch_size 16 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import (
    add_common_arguments,
    format_table,
    load_average,
    machine_description,
    setup,
    synchronize,
    write_json,
)
from instructaudio_diffusers import InstructAudioTransformerModel
from instructaudio_diffusers.training.batching import (
    FixedSizeBatchSampler,
    FrameBudgetBatchSampler,
    padding_fraction,
)
from instructaudio_diffusers.training.transformer.args import parse_args as training_parse_args
from instructaudio_diffusers.training.transformer.objective import (
    FlowMatchingObjectiveConfig,
    flow_matching_losses,
)

REPO = Path(__file__).resolve().parents[1]

DEMO_CONFIG = REPO / "configs" / "demo" / "transformer" / "config.json"
LATENT_FRAME_RATE = 22050 / (256 * 2)  # the demo VAE: 22.05 kHz, hop 256, 2x time downsampling
PHONEMES_PER_SECOND = 12


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument(
        "--config", default=str(DEMO_CONFIG), help="transformer config.json (default: the demo)"
    )
    parser.add_argument("--num_clips", type=int, default=512, help="synthetic clips (default: 512)")
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=20.0)
    parser.add_argument("--batch_size", type=int, default=4, help="fixed mode's clips per batch (default: 4)")
    parser.add_argument(
        "--steps", type=int, default=2, help="optimizer steps per mode and round (default: 2)"
    )
    args = parser.parse_args()
    args.rounds = args.repeats  # a round = `steps` steps of each mode
    return args


def make_corpus(args: argparse.Namespace, config: dict) -> list[dict[str, torch.Tensor]]:
    """Random latents, instruction embeddings and phoneme ids for every clip (seeded)."""
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    seconds = rng.uniform(args.min_seconds, args.max_seconds, size=args.num_clips)
    corpus = []
    for duration in seconds:
        frames = max(1, round(duration * LATENT_FRAME_RATE))
        corpus.append(
            {
                "latents": torch.randn(config["in_channels"], frames, generator=generator),
                "instruction": torch.randn(
                    int(rng.integers(10, 31)), config["instruction_dim"], generator=generator
                ),
                "phonemes": torch.randint(
                    1,
                    config["phoneme_vocab_size"],
                    (max(1, round(duration * PHONEMES_PER_SECOND)),),
                    generator=generator,
                ),
            }
        )
    return corpus


def collate(
    corpus: list[dict[str, torch.Tensor]], indices: list[int], device: torch.device
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest clip, instruction and phoneme sequence; masks mark the real positions."""

    def pad(tensors: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([t.shape[dim] for t in tensors])
        longest = int(lengths.max())
        padded = torch.stack(
            [
                torch.nn.functional.pad(t, [0, 0] * (t.ndim - 1 - dim % t.ndim) + [0, longest - t.shape[dim]])
                for t in tensors
            ]
        )
        return padded.to(device), (torch.arange(longest)[None] < lengths[:, None]).to(device)

    items = [corpus[i] for i in indices]
    latents, frame_mask = pad([item["latents"] for item in items], -1)
    instruction, instruction_mask = pad([item["instruction"] for item in items], 0)
    phonemes, phoneme_mask = pad([item["phonemes"] for item in items], 0)
    return {
        "latents": latents,
        "frame_mask": frame_mask,
        "instruction": instruction,
        "instruction_mask": instruction_mask,
        "phonemes": phonemes,
        "phoneme_mask": phoneme_mask,
        "frames": frame_mask.sum(dim=1),
    }


def main() -> None:
    args = parse_args()
    device, dtype = setup(args)
    config = dict(InstructAudioTransformerModel.load_config(args.config))
    model = InstructAudioTransformerModel.from_config(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = FlowMatchingObjectiveConfig.from_args(
        training_parse_args(
            ["--dataset_dir", "-", "--output_dir", "-", "--pretrained_model_name_or_path", "-"]
        )
    )
    corpus = make_corpus(args, config)
    lengths = np.array([item["latents"].shape[-1] for item in corpus])
    budget = args.batch_size * int(lengths.max())
    samplers = {
        "fixed": FixedSizeBatchSampler(len(corpus), args.batch_size, seed=args.seed),
        "dynamic": FrameBudgetBatchSampler(lengths, budget, seed=args.seed),
    }
    batches = {mode: sampler.batches(0) for mode, sampler in samplers.items()}
    cursor = dict.fromkeys(samplers, 0)
    # bf16/fp16 means mixed precision (fp32 weights, autocast), as in training; fp32 runs plain.
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def train_step(mode: str) -> tuple[float, int, int]:
        indices = batches[mode][cursor[mode] % len(batches[mode])]
        cursor[mode] += 1
        batch = collate(corpus, indices, device)
        synchronize(device)
        started = time.perf_counter()
        with autocast:
            losses = flow_matching_losses(
                model,
                batch["latents"],
                batch["frame_mask"],
                batch["instruction"],
                batch["instruction_mask"],
                batch["phonemes"],
                batch["phoneme_mask"],
                batch["frames"],
                objective,
                torch.Generator().manual_seed(0),
            )
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        return time.perf_counter() - started, len(indices), int(batch["frames"].sum())

    modes = list(samplers)
    records: dict[str, list[tuple[float, int, int]]] = {mode: [] for mode in modes}
    load_before = load_average()
    for round_index in range(args.warmup + args.rounds):
        order = modes[round_index % 2 :] + modes[: round_index % 2]
        for mode in order:
            steps = [train_step(mode) for _ in range(args.steps)]
            if round_index >= args.warmup:
                records[mode] += steps
        print(f"round {round_index + 1}/{args.warmup + args.rounds} done", file=sys.stderr, flush=True)

    results = {}
    for mode in modes:
        seconds = sum(r[0] for r in records[mode])
        results[mode] = {
            "clips_per_batch": float(np.mean([len(b) for b in batches[mode]])),
            "padding_fraction": padding_fraction(batches[mode], lengths),
            "seconds_per_step": statistics.median(r[0] for r in records[mode]),
            "clips_per_second": sum(r[1] for r in records[mode]) / seconds,
            "frames_per_second": sum(r[2] for r in records[mode]) / seconds,
            "steps": len(records[mode]),
        }
    speedup = results["dynamic"]["clips_per_second"] / results["fixed"]["clips_per_second"]
    print(machine_description(device, dtype))
    print(
        f"model {args.config} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters); "
        f"{args.num_clips} clips of {args.min_seconds:g}-{args.max_seconds:g} s; fixed batch {args.batch_size}, "
        f"frame budget {budget}; {args.rounds} rounds x {args.steps} steps per mode after {args.warmup} warm-up "
        f"round(s); load average {load_before:.2f} -> {load_average():.2f}"
    )
    rows = [
        [
            mode,
            r["clips_per_batch"],
            r["padding_fraction"],
            r["seconds_per_step"],
            r["clips_per_second"],
            r["frames_per_second"],
        ]
        for mode, r in results.items()
    ]
    print(format_table(["batching", "clips/batch", "padding", "s/step", "clips/s", "real frames/s"], rows))
    print(f"dynamic / fixed clips per second: {speedup:.2f}x")
    write_json(
        args.output,
        {
            "machine": machine_description(device, dtype),
            "config": args.config,
            "budget": budget,
            "results": results,
            "speedup": speedup,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
