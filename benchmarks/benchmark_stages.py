"""The limit of every stage of the demo-size pipeline: FLOPs per second of audio, achieved GFLOP/s and the fraction
of the machine's dense matmul rate, at several audio lengths.

Each stage runs as `InstructAudioPipeline.__call__` runs it for one English utterance of `--seconds` seconds (2.6
words per second, as in `benchmark_pipeline.py`), with the trained demo pipeline (`--model`):

- `instruction`: the frozen instruction encoder (all-MiniLM-L6-v2) on the instruction's tokens; its work does not
  grow with the audio.
- `text stream`: the transformer's text stream of the conditional sample (instruction projection, phoneme encoder,
  pooled instruction), the per-phoneme duration predictor, and the text stream of guidance's unconditional sample.
- `step`: one denoising step as the loop runs it: the transformer on the guidance batch of 2 (the unconditional
  sample's text padded to the conditional one's), reading the joint condition built once per generation
  (`prepare_joint_condition`). The guidance mix and the Euler update are elementwise and left out.
- `vae decode`: latents -> log-mel. `vocoder`: log-mel -> waveform, in the pipeline's chunks (`vocoder_chunk_frames`).

FLOPs are counted analytically from the configurations (the `*_flops` functions below: every matmul and
convolution, transposed ones included, and attention's `QK^T` and `AV` over the padded shapes the kernels see;
norms, activations, RoPE and other elementwise work are left out) and checked against
`torch.utils.flop_counter.FlopCounterMode`, to which the CPU flash-attention kernel is added with the counter's own
SDPA formula, at the lengths up to `--check-flops-max-seconds`. Achieved GFLOP/s is the analytic count over the median time of
`--repeats` interleaved rounds; the reference rate is the machine's dense matmul rate (`--matmul-size`^3
`torch.mm`), measured before and after the stages in the same run. A stage near that rate can only get faster by
doing less work; one far below it loses its time to something other than arithmetic.

Then the joint condition's gain: the step with the joint condition built once against the step that builds it
itself (as every step did before), and the cost of building it, timed next to each other in `--step-repeats`
rounds at the `--step-seconds` lengths.

On a machine whose cores other jobs keep busy, use `--threads 1 --clock cpu` (see `common.py`).

The demo transformer accepts 2048 latent frames (47.6 s); lengths beyond are run by raising `max_audio_frames`,
which changes no weight.

    python benchmarks/benchmark_stages.py --threads 1 --output stages.json
    python benchmarks/benchmark_stages.py --threads 1 --clock cpu --output stages.json   # cores shared
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from benchmark_pipeline import INSTRUCTION, text_for
from benchmark_transformer import instructaudio_forward_flops
from common import (
    CLOCKS,
    add_clock_argument,
    add_common_arguments,
    counted_flops,
    format_table,
    load_average,
    machine_description,
    matmul_rate,
    paired_ratio,
    setup,
    summarize,
    time_interleaved,
    write_json,
)
from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.models import frames_vocoded
from instructaudio_diffusers.models.text_condition import InstructAudioTextCondition

DEMO_PIPELINE = Path(__file__).resolve().parents[1] / "checkpoints" / "instructaudio-demo"
STAGES = ("instruction", "text stream", "step", "vae decode", "vocoder")


def _mm(rows: int, inner: int, cols: int) -> int:
    return 2 * rows * inner * cols


def _conv(length: int, in_channels: int, out_channels: int, kernel_size: int) -> int:
    """A 1-D convolution with `length` output positions (for a transposed one: input positions)."""
    return _mm(length, in_channels * kernel_size, out_channels)


def bert_encoder_flops(config, tokens: int, pooler: bool) -> int:
    """A BERT-family encoder (all-MiniLM-L6-v2) on one sequence of `tokens` tokens, with its pooler if it has one."""
    d, ff = config.hidden_size, config.intermediate_size
    layer = 4 * _mm(tokens, d, d) + 2 * _mm(tokens, tokens, d) + _mm(tokens, d, ff) + _mm(tokens, ff, d)
    return config.num_hidden_layers * layer + (_mm(1, d, d) if pooler else 0)


def text_stream_flops(config: dict, instruction_len: int, phoneme_len: int) -> int:
    """The text streams of one guided generation: the conditional sample's (instruction projection, phoneme encoder,
    pooled instruction), its per-phoneme durations (models with `phoneme_alignment="durations"`), and the
    unconditional sample's (the instruction projection and pooling only: its phonemes are dropped)."""
    d, instruction_dim = config["hidden_size"], config["instruction_dim"]
    p, ff, kernel = (
        config[f"phoneme_encoder_{name}"] for name in ("hidden_size", "ff_size", "ff_kernel_size")
    )
    layer = 4 * _mm(phoneme_len, p, p) + 2 * _mm(phoneme_len, phoneme_len, p)
    layer += _conv(phoneme_len, p, ff, kernel) + _conv(phoneme_len, ff, p, kernel)
    phoneme_encoder = config["phoneme_encoder_layers"] * layer + _mm(phoneme_len, p, d)
    pooled = _mm(1, instruction_dim, d) + _mm(1, d, d) if config["pooled_instruction_conditioning"] else 0
    instruction = _mm(instruction_len, instruction_dim, d) + pooled
    durations = 0
    if config["phoneme_alignment"] == "durations":  # the per-token predictor's convolutions have kernel 3
        text_len, hidden = 1 + instruction_len + phoneme_len, config["duration_predictor_hidden_size"]
        durations = _mm(1, d, d) + _conv(text_len, d, hidden, 3) + _mm(text_len, hidden, 1)
        durations += (config["token_duration_predictor_layers"] - 1) * _conv(text_len, hidden, hidden, 3)
    return 2 * instruction + phoneme_encoder + durations


def denoising_step_flops(config: dict, latent_frames: int, text_len: int, joint_condition_built: bool) -> int:
    """One guided step (batch 2) over `text_len` text tokens; without a prebuilt joint condition, the step also
    places the phonemes on the frames."""
    return instructaudio_forward_flops(
        config,
        2,
        latent_frames,
        text_len - 1,
        0,
        text_encoder=False,
        joint_condition_built=joint_condition_built,
    )["total"]


def vae_decoder_flops(config, latent_frames: int) -> int:
    """`AutoencoderKLMel`'s decoder on `latent_frames` frames."""
    k, layers = config.kernel_size, config.layers_per_block
    channels, factors = list(reversed(config.block_out_channels)), list(reversed(config.downsample_factors))

    def resnet_stack(length: int, in_channels: int, out_channels: int) -> int:
        flops = 0
        for index in range(layers):
            width_in = in_channels if index == 0 else out_channels
            flops += _conv(length, width_in, out_channels, k) + _conv(length, out_channels, out_channels, k)
            flops += _conv(length, width_in, out_channels, 1) if width_in != out_channels else 0
        return flops

    length = latent_frames
    flops = _conv(length, config.latent_channels, channels[0], k) + resnet_stack(
        length, channels[0], channels[0]
    )
    for index, width in enumerate(channels):
        flops += resnet_stack(length, channels[max(index - 1, 0)], width)
        if index < len(factors):
            length *= factors[index]
            flops += _conv(length, width, width, k)
    return flops + _conv(length, channels[-1], config.n_mels, k)


def hifigan_flops(config, mel_frames: int) -> int:
    """A HiFi-GAN generator (`HifiGanVocoder` or transformers' `SpeechT5HifiGan`) on `mel_frames` frames."""
    n_mels = getattr(config, "n_mels", None) or config.model_in_dim
    convs_per_dilation = 1 if str(getattr(config, "resblock", "1")) == "2" else 2
    channels, length = config.upsample_initial_channel, mel_frames
    flops = _conv(length, n_mels, channels, 7)
    for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
        flops += _conv(length, channels, channels // 2, kernel)
        channels, length = channels // 2, length * rate
        for block_kernel, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
            flops += convs_per_dilation * len(dilations) * _conv(length, channels, channels, block_kernel)
    return flops + _conv(length, channels, 1, 7)


def build_stages(pipe: InstructAudioPipeline, seconds: float, device: torch.device, seed: int) -> dict:
    """Inputs, callables and analytic FLOPs of every stage for `seconds` of audio."""
    transformer, vae = pipe.transformer, pipe.vae
    config = dict(transformer.config)
    generator = torch.Generator().manual_seed(seed)
    frames = max(1, round(seconds * vae.latent_frame_rate))
    with torch.no_grad():
        embeds, instruction_mask = pipe.encode_instruction([INSTRUCTION], device)
        phoneme_ids, phoneme_mask = pipe.encode_text([text_for(seconds)], device, 1)

    def text_stream() -> InstructAudioTextCondition:
        condition = transformer.encode_text_condition(embeds, instruction_mask, phoneme_ids, phoneme_mask)
        if transformer.phoneme_alignment == "durations":
            durations = pipe.prepare_phoneme_durations(
                condition, phoneme_mask, torch.tensor([frames], device=device)
            )
            condition = condition.with_durations(durations)
        unconditional = pipe._unconditional_text_condition(embeds, instruction_mask, None, 1, device)
        return InstructAudioTextCondition.cat([condition, unconditional])

    with torch.no_grad():
        text_condition = text_stream()
        audio_mask = torch.ones(2, frames, dtype=torch.bool, device=device)
        joint_condition = transformer.prepare_joint_condition(text_condition, audio_mask)
    dtype = transformer.dtype
    latents = torch.randn(2, config["in_channels"], frames, generator=generator).to(device, dtype)
    timestep = torch.full((2,), 500.0, device=device)
    mel_frames = frames * vae.time_downsample_factor
    with torch.no_grad():
        mel = vae.decode(latents[:1], num_frames=mel_frames).sample

    def step():
        return transformer(latents, timestep, text_condition=text_condition, joint_condition=joint_condition)

    def step_rebuilding():
        return transformer(latents, timestep, text_condition=text_condition, audio_attention_mask=audio_mask)

    instruction_len, phoneme_len = embeds.shape[1], phoneme_ids.shape[1]
    text_len = text_condition.hidden_states.shape[1]
    encoder = pipe.text_encoder
    return {
        "latent_frames": frames,
        "instruction_tokens": instruction_len,
        "phonemes": phoneme_len,
        "text_len": text_len,
        "calls": {
            "instruction": lambda: pipe.encode_instruction([INSTRUCTION], device),
            "text stream": text_stream,
            "step": step,
            "vae decode": lambda: vae.decode(latents[:1], num_frames=mel_frames),
            "vocoder": lambda: pipe._vocode(mel),
        },
        "flops": {
            "instruction": bert_encoder_flops(
                encoder.config, instruction_len, getattr(encoder, "pooler", None) is not None
            ),
            "text stream": text_stream_flops(config, instruction_len, phoneme_len),
            "step": denoising_step_flops(config, frames, text_len, joint_condition_built=True),
            "vae decode": vae_decoder_flops(vae.config, frames),
            # In the pipeline's chunks, each with its context: more frames than the clip's own.
            "vocoder": hifigan_flops(
                pipe.vocoder.config, frames_vocoded(pipe.vocoder, mel_frames, pipe.vocoder_chunk_frames)
            ),
        },
        "step_rebuilding": step_rebuilding,
        "step_rebuilding_flops": denoising_step_flops(config, frames, text_len, joint_condition_built=False),
        "prepare_joint_condition": lambda: transformer.prepare_joint_condition(text_condition, audio_mask),
    }


def no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, repeats=3, warmup=1)
    add_clock_argument(parser)
    parser.add_argument(
        "--model", default=str(DEMO_PIPELINE), help="pipeline folder (default: the shipped demo)"
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0, 30.0, 60.0])
    parser.add_argument(
        "--steps", type=int, default=32, help="denoising steps of the per-generation estimate"
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        nargs="+",
        default=[10.0, 60.0],
        help="lengths of the joint-condition comparison",
    )
    parser.add_argument(
        "--step-repeats", type=int, default=9, help="rounds of the joint-condition comparison"
    )
    parser.add_argument("--matmul-size", type=int, default=None, help="default: 2048 on CPU, 8192 on CUDA")
    parser.add_argument(
        "--check-flops-max-seconds",
        type=float,
        default=10.0,
        help="check the analytic FLOPs with the counter up to this length (it runs those stages once more)",
    )
    args = parser.parse_args(argv)
    device, dtype = setup(args)
    clock = CLOCKS[args.clock]
    diffusers_logging.set_verbosity_error()

    pipe = InstructAudioPipeline.from_pretrained(args.model, dtype=dtype)
    if device.type != "cpu":
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    all_seconds = sorted(set(args.seconds) | set(args.step_seconds))
    longest = max(round(seconds * pipe.vae.latent_frame_rate) for seconds in all_seconds)
    if longest > pipe.transformer.config.max_audio_frames:
        pipe.transformer.register_to_config(max_audio_frames=longest)
    lengths = {seconds: build_stages(pipe, seconds, device, args.seed) for seconds in all_seconds}

    machine = machine_description(device, dtype)
    print(machine, flush=True)
    matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    load_before = load_average()
    rate_before = matmul_rate(device, dtype, matmul_size, clock=clock)
    candidates = {
        f"{stage} {seconds:g} s": no_grad(lengths[seconds]["calls"][stage])
        for seconds in args.seconds
        for stage in STAGES
    }
    times = time_interleaved(candidates, device, args.repeats, args.warmup, clock)
    rate_after = matmul_rate(device, dtype, matmul_size, clock=clock)
    step_candidates = {}
    for seconds in args.step_seconds:
        length = lengths[seconds]
        step_candidates[f"built once {seconds:g} s"] = no_grad(length["calls"]["step"])
        step_candidates[f"rebuilt {seconds:g} s"] = no_grad(length["step_rebuilding"])
        step_candidates[f"prepare {seconds:g} s"] = no_grad(length["prepare_joint_condition"])
    step_times = time_interleaved(step_candidates, device, args.step_repeats, args.warmup, clock)
    load_after = load_average()
    peak = max(rate_before["median_gflops"], rate_after["median_gflops"])

    rows, results = [], []
    for seconds in args.seconds:
        length = lengths[seconds]
        for stage in STAGES:
            flops = length["flops"][stage]
            timing = summarize(times[f"{stage} {seconds:g} s"])
            check = seconds <= args.check_flops_max_seconds
            counted = counted_flops(no_grad(length["calls"][stage])) if check else None
            gflops_per_s = flops / timing["median_ms"] / 1e6
            results.append(
                {
                    "stage": stage,
                    "seconds": seconds,
                    "flops": flops,
                    "counted_flops": counted,
                    "time": timing,
                    "gflops_per_s": gflops_per_s,
                    "fraction_of_matmul_rate": gflops_per_s / peak,
                }
            )
            rows.append(
                [
                    stage,
                    f"{seconds:g}",
                    flops / 1e9,
                    None if counted is None else f"{counted / flops:.4f}",
                    flops / seconds / 1e9,
                    timing["median_ms"],
                    gflops_per_s,
                    f"{100 * gflops_per_s / peak:.0f} %",
                ]
            )

    print(
        f"dense matmul rate ({matmul_size}^3 torch.mm): {rate_before['median_gflops']:.1f} GFLOP/s before, "
        f"{rate_after['median_gflops']:.1f} after; the higher is the reference"
    )
    print(f"model: {args.model}; clock: {args.clock}; load average {load_before:.2f} -> {load_after:.2f}")
    for seconds, length in lengths.items():
        print(
            f"  {seconds:g} s: {length['latent_frames']} latent frames, {length['instruction_tokens']} instruction "
            f"tokens, {length['phonemes']} phonemes, text stream of {length['text_len']} tokens"
        )
    header = [
        "stage",
        "audio s",
        "GFLOP",
        "counted/analytic",
        "GFLOP per audio s",
        "ms",
        "GFLOP/s",
        "of mm rate",
    ]
    print(format_table(header, rows))

    rows, generation = [], []
    for seconds in args.seconds:
        ms = {r["stage"]: r["time"]["median_ms"] for r in results if r["seconds"] == seconds}
        total = sum(ms.values()) + (args.steps - 1) * ms["step"]
        shares = {stage: ms[stage] * (args.steps if stage == "step" else 1) / total for stage in STAGES}
        generation.append({"seconds": seconds, "rtf": total / 1e3 / seconds, "time_share": shares})
        rows.append([f"{seconds:g}", total / 1e3 / seconds, *(f"{100 * shares[s]:.0f} %" for s in STAGES)])
    print(
        f"\nA {args.steps}-step generation from the stage times above (G2P left out): RTF and share of time"
    )
    print(format_table(["audio s", "RTF", *STAGES], rows))

    rows, cache = [], []
    for seconds in args.step_seconds:
        once, rebuilt, prepare = (
            step_times[f"{name} {seconds:g} s"] for name in ("built once", "rebuilt", "prepare")
        )
        entry = {
            "seconds": seconds,
            "built_once": summarize(once),
            "rebuilt": summarize(rebuilt),
            "prepare": summarize(prepare),
            "built_once_over_rebuilt": paired_ratio(once, rebuilt),
            "prepare_over_rebuilt": paired_ratio(prepare, rebuilt),
            "built_once_over_rebuilt_min": min(once) / min(rebuilt),
            "flops_built_once_over_rebuilt": lengths[seconds]["flops"]["step"]
            / lengths[seconds]["step_rebuilding_flops"],
        }
        cache.append(entry)
        rows.append(
            [
                f"{seconds:g}",
                entry["rebuilt"]["median_ms"],
                entry["built_once"]["median_ms"],
                entry["built_once_over_rebuilt"],
                entry["built_once_over_rebuilt_min"],
                entry["flops_built_once_over_rebuilt"],
                entry["prepare"]["median_ms"],
                entry["prepare_over_rebuilt"],
            ]
        )
    print(
        "\nOne step with the joint condition rebuilt at every step (before) and built once per generation (now), "
        f"{args.step_repeats} interleaved rounds"
    )
    header = ["audio s", "rebuilt ms", "built once ms", "once/rebuilt", "min once/rebuilt", "FLOPs ratio"]
    print(format_table([*header, "building it, ms", "building/rebuilt"], rows))
    print(
        "'once/rebuilt', 'building/rebuilt': median over rounds of the ratio in the same round; 'min': best against "
        "best. Building the joint condition is the work a step no longer does, so 'building/rebuilt' is the share "
        "of a step saved, measured directly where the step times differ by less than their noise.\n"
        "GFLOP: analytic; 'counted/analytic': torch.utils.flop_counter against it."
    )
    payload = {
        "benchmark": "stages",
        "machine": machine,
        "args": vars(args),
        "load_average": [load_before, load_after],
        "matmul_rate": [rate_before, rate_after],
        "stages": results,
        "generation": generation,
        "joint_condition": cache,
    }
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
