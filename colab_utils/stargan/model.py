"""StarGAN v2 networks (Choi, Uh, Yoo, Ha, CVPR 2020, "StarGAN v2: Diverse Image Synthesis for Multiple
Domains"), in the order the paper introduces them:

1. the **generator** G(x, s): an encoder of pre-activation residual blocks with instance norm that
   downsamples the image, and a decoder of residual blocks whose normalisation is AdaIN driven by the style
   code s; for faces (``w_hpf > 0``, the paper's CelebA-HQ setting, described in its appendix) encoder
   features are added back to the decoder through a high-pass filter under face masks from FAN, which
   keeps the source's identity-bearing detail;
2. the **mapping network** F(z, y): an MLP trunk shared by all domains, then one head per domain that turns
   a latent code z into the style code of domain y;
3. the **style encoder** E(x, y): a residual CNN trunk, then one linear head per domain that extracts the
   style code of domain y from a reference image;
4. the **discriminator** D(x, y): the same trunk ending in one real/fake logit per domain.

Every module and parameter keeps the name it has in the official clovaai/stargan-v2 release, so its
``nets_ema`` / ``nets`` files load key for key (see :mod:`colab_utils.stargan.formats`).
Channel widths start at ``2**14 // img_size`` (or ``base_dim``) and double at every downsampling up to
``max_conv_dim``; ``base_dim`` and the mapping network's ``hidden_dim`` (512 in the paper) exist for small
models (tests, quick CPU runs).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .fan import FAN

# Feature-map sizes where the official generator adds the high-pass skip (masks[0] at 32, masks[1] above).
HPF_SIZES = (32, 64, 128)
MAPPING_WIDTH = 512  # hidden width of the mapping network, fixed in the paper


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def first_width(img_size: int, base_dim: int | None = None) -> int:
    """Channels after ``from_rgb``: ``base_dim`` when given, else the official ``2**14 // img_size`` (64 at
    256px, 32 at 512px...)."""
    return base_dim if base_dim is not None else 2**14 // img_size


def check_img_size(img_size: int) -> int:
    if not isinstance(img_size, int) or img_size < 32 or img_size & (img_size - 1) or img_size > 2**14:
        raise ValueError(f"img_size must be a power of two between 32 and 16384, got {img_size!r}")
    return img_size


def select_domain(per_domain: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row i of ``per_domain`` [B, num_domains, ...] at domain ``y[i]``."""
    if y.dim() != 1 or y.size(0) != per_domain.size(0):
        raise ValueError(f"y must hold one domain index per image: got shape {tuple(y.shape)} "
                         f"for a batch of {per_domain.size(0)}")
    return per_domain[torch.arange(y.size(0), device=y.device), y]


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------

class ResBlk(nn.Module):
    """Pre-activation residual block: [IN] -> LReLU -> conv3x3 -> [avgpool] -> [IN] -> LReLU -> conv3x3,
    plus a (1x1-projected, pooled) shortcut; the sum is divided by sqrt(2) to keep unit variance."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False):
        super().__init__()
        self.normalize = normalize
        self.downsample = downsample
        self.learned_sc = dim_in != dim_out
        self.actv = leaky_relu()
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_sc:
            x = self.conv1x1(x)
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return x

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(self.actv(x))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(self.actv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.shortcut(x) + self.residual(x)) / math.sqrt(2)


class AdaIN(nn.Module):
    """Adaptive instance norm (Huang & Belongie 2017): ``(1 + gamma(s)) * IN(x) + beta(s)``."""

    def __init__(self, style_dim: int, num_features: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block: AdaIN -> LReLU -> [upsample x2] -> conv3x3 -> AdaIN -> LReLU -> conv3x3.
    Without the high-pass skip (``w_hpf == 0``) it adds an (upsampled, 1x1-projected) shortcut and divides
    by sqrt(2); with it the block has no shortcut at all (the high-pass skip carries the detail instead, as
    in the official release), and ``conv1x1`` is kept only so that the official weights load."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int = 64, w_hpf: float = 0, upsample: bool = False):
        super().__init__()
        self.w_hpf = w_hpf
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.actv = leaky_relu()
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.actv(self.norm1(x, s))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        x = self.actv(self.norm2(x, s))
        return self.conv2(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self.residual(x, s)
        if self.w_hpf == 0:
            out = (out + self.shortcut(x)) / math.sqrt(2)
        return out


def highpass_kernel(w_hpf: float) -> torch.Tensor:
    """The 3x3 Laplacian-like high-pass kernel of the official release, divided by ``w_hpf``."""
    return torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]) / w_hpf


class HighPass(nn.Module):
    """Depthwise 3x3 high-pass filter; ``filter`` is a buffer (official files before April 2021 lack it,
    and it follows from ``w_hpf`` anyway)."""

    def __init__(self, w_hpf: float):
        super().__init__()
        self.register_buffer("filter", highpass_kernel(w_hpf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        weight = self.filter.to(x.dtype)[None, None].repeat(channels, 1, 1, 1)
        return F.conv2d(x, weight, padding=1, groups=channels)


# ---------------------------------------------------------------------------------------------------------
# 1. Generator
# ---------------------------------------------------------------------------------------------------------

class Generator(nn.Module):
    """G(x, s, masks): translate image ``x`` [B,3,H,W] in [-1,1] to the style code ``s`` [B,style_dim].

    ``log2(img_size) - 4`` down/up-sampling blocks (one more with the high-pass skip) and two bottleneck
    blocks. ``masks`` are the two FAN face masks (:func:`colab_utils.stargan.fan.compute_masks`); when
    given, encoder features at 32, 64 and 128 px are multiplied by the mask (``masks[0]`` at 32 px,
    ``masks[1]`` above), high-pass filtered and added to the decoder features of the same size.
    """

    def __init__(self, img_size: int = 256, style_dim: int = 64, max_conv_dim: int = 512, w_hpf: float = 1,
                 base_dim: int | None = None):
        super().__init__()
        check_img_size(img_size)
        self.img_size, self.style_dim, self.w_hpf = img_size, style_dim, w_hpf
        dim_in = first_width(img_size, base_dim)
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()  # built like a stack: the last encoder block's mirror comes first
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), leaky_relu(),
                                    nn.Conv2d(dim_in, 3, 1, 1, 0))

        num_resample = int(math.log2(img_size)) - 4 + (1 if w_hpf > 0 else 0)
        for _ in range(num_resample):
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, w_hpf=w_hpf, upsample=True))
            dim_in = dim_out
        for _ in range(2):  # bottleneck
            self.encode.append(ResBlk(dim_in, dim_in, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_in, dim_in, style_dim, w_hpf=w_hpf))

        if w_hpf > 0:
            self.hpf = HighPass(w_hpf)

    def forward(self, x: torch.Tensor, s: torch.Tensor, masks=None) -> torch.Tensor:
        if masks is not None and self.w_hpf <= 0:
            raise ValueError("masks were given but this generator has no high-pass skip (w_hpf=0)")
        x = self.from_rgb(x)
        skips = {}
        for block in self.encode:
            if masks is not None and x.size(2) in HPF_SIZES:
                skips[x.size(2)] = x
            x = block(x)
        for block in self.decode:
            x = block(x, s)
            if masks is not None and x.size(2) in HPF_SIZES:
                size = x.size(2)
                mask = masks[0] if size == HPF_SIZES[0] else masks[1]
                mask = F.interpolate(mask, size=size, mode="bilinear")
                x = x + self.hpf(mask * skips[size])
        return self.to_rgb(x)


# ---------------------------------------------------------------------------------------------------------
# 2. Mapping network
# ---------------------------------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """F(z, y): 4 shared ``hidden_dim``-wide (512) ReLU layers, then per domain 3 more and a projection to
    ``style_dim``."""

    def __init__(self, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2,
                 hidden_dim: int = MAPPING_WIDTH):
        super().__init__()
        self.latent_dim, self.style_dim, self.num_domains = latent_dim, style_dim, num_domains
        layers = [nn.Linear(latent_dim, hidden_dim), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            head = []
            for _ in range(3):
                head += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
            self.unshared.append(nn.Sequential(*head, nn.Linear(hidden_dim, style_dim)))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        return select_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


# ---------------------------------------------------------------------------------------------------------
# 3. Style encoder and 4. discriminator share one trunk
# ---------------------------------------------------------------------------------------------------------

def downsampling_trunk(img_size: int, max_conv_dim: int, base_dim: int | None = None) -> tuple[list[nn.Module], int]:
    """conv3x3, ``log2(img_size) - 2`` downsampling ResBlks (to 4x4), LReLU, conv4x4 (to 1x1), LReLU."""
    check_img_size(img_size)
    dim_in = first_width(img_size, base_dim)
    blocks: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, 1, 1)]
    for _ in range(int(math.log2(img_size)) - 2):
        dim_out = min(dim_in * 2, max_conv_dim)
        blocks.append(ResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    blocks += [leaky_relu(), nn.Conv2d(dim_in, dim_in, 4, 1, 0), leaky_relu()]
    return blocks, dim_in


class StyleEncoder(nn.Module):
    """E(x, y): the style code of domain ``y`` in reference image ``x``."""

    def __init__(self, img_size: int = 256, style_dim: int = 64, num_domains: int = 2, max_conv_dim: int = 512,
                 base_dim: int | None = None):
        super().__init__()
        self.img_size, self.style_dim, self.num_domains = img_size, style_dim, num_domains
        blocks, width = downsampling_trunk(img_size, max_conv_dim, base_dim)
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.ModuleList([nn.Linear(width, style_dim) for _ in range(num_domains)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(x).flatten(1)
        return select_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


class Discriminator(nn.Module):
    """D(x, y): one real/fake logit per image, read from the output branch of its domain ``y``."""

    def __init__(self, img_size: int = 256, num_domains: int = 2, max_conv_dim: int = 512,
                 base_dim: int | None = None):
        super().__init__()
        self.img_size, self.num_domains = img_size, num_domains
        blocks, width = downsampling_trunk(img_size, max_conv_dim, base_dim)
        self.main = nn.Sequential(*blocks, nn.Conv2d(width, num_domains, 1, 1, 0))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return select_domain(self.main(x).flatten(1), y)


# ---------------------------------------------------------------------------------------------------------
# Configuration and the set of networks
# ---------------------------------------------------------------------------------------------------------

@dataclass
class StarGANConfig:
    """Architecture of a StarGAN v2 model (defaults: the official CelebA-HQ release; AFHQ uses w_hpf=0,
    num_domains=3). ``hidden_dim`` is the mapping network's width and ``base_dim`` the channels after
    ``from_rgb`` (None: the official ``2**14 // img_size``); the official models use 512 and None."""

    img_size: int = 256
    style_dim: int = 64
    latent_dim: int = 16
    num_domains: int = 2
    w_hpf: float = 1
    max_conv_dim: int = 512
    hidden_dim: int = MAPPING_WIDTH
    base_dim: int | None = None

    def __post_init__(self):
        check_img_size(self.img_size)
        for name in ("style_dim", "latent_dim", "num_domains", "max_conv_dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"StarGANConfig.{name} must be a positive int, got {value!r}")
        if self.base_dim is not None and (not isinstance(self.base_dim, int) or self.base_dim < 1):
            raise ValueError(f"StarGANConfig.base_dim must be None or a positive int, got {self.base_dim!r}")
        if self.base_dim == first_width(self.img_size):
            self.base_dim = None  # the official width: one way to say it, so configs compare equal
        if self.w_hpf < 0:
            raise ValueError(f"StarGANConfig.w_hpf must be >= 0, got {self.w_hpf!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Nets(nn.ModuleDict):
    """The networks of one model, under the official names: ``generator``, ``mapping_network``,
    ``style_encoder``, and optionally ``discriminator`` and ``fan`` (both read as None when absent).
    ``config`` is the :class:`StarGANConfig` they were built from. ``without_masks``: True when the caller
    asked a model with the high-pass skip (``w_hpf > 0``) to translate without FAN face masks; otherwise
    translating such a model without ``fan`` is an error."""

    OPTIONAL = ("discriminator", "fan")

    def __init__(self, config: StarGANConfig, modules: dict[str, nn.Module]):
        super().__init__(modules)
        self.config = config
        self.without_masks = False

    def add_module(self, name: str, module: nn.Module | None) -> None:
        if name in Nets.OPTIONAL and name not in self._modules:  # reads as None, but is free to be added
            self._modules[name] = None
        super().add_module(name, module)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in Nets.OPTIONAL:
                return None
            raise


def build_nets(config: StarGANConfig, *, discriminator: bool = True, fan: bool | None = None) -> Nets:
    """Fresh networks for ``config``. ``fan`` defaults to ``config.w_hpf > 0``; its weights are random until
    loaded (``colab_utils.stargan.fan.load_fan`` or :func:`colab_utils.stargan.formats.load_official`)."""
    c = config
    modules: dict[str, nn.Module] = {
        "generator": Generator(c.img_size, c.style_dim, c.max_conv_dim, c.w_hpf, c.base_dim),
        "mapping_network": MappingNetwork(c.latent_dim, c.style_dim, c.num_domains, c.hidden_dim),
        "style_encoder": StyleEncoder(c.img_size, c.style_dim, c.num_domains, c.max_conv_dim, c.base_dim),
    }
    if discriminator:
        modules["discriminator"] = Discriminator(c.img_size, c.num_domains, c.max_conv_dim, c.base_dim)
    if fan if fan is not None else c.w_hpf > 0:
        modules["fan"] = FAN()
    return Nets(c, modules)
