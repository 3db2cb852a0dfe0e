"""Naming a catalog's clusters after face parts: a small segmenter, face-parser hooks, overlap naming.

The catalog (``catalog.build_catalog``) finds clusters of a generator's features but not what they are.
Collins et al., "Editing in Style: Uncovering the Local Semantics of GANs" (CVPR 2020, Sec. 3.1), name them by
hand. Here a segmentation of the generator's samples names them automatically: each cluster gets the part it
overlaps best (intersection over union), and the report says how well clusters and parts agree.

* For the synthetic faces of :mod:`colab_utils.data.synthetic`, whose label maps are known, a tiny
  encoder-decoder conv net (:class:`PartSegmenter`, ours) learns them in about a minute on a CPU
  (:func:`train_segmenter`) and then labels a generator's samples.
* For real faces any face parser will do: :class:`ParserLabeler` maps a parser's classes (by default the 19
  CelebAMask-HQ classes most public parsers predict) onto our parts, and :func:`face_parser_from_hub` fetches
  the parser's weights through :mod:`colab_utils.hub` and builds it with a function you supply.
* :func:`cluster_heatmap_grid` draws every cluster over a few sample faces, for naming by eye (or with the
  form in :mod:`colab_utils.widgets`).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from colab_utils.data.synthetic import PARTS, make_faces
from colab_utils.loading import CheckpointMismatchError, compare_state_dicts, identify, read_source
from colab_utils.viz import image_grid, to_uint8

from .catalog import Catalog

# Anything that turns images [B, 3, H, W] in [-1, 1] into label maps [B, H, W]; a PartSegmenter is used
# through its predict method.
Labeler = Callable[[torch.Tensor], torch.Tensor]

# The classes of CelebAMask-HQ (Lee et al., "MaskGAN", CVPR 2020) in the order face parsers trained on it
# usually predict them (index 0 is the background), and how they fold into our PARTS.
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
CELEBAMASK_HQ_TO_PARTS: dict[str, str] = {
    "background": "background", "skin": "skin", "l_brow": "brows", "r_brow": "brows", "l_eye": "eyes",
    "r_eye": "eyes", "eye_g": "eyes", "l_ear": "skin", "r_ear": "skin", "ear_r": "skin", "nose": "nose",
    "mouth": "mouth", "u_lip": "mouth", "l_lip": "mouth", "neck": "skin", "neck_l": "skin",
    "cloth": "background", "hair": "hair", "hat": "hair",
}


# ---------------------------------------------------------------------------------------------------------
# Images in, label maps out
# ---------------------------------------------------------------------------------------------------------

def as_image_batch(images) -> torch.Tensor:
    """Float images [B, 3, H, W] in [-1, 1] from a float tensor in [-1, 1] ([B, 3, H, W] or [3, H, W]) or
    uint8 pictures (tensor or numpy, [B, H, W, 3] or [H, W, 3])."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected float images [B, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
        return x.float()
    arr = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected images as a tensor or a uint8 array, got {type(images).__name__}")
    arr = to_uint8(arr)                                       # [B, H, W, 3]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------------------
# The segmenter: a tiny encoder-decoder (three scales, skip connections)
# ---------------------------------------------------------------------------------------------------------

def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class PartSegmenter(nn.Module):
    """Per-pixel part logits for face images: an encoder at full, half and quarter resolution (the last with
    a dilated conv for context), a decoder back up with skip connections, a 1x1 classifier.

    ``size`` is the resolution it works at (32 by default, the resolution of the catalog's cluster maps):
    :meth:`predict` resizes inputs to it and the logits back, so it labels any image size. ``part_names``
    names the output classes (our ``PARTS`` by default).
    """

    def __init__(self, part_names: Sequence[str] = PARTS, width: int = 16, size: int = 32):
        super().__init__()
        self.part_names = tuple(part_names)
        self.width, self.size = int(width), int(size)
        w = self.width
        self.enc1 = nn.Sequential(_block(3, w), _block(w, w))
        self.enc2 = nn.Sequential(_block(w, 2 * w, stride=2), _block(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_block(2 * w, 3 * w, stride=2), _block(3 * w, 3 * w, dilation=2))
        self.dec2 = _block(5 * w, 2 * w)
        self.dec1 = _block(3 * w, w)
        self.head = nn.Conv2d(w, len(self.part_names), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([_upsample_to(e3, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([_upsample_to(d2, e1), e1], dim=1))
        return self.head(d1)

    @torch.no_grad()
    def predict(self, images, *, batch_size: int = 64) -> torch.Tensor:
        """Label maps [B, H, W] (long, indexing ``part_names``) for images (see :func:`as_image_batch`)."""
        x = as_image_batch(images)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for chunk in x.split(batch_size):
            h, w = chunk.shape[-2:]
            chunk = chunk.to(device)
            if (h, w) != (self.size, self.size):
                chunk = F.interpolate(chunk, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                      antialias=True)
            logits = self(chunk)
            if (h, w) != (self.size, self.size):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            out.append(logits.argmax(dim=1).cpu())
        self.train(was_training)
        return torch.cat(out)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and settings (``torch.save``; read back with :meth:`load`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.state_dict(), "part_names": list(self.part_names), "width": self.width,
                    "size": self.size}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> "PartSegmenter":
        """Read a segmenter written by :meth:`save` (through :func:`colab_utils.loading.safe_load`: an unsafe
        or damaged file is refused, a file of another model is named)."""
        path = Path(path)
        blob, _ = read_source(path, "PartSegmenter.load:", map_location=map_location)
        if not isinstance(blob, dict) or not {"state_dict", "part_names", "width", "size"} <= set(blob):
            what = identify(blob)
            raise CheckpointMismatchError(f"PartSegmenter.load: {path} is not a file written by PartSegmenter.save"
                                          + (f": it is {what}" if what else ""), path=path)
        net = cls(blob["part_names"], width=blob["width"], size=blob["size"])
        report = compare_state_dicts(net, blob["state_dict"]) if isinstance(blob["state_dict"], dict) else None
        if report is None or report:
            raise CheckpointMismatchError(f"PartSegmenter.load: {path}: the weights do not fit a PartSegmenter of "
                                          f"width {blob['width']} and {len(blob['part_names'])} parts: "
                                          + (report.describe() if report else "no state_dict"), path=path)
        net.load_state_dict(blob["state_dict"])
        return net.eval()


def _augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, shifts, colour changes, blur and noise: the faces a generator draws are softer and less exact
    than the renderer's."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None], y.flip(-1), y)
    dy, dx = (int(v) for v in torch.randint(-3, 4, (2,), generator=g))
    x, y = x.roll((dy, dx), dims=(-2, -1)), y.roll((dy, dx), dims=(-2, -1))
    gain = 1 + 0.25 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    shift = 0.2 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    x = (x * gain + shift)
    blur = torch.rand(b, generator=g) < 0.5
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None]) / 16
    soft = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    x = torch.where(blur[:, None, None, None], soft, x)
    x = x + 0.04 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1), y


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse square-root frequency, so that the small parts (eyes, brows, nose, mouth) count."""
    freq = torch.bincount(labels.flatten(), minlength=n_classes).float()
    weights = (freq.sum() / freq.clamp_min(1)).sqrt()
    return weights / weights.mean()


@contextlib.contextmanager
def _cpu_threads(n: int | None, device: torch.device):
    """Run with ``n`` torch CPU threads (then restore the setting); no change for None or a GPU."""
    if n is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_segmenter(n_faces: int = 512, *, size: int = 32, steps: int = 400, batch_size: int = 16,
                    max_seconds: float | None = None, width: int = 16, lr: float = 3e-3, seed: int = 0,
                    device: str | torch.device | None = None, threads: int | None = 1,
                    progress: bool = True, preset: str = "classic") -> PartSegmenter:
    """Train a :class:`PartSegmenter` on ``n_faces`` synthetic faces and their label maps.

    ``steps`` Adam steps of ``batch_size`` augmented faces, with a class-weighted cross-entropy; training
    stops early after ``max_seconds`` when given. About a minute on a CPU with the defaults. Deterministic
    for a seed when ``max_seconds`` is None. ``threads``: torch CPU threads while training on the CPU: the
    convolutions are so small that extra threads gain little and, on a busy machine, lose a lot waiting for
    each other (None keeps torch's setting). ``preset``: which synthetic faces to learn (see
    :func:`colab_utils.data.synthetic.sample_face_params`): those the generator to be labelled was trained on.
    """
    if n_faces < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"train_segmenter: n_faces, steps and batch_size must be positive, got "
                         f"{n_faces}, {steps}, {batch_size}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    with _cpu_threads(threads, device):
        return _train(n_faces, size, steps, batch_size, max_seconds, width, lr, seed, device, progress, preset)


def _train(n_faces: int, size: int, steps: int, batch_size: int, max_seconds: float | None, width: int, lr: float,
           seed: int, device: torch.device, progress: bool, preset: str = "classic") -> PartSegmenter:
    """The training loop of :func:`train_segmenter`."""
    images, labels = make_faces(n_faces, size=size, seed=seed, preset=preset)
    x_all = as_image_batch(images)
    y_all = torch.from_numpy(labels).long()
    torch.manual_seed(seed)
    net = PartSegmenter(PARTS, width=width, size=size).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    weights = _class_weights(y_all, len(PARTS)).to(device)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    net.train()
    for _ in tqdm(range(steps), desc="training the segmenter", disable=not progress):
        idx = torch.randint(n_faces, (batch_size,), generator=g)
        x, y = _augment(x_all[idx], y_all[idx], g)
        loss = F.cross_entropy(net(x.to(device)), y.to(device), weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return net.eval()


def part_iou(pred: torch.Tensor, truth: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Intersection over union of every class between two label maps (same shape); NaN for a class that is
    in neither."""
    pred, truth = torch.as_tensor(pred).long().flatten(), torch.as_tensor(truth).long().flatten()
    if pred.shape != truth.shape:
        raise ValueError(f"part_iou: label maps differ in size ({pred.numel()} vs {truth.numel()} pixels)")
    table = torch.bincount(pred * n_classes + truth, minlength=n_classes * n_classes).view(n_classes, n_classes)
    inter = table.diagonal().double()
    union = table.sum(0).double() + table.sum(1).double() - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))


# ---------------------------------------------------------------------------------------------------------
# Real faces: any face parser, its weights through colab_utils.hub
# ---------------------------------------------------------------------------------------------------------

class ParserLabeler:
    """Turns a face parser into a labeler of our parts.

    ``parser`` takes float images [B, 3, H, W] in [-1, 1] and returns class logits [B, n, H', W'] or a
    label map [B, H', W'] over ``class_names``; ``part_map`` folds class names into part names (classes it
    does not list become ``"background"``). ``prepare`` adapts the input first (a parser trained on
    ImageNet-normalised 512 px crops needs its own resizing and normalisation). Calling the labeler returns
    label maps [B, H, W] at the input size, indexing ``part_names``.
    """

    def __init__(self, parser: Callable[[torch.Tensor], torch.Tensor], *,
                 class_names: Sequence[str] = CELEBAMASK_HQ_CLASSES,
                 part_map: Mapping[str, str] = CELEBAMASK_HQ_TO_PARTS, part_names: Sequence[str] = PARTS,
                 prepare: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if not callable(parser):
            raise TypeError(f"ParserLabeler: parser must be callable, got {type(parser).__name__}")
        self.parser, self.prepare = parser, prepare
        self.class_names, self.part_names = tuple(class_names), tuple(part_names)
        if "background" not in self.part_names:
            raise ValueError("ParserLabeler: part_names must include 'background'")
        unknown = sorted({p for p in part_map.values() if p not in self.part_names})
        if unknown:
            raise ValueError(f"ParserLabeler: part_map maps to {unknown}, which are not in part_names "
                             f"{list(self.part_names)}")
        background = self.part_names.index("background")
        self.lookup = torch.tensor([self.part_names.index(part_map[c]) if c in part_map else background
                                    for c in self.class_names], dtype=torch.long)

    @torch.no_grad()
    def __call__(self, images) -> torch.Tensor:
        x = as_image_batch(images)
        out = self.parser(self.prepare(x) if self.prepare is not None else x)
        out = torch.as_tensor(out)
        if out.dim() == 4:
            if out.shape[1] != len(self.class_names):
                raise ValueError(f"ParserLabeler: the parser returned {out.shape[1]} class maps for "
                                 f"{len(self.class_names)} class names")
            out = out.argmax(dim=1)
        if out.dim() != 3:
            raise ValueError(f"ParserLabeler: the parser must return logits [B, n, H, W] or labels [B, H, W], "
                             f"got shape {tuple(out.shape)}")
        out = out.long().cpu()
        if out.min() < 0 or out.max() >= len(self.class_names):
            raise ValueError(f"ParserLabeler: parser labels {int(out.min())}..{int(out.max())} fall outside the "
                             f"{len(self.class_names)} class names")
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0].long()
        return self.lookup[out]


def face_parser_from_hub(weights: str, build: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]], *,
                         sha256: str | None = None, dest: str | os.PathLike | None = None,
                         **labeler_options) -> ParserLabeler:
    """A :class:`ParserLabeler` for a face parser whose weights come through :mod:`colab_utils.hub`.

    ``weights`` is a hub registry name, an http(s) URL or a Google Drive link/id (downloaded once and cached
    on Drive in Colab); ``build(path)`` turns the downloaded file into the parser callable (your network
    class and its ``load_state_dict``). ``labeler_options`` go to :class:`ParserLabeler` (``class_names``,
    ``part_map``, ``prepare``...).
    """
    from colab_utils import hub

    path = hub.download(weights, dest, sha256=sha256)
    return ParserLabeler(build(Path(path)), **labeler_options)


# ---------------------------------------------------------------------------------------------------------
# Naming clusters by overlap
# ---------------------------------------------------------------------------------------------------------

@dataclass
class ClusterNaming:
    """How a catalog's clusters overlap the labelled parts.

    ``iou[k, p]``: intersection over union of cluster k and part p over all pixels; ``cluster_part[k]``: the
    part cluster k was named after (None when its best IoU fell under the threshold); ``parts``: part name ->
    cluster ids (what :meth:`Catalog.set_parts` receives); ``part_iou``: IoU of each named part's clusters,
    taken together, with the part.
    """

    part_names: tuple[str, ...]
    iou: torch.Tensor
    cluster_part: list[str | None]
    parts: dict[str, list[int]]
    part_iou: dict[str, float]

    def table(self) -> str:
        """One line per cluster (its best part and IoU), then one line per named part."""
        lines = ["| cluster | named | IoU | runner-up |", "|---:|---|---:|---|"]
        for k, name in enumerate(self.cluster_part):
            order = self.iou[k].argsort(descending=True)
            best, second = int(order[0]), int(order[1]) if len(order) > 1 else None
            runner = f"{self.part_names[second]} {float(self.iou[k, second]):.2f}" if second is not None else ""
            lines.append(f"| {k} | {name or '-'} | {float(self.iou[k, best]):.2f} | {runner} |")
        lines += ["", "| part | clusters | IoU of their union |", "|---|---|---:|"]
        for part, ids in self.parts.items():
            lines.append(f"| {part} | {ids} | {self.part_iou[part]:.2f} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def name_clusters(catalog: Catalog, label_maps: torch.Tensor, cluster_maps: torch.Tensor, *,
                  part_names: Sequence[str] = PARTS, min_iou: float = 0.0, apply: bool = True) -> ClusterNaming:
    """Name every cluster after the part it overlaps best.

    ``label_maps`` [B, H, W] are segmentations (values indexing ``part_names``) of the images whose cluster
    maps are ``cluster_maps`` [B, h, w] (``catalog.cluster_maps(G, w_plus)``); the cluster maps are resized
    to the label maps' size (nearest). A cluster whose best IoU is under ``min_iou`` stays unnamed. With
    ``apply``, the named parts are written into the catalog (``catalog.set_parts``).
    """
    labels = torch.as_tensor(label_maps).long()
    clusters = torch.as_tensor(cluster_maps).long()
    if labels.dim() == 2:
        labels = labels[None]
    if clusters.dim() == 2:
        clusters = clusters[None]
    if labels.dim() != 3 or clusters.dim() != 3 or labels.shape[0] != clusters.shape[0]:
        raise ValueError(f"name_clusters: label maps {tuple(labels.shape)} and cluster maps "
                         f"{tuple(clusters.shape)} must both be [B, H, W] for the same B images")
    n_parts, k = len(part_names), catalog.k
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_parts):
        raise ValueError(f"name_clusters: label values {int(labels.min())}..{int(labels.max())} do not index the "
                         f"{n_parts} part names")
    if clusters.numel() and (clusters.min() < 0 or clusters.max() >= k):
        raise ValueError(f"name_clusters: cluster ids {int(clusters.min())}..{int(clusters.max())} are outside "
                         f"the catalog's K={k}")
    if clusters.shape[-2:] != labels.shape[-2:]:
        clusters = F.interpolate(clusters[:, None].float(), size=labels.shape[-2:], mode="nearest")[:, 0].long()
    table = torch.bincount((clusters * n_parts + labels).flatten(), minlength=k * n_parts).view(k, n_parts).double()
    inter = table
    union = table.sum(1, keepdim=True) + table.sum(0, keepdim=True) - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))

    cluster_part: list[str | None] = []
    parts: dict[str, list[int]] = {}
    for c in range(k):
        best = int(iou[c].argmax())
        if table[c].sum() == 0 or float(iou[c, best]) <= 0 or float(iou[c, best]) < min_iou:
            cluster_part.append(None)
            continue
        cluster_part.append(part_names[best])
        parts.setdefault(part_names[best], []).append(c)
    part_iou = {}
    for name, ids in parts.items():
        p = list(part_names).index(name)
        inside = table[ids].sum(0)                       # pixels of the named clusters, by true part
        inter_p = float(inside[p])
        union_p = float(inside.sum()) + float(table[:, p].sum()) - inter_p
        part_iou[name] = inter_p / union_p if union_p else 0.0
    order = [p for p in part_names if p in parts]
    parts = {p: parts[p] for p in order}
    part_iou = {p: part_iou[p] for p in order}
    if apply and parts:
        catalog.set_parts(parts)
    return ClusterNaming(tuple(part_names), iou.float(), cluster_part, parts, part_iou)


@torch.no_grad()
def sample_cluster_maps(G, catalog: Catalog, *, n_samples: int = 16, seed: int = 1, truncation: float = 0.7,
                        truncation_latent: torch.Tensor | None = None,
                        batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n_samples`` seeded faces: ``(images [B, 3, H, W] in [-1, 1], cluster maps [B, h, w])``."""
    from .transfer import seeded_w_plus

    w_plus = seeded_w_plus(G, n_samples, seed, truncation=truncation, truncation_latent=truncation_latent)
    images, clusters = [], []
    for chunk in w_plus.split(batch_size):
        img, acts = G.synthesis(G.style_vectors(chunk), randomize_noise=False, return_activations=True)
        images.append(img.float().cpu())
        clusters.append(catalog.assign(acts[catalog.cluster_layer]).cpu())
    return torch.cat(images), torch.cat(clusters)


def label_samples(G, catalog: Catalog, labeler: Labeler, **sample_options) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]:
    """:func:`sample_cluster_maps` plus the labeler's segmentation of the same faces: ``(images, label_maps,
    cluster_maps)`` (feed the last two to :func:`name_clusters`)."""
    images, clusters = sample_cluster_maps(G, catalog, **sample_options)
    labels = labeler.predict(images) if isinstance(labeler, PartSegmenter) else labeler(images)
    return images, torch.as_tensor(labels).long().cpu(), clusters


def auto_name_clusters(G, catalog: Catalog, labeler: Labeler, *, part_names: Sequence[str] = PARTS,
                       n_samples: int = 16, seed: int = 1, min_iou: float = 0.05, **sample_options) -> ClusterNaming:
    """Label ``n_samples`` of G's faces with ``labeler`` (a trained :class:`PartSegmenter` or a
    :class:`ParserLabeler`) and name the catalog's clusters by overlap (written into the catalog)."""
    _, labels, clusters = label_samples(G, catalog, labeler, n_samples=n_samples, seed=seed, **sample_options)
    return name_clusters(catalog, labels, clusters, part_names=part_names, min_iou=min_iou)


def _tinted_tiles(images: torch.Tensor, cluster_maps: torch.Tensor, k: int, alpha: float,
                  color: Sequence[int]) -> list[list[np.ndarray]]:
    """For every cluster, the faces with that cluster's pixels tinted and the rest dimmed."""
    faces = to_uint8(images).astype(np.float32)                      # [B, H, W, 3]
    maps = torch.as_tensor(cluster_maps).long()
    if maps.dim() != 3 or maps.shape[0] != faces.shape[0]:
        raise ValueError(f"cluster heatmaps: expected cluster maps [{faces.shape[0]}, h, w] for "
                         f"{faces.shape[0]} images, got {tuple(maps.shape)}")
    maps = F.interpolate(maps[:, None].float(), size=faces.shape[1:3], mode="nearest")[:, 0].long().numpy()
    tint = np.asarray(color, np.float32)
    return [list(np.where((maps == c)[..., None], (1 - alpha) * faces + alpha * tint, 0.45 * faces)
                 .round().astype(np.uint8)) for c in range(k)]


def cluster_heatmap_rows(images: torch.Tensor, cluster_maps: torch.Tensor, k: int, *, alpha: float = 0.6,
                         color: Sequence[int] = (255, 40, 40)) -> list:
    """One PIL strip per cluster: the faces with that cluster tinted (thumbnails for the naming form)."""
    return [image_grid(tiles, nrow=len(tiles), padding=1)
            for tiles in _tinted_tiles(images, cluster_maps, k, alpha, color)]


def cluster_heatmap_grid(images: torch.Tensor, cluster_maps: torch.Tensor, k: int, *, alpha: float = 0.6,
                         color: Sequence[int] = (255, 40, 40), names: Sequence[str | None] | None = None):
    """A grid with one row per cluster and one column per face: each cluster's pixels tinted over the face.

    ``images`` [B, 3, H, W] in [-1, 1]; ``cluster_maps`` [B, h, w] (resized nearest to the images); ``names``
    (one entry per cluster, None for unnamed ones) adds the part to the row labels. Returns a PIL image.
    """
    rows = _tinted_tiles(images, cluster_maps, k, alpha, color)
    if names is not None and len(names) != k:
        raise ValueError(f"cluster_heatmap_grid: {len(names)} names for {k} clusters")
    labels = [f"{c}: {names[c]}" if names is not None and names[c] else str(c) for c in range(k)]
    return image_grid([tile for row in rows for tile in row], nrow=len(rows[0]), padding=1, row_labels=labels)
