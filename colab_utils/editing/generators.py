"""Which StyleGAN2 to edit: the small one trained on synthetic faces, FFHQ through the hub, or your own file.

    G, name = load_generator("synthetic")      # assets/stylegan2_synthetic_64.pt (64 px, taught by the renderer)
    segmenter = load_segmenter()               # assets/part_segmenter_portrait_64.pt: names its catalog clusters
    G, name = load_generator("ffhq")           # NVIDIA's FFHQ config-f, 1024 px, via colab_utils.hub
    G, name = load_generator("/content/drive/MyDrive/colab_utils/runs/me/stylegan2.pt")   # rosinality format
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from colab_utils import runtime

SYNTHETIC_ASSET = "stylegan2_synthetic_64.pt"
SEGMENTER_ASSET = "part_segmenter_portrait_64.pt"
SYNTHETIC_PRESET = "portrait"   # the synthetic faces the segmenter learnt (and tools/train_synthetic_stylegan.py trains on)
REPOSITORY_ASSETS = Path(__file__).resolve().parents[2] / "assets"
ASSET_BASE_URL = "https://raw.githubusercontent.com/colab-utils/colab_utils/main/assets"
ASSET_URL = f"{ASSET_BASE_URL}/{SYNTHETIC_ASSET}"
FFHQ = "stylegan2_ffhq_config_f"


def _asset_path(name: str, download: bool | None) -> Path | None:
    """``assets/<name>`` of a clone (or of the current folder); else, when ``download`` (default: in Colab),
    fetched from the repository through ``colab_utils.hub``; else None."""
    for folder in (REPOSITORY_ASSETS, Path.cwd() / "assets"):
        if (folder / name).is_file():
            return folder / name
    if download if download is not None else runtime.in_colab():
        from colab_utils import hub

        return Path(hub.download(f"{ASSET_BASE_URL}/{name}"))
    return None


def synthetic_generator_path(*, download: bool | None = None) -> Path | None:
    """The generator trained on synthetic faces (see :func:`_asset_path` for where it is looked for)."""
    return _asset_path(SYNTHETIC_ASSET, download)


def synthetic_segmenter_path(*, download: bool | None = None) -> Path | None:
    """The part segmenter trained on the same synthetic faces (``tools/train_part_segmenter.py``)."""
    return _asset_path(SEGMENTER_ASSET, download)


def load_segmenter(*, fallback_steps: int | None = None, device: str | torch.device = "cpu"):
    """The :class:`~colab_utils.editing.segmenter.PartSegmenter` that names the clusters of the synthetic
    generator: the shipped file, or, when it cannot be found and ``fallback_steps`` is given, one trained now
    for that many steps on the same faces (about a minute per 100 steps on a CPU)."""
    from .segmenter import PartSegmenter, train_segmenter

    path = synthetic_segmenter_path()
    if path is not None:
        return PartSegmenter.load(path, map_location=device)
    if fallback_steps is None:
        raise FileNotFoundError(f"{SEGMENTER_ASSET} is not in {REPOSITORY_ASSETS}: work from a clone of the "
                                f"repository, or pass fallback_steps to train a segmenter")
    return train_segmenter(1024, size=64, steps=fallback_steps, device=device, preset=SYNTHETIC_PRESET)


def tiny_generator(size: int = 64, seed: int = 0):
    """A randomly initialised small StyleGAN2 (for smoke runs when no trained file is at hand; its clusters
    are not face parts)."""
    from colab_utils.stylegan2 import Generator

    torch.manual_seed(seed)
    channels = {r: 32 for r in (4, 8, 16, 32)} | {r: 16 for r in (64, 128, 256, 512, 1024) if r <= size}
    return Generator(size, style_dim=64, n_mlp=2, channels=channels).eval()


def load_generator(weights: str | os.PathLike = "synthetic", *, device: str | torch.device | None = None,
                   fallback_to_random: bool = False):
    """``(G, description)``: the sampling generator (``g_ema``, eval mode) of ``weights``.

    ``weights``: ``"synthetic"`` (see :func:`synthetic_generator_path`), ``"ffhq"`` (hub entry
    ``stylegan2_ffhq_config_f``), a hub name, a path to a rosinality-format ``.pt``, or a StyleGAN2 training
    checkpoint of ours or its run folder (the newest checkpoint's ``g_ema``). With ``fallback_to_random``, a
    missing synthetic generator is replaced by :func:`tiny_generator` (and the description says so) instead
    of raising.
    """
    from colab_utils.checkpoint import FORMAT
    from colab_utils.loading import read_source
    from colab_utils.stylegan2 import load_rosinality
    from colab_utils.stylegan2.train import load_checkpoint

    device = torch.device(device) if device is not None else runtime.default_device()
    if weights == "synthetic":
        path = synthetic_generator_path()
        if path is None:
            if fallback_to_random:
                return tiny_generator().to(device), "a RANDOMLY INITIALISED tiny generator (no trained file found)"
            raise FileNotFoundError(f"{SYNTHETIC_ASSET} is not in {REPOSITORY_ASSETS}: work from a clone of the "
                                    f"repository, or pass the path of a rosinality .pt")
        return load_rosinality(path, device=device).g_ema, f"the StyleGAN2 trained on synthetic faces ({path.name})"
    if weights == "ffhq":
        weights = FFHQ
    path = Path(weights)
    if path.is_dir():
        return load_checkpoint(path, device=device).g_ema, f"{path.name} (its newest training checkpoint)"
    if not path.is_file():
        from colab_utils import hub

        if str(weights) not in hub.REGISTRY:
            raise FileNotFoundError(f"{weights} is neither a file nor a hub entry ({', '.join(sorted(hub.REGISTRY))})")
        entry = hub.REGISTRY[str(weights)]
        if entry.format != "rosinality_stylegan2":      # refused before a download of the wrong model
            from colab_utils.stylegan2.formats import StyleGANFormatError

            raise StyleGANFormatError(f"{weights} is a {entry.format} file ({entry.description}), not a StyleGAN2 "
                                      f"generator")
        path = Path(hub.download(str(weights)))
    payload, _ = read_source(path, "StyleGAN2 checkpoint")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:   # a training checkpoint of ours
        return load_checkpoint(path, device=device).g_ema, f"{path.name}"
    return load_rosinality(payload, device=device, source=str(path)).g_ema, f"{path.name}"
