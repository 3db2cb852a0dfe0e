"""Train the part segmenter that names the catalog clusters of the shipped synthetic-face generator.

    nice -n 5 python tools/train_part_segmenter.py            # writes assets/part_segmenter_portrait_64.pt

The local-editing notebooks and tests name the clusters of ``assets/stylegan2_synthetic_64.pt`` automatically
(:func:`colab_utils.editing.auto_name_clusters`): a small segmenter labels the generator's samples. This script
trains it (:func:`colab_utils.editing.train_segmenter`) on the same ``"portrait"`` synthetic faces the
generator learnt, at 64 px, and prints its IoU per part on faces it never saw, the renderer's exact label maps
being the truth. A few CPU minutes; deterministic for a seed. The file is about 350 kB.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from colab_utils.data.synthetic import PARTS, make_faces  # noqa: E402
from colab_utils.editing.segmenter import part_iou, train_segmenter  # noqa: E402

SETTINGS = dict(n_faces=2048, size=64, steps=1200, batch_size=16, width=16, lr=3e-3, seed=0, preset="portrait")
HELD_OUT_SEED = 12345


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "part_segmenter_portrait_64.pt")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    start = time.time()
    net = train_segmenter(**SETTINGS, threads=args.threads)
    minutes = (time.time() - start) / 60
    images, labels = make_faces(256, SETTINGS["size"], seed=HELD_OUT_SEED, preset=SETTINGS["preset"])
    iou = part_iou(net.predict(images), torch.from_numpy(labels), len(PARTS))
    path = net.save(args.out)
    print(f"trained in {minutes:.1f} min with {SETTINGS}; wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    print("| part | IoU on 256 held-out faces |\n|---|---:|")
    for name, value in zip(PARTS, iou.tolist()):
        print(f"| {name} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
