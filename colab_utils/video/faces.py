"""Faces in footage: find the face in every frame, smooth its landmarks over time so the aligned crop does
not jitter, and give the alignment matrix of each frame.

Per-frame landmarks wobble by a pixel or two even on a still face; the crop, and so the translated face,
would shake with them. We low-pass the five landmarks with the One Euro filter (Casiez, Roussel, Vogel,
"1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012): strong
smoothing while the face is still, little lag when it moves fast.
"""
from __future__ import annotations

import math

import numpy as np

from colab_utils.stargan.align import Landmarker, alignment_matrix


class OneEuroFilter:
    """The 1€ filter over arrays of any fixed shape, sampled at ``fps``."""

    def __init__(self, fps: float, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x = None
        self._dx = None

    def _alpha(self, cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) / self.dt
        a_d = self._alpha(self.d_cutoff)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * self.dt))
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


class FaceTracker:
    """Landmarks per frame, smoothed; ``None`` for frames with no face (counted in ``frames_without_face``).

    After more than ``max_gap`` frames without a face the filter restarts, so a face that reappears
    elsewhere is not dragged from where the old one was."""

    def __init__(self, landmarker: Landmarker, fps: float, *, smooth: bool = True,
                 min_cutoff: float = 1.0, beta: float = 0.05, max_gap: int = 3):
        self.landmarker = landmarker
        self.filter = OneEuroFilter(fps, min_cutoff, beta) if smooth else None
        self.max_gap = max_gap
        self.frames = 0
        self.frames_without_face = 0
        self._gap = 0

    def update(self, frame: np.ndarray) -> np.ndarray | None:
        self.frames += 1
        points = self.landmarker(frame)
        if points is None:
            self.frames_without_face += 1
            self._gap += 1
            if self.filter is not None and self._gap > self.max_gap:
                self.filter.reset()
            return None
        self._gap = 0
        return self.filter(points) if self.filter is not None else np.asarray(points, np.float64)

    def matrix(self, frame: np.ndarray, size: int) -> np.ndarray | None:
        """The smoothed frame -> aligned-crop matrix for this frame, or None without a face."""
        points = self.update(frame)
        return None if points is None else alignment_matrix(points, size)
