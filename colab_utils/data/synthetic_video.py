"""A synthetic talking-face clip with sound: the embedded default the video smoke runs and tests use.

One seeded :func:`speech_envelope` (syllables: short loudness bumps separated by gaps and the odd pause) drives
both the mouth opening of each frame and the loudness of the sound track, so picture and sound are in sync by
construction and a test can check that muxing kept them so. The head drifts, turns (yaw), tilts (roll) and
breathes (scale) along slow sinusoids with seeded phases. Frames come from
:func:`colab_utils.data.synthetic.render_face`; the sound is a buzzy voiced tone (a few harmonics of a gliding
pitch) with a short noise burst at each syllable's onset, written with the stdlib ``wave`` module and muxed as
AAC by :class:`colab_utils.data.video_io.VideoWriter`.

With ``frame_size`` the face sits in a larger frame (``face_fraction`` of its shorter side, over the face's own
gradient background extended to the whole frame), so face detection and paste-back code has something to find.
"""
from __future__ import annotations

import math
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from colab_utils.data.synthetic import render_face, sample_face_params
from colab_utils.data.video_io import VideoWriter

SAMPLE_RATE = 44100
MIN_RENDER, MAX_RENDER = 32, 1024          # render_face's size range (powers of two)


@dataclass(frozen=True)
class FacePose:
    """The pose of one frame, in :func:`render_face`'s terms (shift in fractions of the face image)."""

    shift: tuple[float, float]
    yaw: float
    roll: float
    scale: float
    mouth_open: float


@dataclass(frozen=True)
class _Syllable:
    onset: float
    length: float
    loudness: float
    pitch: float        # multiplier of the speaker's base pitch
    glide: float        # relative pitch change across the syllable


def _rng(seed: int, stream: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def _syllables(seconds: float, seed: int) -> list[_Syllable]:
    rng = _rng(seed, 1)
    syllables, t = [], 0.2
    while True:
        length = float(rng.uniform(0.12, 0.28))
        if t + length > seconds - 0.05:
            return syllables
        syllables.append(_Syllable(t, length, float(rng.uniform(0.55, 1.0)), float(rng.uniform(0.9, 1.15)),
                                   float(rng.uniform(-0.12, 0.08))))
        t += length + float(rng.uniform(0.25, 0.5) if rng.random() < 0.2 else rng.uniform(0.04, 0.14))


def speech_envelope(seconds: float, rate: float, seed: int = 0) -> np.ndarray:
    """Loudness in [0, 1] of the synthetic speech at times ``i / rate`` for ``i < round(seconds * rate)``:
    a ``sin^2`` bump per syllable, zero between them. The mouth opening at frame ``i`` is this envelope at
    ``rate = fps``; the sound's amplitude is the same envelope at the audio sample rate."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = np.zeros_like(t)
    for s in _syllables(seconds, seed):
        inside = (t >= s.onset) & (t < s.onset + s.length)
        envelope[inside] = s.loudness * np.sin(np.pi * (t[inside] - s.onset) / s.length) ** 2
    return envelope


def speech_audio(seconds: float, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The sound track: float32 mono in [-1, 1], ``round(seconds * sample_rate)`` samples."""
    rng = _rng(seed, 2)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    base = float(rng.uniform(110.0, 210.0))
    pitch = np.full(n, base)
    for s in _syllables(seconds, seed):
        inside = (t >= s.onset) & (t < s.onset + s.length)
        pitch[inside] = base * s.pitch * (1 + s.glide * (t[inside] - s.onset) / s.length)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    weights = rng.uniform(0.3, 1.0, 6) / np.arange(1, 7)
    voiced = sum(w * np.sin((k + 1) * phase) for k, w in enumerate(weights)) / weights.sum()
    sound = voiced * speech_envelope(seconds, sample_rate, seed)[:n]
    for s in _syllables(seconds, seed):            # a consonant-like hiss at each onset
        start, stop = int(s.onset * sample_rate), int((s.onset + 0.03) * sample_rate)
        decay = np.exp(-np.arange(stop - start) / (0.008 * sample_rate))
        sound[start:stop] += 0.15 * s.loudness * decay * rng.standard_normal(stop - start)
    return (0.7 * sound / max(1e-6, float(np.abs(sound).max()))).astype(np.float32)


def write_wav(samples: np.ndarray, path, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float mono samples in [-1, 1] as 16-bit PCM WAV with the stdlib ``wave`` module."""
    path = Path(path)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return path


def face_poses(seconds: float, fps: float, seed: int = 0) -> list[FacePose]:
    """The pose of each of the ``round(seconds * fps)`` frames: slow drift, turn, tilt and breathing with
    seeded phases, and the mouth following :func:`speech_envelope`."""
    rng = _rng(seed, 3)
    phases = rng.uniform(0, 2 * np.pi, 5)
    mouth = speech_envelope(seconds, fps, seed)
    poses = []
    for i, opening in enumerate(mouth):
        t = i / fps
        poses.append(FacePose(
            shift=(0.03 * math.sin(2 * math.pi * 0.35 * t + phases[0]),
                   0.02 * math.sin(2 * math.pi * 0.5 * t + phases[1])),
            yaw=0.3 * math.sin(2 * math.pi * 0.25 * t + phases[2]),
            roll=4.0 * math.sin(2 * math.pi * 0.3 * t + phases[3]),
            scale=1.0 + 0.03 * math.sin(2 * math.pi * 0.2 * t + phases[4]),
            mouth_open=float(np.clip(opening, 0.0, 1.0))))
    return poses


def _frame_shape(size: int, frame_size) -> tuple[int, int]:
    if frame_size is None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16 or size % 2:
            raise ValueError(f"size must be an even integer >= 16, got {size!r}")
        return int(size), int(size)
    width, height = (frame_size, frame_size) if isinstance(frame_size, (int, np.integer)) else frame_size
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 16 or side % 2:
            raise ValueError(f"frame_size must be an even integer >= 16 or a (width, height) of them "
                             f"(H.264 needs even sizes), got {frame_size!r}")
    return int(width), int(height)


def iter_synthetic_frames(seconds: float = 3.0, fps: float = 25, size: int = 128, seed: int = 0,
                          style: str | None = None, *, frame_size=None, face_fraction: float | None = None,
                          preset: str = "classic", background: str | None = None
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The frames of :func:`make_synthetic_video` as ``(image HxWx3 uint8, labels HxW uint8)`` pairs, labels
    indexing ``colab_utils.data.synthetic.PARTS``. Same arguments as :func:`make_synthetic_video`."""
    width, height = _frame_shape(size, frame_size)
    if face_fraction is None:
        face_fraction = 1.0 if frame_size is None else 0.5
    if not 0.1 <= face_fraction <= 1.0:
        raise ValueError(f"face_fraction must be in [0.1, 1], got {face_fraction}")
    if not (seconds > 0 and fps > 0):
        raise ValueError(f"seconds and fps must be positive, got seconds={seconds}, fps={fps}")
    params = sample_face_params(seed, style, preset=preset, background=background)
    return _frames(params, face_poses(seconds, fps, seed), width, height, face_fraction)


def _frames(params, poses: list[FacePose], width: int, height: int,
            face_fraction: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    # Draw a square as wide as the frame's longer side, the face at face_fraction of the shorter side, then
    # crop the frame out of its centre; the face's gradient background covers the whole square.
    side = max(width, height)
    render = min(MAX_RENDER, max(MIN_RENDER, 1 << (side - 1).bit_length()))
    base_scale = face_fraction * min(width, height) / side
    drift = 1.0 + 4.0 * (1.0 - base_scale)       # let a small face wander further across a wide frame
    left, top = (side - width) // 2, (side - height) // 2
    # render_face scales about the head's centre; this shift keeps the face image's centre where it was.
    centre = (params.head_x * (base_scale - 1) / 2, params.head_y * (base_scale - 1) / 2)
    for pose in poses:
        shift = (centre[0] + pose.shift[0] * base_scale * drift, centre[1] + pose.shift[1] * base_scale * drift)
        image, labels = render_face(params, render, shift=shift, yaw=pose.yaw, roll=pose.roll,
                                    scale=pose.scale * base_scale, mouth_open=pose.mouth_open)
        if render != side:
            image = np.asarray(Image.fromarray(image).resize((side, side), Image.LANCZOS))
            labels = np.asarray(Image.fromarray(labels).resize((side, side), Image.NEAREST))
        yield image[top:top + height, left:left + width], labels[top:top + height, left:left + width]


def make_synthetic_video(path, *, seconds: float = 3.0, fps: float = 25, size: int = 128, seed: int = 0,
                         audio: bool = True, style: str | None = None, frame_size=None,
                         face_fraction: float | None = None, preset: str = "classic",
                         background: str | None = None) -> Path:
    """Write ``round(seconds * fps)`` frames of a seeded synthetic face talking (H.264 MP4), with a
    ``SAMPLE_RATE`` Hz AAC sound track in sync with the mouth when ``audio``.

    ``size``: the frame is ``size x size`` and the face fills it like the training images (``face_fraction``
    1). ``frame_size`` (an int or ``(width, height)``, even) replaces ``size`` with a larger shot in which the
    face image (head, hair and shoulders as a training image frames them; the head itself is about half of
    it) spans ``face_fraction`` (default 0.5) of the frame's shorter side, centred and drifting a little. ``style`` picks the face's colour
    family and ``preset`` the kind of face as in :func:`colab_utils.data.synthetic.sample_face_params`
    (``"portrait"`` with ``background="studio"``: the close-ups the demo StarGAN v2 was trained on). Returns
    ``path``."""
    path = Path(path)
    frames = iter_synthetic_frames(seconds, fps, size, seed, style, frame_size=frame_size,
                                   face_fraction=face_fraction, preset=preset, background=background)
    n_frames = round(seconds * fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        wav = write_wav(speech_audio(n_frames / fps, seed), Path(scratch) / "speech.wav") if audio else None
        with VideoWriter(path, fps, audio_from=wav) as writer:
            for image, _ in tqdm(frames, total=n_frames, desc=f"synthetic video {path.name}", leave=False,
                                 disable=n_frames * _area(size, frame_size) < 2e7):
                writer.write(image)
    return path


def _area(size: int, frame_size) -> int:
    width, height = _frame_shape(size, frame_size)
    return width * height
