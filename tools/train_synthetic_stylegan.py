"""Train the small 64 px StyleGAN2 on synthetic portraits that ships as ``assets/stylegan2_synthetic_64.pt``.

    nice -n 10 python tools/train_synthetic_stylegan.py --minutes 90            # start, or continue, a run
    nice -n 10 python tools/train_synthetic_stylegan.py --minutes 90 --fresh    # retrain from scratch

The local-editing notebooks and tests need a generator whose layers separate face parts (eyes, brows, nose,
mouth, hair, skin, background) without a download. This trains one with the project's own trainer
(:mod:`colab_utils.stylegan2.train`) on the CPU, in a wall-clock budget, on the ``"portrait"`` faces of
:mod:`colab_utils.data.synthetic` (aligned close-ups whose parts vary strongly and independently), and exports
its G average in the rosinality layout (``g_ema`` and ``latent_avg`` only, a few MB). The run is resumable:
running the script again with the same ``--run-dir`` continues it for another ``--minutes``; every session
exports the asset and a preview grid, and appends its settings and the step reached to ``training.json`` in the
run folder (copied beside the asset as ``<asset>.json``). The run folder lives outside the repository (by
default under ``~/.cache/colab_utils_demo``) so that a stopped session loses nothing.

The figures the shipped asset reaches (cluster IoUs, transfer errors) are printed by
``python bench/demo_figures.py``; the settings and the steps of each session are in
``assets/stylegan2_synthetic_64.json``.

Two profiles (``--profile``): ``cpu`` (the settings above, a narrow generator a 2-core CPU trains at ~20 img/s)
and ``gpu`` (channels 96 up to 32 px and 64 at 64 px, batch 32, path-length regularisation, compiled and in
mixed precision on CUDA; 3.4 MB as exported). On a lent GPU::

    python tools/train_synthetic_stylegan.py --profile gpu --minutes 8 --out /tmp/stylegan2_synthetic_64.pt
    python bench/demo_figures.py --only editing --generator /tmp/stylegan2_synthetic_64.pt --selectivity \\
        --sweep 0.03,0.05,0.1,0.2

Status (2026-12-02): the ``cpu`` profile was trained twice from scratch (the run folders of a session do not
survive it), to step 9020 (72 kimg) and to step 7665 (61 kimg). At 61 kimg its catalog (K=24, 32x32 layer) names
background, hair and skin (IoU 0.89, 0.69, 0.69), eyes (0.46-0.56), mouth (0.24-0.39), brows (0.17-0.20) and at
times the nose (0.09), and some channels are selective (up to 66% of one channel's activation inside the eyes,
whose area is 2.4%). But its channels are polysemantic: moving the eyes' channels to the reference's values
turns the target's eyes purple, the mouth's channels darken the irises, and no query threshold moves a facial
part towards the reference without moving the whole face (``--sweep``: at rho 0.1 every facial part's in-part
error to the reference *rises* by 1-28% with the outside nearly unchanged; at rho 0.03 the eyes' falls by 32%
but the outside changes by 139, a global edit). The layers are too narrow (16 and 32 channels at 64 and 32 px)
for every part to own channels; ``assets/stylegan2_synthetic_64.pt`` therefore remains the earlier generator
trained on the "classic" faces (step 6202), whose catalog names background, skin and hair, until a wider
generator (the ``gpu`` profile, or many CPU hours) reaches the figures the tests ask for.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from colab_utils import viz  # noqa: E402
from colab_utils.stylegan2 import export_rosinality, generate, mean_w  # noqa: E402
from colab_utils.stylegan2.train import SyntheticFaces, TrainConfig, train  # noqa: E402
from demo_runs import RUNS, open_run, record_session, session_parser  # noqa: E402

MAX_BYTES = 4_000_000
PRESET = "portrait"
CONFIG = TrainConfig(
    size=64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16}, style_dim=64, n_mlp=4,
    batch=8, lr=0.004, r1_gamma=0.2, pl_weight=0.0, mixing=0.5, ema_kimg=1.0, augment=False,
    precision="fp32", device="cpu", steps=100_000, sample_every=250, n_samples=32, log_every=10,
    checkpoint_minutes=3.0, keep_last=2, synthetic_images=6000,
    metrics_every_kimg=None, metrics_final_images=None,   # no FID: offline, and Inception costs more than the run
)
# A lent GPU trains a wider generator in minutes (the CPU one's layers are too narrow to give each face part its
# own channels, see the module docstring): 3.4 MB as exported, under the asset budget.
GPU_CONFIG = dataclasses.replace(
    CONFIG, channels={4: 96, 8: 96, 16: 96, 32: 96, 64: 64}, style_dim=96, batch=32, lr=0.0025, pl_weight=2.0,
    mixing=0.9, ema_kimg=10.0, precision="auto", device="cuda", compile="auto", checkpoint_minutes=2.0,
    sample_every=500,
)
PROFILES = {"cpu": (CONFIG, RUNS / "stylegan2_portrait_64"), "gpu": (GPU_CONFIG, RUNS / "stylegan2_portrait_64_gpu")}


def main(argv=None) -> int:
    parser = session_parser(__doc__.splitlines()[0], None, REPO / "assets" / "stylegan2_synthetic_64.pt",
                            "where the rosinality-format generator is written")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu",
                        help="cpu: the narrow generator a CPU trains in hours; gpu: a wider one for a CUDA GPU "
                             "(default run folder per profile)")
    args = parser.parse_args(argv)
    base, default_run = PROFILES[args.profile]
    args.run_dir = args.run_dir or default_run
    open_run(args)
    config = dataclasses.replace(base, session_hours=args.minutes / 60.0)
    data = SyntheticFaces(config.synthetic_images, config.size, seed=config.seed, preset=PRESET)
    started = time.time()
    result = train(config, data, args.run_dir, progress=True)
    minutes = (time.time() - started) / 60

    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = export_rosinality(args.out, result.g_ema, latent_avg=mean_w(result.g_ema))
    size = path.stat().st_size
    preview = viz.save_grid(generate(result.g_ema, 32, seed=0), args.out.with_suffix(".png"), nrow=8)
    log = record_session(args, base, minutes=minutes, step=result.step, batch=config.batch,
                         stopped=result.stopped, asset_bytes=size, preset=PRESET, profile=args.profile)
    print(f"step {result.step} ({result.step * config.batch / 1000:.1f} kimg, {minutes:.0f} min): wrote {path} "
          f"({size / 1e6:.2f} MB), {preview} and {log}; last training grid {result.grid}")
    if size > MAX_BYTES:
        print(f"error: {path} is {size} bytes, over the {MAX_BYTES} byte budget: use fewer channels", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
