"""StarGAN v2 training speed and memory: our trainer's settings vs our own plain fp32 path, on this device.

    python bench/stargan_train.py --threads 1                           # CPU: a small model, a few minutes
    python bench/stargan_train.py --size 256 --batch 8 --w-hpf 1 --base-dim 0 --max-conv-dim 512 \\
        --hidden-dim 512                                                # the official CelebA-HQ model (GPU)

On CUDA the defaults are the official CelebA-HQ model (256 px, batch 8, w_hpf 1 with FAN masks); on the CPU,
where one such iteration takes minutes, a 64 px model with narrower layers (``--base-dim 32 --max-conv-dim 128``,
batch 4, w_hpf 0). "ours" is ``TrainConfig`` as the trainer runs it (precision ``auto``: bf16 on Ampere+, fp16
+ grad scaler on T4/V100, fp32 on the CPU; channels_last on CUDA; fused Adam on CUDA, foreach on the CPU);
"plain fp32" is the same with ``precision="fp32", channels_last=False`` (the official arithmetic). Each
measured run is a fresh process (clean allocator, peak memory of that run alone) that builds the networks
(a FAN with random weights when w_hpf > 0: same cost as the real one), warms up, then times ``--steps`` full
iterations of ``train_step`` (two D steps with R1, two G steps, three moving averages) on a fixed batch of
random images (the data loader is not timed). The variants alternate, ``--repeats`` runs each; the table
shows medians. Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the rise of the
process's peak resident memory over its size after start-up. On a small or shared CPU pass ``--threads 1``:
torch's worker threads spin against other processes (on a busy 2-core machine 2 threads ran 7x slower than 1).
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


def measure(config_dict: dict, device: str, steps: int, warmup: int, threads: int | None, queue) -> None:
    """One run in a fresh process: put ``(seconds per iteration, peak MB, precision)`` on ``queue``."""
    import torch

    from colab_utils.stargan.data import Batch
    from colab_utils.stargan.fan import FAN
    from colab_utils.stargan.train import TrainConfig, build_state, train_step

    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(**config_dict)
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() does
    torch.manual_seed(0)
    base_mb = _rss_mb()
    state = build_state(config, 2, device, fan=FAN() if config.w_hpf > 0 else None)
    b, s = config.batch, config.img_size
    images = [torch.rand(b, 3, s, s) * 2 - 1 for _ in range(3)]
    domains = [torch.randint(0, 2, (b,)) for _ in range(2)]
    batch = Batch(images[0], domains[0], images[1], images[2], domains[1], torch.randn(b, config.latent_dim),
                  torch.randn(b, config.latent_dim)).to(device, state.memory_format)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        train_step(state, batch, 1.0)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, batch, 1.0)
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
            else _peak_rss_mb() - base_mb)
    queue.put((seconds, peak, state.precision_g.precision + (" + channels_last" if
                                                              state.memory_format == torch.channels_last else "")))


def run_variant(config, device: str, args) -> tuple[float, float, str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(dataclasses.asdict(config), device, args.steps, args.warmup,
                                             args.threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> None:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--size", type=int, default=256 if cuda else 64, help="image side")
    parser.add_argument("--batch", type=int, default=8 if cuda else 4)
    parser.add_argument("--w-hpf", type=float, default=1.0 if cuda else 0.0,
                        help="1: high-pass skip with FAN masks (CelebA-HQ); 0: none (AFHQ)")
    parser.add_argument("--base-dim", type=int, default=0 if cuda else 32,
                        help="channels after the first conv (0: the paper's 2**14 // size)")
    parser.add_argument("--max-conv-dim", type=int, default=512 if cuda else 128)
    parser.add_argument("--hidden-dim", type=int, default=512 if cuda else 128, help="mapping network width")
    parser.add_argument("--precision", default="auto", help="our precision (auto, bf16, fp16, fp32)")
    parser.add_argument("--steps", type=int, default=10 if cuda else 3, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=3 if cuda else 1)
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the table shows medians")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    from colab_utils.stargan.train import TrainConfig

    ours = TrainConfig(img_size=args.size, batch=args.batch, w_hpf=args.w_hpf, base_dim=args.base_dim or None,
                       max_conv_dim=args.max_conv_dim, hidden_dim=args.hidden_dim, precision=args.precision)
    variants = {"ours": ours, "plain fp32": dataclasses.replace(ours, precision="fp32", channels_last=False)}
    results: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, config in variants.items():
            results[name].append(run_variant(config, args.device, args))

    med = statistics.median
    rows = []
    for name, runs in results.items():
        seconds = med(r[0] for r in runs)
        rows.append((name, runs[0][2], seconds, args.batch / seconds, med(r[1] for r in runs)))
    base = rows[1][2]
    device = f"cuda: {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else \
        f"cpu ({args.threads or torch.get_num_threads()} threads)"
    print(f"StarGAN v2 training iteration on {device}: {args.size} px, batch {args.batch}, w_hpf {args.w_hpf}, "
          f"base_dim {args.base_dim or 2 ** 14 // args.size}, max_conv_dim {args.max_conv_dim}, hidden_dim "
          f"{args.hidden_dim}; medians of {args.repeats} runs x {args.steps} iterations (after {args.warmup} warm-up)")
    print()
    print("| trainer | precision | s/iteration | img/s | peak memory (MB) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for name, precision, seconds, imgs, peak in rows:
        print(f"| {name} | {precision} | {seconds:.3f} | {imgs:.1f} | {peak:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
