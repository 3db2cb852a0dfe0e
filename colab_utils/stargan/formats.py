"""Read and write StarGAN v2 checkpoints in the layout of the official clovaai/stargan-v2 release.

An official checkpoint is a ``torch.save``d dict of state dicts, one per network:
``<step>_nets_ema.ckpt`` holds ``generator``, ``mapping_network``, ``style_encoder`` and, for faces
(``w_hpf > 0``), ``fan``; ``<step>_nets.ckpt`` adds ``discriminator``; our ``*_nets_D.ckpt`` holds only
``discriminator``. The architecture follows from the tensors' shapes, so nothing else is needed to load a
file (:func:`infer_config`).

Known traps of real files, handled here: the released CelebA-HQ ``nets_ema`` predates the
``generator.hpf.filter`` buffer (it follows from ``w_hpf``, 1 for that release); files saved from
``nn.DataParallel`` prefix every key with ``module.`` (and ``torch.compile`` with ``_orig_mod.``).
Files are read with :func:`colab_utils.loading.safe_load` only (weights only; unsafe or damaged files are
refused with an error that says which).
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from colab_utils.loading import CheckpointMismatchError, compare_state_dicts, identify, read_source

from .fan import (FAN, FANFormatError, FANRequiredError, compute_masks, fan_required_message, fan_state_dict,
                  load_fan, load_fan_weights)
from .model import Nets, StarGANConfig, build_nets, first_width, highpass_kernel

__all__ = ["StarGANFormatError", "load_official", "export_official", "infer_config", "compute_masks",
           "read_official"]

NETWORKS = ("generator", "mapping_network", "style_encoder", "discriminator", "fan")
REQUIRED = ("generator", "mapping_network", "style_encoder")
OPTIONAL_KEYS = {"generator": {"hpf.filter"}}  # absent from files saved before April 2021
_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 10  # how many offending keys an error message lists


class StarGANFormatError(CheckpointMismatchError, ValueError):
    """The file (or dict) is readable but not a loadable official StarGAN v2 checkpoint; the message says why
    (and what the file is, when it is another model's)."""


# ---------------------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------------------

def _strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state_dict.items():
        changed = isinstance(key, str)
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _what_else(obj: Mapping, name: str) -> str | None:
    """The error for well-known files that are not StarGAN v2 network weights."""
    what = identify(obj)
    if what is None or what.startswith("a StarGAN v2 checkpoint (official"):
        return None
    return f"{name} is {what}, not StarGAN v2 network weights"


def read_official(obj, name: str = "<dict>") -> dict[str, dict[str, torch.Tensor]]:
    """The network state dicts of one official file: ``obj`` is a path or an already loaded dict. Keys are
    cleaned of ``module.`` / ``_orig_mod.`` prefixes; anything else that is not the official layout raises
    :class:`StarGANFormatError` naming the file."""
    obj, name = read_source(obj, "StarGAN v2 checkpoint", name)
    if not isinstance(obj, Mapping):
        raise StarGANFormatError(f"{name} holds a {type(obj).__name__}, not the official dict of state dicts "
                                 f"keyed {', '.join(NETWORKS)}")
    obj = _strip_prefixes(obj)
    found = [k for k in obj if k in NETWORKS]
    if not found:
        message = _what_else(obj, name)
        if message is None:
            message = (f"{name} is not an official StarGAN v2 checkpoint: expected entries among "
                       f"{list(NETWORKS)}, found {sorted(map(str, obj))[:_SHOW]}")
            if any(str(k).startswith(("from_rgb.", "encode.", "shared.", "main.")) for k in obj):
                message += " (a bare state dict: wrap it as {'generator': ...} and so on)"
        raise StarGANFormatError(message)
    unknown = [k for k in obj if k not in NETWORKS]
    if unknown:
        message = _what_else(obj, name) or ""
        raise StarGANFormatError(f"{name} has unexpected entries {sorted(map(str, unknown))[:_SHOW]} besides "
                                 f"{found}; an official file holds only {list(NETWORKS)}. {message}".rstrip())
    nets = {}
    for net, state_dict in obj.items():
        if isinstance(state_dict, Mapping) and {"state", "param_groups"} <= set(state_dict):
            raise StarGANFormatError(f"{name}: entry {net!r} is an optimizer state (an *_optims.ckpt file?), "
                                     f"not network weights")
        if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise StarGANFormatError(f"{name}: entry {net!r} is not a state dict of tensors")
        nets[net] = _strip_prefixes(state_dict)
    return nets


def _gather(path_or_paths, source=None) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """Merge the networks of every given file; returns (state dicts, which file each network came from).
    ``source`` names a single loaded dict (the file it was read from)."""
    if isinstance(path_or_paths, (str, os.PathLike, Mapping)):
        sources: Iterable = [path_or_paths]
    else:
        sources = list(path_or_paths)
        if not sources:
            raise ValueError("load_official needs at least one file (nets_ema and/or nets_D) or a dict")
    entries: dict[str, dict[str, torch.Tensor]] = {}
    origin: dict[str, str] = {}
    for item in sources:
        name = str(item) if isinstance(item, (str, os.PathLike)) else str(source or "<dict>")
        for net, state_dict in read_official(item, name).items():
            if net in entries:
                raise StarGANFormatError(f"{net!r} is in both {origin[net]} and {name}: pass only one of them "
                                         f"(e.g. a nets_ema file with a nets_D file)")
            entries[net], origin[net] = state_dict, name
    return entries, origin


# ---------------------------------------------------------------------------------------------------------
# Configuration from tensor shapes
# ---------------------------------------------------------------------------------------------------------

def _tensor(entries, origin, net: str, key: str) -> torch.Tensor:
    try:
        return entries[net][key]
    except KeyError:
        raise StarGANFormatError(f"{origin.get(net, '<dict>')}: {net} has no {key!r}; it is not an official "
                                 f"StarGAN v2 {net} (keys e.g. {sorted(entries[net])[:_SHOW]})") from None


def _indices(state_dict: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state_dict if (m := rx.match(k))})


def _max_conv_dim(final_width: int, first: int, doublings: int) -> tuple[int, bool]:
    """(max_conv_dim, exact): a trunk whose widths stopped doubling was capped at its final width; an
    uncapped one fits any max_conv_dim >= its final width (we then say 512, the official default, or more)."""
    if final_width < first * 2**doublings:
        return final_width, True
    return max(512, final_width), False


def _w_hpf_from_filter(kernel: torch.Tensor, name: str) -> float:
    """w_hpf from a stored ``hpf.filter``: its centre is 8 / w_hpf."""
    centre = float(kernel[1, 1]) if kernel.shape == (3, 3) else 0.0
    if centre > 0:
        w_hpf = 8.0 / centre
        w_hpf = int(round(w_hpf)) if abs(w_hpf - round(w_hpf)) < 1e-6 else w_hpf
        if torch.allclose(kernel.float(), highpass_kernel(w_hpf), atol=1e-6):
            return w_hpf
    raise StarGANFormatError(f"{name}: generator.hpf.filter is not the official high-pass kernel "
                             f"(got {kernel.tolist()})")


def infer_config(entries: Mapping[str, Mapping[str, torch.Tensor]], origin: Mapping[str, str] | None = None
                 ) -> StarGANConfig:
    """The :class:`StarGANConfig` of official state dicts keyed by network name (at least ``generator``,
    ``mapping_network`` and ``style_encoder``). Without ``hpf.filter``, a generator with the high-pass skip
    gets w_hpf=1 (the released CelebA-HQ setting)."""
    origin = dict(origin or {})
    missing = [n for n in REQUIRED if n not in entries]
    if missing:
        where = ", ".join(sorted(set(origin.values()))) or "<dict>"
        raise StarGANFormatError(f"{where}: no {missing} — a StarGAN v2 model needs the generator, mapping_network "
                                 f"and style_encoder of a *_nets_ema.ckpt (or *_nets.ckpt) file")
    g, f, e = (entries[n] for n in REQUIRED)
    g_src, f_src, e_src = (origin.get(n, "<dict>") for n in REQUIRED)

    # image size: the style encoder halves the image down to 4x4, then a 4x4 conv
    e_blocks = _indices(e, r"shared\.(\d+)\.conv1\.weight$")
    if not e_blocks:
        raise StarGANFormatError(f"{e_src}: style_encoder has no residual blocks (shared.<i>.conv1.weight)")
    img_size = 2 ** (len(e_blocks) + 2)
    first = _tensor(entries, origin, "generator", "from_rgb.weight").shape[0]
    e_first = _tensor(entries, origin, "style_encoder", "shared.0.weight").shape[0]
    if first != e_first:
        raise StarGANFormatError(f"{g_src}: generator starts with {first} channels but the style encoder "
                                 f"({e_src}) with {e_first}: the networks do not belong together")
    base_dim = None if first == first_width(img_size) else first  # None: the official width for the size

    # high-pass skip: one more down/up-sampling pair of blocks
    num_resample = len(_indices(g, r"encode\.(\d+)\.conv1\.weight$")) - 2
    base = int(math.log2(img_size)) - 4
    if num_resample == base:
        w_hpf: float = 0
    elif num_resample == base + 1:
        w_hpf = _w_hpf_from_filter(g["hpf.filter"], g_src) if "hpf.filter" in g else 1
    else:
        raise StarGANFormatError(f"{g_src}: generator has {num_resample + 2} encoder blocks; a {img_size}px model "
                                 f"has {base + 2} (w_hpf=0) or {base + 3} (w_hpf>0)")

    # widths: where the style encoder or the generator stopped doubling is max_conv_dim
    e_width = _tensor(entries, origin, "style_encoder", f"shared.{e_blocks[-1]}.conv2.weight").shape[0]
    g_width = first
    if num_resample > 0:
        g_width = _tensor(entries, origin, "generator", f"encode.{num_resample - 1}.conv2.weight").shape[0]
    caps = [_max_conv_dim(e_width, first, len(e_blocks)), _max_conv_dim(g_width, first, num_resample)]
    exact = [c for c, is_exact in caps if is_exact]
    max_conv_dim = min(exact) if exact else max(c for c, _ in caps)

    # style and latent sizes, domains: heads of the mapping network
    heads = _indices(f, r"unshared\.(\d+)\.")
    if not heads:
        raise StarGANFormatError(f"{f_src}: mapping_network has no per-domain heads (unshared.<i>...)")
    last = max(_indices(f, rf"unshared\.0\.(\d+)\.weight$"), default=None)
    if last is None:
        raise StarGANFormatError(f"{f_src}: mapping_network head 0 has no layers")
    style_dim = f[f"unshared.0.{last}.weight"].shape[0]
    hidden_dim, latent_dim = _tensor(entries, origin, "mapping_network", "shared.0.weight").shape
    return StarGANConfig(img_size=img_size, style_dim=style_dim, latent_dim=latent_dim, num_domains=len(heads),
                         w_hpf=w_hpf, max_conv_dim=max_conv_dim, hidden_dim=hidden_dim, base_dim=base_dim)


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------

def _check_and_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], net: str, name: str,
                    config: StarGANConfig) -> None:
    report = compare_state_dicts(module, state_dict, optional=OPTIONAL_KEYS.get(net, ()))
    if report:
        raise StarGANFormatError(f"{name}: {net} does not match the StarGAN v2 {net} of {config}: "
                                 + report.describe(_SHOW), missing=report.missing, unexpected=report.unexpected,
                                 mismatched=report.mismatched)
    module.load_state_dict(state_dict, strict=False)


def load_official(path_or_paths, *, device="cpu", fan_path=None, without_masks: bool = False,
                  source: str | os.PathLike | None = None) -> tuple[Nets, StarGANConfig]:
    """Networks and configuration from official StarGAN v2 files.

    ``path_or_paths``: a ``*_nets_ema.ckpt`` / ``*_nets.ckpt`` path, several paths (e.g. nets_ema and
    nets_D), or a loaded dict of state dicts. ``fan_path``: FAN weights (``wing.ckpt``, or a file with a
    ``fan`` entry), used instead of the ``fan`` entry of the files. The networks come back in eval mode on
    ``device``; ``nets.discriminator`` and ``nets.fan`` are None when the files do not hold them.

    A model with the high-pass skip (``w_hpf > 0``, the official face models) computes its output from FAN
    face masks, so without FAN weights it raises :class:`FANRequiredError`, unless ``without_masks=True``
    asks for it to run without them (``nets.without_masks``: a different function from the official model).
    ``source`` names a loaded dict in error messages (the file it came from).
    """
    entries, origin = _gather(path_or_paths, source)
    config = infer_config(entries, origin)
    nets = build_nets(config, discriminator="discriminator" in entries, fan=False)
    for net in ("generator", "mapping_network", "style_encoder", "discriminator"):
        if net in entries:
            _check_and_load(nets[net], entries[net], net, origin[net], config)

    if fan_path is not None:
        nets["fan"] = load_fan(fan_path)
    elif "fan" in entries:
        try:
            nets["fan"] = load_fan_weights(FAN(), fan_state_dict(entries["fan"], origin["fan"]), origin["fan"])
        except FANFormatError as exc:
            raise StarGANFormatError(str(exc)) from exc
    elif config.w_hpf > 0:
        where = ", ".join(sorted(set(origin.values())))
        if not without_masks:
            raise FANRequiredError(fan_required_message(where, config.w_hpf))
        nets.without_masks = True
    return nets.to(device).eval(), config


# ---------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------

def _unwrap(module: nn.Module) -> nn.Module:
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod"):  # torch.compile
            module = module._orig_mod
        else:
            return module


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in _unwrap(module).state_dict().items()}


def _save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_official(nets: Mapping[str, nn.Module], path_ema, path_d=None) -> Path:
    """Write ``nets`` in the official layout: ``generator``, ``mapping_network``, ``style_encoder`` and
    ``fan`` (when present) to ``path_ema``; ``discriminator`` to ``path_d`` when given. The generator
    includes ``hpf.filter``. Files are written atomically; returns ``Path(path_ema)``."""
    def get(name):
        return nets[name] if name in nets and nets[name] is not None else None

    missing = [n for n in REQUIRED if get(n) is None]
    if missing:
        raise ValueError(f"export_official needs {list(REQUIRED)}; these are missing: {missing}")
    ema = {n: _cpu_state(get(n)) for n in REQUIRED}
    if get("fan") is not None:
        ema["fan"] = _cpu_state(get("fan"))
    path_ema = Path(path_ema)
    _save(ema, path_ema)
    if path_d is not None:
        if get("discriminator") is None:
            raise ValueError(f"path_d={path_d} was given but these networks have no discriminator")
        _save({"discriminator": _cpu_state(get("discriminator"))}, Path(path_d))
    return path_ema
