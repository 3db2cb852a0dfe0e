"""Your own photo as a face to edit: read it, align it like FFHQ, invert it once, edit, paste back.

    face = photo_face(G, "/content/drive/MyDrive/me.jpg")        # align + project + pivotal tuning (cached)
    transfer = PartTransfer(G, catalog, target=face, reference=3)  # a seed, another photo, a latent...
    edited = transfer.render(transfer.blend({"eyes": 1.0}))
    face.side_by_side(edited)                                      # the photo | the photo with the edit

A :class:`PhotoFace` carries the inversion's W+ latent and its generator: a copy of G tuned around that
latent (:mod:`colab_utils.editing.invert`), with the photo's noise maps stored in it. The editing API draws
the photo's face from that copy; since tuning leaves the layers' names and widths alone, the catalog built
on G applies to it as it is.

Photos come as a path, a PIL image, an H×W×3 uint8 array, or the value of an ipywidgets ``FileUpload`` (Colab's
``files.upload()`` dict works too). Files go through :func:`colab_utils.data.images.load_image` (EXIF rotation,
greyscale, CMYK, palettes, 16 bit, alpha); very large photos are refused or reduced with a message.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .ffhq_align import FFHQFace, align_ffhq
from .invert import Inversion, invert

MAX_PIXELS = 60_000_000     # larger photos are reduced to this many pixels before anything else


class PhotoError(ValueError):
    """A photo that cannot be used: the message names it and says why."""


def _from_upload(value) -> tuple[bytes, str] | None:
    """``(bytes, name)`` of the first file of an ipywidgets FileUpload value (7.x: dict name -> {content};
    8.x: tuple of {name, content}) or of Colab's ``files.upload()`` dict (name -> bytes); None otherwise."""
    widget_value = getattr(value, "value", None)
    if widget_value is not None and type(value).__name__ == "FileUpload":
        value = widget_value
    if isinstance(value, dict) and value:
        name, item = next(iter(value.items()))
        if isinstance(item, (bytes, bytearray)):
            return bytes(item), str(name)
        if isinstance(item, dict) and "content" in item:
            return bytes(item["content"]), str(item.get("metadata", {}).get("name", name))
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], dict) and "content" in value[0]:
        return bytes(value[0]["content"]), str(value[0].get("name", "upload"))
    if type(value).__name__ == "FileUpload":
        raise PhotoError("the upload widget holds no file yet: choose a photo first")
    return None


def _upright_rgb(img: Image.Image, name: str) -> np.ndarray:
    from colab_utils.data.images import _to_rgb

    try:
        img = _to_rgb(ImageOps.exif_transpose(img))
    except (OSError, ValueError, SyntaxError) as exc:
        raise PhotoError(f"{name}: cannot be read as a photo ({exc})") from exc
    if img.width * img.height > MAX_PIXELS:
        factor = (img.width * img.height / MAX_PIXELS) ** 0.5
        img = img.resize((int(img.width / factor), int(img.height / factor)), Image.LANCZOS)
    return np.asarray(img)


def read_photo(source, *, name: str | None = None) -> tuple[np.ndarray, str]:
    """``(upright RGB uint8 array, name)`` of a photo given as a path, PIL image, array or upload (see the
    module docstring). Photos over :data:`MAX_PIXELS` pixels are reduced to that size; unreadable ones raise
    :class:`PhotoError` or :class:`~colab_utils.data.images.ImageLoadError` naming the file."""
    from colab_utils.data.images import ImageLoadError, load_image

    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        try:
            with Image.open(path) as probe:
                pixels = probe.width * probe.height
        except FileNotFoundError:
            raise ImageLoadError(path, "no such file") from None
        except Exception:
            pixels = 0                                  # load_image names the problem
        if pixels > 4 * MAX_PIXELS:
            raise PhotoError(f"{path}: {pixels / 1e6:.0f} megapixels is too large; resize it below "
                             f"{4 * MAX_PIXELS / 1e6:.0f} MP")
        Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
        try:
            image = load_image(path, min_side=2048)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        return _upright_rgb(image, str(path)), name or str(path)
    upload = _from_upload(source)
    if upload is not None:
        data, uploaded = upload
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as exc:
            raise PhotoError(f"{uploaded}: not an image Pillow can read ({type(exc).__name__})") from exc
        return _upright_rgb(image, uploaded), name or uploaded
    if isinstance(source, Image.Image):
        return _upright_rgb(source, name or "the PIL image"), name or "the PIL image"
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
            raise PhotoError(f"{name or 'the array'}: expected an H×W×3 uint8 image, got {array.shape} {array.dtype}")
        return np.ascontiguousarray(array[..., :3]), name or "the array"
    raise PhotoError(f"a photo is a path, a PIL image, an H×W×3 uint8 array or an upload, got {type(source).__name__}")


def is_photo_source(value) -> bool:
    """Whether ``value`` is something :func:`read_photo` takes (as opposed to a seed or a latent)."""
    return (isinstance(value, (str, os.PathLike, Image.Image, np.ndarray)) or type(value).__name__ == "FileUpload"
            or (isinstance(value, dict) and bool(value)))


def to_tensor(crop: np.ndarray, device=None) -> torch.Tensor:
    """An H×W×3 uint8 crop as an image [1, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(crop, np.uint8)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0).to(
        device if device is not None else "cpu")


def to_array(image: torch.Tensor) -> np.ndarray:
    """One image [1, 3, H, W] (or [3, H, W]) in [-1, 1] as H×W×3 uint8."""
    image = image.detach().float().cpu()
    image = image[0] if image.dim() == 4 else image
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass
class PhotoFace:
    """A face of a photo, inverted. ``photo``: the whole photo (uint8); ``face``: its FFHQ alignment;
    ``inversion``: latent, noise and tuning; ``name``: where it came from. ``generator``: the copy of G that draws
    it (tuned, with the photo's noise), ``w_plus``: its latent on that generator's device."""

    photo: np.ndarray
    face: FFHQFace
    inversion: Inversion
    generator: torch.nn.Module
    name: str = "photo"

    @property
    def w_plus(self) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        return self.inversion.w_plus.to(device)

    @property
    def target(self) -> torch.Tensor:
        """The aligned crop as an image [1, 3, H, W] in [-1, 1]."""
        return to_tensor(self.face.image)

    @torch.no_grad()
    def reconstruction(self) -> torch.Tensor:
        """The generator's drawing of the face [1, 3, H, W] in [-1, 1]."""
        G = self.generator
        return G.synthesis(G.style_vectors(self.w_plus)).clamp(-1, 1).cpu()

    def paste(self, image: torch.Tensor, *, feather: float = 0.08) -> np.ndarray:
        """The photo with ``image`` (an edited face [1, 3, H, W] in [-1, 1], e.g. from ``PartTransfer.render``)
        put back in place of the face, blended with a feathered mask."""
        return self.face.paste(self.photo, to_array(image), feather=feather)

    def side_by_side(self, image: torch.Tensor, *, max_side: int = 512, feather: float = 0.08) -> Image.Image:
        """The original photo beside the photo with the edited face pasted back (each at most ``max_side``)."""
        from colab_utils.viz import image_grid

        pasted = Image.fromarray(self.paste(image, feather=feather))
        original = Image.fromarray(self.photo)
        scale = min(1.0, max_side / max(original.size))
        size = (max(1, round(original.width * scale)), max(1, round(original.height * scale)))
        tiles = [np.asarray(original.resize(size, Image.LANCZOS)), np.asarray(pasted.resize(size, Image.LANCZOS))]
        return image_grid(tiles, nrow=2, padding=2, col_labels=["photo", "edited"])

    def __repr__(self) -> str:
        figures = ", ".join(f"{k}={v:.3g}" for k, v in self.inversion.figures.items())
        return f"PhotoFace({self.name}, face {self.face.index + 1} of {self.face.n_faces}, {figures})"


def label_landmarks(labels: np.ndarray) -> np.ndarray:
    """Five landmarks (pixel edges) of a synthetic face from its part labels (:mod:`colab_utils.data.synthetic`:
    eyes 4, nose 5, mouth 6): each eye's centroid, the nose's centroid, the mouth's leftmost and rightmost
    pixels. For smoke runs and tests on machines without a landmark backend."""
    from colab_utils.data.synthetic import PARTS

    labels = np.asarray(labels)
    eyes, nose, mouth = (np.argwhere(labels == PARTS.index(p)) for p in ("eyes", "nose", "mouth"))
    if len(eyes) < 2 or len(nose) == 0 or len(mouth) < 2:
        raise ValueError("the labels show no eyes, nose or mouth")
    middle = eyes[:, 1].mean()
    left, right = eyes[eyes[:, 1] < middle], eyes[eyes[:, 1] >= middle]
    corner_l = mouth[mouth[:, 1] == mouth[:, 1].min()].mean(0)
    corner_r = mouth[mouth[:, 1] == mouth[:, 1].max()].mean(0)
    points = np.stack([left.mean(0), right.mean(0), nose.mean(0), corner_l, corner_r])[:, ::-1]   # (x, y)
    return points + 0.5


def photo_face(G, source, *, face_index: int | None = None, landmarker=None, landmarks=None, steps: int = 1000,
               space: str = "w+", tune: bool = True, tune_steps: int = 350, perceptual="lpips-vgg",
               cache_dir=None, seed: int = 0, progress: bool = True, name: str | None = None,
               project_options: dict | None = None, tune_options: dict | None = None) -> PhotoFace:
    """Read, align (at G's size) and invert one face of a photo; see :func:`~colab_utils.editing.invert.invert`
    for the inversion's options and where it is stored (once per photo, generator and settings). ``landmarks``
    (5×2) skip the landmark search."""
    photo, name = read_photo(source, name=name)
    face = align_ffhq(photo, G.size, landmarker=landmarker, landmarks=landmarks, face_index=face_index, name=name)
    device = next(G.parameters()).device
    inversion = invert(G, to_tensor(face.image, device), steps=steps, space=space, tune=tune, tune_steps=tune_steps,
                       perceptual=perceptual, cache_dir=cache_dir, seed=seed, progress=progress,
                       project_options=project_options, tune_options=tune_options)
    return PhotoFace(photo, face, inversion, inversion.generator(G), name)


def upload_widget():
    """An ipywidgets ``FileUpload`` for one image; pass it (after choosing a file) wherever a photo is taken."""
    from colab_utils.widgets import _ipywidgets, enable_colab_widgets

    w = _ipywidgets()
    enable_colab_widgets()
    return w.FileUpload(accept="image/*", multiple=False, description="photo")
