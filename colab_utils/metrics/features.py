"""Image features for FID and KID, and the uint8 images they are computed from.

A feature *extractor* is any callable ``extractor(images) -> features`` that takes uint8 images
``[N, 3, H, W]`` and returns float features ``[N, D]``, with two attributes: ``name`` (a short string that
keys cached dataset statistics, so two extractors with one name must compute the same features) and ``dim``
(``D``). Two come with the package:

- :func:`inception`: the TensorFlow Inception-v3 (2015-12-05 release) that FID (Heusel et al., "GANs Trained
  by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017) and KID (Bińkowski et
  al., "Demystifying MMD GANs", ICLR 2018) are defined with, in torch-fidelity's PyTorch port, whose
  2048-dimensional pool features match the TensorFlow graph that NVlabs' StyleGAN2(-ADA) metrics use. Its
  weights come through :mod:`colab_utils.hub` (sha256-pinned, cached in the project's downloads folder, on
  Drive when it is mounted). It always runs in fp32.
- :class:`RandomFeatures`: a small convolutional network with fixed random weights. Deterministic, offline
  and fast, for tests and smoke runs; its "FID" is only comparable with itself, never with published FIDs.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from colab_utils import hub

INCEPTION_HUB_NAME = "inception_v3_fid"
INCEPTION_NAME = "inception-v3-tf-2015-12-05-pool3"


class WeightsUnavailableError(hub.DownloadError):
    """A metric's pretrained weights could not be fetched (offline, or the source moved)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as uint8 ``[N, 3, H, W]``: uint8 passes through; float images in [-1, 1] are clamped and rounded
    to the nearest level (as saving them to PNG would)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [N, 3, H, W], got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W] (RGB), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def check_extractor(extractor) -> None:
    """Raise TypeError unless ``extractor`` is callable with a string ``name`` and an int ``dim``."""
    if not callable(extractor):
        raise TypeError(f"a feature extractor must be callable (uint8 images -> features), got "
                        f"{type(extractor).__name__}")
    if not isinstance(getattr(extractor, "name", None), str) or not isinstance(getattr(extractor, "dim", None), int):
        raise TypeError(f"a feature extractor needs a str .name and an int .dim; {type(extractor).__name__} has "
                        f"name={getattr(extractor, 'name', None)!r}, dim={getattr(extractor, 'dim', None)!r}")


def extractor_device(extractor) -> torch.device:
    """Where ``extractor`` wants its input: its parameters' device, else its ``device`` attribute, else CPU."""
    if isinstance(extractor, nn.Module):
        for tensor in extractor.parameters():
            return tensor.device
        for tensor in extractor.buffers():
            return tensor.device
    return torch.device(getattr(extractor, "device", "cpu"))


@torch.no_grad()
def features_of(extractor, images: torch.Tensor, *, on_device: bool = False) -> torch.Tensor:
    """Features [N, D] (float64; on the CPU, or with ``on_device`` where the extractor ran) of one batch: moved
    to the extractor's device as uint8, computed outside any autocast region (the features need fp32)."""
    images = to_uint8(images)
    device = extractor_device(extractor)
    with _no_autocast(device):
        feats = extractor(images.to(device))
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] != images.shape[0]:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise ValueError(f"feature extractor {extractor.name!r} returned {shape} for {images.shape[0]} images; "
                         f"expected [{images.shape[0]}, {extractor.dim}]")
    if feats.shape[1] != extractor.dim:
        raise ValueError(f"feature extractor {extractor.name!r} says dim={extractor.dim} but returned "
                         f"{feats.shape[1]} features")
    feats = feats.detach()
    if device.type == "mps" or not on_device:
        return feats.to("cpu", torch.float64)
    return feats.to(torch.float64)


def _no_autocast(device: torch.device):
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def batched(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """``images`` in consecutive chunks of ``batch_size``."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


# ---------------------------------------------------------------------------------------------------------
# Inception-v3 (torch-fidelity's port of the TensorFlow graph)
# ---------------------------------------------------------------------------------------------------------

class InceptionFeatures(nn.Module):
    """The 2048 pool3 features of torch-fidelity's TensorFlow-compatible Inception-v3 (its input resize to
    299 px and scaling included), in fp32."""

    name = INCEPTION_NAME
    dim = 2048

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(weights_path))
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        (pool,) = self.net(images)
        return pool


def inception(device: str | torch.device | None = None, *, dest: str | Path | None = None,
              progress: bool = True) -> InceptionFeatures:
    """The FID/KID feature extractor on ``device``, its weights (91 MiB, hub name ``inception_v3_fid``)
    downloaded once to ``dest`` (default: the project's downloads folder) and verified by sha256. Raises
    :class:`WeightsUnavailableError` saying what to do when they cannot be fetched."""
    try:
        path = hub.download(INCEPTION_HUB_NAME, dest, progress=progress)
    except (hub.DownloadError, OSError) as err:
        entry = hub.REGISTRY[INCEPTION_HUB_NAME]
        raise WeightsUnavailableError(
            f"FID and KID need the Inception-v3 weights {entry.filename} (hub name {INCEPTION_HUB_NAME!r}), "
            f"which could not be downloaded: {err}. Without internet, copy that file (sha256 "
            f"{entry.sha256[:12]}...) from {entry.urls[0]} into the downloads folder (or pass its folder as "
            f"dest=), or evaluate with extractor=RandomFeatures() for numbers comparable only among themselves"
        ) from None
    return InceptionFeatures(path).to(device if device is not None else "cpu")


# ---------------------------------------------------------------------------------------------------------
# A small deterministic stand-in (tests, smoke runs)
# ---------------------------------------------------------------------------------------------------------

class RandomFeatures(nn.Module):
    """A fixed random network: three stride-2 convolutions with ReLU, then the per-channel mean and standard
    deviation of every stage (so colour, texture and sharpness all move the features). Weights are drawn from
    ``seed`` on the CPU, so the features are the same on every machine. Not Inception: its distances compare
    models with each other, not with published FIDs."""

    def __init__(self, dim: int = 96, seed: int = 0, size: int = 64):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 12 or dim % 12:
            raise ValueError(f"dim must be a positive multiple of 12 (mean and std of 1 + 2 + 3 widths), got {dim!r}")
        self.dim, self.size = dim, int(size)
        self.name = f"random-conv{dim}-seed{seed}-{size}px"
        width = dim // 12
        generator = torch.Generator().manual_seed(int(seed))
        shapes = [(width, 3), (width * 2, width), (width * 3, width * 2)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(out, inp, 3, 3, generator=generator) / math.sqrt(inp * 9), requires_grad=False)
            for out, inp in shapes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        stats = []
        for weight in self.weights:
            x = F.relu(F.conv2d(x, weight, stride=2, padding=1))
            stats += [x.mean((2, 3)), x.std((2, 3))]
        # order: means of stage 1..3, then their stds, so the layout does not depend on the width
        return torch.cat(stats[0::2] + stats[1::2], dim=1)

