"""What one slider update of the local editor costs, against a plain generator forward, in the same run.

    python bench/edit_latency.py                         # CPU: 256 px config-f-like and 64 px small generator
    python bench/edit_latency.py --device cuda --repeats 20

A slider update (``FaceEditor.set_strength``) blends cached style vectors and runs the synthesis network once;
a plain forward (``G([z])``) runs the mapping network, the affine style maps and the synthesis network. Random
weights (the cost does not depend on them); the catalog comes from a handful of samples with two parts named.
Runs alternate between the measures; the table shows medians.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from colab_utils.editing import build_catalog, tiny_generator
from colab_utils.runtime import default_device
from colab_utils.stylegan2 import Generator
from colab_utils.widgets import FaceEditor


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(name: str, G, device: torch.device, repeats: int) -> list[tuple]:
    G = G.to(device).eval()
    catalog = build_catalog(G, n_samples=4, layer_resolution=32, k=6, seed=0, batch_size=2, progress=False)
    catalog.set_parts({"eyes": [0], "mouth": [1, 2]})
    editor = FaceEditor(G, catalog, target=0, reference=1)
    z = torch.randn(1, G.style_dim, device=device)
    styles = [s.clone() for s in editor.transfer.target_styles]

    def forward():
        with torch.no_grad():
            G([z], randomize_noise=False)

    def synthesis():
        with torch.no_grad():
            G.synthesis(styles)

    values = iter([0.25, 0.75] * repeats * 2)
    measures = {"plain forward (mapping + styles + synthesis)": forward,
                "synthesis only": synthesis,
                "slider update (FaceEditor.set_strength)": lambda: editor.set_strength("eyes", next(values)),
                "slider update + PNG for the widget": lambda: (editor.set_strength("mouth", next(values)),
                                                                editor.png_bytes(with_sources=True))}
    for fn in measures.values():                                   # warm-up
        fn()
    times = {label: [] for label in measures}
    for _ in range(repeats):
        for label, fn in measures.items():
            times[label].append(timed(fn, device))
    base = statistics.median(times["plain forward (mapping + styles + synthesis)"])
    synth = statistics.median(times["synthesis only"])
    return [(name, label, statistics.median(t), statistics.median(t) / base, statistics.median(t) / synth)
            for label, t in times.items()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measure (medians are shown)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    parser.add_argument("--skip-256", action="store_true", help="only the small generator")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    torch.manual_seed(0)
    rows = []
    if not args.skip_256:
        big = Generator(256, style_dim=512, n_mlp=8, channel_multiplier=2)
        rows += measure("256 px, config-f channels (30 M params)", big, device, args.repeats)
        del big
    rows += measure("64 px, small (tiny_generator)", tiny_generator(64), device, args.repeats)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"edit latency: {device.type}{threads}; batch 1; medians of {args.repeats} alternating runs")
    print()
    print("| generator | measure | median | vs plain forward | vs synthesis only |")
    print("|---|---|---:|---:|---:|")
    for name, label, seconds, ratio, vs_synthesis in rows:
        print(f"| {name} | {label} | {seconds * 1e3:.1f} ms | {ratio:.2f}x | {vs_synthesis:.2f}x |")


if __name__ == "__main__":
    main()
