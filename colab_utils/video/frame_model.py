"""What the video pipeline calls a model: anything that maps a batch of aligned face crops to translated crops.

    class FrameModel(Protocol):
        size: int                                   # side of the square crops it takes, in pixels
        def __call__(self, images): ...             # [B, 3, size, size] in [-1, 1] -> the same shape

:class:`StarGANFrameModel` is that model for StarGAN v2 networks (Choi et al., CVPR 2020, "StarGAN v2: Diverse
Image Synthesis for Multiple Domains") with **one style code for the whole clip**: taken once from a reference
image (``s = E(reference, y)``) or from a seeded latent (``s = F(z, y)``), then ``G(x, s, masks)`` for every
batch of frames. A single code is what keeps the look of the result from changing from frame to frame.

:func:`to_tensor` / :func:`to_uint8` convert between ``HxWx3`` uint8 frames and the models' [-1, 1] tensors.
"""
from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from colab_utils.stargan.model import Nets
from colab_utils.stargan.synthesize import check_masks


@runtime_checkable
class FrameModel(Protocol):
    """A callable translating ``[B, 3, size, size]`` tensors in [-1, 1] to tensors of the same shape."""

    size: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def to_tensor(images: Sequence[np.ndarray] | np.ndarray, device="cpu") -> torch.Tensor:
    """``N`` HxWx3 uint8 images -> a float [N, 3, H, W] tensor in [-1, 1] on ``device``."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(list(images)) if not isinstance(images, np.ndarray)
                                                  else images))
    if batch.dim() == 3:
        batch = batch[None]
    return batch.to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """A [N, 3, H, W] tensor in [-1, 1] -> ``N x H x W x 3`` uint8 (clipped and rounded)."""
    out = images.detach().float().add(1.0).mul(127.5).clamp(0, 255).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()


def model_device(model) -> torch.device:
    """Where ``model`` wants its inputs: its ``device`` attribute, else its first parameter's device, else CPU."""
    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        first = next(model.parameters(), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


def check_frame_model(model) -> int:
    """The crop size of ``model``; a clear error when it is not a :class:`FrameModel`."""
    size = getattr(model, "size", None)
    if not callable(model) or isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise TypeError(f"model must be callable with an integer .size >= 8 (the side of the square crops it "
                        f"translates), got {type(model).__name__} with size={size!r}; pass StarGAN Nets with "
                        f"reference= or domain= to build one")
    return size


class StarGANFrameModel:
    """StarGAN v2 with one fixed style code: ``model(x) = G(x, s, masks(x))`` for crops ``x`` in [-1, 1].

    Build it with :meth:`from_reference` (the style of a reference face) or :meth:`from_latent` (a random
    style of a domain, fixed by ``seed``). The FAN face masks of the high-pass skip are computed per batch
    when the generator has one (``w_hpf > 0``); such a model needs ``nets.fan`` unless ``nets.without_masks``
    says to translate without face masks."""

    def __init__(self, nets: Nets, style: torch.Tensor, *, device=None):
        self.nets = nets
        self.device = torch.device(device) if device is not None else model_device(nets.generator)
        self.nets.to(self.device).eval()
        self.size = int(nets.generator.img_size)
        self.reference_crop: np.ndarray | None = None     # the aligned reference, set by from_reference
        style = torch.as_tensor(style).float()
        if style.dim() == 1:
            style = style[None]
        if style.shape != (1, nets.generator.style_dim):
            raise ValueError(f"style must be one code of size {nets.generator.style_dim}, got "
                             f"{tuple(style.shape)}")
        self.style = style.to(self.device)
        # FANRequiredError for a w_hpf > 0 model without FAN, unless nets.without_masks was asked for
        self.use_masks = check_masks(nets)

    @staticmethod
    def _domain(nets: Nets, domain) -> int:
        count = nets.mapping_network.num_domains
        if domain is None:
            if count == 1:
                return 0
            raise ValueError(f"this model has {count} domains: pass domain=0..{count - 1}")
        if isinstance(domain, bool) or not isinstance(domain, (int, np.integer)) or not 0 <= domain < count:
            raise ValueError(f"domain must be an integer in 0..{count - 1}, got {domain!r}")
        return int(domain)

    @classmethod
    def from_latent(cls, nets: Nets, domain: int | None = None, seed: int = 0, *, device=None) -> "StarGANFrameModel":
        """The style ``F(z, domain)`` of the latent ``z`` drawn from ``seed`` (same seed, same look)."""
        y = cls._domain(nets, domain)
        if device is not None:
            nets.to(device)
        generator = torch.Generator().manual_seed(int(seed))
        z = torch.randn(1, nets.mapping_network.latent_dim, generator=generator)
        mapping = nets.mapping_network.eval()
        with torch.inference_mode():
            device = model_device(mapping)
            style = mapping(z.to(device), torch.tensor([y], device=device))
        return cls(nets, style, device=device)

    @classmethod
    def from_reference(cls, nets: Nets, reference, domain: int | None = None, *, align: bool = True,
                       landmarker=None, device=None) -> "StarGANFrameModel":
        """The style ``E(reference, domain)`` of a reference face (a path, PIL image or HxWx3 uint8 array).

        ``domain`` is the domain the reference belongs to (e.g. 0 female, 1 male for CelebA-HQ). With
        ``align`` the photo is first aligned like CelebA-HQ (:func:`colab_utils.stargan.align.align_face`) with
        ``landmarker``, by default the backend :func:`colab_utils.stargan.landmarks.make_landmarker` picks
        (MediaPipe, else ``nets.fan``, else a cached ``wing.ckpt``); pass ``align=False`` for a picture that is
        already an aligned crop (it is only resized)."""
        from PIL import Image

        from colab_utils.stargan.align import _as_rgb_array, align_face
        from colab_utils.stargan.landmarks import make_landmarker

        y = cls._domain(nets, domain)
        if device is not None:
            nets.to(device)
        size = int(nets.generator.img_size)
        name = str(reference) if isinstance(reference, (str, os.PathLike)) else "the reference image"
        if align:
            own = landmarker is None
            if own:
                landmarker = make_landmarker("auto", fan=nets.fan)
            try:
                crop = align_face(reference, size, landmarker=landmarker, name=name).image
            finally:
                if own:
                    landmarker.close()
        else:
            image = _as_rgb_array(reference)
            crop = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC)) \
                if image.shape[:2] != (size, size) else image
        encoder = nets.style_encoder.eval()
        with torch.inference_mode():
            device = model_device(encoder)
            style = encoder(to_tensor([crop], device), torch.tensor([y], device=device))
        model = cls(nets, style, device=device)
        model.reference_crop = crop
        return model

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from colab_utils.stargan.fan import compute_masks

        images = images.to(self.device)
        masks = compute_masks(self.nets.fan, images) if self.use_masks else None
        return self.nets.generator(images, self.style.expand(images.size(0), -1), masks)
