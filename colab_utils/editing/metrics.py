"""How local is an edit? CIELAB conversion, masked errors and a report table.

Following the evaluation of Collins et al., "Editing in Style: Uncovering the Local Semantics of GANs"
(CVPR 2020, Sec. 4): a good part transfer makes the edited image close to the *reference* inside the part and
leaves it close to the *target* outside it. Both are mean squared errors over masked pixels, measured in
CIELAB (perceptually more even than RGB) or in RGB.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# sRGB primaries with the D65 white point (IEC 61966-2-1): linear RGB -> CIE XYZ.
_RGB_TO_XYZ = torch.tensor([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
], dtype=torch.float64)
_D65_WHITE = _RGB_TO_XYZ.sum(dim=1)  # XYZ of RGB (1, 1, 1): (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0


def _to_unit_range(img: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return ((img - low) / (high - low)).clamp(0.0, 1.0)


def _check_image(img: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() not in (3, 4) or img.shape[-3] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name}: expected an RGB image [3, H, W] or batch [B, 3, H, W], got {shape}")
    return img if img.dim() == 4 else img[None]


def rgb_to_lab(img: torch.Tensor, *, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """sRGB (D65) to CIELAB, channels first: [..., 3, H, W] -> [..., 3, H, W] holding (L, a, b).

    ``value_range`` is the range of the input (``(-1, 1)`` for generator outputs); values outside it are
    clipped. L is in [0, 100]; white gives (100, 0, 0) and pure red about (53.24, 80.09, 67.20).
    """
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"rgb_to_lab: expected 3 channels at dim -3, got shape {tuple(img.shape)}")
    out_dtype = img.dtype if img.dtype in (torch.float32, torch.float64) else torch.float32
    rgb = _to_unit_range(img.to(torch.float64), value_range)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = _RGB_TO_XYZ.to(img.device)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear)
    xyz = xyz / _D65_WHITE.to(img.device)[:, None, None]
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(dim=-3)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)
    return lab.to(out_dtype)


def _mask_like(mask: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """A {0, 1} float mask [B, 1, H, W] at the image's resolution (nearest resizing)."""
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"locality: a 4-D mask must be [B, 1, H, W], got {tuple(mask.shape)}")
        mask = mask[:, 0]
    if mask.dim() != 3:
        raise ValueError(f"locality: mask must be [H, W], [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
    if mask.shape[0] not in (1, img.shape[0]):
        raise ValueError(f"locality: mask batch {mask.shape[0]} does not match image batch {img.shape[0]}")
    mask = (mask > 0.5 if mask.is_floating_point() else mask.bool()).float()[:, None]
    if mask.shape[-2:] != img.shape[-2:]:
        mask = F.interpolate(mask, size=img.shape[-2:], mode="nearest")
    return mask.expand(img.shape[0], 1, *img.shape[-2:]).to(img.device)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over channels and masked pixels of ``(a - b)^2``; NaN when the mask is empty.

    ``a`` and ``b`` are [B, C, H, W]; ``mask`` is a {0, 1} float tensor [B, 1, H, W].
    """
    pixels = float(mask.sum())
    if pixels == 0:
        return math.nan
    return float((((a - b) ** 2) * mask).sum() / (pixels * a.shape[1]))


@dataclass(frozen=True)
class EditLocality:
    """Errors of one edit. ``inside_vs_reference``: MSE inside the part against the reference (lower means
    the part was transferred); ``outside_vs_target``: MSE outside the part against the target (lower means
    the rest stayed put); ``part_fraction``: share of pixels in the part; ``space``: "lab" or "rgb"."""

    inside_vs_reference: float
    outside_vs_target: float
    part_fraction: float
    space: str


def edit_locality(edited: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, *,
                  space: str = "lab", value_range: tuple[float, float] = (-1.0, 1.0)) -> EditLocality:
    """Locality of an edit: errors inside ``mask`` against the reference and outside it against the target.

    Images are [B, 3, H, W] (or [3, H, W]) in ``value_range`` (generator outputs: (-1, 1)); ``mask`` marks
    the part, [B, H, W] / [H, W] / [B, 1, H, W], boolean or in [0, 1], at any resolution (resized nearest).
    In ``space="lab"`` errors are in squared CIELAB units; in ``space="rgb"`` in squared [0, 1] units. Pixels
    of every image in the batch are pooled.
    """
    edited = _check_image(edited, "edit_locality edited")
    target = _check_image(target, "edit_locality target")
    reference = _check_image(reference, "edit_locality reference")
    if not edited.shape[-2:] == target.shape[-2:] == reference.shape[-2:]:
        raise ValueError("edit_locality: edited, target and reference images differ in size "
                         f"({tuple(edited.shape)}, {tuple(target.shape)}, {tuple(reference.shape)})")
    if space == "lab":
        edited, target, reference = (rgb_to_lab(x, value_range=value_range) for x in (edited, target, reference))
    elif space == "rgb":
        edited, target, reference = (_to_unit_range(x.float(), value_range) for x in (edited, target, reference))
    else:
        raise ValueError(f"edit_locality: space must be 'lab' or 'rgb', got {space!r}")
    batch = max(edited.shape[0], target.shape[0], reference.shape[0])
    edited, target, reference = (x.expand(batch, *x.shape[1:]) for x in (edited, target, reference))
    inside = _mask_like(torch.as_tensor(mask), edited)
    return EditLocality(
        inside_vs_reference=masked_mse(edited, reference, inside),
        outside_vs_target=masked_mse(edited, target, 1.0 - inside),
        part_fraction=float(inside.mean()),
        space=space,
    )


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def locality_table(rows: Mapping[str, EditLocality] | Sequence[tuple[str, EditLocality]]) -> str:
    """A markdown table (also readable as plain text) with one line per edit, e.g. ``{"eyes / ours": ...}``."""
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    if not items:
        raise ValueError("locality_table: no rows given")
    for label, score in items:
        if not isinstance(score, EditLocality):
            raise TypeError(f"locality_table: row {label!r} holds {type(score).__name__}, not EditLocality")
    header = ["edit", "space", "MSE in part vs reference (lower: transferred)",
              "MSE outside part vs target (lower: local)", "part area"]
    lines = [[str(label), score.space, _fmt(score.inside_vs_reference), _fmt(score.outside_vs_target),
              f"{100 * score.part_fraction:.1f}%"] for label, score in items]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(header), rule, *(render(line) for line in lines)])
