"""Command line for StarGAN v2: ``python -m colab_utils.stargan train|sample|align|export|evaluate --help``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path

from colab_utils import cli

DESCRIPTION = """StarGAN v2 (Choi et al., CVPR 2020): train on your own domain folders across interrupted
sessions, translate aligned faces with references or latent codes, align photos like CelebA-HQ, and export
training checkpoints to the official clovaai/stargan-v2 file layout."""

EXAMPLES = """examples:
  python -m colab_utils.stargan align --src photos/ --out aligned/
  python -m colab_utils.stargan train --data faces.zip --run-dir runs/me --fan-path wing.ckpt
  torchrun --nproc_per_node=4 -m colab_utils.stargan train --data faces.zip --run-dir runs/me --batch 32
  python -m colab_utils.stargan sample --checkpoint runs/me --src aligned/ --ref refs/ --out results/
  python -m colab_utils.stargan export --checkpoint runs/me --out 100000_nets_ema.ckpt
  python -m colab_utils.stargan evaluate --checkpoint 100000_nets_ema.ckpt --fan wing.ckpt --data celeba_hq/"""


PROG = "python -m colab_utils.stargan"
# One line per command that runs as written from a clone in seconds (tests/test_cli_jobs.py runs them in order,
# beside photos/ and faces/{train,val}/<domain>/ folders); EXAMPLES above shows full-size runs.
COMMAND_EXAMPLES = {
    "align": f"{PROG} align --src photos --out aligned",
    "train": f"{PROG} train --data faces --run-dir runs/trial --img-size 32 --w-hpf 0 --max-conv-dim 32 "
             f"--base-dim 16 --hidden-dim 32 --batch 2 --total-iters 2 --workers 0 --quiet",
    "sample": f"{PROG} sample --checkpoint assets/stargan_v2_demo_32_nets_ema.ckpt --src aligned --ref faces/val "
              f"--out results --max-images 2 --gif-steps 4",
    "export": f"{PROG} export --checkpoint runs/trial --out trial_nets_ema.ckpt",
    "evaluate": f"{PROG} evaluate --checkpoint assets/stargan_v2_demo_32_nets_ema.ckpt --data faces --num-outs 2 "
                f"--max-sources 2 --extractor random --lpips random",
}


def _parse_bool(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("auto", "none"):
        return None
    raise argparse.ArgumentTypeError(f"expected true, false or auto, got {text!r}")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field, with its help text and default."""
    from .train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training options (defaults: the official CelebA-HQ settings)")
    for f in dataclasses.fields(TrainConfig):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {f.default})"
        if kind is bool:
            group.add_argument(flag, type=_parse_bool, default=f.default, metavar="{true,false,auto}",
                               help=help_text)
        elif typing.get_origin(kind) is tuple:
            group.add_argument(flag, type=float, nargs=f.metadata.get("nargs", 2), default=f.default,
                               metavar=("B1", "B2"), help=help_text)
        else:
            group.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                               help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{train,sample,align,export,evaluate}")

    train = cli.add_command(commands, "train", example=COMMAND_EXAMPLES["train"],
                            help="train or continue training on domain folders",
                            description="Train StarGAN v2 on DATA (a folder or .zip with train/<domain>/ "
                                        "folders, e.g. train/female and train/male). Running it again with the "
                                        "same --run-dir continues exactly where the last checkpoint left off.")
    train.add_argument("--data", required=True, help="dataset folder or .zip (a zip on Drive is copied to local "
                                                     "disk and unpacked first)")
    train.add_argument("--run-dir", required=True, help="folder for checkpoints, sample grids, loss curves and "
                                                        "the exported *_nets_ema.ckpt")
    cli.add_device_argument(train)
    train.add_argument("--stop-at", type=int, default=None, help="stop after this iteration with a checkpoint "
                                                                 "(default: run to --total-iters)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    _add_config_options(train)

    sample = cli.add_command(commands, "sample", example=COMMAND_EXAMPLES["sample"],
                             help="reference-guided grid, latent-guided samples and the style interpolation GIF",
                             description="Translate aligned faces (use `align` first) with trained networks.")
    cli.add_checkpoint_argument(sample, "--checkpoint", "--ckpt", help="an official *_nets_ema.ckpt, one of our "
                                                                      "training checkpoints (ckpt-*.pt) or a "
                                                                      "training run folder")
    sample.add_argument("--src", required=True, help="folder of aligned source faces")
    sample.add_argument("--ref", required=True, help="folder of aligned references in <domain>/ sub-folders "
                                                     "(e.g. ref/female, ref/male)")
    sample.add_argument("--out", required=True, help="output folder (reference.png, latent.png, ref_vid.gif)")
    sample.add_argument("--fan", type=cli.existing_path, default=None,
                        help="FAN weights (wing.ckpt) for models with w_hpf > 0")
    sample.add_argument("--no-masks", action="store_true",
                        help="run a w_hpf > 0 model without FAN face masks (not the official model's function)")
    cli.add_device_argument(sample)
    sample.add_argument("--max-images", type=int, default=8, help="most sources and references per domain used "
                                                                  "(default: 8)")
    sample.add_argument("--latent-per-domain", type=int, default=2, help="latent codes per domain in latent.png "
                                                                         "(default: 2; 0 skips it)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the latent codes (default: 0)")
    sample.add_argument("--gif-steps", type=int, default=20, help="frames per reference in ref_vid.gif "
                                                                  "(default: 20; 0 skips the GIF)")

    align = cli.add_command(commands, "align", example=COMMAND_EXAMPLES["align"],
                            help="crop photos like CelebA-HQ (face found, landmarks, similarity transform)",
                            description="Align every photo of SRC into OUT as PNG; photos without a face "
                                        "or that cannot be read are named.")
    align.add_argument("--src", required=True, help="folder of photos")
    align.add_argument("--out", required=True, help="output folder")
    align.add_argument("--size", type=int, default=256, help="output size in pixels (default: 256)")
    align.add_argument("--backend", default="auto", choices=("auto", "fan", "mediapipe"),
                       help="landmarks from MediaPipe Face Mesh (offline, mediapipe<0.10.30 on Python <= 3.12) or "
                            "the StarGAN v2 FAN; auto: MediaPipe where it runs, else the FAN (default: auto)")
    align.add_argument("--fan", default=None, help="FAN weights for the FAN backend: wing.ckpt, or a *_nets_ema.ckpt "
                                                   "holding a 'fan' entry (default: wing.ckpt from the "
                                                   "colab_utils.hub cache)")
    align.add_argument("--download-fan", action="store_true",
                       help="fetch the StarGAN v2 release's wing.ckpt through colab_utils.hub (once, cached) when "
                            "the FAN is needed and not cached")
    align.add_argument("--device", default="cpu", help="device for FAN (default: cpu)")

    export = cli.add_command(commands, "export", example=COMMAND_EXAMPLES["export"],
                             help="write a training checkpoint as official *_nets_ema.ckpt / *_nets_D.ckpt files")
    cli.add_checkpoint_argument(export, "--checkpoint", "--ckpt", help="one of our training checkpoints "
                                                                      "(ckpt-*.pt) or a training run folder (its "
                                                                      "newest checkpoint)")
    export.add_argument("--out", required=True, help="the *_nets_ema.ckpt file to write (generator, mapping "
                                                     "network, style encoder: moving averages)")
    export.add_argument("--out-d", default=None, help="also write the discriminator to this *_nets_D.ckpt file")
    export.add_argument("--fan", type=cli.existing_path, default=None,
                        help="FAN weights (wing.ckpt) to include (w_hpf > 0 models)")
    _add_evaluate(commands)
    return parser


def _add_evaluate(commands) -> None:
    evaluate = cli.add_command(
        commands, "evaluate", example=COMMAND_EXAMPLES["evaluate"],
        help="the paper's FID and LPIPS for every ordered pair of domains",
        description="StarGAN v2's evaluation protocol (the official --mode eval): every validation image of a "
                    "domain is translated into every other domain --num-outs times, with random latent codes and "
                    "with the target domain's validation images as references; FID against the target domain's "
                    "training images and LPIPS diversity, per task and the mean, as in the paper's tables.")
    cli.add_checkpoint_argument(evaluate, "--checkpoint", "--ckpt", help="an official *_nets_ema.ckpt, one of our "
                                                                        "training checkpoints (ckpt-*.pt) or a "
                                                                        "training run folder")
    evaluate.add_argument("--data", required=True, help="dataset folder or .zip with val/<domain>/ (sources and "
                                                        "references) and train/<domain>/ (real images for FID)")
    evaluate.add_argument("--fan", type=cli.existing_path, default=None,
                          help="FAN weights (wing.ckpt) for models with w_hpf > 0")
    evaluate.add_argument("--mode", choices=("both", "latent", "reference"), default="both",
                          help="latent-guided, reference-guided or both (default: both)")
    evaluate.add_argument("--num-outs", type=int, default=10, help="outputs per source image (default: 10, as the "
                                                                   "paper)")
    evaluate.add_argument("--batch", type=int, default=32, help="source images per batch, and the reference batch "
                                                                "(the official --val_batch_size; default: 32)")
    evaluate.add_argument("--max-sources", type=int, default=None,
                          help="a quick look: only the first N validation images per domain (default: all of "
                               "them, the protocol)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the latent codes (default: 0)")
    evaluate.add_argument("--extractor", choices=("inception", "random"), default="inception",
                          help="FID features: inception (the standard network, weights downloaded once) or random "
                               "(a small fixed random network, offline; numbers not comparable with the paper)")
    evaluate.add_argument("--lpips", choices=("alex", "random"), default="alex",
                          help="alex: AlexNet-LPIPS v0.1 as the paper (ImageNet weights downloaded once); random: a "
                               "random AlexNet, offline (numbers not comparable)")
    evaluate.add_argument("--out", type=Path, default=None, help="write the values (official JSON keys) here")
    cli.add_device_argument(evaluate)


def run_train(args) -> int:
    from .train import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: (tuple(v) if k == "betas" else v) for k, v in vars(args).items() if k in fields})
    result = train(config, args.data, args.run_dir, device=str(cli.device_from(args.device)), stop_at=args.stop_at,
                   progress=not args.quiet, verbose=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks for all processes
        state = "finished" if result.finished else f"stopped ({result.stop_reason})"
        print(f"{state} at iteration {result.step}; checkpoint {result.checkpoint}; exported {result.exported}")
    return 0


def run_sample(args) -> int:
    import torch

    from colab_utils.data.images import DomainFolderDataset, ImageFolderDataset

    from .synthesize import latent_grid, load_nets, reference_grid, style_interpolation_gif

    nets = load_nets(args.checkpoint, fan_path=args.fan, device=cli.device_from(args.device),
                     without_masks=args.no_masks)
    size = nets.generator.img_size
    sources = ImageFolderDataset(args.src, size)
    src = torch.stack([sources[i] for i in range(min(len(sources), args.max_images))])
    refs = DomainFolderDataset(args.ref, size)
    known = list(getattr(nets, "domains", []) or [])
    if known:
        unknown = [d for d in refs.domains if d not in known]
        if unknown:
            raise ValueError(f"{args.ref}: domain folders {unknown} are not among the model's domains {known}")
        index = {d: known.index(d) for d in refs.domains}
    else:
        if len(refs.domains) > nets.style_encoder.num_domains:
            raise ValueError(f"{args.ref} has {len(refs.domains)} domain folders, the model "
                             f"{nets.style_encoder.num_domains}")
        index = {d: i for i, d in enumerate(refs.domains)}  # sorted names, as the official ImageFolder order
    picks = [i for d in range(len(refs.domains)) for i in refs.indices_of(d)[:args.max_images]]
    ref = torch.stack([refs[i][0] for i in picks])
    ref_y = torch.tensor([index[refs.domains[refs.targets[i]]] for i in picks])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reference_grid(nets, src, ref, ref_y, path=out / "reference.png")
    written = [out / "reference.png"]
    if args.latent_per_domain > 0:
        names = known or [f"domain {d}" for d in range(nets.mapping_network.num_domains)]
        latent_grid(nets, src, per_domain=args.latent_per_domain, seed=args.seed, domain_names=names,
                    path=out / "latent.png")
        written.append(out / "latent.png")
    if args.gif_steps > 0 and len(ref) >= 2:
        written.append(style_interpolation_gif(nets, src, ref, ref_y, out / "ref_vid.gif", steps=args.gif_steps))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_align(args) -> int:
    from .align import align_folder
    from .landmarks import make_landmarker

    fan = None
    if args.fan is not None:
        from .fan import load_fan

        fan = load_fan(args.fan, device=args.device)
    # no backend here: a LandmarkBackendError, which cli.run prints as one error line (a project error)
    landmarker = make_landmarker(args.backend, fan=fan, device=args.device, download=args.download_fan)
    print(f"landmarks: {landmarker.description}")
    try:
        report = align_folder(args.src, args.out, args.size, landmarker=landmarker)
    finally:
        landmarker.close()
    print(f"aligned {len(report.aligned)} photo(s) into {args.out}; no face in {len(report.no_face)}; "
          f"unreadable {len(report.unreadable)}")
    for path in report.whole_image:
        print(f"  no face detector found the face, taken whole as a face crop: {path}")
    for path in report.no_face:
        print(f"  no face found: {path}")
    for path, reason in report.unreadable:
        print(f"  unreadable: {reason}")
    return 0 if report.aligned else 1


def run_export(args) -> int:
    from .train import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out, args.out_d, fan_path=args.fan)
    print(f"wrote {path}" + (f" and {args.out_d}" if args.out_d else ""))
    return 0


def run_evaluate(args) -> int:
    from colab_utils import metrics

    from .synthesize import load_nets

    device = cli.device_from(args.device)
    nets = load_nets(args.checkpoint, fan_path=args.fan, device=device)
    extractor = metrics.RandomFeatures().to(device) if args.extractor == "random" else None
    lpips = metrics.LPIPS("alex").to(device) if args.lpips == "random" else None
    if extractor is not None or lpips is not None:
        print("random networks in the metrics (--extractor random / --lpips random): the numbers compare models "
              "with each other, not with the paper")
    modes = ("latent", "reference") if args.mode == "both" else (args.mode,)
    result = metrics.evaluate_stargan_v2(nets, args.data, modes=modes, num_outs=args.num_outs, batch_size=args.batch,
                                         max_sources=args.max_sources, extractor=extractor, lpips=lpips,
                                         seed=args.seed, device=device)
    print(result.table())
    if args.out is not None:
        print(f"wrote {result.save(args.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), {"train": run_train, "sample": run_sample, "align": run_align,
                                    "export": run_export, "evaluate": run_evaluate}, argv)


if __name__ == "__main__":
    sys.exit(main())
