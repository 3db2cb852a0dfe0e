"""Train the small 64 px StyleGAN2 on synthetic faces that ships as ``assets/stylegan2_synthetic_64.pt``.

    nice python tools/train_synthetic_stylegan.py --minutes 45

The editing code's tests need a generator whose layers separate face parts (hair, skin, eyes, mouth) without a
download; this trains one on the CPU in a wall-clock budget and exports its G average in the rosinality layout
(g_ema and latent_avg only, under 2 MB). The run is resumable: running the script again with the same
``--run-dir`` continues it for another ``--minutes``. A preview grid is written beside the asset.

The shipped asset is step 6202 (about 50 kimg, two sessions of 40 and 30 minutes on a shared 2-core CPU;
about 2.4 steps/s on an idle one, one thread). Hair, skin, eyes and mouth are distinct from about step 5000.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from colab_utils import runtime, viz  # noqa: E402
from colab_utils.stylegan2 import export_rosinality, generate, mean_w  # noqa: E402
from colab_utils.stylegan2.train import SyntheticFaces, TrainConfig, train  # noqa: E402

MAX_BYTES = 2_000_000
CONFIG = TrainConfig(
    size=64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16}, style_dim=64, n_mlp=4,
    batch=8, lr=0.004, r1_gamma=0.2, pl_weight=0.0, mixing=0.5, ema_kimg=1.0, augment=False,
    precision="fp32", device="cpu", steps=100_000, sample_every=100, n_samples=32, log_every=10,
    checkpoint_minutes=3.0, keep_last=2, synthetic_images=4000,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget of this session (default 45)")
    parser.add_argument("--run-dir", type=Path, default=runtime.project_dir("runs") / "stylegan2_synthetic_64",
                        help="checkpoint folder; an existing run there is continued")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "stylegan2_synthetic_64.pt",
                        help="where the rosinality-format generator is written")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = CONFIG
    config.session_hours = args.minutes / 60.0
    data = SyntheticFaces(config.synthetic_images, config.size, seed=config.seed)
    result = train(config, data, args.run_dir, progress=True)

    path = export_rosinality(args.out, result.g_ema, latent_avg=mean_w(result.g_ema))
    size = path.stat().st_size
    preview = viz.save_grid(generate(result.g_ema, 32, seed=0), args.out.with_suffix(".png"), nrow=8)
    print(f"step {result.step}: wrote {path} ({size / 1e6:.2f} MB) and {preview}; last training grid {result.grid}")
    if size > MAX_BYTES:
        print(f"error: {path} is {size} bytes, over the {MAX_BYTES} byte budget: use fewer channels", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
