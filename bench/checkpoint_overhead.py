"""What checkpointing costs: save / verify / restore time for a model of a given size, and the training
slowdown when saving every N steps, measured in the same run (blocks with and without saving alternate).

    python bench/checkpoint_overhead.py --params-m 5 --every 20
    python bench/checkpoint_overhead.py --params-m 60 --device cuda --dir /content/bench_ckpt   # Colab

The model is a stack of square Linear layers (about ``--params-m`` million parameters) trained with Adam
and an EMA copy, so a checkpoint holds ~4x the parameter bytes (weights, EMA, two Adam moments).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch

from colab_utils.checkpoint import CheckpointManager
from colab_utils.runtime import default_device
from colab_utils.training import EMA, make_adam


def build(params_m: float, device: torch.device, width: int = 1024):
    layers = max(1, round(params_m * 1e6 / (width * width + width)))
    model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU())
                                  for _ in range(layers)]).to(device)
    ema = EMA(model, beta=0.999)
    opt = make_adam(model.parameters(), lr=1e-4, betas=(0.0, 0.99), device=device)
    return model, ema, opt


def train_step(model, ema, opt, x) -> None:
    loss = model(x).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ema.update(model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-m", type=float, default=5.0, help="model size in millions of parameters")
    parser.add_argument("--every", type=int, default=20, help="save every N steps in the slowdown measure")
    parser.add_argument("--block", type=int, default=40, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="runs / block pairs; the table shows medians")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    parser.add_argument("--dir", default=None, help="folder to save into (default: a temporary folder)")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    torch.manual_seed(0)
    model, ema, opt = build(args.params_m, device)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, model[0][0].in_features, device=device)
    objects = {"model": model, "ema": ema, "opt": opt}
    for _ in range(3):  # warm-up (allocations, Adam state)
        train_step(model, ema, opt, x)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        mgr = CheckpointManager(folder, keep_last=2, every_minutes=None, handle_signals=False, verbose=False)
        saves, verifies, restores = [], [], []
        for r in range(args.repeats):
            saves.append(timed(lambda: mgr.save(r + 1, objects), device))
            path = mgr.latest()
            mgr._verified.clear()  # time the full sha256 check, not the cache
            verifies.append(timed(mgr.latest, device))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                restores.append(timed(lambda: mgr.restore(objects, map_location=device), device))
        size_mb = path.stat().st_size / 2 ** 20

        plain_blocks, saving_blocks = [], []
        step = 1000
        for _ in range(args.repeats):
            def block(save: bool) -> float:
                nonlocal step
                start = time.perf_counter()
                for _ in range(args.block):
                    step += 1
                    train_step(model, ema, opt, x)
                    if save and step % args.every == 0:
                        mgr.save(step, objects)
                sync(device)
                return (time.perf_counter() - start) / args.block
            plain_blocks.append(block(False))
            saving_blocks.append(block(True))
        mgr.close()

    med = statistics.median
    base, with_saves = med(plain_blocks), med(saving_blocks)
    rows = [
        ("save (serialize, write, fsync, verify)", f"{med(saves):.3f} s", f"{size_mb / med(saves):.0f} MB/s"),
        ("latest() (sha256 of the newest file)", f"{med(verifies):.3f} s", ""),
        ("restore (load + copy into objects)", f"{med(restores):.3f} s", ""),
        ("train step, no saving", f"{base * 1e3:.1f} ms", ""),
        (f"train step, saving every {args.every} steps", f"{with_saves * 1e3:.1f} ms",
         f"{(with_saves / base - 1) * 100:+.1f} %"),
        ("saving every 10 minutes (derived: save / 600 s)", f"{med(saves) / 600 * 100:.3f} %", "of wall time"),
    ]
    print(f"checkpoint overhead: {device.type}, {n_params / 1e6:.1f} M parameters (+ EMA + Adam), checkpoint "
          f"{size_mb:.1f} MB, batch {args.batch}; medians of {args.repeats} runs / blocks of {args.block} steps")
    print()
    print("| measure | median | note |")
    print("|---|---:|---:|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    main()
