"""Command line: ``python -m colab_utils.stylegan2 train|generate|export|evaluate``.

    python -m colab_utils.stylegan2 train --data faces.zip --run-dir runs/faces --size 256 --kimg 5000
    python -m colab_utils.stylegan2 generate --ckpt runs/faces --n 16 --out samples.png --interpolate walk.gif
    python -m colab_utils.stylegan2 export --ckpt runs/faces --out faces-256.pt
    python -m colab_utils.stylegan2 evaluate --ckpt runs/faces --data faces.zip       # fid50k_full, kid50k_full

``train`` continues the newest checkpoint in ``--run-dir`` by itself, so the same command works after a
disconnect or under ``nohup``; SIGTERM / Ctrl-C stop it with a checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from colab_utils import cli

PROG = "python -m colab_utils.stylegan2"
# One line per command that runs as written from a clone in seconds (tests/test_cli_jobs.py runs them in order,
# beside a folder faces/ of images); the module docstring shows full-size runs.
EXAMPLES = {
    "train": f"{PROG} train --data synthetic --synthetic-images 64 --run-dir runs/trial --size 32 --channels 32 "
             f"--style-dim 64 --n-mlp 2 --batch 4 --steps 4 --n-samples 4 --metrics-every-kimg none "
             f"--metrics-final-images none",
    "generate": f"{PROG} generate --ckpt assets/stylegan2_synthetic_64.pt --n 4 --out samples.png "
                f"--interpolate walk.gif --steps-per-pair 4",
    "export": f"{PROG} export --ckpt runs/trial --out trial.pt",
    "evaluate": f"{PROG} evaluate --ckpt runs/trial --data faces --n 64 --extractor random",
}

DEFAULTS = None  # filled lazily with TrainConfig() so `--help` shows the real defaults


def _defaults():
    global DEFAULTS
    if DEFAULTS is None:
        from .train import TrainConfig

        DEFAULTS = TrainConfig()
    return DEFAULTS


def _channels(text: str):
    """An int cap, or a JSON table like '{"4": 512, "8": 512, ...}'."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return {int(k): int(v) for k, v in json.loads(text).items()}
        except (ValueError, AttributeError) as err:
            raise argparse.ArgumentTypeError(f"--channels table must map resolutions to counts: {err}") from None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--channels must be an int or a JSON table, got {text!r}") from None


def _optional_float(text: str):
    return None if text.lower() in ("none", "off") else float(text)


def _optional_int(text: str):
    return None if text.lower() in ("none", "off") else int(text)


def _add_train(sub) -> None:
    d = _defaults()
    p = sub.add_parser("train", help="train or continue a run", formatter_class=cli.DefaultsHelpFormatter,
                       epilog=cli.examples(EXAMPLES["train"]),
                       description="Train StyleGAN2 (or continue the newest checkpoint in --run-dir).")
    g = p.add_argument_group("data and folders")
    g.add_argument("--data", default="synthetic",
                   help="an image folder (searched recursively; jpg/png/webp), a .zip of one (copied to local disk "
                        "first), or 'synthetic' for procedural faces")
    g.add_argument("--run-dir", type=Path, default=Path("runs/stylegan2"),
                   help="checkpoint folder; an existing run there is continued (see --resume)")
    g.add_argument("--out-dir", type=Path, default=None,
                   help="sample grids, progress GIF, loss curves and the final export (default: --drive-dir, else "
                        "--run-dir)")
    g.add_argument("--drive-dir", default=d.drive_dir,
                   help="also copy every checkpoint here (Google Drive); a full, stale, unmounted or hung Drive is "
                        "warned about and retried, never fatal")
    g.add_argument("--drive-wait-s", type=float, default=d.drive_wait_s,
                   help="at the end of a run, or a stop by SIGTERM, wait at most this many seconds for Drive "
                        "copies; what is left is reported with the command that copies it later")
    g.add_argument("--resume", choices=("auto", "fresh"), default="auto",
                   help="auto: continue the newest verified checkpoint in --run-dir; fresh: refuse a run folder "
                        "that already holds checkpoints")
    g.add_argument("--synthetic-images", type=int, default=d.synthetic_images,
                   help="how many faces --data synthetic draws")
    g = p.add_argument_group("networks")
    g.add_argument("--size", type=int, default=d.size, help="image side: a power of two from 32 to 1024")
    g.add_argument("--channel-multiplier", type=int, default=d.channel_multiplier,
                   help="2 = the paper's config-f channel table, 1 = half as wide above 32 px")
    g.add_argument("--channels", type=_channels, default=d.channels,
                   help="cap every resolution at this many feature maps (an int), or a JSON table "
                        "'{\"4\": 256, ...}' (default: the paper's table)")
    g.add_argument("--style-dim", type=int, default=d.style_dim, help="length of z and w")
    g.add_argument("--n-mlp", type=int, default=d.n_mlp, help="layers of the mapping network")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch", type=int, default=d.batch, help="images per step (even)")
    g.add_argument("--kimg", type=float, default=d.kimg, help="training length in thousands of real images")
    g.add_argument("--steps", type=int, default=d.steps, help="training length in steps (overrides --kimg)")
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (before the lazy-regularisation "
                                                          "correction)")
    g.add_argument("--r1-gamma", type=float, default=d.r1_gamma, help="R1 penalty weight (0 switches R1 off)")
    g.add_argument("--r1-every", type=int, default=d.r1_every, help="steps between R1 (lazy) regularisation steps")
    g.add_argument("--pl-weight", type=float, default=d.pl_weight,
                   help="path-length penalty weight (0 switches it off)")
    g.add_argument("--pl-every", type=int, default=d.pl_every, help="steps between path-length regularisation steps")
    g.add_argument("--mixing", type=float, default=d.mixing, help="style-mixing probability")
    g.add_argument("--ema-kimg", type=float, default=d.ema_kimg,
                   help="half-life of the generator average in thousands of images")
    g.add_argument("--ema-rampup", type=_optional_float, default=d.ema_rampup,
                   help="early on, the half-life is at most this fraction of the images seen ('none': off)")
    g.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=d.mirror,
                   help="random horizontal flips of the real images")
    g = p.add_argument_group("adaptive augmentation (for datasets of a few thousand images)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                   help="differentiable augmentation of everything the discriminator sees")
    g.add_argument("--ada-target", type=_optional_float, default=d.ada_target,
                   help="target for E[sign(D(real))]; p rises above it, falls below ('none': keep --ada-p fixed)")
    g.add_argument("--ada-p", type=float, default=d.ada_p, help="starting (or fixed) augmentation probability")
    g.add_argument("--ada-speed-kimg", type=float, default=d.ada_speed_kimg,
                   help="thousands of images for p to go from 0 to 1")
    g = p.add_argument_group("speed")
    g.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default=d.precision,
                   help="auto: bf16 on Ampere and newer GPUs, fp16 with a grad scaler on older ones (T4), fp32 on CPU")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last,
                   help="NHWC memory format (default: on CUDA, where tensor cores want it; off on the CPU)")
    g.add_argument("--compile", choices=("auto", "on", "off"), default=d.compile,
                   help="torch.compile G and D (auto: on CUDA; the first steps then take a few minutes to compile, "
                        "cached on Drive in Colab for the next session)")
    g.add_argument("--plain", action="store_true",
                   help="plain fp32 eager: no autocast, no channels_last, no fused Adam, no cuDNN autotuning, "
                        "no compile")
    cli.add_device_argument(g, default=d.device)
    g.add_argument("--workers", type=int, default=d.workers,
                   help="data loader processes (default: 2 on a GPU for image folders too big to cache, else 0)")
    g = p.add_argument_group("pictures, checkpoints, session")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the whole run")
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids")
    g.add_argument("--n-samples", type=int, default=d.n_samples, help="images in each sample grid")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between recorded losses")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints (default: by time only)")
    g.add_argument("--checkpoint-minutes", type=_optional_float, default=d.checkpoint_minutes,
                   help="minutes between checkpoints ('none': by steps only)")
    g.add_argument("--keep-last", type=int, default=d.keep_last, help="how many recent checkpoints to keep")
    g.add_argument("--session-hours", type=float, default=d.session_hours,
                   help="stop with a checkpoint shortly before this many hours (Colab: about 11.5)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (log files)")
    g = p.add_argument_group("quality metrics (FID / KID of the G average against every training image)")
    g.add_argument("--metrics-every-kimg", type=_optional_float, default=d.metrics_every_kimg,
                   help="thousands of images between evaluations ('none': never); the history is kept in the "
                        "checkpoints and the best snapshot as best-fid.pt")
    g.add_argument("--metrics-images", type=int, default=d.metrics_images,
                   help="generated images of each periodic evaluation (fid10k_full with 10000)")
    g.add_argument("--metrics-final-images", type=_optional_int, default=d.metrics_final_images,
                   help="generated images of the evaluation when the run completes ('none': skip it)")
    g.add_argument("--metrics-kid", action=argparse.BooleanOptionalAction, default=d.metrics_kid,
                   help="KID beside every FID")
    g.add_argument("--metrics-batch", type=int, default=d.metrics_batch, help="images per metric batch")
    g.add_argument("--stats-dir", type=Path, default=None,
                   help="where the real images' feature statistics are cached (default: beside a zip, inside a "
                        "folder)")


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample images or an interpolation GIF",
                       formatter_class=cli.DefaultsHelpFormatter,
                       epilog=cli.examples(EXAMPLES["generate"]),
                       description="Sample from a training checkpoint, a run folder (its newest checkpoint) or a "
                                   "rosinality .pt file (e.g. stylegan2-ffhq-config-f.pt).")
    cli.add_checkpoint_argument(p, "--ckpt", "--checkpoint", help="checkpoint file, run folder or rosinality .pt")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same images")
    p.add_argument("--truncation", type=float, default=1.0,
                   help="pull w toward the average w (0.5-0.8 gives cleaner, less varied faces; 1 = off)")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="grid image to write")
    p.add_argument("--nrow", type=int, default=8, help="images per grid row")
    p.add_argument("--interpolate", type=Path, default=None,
                   help="also write a looping latent walk through the --n seeds as .gif or .mp4")
    p.add_argument("--steps-per-pair", type=int, default=24, help="frames between two seeds of the walk")
    p.add_argument("--fps", type=float, default=24, help="frames per second of the walk")
    cli.add_device_argument(p)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="training checkpoint -> rosinality .pt",
                       formatter_class=cli.DefaultsHelpFormatter,
                       epilog=cli.examples(EXAMPLES["export"]),
                       description="Write the networks of a training checkpoint (or the newest one of a run folder) "
                                   "as a rosinality/stylegan2-pytorch file: g_ema, g, d and latent_avg.")
    cli.add_checkpoint_argument(p, "--ckpt", "--checkpoint", help="training checkpoint file or run folder")
    p.add_argument("--out", type=Path, required=True, help="the .pt file to write")
    p.add_argument("--g-ema-only", action="store_true", help="only g_ema and latent_avg (a smaller file for sampling)")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="FID / KID of a checkpoint against a dataset",
                       formatter_class=cli.DefaultsHelpFormatter,
                       epilog=cli.examples(EXAMPLES["evaluate"]),
                       description="fid50k_full and kid50k_full (50,000 generated images against every real image, as "
                                   "NVlabs' StyleGAN2 reports them) of a training checkpoint, a run folder (its "
                                   "newest checkpoint) or a rosinality .pt file. A training checkpoint's metric "
                                   "history is printed first.")
    cli.add_checkpoint_argument(p, "--ckpt", "--checkpoint", help="checkpoint file, run folder or rosinality .pt")
    p.add_argument("--data", help="the real images: an image folder, a .zip of one, or 'synthetic' (required "
                                  "unless --history)")
    p.add_argument("--n", type=int, default=50_000, help="generated images")
    p.add_argument("--kid", action=argparse.BooleanOptionalAction, default=True, help="KID beside FID")
    p.add_argument("--batch", type=int, default=32, help="images per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    p.add_argument("--extractor", choices=("inception", "random"), default="inception",
                   help="inception: the standard FID network (weights downloaded once); random: a small fixed "
                        "random network, offline, whose numbers compare only with each other")
    p.add_argument("--stats-dir", type=Path, default=None,
                   help="where the real images' statistics are cached (default: beside a zip, inside a folder)")
    p.add_argument("--history", action="store_true", help="only print the metric history of a training checkpoint")
    p.add_argument("--json", type=Path, default=None, help="also write the values to this JSON file")
    cli.add_device_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="Run '<command> --help' for the options of each command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,generate,export,evaluate}")
    _add_train(sub)
    _add_generate(sub)
    _add_export(sub)
    _add_evaluate(sub)
    return parser


def _config(args):
    from .train import TrainConfig, plain_fp32

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["drive_dir"] = str(args.drive_dir) if args.drive_dir else None
    config = TrainConfig(**values)
    return plain_fp32(config) if args.plain else config


def run_train(args) -> int:
    from .train import latest_checkpoint, train

    config = _config(args)
    if args.resume == "fresh":
        try:
            found = latest_checkpoint(args.run_dir)
        except FileNotFoundError:
            found = None
        if found is not None:
            raise ValueError(f"--resume fresh but {args.run_dir} already holds {found.name}: pick another "
                             f"--run-dir or use --resume auto")
    data = args.data if args.data == "synthetic" else Path(args.data)
    result = train(config, data, args.run_dir, out_dir=args.out_dir, progress=not args.no_progress,
                   stats_dir=args.stats_dir)
    if result.checkpoint is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    print(f"checkpoint: {result.checkpoint}")
    if result.export:
        print(f"rosinality export: {result.export}")
    return 0


def run_generate(args) -> int:
    from colab_utils import viz

    from .generate import generate, save_interpolation
    from .train import load_checkpoint

    device = cli.device_from(args.device)
    net = load_checkpoint(args.checkpoint, device=device)
    images = generate(net.g_ema, args.n, seed=args.seed, truncation=args.truncation)  # toward the file's latent_avg
    print(f"wrote {viz.save_grid(images, args.out, nrow=args.nrow)}")
    if args.interpolate is not None:
        seeds = [args.seed + i for i in range(max(2, args.n))]
        path = save_interpolation(net.g_ema, args.interpolate, seeds, args.steps_per_pair, args.truncation,
                                  fps=args.fps)
        print(f"wrote {path}")
    return 0


def run_export(args) -> int:
    from .formats import export_rosinality
    from .generate import mean_w
    from .train import load_checkpoint

    net = load_checkpoint(args.checkpoint)
    latent_avg = net.latent_avg if net.latent_avg is not None else mean_w(net.g_ema)
    keep = not args.g_ema_only
    path = export_rosinality(args.out, net.g_ema, g=net.g if keep else None, d=net.d if keep else None,
                             latent_avg=latent_avg)
    print(f"wrote {path} ({net.config['size']} px, style_dim {net.config['style_dim']}, from {net.source})")
    return 0


def _stored_history(path: Path):
    """The metric history inside a training checkpoint (or a run folder's newest), else None."""
    from colab_utils.checkpoint import FORMAT, safe_load
    from colab_utils.metrics import MetricHistory

    from .train import latest_checkpoint

    path = latest_checkpoint(path) if path.is_dir() else path
    payload = safe_load(path)
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT):
        return None
    return MetricHistory.from_state(payload.get("extra", {}).get("metrics"))


def run_evaluate(args) -> int:
    from colab_utils import metrics

    from .evaluate import evaluate_checkpoint

    history = _stored_history(args.checkpoint)
    if history is not None:
        print(f"metric history of {args.checkpoint}:\n{history.table()}")
    elif args.history:
        raise ValueError(f"{args.checkpoint} is not a training checkpoint of colab_utils: it has no metric history")
    if args.history:
        return 0
    if args.data is None:
        raise ValueError("evaluate needs --data (the real images the generator was trained on)")
    device = cli.device_from(args.device)
    extractor = metrics.RandomFeatures().to(device) if args.extractor == "random" else None
    if extractor is not None:
        print("features: a small fixed random network (--extractor random): not comparable with published FIDs")
    data = args.data if args.data == "synthetic" else Path(args.data)
    values = evaluate_checkpoint(args.checkpoint, data, n=args.n, kid=args.kid, extractor=extractor, device=device,
                                 batch_size=args.batch, seed=args.seed, stats_dir=args.stats_dir)
    for name, value in values.items():
        print(f"{name}: {value:.6g}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "data": str(args.data), **values},
                                        indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    return cli.run(build_parser(), {"train": run_train, "generate": run_generate, "export": run_export,
                                    "evaluate": run_evaluate}, argv)


if __name__ == "__main__":
    sys.exit(main())
