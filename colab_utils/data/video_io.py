"""Streaming video and audio I/O on the ffmpeg binary that imageio-ffmpeg ships (no moviepy: it differs between
Colab's 1.0.3 and 2.x and pins pillow<12).

- :func:`probe` reads a file's header (``ffmpeg -i``) into a :class:`VideoInfo`.
- :func:`iter_frames` decodes one frame at a time through a pipe, resampled to a constant frame rate, so frame
  ``i`` shows time ``start + i / fps`` and memory stays flat however long the clip is.
- :class:`VideoWriter` pipes frames into libx264 (H.264, yuv420p, MP4), optionally changes the speed, and muxes
  a source's audio back in (trimmed, sped up, cut or padded to the video's exact length). It writes to a
  temporary file beside the destination and renames it into place only on success.
- :func:`extract_audio`, :func:`audio_duration`, :func:`write_gif` (with a size cap) and :func:`side_by_side`.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import imageio_ffmpeg
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
AUDIO_BITRATE = "192k"
EXACT_COUNT_MAX_BYTES = 256 * 2**20   # count frames by demuxing (no decoding) for files up to this size
EXACT_DECODE_MAX_PIXELS = 5e8        # decode-count a variable-rate clip up to this many pixels in all
GIF_MAX_FPS = 50                      # most GIF players clamp faster frame delays


class VideoError(ValueError):
    """A file that cannot be read or written as video; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a clip. ``fps`` is the constant rate :func:`iter_frames` delivers
    (a variable-rate source is resampled to it); ``width``/``height`` are the decoded frame size (rotation
    metadata applied); ``n_frames`` is exact when ``n_frames_exact``, otherwise ``round(duration * fps)``;
    ``duration`` is the video's length in seconds."""

    path: Path
    fps: float
    width: int
    height: int
    n_frames: int
    duration: float
    has_audio: bool
    audio_duration: float | None
    codec: str
    variable_frame_rate: bool
    n_frames_exact: bool = True
    audio_sample_rate: int | None = None


# ----------------------------------------------------------------------------------------------- ffmpeg calls

def ffmpeg_exe() -> str:
    """The ffmpeg binary (imageio-ffmpeg's bundled one, or ``IMAGEIO_FFMPEG_EXE``)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True)


def _last_error_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg gave no message"


def _progress(args: list[str], path) -> dict[str, str]:
    """Run ffmpeg with machine-readable progress (``-progress pipe:1``) and return its final key=value block."""
    proc = _run(["-nostats", "-progress", "pipe:1", *args])
    if proc.returncode != 0:
        raise VideoError(f"{path}: ffmpeg could not read it ({_last_error_line(proc.stderr)})")
    values: dict[str, str] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


# ----------------------------------------------------------------------------------------------- probing

@dataclass
class _Stream:
    kind: str                       # "video" or "audio"
    codec: str
    width: int = 0
    height: int = 0
    fps: float | None = None        # average frame rate
    tbr: float | None = None        # ffmpeg's guess of the real base rate
    rotation: float = 0.0
    sample_rate: int | None = None


@dataclass
class _Header:
    duration: float | None
    streams: list[_Stream] = field(default_factory=list)

    def first(self, kind: str) -> _Stream | None:
        return next((s for s in self.streams if s.kind == kind), None)


_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_SIZE = re.compile(r", (\d+)x(\d+)")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_HZ = re.compile(r"(\d+) Hz")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|^\s*rotate\s*:\s*(-?\d+)")


def _header(path) -> _Header:
    """Parse ``ffmpeg -i path`` (which exits with an error because it has no output: expected)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    proc = _run(["-i", str(path)])
    text = proc.stderr.decode(errors="replace")
    if "Invalid data found" in text or "Error opening input" in text or "could not find codec" in text:
        raise VideoError(f"{path}: not a readable video or audio file ({_last_error_line(proc.stderr)})")
    match = _DURATION.search(text)
    header = _Header(duration=int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) if match else None)
    current = None
    for line in text.splitlines():
        stream = _STREAM.match(line)
        if stream:
            current = None
            kind, rest = stream[1].lower(), stream[2]
            if "(attached pic)" in rest:            # cover art in an audio file, not a video
                continue
            current = _Stream(kind=kind, codec=rest.split(None, 1)[0].rstrip(","))
            if kind == "video":
                size = _SIZE.search(rest)
                if size:
                    current.width, current.height = int(size[1]), int(size[2])
                for value, kilo, name in _RATE.findall(rest):
                    setattr(current, name, float(value) * (1000 if kilo else 1))
            else:
                hz = _HZ.search(rest)
                current.sample_rate = int(hz[1]) if hz else None
            header.streams.append(current)
        elif line.lstrip().startswith(("Stream #", "Output #", "Input #1")):
            current = None
        elif current is not None and current.kind == "video":
            rotation = _ROTATION.search(line)
            if rotation:
                current.rotation = float(rotation[1] or rotation[2])
    return header


_STANDARD_RATES = (24, 25, 30, 48, 50, 60, 90, 100, 120)


def exact_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: ffmpeg prints 29.97 for 30000/1001, which must stay exact or a
    resampling filter drops a frame now and then."""
    if isinstance(fps, Fraction):
        return fps
    fps = float(fps)
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps}")
    for k in _STANDARD_RATES:
        if abs(fps - k * 1000 / 1001) < 0.006:
            return Fraction(k * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _nominal_rate(stream: _Stream) -> tuple[Fraction, bool]:
    """The constant rate to deliver, and whether the source looked variable-rate (average fps != base rate)."""
    fps, tbr = stream.fps, stream.tbr
    if not fps and not tbr:
        return Fraction(25), True
    if fps and tbr and abs(fps - tbr) > 0.01 * tbr:
        # Variable frame rate: prefer the base rate when it is a standard rate a little above the average
        # (a phone's 29.87 average over 30 tbr, a 30 fps clip with dropped frames), else the average
        # (a screen capture averaging 12 fps over a 60 tbr time base).
        standard = any(abs(tbr - k) < 0.01 or abs(tbr - k * 1000 / 1001) < 0.01 for k in _STANDARD_RATES)
        return exact_rate(tbr if standard and 0.95 * fps <= tbr <= 1.5 * fps else fps), True
    return exact_rate(fps or tbr), False


def _count_framecrc(args: list[str], path) -> int:
    """Run ffmpeg with the ``framecrc`` muxer on stdout and count its lines: one line per packet (or decoded
    frame) of the single mapped stream. Unlike ``-progress``'s ``frame=`` counter, which ffmpeg 7 leaves out
    when streams are copied, this output has kept one format from ffmpeg 4 to 9."""
    proc = _run(["-nostats", *args, "-f", "framecrc", "-"])
    if proc.returncode != 0:
        raise VideoError(f"{path}: ffmpeg could not read it ({_last_error_line(proc.stderr)})")
    return sum(1 for line in proc.stdout.splitlines() if line[:1].isdigit())


def _count_packets(path: Path) -> int:
    """Frames in the first video stream, counted by demuxing only (no decoding)."""
    return _count_framecrc(["-i", str(path), "-map", "0:v:0", "-c", "copy"], path)


def _count_resampled(path: Path, rate: Fraction) -> int:
    """Frames that :func:`iter_frames` delivers at ``rate``, by decoding through the same ``fps`` filter."""
    return _count_framecrc(["-i", str(path), "-map", "0:v:0", "-vf", f"fps={rate}"], path)


def probe(path) -> VideoInfo:
    """Read what a video file holds. Raises :class:`VideoError` for a missing or unreadable file, a file with
    no video stream, or a video stream with no frames."""
    path = Path(path)
    header = _header(path)
    video = header.first("video")
    if video is None:
        raise VideoError(f"{path}: has no video stream (an audio-only or empty file?)")
    if not video.width or not video.height:
        raise VideoError(f"{path}: the video stream has no frame size ffmpeg can read")
    rate, variable = _nominal_rate(video)
    width, height = video.width, video.height
    if round(abs(video.rotation)) % 180 == 90:
        width, height = height, width
    audio = header.first("audio")

    small_file = path.stat().st_size <= EXACT_COUNT_MAX_BYTES
    if not variable and (small_file or not header.duration):
        n_frames, exact = _count_packets(path), True
    elif variable and (not header.duration
                       or width * height * header.duration * rate <= EXACT_DECODE_MAX_PIXELS):
        n_frames, exact = _count_resampled(path, rate), True
    else:
        n_frames, exact = round(header.duration * rate), False
    duration = float(n_frames / rate) if exact else float(header.duration)
    if n_frames <= 0:
        raise VideoError(f"{path}: the video stream has no frames")
    return VideoInfo(
        path=path, fps=float(rate), width=width, height=height, n_frames=int(n_frames), duration=float(duration),
        has_audio=audio is not None, audio_duration=audio_duration(path) if audio is not None else None,
        codec=video.codec, variable_frame_rate=variable, n_frames_exact=exact,
        audio_sample_rate=audio.sample_rate if audio is not None else None)


def audio_duration(path) -> float | None:
    """Length in seconds of the first audio stream, by decoding it (``-f null``); ``None`` when there is none."""
    path = Path(path)
    if _header(path).first("audio") is None:
        return None
    values = _progress(["-i", str(path), "-map", "0:a:0", "-vn", "-f", "null", "-"], path)
    micro = values.get("out_time_us") or values.get("out_time_ms")   # both are microseconds in ffmpeg
    if not micro or not micro.lstrip("-").isdigit():
        raise VideoError(f"{path}: could not measure the audio stream's duration")
    return max(int(micro), 0) / 1e6


def extract_audio(path, out_wav) -> Path | None:
    """Write the first audio stream of ``path`` as 16-bit PCM WAV (sample rate and channels kept).
    Returns the WAV's path, or ``None`` (and writes nothing) when the file has no audio."""
    path, out_wav = Path(path), Path(out_wav)
    if _header(path).first("audio") is None:
        return None
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with _staged(out_wav, ".wav") as tmp:
        proc = _run(["-y", "-i", str(path), "-map", "0:a:0", "-vn", "-c:a", "pcm_s16le", "-f", "wav", str(tmp)])
        if proc.returncode != 0:
            raise VideoError(f"{path}: could not extract its audio ({_last_error_line(proc.stderr)})")
    return out_wav


def _temp_name(dest: Path, suffix: str) -> Path:
    """A hidden, unused name beside ``dest`` for ffmpeg to create (so the file gets the usual permissions,
    which ``mkstemp``'s 0600 would not)."""
    return dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part{suffix}"


class _staged:
    """A temporary file beside ``dest`` that replaces ``dest`` on a clean exit and is removed otherwise."""

    def __init__(self, dest: Path, suffix: str):
        self.tmp, self.dest = _temp_name(dest, suffix), dest

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


# ----------------------------------------------------------------------------------------------- reading

def iter_frames(path, *, start: float | None = None, end: float | None = None,
                fps: float | None = None) -> Iterator[np.ndarray]:
    """Decode ``path`` one frame at a time as ``HxWx3`` uint8 RGB arrays, from ``start`` to ``end`` seconds.

    Frames come at a constant ``fps`` (default: the clip's own rate; a variable-rate clip is resampled to its
    nominal rate by ffmpeg's ``fps`` filter), so frame ``i`` shows time ``start + i / fps``. Only one frame is
    in memory at a time. Works for anything ffmpeg decodes (mp4, mov, avi, webm, gif, ...). The file is
    probed here, so a bad file raises :class:`VideoError` at the call, not at the first frame."""
    info = probe(path)
    start = 0.0 if start is None else float(start)
    if start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    if end is not None and not float(end) > start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    rate = exact_rate(fps if fps is not None else info.fps)
    input_params = ["-ss", f"{start:.6f}"] if start > 0 else []
    output_params = ["-map", "0:v:0", "-vf", f"fps={rate}", "-an", "-sn", "-dn"]
    if end is not None:
        output_params += ["-t", f"{float(end) - start:.6f}"]
    return _frames(info.path, input_params, output_params, info.width, info.height)


def _frames(path: Path, input_params: list[str], output_params: list[str], width: int,
            height: int) -> Iterator[np.ndarray]:
    """Pipe raw RGB frames out of ffmpeg. (imageio_ffmpeg.read_frames would do, but it polls up to 10 s for
    ffmpeg's header and leaves both pipes open after a normal end; the size is known from the probe.)"""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *input_params, "-i", str(path),
           *output_params, "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as log:     # a file, not a pipe: a chatty ffmpeg can never block on it
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            while True:
                buffer = bytearray(frame_bytes)
                view, filled = memoryview(buffer), 0
                while filled < frame_bytes:
                    n = proc.stdout.readinto(view[filled:])
                    if not n:
                        break
                    filled += n
                if filled < frame_bytes:
                    break
                yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
            returncode = proc.wait()
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if returncode != 0 or filled:
            log.seek(0)
            message = _last_error_line(log.read())
            problem = (f"ended inside a frame ({filled} of {frame_bytes} bytes)" if filled and not returncode
                       else f"ffmpeg failed part-way ({message})")
            raise VideoError(f"{path}: decoding {problem}")


# ----------------------------------------------------------------------------------------------- writing

def _exact_input_rate(rate: Fraction) -> list[str]:
    """imageio-ffmpeg before 0.7 passes the input rate as ``"%.2f" % fps`` (29.97 for 30000/1001); a second
    ``-r`` among the input options overrides it with the exact fraction."""
    return ["-r", f"{rate.numerator}/{rate.denominator}"]


def _atempo_chain(speed: float) -> list[str]:
    """``atempo`` takes factors in [0.5, 2] on older ffmpeg builds: split larger changes into a product."""
    filters = []
    while speed > 2.0:
        filters.append("atempo=2.0")
        speed /= 2.0
    while speed < 0.5:
        filters.append("atempo=0.5")
        speed /= 0.5
    if abs(speed - 1.0) > 1e-9:
        filters.append(f"atempo={speed:.6f}")
    return filters


class VideoWriter:
    """Write frames to an H.264 (yuv420p) MP4, optionally with the audio of another file muxed in sync.

    ``fps`` is the output rate. ``size=(width, height)`` or ``None`` (taken from the first frame); odd sizes
    are padded to even by repeating the last row/column (the encoder needs even sizes; recorded in
    ``notes``). ``speed`` plays the written frames that many times faster (frames are dropped or repeated by
    ffmpeg's ``fps`` filter so the output stays at ``fps``); write the source's frames at its own rate.

    ``audio_from``: a file whose first audio stream is trimmed to ``[audio_start, audio_end]`` seconds (its own
    timeline), sped up by ``speed`` (``atempo`` keeps the pitch; ``keep_pitch=False`` resamples with
    ``asetrate`` and so shifts the pitch, like a tape), then padded with silence or cut to the video's exact
    length and encoded as AAC. A source without audio gives a silent video and one warning.

    Use as a context manager: the file appears at ``path`` only when the block exits cleanly; on an
    exception the temporary files are removed and nothing is left at ``path``."""

    def __init__(self, path, fps: float, size: tuple[int, int] | None = None, *, audio_from=None,
                 audio_start: float = 0.0, audio_end: float | None = None, speed: float = 1.0,
                 keep_pitch: bool = True, crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"{self.path}: VideoWriter writes H.264 MP4; use a name ending in "
                             f"{' / '.join(VIDEO_SUFFIXES)} (write_gif writes GIFs)")
        self.fps = exact_rate(fps)
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        if not (isinstance(crf, int) and 0 <= crf <= 51):
            raise ValueError(f"crf must be an integer from 0 (lossless) to 51, got {crf!r}")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
        if audio_start < 0 or (audio_end is not None and not audio_end > audio_start):
            raise ValueError(f"audio trim must satisfy 0 <= audio_start < audio_end, got "
                             f"[{audio_start}, {audio_end}]")
        self.speed, self.keep_pitch, self.crf, self.preset = float(speed), bool(keep_pitch), crf, preset
        self.audio_start, self.audio_end = float(audio_start), audio_end
        self.notes: list[str] = []
        self.n_written = 0
        self.size = None if size is None else (int(size[0]), int(size[1]))

        self.audio_from, self._sample_rate = None, None
        if audio_from is not None:
            audio = _header(audio_from).first("audio")
            if audio is None:
                message = f"{audio_from} has no audio stream: {self.path} is written without sound"
                warnings.warn(message, UserWarning, stacklevel=2)
                self.notes.append(message)
            else:
                self.audio_from, self._sample_rate = Path(audio_from), audio.sample_rate or 44100

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temps: list[Path] = []
        self._video_tmp = self._temp(".mp4")
        self._encoder = None
        self._padded = None
        self._done = False

    # -- context manager
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):
        try:
            if not self._done:
                self.abort()
        except Exception:
            pass

    # -- frames
    def write(self, frame: np.ndarray) -> None:
        """Append one ``HxWx3`` uint8 RGB frame."""
        if self._done:
            raise RuntimeError(f"{self.path}: the writer is already closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frame {self.n_written} must be an HxWx3 uint8 RGB array, got "
                             f"shape {frame.shape} dtype {frame.dtype}")
        height, width = frame.shape[:2]
        if self.size is None:
            self.size = (width, height)
        if (width, height) != self.size:
            raise ValueError(f"{self.path}: frame {self.n_written} is {width}x{height}, the video is "
                             f"{self.size[0]}x{self.size[1]}")
        if self._encoder is None:
            self._start_encoder()
        if self._padded is not None:
            pad_w, pad_h = self._padded[0] - width, self._padded[1] - height
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        try:
            self._encoder.send(np.ascontiguousarray(frame))
        except OSError as err:
            self.abort()
            raise VideoError(f"{self.path}: the encoder stopped ({err})") from err
        self.n_written += 1

    def write_batch(self, frames) -> None:
        """Append frames from an ``NxHxWx3`` array or any iterable of frames."""
        for frame in frames:
            self.write(frame)

    def _start_encoder(self) -> None:
        width, height = self.size
        if width % 2 or height % 2:
            self._padded = (width + width % 2, height + height % 2)
            self.notes.append(f"padded {width}x{height} to {self._padded[0]}x{self._padded[1]} by repeating "
                              f"the edge (H.264 yuv420p needs even sizes)")
        filters = [] if self.speed == 1.0 else [f"setpts=PTS/{self.speed:.6f}", f"fps={self.fps}"]
        output_params = ["-crf", str(self.crf), "-preset", self.preset, "-f", "mp4"]
        if filters:
            output_params = ["-vf", ",".join(filters)] + output_params
        self._encoder = imageio_ffmpeg.write_frames(
            str(self._video_tmp), self._padded or self.size, fps=float(self.fps), quality=None, codec="libx264",
            pix_fmt_out="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
            input_params=_exact_input_rate(self.fps), output_params=output_params)
        self._encoder.send(None)

    # -- finishing
    def close(self) -> Path:
        """Finish encoding, mux the audio, and move the result to ``path``. Returns ``path``."""
        if self._done:
            return self.path
        try:
            if self.n_written == 0:
                raise VideoError(f"{self.path}: no frames were written")
            self._encoder.close()
            self._encoder = None
            info = probe(self._video_tmp)
            if self.speed != 1.0:
                self.notes.append(f"speed x{self.speed:g}: {self.n_written} frames written, "
                                  f"{info.n_frames} in the output at {float(self.fps):g} fps")
            result = self._video_tmp
            if self.audio_from is not None:
                result = self._mux_audio(info.n_frames / self.fps)
            os.replace(result, self.path)
        except BaseException:
            self.abort()
            raise
        self._remove_temps()
        self._done = True
        return self.path

    def abort(self) -> None:
        """Stop without writing anything to ``path``; remove the temporary files."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            try:
                encoder.close()
            except Exception:
                pass
        self._remove_temps()
        self._done = True

    def _temp(self, suffix: str) -> Path:
        self._temps.append(_temp_name(self.path, suffix))
        return self._temps[-1]

    def _remove_temps(self) -> None:
        for tmp in self._temps:
            tmp.unlink(missing_ok=True)
        self._temps.clear()

    def _audio_filters(self) -> list[str]:
        if self.speed == 1.0:
            return []
        if self.keep_pitch:
            self.notes.append(f"audio sped up x{self.speed:g} with its pitch kept (atempo)")
            return _atempo_chain(self.speed)
        rate = self._sample_rate
        self.notes.append(f"audio sped up x{self.speed:g} with its pitch shifted (asetrate)")
        return [f"asetrate={round(rate * self.speed)}", f"aresample={rate}"]

    def _mux_audio(self, video_seconds: Fraction) -> Path:
        """Copy the video stream and add the source's audio, trimmed, sped up and fitted to the video."""
        out = self._temp(".mp4")
        seconds = f"{float(video_seconds):.6f}"
        source_end = audio_duration(self.audio_from) or 0.0
        if self.audio_end is not None:
            source_end = min(source_end, self.audio_end)
        covered = max(0.0, source_end - self.audio_start) / self.speed
        if covered < float(video_seconds) - 1 / float(self.fps):
            self.notes.append(f"the audio of {self.audio_from.name} covers {covered:.2f} s of the "
                              f"{float(video_seconds):.2f} s video: padded with silence")
        trim = ["-ss", f"{self.audio_start:.6f}"] if self.audio_start > 0 else []
        if self.audio_end is not None:
            trim += ["-t", f"{self.audio_end - self.audio_start:.6f}"]
        # apad makes the audio endless, the output -t cuts both streams at the video's last frame.
        filters = self._audio_filters() + ["apad"]
        proc = _run(["-y", "-i", str(self._video_tmp), *trim, "-i", str(self.audio_from),
                     "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-af", ",".join(filters),
                     "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-t", seconds, "-movflags", "+faststart",
                     "-f", "mp4", str(out)])
        if proc.returncode != 0:
            raise VideoError(f"{self.path}: could not mux the audio of {self.audio_from} "
                             f"({_last_error_line(proc.stderr)})")
        return out


# ----------------------------------------------------------------------------------------------- GIFs and layout

def _even_fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


def write_gif(frames: Iterable[np.ndarray], path, fps: float, *, max_side: int | None = None,
              max_bytes: int | None = None) -> Path:
    """Write frames as a looping GIF (ffmpeg's two-pass palette: one 256-colour palette for the clip).

    The frames are streamed once into a lossless temporary file beside ``path``, so memory stays flat.
    ``max_side`` caps the longer side. Above ``GIF_MAX_FPS`` frames are dropped (players clamp faster GIFs).
    ``max_bytes`` caps the file size: the GIF is re-encoded smaller, first by downscaling to half its side
    (not below 32 px), then by keeping 1 frame in 2 or 3 (while at least 5 fps remain), then by downscaling
    to 32 px. What was done is printed. Raises :class:`VideoError`, writing nothing, if even that is too big."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"{path}: write_gif writes .gif files")
    rate = exact_rate(fps)
    if max_side is not None and not (isinstance(max_side, int) and max_side >= 2):
        raise ValueError(f"max_side must be an integer >= 2, got {max_side!r}")
    if max_bytes is not None and not (isinstance(max_bytes, int) and max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    path.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        source, candidate = Path(scratch) / "frames.mkv", Path(scratch) / "out.gif"
        width, height = _write_lossless(frames, source, rate, path)
        side = max(width, height) if max_side is None else min(max_side, max(width, height))
        size, step, n_bytes = _fit_gif(source, candidate, (width, height), side, rate, max_bytes, path)
        os.replace(candidate, path)
    done = []
    if size != (width, height):
        done.append(f"scaled {width}x{height} to {size[0]}x{size[1]}")
    if step > 1:
        done.append(f"kept 1 frame in {step} ({float(rate / step):.3g} fps)")
    if done:
        cap = f" to fit max_bytes={max_bytes}" if max_bytes is not None else ""
        print(f"write_gif {path.name}{cap}: " + "; ".join(done) + f" ({n_bytes} bytes)")
    return path


def _fit_gif(source: Path, target: Path, frame_size: tuple[int, int], side: int, rate: Fraction,
             max_bytes: int | None, path: Path) -> tuple[tuple[int, int], int, int]:
    """Encode, and re-encode smaller until under ``max_bytes``. Returns (size, frame step, bytes)."""
    step = max(1, math.ceil(float(rate) / GIF_MAX_FPS))
    max_step = step * 3
    half_side = max(32, side // 2)
    for _ in range(16):
        size = _even_fit(*frame_size, side)
        _encode_gif(source, target, rate / step, size, path)
        n_bytes = target.stat().st_size
        if max_bytes is None or n_bytes <= max_bytes:
            return size, step, n_bytes
        shrink = math.sqrt(max_bytes / n_bytes) * 0.95      # bytes grow roughly with the area
        if side > half_side:
            side = max(half_side, min(side - 2, round(side * shrink)))
        elif step < max_step and float(rate) / (step + 1) >= 5:
            step += 1
        elif side > 32:
            side = max(32, min(side - 2, round(side * shrink)))
        else:
            break
    raise VideoError(f"{path}: cannot fit under max_bytes={max_bytes} (still {n_bytes} bytes at "
                     f"{size[0]}x{size[1]}, 1 frame in {step})")


def _write_lossless(frames: Iterable[np.ndarray], target: Path, rate: Fraction, path: Path) -> tuple[int, int]:
    encoder, size, count = None, None, 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"{path}: frame {count} must be an HxWx3 uint8 RGB array, got shape "
                                 f"{frame.shape} dtype {frame.dtype}")
            if encoder is None:
                size = (frame.shape[1], frame.shape[0])
                encoder = imageio_ffmpeg.write_frames(
                    str(target), size, fps=float(rate), quality=None, codec="ffv1", pix_fmt_out="bgr0",
                    macro_block_size=1, ffmpeg_log_level="error", input_params=_exact_input_rate(rate),
                    output_params=["-f", "matroska"])
                encoder.send(None)
            elif (frame.shape[1], frame.shape[0]) != size:
                raise ValueError(f"{path}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, the first "
                                 f"was {size[0]}x{size[1]}")
            encoder.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        if encoder is not None:
            encoder.close()
    if count == 0:
        raise VideoError(f"{path}: no frames to write")
    return size


def _encode_gif(source: Path, target: Path, rate: Fraction, size: tuple[int, int], path: Path) -> None:
    scale = f"fps={rate},scale={size[0]}:{size[1]}:flags=lanczos"
    palette = target.with_name("palette.png")
    steps = [
        ["-y", "-i", str(source), "-vf", f"{scale},palettegen=stats_mode=diff", "-update", "1", str(palette)],
        ["-y", "-i", str(source), "-i", str(palette), "-lavfi",
         f"{scale}[v];[v][1:v]paletteuse=dither=bayer:bayer_scale=4", "-loop", "0", "-f", "gif", str(target)],
    ]
    for args in steps:
        proc = _run(args)
        if proc.returncode != 0:
            raise VideoError(f"{path}: ffmpeg could not encode the GIF ({_last_error_line(proc.stderr)})")


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left | right`` as one frame. A ``right`` of another height is resized to ``left``'s height,
    keeping its aspect ratio."""
    left, right = np.asarray(left), np.asarray(right)
    for name, frame in (("left", left), ("right", right)):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"side_by_side: {name} must be an HxWx3 uint8 array, got shape {frame.shape} "
                             f"dtype {frame.dtype}")
    if right.shape[0] != left.shape[0]:
        from PIL import Image
        height = left.shape[0]
        width = max(1, round(right.shape[1] * height / right.shape[0]))
        right = np.asarray(Image.fromarray(right).resize((width, height), Image.BILINEAR))
    return np.concatenate([left, right], axis=1)
