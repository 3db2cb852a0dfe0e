"""Differentiable image distances for inverting a generator: LPIPS-VGG, or a fixed random stand-in offline.

Projection and pivotal tuning need a perceptual distance they can back-propagate through. The StyleGAN2
projector (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020, Sec. 5) and PTI
(Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images", ACM TOG 2022) use LPIPS with VGG-16
(Zhang et al., CVPR 2018). :func:`perceptual_distance` returns it through :mod:`colab_utils.metrics` (the ``lpips``
package's learned heads, the ImageNet backbone fetched once through :mod:`colab_utils.hub`), or, with
``"random"``, :class:`RandomFeatureDistance`: the same recipe (unit-normalised channels of several stages,
squared differences averaged over space and summed) on a small convolutional network with fixed random weights.
It is offline and deterministic, for tests and smoke runs; its values are not LPIPS values.

Every distance is a module ``distance(x, y) -> [N]`` on image batches in [-1, 1].
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("lpips-vgg", "random")


class RandomFeatureDistance(nn.Module):
    """An LPIPS-shaped distance over a fixed random network: four 3x3 convolutions (stride 2 from the second
    on) with leaky ReLU; at every stage the features are divided by their norm over channels, and the squared
    difference is averaged over space and summed over channels and stages. Weights drawn from ``seed`` on the
    CPU, so the distance is the same on every machine."""

    name = "random features"

    def __init__(self, width: int = 32, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        shapes = [(width, 3), (width, width), (2 * width, width), (2 * width, 2 * width)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(out, inp, 3, 3, generator=generator) * math.sqrt(2.0 / (inp * 9)),
                         requires_grad=False) for out, inp in shapes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, weight in enumerate(self.weights):
            x = F.leaky_relu(F.conv2d(x, weight.to(x.dtype), stride=1 if i == 0 else 2, padding=1), 0.2)
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-8))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y)
        return sum((a - b).pow(2).sum(1).mean((1, 2)) for a, b in zip(self.stages(x.float()), self.stages(y.float())))


class LPIPSDistance(nn.Module):
    """LPIPS v0.1 (``lpips`` package) with the VGG-16 backbone, differentiable with respect to its inputs;
    images larger than 256 px are area-downsampled to 256 first, as the StyleGAN2 projector does."""

    name = "LPIPS-VGG"

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y)
        if x.shape[-1] > 256:
            x, y = (F.adaptive_avg_pool2d(t, (256, 256)) for t in (x, y))
        return self.network(x.float(), y.float()).flatten()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"a perceptual distance needs two image batches [N, 3, H, W] of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def perceptual_distance(kind: str | nn.Module = "lpips-vgg", device: str | torch.device | None = None) -> nn.Module:
    """The distance to invert with: ``"lpips-vgg"`` (weights through :mod:`colab_utils.hub`; raises
    :class:`~colab_utils.metrics.WeightsUnavailableError` saying what to do when they cannot be fetched),
    ``"random"`` (:class:`RandomFeatureDistance`, offline), or a module ``(x, y) -> [N]`` passed through."""
    if isinstance(kind, nn.Module):
        distance = kind
    elif kind == "lpips-vgg":
        from colab_utils.metrics import lpips_model

        distance = LPIPSDistance(lpips_model("vgg", device).net)
    elif kind == "random":
        distance = RandomFeatureDistance()
    else:
        raise ValueError(f"unknown perceptual distance {kind!r}: use one of {', '.join(map(repr, KINDS))} or pass "
                         f"a module (x, y) -> [N]")
    return distance.to(device if device is not None else "cpu").requires_grad_(False).eval()
