"""Scaling of data-parallel training (colab_utils.distributed: torchrun's environment + DDP) on this machine.

Trains a small StyleGAN2 discriminator-sized conv net on random 64px batches with the same global batch in 1
process and in N processes, and prints images/s, the speed-up and the scaling efficiency
(throughput with N processes / N x throughput with one), median of several timed blocks.

    python bench/distributed_scaling.py                       # CPU: gloo overhead with 2 processes
    python bench/distributed_scaling.py --device cuda --procs 1,2,4,8 --batch 64   # a multi-GPU box (NCCL)

On a CPU the processes share the same cores, so "efficiency" there measures what gloo's all-reduce and the
extra processes cost, not a speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colab_utils import distributed  # noqa: E402


def make_model(width: int) -> torch.nn.Module:
    layers, channels = [], 3
    for i in range(4):
        out = width * 2 ** i
        layers += [torch.nn.Conv2d(channels, out, 3, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.AvgPool2d(2)]
        channels = out
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.LazyLinear(1))


def worker(device: str, global_batch: int, width: int, warmup: int, blocks: int, steps: int, out: str) -> None:
    dist = distributed.init(device)
    dev = dist.device(device)
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))
    torch.manual_seed(0)
    model = make_model(width).to(dev)
    model(torch.zeros(1, 3, 64, 64, device=dev))  # materialise the lazy layer before DDP sees it
    ddp = distributed.wrap(model, dist)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = distributed.per_rank_batch(global_batch, dist)
    x = torch.randn(batch, 3, 64, 64, device=dev)

    def one_step():
        loss = torch.nn.functional.softplus(ddp(x)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    times = []
    for _ in range(blocks):
        distributed.barrier(dist)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        distributed.barrier(dist)
        times.append(time.perf_counter() - start)
    if dist.is_main:
        Path(out).write_text(json.dumps(times))
    distributed.shutdown(dist)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts; 1 is the baseline")
    parser.add_argument("--batch", type=int, default=16, help="global batch (split over the processes)")
    parser.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    procs = sorted({int(p) for p in args.procs.split(",")} | {1})
    if args.device == "cuda" and max(procs) > torch.cuda.device_count():
        parser.error(f"--procs {max(procs)} needs as many GPUs; this machine has {torch.cuda.device_count()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in procs:
            out = str(Path(tmp) / f"{n}.json")
            distributed.launch_local(worker, n, args.device, args.batch, args.width, args.warmup, args.blocks,
                                     args.steps, out)
            seconds = statistics.median(json.loads(Path(out).read_text()))
            rows.append((n, args.steps * args.batch / seconds, seconds / args.steps))
    base = rows[0][1]
    backend = "NCCL" if args.device == "cuda" else "gloo"
    print(f"data-parallel scaling: {args.device} ({backend}), global batch {args.batch}, 64px conv net width "
          f"{args.width}; median of {args.blocks} blocks of {args.steps} steps\n")
    print("| processes | img/s | s/step | speed-up | efficiency |")
    print("|---:|---:|---:|---:|---:|")
    for n, ips, sps in rows:
        print(f"| {n} | {ips:.1f} | {sps:.3f} | {ips / base:.2f}x | {ips / (base * n) * 100:.0f} % |")


if __name__ == "__main__":
    main()
