"""Align your own photos like CelebA-HQ, so that a phone selfie works as a StarGAN v2 source or reference.

CelebA-HQ faces (Karras et al. 2018, "Progressive Growing of GANs") are cropped so that the eyes and the
mouth sit at fixed places. We find five landmarks (eye centres, nose tip, mouth corners), fit the
least-squares similarity transform (rotation, uniform scale, shift; Umeyama 1991, "Least-squares
estimation of transformation parameters between two point patterns") onto a mean-landmark template, and
warp. The inverse transform pastes a translated crop back into the original picture or video frame.

Landmarks come from :func:`colab_utils.stargan.landmarks.make_landmarker`, which picks MediaPipe Face Mesh
where its bundled models can run (``mediapipe<0.10.30``, Python <= 3.12), else the StarGAN v2 release's FAN
(the network already loaded as ``nets.fan``, or ``wing.ckpt`` through ``colab_utils.hub``), else explains how
to get one; :func:`colab_utils.stargan.landmarks.landmark_backend_report` says which one this machine has.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

# Five-point template, as fractions of the crop size: the mean MediaPipe landmarks of the 56 CelebA-HQ
# 256px sample faces of the StarGAN v2 release, made left-right symmetric (eyes: std 1-2 px there).
TEMPLATE_5 = np.array([
    [0.3757, 0.4795],  # left eye centre (image left)
    [0.6243, 0.4795],  # right eye centre
    [0.5000, 0.6482],  # nose tip
    [0.3933, 0.7362],  # left mouth corner
    [0.6067, 0.7362],  # right mouth corner
], dtype=np.float64)
# The eyes are the most stable points; nose and mouth move with pose and expression.
TEMPLATE_WEIGHTS = np.array([1.0, 1.0, 0.5, 0.5, 0.5])

Landmarker = Callable[[np.ndarray], "np.ndarray | None"]


class NoFaceError(ValueError):
    """No face was found in a picture."""


# The landmark backends (MediaPipe, FAN, the chooser) live in colab_utils.stargan.landmarks, which builds on the
# geometry below; these names are also reachable from here.
_FROM_LANDMARKS = ("make_landmarker", "landmark_backend_report", "mediapipe_status", "MediaPipeLandmarks",
                   "FANLandmarks", "LandmarkBackendError", "five_points", "MESH_GROUPS", "FAN_GROUPS")


def __getattr__(name: str):
    if name in _FROM_LANDMARKS:
        from colab_utils.stargan import landmarks

        return getattr(landmarks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- geometry --------------------------------------------------------------------------------------

def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2×3 matrix of the rotation + uniform scale + shift taking ``src`` points closest to ``dst``
    (weighted least squares; no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching N×2 point sets with N >= 2, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    var_s = (w * (s ** 2).sum(1)).sum()
    if var_s <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = (d * w[:, None]).T @ s
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ fix @ vt
    scale = (sig * np.diag(fix)).sum() / var_s
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int], *,
                resample=Image.BICUBIC, fill=(0, 0, 0)) -> np.ndarray:
    """Warp ``image`` so that pixel p of the source lands at ``matrix @ p`` in an output of ``size``
    (int for square, or (width, height)). Pixel centres are at integer coordinates."""
    w, h = (size, size) if isinstance(size, int) else size
    inv = invert_affine(matrix)  # PIL maps output coordinates to input coordinates
    # PIL maps pixel-edge coordinates (output pixel x spans [x, x+1)) to pixel-edge coordinates; ours have pixel
    # centres at integers, so p_edge = inv @ (q_edge - 0.5) + 0.5.
    a, b, c = inv[0]
    d, e, f = inv[1]
    coeffs = (a, b, c - 0.5 * (a + b) + 0.5, d, e, f - 0.5 * (d + e) + 0.5)
    out = Image.fromarray(_as_rgb_array(image)).transform((w, h), Image.AFFINE, coeffs, resample=resample, fillcolor=fill)
    return np.asarray(out)


@dataclass
class AlignedFace:
    image: np.ndarray  # size×size×3 uint8, CelebA-HQ-like crop
    matrix: np.ndarray  # 2×3, original image coordinates -> crop coordinates
    landmarks: np.ndarray  # the five points in the original image

    @property
    def inverse(self) -> np.ndarray:
        return invert_affine(self.matrix)


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    return similarity_transform(landmarks, TEMPLATE_5 * size, TEMPLATE_WEIGHTS)


def align_face(image, size: int = 256, *, landmarker: Landmarker | None = None,
               landmarks: np.ndarray | None = None, name: str = "image") -> AlignedFace:
    """Crop ``image`` (array, PIL image or path) like CelebA-HQ at ``size``. Landmarks: ``landmarks`` when
    given, else ``landmarker``, else the backend :func:`colab_utils.stargan.landmarks.make_landmarker` picks.
    Raises ``NoFaceError`` naming the picture when no face is found."""
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
    array = _as_rgb_array(image)
    if landmarks is None:
        own = landmarker is None
        if own:
            from colab_utils.stargan.landmarks import make_landmarker

            landmarker = make_landmarker()
        try:
            landmarks = landmarker(array)
        finally:
            if own:
                landmarker.close()
        if landmarks is None:
            raise NoFaceError(f"no face found in {name}")
    matrix = alignment_matrix(landmarks, size)
    return AlignedFace(warp_affine(array, matrix, size), matrix, np.asarray(landmarks, np.float64))


def face_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """A soft elliptical mask (size×size, float32 in [0, 1]) over the face region of an aligned crop."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.sqrt(((xx - 0.5) / 0.40) ** 2 + ((yy - 0.55) / 0.47) ** 2)
    return np.clip((1.0 - r) / max(feather, 1e-6), 0.0, 1.0).astype(np.float32)


def paste_back(frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Put a (translated) aligned crop back into ``frame`` with the inverse of ``matrix`` and a feathered mask."""
    frame = _as_rgb_array(frame)
    size = crop.shape[0]
    mask = face_mask(size) if mask is None else mask
    h, w = frame.shape[:2]
    inv = invert_affine(matrix)
    back = warp_affine(crop, inv, (w, h)).astype(np.float32)
    alpha_img = Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB")
    alpha = warp_affine(np.asarray(alpha_img), inv, (w, h), resample=Image.BILINEAR)[..., :1].astype(np.float32) / 255
    out = frame.astype(np.float32) * (1 - alpha) + back * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass
class AlignReport:
    """What :func:`align_folder` did. ``landmarks``: the backend's description; ``whole_image``: photos in
    which no face detector found the face, taken whole as face crops (FAN backend)."""

    aligned: list[Path]
    no_face: list[Path]
    unreadable: list[tuple[Path, str]]
    landmarks: str = ""
    whole_image: list[Path] = field(default_factory=list)


def align_folder(src: str | os.PathLike | Iterable, out_dir: str | os.PathLike, size: int = 256, *,
                 landmarker: Landmarker | None = None, fan=None, download: bool = False) -> AlignReport:
    """Align every image of a folder (or a list of paths) into ``out_dir`` as PNG; files with no face or
    that cannot be read are named in one warning each and listed in the report.

    ``landmarker``: default ``make_landmarker("auto", fan=fan, download=download)`` (MediaPipe, else the FAN
    ``fan`` such as ``nets.fan``, else ``wing.ckpt`` from the hub cache or, with ``download``, fetched)."""
    from colab_utils.data.images import ImageLoadError, list_images, load_image

    paths = list_images(src) if isinstance(src, (str, os.PathLike)) else [Path(p) for p in src]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own = landmarker is None
    if own:
        from colab_utils.stargan.landmarks import make_landmarker

        landmarker = make_landmarker("auto", fan=fan, download=download)
    report = AlignReport([], [], [], landmarks=getattr(landmarker, "description", type(landmarker).__name__))
    try:
        for path in tqdm(paths, desc="aligning faces", unit="img"):
            try:
                image = np.asarray(load_image(path))
            except ImageLoadError as exc:
                report.unreadable.append((path, str(exc)))
                warnings.warn(str(exc), stacklevel=2)
                continue
            try:
                face = align_face(image, size, landmarker=landmarker, name=str(path))
            except NoFaceError as exc:
                report.no_face.append(path)
                warnings.warn(str(exc), stacklevel=2)
                continue
            if getattr(getattr(landmarker, "last_box", None), "source", None) == "whole image":
                report.whole_image.append(path)
            target = out / (path.stem + ".png")
            Image.fromarray(face.image).save(target)
            report.aligned.append(target)
    finally:
        if own:
            landmarker.close()
    return report


def _as_rgb_array(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        from colab_utils.data.images import load_image
        image = load_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return image[..., :3]
