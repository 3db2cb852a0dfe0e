"""The training data of StarGAN v2 as the official release draws it (Choi et al., CVPR 2020), made resumable.

Every iteration needs
- a **source** batch ``x_src, y_src``, drawn with replacement with weights ``1 / (images in its domain)``, so
  every domain is seen equally often however unbalanced the folders are;
- a **reference** batch ``x_ref, x_ref2, y_ref``: two different images of the same domain per row (the
  domain drawn the same balanced way), for reference-guided translation and the diversity loss;
- two latent codes ``z_trg, z_trg2`` per row (standard normal).

Each image is augmented as in the official loader: with probability 0.5 a random resized crop (area
0.8-1, aspect ratio 0.9-1.1) scaled back to ``img_size``, then a horizontal flip with probability 0.5;
pixels are in [-1, 1].

Unlike the official loader everything random comes from seeded generators whose state is saved with the
checkpoints (:meth:`TrainingData.state_dict`): the source and reference orders are
:class:`colab_utils.checkpoint.ResumableSampler` subclasses, and augmentation and latent codes use one
``torch.Generator`` in the main process. A resumed run therefore sees exactly the batches an uninterrupted
one would, whatever the number of loader workers.

Folders: ``root/train/<domain>/*`` (and optionally ``root/val/<domain>/*``), or ``root/<domain>/*``; a
``.zip`` (e.g. on Google Drive) is first copied to local disk and unpacked (:func:`prepare_dataset`).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from colab_utils.checkpoint import ResumableSampler, infinite_batches
from colab_utils.data.images import DomainFolderDataset, list_images, prepare_dataset

CROP_PROB = 0.5
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)
FLIP_PROB = 0.5
CACHE_LIMIT_BYTES = 1 << 30  # keep decoded pixels in memory below this much (cache_images=None)
_SOURCE, _REFERENCE = 0, 1  # random streams of the two samplers


def _mix(*keys: int) -> int:
    """A 63-bit seed from several integers (independent streams for each key tuple)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFF_FFFF for k in keys]).generate_state(1, np.uint64)[0]) >> 1


# ---------------------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------------------

def find_split(root: str | os.PathLike, split: str = "train") -> Path:
    """The folder of domain sub-folders for ``split``: ``root/<split>`` when it exists, else ``root`` itself
    (a folder that directly holds ``<domain>/`` folders). A zip is copied to local disk and unpacked first."""
    root = prepare_dataset(root)
    candidate = root / split
    return candidate if candidate.is_dir() else root


def load_domains(root: str | os.PathLike, img_size: int, *, split: str = "train", min_images: int = 2,
                 cache: bool | None = None) -> DomainFolderDataset:
    """The images of ``split`` as a :class:`DomainFolderDataset` (``.domains``, ``.targets``), checked:
    at least two domain folders, each with at least ``min_images`` readable images (a ValueError names the
    folder otherwise); unreadable files are skipped and named in one warning. ``cache=None`` keeps the
    decoded pixels in memory when they take less than 1 GiB."""
    folder = find_split(root, split)
    if cache is None:
        count = len(list_images(folder))
        cache = count * 3 * img_size * img_size <= CACHE_LIMIT_BYTES
    return DomainFolderDataset(folder, img_size, min_images_per_domain=min_images, cache=cache)


def domain_counts(dataset: DomainFolderDataset) -> dict[str, int]:
    """Images per domain name."""
    counts = np.bincount(np.asarray(dataset.targets, np.int64), minlength=len(dataset.domains))
    return dict(zip(dataset.domains, counts.tolist()))


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------

class BalancedSampler(ResumableSampler):
    """Indices drawn with replacement, each with weight ``1 / (size of its domain)`` (the official
    ``WeightedRandomSampler``), ``len(labels)`` per epoch; epoch ``e`` is drawn from a generator seeded by
    ``(seed, stream, e)``, so it resumes exactly (see :class:`ResumableSampler`)."""

    def __init__(self, labels, seed: int = 0, stream: int = 0):
        labels = torch.as_tensor(np.asarray(labels, np.int64))
        super().__init__(len(labels), seed=seed, shuffle=True)
        counts = torch.bincount(labels).double()
        if (counts[labels] == 0).any():
            raise ValueError("BalancedSampler: every label must occur")
        self.weights = 1.0 / counts[labels]
        self.stream_id = stream

    def epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(_mix(self.seed, self.stream_id, epoch))
        return torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist()


class ReferencePairs(torch.utils.data.Dataset):
    """Item ``i``: ``(image i, its partner, domain)``, where the partner is another image of the same domain
    (the official ``ReferenceDataset`` pairs every file with one of a shuffled copy of its domain; here the
    shuffled copy is rotated by one, so an image is never its own partner when the domain has two or more)."""

    def __init__(self, dataset: DomainFolderDataset, seed: int = 0):
        self.dataset = dataset
        targets = np.asarray(dataset.targets, np.int64)
        self.partner = np.arange(len(targets))
        rng = np.random.default_rng(_mix(seed, _REFERENCE, 0xFA1))
        for domain in range(len(dataset.domains)):
            members = rng.permutation(np.flatnonzero(targets == domain))
            self.partner[members] = np.roll(members, -1)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        x2, _ = self.dataset[int(self.partner[index])]
        return x, x2, y


# ---------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------

def crop_box(height: int, width: int, generator: torch.Generator, scale=CROP_SCALE, ratio=CROP_RATIO):
    """``(top, left, h, w)`` of a random crop covering ``scale`` of the area with aspect ratio in ``ratio``
    (log-uniform), as torchvision's RandomResizedCrop picks it: 10 tries, then the centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def augment_plan(count: int, height: int, width: int, generator: torch.Generator, *, crop_prob: float = CROP_PROB,
                 flip_prob: float = FLIP_PROB) -> list[tuple[tuple[int, int, int, int] | None, bool]]:
    """The random part of :func:`augment` for ``count`` images: per image ``(crop box or None, flip)``. Drawn
    for a whole global batch on every rank, it keeps the ranks' augmentation in step with one process."""
    draws = torch.rand(count, 2, generator=generator, dtype=torch.float64)
    return [(crop_box(height, width, generator) if crop < crop_prob else None, flip < flip_prob)
            for crop, flip in draws.tolist()]


def apply_augment(x: torch.Tensor, plan) -> torch.Tensor:
    """Crop (bilinear, back to H×W) and flip each image of ``x`` [B,3,H,W] as its entry of ``plan`` says."""
    height, width = x.shape[-2:]
    out = []
    for image, (box, flip) in zip(x, plan):
        if box is not None:
            top, left, h, w = box
            patch = image[None, :, top:top + h, left:left + w]
            image = F.interpolate(patch, size=(height, width), mode="bilinear", align_corners=False)[0]
        if flip:
            image = image.flip(-1)
        out.append(image)
    return torch.stack(out)


def augment(x: torch.Tensor, generator: torch.Generator, *, crop_prob: float = CROP_PROB,
            flip_prob: float = FLIP_PROB) -> torch.Tensor:
    """The official augmentation of a batch ``x`` [B,3,H,W], image by image: with ``crop_prob`` a random
    resized crop (bilinear, back to H×W), then a horizontal flip with ``flip_prob``. The random numbers
    come from ``generator`` (CPU); the pixels stay on ``x``'s device."""
    plan = augment_plan(x.size(0), *x.shape[-2:], generator, crop_prob=crop_prob, flip_prob=flip_prob)
    return apply_augment(x, plan)


# ---------------------------------------------------------------------------------------------------------
# What the trainer draws per iteration
# ---------------------------------------------------------------------------------------------------------

class Batch(NamedTuple):
    x_src: torch.Tensor   # [B,3,H,W] sources
    y_src: torch.Tensor   # [B] their domains
    x_ref: torch.Tensor   # [B,3,H,W] references
    x_ref2: torch.Tensor  # [B,3,H,W] a second reference of the same domain
    y_ref: torch.Tensor   # [B] the target domains (those of the references)
    z_trg: torch.Tensor   # [B,latent_dim]
    z_trg2: torch.Tensor  # [B,latent_dim]

    def to(self, device, memory_format=torch.contiguous_format) -> "Batch":
        def move(t):
            t = t.to(device, non_blocking=True)
            return t.contiguous(memory_format=memory_format) if t.dim() == 4 else t
        return Batch(*(move(t) for t in self))


class TrainingData:
    """Source and reference batches, latent codes and augmentation for StarGAN v2 training; resumable.

        data = TrainingData("faces.zip", img_size=256, batch_size=8, latent_dim=16, seed=777)
        batch = data.next(device)          # a Batch
        state = data.state_dict()          # sampler positions and the augmentation generator

    ``dataset`` may be given instead of a root (already loaded domains).

    Several processes (``rank`` of ``world_size``): ``batch_size`` is the global batch. Every rank draws the
    global batch's indices, latent codes and augmentation identically and keeps rows ``rank, rank +
    world_size, ...`` (:func:`colab_utils.distributed.rank_share`), loading only those images; the union of
    the ranks' batches is the one-process batch, and the state is the one-process state on every rank (a
    checkpoint moves between process counts)."""

    def __init__(self, root: str | os.PathLike | None, img_size: int, batch_size: int, latent_dim: int, *,
                 seed: int = 0, min_images: int = 2, num_workers: int = 0, crop_prob: float = CROP_PROB,
                 cache: bool | None = None, dataset: DomainFolderDataset | None = None, pin_memory: bool = False,
                 rank: int = 0, world_size: int = 1):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(f"a global batch of {batch_size} does not split over {world_size} processes "
                             f"(rank {rank}); use a multiple of {world_size}")
        if (root is None) == (dataset is None):
            raise ValueError("TrainingData needs either a data root (folder or zip) or a loaded dataset")
        self.dataset = dataset if dataset is not None else load_domains(root, img_size, min_images=min_images,
                                                                        cache=cache)
        if self.dataset.size != img_size:
            raise ValueError(f"the dataset holds {self.dataset.size}px images, the model needs {img_size}px")
        self.img_size, self.batch_size, self.latent_dim, self.crop_prob = img_size, batch_size, latent_dim, crop_prob
        self.domains = list(self.dataset.domains)
        self.source_sampler = BalancedSampler(self.dataset.targets, seed, _SOURCE)
        self.reference_sampler = BalancedSampler(self.dataset.targets, seed, _REFERENCE)
        self.pairs = ReferencePairs(self.dataset, seed)
        self.generator = torch.Generator().manual_seed(_mix(seed, 0xA06))
        self.rank, self.world_size = rank, world_size
        options = {"num_workers": num_workers, "pin_memory": pin_memory, "share": (rank, world_size)}
        local = batch_size // world_size
        self._sources = infinite_batches(self.dataset, self.source_sampler, local, **options)
        self._references = infinite_batches(self.pairs, self.reference_sampler, local, **options)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def counts(self) -> dict[str, int]:
        return domain_counts(self.dataset)

    def next(self, device="cpu", memory_format=torch.contiguous_format) -> Batch:
        """The next iteration's inputs, augmented, on ``device``."""
        x_src, y_src = next(self._sources)
        x_ref, x_ref2, y_ref = next(self._references)
        g, share = self.generator, slice(self.rank, None, self.world_size)
        z_trg = torch.randn(self.batch_size, self.latent_dim, generator=g)[share]
        z_trg2 = torch.randn(self.batch_size, self.latent_dim, generator=g)[share]
        batch = Batch(x_src, y_src, x_ref, x_ref2, y_ref, z_trg, z_trg2).to(device)
        size = (self.img_size, self.img_size)
        augmented = [apply_augment(x, augment_plan(self.batch_size, *size, g, crop_prob=self.crop_prob)[share])
                     for x in (batch.x_src, batch.x_ref, batch.x_ref2)]
        return batch._replace(x_src=augmented[0], x_ref=augmented[1], x_ref2=augmented[2]).to(device, memory_format)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next()

    def state_dict(self) -> dict:
        return {"source": self.source_sampler.state_dict(), "reference": self.reference_sampler.state_dict(),
                "generator": self.generator.get_state(), "domains": list(self.domains)}

    def load_state_dict(self, state) -> None:
        if list(state.get("domains", self.domains)) != self.domains:
            warnings.warn(f"the checkpoint was trained on domains {list(state['domains'])}, the data folder now "
                          f"holds {self.domains}: domain indices may mean other things", stacklevel=2)
        self.source_sampler.load_state_dict(state["source"])
        self.reference_sampler.load_state_dict(state["reference"])
        self.generator.set_state(state["generator"].cpu())


def fixed_examples(dataset: DomainFolderDataset, per_domain: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_domain`` images of every domain (fewer where a domain has fewer), picked by ``seed``, as
    ``(images [N,3,H,W], domains [N])``: the fixed sources and references of sample grids."""
    rng = np.random.default_rng(seed)
    picks = []
    for domain in range(len(dataset.domains)):
        members = np.flatnonzero(np.asarray(dataset.targets) == domain)
        picks += sorted(rng.choice(members, size=min(per_domain, len(members)), replace=False).tolist())
    images = torch.stack([dataset[i][0] for i in picks])
    return images, torch.tensor([dataset.targets[i] for i in picks])
