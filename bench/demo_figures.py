"""The figures of the two small models the project ships, as tables (issue: every capability shown working).

    python bench/demo_figures.py                    # both models
    python bench/demo_figures.py --only editing     # or: --only stargan
    python bench/demo_figures.py --only editing --generator ~/.cache/colab_utils_demo/stylegan2_editing_64 \\
        --k 24 --selectivity --sweep 0.02,0.05,0.1,0.2 # a run in progress, with the diagnostics

Editing generator (``assets/stylegan2_synthetic_64.pt``): its catalog (k-means on the 32x32 features) is
named automatically by the shipped segmenter (``assets/part_segmenter_portrait_64.pt``); the table gives
every cluster's IoU with the part it was named after, the IoU of each part's clusters together, then, per
facial part, the in-part error to the reference without and with the transfer (CIELAB MSE, part located by the
segmenter in target or reference) and the change outside the part. StarGAN v2 demo
(``assets/stargan_v2_demo_32_nets_ema.ckpt``, loaded through the official-format loader): target-domain
accuracy of its translations by a colour classifier and the change of the background
(:mod:`colab_utils.stargan.demo`). The tests in ``tests/test_demo_assets.py`` assert floors on these figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def editing(pairs: int, generator: str, k: int, sweep: list[float] | None, selectivity: bool) -> None:
    from colab_utils.editing import figures_table, load_generator, load_segmenter
    from colab_utils.editing.figures import (DEMO_CATALOG, FACIAL_PARTS, channel_selectivity, demo_editing_figures,
                                             renderer_transfer_figures, sweep_table, threshold_sweep)

    G, description = load_generator(generator, device="cpu")
    segmenter = load_segmenter()
    pair_list = tuple((2 * i, 2 * i + 1) for i in range(pairs))
    start = time.perf_counter()
    catalog, naming, figures = demo_editing_figures(G, segmenter, catalog_options={"k": k}, pairs=pair_list)
    print(f"## Editing generator: {description}\n\ncatalog {dict(DEMO_CATALOG, k=k)}; {pairs} pairs; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(naming.table())
    print()
    print(figures_table(figures) if figures else "no facial part was named")
    print("\nThe renderer's exact part swaps on 16 pairs of portrait faces (true label maps): the most this measure "
          "allows\n")
    print(figures_table(renderer_transfer_figures(16)))
    print()
    facial = [p for p in FACIAL_PARTS if p in catalog.parts]
    if selectivity and facial:
        print("### Channel selectivity (largest share of one channel's activation inside the part)\n")
        print(channel_selectivity(catalog, facial))
        print()
    if sweep and facial:
        print("### Query threshold sweep (epsilon: no limit)\n")
        print(sweep_table(threshold_sweep(G, catalog, segmenter, pair_list, sweep, parts=facial)))
        print()


def stargan(n: int) -> None:
    from colab_utils.stargan.demo import demo_model_path, domain_figures, load_demo

    nets = load_demo()
    start = time.perf_counter()
    figures = domain_figures(nets, n=n)
    print(f"## StarGAN v2 demo: {demo_model_path().name}\n\n{n} faces per domain; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(figures.table())
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("editing", "stargan"), help="measure one model only")
    parser.add_argument("--pairs", type=int, default=8, help="(target, reference) pairs for the transfer figures")
    parser.add_argument("--faces", type=int, default=16, help="faces per domain for the StarGAN figures")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--generator", default="synthetic",
                        help="the editing generator to measure: 'synthetic' (the shipped asset), a rosinality .pt, or "
                             "a StyleGAN2 run folder (its newest checkpoint), e.g. a demo run in progress")
    parser.add_argument("--k", type=int, default=18, help="catalog clusters (default 18, the notebooks' K)")
    parser.add_argument("--sweep", type=lambda v: [float(x) for x in v.split(",")],
                        help="comma-separated rho values: each facial part's fall and out-of-part change at each")
    parser.add_argument("--selectivity", action="store_true",
                        help="per style layer, the largest share of one channel's activation inside each part")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only in (None, "editing"):
        editing(args.pairs, args.generator, args.k, args.sweep, args.selectivity)
    if args.only in (None, "stargan"):
        stargan(args.faces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
