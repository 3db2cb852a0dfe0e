"""Align your own photos like CelebA-HQ, so that a phone selfie works as a StarGAN v2 source or reference.

CelebA-HQ faces (Karras et al. 2018, "Progressive Growing of GANs") are cropped so that the eyes and the
mouth sit at fixed places. We find five landmarks (eye centres, nose tip, mouth corners), fit the
least-squares similarity transform (rotation, uniform scale, shift; Umeyama 1991, "Least-squares
estimation of transformation parameters between two point patterns") onto a mean-landmark template, and
warp. The inverse transform pastes a translated crop back into the original picture or video frame.

Landmarks come from one of two backends:
- ``"fan"``: the 98-point FAN of the official StarGAN v2 release (weights ``wing.ckpt`` through
  ``colab_utils.hub``), run on a face box from MediaPipe face detection or OpenCV 4's Haar cascade;
- ``"mediapipe"``: MediaPipe Face Mesh (468 points) from a ``mediapipe<0.10.30`` wheel, which bundles its
  models, so nothing is downloaded (the offline fallback; ``pip install "colab_utils[faces]"``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
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

# MediaPipe Face Mesh indices of the five points (eye centres averaged over the eye contour).
_MESH_GROUPS = ([33, 133, 159, 145, 160, 144, 158, 153], [362, 263, 386, 374, 385, 380, 387, 373], [1], [61], [291])
# FAN/WFLW 98-point indices: eye contours 60-67 and 68-75, nose tip 54, mouth corners 76 and 82.
_FAN_GROUPS = (list(range(60, 68)), list(range(68, 76)), [54], [76], [82])

Landmarker = Callable[[np.ndarray], "np.ndarray | None"]


class NoFaceError(ValueError):
    """No face was found in a picture."""


def five_points(landmarks: np.ndarray, groups=_MESH_GROUPS) -> np.ndarray:
    """Reduce a dense landmark set (K×2) to the template's five points."""
    return np.stack([landmarks[list(g)].mean(axis=0) for g in groups]).astype(np.float64)


class MediaPipeLandmarks:
    """Five landmarks from MediaPipe Face Mesh; ``video=True`` tracks across consecutive frames."""

    def __init__(self, video: bool = False, min_confidence: float = 0.5):
        try:
            import mediapipe as mp  # type: ignore[import-not-found]
            solutions = mp.solutions
        except (ImportError, AttributeError) as exc:
            raise ImportError(
                "the offline landmark backend needs a mediapipe wheel that bundles its face models "
                "(mediapipe>=0.10.9,<0.10.30, Python <= 3.12): pip install 'colab_utils[faces]'; "
                "or use the FAN backend with weights from colab_utils.hub ('stargan_v2_wing')") from exc
        self._mesh = solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1,
                                                  refine_landmarks=False, min_detection_confidence=min_confidence)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(_as_rgb_array(image))
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        pts = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
        return five_points(pts, _MESH_GROUPS)

    def close(self) -> None:
        self._mesh.close()


def face_box_detector() -> Callable[[np.ndarray], "tuple[float, float, float, float] | None"]:
    """A detector returning the largest face box (x, y, w, h): MediaPipe face detection when its bundled
    model is there, else OpenCV's Haar cascade (shipped with OpenCV 4, as in Colab; OpenCV 5 dropped it)."""
    try:
        import mediapipe as mp  # type: ignore[import-not-found]
        detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

        def mediapipe_box(image):
            result = detector.process(np.ascontiguousarray(image))
            if not result.detections:
                return None
            h, w = image.shape[:2]
            best = max(result.detections, key=lambda d: d.score[0]).location_data.relative_bounding_box
            return best.xmin * w, best.ymin * h, best.width * w, best.height * h
        return mediapipe_box
    except (ImportError, AttributeError):
        pass
    try:
        import cv2  # type: ignore[import-not-found]
        cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(str(cascade_path)) if cascade_path.is_file() else None
    except (ImportError, AttributeError):
        cascade = None
    if cascade is None or cascade.empty():
        raise ImportError("no offline face detector: install mediapipe<0.10.30 (pip install 'colab_utils[faces]') "
                          "or OpenCV 4 (opencv-python-headless<5 ships the Haar cascades)")

    def haar_box(image):
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(32, 32))
        return None if len(boxes) == 0 else tuple(float(v) for v in max(boxes, key=lambda b: b[2] * b[3]))
    return haar_box


class FANLandmarks:
    """Five landmarks from the 98-point FAN, run on a square crop around the detected face box."""

    def __init__(self, fan, device="cpu", crop_scale: float = 1.6, box_detector=None):
        self.box_detector = box_detector or face_box_detector()
        self.fan = fan.to(device).eval()
        self.device = device
        self.crop_scale = crop_scale

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        import torch

        image = _as_rgb_array(image)
        box = self.box_detector(image)
        if box is None:
            return None
        x, y, w, h = box
        cx, cy, side = x + w / 2, y + h / 2, max(w, h) * self.crop_scale
        to_crop = np.array([[256 / side, 0, 128 - cx * 256 / side], [0, 256 / side, 128 - cy * 256 / side]])
        crop = warp_affine(image, to_crop, 256)
        batch = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)
        with torch.no_grad():
            pts = self.fan.get_landmark(batch)[0].cpu().numpy().astype(np.float64)
        return apply_affine(invert_affine(to_crop), five_points(pts, _FAN_GROUPS))


def make_landmarker(backend: str = "auto", *, fan=None, device="cpu", video: bool = False) -> Landmarker:
    """``"fan"`` (needs ``fan``), ``"mediapipe"``, or ``"auto"``: FAN when given, else MediaPipe."""
    if backend == "fan" or (backend == "auto" and fan is not None):
        if fan is None:
            raise ValueError("backend='fan' needs the FAN network (load it with colab_utils.stargan.fan)")
        return FANLandmarks(fan, device=device)
    if backend in ("mediapipe", "auto"):
        return MediaPipeLandmarks(video=video)
    raise ValueError(f"unknown landmark backend {backend!r}: use 'auto', 'fan' or 'mediapipe'")


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
    # PIL's affine transform samples at pixel centres (x + 0.5); shift so integer coordinates are centres.
    a, b, c = inv[0]
    d, e, f = inv[1]
    coeffs = (a, b, c + 0.5 * (a + b) - 0.5, d, e, f + 0.5 * (d + e) - 0.5)
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
    """Crop ``image`` (array, PIL image or path) like CelebA-HQ at ``size``. Raises ``NoFaceError``
    naming the picture when no face is found."""
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
    array = _as_rgb_array(image)
    if landmarks is None:
        landmarker = landmarker or make_landmarker()
        landmarks = landmarker(array)
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
    aligned: list[Path]
    no_face: list[Path]
    unreadable: list[tuple[Path, str]]


def align_folder(src: str | os.PathLike | Iterable, out_dir: str | os.PathLike, size: int = 256, *,
                 landmarker: Landmarker | None = None) -> AlignReport:
    """Align every image of a folder (or a list of paths) into ``out_dir`` as PNG; files with no face or
    that cannot be read are named in one warning each and listed in the report."""
    from colab_utils.data.images import ImageLoadError, list_images, load_image

    paths = list_images(src) if isinstance(src, (str, os.PathLike)) else [Path(p) for p in src]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    landmarker = landmarker or make_landmarker()
    report = AlignReport([], [], [])
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
        target = out / (path.stem + ".png")
        Image.fromarray(face.image).save(target)
        report.aligned.append(target)
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
