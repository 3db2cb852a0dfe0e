"""The figures of the two small models the project ships, as tables (issue: every capability shown working).

    python bench/demo_figures.py                    # both models
    python bench/demo_figures.py --only editing     # or: --only stargan

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


def editing(pairs: int) -> None:
    from colab_utils.editing import figures_table, load_generator, load_segmenter
    from colab_utils.editing.figures import DEMO_CATALOG, demo_editing_figures

    G, description = load_generator("synthetic", device="cpu")
    start = time.perf_counter()
    catalog, naming, figures = demo_editing_figures(G, load_segmenter(),
                                                    pairs=tuple((2 * i, 2 * i + 1) for i in range(pairs)))
    print(f"## Editing generator: {description}\n\ncatalog {DEMO_CATALOG}; {pairs} pairs; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(naming.table())
    print()
    print(figures_table(figures) if figures else "no facial part was named")
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only in (None, "editing"):
        editing(args.pairs)
    if args.only in (None, "stargan"):
        stargan(args.faces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
