"""Pictures for people: image grids, label-map colouring, GIFs, training curves, inline display.

Everything here takes images as torch tensors in [-1, 1] (``[N, C, H, W]`` or ``[C, H, W]``), uint8 numpy
arrays (``[N, H, W, 3]``, ``[H, W, 3]`` or ``[H, W]``) or PIL images, and knows nothing about models.

Files are written to a temporary name and renamed (a reader never sees half a picture), and never into an
unmounted Google Drive (:func:`colab_utils.drive.ensure_parent` raises instead of creating folders there).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from colab_utils.data.synthetic import PARTS
from colab_utils.drive import ensure_parent

# One colour per entry of PARTS: background, hair, skin, brows, eyes, nose, mouth.
PART_COLORS = np.array([
    (20, 20, 28), (150, 90, 40), (240, 190, 150), (90, 40, 120), (40, 200, 230), (60, 170, 70), (220, 40, 60),
], np.uint8)
assert len(PART_COLORS) == len(PARTS)


def to_uint8(images) -> np.ndarray:
    """Images as ``[N, H, W, 3]`` uint8. Float tensors are read as [-1, 1] (-1 -> 0, 1 -> 255, clamped);
    uint8 tensors and arrays are taken as they are; one channel becomes grey RGB, a fourth is dropped."""
    if isinstance(images, Image.Image):
        return np.asarray(images.convert("RGB"))[None]
    if isinstance(images, torch.Tensor):
        t = images.detach()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] not in (1, 3, 4):
            raise ValueError(f"expected a tensor [N, C, H, W] or [C, H, W] with 1, 3 or 4 channels, "
                             f"got shape {tuple(images.shape)}")
        if t.dtype != torch.uint8:
            t = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return _rgb(t.permute(0, 2, 3, 1).cpu().numpy())
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"numpy images must be uint8 (got {images.dtype}); pass float images as a torch "
                             f"tensor [N, C, H, W] in [-1, 1]")
        if images.ndim == 2:
            return _rgb(images[None, :, :, None])
        if images.ndim == 3:
            return _rgb(images[None] if images.shape[2] in (1, 3, 4) else images[..., None])
        if images.ndim == 4:
            return _rgb(images)
        raise ValueError(f"expected a uint8 array [N, H, W, 3], [H, W, 3] or [H, W], got shape {images.shape}")
    raise TypeError(f"cannot turn a {type(images).__name__} into images")


def _rgb(arr: np.ndarray) -> np.ndarray:
    channels = arr.shape[3]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=3)
    elif channels == 4:
        arr = arr[..., :3]
    elif channels != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    return np.ascontiguousarray(arr)


def _as_list(images) -> list[np.ndarray]:
    if isinstance(images, (list, tuple)):
        out = []
        for item in images:
            out.extend(to_uint8(item))
        return out
    return list(to_uint8(images))


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def image_grid(images, nrow: int = 8, padding: int = 2, pad_value=255, row_labels=None,
               col_labels=None, title: str | None = None) -> Image.Image:
    """Tile images into one PIL image, ``nrow`` per row, ``padding`` pixels round every tile (so a grid of
    ``c`` columns and ``r`` rows of ``h x w`` tiles is ``c*w + (c+1)*padding`` wide and
    ``r*h + (r+1)*padding`` high). ``row_labels``/``col_labels`` add a margin on the left/top with text;
    ``title`` a line of text above everything (e.g. the training step of a sample grid)."""
    grid = _tiled(images, nrow, padding, pad_value, row_labels, col_labels)
    return add_title(grid, title, pad_value) if title else grid


def add_title(image: Image.Image, text: str, pad_value=255) -> Image.Image:
    """``image`` with a band on top holding ``text`` (left-aligned), on the ``pad_value`` colour."""
    font = _font()
    fill = (pad_value,) * 3 if np.isscalar(pad_value) else tuple(pad_value)
    box = ImageDraw.Draw(image).textbbox((0, 0), str(text), font=font)
    band = box[3] - box[1] + 8
    canvas = Image.new("RGB", (image.width, image.height + band), fill)
    canvas.paste(image, (0, band))
    ink = (0, 0, 0) if sum(fill) > 384 else (255, 255, 255)
    ImageDraw.Draw(canvas).text((4, 4 - box[1]), str(text), fill=ink, font=font)
    return canvas


def _tiled(images, nrow: int, padding: int, pad_value, row_labels, col_labels) -> Image.Image:
    """The grid of :func:`image_grid` without its title."""
    tiles = _as_list(images)
    if not tiles:
        raise ValueError("image_grid needs at least one image")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    h, w = tiles[0].shape[:2]
    for i, tile in enumerate(tiles):
        if tile.shape[:2] != (h, w):
            raise ValueError(f"all images of a grid must have one size: image 0 is {w}x{h}, "
                             f"image {i} is {tile.shape[1]}x{tile.shape[0]}")
    cols = min(nrow, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    fill = (pad_value,) * 3 if np.isscalar(pad_value) else tuple(pad_value)
    grid = np.empty((rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding, 3), np.uint8)
    grid[:] = np.asarray(fill, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top:top + h, left:left + w] = tile
    image = Image.fromarray(grid)
    if row_labels is None and col_labels is None:
        return image
    return _add_labels(image, rows, cols, h, w, padding, fill, row_labels, col_labels)


def _add_labels(image, rows, cols, h, w, padding, fill, row_labels, col_labels) -> Image.Image:
    font = _font()
    probe = ImageDraw.Draw(image)

    def extent(text):
        box = probe.textbbox((0, 0), str(text), font=font)
        return box[2] - box[0], box[3] - box[1]

    for name, labels, count in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name} has {len(labels)} entries for {count} {name[:3]}s")
    left = max((extent(t)[0] for t in row_labels), default=0) + 8 if row_labels is not None else 0
    top = max((extent(t)[1] for t in col_labels), default=0) + 8 if col_labels is not None else 0
    canvas = Image.new("RGB", (image.width + left, image.height + top), fill)
    canvas.paste(image, (left, top))
    draw = ImageDraw.Draw(canvas)
    ink = (0, 0, 0) if sum(fill) > 384 else (255, 255, 255)
    for r, text in enumerate(row_labels or []):
        tw, th = extent(text)
        y = top + padding + r * (h + padding) + (h - th) // 2
        draw.text((left - tw - 4, y), str(text), fill=ink, font=font)
    for c, text in enumerate(col_labels or []):
        tw, th = extent(text)
        x = left + padding + c * (w + padding) + (w - tw) // 2
        draw.text((x, 2), str(text), fill=ink, font=font)
    return canvas


def _partial(path: Path) -> Path:
    """A temporary name beside ``path`` with the same suffix (so writers still infer the format from it)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def save_grid(images, path: str | os.PathLike, nrow: int = 8, **kw) -> Path:
    """``image_grid(images, nrow, **kw)`` saved to ``path`` (format from the suffix). Returns the path."""
    path = ensure_parent(path)
    grid = image_grid(images, nrow=nrow, **kw)
    tmp = _partial(path)
    try:
        grid.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def label_map_to_color(labels: np.ndarray) -> np.ndarray:
    """A label map (values indexing ``PARTS``) as an RGB uint8 picture, one fixed colour per part."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(PARTS)):
        raise ValueError(f"label values must be in 0..{len(PARTS) - 1} (PARTS), got {labels.min()}..{labels.max()}")
    return PART_COLORS[labels.astype(np.intp)]


def make_gif(frames, path: str | os.PathLike, fps: float = 10, max_side: int | None = None) -> Path:
    """Write frames (an iterable of images, or one batch) as a GIF that loops forever. GIF timing comes in
    10 ms steps and viewers cap it near 50 fps, so the frame time is rounded to 10 ms and is at least 20 ms.
    ``max_side`` shrinks frames whose longer side exceeds it. Consecutive identical frames may be merged by
    the GIF writer. Written to a temporary name, then renamed. Returns the path."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"{path}: make_gif writes .gif files, not {path.suffix or 'no suffix'}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if isinstance(frames, (torch.Tensor, np.ndarray)) and frames.ndim == 4:
        arrays = list(to_uint8(frames))
    else:
        arrays = [a for frame in frames for a in to_uint8(frame)]
    if not arrays:
        raise ValueError(f"{path}: no frames to write")
    h, w = arrays[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in arrays):
        raise ValueError(f"{path}: all frames must have one size (the first is {w}x{h})")
    if max_side is not None and max(h, w) > max_side:
        k = max_side / max(h, w)
        new = (max(1, round(w * k)), max(1, round(h * k)))
        arrays = [np.asarray(Image.fromarray(a).resize(new, Image.Resampling.LANCZOS)) for a in arrays]
    duration = max(20, 10 * round(100 / fps))
    ensure_parent(path)
    tmp = _partial(path)
    try:
        iio.imwrite(tmp, np.stack(arrays), extension=".gif", duration=duration, loop=0)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Running mean over the last ``window`` finite values (NaN and inf are skipped)."""
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0)
    csum, ccount = np.cumsum(v), np.cumsum(finite)
    total = csum - np.concatenate([np.zeros(window), csum[:-window]])[: len(v)]
    count = ccount - np.concatenate([np.zeros(window), ccount[:-window]])[: len(v)]
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)


def plot_curves(history: dict, path: str | os.PathLike | None = None, title: str | None = None):
    """One small plot per entry of ``history`` (``name -> [(step, value), ...]``; plain values count as steps
    0, 1, ...), raw values faint with a running mean over them once there are 20 or more. Returns the
    matplotlib Figure (made without pyplot, so any backend and no global state); saved when ``path`` is given."""
    from matplotlib.figure import Figure

    if not history:
        raise ValueError("plot_curves needs at least one named series")
    names = list(history)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        points = list(history[name])
        ax.set_title(str(name), fontsize=10)
        ax.grid(alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
            continue
        if np.ndim(points[0]) == 0:
            points = list(enumerate(points))
        steps = np.array([p[0] for p in points], np.float64)
        values = np.array([p[1] for p in points], np.float64)
        many = len(values) >= 20
        ax.plot(steps, values, lw=1, alpha=0.35 if many else 1.0, color="C0")
        if many:
            ax.plot(steps, _smooth(values, max(5, len(values) // 20)), lw=1.6, color="C1")
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="both", useOffset=False)   # plain values (0.99999), never "1e-5+9.999e-1"
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    if path is not None:
        path = ensure_parent(path)
        tmp = _partial(path)
        try:
            fig.savefig(tmp, dpi=100)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return fig


def show(image) -> None:
    """Display an image (PIL, array, tensor; a batch as a grid) or a matplotlib Figure inline in Jupyter or
    Colab. Outside a notebook it only prints what would have been shown."""
    from matplotlib.figure import Figure

    if isinstance(image, Figure):
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=100)
        picture = Image.open(io.BytesIO(buf.getvalue()))
    elif isinstance(image, Image.Image):
        picture = image
    else:
        tiles = _as_list(image)
        picture = Image.fromarray(tiles[0]) if len(tiles) == 1 else image_grid(tiles)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(f"<image {picture.width}x{picture.height}: no notebook to show it in>")
        return
    display(picture)
