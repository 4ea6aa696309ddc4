"""Helpers shared by the benchmark scripts: device and dtype arguments, interleaved timing with medians, peak tensor
memory, the machine's dense matmul rate, a one-line description of the machine, tables and JSON.

Timing: candidates run round-robin (one call of each per round, the order rotated every round), so a burst of load
from other processes lands on all of them alike; the first `warmup` rounds are discarded and the median of the
rest is reported, with the 1-minute load average read before and after. The clock is the elapsed time, or with
`--clock cpu` (one thread) the CPU time of the calling thread: where other jobs keep every core busy, elapsed time
measures the scheduler's share more than the code, while the thread's CPU time leaves out the time given to others
(not what sharing caches and memory bandwidth costs, which stays in).

Peak memory is the high-water mark of tensor bytes allocated during one call, above what was allocated before it
(weights, inputs and anything else already alive do not count):

- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`.
- CPU: the allocation and free events recorded by `torch.profiler(profile_memory=True)`, replayed in time order.
  This counts every tensor the CPU allocator hands out (activations, autograd buffers, attention workspaces),
  independently of the malloc arena's caching, so it is comparable to the CUDA number; memory that a library
  allocates by itself (oneDNN scratch pads) is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

# A benchmark must never wait on the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
MIB = 2**20


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int = 7, warmup: int = 2) -> None:
    """Add `--device`, `--dtype`, `--threads`, `--repeats`, `--warmup`, `--seed` and `--output`.

    `--clock` is added by the benchmarks that pass `args.clock` on to the timing helpers."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--dtype", default="fp32", choices=sorted(DTYPES), help="weights and inputs (default: fp32)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads on CPU (default: torch's own choice). On a machine shared with other jobs "
        "`--threads 1` gives far steadier numbers: a multi-threaded op waits for its slowest thread.",
    )
    parser.add_argument("--repeats", type=int, default=repeats, help=f"measured rounds (default: {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"discarded rounds (default: {warmup})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--output", default=None, help="write the results as JSON to this path")


def add_clock_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--clock wall|cpu` (see the module docstring)."""
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall: elapsed time (default). cpu: the calling thread's CPU time, on CPU with --threads 1 only; for a "
        "machine whose cores other jobs keep busy, where elapsed time measures the scheduler's share",
    )


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Apply `--threads` and `--seed`; check that the device exists. Returns `(device, dtype)`."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine.")
    if getattr(args, "clock", "wall") == "cpu" and (device.type != "cpu" or args.threads != 1):
        raise SystemExit("--clock cpu times the calling thread: use it on CPU with --threads 1.")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return device, DTYPES[args.dtype]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    candidates: dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """
    Seconds per call of each candidate, `repeats` samples each, read from `clock` (a `CLOCKS` value).

    Rounds run every candidate once, starting from a different one each round; the first `warmup` rounds (first
    calls: allocator growth, oneDNN kernel selection, CUDA autotuning) are discarded.
    """
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = clock()
            candidates[name]()
            synchronize(device)
            if round_index >= warmup:
                samples[name].append(clock() - start)
    return samples


def summarize(samples: list[float]) -> dict[str, float | list[float]]:
    """Median, minimum and interquartile range in milliseconds, and the samples in round order."""
    milliseconds = [1e3 * sample for sample in samples]
    quartiles = statistics.quantiles(milliseconds, n=4) if len(milliseconds) > 1 else milliseconds * 3
    return {
        "median_ms": statistics.median(milliseconds),
        "min_ms": min(milliseconds),
        "iqr_ms": quartiles[2] - quartiles[0],
        "samples_ms": [round(sample, 3) for sample in milliseconds],
    }


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """
    Median over rounds of `numerator[i] / denominator[i]`, for samples from the same interleaved rounds.

    A burst of load from another process slows the calls of one round together, so the per-round ratio stays
    close to the true one where the ratio of two medians can pick up a burst on one side only.
    """
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def profile_call(fn: Callable[[], object], device: torch.device) -> tuple[int, list[str]]:
    """
    Run `fn()` once under the profiler. Returns the high-water mark of tensor bytes allocated during the call above
    those alive before it (see the module docstring), and the names of the scaled-dot-product-attention kernels it
    ran (which SDPA backend was picked).
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=device.type == "cpu") as profiler:
        fn()
        synchronize(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        events = sorted(
            (event.start_ns(), event.nbytes())
            for event in profiler.profiler.kineto_results.events()
            if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
        )
        current = peak = 0
        for _, nbytes in events:
            current += nbytes
            peak = max(peak, current)
    names = {event.key for event in profiler.key_averages()}
    kernels = sorted(
        name for name in names if "attention" in name and name != "aten::scaled_dot_product_attention"
    )
    return peak, kernels


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# `FlopCounterMode`'s registry has the CUDA SDPA kernels but not the CPU flash one, which our attention (it picks
# its SDPA backends itself, so an outer `sdpa_kernel(MATH)` cannot force the counted math path), SD3's and the
# instruction encoder's run on CPU: added here with the registry's own formulas.
_CPU_FLASH = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
}


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs that `torch.utils.flop_counter` sees in `fn()`, CPU flash attention (forward and backward) included."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_FLASH) as counter:
        fn()
    return counter.get_total_flops()


def matmul_rate(
    device: torch.device,
    dtype: torch.dtype,
    size: int,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """
    Dense matmul rate of this machine: `torch.mm` of two `size x size` matrices (`2 * size**3` FLOPs), median of
    `repeats` calls after one warm-up call. Returns GFLOP/s (median and best).
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = time_interleaved({"mm": lambda: torch.mm(a, b)}, device, repeats, warmup=1, clock=clock)["mm"]
    flops = 2 * size**3
    return {
        "size": size,
        "median_gflops": flops / statistics.median(seconds) / 1e9,
        "best_gflops": flops / min(seconds) / 1e9,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device, dtype: torch.dtype) -> str:
    """One line: CPU model and cores (or the GPU), torch version, threads, dtype."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"CPU {_cpu_model()} ({os.cpu_count()} logical cores, {usable} usable)"]
    if device.type == "cuda":
        parts.insert(0, f"GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    parts += [
        f"torch {torch.__version__}",
        f"{torch.get_num_threads()} threads",
        str(dtype).replace("torch.", ""),
    ]
    return ", ".join(parts)


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS does not report it)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def format_table(header: list[str], rows: list[list[object]]) -> str:
    """A plain-text table; floats get 2 decimals (3 below 1), `None` prints as '-'."""

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return (
                f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
            )
        return str(value)

    table = [header] + [[cell(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: str | None, payload: dict) -> None:
    if path is None:
        return
    with open(path, "w") as file:
        json.dump(payload, file, indent=2)
        file.write("\n")
    print(f"wrote {path}")
