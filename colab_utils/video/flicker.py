"""A flicker number for translated video: how much the output changes from frame to frame, relative to how much
the input does.

    flicker = mean_t |out_t - out_{t-1}|  /  mean_t |in_t - in_{t-1}|

(means over all pixels and channels, in 0-255 levels). 1 means the result moves exactly as much as the source;
a model that redraws details differently in every frame scores above 1, temporal smoothing pulls it down.
Computed streaming (:class:`FlickerMeter`) so a long clip never has to be held in memory.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def _levels(frame) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"flicker needs uint8 frames, got {frame.dtype}")
    return frame.astype(np.int16)


class FlickerMeter:
    """Feed ``(input frame, output frame)`` pairs in order with :meth:`update`; read :attr:`value`.

    ``input_change`` / ``output_change`` are the mean absolute frame-to-frame changes so far (0-255 levels).
    :attr:`value` is their ratio: ``nan`` before two frames, ``1.0`` when neither moved, ``inf`` when only the
    output did."""

    def __init__(self):
        self.frames = 0
        self._sum_in = 0.0
        self._sum_out = 0.0
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def update(self, frame_in, frame_out) -> None:
        current_in, current_out = _levels(frame_in), _levels(frame_out)
        if self._prev_in is not None:
            for current, prev in ((current_in, self._prev_in), (current_out, self._prev_out)):
                if current.shape != prev.shape:
                    raise ValueError(f"flicker: frame {self.frames} is {current.shape}, the one before was "
                                     f"{prev.shape}")
            self._sum_in += float(np.abs(current_in - self._prev_in).mean())
            self._sum_out += float(np.abs(current_out - self._prev_out).mean())
        self._prev_in, self._prev_out = current_in, current_out
        self.frames += 1

    @property
    def input_change(self) -> float:
        return self._sum_in / (self.frames - 1) if self.frames > 1 else math.nan

    @property
    def output_change(self) -> float:
        return self._sum_out / (self.frames - 1) if self.frames > 1 else math.nan

    @property
    def value(self) -> float:
        if self.frames < 2:
            return math.nan
        if self._sum_in == 0:
            return 1.0 if self._sum_out == 0 else math.inf
        return self._sum_out / self._sum_in


def flicker(frames_in: Iterable[np.ndarray], frames_out: Iterable[np.ndarray]) -> float:
    """The flicker of ``frames_out`` (a translation of ``frames_in``, frame for frame). Both may be
    generators; only two frames of each are held at a time."""
    meter = FlickerMeter()
    sentinel = object()
    iter_in, iter_out = iter(frames_in), iter(frames_out)
    while True:
        a, b = next(iter_in, sentinel), next(iter_out, sentinel)
        if a is sentinel or b is sentinel:
            if a is not b:
                raise ValueError(f"flicker: frames_in and frames_out differ in length (one ended after "
                                 f"{meter.frames} frames)")
            return meter.value
        meter.update(a, b)
