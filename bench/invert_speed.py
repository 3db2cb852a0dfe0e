"""Seconds per photo for inverting a face: projection into W+ and pivotal tuning, per stage.

    python bench/invert_speed.py                                   # CPU: the shipped 64 px generator, few steps
    python bench/invert_speed.py --device cuda --config 256 --steps 1000 --tune-steps 350 --perceptual lpips-vgg

``--config shipped`` inverts with ``assets/stylegan2_synthetic_64.pt``; ``--config 256`` / ``1024`` with a
randomly initialised config-f-like generator of that size (the cost does not depend on the weights). Targets are
images the generator drew from seeded latents. ``--perceptual random`` (offline) or ``lpips-vgg`` (weights through
colab_utils.hub). The table shows, per stage, the steps run, the seconds for one photo, the seconds per step,
and the seconds a full-length run (1000 projection steps, 350 tuning steps, as in the papers) would take.
"""
from __future__ import annotations

import argparse
import time

import torch

from colab_utils.editing import load_generator, seeded_w_plus
from colab_utils.editing.invert import pivotal_tuning, project
from colab_utils.editing.perceptual import perceptual_distance
from colab_utils.stylegan2 import Generator

FULL = {"projection": 1000, "tuning": 350}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generator(config: str, device: torch.device):
    if config == "shipped":
        return load_generator("synthetic", device=device)[0]
    size = int(config)
    torch.manual_seed(0)
    return Generator(size, style_dim=512, n_mlp=8, channel_multiplier=2).to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="shipped", choices=["shipped", "256", "512", "1024"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tune-steps", type=int, default=10)
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--perceptual", default="random", choices=["random", "lpips-vgg"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G = generator(args.config, device)
    distance = perceptual_distance(args.perceptual, device)
    times = {"projection": [], "tuning": []}
    for photo in range(args.photos):
        with torch.no_grad():
            target = G.synthesis(G.style_vectors(seeded_w_plus(G, 1, 1000 + photo, truncation=0.7)))
        sync(device)
        start = time.perf_counter()
        projection = project(G, target, steps=args.steps, perceptual=distance, n_mean=10000, progress=False)
        sync(device)
        times["projection"].append(time.perf_counter() - start)
        start = time.perf_counter()
        pivotal_tuning(G, target, projection.w_plus, projection.noise, steps=args.tune_steps, perceptual=distance,
                       progress=False)
        sync(device)
        times["tuning"].append(time.perf_counter() - start)
    print(f"\ninverting {args.photos} photo(s) at {G.size} px ({args.config}) on {device}, {args.threads} thread(s), "
          f"perceptual: {getattr(distance, 'name', args.perceptual)}\n")
    print("| stage | steps | s / photo | s / step | s / photo at full length |")
    print("|---|---|---|---|---|")
    steps = {"projection": args.steps, "tuning": args.tune_steps}
    total = 0.0
    for stage, values in times.items():
        mean = sum(values) / len(values)
        per_step = mean / steps[stage]
        total += per_step * FULL[stage]
        print(f"| {stage} | {steps[stage]} | {mean:.2f} | {per_step:.3f} | {per_step * FULL[stage]:.0f} "
              f"({FULL[stage]} steps) |")
    print(f"| both | | {sum(sum(v) / len(v) for v in times.values()):.2f} | | {total:.0f} |")


if __name__ == "__main__":
    main()
