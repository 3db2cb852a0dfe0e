"""What the training benches share: one fresh process per variant, timing windows, FLOPs from
``torch.utils.flop_counter`` and the side-by-side table (bench/stylegan2_train.py, bench/stargan_train.py).

A variant's process builds its trainer, runs ``warmup`` iterations (torch.compile compiles there; its time is
reported as "warm-up"), then times ``windows`` windows of ``steps`` consecutive iterations each, synchronising
the device at both ends of every window; the table shows the median window. Peak memory is
``torch.cuda.max_memory_allocated`` over the timed windows on a GPU, on the CPU the rise of the process's peak
resident memory over its size before the networks were built. The baseline process also counts the FLOPs of
``flop_iterations`` eager iterations (a whole lazy-regularisation cycle for StyleGAN2) with
``FlopCounterMode``; both variants do that same work, so achieved TFLOP/s = FLOPs per iteration / seconds per
iteration for each.
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Measured:
    name: str
    settings: str
    seconds: list[float]             # per iteration, one entry per timing window
    warmup_s: float
    peak_mb: float
    flops: float | None = None       # per iteration (baseline process only)
    graphs_while_timed: int = 0      # graphs torch.compile compiled during the timed windows (should be 0)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _graphs() -> int:
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])


def time_iterations(step: Callable[[int], object], *, device, warmup: int, steps: int, windows: int,
                    base_mb: float) -> tuple[float, list[float], float, int]:
    """Run ``step(i)`` for i = 1..warmup, then ``windows`` x ``steps`` timed iterations. Returns (warm-up
    seconds, seconds per iteration of each window, peak MB, graphs compiled while timed)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for i in range(1, warmup + 1):
        step(i)
    sync()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    graphs = _graphs()
    seconds, i = [], warmup
    for _ in range(windows):
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            i += 1
            step(i)
        sync()
        seconds.append((time.perf_counter() - start) / steps)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else peak_rss_mb() - base_mb
    return warmup_s, seconds, peak, _graphs() - graphs


def count_flops(step: Callable[[int], object], first: int, iterations: int) -> float:
    """FLOPs per iteration over ``iterations`` eager iterations starting at index ``first`` (forward,
    backward and the penalties' double backward: every matmul and convolution torch dispatches)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Its per-module breakdown hooks every module's backward, which autograd.grad (R1, path length) refuses
    # ("A leaf node was passed to _will_engine_execute_node ..."): count globally only.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        for i in range(first, first + iterations):
            step(i)
    return counter.get_total_flops() / iterations


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: every FLOP goes to the "Global" total."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def in_fresh_process(target, *args) -> Measured:
    """``target(*args, queue)`` in a spawned process (a clean allocator and peak memory of its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, BaseException):
        raise result
    return result


def device_name(device: str, threads: int | None) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return f"CPU ({threads or torch.get_num_threads()} threads), torch {torch.__version__}"


def print_table(title: str, rows: list[Measured], batch: int, *, baseline: str) -> None:
    """ms/iteration, img/s, s/kimg, peak memory, TFLOP/s and the speed-up over ``baseline``."""
    base = next(r for r in rows if r.name == baseline)
    flops = base.flops
    print(title)
    print()
    print("| variant | settings | ms/iteration | img/s | s/kimg | peak memory (MB) | TFLOP/s | warm-up (s) "
          "| speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r.median
        tflops = f"{flops / s / 1e12:.3g}" if flops else "-"
        print(f"| {r.name} | {r.settings} | {s * 1e3:.1f} | {batch / s:.1f} | {s * 1000 / batch:.2f} | "
              f"{r.peak_mb:.0f} | {tflops} | {r.warmup_s:.1f} | {base.median / s:.2f}x |")
    print()
    if flops:
        print(f"FLOPs per iteration (FlopCounterMode, eager fp32 baseline; the same work for every variant): "
              f"{flops / 1e9:.3g} GFLOP")
    for r in rows:
        spread = f"{min(r.seconds) * 1e3:.1f}-{max(r.seconds) * 1e3:.1f} ms over {len(r.seconds)} windows"
        extra = f"; {r.graphs_while_timed} graphs compiled while timed" if r.graphs_while_timed else ""
        print(f"{r.name}: {spread}{extra}" + "".join(f"; {n}" for n in r.notes))
