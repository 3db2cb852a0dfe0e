"""Command line: ``python -m colab_utils.editing catalog|name|transfer|locality|invert`` (notebooks 02, 03, 06).

    python -m colab_utils.editing catalog --generator ffhq --out catalogs/ffhq --k 18 --n 200 --heatmaps ffhq.png
    python -m colab_utils.editing name --catalog catalogs/ffhq --parts parts.json
    python -m colab_utils.editing transfer --catalog catalogs/ffhq --target 0 --reference 1 --out full.png
    python -m colab_utils.editing locality --catalog catalogs/ffhq --pairs 0:1 2:3 4:5
    python -m colab_utils.editing invert --generator ffhq --photo me.jpg --out me/

Local semantic editing after Collins, Bala, Price, Süsstrunk, "Editing in Style" (CVPR 2020). A generator is
``synthetic`` (the one shipped in assets/), ``ffhq``, another colab_utils.hub name, a rosinality ``.pt``, or a
StyleGAN2 training checkpoint or run folder; faces are seeds, W / W+ latent files or photos (aligned like FFHQ
and inverted once: ``colab_utils.editing.photo``). Each command calls the
functions of :mod:`colab_utils.editing.jobs` that the notebooks call.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colab_utils import cli

PROG = "python -m colab_utils.editing"
CATALOG_EXAMPLE = f"{PROG} catalog --generator assets/stylegan2_synthetic_64.pt --out catalog --n 32 --k 12"
NAME_EXAMPLE = f"{PROG} name --catalog catalog --parts '{{\"eyes\": [3, 4], \"mouth\": [5]}}'"
TRANSFER_EXAMPLE = f"{PROG} transfer --catalog catalog --target 0 --reference 1 --out transfer.png"
LOCALITY_EXAMPLE = f"{PROG} locality --catalog catalog --pairs 0:1 2:3 --out locality.md"
INVERT_EXAMPLE = (f"{PROG} invert --generator synthetic --photo photos/photo0.png --out inverted --steps 10 "
                  f"--tune-steps 4 --perceptual random")
GENERATOR_HELP = ("synthetic (assets/stylegan2_synthetic_64.pt), ffhq, a colab_utils.hub name, a rosinality .pt, or a "
                  "StyleGAN2 training checkpoint or run folder")


def _generator(text: str):
    return text if text in ("synthetic", "ffhq") else cli.checkpoint_source(text)


def _optional_float(text: str):
    return None if text.lower() in ("none", "off") else float(text)


def _pair(text: str) -> tuple[str, str]:
    target, sep, reference = text.rpartition(":")
    if not sep or not target or not reference:
        raise argparse.ArgumentTypeError(f"a pair is TARGET:REFERENCE (seeds or latent files), got {text!r}")
    return target, reference


def _add_generator(p, required: bool) -> None:
    p.add_argument("--generator", type=_generator, default=None if not required else "synthetic",
                   help=GENERATOR_HELP + ("" if required else " (default: the one the catalog was built for)"))


def _add_transfer_options(p) -> None:
    from .transfer import DEFAULT_EPSILON, DEFAULT_RHO, DEFAULT_TRUNCATION

    g = p.add_argument_group("the edit")
    g.add_argument("--parts", nargs="+", default=None,
                   help="named parts to move, in this order (default: every named part; the background only "
                        "where it is asked for or in the per-part grid)")
    g.add_argument("--strength", type=float, default=1.0, help="how far each part moves to the reference, in [0, 1]")
    g.add_argument("--rho", type=float, default=DEFAULT_RHO,
                   help="least share of a channel's activation that must fall inside the part")
    g.add_argument("--epsilon", type=_optional_float, default=DEFAULT_EPSILON,
                   help="most activation outside the part the chosen channels of a layer may have ('none': no limit)")
    g.add_argument("--truncation", type=float, default=DEFAULT_TRUNCATION,
                   help="truncation of faces given by seed (toward the file's average w)")
    cli.add_device_argument(g)
    _add_photo_options(p)


def _add_photo_options(p) -> None:
    g = p.add_argument_group("photos (inverted once, then read from the project folder's inversions/)")
    g.add_argument("--steps", type=int, default=1000, help="projection steps")
    g.add_argument("--tune-steps", type=int, default=350, help="pivotal tuning steps")
    g.add_argument("--no-tune", action="store_true", help="projection only, no pivotal tuning")
    g.add_argument("--latent-space", choices=("w+", "w"), default="w+", help="the latent space projected into")
    g.add_argument("--perceptual", choices=("lpips-vgg", "random"), default="lpips-vgg",
                   help="the projection's perceptual loss ('random': an offline stand-in, for tests)")
    g.add_argument("--face-index", type=int, default=None, help="which face of a group photo (0: the largest)")


def _photo_options(args) -> dict:
    return {"steps": args.steps, "tune_steps": args.tune_steps, "tune": not args.no_tune, "space": args.latent_space,
            "perceptual": args.perceptual, "face_index": args.face_index}


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter,
                                epilog=cli.examples(CATALOG_EXAMPLE, NAME_EXAMPLE, TRANSFER_EXAMPLE, LOCALITY_EXAMPLE))
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{catalog,name,transfer,locality,invert}")

    p = cli.add_command(commands, "catalog", example=CATALOG_EXAMPLE, defaults=True,
                        help="build and save the catalog of a generator's parts",
                        description="Cluster the generator's features over N random faces into K clusters "
                                    "(spherical k-means at the last styled conv of --layer pixels) and measure how "
                                    "much every style channel acts inside each; save it as a folder (catalog.pt, "
                                    "catalog.json). The clusters of the synthetic generator are named by the "
                                    "shipped part segmenter; others are named with --names or the 'name' command "
                                    "after a look at --heatmaps.")
    _add_generator(p, required=True)
    p.add_argument("--out", type=Path, required=True, help="the catalog folder to write")
    p.add_argument("--k", type=int, default=18, help="clusters")
    p.add_argument("--n", type=int, default=200, help="faces the catalog is built from")
    p.add_argument("--layer", type=int, default=32, help="resolution of the layer whose features are clustered")
    p.add_argument("--seed", type=int, default=0, help="seed of the faces and of k-means")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation of the faces")
    p.add_argument("--batch-size", type=int, default=8, help="faces rendered at once")
    p.add_argument("--names", default=None,
                   help="'auto' (the part segmenter; synthetic generator only), 'none', or part names as JSON (a "
                        "file, or the text: '{\"eyes\": [3, 11]}') (default: auto for the synthetic generator)")
    p.add_argument("--heatmaps", type=Path, default=None,
                   help="also write a picture of every cluster over 6 faces (for naming by eye)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    cli.add_device_argument(p)

    p = cli.add_command(commands, "name", example=NAME_EXAMPLE, help="name a catalog's parts from JSON",
                        description="Give the catalog's clusters part names, {\"eyes\": [3, 11], \"mouth\": [5]} "
                                    "(replacing the names it had), and save it.")
    p.add_argument("--catalog", type=cli.existing_path, required=True, help="the catalog folder")
    p.add_argument("--parts", required=True, help="a JSON file of part names, or the JSON text itself")
    p.add_argument("--out", type=Path, default=None, help="write the named catalog here (default: in place)")

    p = cli.add_command(commands, "transfer", example=TRANSFER_EXAMPLE, defaults=True,
                        help="move parts of a reference face onto a target: a grid or one image",
                        description="--kind full: the full-face transfer, one row: target, +part, ..., all parts "
                                    "jointly, reference. --kind parts: one row per part, moved at each of "
                                    "--strengths. --kind image: only the target with --parts applied together.")
    p.add_argument("--catalog", type=cli.existing_path, required=True, help="the catalog folder (with named parts)")
    _add_generator(p, required=False)
    p.add_argument("--target", default="0", help="the face that changes: a seed or a W / W+ latent file")
    p.add_argument("--reference", default="1", help="the face whose parts it takes: a seed or a W / W+ latent file")
    p.add_argument("--kind", choices=("full", "parts", "image"), default="full", help="what to write (see above)")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0], help="the columns of --kind parts")
    p.add_argument("--out", type=Path, required=True, help="the picture to write (.png, .jpg)")
    _add_transfer_options(p)

    p = cli.add_command(commands, "locality", example=LOCALITY_EXAMPLE, defaults=True,
                        help="how local each part edit is, against global mixing and pixel blending",
                        description="For every part: the error inside the part against the reference and outside "
                                    "it against the target, averaged over --pairs, for our edit, global style "
                                    "mixing of the same layers, pasting in pixel space, and no edit (the paper's "
                                    "evaluation).")
    p.add_argument("--catalog", type=cli.existing_path, required=True, help="the catalog folder (with named parts)")
    _add_generator(p, required=False)
    p.add_argument("--pairs", type=_pair, nargs="+", default=[("0", "1"), ("2", "3"), ("4", "5")],
                   metavar="TARGET:REFERENCE", help="faces as seeds or W / W+ latent files (default: 0:1 2:3 4:5)")
    p.add_argument("--space", choices=("lab", "rgb"), default="lab", help="colour space of the errors")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    _add_transfer_options(p)

    p = cli.add_command(commands, "invert", example=INVERT_EXAMPLE, defaults=True,
                        help="align a photo like FFHQ and invert it (projection, pivotal tuning)",
                        description="Find the face (the largest, or --face-index), align it like FFHQ at the "
                                    "generator's size, project it into W+ and the noise maps, tune a copy of the "
                                    "generator around that latent, and store the result in the project folder's "
                                    "inversions/ (read back next time). Writes aligned.png, reconstruction.png (the "
                                    "photo beside the reconstruction pasted back) and w_plus.pt. Give the photo "
                                    "itself as --target to transfer/locality to edit with the tuned copy.")
    _add_generator(p, required=True)
    p.add_argument("--photo", type=cli.existing_path, required=True, help="the photo (jpg, png, webp...)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    cli.add_device_argument(p)
    _add_photo_options(p)
    return parser


def _load(args, catalog_settings: dict | None = None):
    from .generators import load_generator

    weights = args.generator
    if weights is None:
        weights = (catalog_settings or {}).get("generator", "synthetic")
    G, description = load_generator(weights, device=cli.device_from(args.device))
    return G, description


def run_catalog(args) -> int:
    from colab_utils import viz

    from .jobs import is_synthetic, make_catalog, read_part_names
    from .segmenter import cluster_heatmap_grid, sample_cluster_maps

    names = args.names if args.names is not None else ("auto" if is_synthetic(args.generator) else "none")
    if names == "auto" and not is_synthetic(args.generator):
        raise ValueError("--names auto works for the synthetic generator only (the segmenter knows its faces); "
                         "name other catalogs with --names JSON or the 'name' command")
    part_names = read_part_names(names) if names not in ("auto", "none") else None
    with cli.no_partial_output(args.out, args.heatmaps):
        G, description = _load(args)
        catalog, naming = make_catalog(G, n_samples=args.n, k=args.k, layer_resolution=args.layer, seed=args.seed,
                                       truncation=args.truncation, batch_size=args.batch_size,
                                       progress=not args.no_progress, part_names=part_names,
                                       auto_name=names == "auto")
        catalog.settings["generator"] = str(args.generator)
        if naming is not None:
            print(naming.table())
        if args.heatmaps is not None:
            faces, maps = sample_cluster_maps(G, catalog, n_samples=6, seed=args.seed + 1, truncation=args.truncation)
            labels = [next((p for p, ids in catalog.parts.items() if c in ids), None) for c in range(catalog.k)]
            viz.save_grid(cluster_heatmap_grid(faces, maps, catalog.k, names=labels), args.heatmaps, nrow=1,
                          padding=0)
        catalog.save(args.out)
    print(f"{catalog} of {description}")
    print(f"wrote {args.out}" + (f" and {args.heatmaps}" if args.heatmaps is not None else ""))
    return 0


def run_name(args) -> int:
    from .catalog import Catalog
    from .jobs import read_part_names

    catalog = Catalog.load(args.catalog)
    catalog.set_parts(read_part_names(args.parts))
    out = args.out if args.out is not None else args.catalog
    with cli.no_partial_output(out):
        catalog.save(out)
    print(f"named {', '.join(f'{p}={ids}' for p, ids in catalog.parts.items())}; wrote {out}")
    return 0


def _transfer(args, target, reference):
    from .catalog import Catalog
    from .jobs import read_face
    from .transfer import PartTransfer

    catalog = Catalog.load(args.catalog)
    unknown = [part for part in args.parts or [] if part not in catalog.parts]
    if unknown:
        raise ValueError(f"{args.catalog} has no part named {', '.join(map(repr, unknown))}; its parts: "
                         f"{', '.join(catalog.parts) or 'none yet (name them with the name command)'}")
    G, description = _load(args, catalog.settings)
    transfer = PartTransfer(G, catalog, read_face(target), read_face(reference), rho=args.rho, epsilon=args.epsilon,
                            truncation=args.truncation, photo_options=_photo_options(args))
    return transfer, description


def run_transfer(args) -> int:
    from colab_utils import viz

    from .jobs import edited_image, full_face_grid, part_edits_grid

    transfer, description = _transfer(args, args.target, args.reference)
    if args.kind == "full":
        pair = (transfer.target_styles, transfer.reference_styles)
        picture, _ = full_face_grid(transfer, [pair], args.parts, args.strength,
                                    labels=[f"{args.target} <- {args.reference}"])
    elif args.kind == "parts":
        picture = part_edits_grid(transfer, args.parts, args.strengths)
    else:
        picture = edited_image(transfer, args.parts, args.strength)
    with cli.no_partial_output(args.out):
        path = viz.save_grid(picture, args.out, nrow=1, padding=0)
    width, height = viz.to_uint8(picture).shape[2:0:-1]
    print(f"wrote {path} ({width}x{height}, {args.kind}; {description})")
    return 0


def run_locality(args) -> int:
    from .jobs import locality_rows, read_face
    from .metrics import locality_table

    transfer, _ = _transfer(args, *args.pairs[0])
    pairs = [(read_face(t), read_face(r)) for t, r in args.pairs]
    table = locality_table(locality_rows(transfer, pairs, args.parts, args.strength, space=args.space))
    print(table)
    if args.out is not None:
        with cli.no_partial_output(args.out):
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(table + "\n")
        print(f"wrote {args.out}")
    return 0


def run_invert(args) -> int:
    import torch
    from PIL import Image

    from .photo import photo_face

    with cli.no_partial_output(args.out):
        G, description = _load(args)
        face = photo_face(G, args.photo, progress=not args.no_progress, **_photo_options(args))
        args.out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face.face.image).save(args.out / "aligned.png")
        face.side_by_side(face.reconstruction()).save(args.out / "reconstruction.png")
        torch.save({"w_plus": face.inversion.w_plus[0].cpu()}, args.out / "w_plus.pt")
    figures = ", ".join(f"{k} {v:.3g}" for k, v in face.inversion.figures.items())
    print(f"{args.photo}: face {face.face.index + 1} of {face.face.n_faces}; {figures} ({description}); inversion "
          f"{face.inversion.key}; wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), {"catalog": run_catalog, "name": run_name, "transfer": run_transfer,
                                    "locality": run_locality, "invert": run_invert}, argv)


if __name__ == "__main__":
    sys.exit(main())
