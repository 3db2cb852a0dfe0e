"""Five face landmarks per picture, from whichever backend this machine can run: one chooser for photos and video.

:func:`make_landmarker` picks, per call:

1. **MediaPipe Face Mesh** (Kartynnik et al. 2019, 468 points) when ``mediapipe`` imports and bundles its face
   models (releases before 0.10.30; those have wheels up to Python 3.12 only);
2. else the **FAN** of the StarGAN v2 release (Bulat & Tzimiropoulos 2017, trained with the Adaptive Wing loss
   of Wang et al. 2019 on WFLW's 98 points; :mod:`colab_utils.stargan.fan`): the network passed as ``fan``
   (e.g. ``nets.fan`` of networks loaded with their FAN), else ``wing.ckpt`` already in the
   :mod:`colab_utils.hub` cache, else ``wing.ckpt`` downloaded through the hub when ``download=True``;
3. else a :class:`LandmarkBackendError` that says how to get one on this Python.

The FAN runs as StarGAN v2 runs it: on 256x256 RGB face crops in [-1, 1] framed like CelebA-HQ. A face box
(:mod:`colab_utils.stargan.face_boxes`) places a first crop; the landmarks found there give the CelebA-HQ-aligned
crop, and the FAN looks once more in that one (``refine``). In video the previous frame's landmarks place the
next crop, so the face detector runs only on the first frame and when the face is lost.

Landmark coordinates follow MediaPipe's and the official FAN's convention: pixel ``(i, j)`` covers
``[j, j+1) x [i, i+1)``. :func:`landmark_backend_report` says in one line what this machine will use.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from importlib import metadata

import numpy as np

from colab_utils.stargan.align import (TEMPLATE_5, TEMPLATE_WEIGHTS, _as_rgb_array, alignment_matrix, apply_affine,
                                       invert_affine, similarity_transform, warp_affine)
from colab_utils.stargan.face_boxes import FaceBox, FaceBoxDetector

BACKENDS = ("auto", "fan", "mediapipe")
FAN_CROP = 256                          # the official FAN's input side
WING = "stargan_v2_wing"                # colab_utils.hub name of the StarGAN v2 release's FAN weights
MEDIAPIPE_BUNDLED_BEFORE = (0, 10, 30)  # mediapipe releases from 0.10.30 on need a downloaded .task model

# MediaPipe Face Mesh indices of the five points (eye centres averaged over the eye contour).
MESH_GROUPS = ([33, 133, 159, 145, 160, 144, 158, 153], [362, 263, 386, 374, 385, 380, 387, 373], [1], [61], [291])
# FAN/WFLW 98-point indices: eye contours 60-67 and 68-75, nose tip 54, mouth corners 76 and 82.
FAN_GROUPS = (list(range(60, 68)), list(range(68, 76)), [54], [76], [82])

# A tracked crop still holds the face when its landmarks sit near the template: scale and angle of the fit
# within these bounds, and the crop centre moved by less than this fraction of the crop.
TRACK_SCALE = (0.7, 1.4)
TRACK_MAX_DEGREES = 30.0
TRACK_MAX_SHIFT = 0.15


class LandmarkBackendError(ImportError):
    """No landmark backend can run here; the message says how to get one on this Python. ``reason``: the
    short cause (e.g. why MediaPipe cannot run)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def five_points(landmarks: np.ndarray, groups=MESH_GROUPS) -> np.ndarray:
    """Reduce a dense landmark set (K×2) to the template's five points."""
    return np.stack([landmarks[list(g)].mean(axis=0) for g in groups]).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------
# What this machine has
# ---------------------------------------------------------------------------------------------------------

def _python_version() -> tuple[int, int]:
    return sys.version_info[:2]


def _python() -> str:
    return "{}.{}".format(*_python_version())


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def mediapipe_status() -> tuple[bool, str]:
    """Whether MediaPipe's offline face models can be used, and a phrase saying which release or why not.
    Cheap: mediapipe is not imported."""
    try:
        found = importlib.util.find_spec("mediapipe") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        if _python_version() >= (3, 13):
            return False, f"no mediapipe wheel with bundled face models for Python {_python()}"
        return False, "mediapipe is not installed"
    try:
        version = metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return True, "mediapipe (version unknown)"
    if _release(version) >= MEDIAPIPE_BUNDLED_BEFORE:
        return False, (f"mediapipe {version} has no bundled face models (releases from 0.10.30 on need a "
                       f"downloaded .task file)")
    return True, f"mediapipe {version}"


def _how_to_get_mediapipe() -> str | None:
    """The install line for MediaPipe with bundled models, or None where no such wheel exists."""
    if _python_version() >= (3, 13):
        return None
    return "pip install 'mediapipe>=0.10.9,<0.10.30' (offline: the wheel bundles its face models)"


def cached_fan_weights(verify: bool = True):
    """The path of ``wing.ckpt`` in the :mod:`colab_utils.hub` cache, or None. Never downloads. With
    ``verify=False`` only checks that the file is there (no hashing)."""
    from colab_utils import hub, runtime

    if verify:
        return hub.cached(WING)
    path = runtime.project_dir("downloads", create=False) / hub.resolve(WING).filename
    return path if path.is_file() else None


def _fan_hint() -> str:
    return (f"for the FAN, pass fan=nets.fan (StarGAN v2 networks loaded with their FAN), or fetch the StarGAN v2 "
            f"release's wing.ckpt once with colab_utils.hub.download('{WING}') (CC BY-NC 4.0; found automatically "
            f"afterwards) or make_landmarker(..., download=True)")


def landmark_backend_report() -> str:
    """One line saying which landmark backend :func:`make_landmarker` will use here, e.g. ``"mediapipe 0.10.21
    (offline, bundled models)"`` or ``"FAN (no mediapipe ... for Python 3.13; weights: ...)"``. Cheap and safe to
    call anywhere: imports no backend and never raises."""
    try:
        usable, why = mediapipe_status()
        if usable:
            return f"{why} (offline, bundled models)"
        try:
            cached = cached_fan_weights(verify=False)
        except Exception:  # a report must not fail: an unreadable cache is just "not cached"
            cached = None
        weights = (f"weights: wing.ckpt cached at {cached}" if cached is not None else
                   "weights: nets.fan of a loaded model, or wing.ckpt fetched once through colab_utils.hub")
        return f"FAN ({why}; {weights})"
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


# ---------------------------------------------------------------------------------------------------------
# MediaPipe
# ---------------------------------------------------------------------------------------------------------

class MediaPipeLandmarks:
    """Five landmarks from MediaPipe Face Mesh; ``video=True`` tracks across consecutive frames."""

    name = "mediapipe"

    def __init__(self, video: bool = False, min_confidence: float = 0.5):
        usable, why = mediapipe_status()
        if not usable:
            fix = _how_to_get_mediapipe()
            raise LandmarkBackendError(f"MediaPipe landmarks unavailable: {why}; "
                                       + (f"{fix}, or use the FAN backend ({_fan_hint()})" if fix else
                                          f"use the FAN backend instead ({_fan_hint()})"), why)
        try:
            import mediapipe as mp  # type: ignore[import-not-found]
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not video, max_num_faces=1, refine_landmarks=False,
                min_detection_confidence=min_confidence)
        except Exception as exc:
            reason = f"{why} is installed but its face mesh does not start ({type(exc).__name__}: {exc})"
            raise LandmarkBackendError(f"{reason}; use the FAN backend ({_fan_hint()})", reason) from exc
        self.description = f"{why} (Face Mesh, bundled models)"

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(_as_rgb_array(image))
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        pts = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
        return five_points(pts, MESH_GROUPS)

    def close(self) -> None:
        self._mesh.close()


# ---------------------------------------------------------------------------------------------------------
# FAN
# ---------------------------------------------------------------------------------------------------------

def box_crop_matrix(box: FaceBox, size: int = FAN_CROP) -> np.ndarray:
    """The 2×3 matrix (pixel centres at integer coordinates, as :func:`warp_affine` takes it) of the square
    ``size`` crop that frames ``box`` like CelebA-HQ."""
    cx, cy, side = box.crop_square()
    s = size / side
    # the crop square's centre (cx, cy) lies at (cx - 0.5, cy - 0.5) in pixel-centre coordinates
    return np.array([[s, 0.0, (size - 1) / 2 - s * (cx - 0.5)], [0.0, s, (size - 1) / 2 - s * (cy - 0.5)]])


def near_template(points: np.ndarray, size: int = FAN_CROP) -> bool:
    """True when five points found in a CelebA-HQ-aligned crop of side ``size`` sit where the template puts
    them (so the crop still holds the face it was made for)."""
    try:
        m = similarity_transform(points, TEMPLATE_5 * size, TEMPLATE_WEIGHTS)
    except ValueError:
        return False
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    shift = np.linalg.norm(apply_affine(m, [[size / 2, size / 2]])[0] - size / 2)
    return TRACK_SCALE[0] < scale < TRACK_SCALE[1] and abs(angle) < TRACK_MAX_DEGREES and shift < TRACK_MAX_SHIFT * size


def _device_of(network):
    import torch

    try:
        return next(network.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


class FANLandmarks:
    """Five landmarks from a 98-point FAN (anything with ``get_landmark(images [B,3,256,256] in [-1, 1])``
    returning [B, 98, 2] points in crop pixels), run on CelebA-HQ-framed crops on the FAN's own device.

    ``box_detector``: where a first crop comes from (default :class:`FaceBoxDetector`). ``refine``: how many
    more looks in the crop aligned by the last landmarks. ``video``: place each crop from the previous frame's
    landmarks and detect afresh only when they leave the template (:func:`near_template`). After a call,
    ``last_box`` is the face box used (None when tracking placed the crop); ``detections`` counts the calls
    that ran the detector."""

    name = "fan"

    def __init__(self, fan, *, video: bool = False, box_detector=None, refine: int = 1, source: str = "FAN"):
        if not callable(getattr(fan, "get_landmark", None)):
            raise TypeError(f"fan must be a FAN network with get_landmark() (nets.fan, or "
                            f"colab_utils.stargan.fan.load_fan('wing.ckpt')), got {type(fan).__name__}")
        self.fan = fan
        self.video = video
        self.refine = int(refine)
        self.box_detector = box_detector if box_detector is not None else FaceBoxDetector()
        names = getattr(self.box_detector, "available", None)
        boxes = "a custom detector" if names is None else ", ".join(names) or "no detector"
        if getattr(self.box_detector, "whole_image_fallback", False):
            boxes += ", else the whole picture if it is a face crop"
        self.description = f"{source}; face boxes: {boxes}"
        self.last_box: FaceBox | None = None
        self.calls = 0
        self.detections = 0
        self._track: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the tracked face (the next call detects afresh)."""
        self._track = None

    def close(self) -> None:
        self.reset()

    def landmarks_in(self, image: np.ndarray, matrix: np.ndarray):
        """The FAN's five points in the crop ``warp_affine(image, matrix, 256)``: ``(in image, in crop)``, or
        ``(None, None)`` when they are degenerate."""
        import torch

        crop = warp_affine(image, matrix, FAN_CROP)
        batch = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        with torch.no_grad():
            out = self.fan.get_landmark(batch.to(_device_of(self.fan)))
        points = np.asarray(out[0].detach().float().cpu().numpy() if torch.is_tensor(out) else out[0], np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] <= max(max(g) for g in FAN_GROUPS):
            raise ValueError(f"the FAN returned landmarks shaped {points.shape}; expected 98 WFLW points (98, 2)")
        in_crop = five_points(points, FAN_GROUPS)
        if not np.isfinite(in_crop).all() or np.ptp(in_crop, axis=0).max() < 1e-3:
            return None, None
        # crop pixel edges -> centres, back through the warp, centres -> edges
        return apply_affine(invert_affine(matrix), in_crop - 0.5) + 0.5, in_crop

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        image = _as_rgb_array(image)
        self.calls += 1
        if self.video and self._track is not None:
            points, in_crop = self.landmarks_in(image, alignment_matrix(self._track, FAN_CROP))
            self.last_box = None
            if points is not None and near_template(in_crop):
                self._track = points
                return points
            self._track = None                      # lost: find the face again
        self.detections += 1
        self.last_box = box = self.box_detector(image)
        if box is None:
            return None
        points, _ = self.landmarks_in(image, box_crop_matrix(box))
        if points is None:
            return None
        for _ in range(self.refine):
            try:
                matrix = alignment_matrix(points, FAN_CROP)
            except ValueError:
                break
            better, in_crop = self.landmarks_in(image, matrix)
            if better is None or not near_template(in_crop):
                break
            points = better
        if self.video:
            self._track = points
        return points


# ---------------------------------------------------------------------------------------------------------
# The chooser
# ---------------------------------------------------------------------------------------------------------

def _load_fan_weights(device, download: bool):
    """``(FAN loaded from wing.ckpt, its path)`` from the hub cache (or a download when allowed), else None."""
    from colab_utils.stargan.fan import load_fan

    path = cached_fan_weights()
    if path is None and download:
        from colab_utils import hub

        path = hub.download(WING)
    if path is None:
        return None
    return load_fan(path, device=device or "cpu"), path


def make_landmarker(backend: str = "auto", *, fan=None, device=None, video: bool = False, download: bool = False,
                    box_detector=None):
    """A landmarker: ``landmarker(image HxWx3 uint8) -> five points (5×2) or None`` with ``name``
    (``"mediapipe"`` or ``"fan"``), ``description`` and ``close()``.

    ``backend``: ``"auto"`` (MediaPipe when it can run, else the FAN), ``"mediapipe"`` or ``"fan"``. The FAN is
    ``fan`` when given (e.g. ``nets.fan``), else ``wing.ckpt`` from the :mod:`colab_utils.hub` cache, else
    downloaded when ``download=True``; ``device`` is where a FAN loaded here runs (a given one stays where it
    is). ``video``: consecutive frames of one clip (tracking). ``box_detector``: a
    :class:`~colab_utils.stargan.face_boxes.FaceBoxDetector` (or any ``image -> FaceBox | None``) for the FAN.
    Raises :class:`LandmarkBackendError` saying how to get a backend when none can run."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown landmark backend {backend!r}: use {', '.join(map(repr, BACKENDS))}")
    if backend == "mediapipe":
        return MediaPipeLandmarks(video=video)
    why_not_mediapipe = None
    if backend == "auto":
        try:
            return MediaPipeLandmarks(video=video)
        except LandmarkBackendError as exc:
            why_not_mediapipe = exc.reason
    if fan is not None:
        return FANLandmarks(fan, video=video, box_detector=box_detector, source="FAN (the network passed in)")
    loaded = _load_fan_weights(device, download)
    if loaded is not None:
        network, path = loaded
        return FANLandmarks(network, video=video, box_detector=box_detector, source=f"FAN (wing.ckpt at {path})")
    fix = _how_to_get_mediapipe() if backend == "auto" else None
    reason = f"{why_not_mediapipe}, and " if why_not_mediapipe else ""
    raise LandmarkBackendError(
        f"no face landmark backend: {reason}no FAN was given and wing.ckpt is not in the colab_utils.hub cache. "
        + (f"Either {fix}; or, {_fan_hint()}." if fix else
           f"To get it: {_fan_hint()}." if backend == "fan" else f"On Python {_python()} use the FAN: {_fan_hint()}."))
