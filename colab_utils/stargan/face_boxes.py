"""Where is the face? A box for the FAN landmark network to look into, from whichever detector this machine has.

The FAN (:mod:`colab_utils.stargan.fan`) finds landmarks inside a 256x256 face crop; something must say where
that crop is. Detectors are tried in this order, each only where it can run without a download:

1. MediaPipe face detection (BlazeFace, Bazarevsky et al. 2019), bundled in ``mediapipe<0.10.30`` wheels;
2. OpenCV's Viola-Jones Haar cascade (Viola & Jones, CVPR 2001), shipped in ``cv2.data`` by OpenCV 4 wheels
   (OpenCV 5 wheels dropped the cascade files);
3. dlib's HOG + linear SVM frontal face detector (Dalal & Triggs, CVPR 2005), built into dlib (Colab
   preinstalls dlib);
4. for a picture that is already a face crop (nearly square, like a CelebA-HQ portrait) and in which no
   detector found a face, the whole picture: the box says so (``source == "whole image"``) and a warning
   is given, so it never happens silently.

Each detector frames faces its own way (dlib's box hugs the eyebrows-to-chin area, MediaPipe's reaches the
forehead). :data:`FRAMING` turns each box into the square crop a CelebA-HQ photo shows (the framing StarGAN v2
runs its FAN on), measured on the 56 CelebA-HQ sample photos of the StarGAN v2 release: median crop side in box
sides, and the crop centre's offset from the box centre in box sides.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# detector name -> (crop side / box side, crop centre - box centre in box sides (x, y))
FRAMING = {
    "mediapipe": (1.54, 0.0, -0.125),
    "opencv haar": (1.53, 0.0, -0.08),
    "dlib hog": (1.64, 0.0, -0.20),
    "whole image": (1.0, 0.0, 0.0),
}
DETECTION_MAX_SIDE = 640    # large photos are searched at this size (faster; faces stay well above 40 px)
FACE_CROP_MAX_ASPECT = 1.25  # a picture this close to square may be a face crop (whole-image fallback)


@dataclass(frozen=True)
class FaceBox:
    """A face box in pixels (``x``, ``y`` top-left; ``w``, ``h``) and the detector that found it."""

    x: float
    y: float
    w: float
    h: float
    source: str

    def crop_square(self) -> tuple[float, float, float]:
        """``(centre x, centre y, side)`` of the square crop that frames this face like CelebA-HQ."""
        scale, dx, dy = FRAMING.get(self.source, (1.54, 0.0, -0.1))
        side = max(self.w, self.h)
        return self.x + self.w / 2 + dx * side, self.y + self.h / 2 + dy * side, side * scale


Detector = Callable[[np.ndarray], "tuple[float, float, float, float] | None"]


def _downscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` at most :data:`DETECTION_MAX_SIDE` on its longer side, and the factor back to full size."""
    from PIL import Image

    h, w = image.shape[:2]
    factor = max(h, w) / DETECTION_MAX_SIDE
    if factor <= 1:
        return image, 1.0
    small = Image.fromarray(image).resize((round(w / factor), round(h / factor)), Image.BILINEAR)
    return np.asarray(small), factor


def mediapipe_detector() -> tuple[Detector | None, str]:
    """MediaPipe face detection, or ``(None, why not)``."""
    try:
        import mediapipe as mp  # type: ignore[import-not-found]
    except Exception:
        return None, "mediapipe (not importable)"
    try:
        detection = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    except Exception as exc:  # a release without the bundled models (>= 0.10.30), or a broken install
        return None, f"mediapipe (no bundled face detection: {type(exc).__name__})"

    def detect(image):
        result = detection.process(np.ascontiguousarray(image))
        if not result.detections:
            return None
        h, w = image.shape[:2]
        best = max(result.detections, key=lambda d: d.score[0]).location_data.relative_bounding_box
        return best.xmin * w, best.ymin * h, best.width * w, best.height * h
    return detect, "mediapipe"


def haar_detector() -> tuple[Detector | None, str]:
    """OpenCV's frontal-face Haar cascade, or ``(None, why not)``."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        return None, "OpenCV (not installed)"
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / "haarcascade_frontalface_default.xml" if folder else None
    if path is None or not path.is_file():
        return None, f"OpenCV {getattr(cv2, '__version__', '')} (no Haar cascade files)"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        return None, f"OpenCV (cannot read {path})"

    def detect(image):
        small, factor = _downscaled(image)
        gray = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        if len(boxes) == 0:
            return None
        return tuple(float(v) * factor for v in max(boxes, key=lambda b: b[2] * b[3]))
    return detect, "opencv haar"


def dlib_detector() -> tuple[Detector | None, str]:
    """dlib's HOG frontal face detector (no model file needed), or ``(None, why not)``."""
    try:
        import dlib  # type: ignore[import-not-found]
    except Exception:
        return None, "dlib (not installed)"
    try:
        hog = dlib.get_frontal_face_detector()
    except Exception as exc:
        return None, f"dlib (no frontal face detector: {type(exc).__name__})"

    def detect(image):
        small, factor = _downscaled(image)
        found = list(hog(np.ascontiguousarray(small), 1))  # upsampled once: faces down to ~40 px
        if not found:
            return None
        best = max(found, key=lambda r: r.width() * r.height())
        return (best.left() * factor, best.top() * factor, best.width() * factor, best.height() * factor)
    return detect, "dlib hog"


DETECTORS = (mediapipe_detector, haar_detector, dlib_detector)


class FaceBoxDetector:
    """The largest face box of a picture, from the first detector (in :data:`DETECTORS` order) that finds one.

    ``detectors``: ``(name, callable)`` pairs to use instead of the ones this machine has. When none finds a
    face and the picture is nearly square (``whole_image_fallback``), the whole picture is taken as the face
    crop, with a warning. ``available`` names the detectors in use, ``unavailable`` says why the others are not."""

    def __init__(self, detectors: list[tuple[str, Detector]] | None = None, *, whole_image_fallback: bool = True):
        self.unavailable: list[str] = []
        built = detectors is None
        if built:
            detectors = []
            for build in DETECTORS:
                detect, name = build()
                if detect is None:
                    self.unavailable.append(name)
                else:
                    detectors.append((name, detect))
        self.detectors = list(detectors)
        self.whole_image_fallback = whole_image_fallback
        if built and not self.detectors:
            warnings.warn("no face detector on this machine (missing: " + ", ".join(self.unavailable) + "): only "
                          "pictures that are already face crops are found (pip install dlib-bin, or "
                          "'opencv-python-headless<5', adds one)", UserWarning, stacklevel=2)

    @property
    def available(self) -> list[str]:
        return [name for name, _ in self.detectors]

    def __call__(self, image: np.ndarray) -> FaceBox | None:
        for name, detect in self.detectors:
            box = detect(image)
            if box is not None and box[2] > 1 and box[3] > 1:
                return FaceBox(*(float(v) for v in box), source=name)
        h, w = image.shape[:2]
        if not self.whole_image_fallback or max(h, w) > FACE_CROP_MAX_ASPECT * min(h, w):
            return None
        tried = ", ".join(self.available) or "none available"
        warnings.warn(f"no face detector found a face (tried: {tried}); the nearly square picture is taken as a "
                      f"face crop framed like CelebA-HQ", UserWarning, stacklevel=3)
        side = min(h, w)
        return FaceBox((w - side) / 2, (h - side) / 2, side, side, source="whole image")
