"""Differentiable augmentation with an adaptive probability, for GANs trained on a few thousand photos.

Karras, Aittala, Hellsten, Laine, Lehtinen, Aila. "Training Generative Adversarial Networks with Limited
Data", NeurIPS 2020 (ADA). The discriminator sees every image, real or generated, through the same random
augmentation, applied with probability ``p``; because the augmentations are differentiable and leak no
information when ``p`` stays below about 0.8, the generator still learns the un-augmented distribution.
``p`` is tuned during training from an overfitting heuristic (Sec. 3, Eq. 1):

    r_t = E[sign(D(real))]     (0: D cannot tell; 1: D is certain about every real image)

measured over a few minibatches; ``p`` moves up when r_t exceeds the target (0.6 in the paper) and down
otherwise, by an amount that lets it go from 0 to 1 in ``speed_kimg`` thousand images (500 in the paper).
Each interval's r_t is applied one interval late: its sum is copied to the host when the interval ends and
read when the next one ends, long after the copy finished, so training never waits for the GPU to learn p
(a lag of ``interval`` steps, 64 images at batch 16, against the 500k images p takes to go from 0 to 1).

Our compact pipeline (each operation applied to each image independently with probability ``p``):
horizontal flip, rotation by a multiple of 90 degrees, integer translation by up to 1/8 of the image with
reflected borders (the three as one gather of pixels), brightness, contrast, saturation, and cutout of a
half-size square. Every random choice comes from the module's own ``torch.Generator`` (on the CPU), saved in
``state_dict()``, so a resumed run draws exactly the augmentations an uninterrupted one would have drawn.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

TRANSLATE_FRACTION = 0.125  # integer translation range, as a fraction of the image side
BRIGHTNESS_STD = 0.2        # additive, in the [-1, 1] pixel range
CONTRAST_STD = 0.5          # log2 of the contrast factor
SATURATION_STD = 1.0        # log2 of the saturation factor
CUTOUT_SIZE = 0.5           # side of the cut-out square, as a fraction of the image side
LUMA = (0.299, 0.587, 0.114)


class AdaptiveAugment:
    """Augment batches with probability ``p`` and adapt ``p`` from the discriminator's real logits.

    ``aug(images)`` returns augmented images (the input itself when ``p`` is 0). ``update(real_logits)`` is
    called once per discriminator step; every ``interval`` calls it moves ``p`` by
    ``sign(r_t - target) * images_seen / (speed_kimg * 1000)`` of the interval before, clamped to [0, 1].
    With ``target=None`` ``p`` stays fixed (plain differentiable augmentation)."""

    def __init__(self, p: float = 0.0, target: float | None = 0.6, *, speed_kimg: float = 500.0,
                 interval: int = 4, seed: int = 0, max_p: float = 1.0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augmentation probability p must be in [0, 1], got {p!r}")
        if target is not None and not 0.0 < target < 1.0:
            raise ValueError(f"ADA target must be in (0, 1) (the paper uses 0.6) or None, got {target!r}")
        if not speed_kimg > 0 or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"speed_kimg must be > 0 and interval an int >= 1, got {speed_kimg!r}, {interval!r}")
        self.p, self.target, self.speed_kimg, self.interval, self.max_p = float(p), target, speed_kimg, interval, max_p
        self.generator = torch.Generator().manual_seed(int(seed))
        self._sign_sum: torch.Tensor | None = None  # on the logits' device, summed without a sync
        self._count = 0
        self._ended: tuple[torch.Tensor, torch.cuda.Event | None, int] | None = None  # the last interval, on its
        # way to the host: (sign sum copy, the copy's event on CUDA, images)
        self._calls = 0
        self.last_rt: float | None = None

    def __repr__(self) -> str:
        return f"AdaptiveAugment(p={self.p:.4f}, target={self.target}, speed_kimg={self.speed_kimg})"

    # -- the adaptive probability -----------------------------------------------------------------------------
    def update(self, real_logits: torch.Tensor) -> None:
        """Accumulate sign(D(real)); every ``interval`` calls, adjust ``p`` by the interval before (a no-op
        without a target)."""
        if self.target is None:
            return
        signs = real_logits.detach().float().sign().sum()
        self._sign_sum = signs if self._sign_sum is None else self._sign_sum + signs
        self._count += real_logits.numel()
        self._calls += 1
        if self._calls % self.interval:
            return
        if self._ended is not None:
            self._adjust(*self._ended)
        self._ended = (*_to_host(self._sign_sum), self._count)
        self._sign_sum, self._count = None, 0

    def _adjust(self, sign_sum: torch.Tensor, copied: "torch.cuda.Event | None", count: int) -> None:
        if copied is not None:
            copied.synchronize()  # recorded an interval ago: long complete, no wait in practice
        rt = float(sign_sum) / count  # a host tensor
        adjust = math.copysign(1.0, rt - self.target) * count / (self.speed_kimg * 1000.0)
        self.p = min(max(self.p + adjust, 0.0), self.max_p)
        self.last_rt = rt

    # -- the augmentation -------------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"augment expects square RGB batches [B, 3, S, S], got {tuple(images.shape)}")
        if self.p <= 0.0:
            return images
        b, s = images.shape[0], images.shape[2]
        channels_last = not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last)
        images = _geometric(images, self._geometry(b, s))
        images = _colour(images, *self._colour(b, images))
        images = _cutout(images, *self._cutout(b, s, images))
        return images.contiguous(memory_format=torch.channels_last) if channels_last else images

    def _coin(self, b: int) -> torch.Tensor:
        """Which of ``b`` images get an operation: each with probability p."""
        return torch.rand(b, generator=self.generator) < self.p

    def _geometry(self, b: int, s: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        flip = self._coin(b)
        turns = torch.randint(0, 4, (b,), generator=self.generator) * self._coin(b)
        reach = max(1, int(round(TRANSLATE_FRACTION * s)))
        shift = torch.randint(-reach, reach + 1, (b, 2), generator=self.generator) * self._coin(b)[:, None]
        return flip, turns, shift[:, 0], shift[:, 1]

    def _colour(self, b: int, like: torch.Tensor):
        brightness = torch.randn(b, generator=self.generator) * BRIGHTNESS_STD * self._coin(b)
        contrast = torch.exp2(torch.randn(b, generator=self.generator) * CONTRAST_STD * self._coin(b))
        saturation = torch.exp2(torch.randn(b, generator=self.generator) * SATURATION_STD * self._coin(b))
        return tuple(v.to(like.device, like.dtype).view(b, 1, 1, 1) for v in (brightness, contrast, saturation))

    def _cutout(self, b: int, s: int, like: torch.Tensor):
        apply = self._coin(b)
        centre = torch.rand(b, 2, generator=self.generator)
        return apply.to(like.device), centre.to(like.device)

    # -- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        pending = torch.zeros((), dtype=torch.float64) if self._sign_sum is None else self._sign_sum.detach().cpu().double()
        ended = None
        if self._ended is not None:
            sign_sum, copied, count = self._ended
            if copied is not None:
                copied.synchronize()
            ended = {"sign_sum": sign_sum.detach().cpu().double(), "count": count}
        return {"p": self.p, "count": self._count, "calls": self._calls,
                "sign_sum": pending, "generator": self.generator.get_state(),
                "last_rt": self.last_rt, "ended": ended}

    def load_state_dict(self, state: Mapping) -> None:
        self.p = float(state["p"])
        self._count, self._calls = int(state["count"]), int(state["calls"])
        self._sign_sum = state["sign_sum"].float() if self._count else None
        self.generator.set_state(state["generator"])
        self.last_rt = state.get("last_rt")
        ended = state.get("ended")
        self._ended = (ended["sign_sum"].float(), None, int(ended["count"])) if ended else None


def _to_host(value: torch.Tensor) -> tuple[torch.Tensor, "torch.cuda.Event | None"]:
    """A copy of ``value`` on the host, started without waiting: (pinned copy, its CUDA event) on a GPU."""
    if value.device.type != "cuda":
        return value.detach().clone(), None
    host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
    host.copy_(value.detach(), non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def _grid(b: int, s: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.arange(s, device=device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return ys.expand(b, s, s), xs.expand(b, s, s)


def _reflect(c: torch.Tensor, s: int) -> torch.Tensor:
    """Mirror coordinates that fall off the image back onto it (reach below one image side)."""
    c = c.abs()
    return torch.where(c > s - 1, 2 * (s - 1) - c, c)


def _geometric(images: torch.Tensor, params) -> torch.Tensor:
    """Flip, rotate by quarter turns and translate, as one gather: for every output pixel, the source pixel."""
    flip, turns, dy, dx = (t.to(images.device) for t in params)
    b, c, s, _ = images.shape
    ys, xs = _grid(b, s, images.device)
    ys = _reflect(ys - dy.view(b, 1, 1), s)
    xs = _reflect(xs - dx.view(b, 1, 1), s)
    for k in range(1, 4):  # a quarter turn maps output (y, x) to source (x, s-1-y)
        turn = (turns >= k).view(b, 1, 1)
        ys, xs = torch.where(turn, xs, ys), torch.where(turn, s - 1 - ys, xs)
    xs = torch.where(flip.view(b, 1, 1), s - 1 - xs, xs)
    index = (ys * s + xs).reshape(b, 1, s * s).expand(b, c, s * s)
    return images.reshape(b, c, s * s).gather(2, index).reshape(b, c, s, s)


def _colour(images: torch.Tensor, brightness, contrast, saturation) -> torch.Tensor:
    images = images + brightness
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast + mean
    luma = (images * images.new_tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return luma + (images - luma) * saturation


def _cutout(images: torch.Tensor, apply: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    b, _, s, _ = images.shape
    axis = (torch.arange(s, device=images.device, dtype=torch.float32) + 0.5) / s
    half = CUTOUT_SIZE / 2
    inside_y = (axis.view(1, s) - centre[:, 0:1]).abs() < half
    inside_x = (axis.view(1, s) - centre[:, 1:2]).abs() < half
    hole = inside_y[:, :, None] & inside_x[:, None, :] & apply.view(b, 1, 1)
    return images * (~hole).unsqueeze(1).to(images.dtype)
