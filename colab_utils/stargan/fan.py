"""FAN: the 98-landmark face alignment network that StarGAN v2 uses for its face masks and for aligning
photos like CelebA-HQ.

The network is the Face Alignment Network of Bulat & Tzimiropoulos (ICCV 2017, "How far are we from solving
the 2D & 3D Face Alignment problem?") as trained by Wang, Bo & Fuxin (ICCV 2019, "Adaptive Wing Loss for
Robust Face Alignment via Heatmap Regression") on WFLW's 98 landmarks, with CoordConv inputs (Liu et al.
2018). The StarGAN v2 release (Choi et al., CVPR 2020) keeps its first hourglass only: a 256x256 RGB image
in [0, 1] gives 98 landmark heatmaps plus one boundary heatmap at 64x64.

Module and parameter names are those of the official release, so ``wing.ckpt`` and the ``fan`` entry of a
``nets_ema`` file load as they are (:func:`load_fan`).

Face masks (:func:`face_masks`) follow the official pre-processing: heatmaps are cleaned and normalised,
some landmark groups are shifted and sharpened so that together they cover the face parts whose detail the
generator must keep (eyes, nose, lips, chin line), and summed into two masks: ``masks[0]`` with the whole
face, ``masks[1]`` without the face line, eyebrows and mouth.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from colab_utils.loading import CheckpointMismatchError, compare_state_dicts, identify, read_source

FAN_INPUT_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 98


# ---------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------

def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """CoordConv's extra inputs for ``x`` [B,C,H,W]: row and column coordinates in [-1, 1] and the radius
    from the centre scaled to [0, 1] (three channels, repeated over the batch)."""
    _, _, height, width = x.shape
    rows = (torch.arange(height, device=x.device, dtype=torch.float32) / (height - 1) * 2 - 1)[:, None]
    cols = (torch.arange(width, device=x.device, dtype=torch.float32) / (width - 1) * 2 - 1)[None, :]
    rows, cols = rows.expand(height, width), cols.expand(height, width)
    radius = torch.sqrt(rows**2 + cols**2)
    coords = torch.stack([rows, cols, radius / radius.max()])
    return coords.to(x.dtype)[None].expand(x.size(0), -1, -1, -1)


class CoordConv(nn.Module):
    """A convolution that also sees where it is (coordinates and radius appended to its input)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 3, out_channels, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, coordinate_channels(x)], dim=1))


class ConvBlock(nn.Module):
    """Hierarchical, parallel and multi-scale block (Bulat & Tzimiropoulos 2017): three BN-ReLU-conv3x3
    stages of out/2, out/4 and out/4 channels, concatenated, plus a (projected) identity."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(),
                                            nn.Conv2d(in_planes, out_planes, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.cat([out1, out2, out3], dim=1) + identity


class HourGlass(nn.Module):
    """Recursive hourglass of the given depth: at every level a full-resolution branch ``b1_<level>`` and a
    half-resolution branch (``b2_<level>``, the next level or ``b2_plus_1`` at the bottom, ``b3_<level>``)
    upsampled and added. A 1x1 CoordConv comes first."""

    def __init__(self, depth: int = 4, features: int = 256):
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(features, features, kernel_size=1)
        # registered in the official order (down the levels, then back up), so state dicts list alike
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = self.level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.level(self.depth, self.coordconv(x))


class FAN(nn.Module):
    """98-landmark FAN with one hourglass. ``forward`` takes images in [0, 1] at 256x256 and returns the raw
    heatmaps [B, 99, 64, 64] (98 landmarks, then the face boundary). The network is frozen and always in
    inference mode (its batch norms use their running statistics)."""

    def __init__(self, num_landmarks: int = NUM_LANDMARKS):
        super().__init__()
        self.num_landmarks = num_landmarks
        # stem: 256 -> 128 (strided conv) -> 64 (pooling)
        self.conv1 = CoordConv(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        # one hourglass and its heatmap head
        self.m0 = HourGlass(depth=4, features=256)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1, 1, 0)
        self.bn_end0 = nn.BatchNorm2d(256)
        self.l0 = nn.Conv2d(256, num_landmarks + 1, 1, 1, 0)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FAN":
        return super().train(False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x01)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        x = self.top_m_0(self.m0(x))
        x = F.relu(self.bn_end0(self.conv_last0(x)))
        return self.l0(x)

    @torch.no_grad()
    def landmark_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """The 98 landmark heatmaps [B, 98, 64, 64] of images ``x`` in [-1, 1] (any size; resized to 256)."""
        with torch.autocast(device_type=x.device.type, enabled=False):  # masks in the FAN's own precision
            x = F.interpolate(x.to(self.l0.weight.dtype), size=FAN_INPUT_SIZE, mode="bilinear")
            return self(x * 0.5 + 0.5)[:, : self.num_landmarks]

    @torch.no_grad()
    def get_heatmap(self, x: torch.Tensor, preprocess: bool = True):
        """Official API. With ``preprocess`` (default): the two face masks (each [B,1,256,256] in [0, 1]) that
        the generator's high-pass skip uses; without: the raw landmark heatmaps [B,98,64,64]."""
        heatmaps = self.landmark_heatmaps(x)
        if not preprocess:
            return heatmaps
        heatmaps = F.interpolate(heatmaps, size=FAN_INPUT_SIZE, mode="bilinear", align_corners=True)
        return face_masks(heatmaps)

    @torch.no_grad()
    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        """98 WFLW landmarks [B, 98, 2] as (x, y) in the pixel coordinates of ``images`` [B,3,H,W] in
        [-1, 1], where pixel (i, j) covers [j, j+1) x [i, i+1) (the official convention). The heatmap peak
        is refined by a quarter pixel of the heatmap towards its higher neighbour, as in the official code."""
        points = heatmap_peaks(self.landmark_heatmaps(images))
        scale = torch.tensor([images.size(3) / HEATMAP_SIZE, images.size(2) / HEATMAP_SIZE], device=points.device)
        return points * scale

    def get_landmark(self, x: torch.Tensor) -> torch.Tensor:
        """Official API: same as :meth:`landmarks` (the official code scaled both axes by the integer ratio
        of heights; the two agree for square images whose side is a multiple of 64)."""
        return self.landmarks(x)


# ---------------------------------------------------------------------------------------------------------
# Landmarks from heatmaps
# ---------------------------------------------------------------------------------------------------------

def heatmap_peaks(heatmaps: torch.Tensor) -> torch.Tensor:
    """(x, y) of each heatmap's maximum [B, C, 2], in heatmap pixels where pixel j covers [j, j+1): the
    peak pixel's centre moved a quarter pixel towards the larger neighbour on each axis (interior peaks)."""
    batch, channels, height, width = heatmaps.shape
    _, index = heatmaps.reshape(batch, channels, height * width).max(dim=2)
    row, col = index // width, index % width

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        flat = r.clamp(0, height - 1) * width + c.clamp(0, width - 1)
        return heatmaps.reshape(batch, channels, -1).gather(2, flat[..., None])[..., 0]

    interior = (col > 0) & (col < width - 1) & (row > 0) & (row < height - 1)
    dx = torch.sign(at(row, col + 1) - at(row, col - 1)) * interior
    dy = torch.sign(at(row + 1, col) - at(row - 1, col)) * interior
    x = col.to(heatmaps.dtype) + 0.5 + 0.25 * dx
    y = row.to(heatmaps.dtype) + 0.5 + 0.25 * dy
    return torch.stack([x, y], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Face masks from heatmaps (the official pre-processing)
# ---------------------------------------------------------------------------------------------------------

# WFLW landmark groups, as [start, end) channel ranges.
CHIN = (8, 25)              # the lower face line; 0-7 and 25-32 (the upper face line) are dropped
EYEBROWS = (33, 51)         # 33 and 46 are eyebrow ends, dropped
NOSE = (51, 55)             # the bridge; 52-54 are moved up
NOSTRILS = (55, 60)
EYES = (60, 76)
LIP_CORNERS = (76, 82)      # 76 and 82, dropped
UPPER_LIP = (77, 82)
LOWER_LIP = (83, 88)
INNER_LIPS = (88, 96)
MOUTH = (76, 96)

# (group, rows to move up (negative: down) at 256 px, exponent that sharpens the blob)
SHIFT_AND_SHARPEN = ((CHIN, 0, 3), (EYEBROWS, -7, 2), (NOSTRILS, 8, 4), (UPPER_LIP, -8, 4),
                     (LOWER_LIP, 8, 4), (INNER_LIPS, -2, 3))
DROPPED = [*range(0, CHIN[0]), *range(CHIN[1], 33), EYEBROWS[0], 46, LIP_CORNERS[0], LIP_CORNERS[1]]


def move_up(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Move image content up by ``rows`` (down when negative), wrapping around as the official code does."""
    return torch.roll(x, shifts=-rows, dims=2)


def min_max_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale every heatmap of [B, C, H, W] to [0, 1]."""
    flat = x.flatten(2)
    low, high = flat.min(dim=2, keepdim=True).values, flat.max(dim=2, keepdim=True).values
    return ((flat - low) / (high - low + eps)).view_as(x)


def face_masks(heatmaps: torch.Tensor, threshold: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The official StarGAN v2 masks from 98 landmark heatmaps [B, 98, H, W] (H=W=256 from
    :meth:`FAN.get_heatmap`): returns ``(whole_face, inner_face)``, each [B, 1, H, W] in [0, 1]."""
    if heatmaps.dim() != 4 or heatmaps.size(1) != NUM_LANDMARKS:
        raise ValueError(f"face_masks needs 98 landmark heatmaps [B, 98, H, W], got {tuple(heatmaps.shape)}")
    step = heatmaps.size(2) // 256  # shifts are given at 256 px
    x = torch.where(heatmaps < threshold, torch.zeros_like(heatmaps), heatmaps)
    x = min_max_normalize(x)
    for (start, end), rows, power in SHIFT_AND_SHARPEN:
        x[:, start:end] = move_up(x[:, start:end], rows * step) ** power
    x[:, DROPPED] = 0
    x[:, NOSE[0] + 1:NOSE[1]] = move_up(x[:, NOSE[0] + 1:NOSE[1]], 4 * step)
    eyes = x[:, EYES[0]:EYES[1]]
    x[:, EYES[0]:EYES[1]] = move_up(eyes, -8) ** 3 + move_up(eyes, -24)  # eye blobs stretched downwards

    inner = x.clone()
    for start, end in (CHIN, MOUTH, EYEBROWS):
        inner[:, start:end] = 0
    masks = []
    for m in (x, inner):
        m = m.sum(dim=1, keepdim=True)
        masks.append(torch.nan_to_num(m, nan=0.0).clamp_(0, 1))
    return masks[0], masks[1]


def compute_masks(fan: FAN | None, x: torch.Tensor) -> list[torch.Tensor] | None:
    """The generator's ``masks`` argument for images ``x`` [B,3,H,W] in [-1, 1]: the two FAN face masks,
    or None without a FAN (models with ``w_hpf == 0``)."""
    if fan is None:
        return None
    return list(fan.get_heatmap(x))


# ---------------------------------------------------------------------------------------------------------
# Loading weights
# ---------------------------------------------------------------------------------------------------------

# Entries of the 4-hourglass Adaptive Wing model that the one-hourglass FAN does not use.
_LATER_STACKS = re.compile(r"^(m[1-9]\d*|top_m_[1-9]\d*|conv_last[1-9]\d*|bn_end[1-9]\d*|l[1-9]\d*|bl\d+|al\d+)\.")
_SHOW = 10


class FANFormatError(CheckpointMismatchError, ValueError):
    """A FAN weight file or state dict that does not fit the network; the message says what and where."""


class FANRequiredError(ValueError):
    """A StarGAN v2 model with the high-pass skip (``w_hpf > 0``) was asked to translate without FAN weights
    and without ``without_masks=True``."""


def fan_required_message(where: str, w_hpf: float) -> str:
    """The one explanation of :class:`FANRequiredError`, for loaders and translation alike."""
    return (f"{where}: this StarGAN v2 model has w_hpf={w_hpf}: the official model keeps the source's facial "
            f"details through FAN face masks, and no FAN weights were given. Pass the FAN weights (fan_path= / "
            f"--fan wing.ckpt; colab_utils.hub.download('stargan_v2_wing') fetches them), or ask to translate "
            f"without face masks (without_masks=True / --no-masks; a different function from the official "
            f"model, which keeps identity less well)")


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def fan_state_dict(obj, name: str = "<dict>") -> dict[str, torch.Tensor]:
    """The FAN state dict inside ``obj``: a ``wing.ckpt`` dict (``{"state_dict": ...}``), a ``nets_ema``
    dict (``{"fan": ...}``) or a state dict itself."""
    original = obj
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "fan" in obj and isinstance(obj["fan"], Mapping):
        obj = obj["fan"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        what = identify(original)
        raise FANFormatError(f"{name}: not FAN weights (expected wing.ckpt's {{'state_dict': ...}}, a nets_ema "
                             f"file with a 'fan' entry, or a state dict of tensors)" + (f": it is {what}" if what else ""))
    return strip_module_prefix(obj)


def load_fan_weights(fan: FAN, state_dict: Mapping[str, torch.Tensor], name: str = "<dict>") -> FAN:
    """Copy ``state_dict`` into ``fan``; extra hourglass stacks of the 4-stack Adaptive Wing model are
    ignored, anything else that does not match raises :class:`FANFormatError` naming ``name``."""
    report = compare_state_dicts(fan, state_dict, ignore=lambda key: bool(_LATER_STACKS.match(key)))
    if report:
        raise FANFormatError(f"{name}: the FAN weights do not fit the 98-landmark one-hourglass FAN: "
                             + report.describe(_SHOW), missing=report.missing, unexpected=report.unexpected,
                             mismatched=report.mismatched)
    fan.load_state_dict({k: state_dict[k] for k in fan.state_dict()})
    return fan


def load_fan(source, *, device="cpu") -> FAN:
    """A FAN with the weights of ``source``: a path to ``wing.ckpt`` or to a ``nets_ema`` file, or an
    already loaded dict (see :func:`fan_state_dict`). Files are read with
    :func:`colab_utils.loading.safe_load` (weights only; unsafe or damaged files are refused)."""
    source, name = read_source(source, "FAN weights")
    fan = load_fan_weights(FAN(), fan_state_dict(source, name), name)
    return fan.to(device)
