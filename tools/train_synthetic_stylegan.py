"""Train the 64 px StyleGAN2 that ships as ``assets/stylegan2_synthetic_64.pt``, the local-editing demo generator.

    nice -n 10 python tools/train_synthetic_stylegan.py --minutes 80 --threads 2          # start, or continue
    nice -n 10 python tools/train_synthetic_stylegan.py --minutes 80 --threads 2 --fresh  # retrain from scratch

The local-editing notebooks and tests need a generator whose style channels act on single face parts (eyes,
brows, nose, mouth, hair, skin, background) without a download. It is trained by
:func:`colab_utils.editing.demo_generator.train_demo_generator` (read its module docstring for the method: the
renderer of the synthetic faces supervises every face and every part swap), on the CPU, in a wall-clock budget,
and exported as a plain rosinality-format StyleGAN2 (``g_ema`` and ``latent_avg``, about 2 MB). The run is
resumable: running the script again with the same ``--run-dir`` continues it for another ``--minutes``; every
session exports the asset and a sheet comparing the generator with the renderer (``<asset>.png``), and appends
its settings and the step reached to ``training.json`` in the run folder (copied beside the asset as
``<asset>.json``). The run folder lives outside the repository (by default under ``~/.cache/colab_utils_demo``).

The figures the shipped asset reaches (cluster IoUs, each part's transfer) are printed by
``python bench/demo_figures.py --only editing``.

Why not adversarial training: the project's StyleGAN2 trainer, run on the same faces for 79 kimg (two CPU
sessions) with layers of 16-64 channels, gave a catalog that named every part, but whose channels each acted on
several parts: moving the eyes' channels turned the irises purple, and no query threshold moved a facial part
towards the reference without moving the whole face (at rho 0.1 the eyes' in-part error fell 16%, the mouth's
rose 15%). FFHQ's generator separates parts with 512-channel layers trained for days; the demo cannot.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from colab_utils.editing.demo_generator import DemoGeneratorConfig, comparison_sheet, train_demo_generator  # noqa: E402
from colab_utils.stylegan2 import export_rosinality, mean_w  # noqa: E402
from demo_runs import RUNS, open_run, record_session, session_parser  # noqa: E402

MAX_BYTES = 4_000_000
CONFIG = DemoGeneratorConfig(steps=7500)


def main(argv=None) -> int:
    parser = session_parser(__doc__.splitlines()[0], RUNS / "stylegan2_editing_64",
                            REPO / "assets" / "stylegan2_synthetic_64.pt",
                            "where the rosinality-format generator is written")
    args = parser.parse_args(argv)
    open_run(args)
    config = dataclasses.replace(CONFIG, session_hours=args.minutes / 60.0)
    started = time.time()
    result = train_demo_generator(config, args.run_dir, progress=True)
    minutes = (time.time() - started) / 60

    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = export_rosinality(args.out, result.g_ema, latent_avg=mean_w(result.g_ema))
    size = path.stat().st_size
    sheet = args.out.with_suffix(".png")
    comparison_sheet(result.g_ema, config).save(sheet)
    last = {name: round(values[-1][1], 4) for name, values in result.history.items() if values}
    log = record_session(args, CONFIG, minutes=minutes, step=result.step, batch=config.batch,
                         stopped=result.stopped, asset_bytes=size, losses=last)
    print(f"step {result.step} ({result.step * config.batch / 1000:.1f} kimg, {minutes:.0f} min, losses {last}): "
          f"wrote {path} ({size / 1e6:.2f} MB), {sheet} and {log}")
    if size > MAX_BYTES:
        print(f"error: {path} is {size} bytes, over the {MAX_BYTES} byte budget: use fewer channels", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
