"""Command line: ``python -m colab_utils.video translate``: StarGAN v2 over a clip, sound kept (notebook 05's job).

    python -m colab_utils.video translate talk.mp4 --out talk_male.mp4 --checkpoint stargan_v2_celeba_hq --domain male
    python -m colab_utils.video translate talk.mp4 --out talk_me.mp4 --checkpoint runs/me --ref me.jpg --domain 1 \\
        --temporal-blend 0.3 --side-by-side --gif --start 2 --end 8

It calls :func:`colab_utils.video.translate_video` with networks from
:func:`colab_utils.stargan.synthesize.load_nets`, as the notebook does, and prints one line: the output, the
frames, in how many a face was found, the speed reached and whether the sound was kept. Bad input (a missing
or foreign file, a clip without any face) is one error line and exit code 2, and leaves no output behind.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colab_utils import cli

PROG = "python -m colab_utils.video"
EXAMPLE = (f"{PROG} translate talk.mp4 --out talk_blond.mp4 --checkpoint assets/stargan_v2_demo_32_nets_ema.ckpt "
           f"--domain fair_blond --mode whole --side-by-side --gif")
AUTO = "auto"   # --side-by-side / --gif without a name: beside --out


def build_parser() -> cli.ArgumentParser:
    from colab_utils.data.video_io import PRESETS
    from colab_utils.video.translate import MODES

    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter,
                                epilog=cli.examples(EXAMPLE))
    commands = parser.add_subparsers(dest="command", required=True, metavar="{translate}")
    p = cli.add_command(
        commands, "translate", example=EXAMPLE, defaults=True, help="translate the faces of a clip, sound kept",
        description="Translate IN with StarGAN v2: the face of every frame is found, aligned, translated with one "
                    "style for the whole clip and pasted back (--mode faces), or every frame is taken as a face "
                    "crop (--mode whole); the original sound is muxed back in sync. The outputs appear only when "
                    "everything succeeded.")
    p.add_argument("src", metavar="IN", type=cli.existing_path, help="the clip (any format ffmpeg reads)")
    p.add_argument("--out", type=Path, required=True, help="the H.264 MP4 to write")
    g = p.add_argument_group("model and style")
    cli.add_checkpoint_argument(g, "--checkpoint", "--ckpt", hub=True,
                                help="StarGAN v2 networks: an official *_nets_ema.ckpt, a training checkpoint "
                                     "(ckpt-*.pt) or run folder, or a colab_utils.hub name (stargan_v2_celeba_hq, "
                                     "stargan_v2_afhq; downloaded once)")
    g.add_argument("--fan", type=cli.checkpoint_source, default=None,
                   help="FAN weights (wing.ckpt or the hub name stargan_v2_wing): the face masks of w_hpf > 0 models, "
                        "and the landmarks where MediaPipe cannot run (default: the checkpoint's own FAN; "
                        "stargan_v2_celeba_hq brings stargan_v2_wing)")
    g.add_argument("--ref", type=cli.existing_path, default=None,
                   help="a face photo whose style the whole clip takes (aligned first); --domain is the photo's domain")
    g.add_argument("--ref-aligned", action="store_true", help="--ref is already an aligned face crop: only resize it")
    g.add_argument("--domain", default=None,
                   help="the target domain by name (e.g. male, fair_blond) or index; with --ref, the reference's "
                        "domain (needed unless the model has one domain)")
    g.add_argument("--seed", type=int, default=None, help="picks the random style of --domain without --ref (default: 0)")
    g = p.add_argument_group("frames")
    g.add_argument("--mode", choices=MODES, default="faces",
                   help="faces: find, align and paste back the face of every frame; whole: the frames are face crops")
    g.add_argument("--batch-size", type=int, default=8, help="frames through the model at once")
    g.add_argument("--smoothing", action=argparse.BooleanOptionalAction, default=True,
                   help="smooth the face landmarks over time (One Euro filter) so the crop does not jitter")
    g.add_argument("--temporal-blend", type=float, default=0.0,
                   help="weight of the previous result in each face, in [0, 1) (0: off; ~0.3 steadier, a little "
                        "ghosting on fast motion)")
    g.add_argument("--start", type=float, default=None, help="cut: first second to translate")
    g.add_argument("--end", type=float, default=None, help="cut: last second to translate")
    g.add_argument("--speed", type=float, default=1.0, help="play the result this many times faster (pitch kept)")
    g = p.add_argument_group("outputs")
    g.add_argument("--crf", type=int, default=18, help="x264 quality: 0 lossless, 18 visually lossless, 28 small")
    g.add_argument("--preset", choices=PRESETS, default="medium", help="x264 speed against file size")
    g.add_argument("--side-by-side", nargs="?", const=AUTO, default=None, metavar="PATH",
                   help="also write source | result as an MP4 (default name: OUT_side_by_side.mp4)")
    g.add_argument("--gif", nargs="?", const=AUTO, default=None, metavar="PATH",
                   help="also write the result as a GIF of at most 320 px and 8 MB (default name: OUT.gif)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (log files)")
    cli.add_device_argument(g)
    return parser


def _named(value: str | None, out: Path, suffix: str) -> Path | None:
    if value is None:
        return None
    return out.with_name(out.stem + suffix) if value == AUTO else Path(value)


def run_translate(args) -> int:
    from colab_utils.stargan.synthesize import domain_index, load_nets
    from colab_utils.video.translate import translate_video

    if args.ref is not None and args.seed is not None:
        raise ValueError("--seed picks a random style of --domain; with --ref the style is the photo's: give one")
    side = _named(args.side_by_side, args.out, "_side_by_side.mp4")
    gif = _named(args.gif, args.out, ".gif")
    device = cli.device_from(args.device)
    with cli.no_partial_output(args.out, side, gif):
        nets = load_nets(args.checkpoint, fan_path=args.fan, device=device)
        domain = domain_index(nets, args.domain) if args.domain is not None else None
        summary = translate_video(
            args.src, args.out, nets, reference=args.ref, domain=domain, seed=args.seed or 0, mode=args.mode,
            batch_size=args.batch_size, device=device, start=args.start, end=args.end, speed=args.speed,
            side_by_side=side, gif=gif, temporal_blend=args.temporal_blend, smooth=args.smoothing,
            align_reference=not args.ref_aligned, crf=args.crf, preset=args.preset,
            progress=not args.no_progress, verbose=False, require_faces=True)
    print(summary.line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), {"translate": run_translate}, argv)


if __name__ == "__main__":
    sys.exit(main())
