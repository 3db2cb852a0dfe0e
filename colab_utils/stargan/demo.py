"""The small StarGAN v2 shipped with the project, and the figures that say whether it translates.

``assets/stargan_v2_demo_32_nets_ema.ckpt`` is a StarGAN v2 trained by ``tools/train_stargan_demo.py`` with the
project's own trainer on two domains of synthetic faces (:mod:`colab_utils.data.synthetic`, ``"portrait"``
preset): ``fair_blond`` (fair skin, blond hair) and ``dark_brunette`` (dark skin, dark hair), every face in
front of the same studio backdrop (``background="studio"``), so that the style code has no background to carry
and a translation keeps the source's. It is stored in the official release's layout and loaded through
:func:`colab_utils.stargan.formats.load_official`, the loader of the official checkpoints, so notebooks 04 and 05
show a working translation offline and exercise that loader.

:func:`domain_figures` measures a translator on freshly drawn faces whose label maps are exact:

* the **domain** of an image is read from its colours: the mean colour of its skin and of its hair (taken where
  the *source's* label map puts them, since a translation keeps the layout), classified by the nearer of the
  two domains' mean colours over real faces. ``accuracy`` is the share of translations classified as the
  target domain (the real faces themselves are classified right at ``real_accuracy``);
* the **background** is the source's background pixels (away from any edge): ``background_change`` is the
  mean absolute difference there between translation and source, in [0, 255] units, against
  ``background_between_faces``, the same difference between two unrelated faces.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colab_utils.data.synthetic import PARTS, STYLES, make_face

from .formats import load_official
from .model import Nets
from .synthesize import translate

DEMO_ASSET = "stargan_v2_demo_32_nets_ema.ckpt"
DEMO_DOMAINS: tuple[str, ...] = tuple(sorted(STYLES))   # domain index -> name: the training folders, sorted
DEMO_PRESET = "portrait"
DEMO_BACKGROUND = "studio"    # the demo's training faces all stand before one backdrop (see train_stargan_demo.py)
DEMO_NOTE = ("the demo StarGAN v2 is a small model (32 px) trained on synthetic faces by "
             "tools/train_stargan_demo.py, to show the pipeline working offline; it knows nothing of photos")
REPOSITORY_ASSETS = Path(__file__).resolve().parents[2] / "assets"
ASSET_URL = f"https://raw.githubusercontent.com/colab-utils/colab_utils/main/assets/{DEMO_ASSET}"


def demo_model_path(*, download: bool | None = None) -> Path | None:
    """``assets/stargan_v2_demo_32_nets_ema.ckpt`` of a clone (or of the current folder); else, when
    ``download`` (default: in Colab), fetched from the repository through :mod:`colab_utils.hub`; else None."""
    for folder in (REPOSITORY_ASSETS, Path.cwd() / "assets"):
        if (folder / DEMO_ASSET).is_file():
            return folder / DEMO_ASSET
    from colab_utils import runtime

    if download if download is not None else runtime.in_colab():
        from colab_utils import hub

        return Path(hub.download(ASSET_URL))
    return None


def load_demo(*, device="cpu", path: str | os.PathLike | None = None) -> Nets:
    """The demo networks (eval mode, ``nets.domains`` set) through the official-format loader."""
    path = Path(path) if path is not None else demo_model_path()
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{DEMO_ASSET} is not in {REPOSITORY_ASSETS}: work from a clone of the repository "
                                f"or retrain it with tools/train_stargan_demo.py")
    nets, _ = load_official(path, device=device)
    nets.domains = list(DEMO_DOMAINS)
    return nets.eval()


def demo_faces(n: int, domain: int, size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` faces of ``DEMO_DOMAINS[domain]`` never seen in training (seeds far from the training folders'):
    ``(images [n, 3, size, size] in [-1, 1], label maps [n, size, size])``."""
    images, labels = [], []
    for i in range(n):
        image, label = make_face(10_000_000 + 1000 * seed + 97 * domain + i, size, DEMO_DOMAINS[domain],
                                 preset=DEMO_PRESET, background=DEMO_BACKGROUND)
        images.append(image)
        labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, torch.from_numpy(np.stack(labels)).long()


def _region_colours(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B, 6]: mean RGB (0..255) of every image over its skin, then over its hair (by ``labels``)."""
    rgb = (images.float().clamp(-1, 1) + 1) * 127.5
    features = []
    for part in ("skin", "hair"):
        mask = (labels == PARTS.index(part)).float()[:, None]
        features.append((rgb * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1))
    return torch.cat(features, 1)


def _inner_background(labels: torch.Tensor) -> torch.Tensor:
    """Background pixels whose 3x3 neighbourhood is background too (edges blur at small sizes)."""
    bg = (labels == PARTS.index("background")).float()[:, None]
    return (-F.max_pool2d(-bg, 3, stride=1, padding=1))[:, 0] > 0.5


@dataclass(frozen=True)
class DomainFigures:
    """What :func:`domain_figures` measured; see the module docstring."""

    accuracy_latent: float
    accuracy_reference: float
    real_accuracy: float
    colour_distance_to_target: float      # mean distance of the translations' colours to the target's mean
    colour_distance_source_to_target: float   # the same for the untranslated sources
    background_change: float
    background_between_faces: float
    translations: int

    def table(self) -> str:
        return "\n".join([
            "| figure | value |", "|---|---:|",
            f"| target-domain accuracy, latent-guided | {100 * self.accuracy_latent:.0f}% |",
            f"| target-domain accuracy, reference-guided | {100 * self.accuracy_reference:.0f}% |",
            f"| accuracy of the colour classifier on real faces | {100 * self.real_accuracy:.0f}% |",
            f"| skin+hair colour distance to the target domain: sources -> translations | "
            f"{self.colour_distance_source_to_target:.1f} -> {self.colour_distance_to_target:.1f} |",
            f"| background change, translation vs source (0-255) | {self.background_change:.1f} |",
            f"| background difference between two unrelated faces (0-255) | {self.background_between_faces:.1f} |",
            f"| translations measured | {self.translations} |",
        ])


@torch.no_grad()
def domain_figures(nets: Nets, *, n: int = 16, seed: int = 0) -> DomainFigures:
    """Translate ``n`` fresh faces of each domain into the other (latent-guided with seeded codes and
    reference-guided with fresh faces of the target domain) and measure them; see the module docstring."""
    size = nets.generator.img_size
    faces = [demo_faces(n, d, size, seed=seed) for d in range(len(DEMO_DOMAINS))]
    refs = [demo_faces(n, d, size, seed=seed + 1)[0] for d in range(len(DEMO_DOMAINS))]
    means = torch.stack([_region_colours(x, y).mean(0) for x, y in faces])          # [domains, 6]

    def classify(features: torch.Tensor) -> torch.Tensor:
        return torch.cdist(features, means).argmin(1)

    real = torch.cat([(classify(_region_colours(x, y)) == d).float() for d, (x, y) in enumerate(faces)])
    hits_latent, hits_ref, dist_out, dist_in, bg_change = [], [], [], [], []
    for source, (x, y) in enumerate(faces):
        target = 1 - source if len(DEMO_DOMAINS) == 2 else (source + 1) % len(DEMO_DOMAINS)
        z = torch.randn(n, nets.mapping_network.latent_dim, generator=torch.Generator().manual_seed(seed + source))
        outs = {"latent": translate(nets, x, domain=target, z=z),
                "reference": translate(nets, x, domain=target, ref=refs[target])}
        inner = _inner_background(y)[:, None].float()
        for kind, out in outs.items():
            features = _region_colours(out, y)
            (hits_latent if kind == "latent" else hits_ref).append((classify(features) == target).float())
            dist_out.append((features - means[target]).norm(dim=1))
            diff = ((out.clamp(-1, 1) - x).abs() * 127.5 * inner).sum((1, 2, 3)) / (3 * inner.sum((1, 2, 3)))
            bg_change.append(diff)
        dist_in.append((_region_colours(x, y) - means[target]).norm(dim=1))
    x0, y0 = faces[0]
    x1 = faces[0][0].roll(1, dims=0)               # each face against another face of its set
    inner = (_inner_background(y0) & _inner_background(y0.roll(1, dims=0)))[:, None].float()
    between = ((x1 - x0).abs() * 127.5 * inner).sum((1, 2, 3)) / (3 * inner.sum((1, 2, 3)).clamp_min(1))
    return DomainFigures(
        accuracy_latent=float(torch.cat(hits_latent).mean()), accuracy_reference=float(torch.cat(hits_ref).mean()),
        real_accuracy=float(real.mean()), colour_distance_to_target=float(torch.cat(dist_out).mean()),
        colour_distance_source_to_target=float(torch.cat(dist_in).mean()),
        background_change=float(torch.cat(bg_change).mean()), background_between_faces=float(between.mean()),
        translations=2 * n * len(DEMO_DOMAINS))
