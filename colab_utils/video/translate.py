"""StarGAN v2 on video, in one streaming call that keeps the sound.

    from colab_utils.video import translate_video
    summary = translate_video("talk.mp4", "talk_male.mp4", nets, reference="me.jpg", domain=1)

The seed did this by hand: video -> GIF -> frames as image files -> the model one image at a time -> frames ->
GIF -> speed fixed -> video, and the sound added back afterwards. Here frames are decoded one at a time from an
ffmpeg pipe (:func:`colab_utils.data.video_io.iter_frames`), translated in batches, and piped into the H.264
encoder (:class:`colab_utils.data.video_io.VideoWriter`), which muxes the source's audio back in, trimmed and
fitted to the frames. Nothing touches the disk but the output, and memory holds one batch whatever the length.

Two modes:

- ``"faces"`` (real footage): the face of each frame is found and aligned like CelebA-HQ
  (:mod:`colab_utils.stargan.align`); the landmarks are smoothed over time by a One Euro filter
  (:class:`colab_utils.video.faces.FaceTracker`) so the crop does not jitter; the translated crop is pasted
  back with the inverse transform under a feathered elliptical mask. Frames without a face pass unchanged.
- ``"whole"``: the frame is already a face crop; it is resized to the model's size and back.

Temporal stability: one style code for the clip (:class:`colab_utils.video.frame_model.StarGANFrameModel`),
and optionally ``temporal_blend``: an exponential moving average of the translated crops inside the face mask,
the previous result first moved by the face's own motion (the change of alignment transform between the two
frames) so it lines up. :mod:`colab_utils.video.flicker` measures the result.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from colab_utils.data import video_io
from colab_utils.runtime import default_device
from colab_utils.data.video_io import VideoError, VideoWriter, iter_frames, probe, write_gif
from colab_utils.stargan.align import Landmarker, face_mask, invert_affine, paste_back, warp_affine
from colab_utils.stargan.landmarks import make_landmarker
from colab_utils.stargan.model import Nets
from colab_utils.video.faces import FaceTracker
from colab_utils.video.flicker import FlickerMeter
from colab_utils.video.frame_model import StarGANFrameModel, check_frame_model, model_device, to_tensor, to_uint8

MODES = ("faces", "whole")


class TranslatedFrame(NamedTuple):
    source: np.ndarray       # the decoded frame, HxWx3 uint8
    output: np.ndarray       # the result, same size
    translated: bool         # False for a frame that passed through because no face was found


@dataclass
class VideoSummary:
    """What :func:`translate_video` did. ``faces_found`` counts translated frames (all of them in whole
    mode); ``frames_per_second`` is the throughput; ``flicker`` is :func:`colab_utils.video.flicker.flicker`
    of the result against the source."""

    output: Path
    mode: str
    frames: int
    faces_found: int
    frames_without_face: int
    seconds: float
    fps: float
    frames_per_second: float
    flicker: float
    audio: bool
    side_by_side: Path | None = None
    gif: Path | None = None
    notes: list[str] = field(default_factory=list)
    landmarks: str | None = None     # the landmark backend used in faces mode
    audio_reason: str | None = None  # why the output has no sound (when ``audio`` is False)

    def __str__(self) -> str:
        rows = [("output", str(self.output)),
                ("frames", f"{self.frames} at {self.fps:.3g} fps ({self.mode} mode)"),
                ("faces found", f"{self.faces_found} ({self.frames_without_face} frames without a face "
                                f"passed unchanged)" if self.mode == "faces" else f"{self.faces_found}"),
                *([("landmarks", self.landmarks)] if self.landmarks else []),
                ("time", f"{self.seconds:.1f} s ({self.frames_per_second:.2f} frames/s)"),
                ("flicker", f"{self.flicker:.3f} (output change / input change per frame)"),
                ("sound", "original audio muxed in" if self.audio else "none (the source has no audio)")]
        if self.side_by_side is not None:
            rows.append(("side by side", str(self.side_by_side)))
        if self.gif is not None:
            rows.append(("gif", str(self.gif)))
        rows += [("note", note) for note in self.notes]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def line(self) -> str:
        """The summary in one line: output, frames, faces found, speed reached, and the sound."""
        extra = [str(p) for p in (self.side_by_side, self.gif) if p is not None]
        faces = (f"a face found in {self.faces_found}" if self.mode == "faces"
                 else f"{self.faces_found} translated whole")
        sound = "audio kept" if self.audio else f"no audio ({self.audio_reason or 'not kept'})"
        return (f"wrote {self.output}{' (and ' + ', '.join(extra) + ')' if extra else ''}: {self.frames} frames at "
                f"{self.fps:.3g} fps, {faces}, {self.frames_per_second:.2f} frames/s, {sound}")


# ---------------------------------------------------------------------------------------------------------
# Frames in, frames out
# ---------------------------------------------------------------------------------------------------------

def model_fan(model):
    """The FAN loaded with ``model`` (``nets.fan`` of StarGAN networks or of a
    :class:`~colab_utils.video.frame_model.StarGANFrameModel`), or None: the landmark backend falls back on it
    where MediaPipe cannot run."""
    nets = model if isinstance(model, Nets) else getattr(model, "nets", None)
    fan = getattr(nets, "fan", None) if isinstance(nets, Nets) else None
    return fan if callable(getattr(fan, "get_landmark", None)) else None


def video_landmarker(model, landmarker: Landmarker | None = None):
    """``(landmarker, own)``: ``landmarker`` itself, or a new tracking one from
    :func:`colab_utils.stargan.landmarks.make_landmarker` (MediaPipe, else the model's FAN, else cached
    ``wing.ckpt``) that the caller must close."""
    if landmarker is not None:
        return landmarker, False
    return make_landmarker("auto", video=True, fan=model_fan(model)), True


def landmarks_summary(landmarker) -> str:
    """What found the faces, for :class:`VideoSummary`: the backend, and for the FAN how often the detector ran."""
    text = getattr(landmarker, "description", None) or getattr(landmarker, "__name__", type(landmarker).__name__)
    calls, detections = getattr(landmarker, "calls", None), getattr(landmarker, "detections", None)
    if calls and detections is not None:
        text += f"; face detector ran on {detections} of {calls} frames"
        text += " (tracking in between)" if detections < calls else ""
    return text


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``a after b``."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


class _Pending(NamedTuple):
    frame: np.ndarray
    matrix: np.ndarray | None   # frame -> crop (faces mode), None in whole mode or without a face
    crop: np.ndarray | None     # the model's input, None without a face


class _Translator:
    """The per-frame work of :func:`translate_frames`, with the state that links consecutive frames."""

    def __init__(self, model, mode: str, fps: float, temporal_blend: float, landmarker, smooth: bool, device):
        self.model, self.mode = model, mode
        self.size = check_frame_model(model)
        self.device = torch.device(device) if device is not None else model_device(model)
        self.mask = face_mask(self.size)
        self.blend = float(temporal_blend)
        self.tracker = FaceTracker(landmarker, fps, smooth=smooth) if mode == "faces" else None
        self._prev_crop: np.ndarray | None = None
        self._prev_matrix: np.ndarray | None = None

    def prepare(self, frame: np.ndarray) -> _Pending:
        if self.mode == "whole":
            return _Pending(frame, None, _resize(frame, self.size, self.size))
        matrix = self.tracker.matrix(frame, self.size)
        if matrix is None:
            return _Pending(frame, None, None)
        return _Pending(frame, matrix, warp_affine(frame, matrix, self.size))

    def run_model(self, crops: list[np.ndarray]) -> np.ndarray:
        batch = to_tensor(crops, self.device)
        with torch.inference_mode():
            out = self.model(batch)
        if not isinstance(out, torch.Tensor) or out.shape != batch.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model must return a tensor shaped like its input {tuple(batch.shape)}, "
                             f"got {got}")
        return to_uint8(out)

    def temporal(self, crop: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
        """Blend ``crop`` with the previous result (moved by the face's motion) inside the face mask."""
        if self.blend <= 0:
            return crop
        prev = self._prev_crop
        if prev is not None and matrix is not None and self._prev_matrix is not None:
            prev = warp_affine(prev, _compose(matrix, invert_affine(self._prev_matrix)), self.size)
        if prev is not None:
            alpha = self.blend * self.mask[..., None]
            crop = np.clip(crop * (1 - alpha) + prev * alpha + 0.5, 0, 255).astype(np.uint8)
        self._prev_crop, self._prev_matrix = crop, matrix
        return crop

    def finish(self, pending: _Pending, crop: np.ndarray | None) -> TranslatedFrame:
        frame = pending.frame
        if crop is None:                                     # no face: pass through, forget the last result
            self._prev_crop = self._prev_matrix = None
            return TranslatedFrame(frame, frame, False)
        crop = self.temporal(crop, pending.matrix)
        if self.mode == "whole":
            return TranslatedFrame(frame, _resize(crop, frame.shape[1], frame.shape[0]), True)
        return TranslatedFrame(frame, paste_back(frame, crop, pending.matrix, mask=self.mask), True)

    def flush(self, batch: list[_Pending]) -> Iterator[TranslatedFrame]:
        crops = [p.crop for p in batch if p.crop is not None]
        outputs = iter(self.run_model(crops)) if crops else iter(())
        for pending in batch:
            yield self.finish(pending, next(outputs) if pending.crop is not None else None)


def translate_frames(frames: Iterable[np.ndarray], model, *, mode: str = "faces", fps: float = 25.0,
                     batch_size: int = 8, temporal_blend: float = 0.0, landmarker: Landmarker | None = None,
                     smooth: bool = True, device=None) -> Iterator[TranslatedFrame]:
    """Translate a stream of HxWx3 uint8 frames; yields a :class:`TranslatedFrame` per frame, in order,
    holding at most ``batch_size`` frames at a time.

    ``model``: a :class:`colab_utils.video.frame_model.FrameModel` (``size`` and [-1, 1] tensors in and out).
    ``fps`` paces the landmark smoothing (``smooth``). ``temporal_blend`` in [0, 1): weight of the previous
    result in each new face (0: off). ``landmarker``: five-point landmarks per frame (faces mode; default
    ``make_landmarker("auto", video=True, fan=<the model's FAN>)``: MediaPipe, else the FAN)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= temporal_blend < 1.0:
        raise ValueError(f"temporal_blend must be in [0, 1), got {temporal_blend!r}")
    own_landmarker = False
    if mode == "faces":
        landmarker, own_landmarker = video_landmarker(model, landmarker)
    try:
        translator = _Translator(model, mode, fps, temporal_blend, landmarker, smooth, device)
        batch: list[_Pending] = []
        for frame in frames:
            batch.append(translator.prepare(np.asarray(frame)))
            if len(batch) == batch_size:
                yield from translator.flush(batch)
                batch = []
        if batch:
            yield from translator.flush(batch)
    finally:
        if own_landmarker and hasattr(landmarker, "close"):
            landmarker.close()


# ---------------------------------------------------------------------------------------------------------
# Files in, files out
# ---------------------------------------------------------------------------------------------------------

def _resolve_model(model, reference, domain, seed, device, align_reference: bool):
    if isinstance(model, Nets):
        device = device if device is not None else default_device()
        if reference is not None:     # aligned with the landmark backend chosen there (MediaPipe, else nets.fan)
            return StarGANFrameModel.from_reference(model, reference, domain, align=align_reference, device=device)
        return StarGANFrameModel.from_latent(model, domain, seed, device=device)
    if reference is not None or domain is not None:
        raise ValueError("reference= and domain= pick the style of StarGAN Nets; this model already has its own "
                         "(pass colab_utils.stargan Nets, or leave them out)")
    check_frame_model(model)
    return model


def _expected_frames(info, start: float | None, end: float | None) -> int:
    stop = info.duration if end is None else min(float(end), info.duration)
    return max(0, round((stop - (start or 0.0)) * info.fps))


def translate_video(src, out, model, *, reference=None, domain: int | None = None, seed: int = 0,
                    mode: str = "faces", batch_size: int = 8, device=None, start: float | None = None,
                    end: float | None = None, speed: float = 1.0, keep_pitch: bool = True,
                    side_by_side=None, gif=None, gif_max_side: int | None = 320,
                    gif_max_bytes: int | None = 8 * 2**20, temporal_blend: float = 0.0, smooth: bool = True,
                    landmarker: Landmarker | None = None, align_reference: bool = True, crf: int = 18,
                    preset: str = "medium", progress: bool = True, verbose: bool = True,
                    require_faces: bool = False) -> VideoSummary:
    """Translate the video ``src`` into the H.264 MP4 ``out``, with the original sound, streaming.

    ``model``: StarGAN v2 :class:`~colab_utils.stargan.model.Nets` with ``reference`` (a face photo whose style
    is used; ``domain`` is the reference's domain; aligned first unless ``align_reference=False``) or with
    ``domain`` and ``seed`` (a random style of that domain); or any
    :class:`~colab_utils.video.frame_model.FrameModel`. One style code serves the whole clip.

    ``mode``: ``"faces"`` (find, align, translate and paste back the face of every frame; frames without one
    are kept and counted) or ``"whole"`` (the frames are face crops already). ``start``/``end`` trim the clip
    (seconds), ``speed`` plays the result faster or slower (the audio keeps its pitch with ``keep_pitch``,
    else it shifts like a tape). ``side_by_side``: also write ``source | result`` to this MP4. ``gif``: also
    write the result as a GIF, at most ``gif_max_side`` pixels wide or high and ``gif_max_bytes`` bytes.
    ``temporal_blend`` in [0, 1) smooths the faces over time; ``smooth`` smooths the landmarks. ``device``:
    where the model runs (default for Nets: CUDA when present; otherwise the model's own device).
    ``landmarker``: five-point landmarks per frame (default: a fresh ``make_landmarker("auto", video=True,
    fan=<the model's FAN>)``, i.e. MediaPipe, else the FAN loaded with the model, else a cached ``wing.ckpt``;
    one passed in keeps its tracking state, so give each clip its own). ``crf``/``preset``: the
    x264 quality and speed (``crf=0`` is lossless before the yuv420p colour subsampling). ``require_faces``:
    in faces mode, a clip where no frame has a face is a :class:`VideoError` and nothing is written (by
    default it is a warning and the output is the source unchanged).

    The output is encoded at the source's frame rate (a variable-rate source is resampled to its nominal rate)
    and appears at ``out`` (and ``side_by_side``) only when everything succeeded; the GIF is made from the
    finished MP4 afterwards, so a failing GIF leaves a good MP4. Raises :class:`VideoError` for an unreadable or
    empty file. Returns a :class:`VideoSummary` (also printed when ``verbose``)."""
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    targets = [Path(p) for p in (out, side_by_side, gif) if p is not None]
    if src.resolve() in {p.resolve() for p in targets}:
        raise ValueError(f"{src}: the output would overwrite the source; pick another name")
    if gif is not None and Path(gif).suffix.lower() != ".gif":
        raise ValueError(f"{gif}: the GIF output must end in .gif")
    info = probe(src)
    model = _resolve_model(model, reference, domain, seed, device, align_reference)

    notes: list[str] = []
    if info.variable_frame_rate:
        notes.append(f"{src.name} has a variable frame rate: resampled to a constant {info.fps:.3f} fps")
    if not info.has_audio:
        message = f"{src.name} has no audio stream: the output has no sound"
        warnings.warn(message, UserWarning, stacklevel=2)
        notes.append(message)
    if mode == "whole" and abs(info.width / info.height - 1) > 0.05:
        notes.append(f"whole mode: the {info.width}x{info.height} frames are squeezed to the model's square "
                     f"crops and stretched back (use mode='faces' for footage that is not a face crop)")
    audio_from = src if info.has_audio else None
    writer_args = dict(audio_from=audio_from, audio_start=start or 0.0, audio_end=end, speed=speed,
                       keep_pitch=keep_pitch, crf=crf, preset=preset)

    landmarker, own_landmarker = video_landmarker(model, landmarker) if mode == "faces" else (None, False)
    meter, frames, faces = FlickerMeter(), 0, 0
    with contextlib.ExitStack() as stack:
        if own_landmarker:
            stack.callback(landmarker.close)
        writer = stack.enter_context(VideoWriter(out, info.fps, **writer_args))
        pair_writer = (stack.enter_context(VideoWriter(side_by_side, info.fps, **writer_args))
                       if side_by_side is not None else None)
        decoded = stack.enter_context(contextlib.closing(iter_frames(src, start=start, end=end)))
        results = stack.enter_context(contextlib.closing(translate_frames(
            decoded, model, mode=mode, fps=info.fps, batch_size=batch_size, temporal_blend=temporal_blend,
            landmarker=landmarker, smooth=smooth, device=device)))
        bar = stack.enter_context(tqdm(total=_expected_frames(info, start, end), unit="frame",
                                       desc=f"translating {src.name}", disable=not progress))
        for result in results:
            writer.write(result.output)
            if pair_writer is not None:
                pair_writer.write(video_io.side_by_side(result.source, result.output))
            meter.update(result.source, result.output)
            frames += 1
            faces += result.translated
            bar.update(1)
            if frames % 10 == 0:
                bar.set_postfix(faces=faces, refresh=False)
        if frames == 0:
            raise VideoError(f"{src}: no frames between {start or 0.0:g} s and "
                             f"{'the end' if end is None else f'{end:g} s'} (the clip lasts {info.duration:.2f} s)")
        if require_faces and mode == "faces" and faces == 0:   # raised inside: the writers leave nothing
            raise VideoError(f"{src}: no face was found in any of its {frames} frames, so nothing was written (a "
                             f"larger, frontal face helps; whole mode takes frames that are face crops)")
    notes += [n for n in writer.notes if n not in notes]
    if mode == "faces" and faces == 0:
        message = (f"no face was found in any of the {frames} frames of {src.name}: the output is the source "
                   f"unchanged (a larger, frontal face helps; mode='whole' takes frames that are face crops)")
        warnings.warn(message, UserWarning, stacklevel=2)
        notes.append(message)

    gif_path = None
    if gif is not None:
        with contextlib.closing(iter_frames(out)) as written:
            gif_path = write_gif(written, gif, info.fps, max_side=gif_max_side, max_bytes=gif_max_bytes)

    seconds = time.perf_counter() - started
    summary = VideoSummary(
        output=out, mode=mode, frames=frames, faces_found=faces, frames_without_face=frames - faces,
        seconds=seconds, fps=info.fps, frames_per_second=frames / seconds if seconds > 0 else math.inf,
        flicker=meter.value, audio=audio_from is not None,
        side_by_side=Path(side_by_side) if side_by_side is not None else None, gif=gif_path, notes=notes,
        landmarks=landmarks_summary(landmarker) if landmarker is not None else None,
        audio_reason=None if audio_from is not None else "the source has no audio stream")
    if verbose:
        print(summary)
    return summary
