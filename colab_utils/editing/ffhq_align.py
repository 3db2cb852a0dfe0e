"""Align a photo the way FFHQ was aligned, so that StyleGAN2 can reconstruct the face, and paste edits back.

The FFHQ recipe (Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative Adversarial
Networks", CVPR 2019, Appendix A; the dataset's alignment script): from the eye centres and the mouth corners
build an oriented square (the *quad*). Its horizontal axis averages the eye-to-eye direction with the
eye-to-mouth direction turned by 90 degrees; its half side is the larger of twice the eye distance and 1.8 times
the eye-to-mouth distance; its centre lies a tenth of the way from the eyes' midpoint to the mouth's. Very large
photos are first shrunk by a whole factor (box filter), the region round the quad is cut out, parts of the quad
that leave the photo are filled by reflection that fades into a blur and then into the photo's median colour,
and the quad is resampled to the generator's resolution.

This template is FFHQ's, not the CelebA-HQ one of :mod:`colab_utils.stargan.align` (StarGAN v2 crops): the two
stay apart. The landmarks and the geometry helpers (:func:`~colab_utils.stargan.landmarks.make_landmarker`,
``warp_affine``, ``paste_back``, ``invert_affine``) are shared. :class:`FFHQFace` keeps the matrix from the photo to
the crop, so :meth:`FFHQFace.paste` puts an edited crop back into the photo with a feathered mask.

Several faces: :func:`find_faces` asks the landmarker again after covering each face it found, and
:func:`align_ffhq` takes the largest (or ``face_index``), saying how many it saw.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from colab_utils.stargan.align import NoFaceError, apply_affine, invert_affine, paste_back, warp_affine

# The recipe's constants (FFHQ alignment).
EYE_SPAN = 2.0          # half side >= EYE_SPAN * eye-to-eye distance
MOUTH_SPAN = 1.8        # half side >= MOUTH_SPAN * eye-to-mouth distance
CENTRE_SHIFT = 0.1      # the centre: eyes' midpoint + CENTRE_SHIFT * (mouth midpoint - eyes' midpoint)
BORDER = 0.1            # extra context cut round the quad (share of its side) before warping
BLUR = 0.02             # blur radius of the padding (share of the quad side)
DETECT_MAX_SIDE = 1600  # landmarks are looked for in a copy at most this large (the crop uses the full photo)
MAX_FACES = 6           # how many faces find_faces looks for at most
UPSCALE_WARNING = 2.0   # warn when the face is enlarged more than this to fill the crop


class TinyFaceError(NoFaceError):
    """The face is too small in the photo to make a crop of the requested size."""


@dataclass
class FFHQFace:
    """One face of a photo, aligned like FFHQ.

    ``image``: the crop (size×size×3 uint8); ``matrix``: 2×3, photo pixel centres -> crop pixel centres;
    ``landmarks``: the five points in the photo (eye centres, nose tip, mouth corners; pixel edges, as the
    landmarkers give them); ``quad``: the four corners of the crop in the photo (top-left, bottom-left,
    bottom-right, top-right); ``photo_size``: (width, height); ``index``/``n_faces``: which face of how many
    (largest first)."""

    image: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    quad: np.ndarray
    photo_size: tuple[int, int]
    index: int = 0
    n_faces: int = 1

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @property
    def inverse(self) -> np.ndarray:
        """2×3, crop pixel centres -> photo pixel centres."""
        return invert_affine(self.matrix)

    @property
    def side(self) -> float:
        """The crop's side measured in photo pixels."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]))

    def crop_landmarks(self) -> np.ndarray:
        """The five landmarks in crop pixel centres."""
        return apply_affine(self.matrix, self.landmarks - 0.5)

    def mask(self, feather: float = 0.08) -> np.ndarray:
        """A soft mask (size×size float32 in [0, 1]) over the face in the crop: see :func:`ffhq_face_mask`."""
        return ffhq_face_mask(self.crop_landmarks(), self.size, feather)

    def paste(self, photo, crop, *, feather: float = 0.08, mask: np.ndarray | None = None) -> np.ndarray:
        """``photo`` (H×W×3 uint8) with ``crop`` (size×size×3 uint8, e.g. an edited face) put back where the face
        was, blended with the feathered face mask; pixels outside the mask are left exactly as they were."""
        photo = np.asarray(photo)
        if photo.shape[1::-1] != tuple(self.photo_size):
            raise ValueError(f"paste: the photo is {photo.shape[1]}x{photo.shape[0]}, the face was aligned in a "
                             f"{self.photo_size[0]}x{self.photo_size[1]} photo")
        crop = np.asarray(crop)
        if crop.shape != (self.size, self.size, 3) or crop.dtype != np.uint8:
            raise ValueError(f"paste: expected a {self.size}x{self.size}x3 uint8 crop, got {crop.shape} {crop.dtype}")
        return paste_back(photo, crop, self.matrix, mask=self.mask(feather) if mask is None else mask)


# ---------------------------------------------------------------------------------------------------------
# Geometry of the recipe
# ---------------------------------------------------------------------------------------------------------

def _check_points(landmarks) -> np.ndarray:
    points = np.asarray(landmarks, np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected five finite landmarks (5×2: eyes, nose tip, mouth corners), got {points.shape}")
    return points


def ffhq_quad(landmarks) -> np.ndarray:
    """The FFHQ crop's corners (4×2: top-left, bottom-left, bottom-right, top-right) from five landmarks, in the
    landmarks' coordinates."""
    p = _check_points(landmarks)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    eye_to_eye, eye_to_mouth = p[1] - p[0], mouth - eyes
    # horizontal axis: eye-to-eye averaged with eye-to-mouth turned a quarter clockwise (down -> right)
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = np.hypot(*x)
    if length < 1e-6:
        raise ValueError("landmarks are degenerate (eyes and mouth coincide)")
    x = x / length * max(EYE_SPAN * np.hypot(*eye_to_eye), MOUTH_SPAN * np.hypot(*eye_to_mouth))
    y = np.array([-x[1], x[0]])                      # a quarter turn counter-clockwise: points down the face
    c = eyes + CENTRE_SHIFT * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_matrix(landmarks, size: int) -> np.ndarray:
    """2×3 matrix taking photo pixel centres to the pixel centres of the ``size`` FFHQ crop (landmarks in pixel
    edges, as the landmarkers give them)."""
    quad = ffhq_quad(landmarks)
    top_left, side = quad[0], np.linalg.norm(quad[3] - quad[0])
    u, v = (quad[3] - quad[0]) / side, (quad[1] - quad[0]) / side
    a = (size / side) * np.stack([u, v])
    # q_edge = a (p_edge - top_left); p_edge = p_centre + 0.5, q_centre = q_edge - 0.5
    return np.hstack([a, (a @ (0.5 - top_left) - 0.5)[:, None]])


def ffhq_face_mask(crop_landmarks, size: int, feather: float = 0.08) -> np.ndarray:
    """A soft ellipse over the face in an FFHQ crop (size×size float32 in [0, 1]), placed from the five landmarks
    in crop pixels: centred between the eyes and the mouth, as wide as 1.15 eye distances on each side and reaching
    from above the brows to below the chin; ``feather`` (share of the crop side) is the width of the soft edge."""
    p = np.asarray(crop_landmarks, np.float64)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    eye_distance, eye_to_mouth = np.hypot(*(p[1] - p[0])), mouth - eyes
    down = eye_to_mouth / max(np.hypot(*eye_to_mouth), 1e-6)
    right = np.array([down[1], -down[0]])
    centre = eyes + 0.45 * eye_to_mouth
    rx, ry = 1.15 * eye_distance, 1.25 * np.hypot(*eye_to_mouth) + 0.55 * eye_distance
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.stack([xx - centre[0], yy - centre[1]], -1)
    r = np.sqrt((d @ right / rx) ** 2 + (d @ down / ry) ** 2)      # 1 on the ellipse
    soft = max(feather * size / min(rx, ry), 1e-6)
    return np.clip((1.0 - r) / soft + 0.5, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Finding faces
# ---------------------------------------------------------------------------------------------------------

def _detection_copy(array: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = array.shape[:2]
    factor = max(h, w) / DETECT_MAX_SIDE
    if factor <= 1:
        return array, 1.0
    small = Image.fromarray(array).resize((round(w / factor), round(h / factor)), Image.BILINEAR)
    return np.asarray(small), w / small.width


def find_faces(image: np.ndarray, landmarker, *, max_faces: int = MAX_FACES) -> list[np.ndarray]:
    """Five landmarks (5×2, pixel edges of ``image``) for every face found, largest first.

    The landmarker finds one face per call; each face found is covered with the photo's median colour and the
    landmarker asked again, until it finds nothing, finds a face it already found, or ``max_faces`` were found.
    Photos larger than :data:`DETECT_MAX_SIDE` are searched in a smaller copy."""
    work, factor = _detection_copy(np.asarray(image))
    work = work.copy()
    fill = tuple(int(v) for v in np.median(work.reshape(-1, 3), axis=0))
    found: list[np.ndarray] = []
    for _ in range(max_faces):
        points = landmarker(work)
        if points is None:
            break
        box = getattr(landmarker, "last_box", None)
        if found and getattr(box, "source", None) == "whole image":
            break                                   # the FAN's last resort, not another face
        points = np.asarray(points, np.float64)
        quad = ffhq_quad(points)
        centre = quad.mean(0)
        if any(np.hypot(*(centre - q.mean(0))) < 0.25 * np.linalg.norm(q[3] - q[0])
               for q in map(ffhq_quad, found)):
            break                                   # the same face again
        found.append(points)
        cover = centre + 0.6 * (quad - centre)
        canvas = Image.fromarray(work)
        ImageDraw.Draw(canvas).polygon([tuple(c) for c in cover], fill=fill)
        work = np.asarray(canvas).copy()
    found = [p * factor for p in found]
    return sorted(found, key=lambda p: -np.linalg.norm(ffhq_quad(p)[3] - ffhq_quad(p)[0]))


# ---------------------------------------------------------------------------------------------------------
# Cutting the crop
# ---------------------------------------------------------------------------------------------------------

def _shrink(array: np.ndarray, matrix: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo reduced by a whole factor (box filter) and the matrix from its pixel centres to the crop's."""
    if factor <= 1:
        return array, matrix
    small = np.asarray(Image.fromarray(array).reduce(factor))
    # reduced pixel j covers photo pixels [j f, (j + 1) f): p_small = (p + 0.5) / f - 0.5
    to_photo = np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]])
    return small, np.hstack([matrix[:, :2] @ to_photo[:, :2], (matrix[:, :2] @ to_photo[:, 2] + matrix[:, 2])[:, None]])


def _padded_region(array: np.ndarray, corners: np.ndarray, border: float, blur: float):
    """The photo region round ``corners`` (pixel centres), extended beyond the photo by reflection that fades
    into a blur and then into the median colour; and the region's top-left offset."""
    h, w = array.shape[:2]
    x0, y0 = np.floor(corners.min(0) - border).astype(int)
    x1, y1 = np.ceil(corners.max(0) + border).astype(int) + 1
    pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))      # top, bottom, left, right
    inner = array[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if inner.size == 0:
        raise NoFaceError("the face lies outside the photo")
    if not any(pads):
        return inner, (x0, y0)
    top, bottom, left, right = pads
    region = np.pad(inner, ((top, bottom), (left, right), (0, 0)), mode="reflect").astype(np.float32)
    rh, rw = region.shape[:2]
    yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
    # how far into the padding each pixel lies (0 at the photo's edge, 1 at the padding's outer edge; negative
    # inside the photo), the largest over the padded sides
    depth = np.full((rh, rw), -np.inf, np.float32)
    for pad, distance in ((top, top - yy), (bottom, yy - (rh - 1 - bottom)), (left, left - xx),
                          (right, xx - (rw - 1 - right))):
        if pad > 0:
            depth = np.maximum(depth, distance / pad)
    blurred = np.asarray(Image.fromarray(region.astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(blur, 1.0))),
                         np.float32)
    region += (blurred - region) * np.clip(3.0 * depth + 1.0, 0.0, 1.0)[..., None]
    median = np.median(inner.reshape(-1, 3), axis=0).astype(np.float32)
    region += (median - region) * np.clip(depth, 0.0, 1.0)[..., None]
    return np.clip(region + 0.5, 0, 255).astype(np.uint8), (x0, y0)


def ffhq_crop(image: np.ndarray, landmarks, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(crop size×size×3 uint8, matrix)``: the FFHQ crop of the face with these landmarks."""
    array = np.asarray(image)
    matrix = ffhq_matrix(landmarks, size)
    side = np.linalg.norm(np.diff(ffhq_quad(landmarks)[[0, 3]], axis=0))
    factor = int(math.floor(side / size / 1.5)) if side > 3 * size else 1     # resampling stays below 1.5x down
    small, small_matrix = _shrink(array, matrix, factor)
    to_small = invert_affine(small_matrix)
    corners = apply_affine(to_small, np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5],
                                               [size - 0.5, -0.5]]))
    small_side = side / factor
    region, (x0, y0) = _padded_region(small, corners, max(BORDER * small_side, 3.0), BLUR * small_side)
    shifted = small_matrix.copy()
    shifted[:, 2] += small_matrix[:, :2] @ np.array([x0, y0], np.float64)
    return warp_affine(region, shifted, size), matrix


def align_ffhq(image, size: int = 256, *, landmarker=None, landmarks=None, face_index: int | None = None,
               min_face: int | None = None, name: str = "the photo") -> FFHQFace:
    """The FFHQ-aligned crop of one face of ``image`` (H×W×3 uint8 array; use :func:`~colab_utils.editing.photo.
    read_photo` for files, PIL images and uploads).

    Landmarks: ``landmarks`` when given, else :func:`find_faces` with ``landmarker`` (default: the backend
    :func:`~colab_utils.stargan.landmarks.make_landmarker` picks: MediaPipe, else the FAN). Of several faces the
    largest is taken (with a warning saying how many there are), or ``face_index`` (0 = largest). A face whose
    crop would span fewer than ``min_face`` photo pixels (default: a quarter of ``size``, at least 16) is refused
    with :class:`TinyFaceError`; one that has to be enlarged more than twice gets a warning. No face:
    :class:`~colab_utils.stargan.align.NoFaceError` naming ``name``."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{name}: expected an H×W×3 uint8 RGB array, got {array.shape} {array.dtype} (read files "
                         f"with colab_utils.editing.photo.read_photo)")
    if landmarks is not None:
        faces = [_check_points(landmarks)]
    else:
        own = landmarker is None
        if own:
            from colab_utils.stargan.landmarks import make_landmarker

            landmarker = make_landmarker("auto")
        try:
            faces = find_faces(array, landmarker)
        finally:
            if own:
                landmarker.close()
    if not faces:
        raise NoFaceError(f"no face found in {name}: use a photo where one face is seen from the front")
    if face_index is None:
        index = 0
        if len(faces) > 1:
            warnings.warn(f"{len(faces)} faces found in {name}; using the largest (face_index=0; pass face_index=1.."
                          f"{len(faces) - 1} for another, ordered by size)", UserWarning, stacklevel=2)
    else:
        index = int(face_index)
        if not 0 <= index < len(faces):
            raise ValueError(f"face_index={face_index} but {name} has {len(faces)} face(s) (0 = the largest)")
    points = faces[index]
    quad = ffhq_quad(points)
    side = float(np.linalg.norm(quad[3] - quad[0]))
    least = max(16, size // 4) if min_face is None else int(min_face)
    if side < least:
        eyes = float(np.hypot(*(points[1] - points[0])))
        raise TinyFaceError(f"the face in {name} is too small: its crop spans {side:.0f} photo pixels (eyes "
                            f"{eyes:.0f} px apart), at least {least} are needed for a {size} px crop; use a "
                            f"closer or larger photo")
    if size / side > UPSCALE_WARNING:
        warnings.warn(f"the face in {name} spans {side:.0f} px and is enlarged {size / side:.1f}x to {size} px: "
                      f"expect a blurry reconstruction", UserWarning, stacklevel=2)
    crop, matrix = ffhq_crop(array, points, size)
    return FFHQFace(crop, matrix, points, quad, (array.shape[1], array.shape[0]), index, len(faces))

