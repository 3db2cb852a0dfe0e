"""Train the small StarGAN v2 demo model on two synthetic face domains, shipped as ``assets/stargan_v2_demo_32_nets_ema.ckpt``.

    nice -n 10 python tools/train_stargan_demo.py --minutes 90            # start, or continue, a run
    nice -n 10 python tools/train_stargan_demo.py --minutes 90 --fresh    # retrain from scratch

Notebooks 04 and 05 need a trained StarGAN v2 in smoke mode, where nothing can be downloaded. This trains one
with the project's own trainer (:mod:`colab_utils.stargan.train`, the official objective and schedule) on the
CPU, on the two colour families of the synthetic ``"portrait"`` faces (:mod:`colab_utils.data.synthetic`):
fair skin with blond hair against dark skin with dark hair, every face in front of one studio backdrop
(``background="studio"``), so a good translation recolours the face and hair and keeps pose, layout and
background. Sizes are small (32 px, first convolution 16 channels, at most 64) and there is no FAN high-pass skip
(``w_hpf=0``), so it runs without any download. The run is resumable: running the script again with the same
``--run-dir`` continues it for another ``--minutes`` (the trainer keeps the data order, averages and optimizers).
Every session ends with the trainer's official-format export (``<step>_nets_ema.ckpt``), which is copied to
``--out`` with a preview grid, and appends its settings and the step reached to ``training.json`` (copied beside
the asset). The run folder lives outside the repository (by default under ``~/.cache/colab_utils_demo``).

The figures the shipped asset reaches (domain colour distance, background change) are printed by
``python bench/demo_figures.py --only stargan``.

Against the official CelebA-HQ recipe the short CPU schedule doubles the learning rate (2e-4; mapping network
1e-5), halves the diversity weight (0.5, decaying to 0 over the 6000 iterations) and turns the random crops off.
The shipped file is iteration 6000 (48 kimg, batch 8): one session of 100 minutes, one thread, on a shared 2-core
CPU. On 16 unseen faces per domain every latent- and reference-guided translation lands in the target domain
(colour classifier: 100% and 100%; the skin and hair colour distance to the target domain's mean falls from
272 to 33.5), and the backdrop moves by 5.3 grey levels on average (6.3 between two faces' backdrops). An
earlier run on faces whose backgrounds varied within both domains (the portrait preset's own) translated as
well but moved the background by 41 levels: with nothing in the objective tying the background to the source,
the style code carried it (the reference's, or a random one).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from colab_utils.data.synthetic import STYLES, write_domain_folders  # noqa: E402
from colab_utils.stargan.formats import load_official  # noqa: E402
from colab_utils.stargan.synthesize import reference_grid  # noqa: E402
from colab_utils.stargan.data import fixed_examples, load_domains  # noqa: E402
from colab_utils.stargan.train import TrainConfig, train  # noqa: E402
from demo_runs import RUNS, open_run, record_session, session_parser  # noqa: E402

MAX_BYTES = 4_000_000
PRESET = "portrait"
BACKGROUND = "studio"   # one backdrop for every face: nothing outside the face for the style to carry
N_TRAIN, N_VAL, DATA_SEED = 1500, 100, 0
CONFIG = TrainConfig(
    img_size=32, base_dim=16, max_conv_dim=64, hidden_dim=64, style_dim=16, latent_dim=16, w_hpf=0.0,
    batch=8, lr=2e-4, f_lr=1e-5, lambda_ds=0.5, ds_iter=6000, total_iters=6000, precision="fp32",
    crop_prob=0.0, workers=0, seed=777, sample_every=250, sample_per_domain=3, log_every=10,
    checkpoint_minutes=3.0, keep_last=2,
)
DEFAULT_RUN = RUNS / "stargan_v2_demo_32_studio"
ASSET = REPO / "assets" / "stargan_v2_demo_32_nets_ema.ckpt"


def domain_data(run_dir: Path) -> Path:
    """The two domain folders (written once into the run folder, the same bytes on every machine)."""
    root = run_dir / "data"
    marker = root / "complete.json"
    if not marker.is_file():
        write_domain_folders(root, N_TRAIN, N_VAL, size=CONFIG.img_size, seed=DATA_SEED, domains=STYLES,
                             preset=PRESET, background=BACKGROUND)
        marker.write_text(json.dumps({"n_train": N_TRAIN, "n_val": N_VAL, "seed": DATA_SEED, "preset": PRESET,
                                      "background": BACKGROUND}))
    return root


def main(argv=None) -> int:
    args = session_parser(__doc__.splitlines()[0], DEFAULT_RUN, ASSET,
                          "where the official-format nets_ema file is copied").parse_args(argv)
    open_run(args)
    config = dataclasses.replace(CONFIG, session_hours=args.minutes / 60.0)
    root = domain_data(args.run_dir)
    started = time.time()
    result = train(config, root, args.run_dir / "run", device="cpu", progress=True)
    minutes = (time.time() - started) / 60
    if result.exported is None:
        print("error: the run stopped before its first iteration; nothing to export", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.exported, args.out)
    size = args.out.stat().st_size
    nets, _ = load_official(args.out)                       # the path users take for official weights
    val = load_domains(root, CONFIG.img_size, split="val", min_images=1, cache=False)
    images, domains = fixed_examples(val, 4, seed=1)
    preview = args.out.with_suffix(".png")
    reference_grid(nets.eval(), images, images, domains, path=preview, progress=False)
    log = record_session(args, CONFIG, minutes=minutes, step=result.step, batch=CONFIG.batch,
                         stopped=result.stop_reason, asset_bytes=size,
                         data={"preset": PRESET, "background": BACKGROUND, "domains": list(STYLES),
                               "n_train": N_TRAIN, "n_val": N_VAL, "seed": DATA_SEED})
    print(f"iteration {result.step} of {CONFIG.total_iters} ({minutes:.0f} min): wrote {args.out} "
          f"({size / 1e6:.2f} MB), {preview} and {log}")
    if size > MAX_BYTES:
        print(f"error: {args.out} is {size} bytes, over the {MAX_BYTES} byte budget: use smaller widths",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
