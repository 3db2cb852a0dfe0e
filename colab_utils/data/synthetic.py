"""Procedural cartoon faces with a label map per part: training data and test material that needs no download.

A face is a handful of closed-form shapes (ellipses, arcs, rounded boxes) drawn on the pixel grid with numpy.
Every shape is a signed distance ``d`` (negative inside, in the face's own units); a pixel is covered by
``clip(0.5 - d / pixel, 0, 1)`` of the shape (analytic anti-aliasing, no supersampling) and carries the
shape's label where ``d < 0``, i.e. where that coverage passes one half. Later shapes paint over earlier ones,
so the label map covers the whole image and agrees with what the picture shows. Shapes that would fall below
about one pixel are widened to it, so every part of ``PARTS`` stays in the label map down to 32 px.

All random choices of a face live in :class:`FaceParams`, drawn from one seed by :func:`sample_face_params`;
:func:`render_face` is a pure function of those parameters, the size and a pose (shift, yaw, roll, scale,
mouth opening), so the same seed gives the same bytes. The two ``STYLES`` differ in colour (fair skin, blond
hair and a cool background against darker skin, dark hair and a warm background), which gives StarGAN v2
two domains whose mean colours are far apart.

Run ``python -m colab_utils.data.synthetic sheet.png [classic|portrait]`` for a contact sheet of faces beside
their label maps.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

PARTS: tuple[str, ...] = ("background", "hair", "skin", "brows", "eyes", "nose", "mouth")
BACKGROUND, HAIR, SKIN, BROWS, EYES, NOSE, MOUTH = range(len(PARTS))
STYLES: tuple[str, ...] = ("fair_blond", "dark_brunette")
HAIR_CUTS: tuple[str, ...] = ("short", "bob", "long")
PRESETS: tuple[str, ...] = ("classic", "portrait")
BACKGROUNDS: tuple[str | None, ...] = (None, "studio")   # None: the preset's own backgrounds
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp")

RGB = tuple[int, int, int]

# Colour families. Each entry is a base colour; a face jitters it a little.
_SKIN = {
    "fair_blond": [(250, 224, 206), (243, 210, 186), (236, 200, 176), (248, 216, 192)],
    "dark_brunette": [(160, 106, 72), (134, 86, 58), (112, 72, 48), (176, 122, 86)],
}
_HAIR = {
    "fair_blond": [(236, 206, 128), (222, 184, 96), (242, 222, 164), (212, 168, 90)],
    "dark_brunette": [(44, 30, 24), (28, 22, 20), (72, 46, 30), (58, 36, 26)],
}
_BACKGROUND = {  # (top, bottom) pairs
    "fair_blond": [((158, 196, 232), (92, 132, 190)), ((168, 214, 214), (88, 150, 168)),
                   ((186, 186, 226), (112, 116, 176)), ((196, 214, 228), (120, 146, 174))],
    "dark_brunette": [((246, 192, 112), (214, 118, 66)), ((236, 150, 108), (176, 74, 58)),
                      ((244, 210, 134), (206, 142, 70)), ((232, 170, 140), (180, 96, 84))],
}
_STUDIO = ((176, 186, 200), (112, 124, 146))   # the "studio" backdrop (top, bottom)
_IRIS = {
    "fair_blond": [(74, 128, 196), (84, 150, 112), (110, 140, 170)],
    "dark_brunette": [(96, 58, 32), (62, 40, 26), (120, 80, 40)],
}
# Portrait preset: eyes, brows and lips take colours of their own, independent of the skin and hair family.
_IRIS_ANY = [(64, 120, 210), (40, 150, 90), (110, 66, 30), (60, 40, 26), (140, 150, 160), (190, 130, 40),
             (120, 70, 170), (30, 170, 170)]
_BROW_ANY = [(20, 16, 14), (70, 44, 28), (150, 110, 60), (170, 80, 40), (120, 120, 120), (40, 30, 60)]
_LIPS_ANY = [(232, 150, 150), (200, 40, 56), (130, 24, 40), (150, 70, 140), (240, 110, 80), (150, 90, 70),
             (70, 40, 90)]
_SHIRT = [(60, 70, 110), (150, 40, 50), (40, 110, 80), (220, 220, 215), (90, 90, 95), (200, 150, 60)]
_LIP_TINT = np.array([0.86, 0.58, 0.60], np.float32)


@dataclass(frozen=True)
class FaceParams:
    """Every random choice behind one face. Lengths are in image half-widths (the image spans [-1, 1]) and,
    except ``head_x``/``head_y``, measured from the head's centre; ``y`` grows downwards. Colours are RGB."""

    seed: int
    style: str                 # one of STYLES, or "mixed" when each colour came from either family
    # head, ears, neck, clothes
    head_x: float
    head_y: float
    head_w: float              # half-width of the head oval
    head_h: float              # half-height of the head oval
    jaw: float                 # how much the oval narrows towards the chin (0 = ellipse)
    skin: RGB
    blush: float
    ear_w: float
    ear_h: float
    neck_w: float
    shirt: RGB
    # eyes and brows
    eye_y: float
    eye_dx: float              # half the distance between the eye centres
    eye_w: float               # half-width of an eye
    eye_h: float               # half-height of an eye
    eye_tilt: float            # radians, outer corners up when positive
    iris: RGB
    iris_r: float              # iris radius as a fraction of the eye's half-height
    gaze_x: float
    gaze_y: float
    brow_gap: float            # from eye centre up to the brow's centre line
    brow_w: float
    brow_thick: float
    brow_arch: float
    brow_tilt: float
    brow_color: RGB
    # nose and mouth
    nose_y: float
    nose_w: float
    nose_h: float
    mouth_y: float
    mouth_w: float
    lip_top: float
    lip_bottom: float
    smile: float
    lips: RGB
    # hair
    hair_cut: str              # one of HAIR_CUTS
    hair: RGB
    hair_volume: float         # how far the hair stands off the head
    hairline: float            # height of the hairline at the centre of the forehead
    temple: float              # how far the hairline drops towards the temples
    part_slope: float          # a side sweep of the fringe
    hair_length: float         # bottom of long hair
    strands: float             # angular frequency of the strand pattern
    # background and light
    bg_top: RGB
    bg_bottom: RGB
    bg_angle: float
    light_x: float
    light_y: float
    # framing and expression (the "portrait" preset sets them; the "classic" defaults draw the original faces)
    zoom: float = 1.0          # the face's size in the frame, multiplying render_face's ``scale``
    mouth_gap: float = 0.0     # the face's own mouth opening, in [0, 1]; render_face's ``mouth_open`` adds to it
    nose_shade: float = 0.45   # opacity of the shadow down the nose's side


# ----------------------------------------------------------------------------------------------- sampling

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_style(style) -> str | None:
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be None or one of {STYLES}, got {style!r}")
    return style


def _check_size(size) -> int:
    if (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 32 <= size <= 1024
            or size & (size - 1)):
        raise ValueError(f"size must be a power of two from 32 to 1024 (32, 64, ..., 1024), got {size!r}")
    return int(size)


def _child_seed(*keys: int) -> int:
    """A seed for one face of a set, independent of the other faces and of other sets' seeds."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _jitter(rng: np.random.Generator, color, amount: float) -> RGB:
    c = np.asarray(color, np.float64) * rng.uniform(1 - amount, 1 + amount) + rng.uniform(-6, 6, 3)
    return tuple(int(x) for x in np.clip(np.round(c), 0, 255))


def _pick(rng: np.random.Generator, palette: dict, family: str):
    options = palette[family]
    return options[int(rng.integers(len(options)))]


def _check_preset(preset) -> str:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    return preset


def sample_face_params(seed: int, style: str | None = None, *, preset: str = "classic",
                       background: str | None = None) -> FaceParams:
    """Draw every choice of one face from ``seed``. ``style`` picks the colour family (one of ``STYLES``);
    ``None`` lets each colour come from either family.

    ``preset="classic"``: a head and shoulders in the middle of the frame, the colour family deciding skin,
    hair, eyes and background together (the faces of the video clips and the StyleGAN2 smoke runs).
    ``preset="portrait"``: an aligned close-up that fills the frame as FFHQ / CelebA-HQ crops do, whose eyes,
    brows, nose and mouth vary strongly and independently of each other and of skin, hair and background (iris
    colour and size, eye shape, brow thickness and colour, nose width and shading, lip colour, mouth width and
    opening); the family decides skin and hair only, the background comes from either family. Made for the
    local-editing generator, whose catalog must find each part, and for the StarGAN v2 demo, whose domains
    must differ in the face's colours alone.

    ``background="studio"``: every face in front of the same grey-blue backdrop, its brightness and tint
    jittered a little (as in a photo studio), the rest of the face unchanged. A translator trained on such faces
    has no background variety to carry in its style code, so it learns to keep the source's.
    """
    seed = _check_seed(seed)
    style = _check_style(style)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    rng = np.random.default_rng(seed)
    params = _sample_portrait(seed, style, rng) if _check_preset(preset) == "portrait" else \
        _sample_classic(seed, style, rng)
    if background == "studio":
        studio = np.random.default_rng([seed, 7])      # its own stream: the face's other choices stay the same
        params = replace(params, bg_top=_jitter(studio, _STUDIO[0], 0.06),
                         bg_bottom=_jitter(studio, _STUDIO[1], 0.06), bg_angle=float(studio.uniform(-0.2, 0.2)))
    return params


def _sample_classic(seed: int, style: str | None, rng: np.random.Generator) -> FaceParams:
    u = rng.uniform

    families = [style] * 4 if style else [STYLES[int(i)] for i in rng.integers(len(STYLES), size=4)]
    skin_family, hair_family, iris_family, bg_family = families
    skin = _jitter(rng, _pick(rng, _SKIN, skin_family), 0.04)
    hair = _jitter(rng, _pick(rng, _HAIR, hair_family), 0.06)
    iris = _jitter(rng, _pick(rng, _IRIS, iris_family), 0.1)
    top, bottom = _pick(rng, _BACKGROUND, bg_family)
    bg_top, bg_bottom = _jitter(rng, top, 0.05), _jitter(rng, bottom, 0.05)
    shirt = _jitter(rng, _SHIRT[int(rng.integers(len(_SHIRT)))], 0.1)
    lips = tuple(int(x) for x in np.clip(np.asarray(skin) * _LIP_TINT * u(0.9, 1.05) + (30, 0, 5), 0, 255))
    brow_color = tuple(int(x) for x in np.clip(np.asarray(hair) * u(0.45, 0.7), 0, 255))

    head_w, head_h = u(0.42, 0.48), u(0.55, 0.61)
    k = head_h / 0.5                                          # features scale with the head
    eye_w = u(0.17, 0.21) * head_w
    brow_thick = u(0.022, 0.034) * k
    eye_y = u(-0.07, -0.01) * k
    brow_gap = u(0.09, 0.115) * k
    hairline_max = eye_y - brow_gap - brow_thick - 0.06 * k   # the fringe never reaches the brows
    return FaceParams(
        seed=seed, style=style or "mixed",
        head_x=u(-0.04, 0.04), head_y=u(-0.05, 0.03), head_w=head_w, head_h=head_h, jaw=u(0.1, 0.3),
        skin=skin, blush=u(0.0, 0.5), ear_w=u(0.055, 0.075) * k, ear_h=u(0.09, 0.12) * k,
        neck_w=u(0.36, 0.44) * head_w, shirt=shirt,
        eye_y=eye_y, eye_dx=u(0.38, 0.45) * head_w, eye_w=eye_w, eye_h=u(0.5, 0.68) * eye_w,
        eye_tilt=u(-0.12, 0.15), iris=iris, iris_r=u(0.85, 1.1), gaze_x=u(-0.25, 0.25), gaze_y=u(-0.15, 0.15),
        brow_gap=brow_gap, brow_w=u(1.0, 1.2) * eye_w, brow_thick=brow_thick, brow_arch=u(0.008, 0.03) * k,
        brow_tilt=u(-0.12, 0.12), brow_color=brow_color,
        nose_y=u(0.12, 0.17) * k, nose_w=u(0.045, 0.062) * k, nose_h=u(0.05, 0.07) * k,
        mouth_y=u(0.28, 0.32) * k, mouth_w=u(0.12, 0.16) * k, lip_top=u(0.02, 0.03) * k,
        lip_bottom=u(0.026, 0.04) * k, smile=u(-0.006, 0.03) * k, lips=lips,
        hair_cut=HAIR_CUTS[int(rng.integers(len(HAIR_CUTS)))], hair=hair, hair_volume=u(0.04, 0.1) * k,
        hairline=min(u(-0.34, -0.24) * k, hairline_max), temple=u(0.05, 0.14) * k, part_slope=u(-0.25, 0.25),
        hair_length=u(0.7, 0.95), strands=float(rng.integers(14, 30)),
        bg_top=bg_top, bg_bottom=bg_bottom, bg_angle=u(-0.5, 0.5),
        light_x=u(-0.7, 0.7), light_y=u(-0.8, -0.3),
    )


def _sample_portrait(seed: int, style: str | None, rng: np.random.Generator) -> FaceParams:
    """The "portrait" preset of :func:`sample_face_params`: the head fixed in the frame (eyes at the same place
    in every face, as face alignment leaves them), every facial part drawn on its own."""
    u = rng.uniform
    skin_family, hair_family, bg_family = [style] * 2 + [None] if style else [None] * 3
    skin_family, hair_family, bg_family = (f or STYLES[int(rng.integers(len(STYLES)))]
                                           for f in (skin_family, hair_family, bg_family))
    skin = _jitter(rng, _pick(rng, _SKIN, skin_family), 0.05)
    hair = _jitter(rng, _pick(rng, _HAIR, hair_family), 0.08)
    top, bottom = _pick(rng, _BACKGROUND, bg_family)
    bg_top, bg_bottom = _jitter(rng, top, 0.08), _jitter(rng, bottom, 0.08)
    shirt = _jitter(rng, _SHIRT[int(rng.integers(len(_SHIRT)))], 0.1)
    iris = _jitter(rng, _IRIS_ANY[int(rng.integers(len(_IRIS_ANY)))], 0.12)
    brow_color = _jitter(rng, _BROW_ANY[int(rng.integers(len(_BROW_ANY)))], 0.12)
    lips = _jitter(rng, _LIPS_ANY[int(rng.integers(len(_LIPS_ANY)))], 0.1)

    head_w, head_h = u(0.43, 0.47), u(0.56, 0.6)
    k = head_h / 0.5
    eye_w = u(0.19, 0.27) * head_w                            # small to large eyes
    eye_h = u(0.45, 0.8) * eye_w                             # narrow almond to round
    eye_y = u(-0.075, -0.055) * k
    brow_thick = u(0.03, 0.075) * k                           # pencil line to bushy
    brow_gap = eye_h + brow_thick / 2 + u(0.025, 0.05) * k    # the brow never touches the eye
    hairline_max = eye_y - brow_gap - brow_thick - 0.05 * k
    wide_open = rng.uniform() < 0.5
    return FaceParams(
        seed=seed, style=style or "mixed",
        head_x=u(-0.01, 0.01), head_y=u(0.0, 0.02), head_w=head_w, head_h=head_h, jaw=u(0.12, 0.28),
        skin=skin, blush=u(0.0, 0.4), ear_w=u(0.055, 0.07) * k, ear_h=u(0.09, 0.11) * k,
        neck_w=u(0.38, 0.44) * head_w, shirt=shirt,
        eye_y=eye_y, eye_dx=u(0.41, 0.44) * head_w, eye_w=eye_w, eye_h=eye_h,
        eye_tilt=u(-0.2, 0.25), iris=iris, iris_r=u(0.6, 1.2), gaze_x=u(-0.2, 0.2), gaze_y=u(-0.1, 0.1),
        brow_gap=brow_gap, brow_w=u(0.95, 1.3) * eye_w, brow_thick=brow_thick, brow_arch=u(0.0, 0.04) * k,
        brow_tilt=u(-0.15, 0.15), brow_color=brow_color,
        nose_y=u(0.13, 0.16) * k, nose_w=u(0.04, 0.095) * k, nose_h=u(0.05, 0.085) * k,
        mouth_y=u(0.3, 0.33) * k, mouth_w=u(0.11, 0.2) * k, lip_top=u(0.02, 0.04) * k,
        lip_bottom=u(0.025, 0.055) * k, smile=u(-0.01, 0.035) * k, lips=lips,
        hair_cut=HAIR_CUTS[int(rng.integers(len(HAIR_CUTS)))], hair=hair, hair_volume=u(0.04, 0.1) * k,
        hairline=min(u(-0.36, -0.28) * k, hairline_max), temple=u(0.05, 0.12) * k, part_slope=u(-0.25, 0.25),
        hair_length=u(0.8, 1.0), strands=float(rng.integers(14, 30)),
        bg_top=bg_top, bg_bottom=bg_bottom, bg_angle=u(-0.5, 0.5),
        light_x=u(-0.5, 0.5), light_y=u(-0.8, -0.4),
        zoom=u(1.48, 1.54), mouth_gap=u(0.3, 0.8) if wide_open else 0.0, nose_shade=u(0.1, 0.9),
    )


# ----------------------------------------------------------------------------------------------- faces from numbers

# Which fields of FaceParams draw which part (the rest, head shape, framing and light, belong to no part).
PART_FIELDS: dict[str, tuple[str, ...]] = {
    "background": ("bg_top", "bg_bottom", "bg_angle", "shirt"),
    "hair": ("hair_cut", "hair", "hair_volume", "hairline", "temple", "part_slope", "hair_length", "strands"),
    "skin": ("skin", "blush"),
    "brows": ("brow_w", "brow_thick", "brow_arch", "brow_tilt", "brow_color"),
    "eyes": ("eye_y", "eye_dx", "eye_w", "eye_h", "eye_tilt", "iris", "iris_r", "gaze_x", "gaze_y"),
    "nose": ("nose_y", "nose_w", "nose_h", "nose_shade"),
    "mouth": ("mouth_y", "mouth_w", "lip_top", "lip_bottom", "smile", "lips", "mouth_gap"),
}
# The samplers draw at most this many numbers per face (the portrait preset about 86).
UNIFORMS_PER_FACE = 96


class _UniformStream:
    """Stands in for numpy's Generator in the samplers: hands out given numbers in [0, 1) in order, so a face
    becomes a function of a vector (a latent code) instead of a seed."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float64).ravel()
        if self.values.size and not (np.all(self.values >= 0) and np.all(self.values <= 1)):
            raise ValueError("face_params_from_uniforms: every number must lie in [0, 1]")
        self.used = 0

    def _take(self, n: int) -> np.ndarray:
        if self.used + n > self.values.size:
            raise ValueError(f"face_params_from_uniforms: the sampler needs more than the {self.values.size} "
                             f"numbers given (pass {UNIFORMS_PER_FACE})")
        out = self.values[self.used:self.used + n]
        self.used += n
        return out

    def uniform(self, low: float = 0.0, high: float = 1.0, size=None):
        u = self._take(1 if size is None else int(np.prod(size)))
        v = low + (high - low) * u
        return float(v[0]) if size is None else v.reshape(size)

    def integers(self, low: int, high: int | None = None, size=None):
        low, high = (0, low) if high is None else (low, high)
        u = self._take(1 if size is None else int(np.prod(size)))
        v = low + np.minimum(np.floor(u * (high - low)), high - low - 1).astype(np.int64)
        return int(v[0]) if size is None else v.reshape(size)


def face_params_from_uniforms(uniforms, *, preset: str = "portrait", style: str | None = None) -> FaceParams:
    """The face :func:`sample_face_params` would draw if its random numbers were ``uniforms`` (values in
    [0, 1], taken in order; :data:`UNIFORMS_PER_FACE` always suffice). Nearby vectors give similar faces,
    except where a number picks one of several choices (a palette colour, a hair cut)."""
    rng = _UniformStream(uniforms)
    style = _check_style(style)
    sampler = _sample_portrait if _check_preset(preset) == "portrait" else _sample_classic
    return sampler(0, style, rng)


def mix_face_params(target: FaceParams, reference: FaceParams, parts) -> FaceParams:
    """``target`` wearing the ``parts`` (names from :data:`PART_FIELDS`, or one name) of ``reference``: the
    ground truth of a part transfer. The brows keep their own gap above whichever eyes the face ends up with,
    and the hairline stays above the brows, as :func:`sample_face_params` draws them."""
    parts = [parts] if isinstance(parts, str) else list(parts)
    unknown = [p for p in parts if p not in PART_FIELDS]
    if unknown:
        raise ValueError(f"mix_face_params: unknown parts {unknown}; parts are {list(PART_FIELDS)}")

    def brow_space(p: FaceParams) -> float:
        return p.brow_gap - p.eye_h - p.brow_thick / 2

    fields = {f: getattr(reference, f) for part in parts for f in PART_FIELDS[part]}
    mixed = replace(target, **fields)
    brow_source = reference if "brows" in parts else target
    gap = mixed.eye_h + mixed.brow_thick / 2 + brow_space(brow_source)
    k = mixed.head_h / 0.5
    hairline = min(mixed.hairline, mixed.eye_y - gap - mixed.brow_thick - 0.05 * k)
    return replace(mixed, brow_gap=gap, hairline=hairline)


# ----------------------------------------------------------------------------------------------- shapes

def _ellipse(u, v, cx, cy, a, b, angle: float = 0.0):
    """Approximate signed distance to an ellipse: ``(r - 1) / |grad r|`` for the ellipse's radius ``r``,
    exact on the outline to first order, which is all the anti-aliasing needs."""
    x, y = u - cx, v - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        x, y = c * x + s * y, -s * x + c * y
    x, y = x / a, y / b
    r = np.sqrt(x * x + y * y)
    g = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    return (r - 1) * np.divide(r, g, out=np.full_like(r, min(a, b)), where=g > 1e-12)


def _box(u, v, cx, cy, hw, hh, radius):
    """Signed distance to a box of half-size (hw, hh) with corners rounded by ``radius``."""
    qx = np.abs(u - cx) - hw + radius
    qy = np.abs(v - cy) - hh + radius
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def _sphere_light(nx, ny, light) -> np.ndarray:
    """Lambert shading of a bulge whose outline normal is (nx, ny); ``light`` is a unit 3-vector."""
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
    return np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)


def _shade(color, factor) -> np.ndarray:
    return np.asarray(color, np.float32) * np.asarray(factor, np.float32)[..., None]


class _Frame:
    """The pixel grid in the head's own coordinates (centred on the head, unscaled, unrotated)."""

    def __init__(self, size: int, centre: tuple[float, float], scale: float, roll: float):
        axis = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
        self.X, self.Y = np.meshgrid(axis, axis)
        self.size, self.centre, self.scale = size, centre, scale
        self.cos, self.sin = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        x0, y0 = (self.X - centre[0]) / scale, (self.Y - centre[1]) / scale
        self.u, self.v = self.cos * x0 + self.sin * y0, -self.sin * x0 + self.cos * y0
        self.px = 2.0 / size / scale  # one pixel in head units

    def region(self, cx: float, cy: float, radius: float):
        """The window of pixels within ``radius`` (head units) of the head point (cx, cy): its slices and
        the head coordinates there. Small parts are computed only in their window."""
        x = self.centre[0] + self.scale * (self.cos * cx - self.sin * cy)
        y = self.centre[1] + self.scale * (self.sin * cx + self.cos * cy)
        r = radius * self.scale + 2 * self.px * self.scale
        half = self.size / 2

        def span(c):
            lo = int(np.clip(math.floor((c - r + 1) * half), 0, self.size))
            hi = int(np.clip(math.ceil((c + r + 1) * half), 0, self.size))
            return slice(lo, max(lo, hi))

        window = (span(y), span(x))
        return window, self.u[window], self.v[window]


class _Canvas:
    """An RGB float image and a label map that shapes are painted into, back to front. A shape covers
    ``clip(0.5 - d / pixel, 0, 1)`` of a pixel and gives it its label where ``d < 0``."""

    def __init__(self, background: np.ndarray, px: float):
        self.image = background
        self.labels = np.zeros(background.shape[:2], np.uint8)
        self.px = px

    def paint(self, d, color, label: int | None = None, opacity: float = 1.0, window=None):
        image = self.image if window is None else self.image[window]
        labels = self.labels if window is None else self.labels[window]
        alpha = np.clip(0.5 - d * (1.0 / self.px), 0.0, 1.0)
        if label is not None:
            labels[d < 0] = label
        rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
        if not rows.size:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        color = np.asarray(color, np.float32)
        if color.ndim == 3:
            color = color[box]
        target = image[box]
        target += (alpha[box] * opacity)[..., None] * (color - target)


# ----------------------------------------------------------------------------------------------- rendering

def render_face(params: FaceParams, size: int, *, shift=(0.0, 0.0), yaw: float = 0.0, roll: float = 0.0,
                scale: float = 1.0, mouth_open: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face. Returns ``(image, labels)``: uint8 ``[size, size, 3]`` and uint8 ``[size, size]`` with
    values indexing ``PARTS`` (clothes count as background, ears and neck as skin).

    Pose: ``shift=(dx, dy)`` moves the face by fractions of the image (right, down); ``yaw`` in [-1, 1] turns
    the head (features slide towards +x for positive yaw, the face narrows, the far eye foreshortens);
    ``roll`` in degrees turns the figure (head and shoulders) clockwise on screen about the head's centre;
    ``scale`` zooms about the head's centre; ``mouth_open`` in [0, 1] opens the mouth.
    """
    size = _check_size(size)
    if not isinstance(params, FaceParams):
        raise TypeError(f"params must be a FaceParams (from sample_face_params), got {type(params).__name__}")
    if not -1.0 <= yaw <= 1.0:
        raise ValueError(f"yaw must be in [-1, 1], got {yaw}")
    if not 0.0 <= mouth_open <= 1.0:
        raise ValueError(f"mouth_open must be in [0, 1], got {mouth_open}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    p = params
    frame = _Frame(size, (p.head_x + 2.0 * shift[0], p.head_y + 2.0 * shift[1]), scale * p.zoom, roll)
    mouth_open = p.mouth_gap + (1.0 - p.mouth_gap) * mouth_open
    light = np.array([p.light_x, p.light_y, 1.0], np.float32)
    light /= np.linalg.norm(light)
    head_w = p.head_w * (1 - 0.12 * abs(yaw))

    canvas = _Canvas(_background(p, frame.X, frame.Y), frame.px)
    shirt = _shirt(canvas, p, frame, head_w)
    cap = _back_hair(canvas, p, frame, head_w, yaw, light)
    _neck(canvas, p, frame, shirt)
    skin = _head(canvas, p, frame, head_w, yaw, light)
    _fringe(canvas, p, frame, head_w, cap, light)
    _brows(canvas, p, frame, yaw)
    _eyes(canvas, p, frame, yaw)
    _nose(canvas, p, frame, yaw, skin, light)
    _mouth(canvas, p, frame, yaw, mouth_open)
    image = np.clip(canvas.image + 0.5, 0, 255).astype(np.uint8)
    return image, canvas.labels


def _background(p: FaceParams, X, Y) -> np.ndarray:
    t = np.clip(0.5 + 0.5 * (X * math.sin(p.bg_angle) + Y * math.cos(p.bg_angle)), 0, 1)[..., None]
    top, bottom = np.asarray(p.bg_top, np.float32), np.asarray(p.bg_bottom, np.float32)
    vignette = (1 - 0.08 * (X * X + Y * Y))[..., None]
    return (top + t * (bottom - top)) * vignette


def _shirt(canvas: _Canvas, p: FaceParams, frame: _Frame, head_w) -> np.ndarray:
    """Shoulders in a shirt with a round neckline (labelled background: clothes are not a face part)."""
    u, v = frame.u, frame.v
    top = p.head_h + 0.2
    shoulders = _box(u, v, 0.0, top + 1.0, head_w * 2.1, 1.0, 0.3)
    neckline = _ellipse(u, v, 0.0, top, p.neck_w * 1.35, 0.13)
    shirt = np.maximum(shoulders, -neckline)
    fold = 1.0 - 0.22 * np.clip(np.abs(u) / (head_w * 2.1), 0, 1) ** 2 + 0.06 * np.clip((v - top) / 0.3, 0, 1)
    canvas.paint(shirt, _shade(p.shirt, fold), BACKGROUND)
    return shirt


def _neck(canvas: _Canvas, p: FaceParams, frame: _Frame, shirt):
    u, v = frame.u, frame.v
    neck = np.maximum(_box(u, v, 0.0, p.head_h + 0.5, p.neck_w, 0.9, 0.02), -shirt)
    shadow = 0.7 + 0.16 * np.clip((v - p.head_h * 0.9) / 0.18, 0, 1) - 0.12 * (u / p.neck_w) ** 2
    canvas.paint(neck, _shade(p.skin, shadow), SKIN)


def _back_hair(canvas: _Canvas, p: FaceParams, frame: _Frame, head_w, yaw, light):
    """The hair behind the head: a cap round the skull, down to the ears, the jaw or the shoulders."""
    u, v = frame.u, frame.v
    hx = -0.06 * yaw
    vol = p.hair_volume
    cap_a, cap_b, cap_y = head_w + vol, p.head_h + 0.6 * vol, -0.5 * vol - 0.02
    cap = _ellipse(u, v, hx, cap_y, cap_a, cap_b)
    if p.hair_cut == "short":
        shape = np.maximum(cap, v - (p.eye_y + 0.04))
    elif p.hair_cut == "bob":
        bottom = p.mouth_y + 0.08
        shape = np.minimum(np.maximum(cap, v - bottom),
                           _box(u, v, hx, (bottom - 0.1) / 2, cap_a, (bottom + 0.1) / 2, 0.1))
    else:
        bottom = p.hair_length
        shape = np.minimum(cap, _box(u, v, hx, (bottom - 0.1) / 2, cap_a + 0.04, (bottom + 0.1) / 2, 0.14))
    cap = (hx, cap_y, cap_a, cap_b)
    canvas.paint(shape, _hair_color(p, u, v, cap, light) * 0.85, HAIR)
    return cap


def _hair_color(p: FaceParams, u, v, cap, light) -> np.ndarray:
    hx, cap_y, cap_a, cap_b = cap
    nx, ny = (u - hx) / cap_a, (v - cap_y) / cap_b
    lam = _sphere_light(nx, np.clip(ny, -1, 0.3), light)
    crown = hx + 0.3 * p.part_slope * cap_a
    angle = np.arctan2(u - crown, v - cap_y + 0.3 * cap_b)
    r = np.sqrt(nx * nx + ny * ny)
    strands = np.sin(angle * p.strands + 3.0 * r) * np.sin(angle * p.strands * 0.5 + 1.0)
    sheen = np.exp(-((r - 0.7) / 0.1) ** 2) * np.clip(-ny, 0, 1)
    return _shade(p.hair, 0.62 + 0.42 * lam + 0.06 * strands + 0.2 * sheen)


def _head(canvas: _Canvas, p: FaceParams, frame: _Frame, head_w, yaw, light) -> np.ndarray:
    """Ears, then the face oval, shaded like a lit egg. Returns the shaded skin colour per pixel."""
    for side in (-1, 1):
        ex, ey = side * (head_w - 0.01) - 0.08 * yaw * p.head_w, p.eye_y + 0.07
        window, u, v = frame.region(ex, ey, max(p.ear_w, p.ear_h))
        ear = _ellipse(u, v, ex, ey, p.ear_w, p.ear_h)
        canvas.paint(ear, _shade(p.skin, 0.84), SKIN, window=window)
        inner = _ellipse(u, v, ex + side * 0.012, ey, p.ear_w * 0.5, p.ear_h * 0.6)
        canvas.paint(np.maximum(inner, ear), _shade(p.skin, 0.68), window=window)
    u, v = frame.u, frame.v
    below = np.clip(v / p.head_h, 0, 1)
    half_w = head_w * (1 - p.jaw * below * below)
    x, y = u / half_w, v / p.head_h
    r = np.sqrt(x * x + y * y)
    g = np.sqrt((x / half_w) ** 2 + (y / p.head_h) ** 2)
    head = (r - 1) * np.divide(r, g, out=np.full_like(r, p.head_h), where=g > 1e-12)
    skin = _shade(p.skin, 0.74 + 0.34 * _sphere_light(x, y, light))
    for side in (-1, 1):
        sx, sy = side * (p.eye_dx + 0.02) + 0.25 * yaw * p.head_w, p.nose_y + 0.03
        window, wu, wv = frame.region(sx, sy, 0.2)
        spot = np.exp(-(((wu - sx) / 0.08) ** 2 + ((wv - sy) / 0.05) ** 2))
        patch = skin[window]
        patch += (p.blush * 0.35 * spot)[..., None] * (np.array([230, 90, 100], np.float32) - patch)
        socket_y = p.eye_y - 0.02
        window, wu, wv = frame.region(side * p.eye_dx, socket_y, 0.2)
        sx = side * p.eye_dx * (1 - 0.15 * abs(yaw)) + 0.3 * yaw * p.head_w
        shadow = np.exp(-(((wu - sx) / 0.1) ** 2 + ((wv - socket_y) / 0.06) ** 2))
        skin[window] *= (1 - 0.08 * shadow)[..., None]
    canvas.paint(head, skin, SKIN)
    return skin


def _fringe(canvas: _Canvas, p: FaceParams, frame: _Frame, head_w, cap, light):
    """Hair in front of the forehead: the part of the hair cap above the hairline."""
    u, v = frame.u, frame.v
    w = u / head_w
    line = p.hairline + p.temple * w * w + p.part_slope * 0.15 * w
    slope = (2 * p.temple * w + p.part_slope * 0.15) / head_w
    brow_top = p.eye_y - p.brow_gap - p.brow_thick - 0.05
    line = np.minimum(line, brow_top)
    above = (v - line) / np.sqrt(1 + slope * slope)
    hx, cap_y, cap_a, cap_b = cap
    shape = np.maximum(_ellipse(u, v, hx, cap_y, cap_a, cap_b), above)
    canvas.paint(shape, _hair_color(p, u, v, cap, light), HAIR)
    band = np.maximum(np.maximum(above - 0.035, -above), _ellipse(u, v, 0, 0, head_w, p.head_h))
    canvas.paint(band, _shade(p.skin, 0.72), opacity=0.3)  # shadow under the hairline


def _feature_x(p: FaceParams, yaw: float, depth: float) -> float:
    """Sideways slide of a feature when the head turns: features that stand out further slide further."""
    return depth * yaw * p.head_w


def _brows(canvas: _Canvas, p: FaceParams, frame: _Frame, yaw):
    px = canvas.px
    spread = p.eye_dx * (1 - 0.15 * abs(yaw))
    for side in (-1, 1):
        half_w = max(p.brow_w * (1 - 0.35 * max(0.0, side * yaw)), 1.5 * px)
        bx, by = side * spread + _feature_x(p, yaw, 0.3), p.eye_y - p.brow_gap
        window, u, v = frame.region(bx, by, half_w * 1.2 + p.brow_thick + p.brow_arch)
        t = np.clip((u - bx) / half_w, -1, 1)
        centre = by - p.brow_arch * (1 - t * t) - side * p.brow_tilt * t * half_w
        slope = (2 * p.brow_arch * t) / half_w - side * p.brow_tilt
        outer = (1 + side * t) / 2
        thick = np.maximum(p.brow_thick * (1 - 0.45 * outer * outer), 1.3 * px)
        d = np.maximum(np.abs(v - centre) / np.sqrt(1 + slope * slope) - thick / 2, np.abs(u - bx) - half_w)
        canvas.paint(d, p.brow_color, BROWS, window=window)


def _eyes(canvas: _Canvas, p: FaceParams, frame: _Frame, yaw):
    px = canvas.px
    spread = p.eye_dx * (1 - 0.15 * abs(yaw))
    for side in (-1, 1):
        ew = max(p.eye_w * (1 - 0.35 * max(0.0, side * yaw)), 1.0 * px)
        eh = max(p.eye_h, 0.8 * px)
        ex, ey = side * spread + _feature_x(p, yaw, 0.3), p.eye_y
        window, u, v = frame.region(ex, ey, ew * 1.05)
        eye = _ellipse(u, v, ex, ey, ew, eh, -side * p.eye_tilt)
        lid_shadow = 0.76 + 0.24 * np.clip((v - ey + eh) / (1.3 * eh), 0, 1)
        canvas.paint(eye, _shade((248, 246, 242), lid_shadow), EYES, window=window)
        ir = min(0.62 * ew, p.iris_r * eh)
        ix, iy = ex + (p.gaze_x + 0.25 * yaw) * ew * 0.5, ey + p.gaze_y * eh
        rim = np.clip(np.sqrt((u - ix) ** 2 + (v - iy) ** 2) / ir, 0, 1)
        iris = _shade(p.iris, (1.12 - 0.5 * rim * rim) * lid_shadow)
        canvas.paint(np.maximum(_ellipse(u, v, ix, iy, ir, ir), eye), iris, window=window)
        canvas.paint(np.maximum(_ellipse(u, v, ix, iy, 0.45 * ir, 0.45 * ir), eye), (12, 10, 12), window=window)
        glint = _ellipse(u, v, ix - 0.35 * ir, iy - 0.35 * ir, 0.2 * ir, 0.2 * ir)
        canvas.paint(np.maximum(glint, eye), (255, 255, 255), opacity=0.9, window=window)
        line = max(0.1 * eh, 0.45 * px)
        upper = np.clip((ey - v) / eh, 0, 1)
        canvas.paint(np.maximum(eye, -eye - line * (0.6 + 1.6 * upper)), (34, 22, 22), opacity=0.9, window=window)


def _nose(canvas: _Canvas, p: FaceParams, frame: _Frame, yaw, skin, light):
    px = canvas.px
    nx = _feature_x(p, yaw, 0.5)
    w, h = max(p.nose_w * (1 - 0.2 * abs(yaw)), 1.0 * px), max(p.nose_h * 0.5, 0.8 * px)
    top = p.eye_y + 0.03
    bridge_h = max((p.nose_y - top) / 2, h)
    bx = _feature_x(p, yaw, 0.4)
    window, u, v = frame.region(nx, (top + p.nose_y + h) / 2, (p.nose_y + h - top) / 2 + w + 0.02)
    skin = skin[window]
    tip = _ellipse(u, v, nx, p.nose_y, w, h)
    bridge = _ellipse(u, v, bx, top + bridge_h, w * 0.45, bridge_h)
    lit = 1.0 if light[0] >= 0 else -1.0
    side = np.clip((u - nx) / w, -1, 1) * lit
    tone = 0.95 + 0.07 * side - 0.06 * np.clip((v - p.nose_y) / h, 0, 1)
    canvas.paint(np.minimum(tip, bridge), skin * tone[..., None], NOSE, window=window)
    shade_side = np.maximum(np.abs(u - (bx - lit * 0.6 * w * 0.45)) - max(0.2 * w * 0.45, 0.3 * px), bridge)
    canvas.paint(np.maximum(shade_side, -tip), skin * 0.8, opacity=p.nose_shade, window=window)
    outline = np.maximum(np.maximum(tip, -tip - max(0.18 * w, 0.45 * px)), p.nose_y - v)
    canvas.paint(outline, skin * 0.6, opacity=0.85, window=window)
    for s in (-1, 1):
        nostril = _ellipse(u, v, nx + s * 0.45 * w, p.nose_y + 0.25 * h, 0.22 * w, 0.16 * w)
        canvas.paint(np.maximum(nostril, tip), (70, 40, 38), opacity=0.8, window=window)


def _mouth(canvas: _Canvas, p: FaceParams, frame: _Frame, yaw, mouth_open):
    px = canvas.px
    mx = _feature_x(p, yaw, 0.3)
    mw = max(p.mouth_w * (1 - 0.15 * abs(yaw)), 1.5 * px)
    window, u, v = frame.region(mx, p.mouth_y + 0.04, max(mw, 0.2) + 0.02)
    t = np.clip((u - mx) / mw, -1, 1)
    bell = 1 - t * t
    centre = p.mouth_y + p.smile * bell - p.smile * 0.5
    gap = mouth_open * 0.1 * bell
    lip_top, lip_bottom = max(p.lip_top, 0.9 * px), max(p.lip_bottom, 0.9 * px)
    top = centre - gap / 2 - lip_top * bell * (1 - 0.3 * np.exp(-(t / 0.18) ** 2))
    bottom = centre + gap / 2 + lip_bottom * bell
    ends = np.abs(u - mx) - mw
    mouth = np.maximum(np.maximum(top - v, v - bottom), ends)
    lips = np.asarray(p.lips, np.float32)
    gloss = 1.0 + 0.18 * np.exp(-(((u - mx) / (0.4 * mw)) ** 2 + ((v - bottom + 0.45 * lip_bottom) / lip_bottom) ** 2))
    colour = np.where((v < centre)[..., None], lips * 0.84, lips * gloss[..., None])
    canvas.paint(mouth, colour, MOUTH, window=window)
    inner = np.maximum(np.abs(v - centre) - np.maximum(gap / 2, max(0.006, 0.35 * px)), ends + 0.1 * mw)
    canvas.paint(np.maximum(inner, mouth), (58, 18, 24), opacity=0.95, window=window)
    if mouth_open > 0:
        teeth = np.maximum(np.abs(v - (centre - gap / 2 + 0.18 * gap)) - 0.18 * gap, np.abs(u - mx) - 0.6 * mw)
        canvas.paint(np.maximum(teeth, inner), (238, 232, 222), window=window)


# ----------------------------------------------------------------------------------------------- sets

def make_face(seed: int, size: int = 64, style: str | None = None, *,
              preset: str = "classic", background: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)`` of the face drawn from ``seed`` (and ``preset``, ``background``, see
    :func:`sample_face_params`) in a neutral pose."""
    return render_face(sample_face_params(seed, style, preset=preset, background=background), size)


def _check_count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def make_faces(n: int, size: int = 64, seed: int = 0, style: str | None = None, *,
               preset: str = "classic") -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces as ``(images [n, H, W, 3], labels [n, H, W])``, both uint8. Face ``i`` comes from its own
    seed derived from ``(seed, i)``, so sets with different ``seed`` share no faces and a longer set starts
    with the faces of a shorter one. ``preset``: see :func:`sample_face_params`."""
    n, size, seed = _check_count("n", n), _check_size(size), _check_seed(seed)
    _check_style(style)
    _check_preset(preset)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n, size, size), np.uint8)
    for i in tqdm(range(n), desc="drawing faces", unit="face", disable=n < 256, leave=False):
        images[i], labels[i] = make_face(_child_seed(seed, i), size, style, preset=preset)
    return images, labels


def _save(image: np.ndarray, path: Path, fmt: str):
    from PIL import Image

    options = {"quality": 95} if fmt in ("jpg", "jpeg", "webp") else {}
    Image.fromarray(image).save(path, **options)


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"fmt must be one of {IMAGE_FORMATS}, got {fmt!r}")
    return fmt


def write_image_folder(root: str | os.PathLike, n: int, size: int = 64, seed: int = 0, fmt: str = "png", *,
                       preset: str = "classic") -> Path:
    """Write ``n`` faces (any colour mix) as ``root/00000.png, ...``: an unconditional training folder. The
    images are those of ``make_faces(n, size, seed, preset=preset)``. Returns ``root``."""
    n, size, seed, fmt = _check_count("n", n), _check_size(size), _check_seed(seed), _check_format(fmt)
    _check_preset(preset)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc=f"writing faces to {root}", unit="img", disable=n < 256):
        _save(make_face(_child_seed(seed, i), size, preset=preset)[0], root / f"{i:05d}.{fmt}", fmt)
    return root


def write_domain_folders(root: str | os.PathLike, n_train: int, n_val: int, size: int = 64, seed: int = 0,
                         domains=STYLES, *, preset: str = "classic", background: str | None = None) -> Path:
    """Write StarGAN-style domain folders ``root/train/<domain>/*.png`` and ``root/val/<domain>/*.png``,
    one colour family of ``STYLES`` per domain, ``n_train`` and ``n_val`` images each. Returns ``root``.
    With ``preset="portrait"`` the domains differ in skin and hair colour only (backgrounds come from either
    family), so a translation between them should keep the background. ``background="studio"`` puts every face
    in front of one backdrop (see :func:`sample_face_params`)."""
    n_train, n_val = _check_count("n_train", n_train), _check_count("n_val", n_val)
    size, seed = _check_size(size), _check_seed(seed)
    _check_preset(preset)
    domains = tuple(domains)
    if not domains or len(set(domains)) != len(domains):
        raise ValueError(f"domains must be distinct names from {STYLES}, got {domains}")
    for d in domains:
        _check_style(d)
    root = Path(root)
    splits = (("train", n_train), ("val", n_val))
    for split, _ in splits:
        for d in domains:
            (root / split / d).mkdir(parents=True, exist_ok=True)
    jobs = [(k, split, d, i) for k, (split, count) in enumerate(splits) for d in domains for i in range(count)]
    for k, split, d, i in tqdm(jobs, desc=f"writing domain folders to {root}", unit="img", disable=len(jobs) < 256):
        face = make_face(_child_seed(seed, STYLES.index(d), k, i), size, d, preset=preset, background=background)[0]
        _save(face, root / split / d / f"{i:05d}.png", "png")
    return root


def contact_sheet(n_cols: int = 8, n_rows: int = 4, size: int = 128, seed: int = 0, *, preset: str = "classic"):
    """A PIL image of ``n_rows x n_cols`` faces, each beside its coloured label map: first row one style,
    second row the other, the rest mixed."""
    from colab_utils.viz import image_grid, label_map_to_color

    tiles = []
    for r in range(n_rows):
        style = STYLES[r] if r < len(STYLES) else None
        for col in range(n_cols):
            image, labels = make_face(_child_seed(seed, r, col), size, style, preset=preset)
            tiles += [image, label_map_to_color(labels)]
    return image_grid(tiles, nrow=2 * n_cols)


if __name__ == "__main__":
    import sys

    from PIL import Image

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic_faces.png")
    sheet = contact_sheet(preset=sys.argv[2] if len(sys.argv) > 2 else "classic")
    palette = sheet.quantize(256, method=Image.Quantize.MEDIANCUT)   # 256 colours, dithered: a small PNG
    sheet.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
    print(f"wrote {out}")
