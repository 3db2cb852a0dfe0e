"""Feature statistics of real images, computed once per dataset, resolution and extractor, and cached beside
the dataset.

The cache key is the dataset's *content* hash (sha256 over every image file's relative path and bytes, or
over the pixels of an in-memory dataset), so renaming or re-extracting a zip keeps the cache and changing one
image invalidates it. The hash itself is remembered per (path, size, modification time) listing in the
cache folder, so within one extraction the files are read once. Real images stream through a DataLoader in
batches and are never all in memory.

Cache folder: ``<image folder>/.colab_utils_stats/`` (hidden, so image listings skip it), or for a dataset
unpacked from a zip, beside the zip (on Drive when the zip is): pass ``cache_dir`` (the trainers do).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .features import check_extractor, extractor_device, features_of
from .fid import KID_FEATURES, FeatureStats

CACHE_FOLDER = ".colab_utils_stats"
_HASH_CHUNK = 1 << 20


def default_cache_dir(source: str | os.PathLike) -> Path:
    """Where statistics of ``source`` are kept: inside an image folder, or beside a zip."""
    source = Path(source)
    return source / CACHE_FOLDER if source.is_dir() else source.parent / CACHE_FOLDER


def _files(dataset) -> tuple[Path, list[Path]] | None:
    paths = getattr(dataset, "paths", None)
    root = getattr(dataset, "root", None)
    if paths is None or root is None:
        return None
    return Path(root), [Path(p) for p in paths]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _listing_stamp(root: Path, paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{_relative(path, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _hash_files(root: Path, paths: list[Path], progress: bool) -> str:
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"hashing {root.name}",
              disable=not progress or len(paths) < 200, leave=False) as bar:
        for path in paths:
            digest.update(_relative(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
            digest.update(b"\0")
    return digest.hexdigest()


def dataset_fingerprint(dataset, *, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> str | None:
    """The content hash of ``dataset``: an image-folder dataset (``.root`` and ``.paths``: the files it
    reads), one holding its pixels (``.pixels``), else None (not cacheable). With ``cache_dir`` the hash of
    a file listing is remembered there and not recomputed while the files keep their size and time."""
    files = _files(dataset)
    if files is None:
        pixels = getattr(dataset, "pixels", None)
        if isinstance(pixels, torch.Tensor):
            array = pixels.detach().cpu().contiguous().numpy()
            digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
            return digest.hexdigest()
        return None
    root, paths = files
    memo = Path(cache_dir) / "fingerprints.json" if cache_dir is not None else None
    stamp = _listing_stamp(root, paths)
    known = {}
    if memo is not None:
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and isinstance(known.get(stamp), str):
            return known[stamp]
    fingerprint = _hash_files(root, paths, progress)
    if memo is not None:
        known = {**(known if isinstance(known, dict) else {}), stamp: fingerprint}
        _atomic_write(memo, lambda f: f.write(json.dumps(known, indent=1).encode()))
    return fingerprint


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def stats_path(cache_dir: str | os.PathLike, fingerprint: str, resolution: int, extractor_name: str) -> Path:
    """The cache file for one dataset, resolution and extractor."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in extractor_name)
    return Path(cache_dir) / f"fid-stats-{fingerprint[:16]}-{resolution}px-{safe}.npz"


def _load(path: Path, fingerprint: str, dim: int) -> FeatureStats | None:
    try:
        with np.load(path) as data:
            if str(data["fingerprint"]) != fingerprint or data["mu"].shape != (dim,):
                return None
            return FeatureStats.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError) as err:
        warnings.warn(f"{path}: unreadable cached statistics ({type(err).__name__}: {err}); computing them again",
                      stacklevel=3)
        return None


def _resolution(dataset, resolution) -> int:
    if resolution is not None:
        return int(resolution)
    size = getattr(dataset, "size", None)
    if isinstance(size, int):
        return size
    first = dataset[0]
    image = first[0] if isinstance(first, (tuple, list)) else first
    return int(image.shape[-1])


def _loader(dataset, batch_size: int, workers: int):
    def collate(items):
        images = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        return torch.stack(images)

    # Its own generator: a DataLoader otherwise draws its workers' base seed from the global random state,
    # which would shift a training run that computes statistics right after resuming.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate, generator=torch.Generator().manual_seed(0))


def real_statistics(dataset, extractor, *, cache_dir: str | os.PathLike | None = None, resolution: int | None = None,
                    batch_size: int = 64, workers: int = 0, keep: int = KID_FEATURES, progress: bool = True,
                    verbose: bool = False) -> FeatureStats:
    """Feature statistics of every image of ``dataset`` (items: images ``[3, H, W]`` in [-1, 1] or uint8, or
    ``(image, label)`` pairs), read in order in batches of ``batch_size``. With ``cache_dir`` (default: inside
    the dataset's image folder when it has one) the result is cached there under the dataset's content hash,
    ``resolution`` (default: the dataset's image size) and the extractor's name. ``keep``: features kept for
    KID (a seeded random subset)."""
    check_extractor(extractor)
    if len(dataset) < 2:
        raise ValueError(f"real statistics need at least 2 images, the dataset has {len(dataset)}")
    files = _files(dataset)
    if cache_dir is None and files is not None:
        cache_dir = files[0] / CACHE_FOLDER
    resolution = _resolution(dataset, resolution)
    path = None
    if cache_dir is not None:
        fingerprint = dataset_fingerprint(dataset, cache_dir=cache_dir, progress=progress)
        if fingerprint is not None:
            path = stats_path(cache_dir, fingerprint, resolution, extractor.name)
            cached = _load(path, fingerprint, extractor.dim)
            if cached is not None:
                if verbose:
                    print(f"real-image statistics from {path}")
                return cached
    stats = FeatureStats(extractor.dim, keep=keep, total=len(dataset), seed=0, device=extractor_device(extractor))
    with tqdm(total=len(dataset), desc="real images: features", unit="img", disable=not progress,
              leave=False) as bar:
        for images in _loader(dataset, batch_size, workers):
            if images.shape[-1] != resolution or images.shape[-2] != resolution:
                raise ValueError(f"the dataset gives {tuple(images.shape[-2:])} images, expected {resolution} px")
            stats.add(features_of(extractor, images, on_device=True))
            bar.update(images.shape[0])
    if path is not None:
        data = {**stats.to_dict(), "fingerprint": np.array(fingerprint)}
        _atomic_write(path, lambda f: np.savez(f, **data))
        if verbose:
            print(f"real-image statistics of {stats.n} images cached in {path}")
    return stats
