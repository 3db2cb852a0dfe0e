"""Image folders for training: listing, robust loading, datasets, and zips copied off Google Drive.

People train on their own photos, so folders hold phone JPEGs with EXIF rotation, PNGs with transparency,
greyscale scans, the odd truncated upload and macOS ``__MACOSX`` debris. Loading turns every readable image
into upright RGB and every unreadable one into an :class:`ImageLoadError` naming the file; the datasets check
each file once up front and report the bad ones in one warning instead of failing in the middle of training.

The datasets never augment: trainers flip batches with their own seeded generator, so a resumed run sees the
same pixels as an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
EXTRACTED_MARKER = ".colab_utils_extracted.json"
_MAX_NAMED = 10


class ImageLoadError(ValueError):
    """An image file that cannot be read; ``path`` is the file and ``problem`` says what is wrong."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


# ----------------------------------------------------------------------------------------------- files

def _hidden(parts) -> bool:
    """Dot files and folders (.ipynb_checkpoints, ._ AppleDouble files) and macOS zip debris."""
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _check_folder(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder (expected a folder of images)")
    return root


def list_images(root, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (extensions in ``IMAGE_EXTENSIONS``, any case), sorted by their path
    relative to ``root`` so the order is the same on every machine. Hidden files and folders and
    ``__MACOSX`` are left out."""
    root = _check_folder(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [p for p in candidates
             if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p.relative_to(root).parts) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _to_rgb(img: Image.Image) -> Image.Image:
    """A new RGB image: transparency composited on white, 16-bit and float greyscale scaled to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        peak = values.max() if values.size else 0
        if img.mode.startswith("I;16") or peak > 255:
            values = values * (255 / 65535)
        elif img.mode == "F" and peak <= 1:
            values = values * 255
        img = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        return flat
    return img.convert("RGB")


def load_image(path, *, min_side: int | None = None) -> Image.Image:
    """Open an image as upright RGB (EXIF rotation applied; greyscale, palette and 16-bit converted; alpha
    composited on white). ``min_side`` lets JPEGs decode at a reduced scale that still keeps both sides at
    least that long (much faster for phone photos). Anything unreadable, truncated or missing raises
    :class:`ImageLoadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "no such file")
    try:
        with Image.open(path) as img:
            if min_side and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"too large to decode safely ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not an image Pillow can read (corrupt header or another format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        problem = str(exc).replace(str(path), "").strip(" '") or type(exc).__name__
        raise ImageLoadError(path, f"corrupt or truncated image ({problem})") from exc


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size`` and cut the centred ``size x size`` square (one resample)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                      reducing_gap=3.0)


def _tensor_uint8(img: Image.Image, size: int) -> torch.Tensor:
    return torch.from_numpy(np.array(resize_center_crop(img, size))).permute(2, 0, 1).contiguous()


def _read(path: Path, size: int) -> torch.Tensor:
    """uint8 [3, size, size] of one file."""
    return _tensor_uint8(load_image(path, min_side=size), size)


def _to_unit_range(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 127.5 - 1.0


def _check_image_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return int(size)


def _scan(paths: list[Path], size: int, check: bool, cache: bool, desc: str):
    """Open every file once (``check``) and keep the decoded pixels (``cache``). Returns the usable paths,
    the skipped ``(path, reason)`` pairs and the cached uint8 tensors (or None)."""
    if not (check or cache):
        return list(paths), [], None

    def probe(path):
        try:
            img = load_image(path, min_side=size)
        except ImageLoadError as exc:
            return exc.problem
        return _tensor_uint8(img, size) if cache else None

    usable, skipped, tensors = [], [], []
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
        results = pool.map(probe, paths)
        for path, result in tqdm(zip(paths, results), total=len(paths), desc=desc, unit="img",
                                 disable=len(paths) < 500):
            if isinstance(result, str):
                skipped.append((path, result))
                continue
            usable.append(path)
            if cache:
                tensors.append(result)
    return usable, skipped, (tensors if cache else None)


def _warn_skipped(skipped: list[tuple[Path, str]], root: Path):
    if not skipped:
        return

    def name(path):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return str(path)

    named = "; ".join(f"{name(p)} ({reason})" for p, reason in skipped[:_MAX_NAMED])
    more = f"; and {len(skipped) - _MAX_NAMED} more" if len(skipped) > _MAX_NAMED else ""
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in {root}: {named}{more}", stacklevel=3)


# ----------------------------------------------------------------------------------------------- datasets

class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image under ``root`` as a float tensor ``[3, size, size]`` in [-1, 1] (resized so the short side
    is ``size``, centre-cropped). No augmentation.

    With ``check`` each file is opened once here; unreadable ones are left out, listed in ``.skipped`` as
    ``(path, reason)`` and named in a single warning. With ``cache`` the decoded pixels stay in memory
    (uint8, 3*size*size bytes per image), for small datasets. Fewer than ``min_images`` usable images raise
    ValueError naming the folder and the count; ``min_reason`` says why that many are needed (e.g.
    ``"the batch size"``).
    """

    def __init__(self, root, size: int, *, recursive: bool = True, min_images: int = 1, check: bool = True,
                 cache: bool = False, min_reason: str | None = None):
        self.root = _check_folder(root)
        self.size = _check_image_size(size)
        found = list_images(self.root, recursive)
        self.paths, self.skipped, self._cache = _scan(found, self.size, check, cache,
                                                      f"checking images in {self.root.name}")
        _warn_skipped(self.skipped, self.root)
        if len(self.paths) < min_images:
            why = f" ({min_reason})" if min_reason else ""
            if self.skipped:
                why += f"; {len(self.skipped)} more could not be read"
            elif not found:
                why += f"; image files must end in {', '.join(IMAGE_EXTENSIONS)}"
            raise ValueError(f"found {len(self.paths)} usable images in {self.root}, need at least {min_images}{why}")

    def __len__(self) -> int:
        return len(self.paths)

    def uint8_item(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 pixels [3, size, size]: what a GPU training loader pins and moves (a quarter
        of the bytes of floats), turning them into floats on the device."""
        return self._cache[index] if self._cache is not None else _read(self.paths[index], self.size)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _to_unit_range(self.uint8_item(index))


class DomainFolderDataset(torch.utils.data.Dataset):
    """Images in one sub-folder per domain (``root/<domain>/...``, searched recursively), as
    ``(tensor [3, size, size] in [-1, 1], domain index)``. ``.domains`` are the sorted folder names,
    ``.targets`` the domain index of every item, ``.skipped`` the unreadable files (named in one warning).
    Fewer than two domains, or a domain with fewer than ``min_images_per_domain`` usable images (at least
    one), raise ValueError."""

    def __init__(self, root, size: int, *, min_images_per_domain: int = 1, check: bool = True,
                 cache: bool = False):
        self.root = _check_folder(root)
        self.size = _check_image_size(size)
        folders = sorted((d for d in self.root.iterdir() if d.is_dir() and not _hidden([d.name])),
                         key=lambda d: d.name)
        names = [d.name for d in folders]
        if len(folders) < 2:
            raise ValueError(f"{self.root} must hold one sub-folder per domain (at least 2, e.g. female/ and "
                             f"male/), found {len(folders)}: {names}")
        if set(n.lower() for n in names) <= set(SPLIT_NAMES):
            raise ValueError(f"{self.root} holds split folders {names}, not domains: pass "
                             f"{self.root / names[0]} (whose sub-folders are the domains) instead")
        self.domains = names
        found, labels = [], []
        for label, folder in enumerate(folders):
            paths = list_images(folder)
            found += paths
            labels += [label] * len(paths)
        label_of = dict(zip(found, labels))
        self.paths, self.skipped, self._cache = _scan(found, self.size, check, cache,
                                                      f"checking images in {self.root.name}")
        _warn_skipped(self.skipped, self.root)
        self.targets = [label_of[p] for p in self.paths]
        need = max(1, min_images_per_domain)
        counts = np.bincount(np.asarray(self.targets, np.int64), minlength=len(folders))
        for folder, count in zip(folders, counts):
            if count < need:
                raise ValueError(f"domain folder {folder} has {count} usable images, need at least {need}")

    @property
    def samples(self) -> list[tuple[Path, int]]:
        return list(zip(self.paths, self.targets))

    def indices_of(self, domain: int | str) -> list[int]:
        """Positions of the items of one domain (by index or folder name)."""
        label = self.domains.index(domain) if isinstance(domain, str) else int(domain)
        return [i for i, t in enumerate(self.targets) if t == label]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self._cache[index] if self._cache is not None else _read(self.paths[index], self.size)
        return _to_unit_range(pixels), self.targets[index]


# ----------------------------------------------------------------------------------------------- zips

def default_data_dir() -> Path:
    """Where zips are unpacked: ``/content/data`` on Colab's fast local disk, else a temporary folder."""
    from colab_utils.runtime import in_colab

    return Path("/content/data") if in_colab() else Path(tempfile.gettempdir()) / "colab_utils_data"


def _zip_stamp(source: Path) -> dict:
    stat = source.stat()
    return {"zip": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_stamp(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _image_root(folder: Path) -> Path:
    """Descend through single top-level folders (a zip of ``faces/`` unpacks to ``faces/...``)."""
    while True:
        entries = [e for e in folder.iterdir() if not _hidden([e.name])]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def _copy_with_progress(source: Path, target: Path) -> Path:
    total = source.stat().st_size
    partial = target.with_name(target.name + ".partial")
    with open(source, "rb") as src, open(partial, "wb") as dst, \
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=f"copying {source.name} to local disk") as bar:
        while chunk := src.read(8 << 20):
            dst.write(chunk)
            bar.update(len(chunk))
    os.replace(partial, target)
    return target


def _extract(archive: Path, source: Path, into: Path):
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not _hidden(Path(m.filename).parts)]
            if not any(Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS for m in members):
                shown = ", ".join(m.filename for m in members[:5]) or "nothing"
                raise ValueError(f"{source} holds no images ({'/'.join(IMAGE_EXTENSIONS)}), only {shown}"
                                 f"{' ...' if len(members) > 5 else ''}: zip the folder of images itself")
            for member in tqdm(members, desc=f"extracting {source.name}", unit="file"):
                zf.extract(member, into)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ValueError(f"{source} is a corrupt zip file: {exc}") from exc
    except NotImplementedError as exc:
        raise ValueError(f"{source} uses a compression method Python cannot read ({exc}); re-zip it with "
                         f"standard (deflate) compression") from exc
    except RuntimeError as exc:  # encrypted members
        raise ValueError(f"{source} cannot be extracted ({exc}); zip it without a password") from exc


def prepare_dataset(source, local_dir=None, *, copy_first: bool | None = None) -> Path:
    """Make a dataset ready to read fast and return the folder that holds its images.

    A folder is returned as it is. A ``.zip`` (typically on a mounted Google Drive, where reading many small
    files is slow) is copied to local disk with a progress bar when it lives on another file system
    (``copy_first=None``; True/False force it), then extracted into ``local_dir/<zip name>/`` (default
    :func:`default_data_dir`). A marker file records the zip's name, size and modification time, so
    calling this again for the same zip returns at once. The returned folder descends through a single
    top-level folder of the zip. A missing path, another kind of file, a corrupt zip or one without images
    raises an error naming it, and leaves nothing of it in ``local_dir``.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"dataset {source} does not exist")
    if source.is_dir():
        return source
    if source.suffix.lower() != ".zip":
        raise ValueError(f"{source}: expected an image folder or a .zip of one, got a {source.suffix or 'plain'} file")
    local = Path(local_dir).expanduser() if local_dir is not None else default_data_dir()
    local.mkdir(parents=True, exist_ok=True)
    target = local / source.stem
    stamp = _zip_stamp(source)
    marker = target / EXTRACTED_MARKER
    if marker.is_file() and _read_stamp(marker) == stamp:
        return _image_root(target)
    if target.exists() and not marker.is_file():
        raise FileExistsError(f"{target} already exists and was not unpacked by prepare_dataset; move it away "
                              f"or pass another local_dir")
    if not zipfile.is_zipfile(source):
        raise ValueError(f"{source} is not a valid zip file (corrupt, truncated or another format)")

    if copy_first is None:
        copy_first = os.stat(source).st_dev != os.stat(local).st_dev
    archive = _copy_with_progress(source, local / f".{source.name}") if copy_first else source
    partial = local / f".{source.stem}.partial"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        _extract(archive, source, partial)
        (partial / EXTRACTED_MARKER).write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)  # an older extraction of a different zip with this name (it has our marker)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if copy_first:
            archive.unlink(missing_ok=True)
    return _image_root(target)
