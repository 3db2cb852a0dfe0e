"""Read and write StyleGAN2 checkpoints in the rosinality/stylegan2-pytorch layout.

A rosinality file is a ``torch.save``d dict: ``g_ema`` (the generator to sample from), and in training
checkpoints also ``g``, ``d``, ``g_optim``, ``d_optim`` and ``args`` (an ``argparse.Namespace``); converted
official weights add ``latent_avg``. Every network is a plain state_dict whose keys match
:mod:`colab_utils.stylegan2.model`. Shapes tell the configuration (size, style_dim, n_mlp, channel table),
so nothing else needs to be known to load a file. Files are read with :func:`colab_utils.loading.safe_load`
(weights only; an unsafe or damaged file is refused with an error that says which).
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from colab_utils.loading import CheckpointMismatchError, compare_state_dicts, identify, read_source

from .model import Discriminator, Generator, check_size, default_channels

NETWORKS = ("g_ema", "g", "d")
KNOWN_ENTRIES = NETWORKS + ("latent_avg", "args", "g_optim", "d_optim")
_SHOW = 12  # how many offending keys an error message lists


class StyleGANFormatError(CheckpointMismatchError, ValueError):
    """The file (or dict) is readable but not a loadable rosinality StyleGAN2 checkpoint; the message says why
    (and what the file is, when it is another model's)."""


@dataclass
class LoadedStyleGAN:
    """What ``load_rosinality`` returns. ``g`` and ``d`` are None unless requested and present;
    ``latent_avg`` is None for files without it (training checkpoints); ``args`` is the training
    ``argparse.Namespace`` as a dict; ``extra`` holds the remaining entries (``g_optim``, ``d_optim``...)."""

    g_ema: Generator
    g: Generator | None
    d: Discriminator | None
    latent_avg: torch.Tensor | None
    config: dict
    args: dict | None
    extra: dict = field(default_factory=dict)
    source: str = "<dict>"


# ---------------------------------------------------------------------------------------------------------
# Configuration from tensor shapes
# ---------------------------------------------------------------------------------------------------------

def _require(sd: Mapping[str, Any], keys: Iterable[str], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        shown = sorted(sd)[:_SHOW]
        raise StyleGANFormatError(f"not a StyleGAN2 {what} state_dict: missing keys {missing}; "
                                  f"it has {len(sd)} keys, e.g. {shown}")


def _indices(sd: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.fullmatch(k))})


def _guess_multiplier(channels: dict[int, int]) -> int | None:
    for cm in (2, 1, 4):
        table = default_channels(cm)
        if all(table.get(r) == c for r, c in channels.items()):
            return cm
    return None


def infer_config(state_dict_g: Mapping[str, torch.Tensor]) -> dict:
    """Generator configuration from a rosinality generator state_dict's shapes:
    ``dict(size, style_dim, n_mlp, channels, channel_multiplier)`` where ``channels`` maps every resolution
    4..size to its feature maps and ``channel_multiplier`` is the paper's multiplier that reproduces that
    table (None for a custom table). ``Generator(**config)`` rebuilds the network. (``lr_mlp`` is not
    visible in the weights; every rosinality file uses 0.01.)"""
    _require(state_dict_g, ["style.1.weight", "input.input", "to_rgb1.conv.weight"], "generator")
    mlp = _indices(state_dict_g, r"style\.(\d+)\.weight")
    rgbs = _indices(state_dict_g, r"to_rgbs\.(\d+)\.conv\.weight")
    if mlp != list(range(1, len(mlp) + 1)):
        raise StyleGANFormatError(f"mapping layers must be style.1..style.N, found style indices {mlp}")
    if rgbs != list(range(len(rgbs))):
        raise StyleGANFormatError(f"to_rgbs must be numbered 0..N-1, found {rgbs}")
    size = 2 ** (len(rgbs) + 2)
    try:
        check_size(size)
    except ValueError as err:
        raise StyleGANFormatError(f"{len(rgbs)} to_rgbs blocks give an image size of {size}: {err}") from None
    channels = {4: int(state_dict_g["input.input"].shape[1])}
    for k in rgbs:
        channels[2 ** (k + 3)] = int(state_dict_g[f"to_rgbs.{k}.conv.weight"].shape[2])
    return {
        "size": size,
        "style_dim": int(state_dict_g["style.1.weight"].shape[1]),
        "n_mlp": len(mlp),
        "channels": channels,
        "channel_multiplier": _guess_multiplier(channels),
    }


def infer_discriminator_config(state_dict_d: Mapping[str, torch.Tensor]) -> dict:
    """``dict(size, channels)`` of a rosinality discriminator state_dict."""
    _require(state_dict_d, ["convs.0.0.weight", "final_conv.0.weight"], "discriminator")
    blocks = _indices(state_dict_d, r"convs\.(\d+)\.conv2\.1\.weight")
    if blocks != list(range(1, len(blocks) + 1)):
        raise StyleGANFormatError(f"discriminator residual blocks must be convs.1..convs.N, found {blocks}")
    size = 2 ** (len(blocks) + 2)
    try:
        check_size(size)
    except ValueError as err:
        raise StyleGANFormatError(f"{len(blocks)} residual blocks give an image size of {size}: {err}") from None
    channels = {size: int(state_dict_d["convs.0.0.weight"].shape[0])}
    for k in blocks:
        channels[size // 2**k] = int(state_dict_d[f"convs.{k}.conv2.1.weight"].shape[0])
    return {"size": size, "channels": dict(sorted(channels.items()))}


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------

def _as_checkpoint(obj: Any, label: str) -> dict:
    if not isinstance(obj, Mapping):
        raise StyleGANFormatError(f"{label}: not a rosinality StyleGAN2 checkpoint: it holds a "
                                  f"{type(obj).__name__}, not a dict with 'g_ema'")
    if "g_ema" not in obj and "g" not in obj and "style.1.weight" in obj and "input.input" in obj:
        return {"g_ema": dict(obj)}  # a bare generator state_dict
    if "g_ema" not in obj:
        found = sorted(map(str, obj))
        what = identify(obj)
        raise StyleGANFormatError(f"{label}: not a rosinality StyleGAN2 checkpoint (no 'g_ema' entry; expected "
                                  f"{list(KNOWN_ENTRIES)}, found {found[:_SHOW]})"
                                  + (f": it is {what}" if what else ""))
    return dict(obj)


def _check_state_dict(model: nn.Module, sd: Any, name: str, label: str) -> None:
    """Raise one error listing missing keys, unexpected keys and shape mismatches."""
    if not isinstance(sd, Mapping):
        raise StyleGANFormatError(f"{label}: entry '{name}' is a {type(sd).__name__}, not a state_dict")
    report = compare_state_dicts(model, sd)
    if report:
        raise StyleGANFormatError(f"{label}: '{name}' does not match a StyleGAN2 {type(model).__name__}: "
                                  + report.describe(_SHOW), path=None if label.startswith("<") else Path(label),
                                  missing=report.missing, unexpected=report.unexpected,
                                  mismatched=report.mismatched)


def _which(which: str | Iterable[str], ckpt: dict) -> list[str]:
    if isinstance(which, str):
        if which == "all":
            return [n for n in NETWORKS if n in ckpt]
        which = [which]
    names = list(dict.fromkeys(which))
    bad = [n for n in names if n not in NETWORKS]
    if bad:
        raise ValueError(f"which must be 'all' or names from {NETWORKS}, got {bad}")
    if "g_ema" not in names:
        names.insert(0, "g_ema")
    return names


def load_rosinality(path_or_dict: str | os.PathLike | Mapping, *, which: str | Iterable[str] = "g_ema",
                    device: str | torch.device = "cpu", source: str | None = None) -> LoadedStyleGAN:
    """Load a rosinality StyleGAN2 file (or an already loaded dict, or a bare generator state_dict).

    ``which``: ``"g_ema"`` (default: only the sampling generator), ``"all"`` (every network the file has), or
    names from ``("g_ema", "g", "d")``; ``g_ema`` is always built. The configuration is read from the
    tensor shapes. Networks are returned in eval mode on ``device``. A file's ``latent_avg`` is also set on
    ``g_ema`` (``g_ema.latent_avg``), where sampling and editing find it as their truncation centre.
    ``source`` names a dict in error messages (the file it came from)."""
    raw, label = read_source(path_or_dict, "StyleGAN2 checkpoint", source or "<checkpoint dict>")
    ckpt = _as_checkpoint(raw, label)
    names = _which(which, ckpt)
    absent = [n for n in names if n not in ckpt]
    if absent:
        raise StyleGANFormatError(f"{label}: requested {absent} but the file holds only "
                                  f"{[n for n in NETWORKS if n in ckpt]}")

    try:
        config = infer_config(ckpt["g_ema"])
    except StyleGANFormatError as err:
        raise StyleGANFormatError(f"{label}: entry 'g_ema': {err}") from None

    nets: dict[str, nn.Module | None] = {"g_ema": None, "g": None, "d": None}
    for name in names:
        if name == "d":
            try:
                dconf = infer_discriminator_config(ckpt["d"])
            except StyleGANFormatError as err:
                raise StyleGANFormatError(f"{label}: entry 'd': {err}") from None
            if dconf["size"] != config["size"]:
                raise StyleGANFormatError(f"{label}: discriminator is for {dconf['size']}px but the generator "
                                          f"makes {config['size']}px images")
            model: nn.Module = Discriminator(dconf["size"], channel_multiplier=None, channels=dconf["channels"])
        else:
            model = Generator(**config)
        _check_state_dict(model, ckpt[name], name, label)
        model.load_state_dict(ckpt[name])
        nets[name] = model.to(device).eval()

    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != config["style_dim"]:
            raise StyleGANFormatError(f"{label}: latent_avg must be a tensor of {config['style_dim']} values, "
                                      f"got {getattr(latent_avg, 'shape', type(latent_avg).__name__)}")
        latent_avg = latent_avg.reshape(config["style_dim"]).to(device)
        nets["g_ema"].latent_avg = latent_avg.reshape(1, -1).float()
    args = ckpt.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, Mapping) else None
    extra = {k: v for k, v in ckpt.items() if k not in NETWORKS + ("latent_avg", "args")}
    return LoadedStyleGAN(nets["g_ema"], nets["g"], nets["d"], latent_avg, config, args, extra, label)


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------

def _cpu_state_dict(net: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = net.state_dict() if isinstance(net, nn.Module) else net
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def export_rosinality(path: str | os.PathLike, g_ema: Generator | Mapping[str, torch.Tensor], *,
                      g: Generator | Mapping | None = None, d: Discriminator | Mapping | None = None,
                      latent_avg: torch.Tensor | None = None) -> Path:
    """Write ``{"g_ema", ["g"], ["d"], ["latent_avg"]}`` in the rosinality layout (contiguous CPU tensors),
    atomically (temporary file, then rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = {"g_ema": _cpu_state_dict(g_ema)}
    if g is not None:
        ckpt["g"] = _cpu_state_dict(g)
    if d is not None:
        ckpt["d"] = _cpu_state_dict(d)
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg.detach().to("cpu").reshape(-1).clone()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
