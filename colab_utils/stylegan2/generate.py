"""Sampling from a trained StyleGAN2 generator: image batches, style-mixing grids, latent interpolations.

Everything here is deterministic per seed: latent codes come from a seeded CPU ``torch.Generator`` (so the same
seed gives the same faces on CPU and GPU and for any batch size) and the generator's stored noise images are
used instead of fresh noise.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from colab_utils.viz import image_grid

from .model import Generator

MEAN_W_SAMPLES = 4096


@contextlib.contextmanager
def _eval_mode(G: Generator):
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        G.train(was_training)


def _device(G: Generator, device) -> torch.device:
    return torch.device(device) if device is not None else G.input.input.device


def seeded_z(G: Generator, n: int, seed: int) -> torch.Tensor:
    """``n`` latent codes z [n, style_dim] from ``seed`` (CPU, float32)."""
    return torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def mean_w(G: Generator, n_samples: int = MEAN_W_SAMPLES, seed: int = 0, device=None) -> torch.Tensor:
    """Average w over ``n_samples`` seeded z: the truncation centre when a file has no ``latent_avg``."""
    device = _device(G, device)
    return G.get_latent(seeded_z(G, n_samples, seed).to(device)).mean(0, keepdim=True)


@torch.no_grad()
def truncation_center(G: Generator, truncation_latent: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """The w that truncation pulls toward, [1, style_dim]: ``truncation_latent`` when given, else the
    ``latent_avg`` of the file ``G`` was loaded from (``G.latent_avg``, set by ``load_rosinality``), else the
    mean of 4096 seeded w (:func:`mean_w`)."""
    device = _device(G, device)
    if truncation_latent is None:
        truncation_latent = getattr(G, "latent_avg", None)
    if truncation_latent is not None:
        return truncation_latent.reshape(1, -1).to(device)
    return mean_w(G, device=device)


def _truncation_center(G, truncation, truncation_latent, device):
    return None if truncation >= 1 else truncation_center(G, truncation_latent, device)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _render(G: Generator, w_plus: torch.Tensor, device) -> torch.Tensor:
    """Images for W+ codes [B, n_latent, D] with the stored noise, as float32 CPU tensors in [-1, 1]."""
    img = G.synthesis(G.style_vectors(w_plus.to(device)), randomize_noise=False)
    return img.float().clamp_(-1, 1).cpu()


def _render_all(G: Generator, w_plus: torch.Tensor, batch_size: int, device, desc: str) -> torch.Tensor:
    starts = range(0, w_plus.shape[0], batch_size)
    bar = tqdm(starts, desc=desc, leave=False, disable=len(starts) < 2)
    return torch.cat([_render(G, w_plus[start:start + batch_size], device) for start in bar])


def generate(G: Generator, n: int, seed: int = 0, truncation: float = 1.0, batch_size: int = 16, device=None, *,
             truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` images [n, 3, size, size] in [-1, 1] (CPU float32), the same for the same seed.

    ``truncation`` < 1 pulls w toward ``truncation_latent``; by default toward the loaded file's ``latent_avg``,
    or the mean of 4096 seeded w for a generator without one (:func:`truncation_center`)."""
    _check_count("n", n)
    _check_count("batch_size", batch_size)
    device = _device(G, device)
    with _eval_mode(G):
        center = _truncation_center(G, truncation, truncation_latent, device)
        w = G.w_plus([seeded_z(G, n, seed).to(device)], truncation=truncation, truncation_latent=center)
        return _render_all(G, w, batch_size, device, "generating")


def style_mixing_grid(G: Generator, n_src: int, n_dst: int, seed: int = 0, cross_layers: tuple[int, int] = (0, 4), *,
                      truncation: float = 1.0, truncation_latent: torch.Tensor | None = None, batch_size: int = 16,
                      device=None, padding: int = 2):
    """The StyleGAN figure: sources across the top, destinations down the left, and in each cell the
    destination's W+ with entries ``cross_layers[0]:cross_layers[1]`` taken from the column's source
    ((0, 4): coarse styles, i.e. pose and face shape, from the source; colours and fine detail from the
    destination). Returns a PIL image."""
    _check_count("n_src", n_src)
    _check_count("n_dst", n_dst)
    lo, hi = cross_layers
    if not 0 <= lo < hi <= G.n_latent:
        raise ValueError(f"cross_layers must satisfy 0 <= start < end <= {G.n_latent}, got {cross_layers}")
    device = _device(G, device)
    with _eval_mode(G):
        center = _truncation_center(G, truncation, truncation_latent, device)
        z = seeded_z(G, n_src + n_dst, seed).to(device)
        w = G.w_plus([z], truncation=truncation, truncation_latent=center)
        src, dst = w[:n_src], w[n_src:]
        mixed = dst[:, None].repeat(1, n_src, 1, 1)                # [n_dst, n_src, n_latent, D]
        mixed[:, :, lo:hi] = src[None, :, lo:hi]
        codes = torch.cat([src, dst, mixed.reshape(-1, G.n_latent, G.style_dim)])
        images = _render_all(G, codes, batch_size, device, "style mixing")
    src_img, dst_img, mix_img = images[:n_src], images[n_src:n_src + n_dst], images[n_src + n_dst:]
    blank = torch.ones_like(src_img[:1])
    rows = [torch.cat([blank, src_img])]
    for i in range(n_dst):
        rows.append(torch.cat([dst_img[i:i + 1], mix_img[i * n_src:(i + 1) * n_src]]))
    return image_grid(torch.cat(rows), nrow=n_src + 1, padding=padding)



# ---------------------------------------------------------------------------------------------------------
# Interpolation videos
# ---------------------------------------------------------------------------------------------------------

def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latent vectors (rows), the natural path for Gaussian z."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1.0 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def _interpolation_codes(G: Generator, seeds: Sequence[int], steps_per_pair: int, space: str, loop: bool,
                         truncation: float, center, device) -> torch.Tensor:
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' (slerp in Z) or 'w' (lerp in W), got {space!r}")
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError(f"interpolation needs at least two seeds, got {seeds}")
    keys = seeds + [seeds[0]] if loop else seeds
    z = torch.cat([seeded_z(G, 1, s) for s in keys]).to(device)
    w_keys = G.get_latent(z)
    codes = []
    for k in range(len(keys) - 1):
        for step in range(steps_per_pair):
            t = step / steps_per_pair
            if space == "z":
                codes.append(G.get_latent(slerp(z[k:k + 1], z[k + 1:k + 2], t)))
            else:
                codes.append(torch.lerp(w_keys[k:k + 1], w_keys[k + 1:k + 2], t))
    if not loop:
        codes.append(w_keys[-1:])
    return G.w_plus([torch.cat(codes)], input_is_latent=True, truncation=truncation, truncation_latent=center)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def interpolation_frames(G: Generator, seeds: Sequence[int], steps_per_pair: int = 30, truncation: float = 1.0, *,
                         space: str = "z", loop: bool = True, truncation_latent: torch.Tensor | None = None,
                         batch_size: int = 8, device=None) -> Iterator[np.ndarray]:
    """Frames [H, W, 3] uint8 of a walk through the latent codes of ``seeds`` (slerp in Z with
    ``space="z"``, lerp in W with ``space="w"``), ``steps_per_pair`` frames per pair, back to the first seed
    when ``loop`` (a seamless GIF) or ending on the last seed."""
    _check_count("steps_per_pair", steps_per_pair)
    _check_count("batch_size", batch_size)
    device = _device(G, device)
    with _eval_mode(G):
        center = _truncation_center(G, truncation, truncation_latent, device)
        codes = _interpolation_codes(G, seeds, steps_per_pair, space, loop, truncation, center, device)
    for start in range(0, codes.shape[0], batch_size):
        with _eval_mode(G):
            images = _render(G, codes[start:start + batch_size], device)
        yield from to_uint8(images)


def interpolation_length(seeds: Sequence[int], steps_per_pair: int, loop: bool = True) -> int:
    """Number of frames ``interpolation_frames`` yields."""
    pairs = len(seeds) if loop else len(seeds) - 1
    return pairs * steps_per_pair + (0 if loop else 1)


def save_interpolation(G: Generator, path: str | os.PathLike, seeds: Sequence[int], steps_per_pair: int = 30,
                       truncation: float = 1.0, *, fps: float = 30, space: str = "z", loop: bool = True,
                       truncation_latent: torch.Tensor | None = None, batch_size: int = 8, device=None) -> Path:
    """Write an interpolation as ``.gif`` (imageio, looping forever) or ``.mp4`` (H.264 through
    imageio-ffmpeg). Written to a temporary name, then renamed. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: interpolations are written as .gif or .mp4, not {path.suffix or 'no suffix'}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    total = interpolation_length(seeds, steps_per_pair, loop)
    frames = interpolation_frames(G, seeds, steps_per_pair, truncation, space=space, loop=loop,
                                  truncation_latent=truncation_latent, batch_size=batch_size, device=device)
    frames = tqdm(frames, total=total, desc=f"writing {path.name}", unit="frame")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{suffix}")
    try:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_mp4(tmp, frames, fps, G.size)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_gif(path: Path, frames, fps: float) -> None:
    import imageio.v3 as iio

    # GIF frame delays are stored in 10 ms steps.
    duration = max(10, int(round(1000 / fps / 10)) * 10)
    iio.imwrite(path, np.stack(list(frames)), extension=".gif", duration=duration, loop=0)


def _write_mp4(path: Path, frames, fps: float, size: int) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=math.gcd(size, 16), quality=8)
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
