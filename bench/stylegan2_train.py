"""StyleGAN2 training speed: our trainer's settings vs our own plain fp32 eager path, on this device.

    python bench/stylegan2_train.py                                   # small CPU config, about 1-2 minutes
    python bench/stylegan2_train.py --size 256 --batch 16 --channel-multiplier 2 --style-dim 512 --n-mlp 8 \\
        --channels 0 --steps 32                                       # config-f 256 px on a GPU

"ours" is ``TrainConfig`` as the trainer runs it (precision ``auto``: bf16 on Ampere+, fp16 + grad scaler on
T4, fp32 on CPU; channels_last on CUDA; fused Adam on CUDA, foreach on CPU; cuDNN autotuning); "plain fp32 eager"
is ``plain_fp32(config)``. Each measured run is a fresh process (clean allocator, peak memory of that run
alone) that builds the networks, warms up, then times ``--steps`` full iterations of
``training_step`` (D, lazy R1, G, lazy path length, G average) on a fixed batch of random images (the data
loader is not timed). The two variants alternate, ``--repeats`` runs each; the table shows medians.
Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the rise of the process's peak
resident memory over its size after start-up.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(config_dict: dict, steps: int, warmup: int, threads: int | None, queue) -> None:
    """One run in a fresh process: put ``(seconds per step, peak MB, precision)`` on ``queue``."""
    import torch

    from colab_utils.stylegan2.train import TrainConfig, build_nets, resolve_device, training_step

    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(**config_dict)
    device = resolve_device(config)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    torch.manual_seed(0)
    base_mb = _rss_mb()
    nets = build_nets(config, device)
    real = torch.rand(config.batch, 3, config.size, config.size, device=device) * 2 - 1
    if nets.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for step in range(1, warmup + 1):
        training_step(nets, config, real, step)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for step in range(warmup + 1, warmup + steps + 1):
        training_step(nets, config, real, step)
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
            else _peak_rss_mb() - base_mb)
    queue.put((seconds, peak, nets.precision.precision))


def run_variant(config, args) -> tuple[float, float, str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(dataclasses.asdict(config), args.steps, args.warmup, args.threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channel-multiplier", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64,
                        help="cap on feature maps per resolution (0: the paper's full table)")
    parser.add_argument("--style-dim", type=int, default=64)
    parser.add_argument("--n-mlp", type=int, default=4)
    parser.add_argument("--ada-p", type=float, default=0.3,
                        help="fixed augmentation probability (0: no augmentation cost)")
    parser.add_argument("--precision", default="auto", help="our precision (auto, bf16, fp16, fp32)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=16,
                        help="timed iterations per run (a multiple of 16 covers R1 and path length fairly)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the table shows medians")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    from colab_utils.stylegan2.train import TrainConfig, plain_fp32

    ours = TrainConfig(size=args.size, batch=args.batch, channel_multiplier=args.channel_multiplier,
                       channels=args.channels or None, style_dim=args.style_dim, n_mlp=args.n_mlp,
                       augment=args.ada_p > 0, ada_p=args.ada_p, ada_target=None, precision=args.precision,
                       device=args.device)
    variants = {"ours": ours, "plain fp32 eager": plain_fp32(ours)}
    results: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, config in variants.items():
            results[name].append(run_variant(config, args))

    med = statistics.median
    rows = []
    for name, runs in results.items():
        seconds = med(r[0] for r in runs)
        rows.append((name, runs[0][2], 1 / seconds, args.batch / seconds, med(r[1] for r in runs), seconds))
    base = rows[1][5]
    import torch

    device = "cuda: " + torch.cuda.get_device_name() if ours.device != "cpu" and torch.cuda.is_available() else "cpu"
    table = ours.channel_table()
    print(f"StyleGAN2 training step on {device}: {args.size} px, batch {args.batch}, channels "
          f"{table[4]}..{table[args.size]}, style_dim {args.style_dim}, n_mlp {args.n_mlp}, ADA p {args.ada_p}; "
          f"medians of {args.repeats} runs x {args.steps} steps (after {args.warmup} warm-up)")
    print()
    print("| trainer | precision | it/s | img/s | peak memory (MB) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for name, precision, its, imgs, peak, seconds in rows:
        print(f"| {name} | {precision} | {its:.2f} | {imgs:.1f} | {peak:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
