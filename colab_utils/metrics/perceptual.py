"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018)
through the ``lpips`` package, and the diversity score StarGAN v2 reports with it.

The package ships its learned linear heads (v0.1); the ImageNet backbones (torchvision's AlexNet or VGG-16)
come through :mod:`colab_utils.hub`, sha256-pinned and cached, instead of torchvision's own download. StarGAN
v2 (Choi et al., CVPR 2020, Sec. 4) measures diversity as the mean LPIPS over all pairs of outputs generated
from one source; the official code uses AlexNet-LPIPS v0.1, which :func:`lpips_model` builds by default.
"""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import torch
from torch import nn

from colab_utils import hub
from colab_utils.loading import identify, safe_load

from .features import WeightsUnavailableError

BACKBONES = {"alex": ("alexnet_imagenet", "alexnet"), "vgg": ("vgg16_imagenet", "vgg16")}


class LPIPS(nn.Module):
    """LPIPS distance between image batches in [-1, 1]: ``model(x, y)`` -> [N] (one distance per pair)."""

    def __init__(self, net: str = "alex", backbone_path: str | Path | None = None):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"net must be one of {sorted(BACKBONES)}, got {net!r}")
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lpips passes torchvision's deprecated pretrained=False
            self.net = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
        self.net_name = net
        if backbone_path is not None:
            self._load_backbone(backbone_path)
        self.requires_grad_(False).eval()

    def _stages(self):
        return [module for name, module in self.net.net.named_children() if name.startswith("slice")]

    def _load_backbone(self, path) -> None:
        """torchvision weights (``features.<index>.*``; the classifier may be left out) into lpips' stages,
        whose layers keep torchvision's indices as their names."""
        model = BACKBONES[self.net_name][1]
        state = safe_load(path)  # an unsafe or damaged file is refused here, with the error that says which
        try:
            features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            used = set()
            for stage in self._stages():
                for index, layer in stage.named_children():
                    part = {k[len(index) + 1:]: v for k, v in features.items() if k.split(".")[0] == index}
                    layer.load_state_dict(part)
                    used |= {f"{index}.{k}" for k in part}
            if not used or used != set(features):
                raise KeyError(f"{len(features)} features.* tensors, {len(used)} of them usable")
        except (RuntimeError, ValueError, KeyError, AttributeError) as err:
            problem = " ".join(str(err).split())[:300] or type(err).__name__
            what = identify(state)
            raise ValueError(f"{path}: not torchvision {model} weights ({problem})"
                             + (f"; it is {what}" if what else "")) from None

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two image batches [N, 3, H, W] of one shape, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        device = next(self.parameters()).device
        return self.net(x.float().to(device), y.float().to(device)).flatten()


def lpips_model(net: str = "alex", device: str | torch.device | None = None, *, dest: str | Path | None = None,
                progress: bool = True) -> LPIPS:
    """LPIPS v0.1 with the ImageNet ``net`` backbone ("alex", as StarGAN v2, or "vgg"), its weights downloaded
    once through the hub. Raises :class:`WeightsUnavailableError` saying what to do when they cannot be
    fetched."""
    if net not in BACKBONES:
        raise ValueError(f"net must be one of {sorted(BACKBONES)}, got {net!r}")
    hub_name = BACKBONES[net][0]
    try:
        path = hub.download(hub_name, dest, progress=progress)
    except (hub.DownloadError, OSError) as err:
        entry = hub.REGISTRY[hub_name]
        raise WeightsUnavailableError(
            f"LPIPS needs torchvision's ImageNet {BACKBONES[net][1]} weights {entry.filename} (hub name "
            f"{hub_name!r}), which could not be downloaded: {err}. Without internet, copy that file from "
            f"{entry.urls[0]} into the downloads folder (or pass its folder as dest=)") from None
    return LPIPS(net, path).to(device if device is not None else "cpu")


@torch.no_grad()
def pairwise_diversity(model, outputs: list[torch.Tensor]) -> float:
    """StarGAN v2's diversity: the mean LPIPS over every pair of ``outputs`` (each a batch [N, 3, H, W]
    generated from the same N sources), averaged over the N sources. 0 when all outputs are equal."""
    if len(outputs) < 2:
        raise ValueError(f"diversity needs at least two outputs per source, got {len(outputs)}")
    distances = [model(a, b).mean() for a, b in itertools.combinations(outputs, 2)]
    return float(torch.stack(distances).mean())
