import inspect
import subprocess
import tracemalloc
import warnings
import wave

import numpy as np
import pytest

from colab_utils.data.synthetic_video import (SAMPLE_RATE, iter_synthetic_frames, make_synthetic_video,
                                              speech_envelope, write_wav)
from colab_utils.data.video_io import (VideoError, VideoWriter, audio_duration, extract_audio, ffmpeg_exe,
                                       iter_frames, probe, side_by_side, write_gif)

FPS, SECONDS, SIZE, SEED = 25, 2.0, 64, 0
ONE_FRAME = 1 / FPS


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_synthetic_video(tmp_path_factory.mktemp("clip") / "talk.mp4", seconds=SECONDS, fps=FPS,
                                size=SIZE, seed=SEED)


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def read_wav(path):
    with wave.open(str(path)) as f:
        rate, channels = f.getframerate(), f.getnchannels()
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768
    return samples.reshape(-1, channels).mean(axis=1), rate


def loudness_per_frame(samples, rate, n_frames, fps=FPS):
    """RMS of the audio in a one-frame window centred on each frame's time i / fps."""
    half = rate / fps / 2
    out = []
    for i in range(n_frames):
        a, b = max(0, int(i / fps * rate - half)), int(i / fps * rate + half)
        out.append(np.sqrt(np.mean(samples[a:b] ** 2)) if b > a else 0.0)
    return np.array(out)


def best_lag(signal, reference, max_lag=3):
    """The shift (in frames) that best lines ``signal`` up with ``reference``, and the correlation there."""
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        a = signal[max_lag + lag: len(signal) - max_lag + lag]
        b = reference[max_lag: len(reference) - max_lag]
        scores[lag] = np.corrcoef(a, b)[0, 1]
    lag = max(scores, key=scores.get)
    return lag, scores[lag]


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


# ----------------------------------------------------------------------------------------------- synthetic video

def test_synthetic_video_has_exact_frames_fps_and_sound(clip):
    info = probe(clip)
    assert info.n_frames == round(SECONDS * FPS) and info.n_frames_exact
    assert info.fps == FPS and not info.variable_frame_rate
    assert (info.width, info.height, info.codec) == (SIZE, SIZE, "h264")
    assert info.has_audio and info.audio_sample_rate == SAMPLE_RATE
    assert abs(info.audio_duration - SECONDS) < ONE_FRAME
    frames = list(iter_frames(clip))
    assert len(frames) == round(SECONDS * FPS)
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)


def test_synthetic_frames_survive_encoding_in_order(clip):
    rendered = [image for image, _ in iter_synthetic_frames(SECONDS, FPS, SIZE, SEED)]
    decoded = list(iter_frames(clip))
    for i in (0, 17, 33, len(decoded) - 1):
        errors = [np.abs(decoded[i].astype(int) - r.astype(int)).mean() for r in rendered]
        assert errors[i] < 5.0
        assert int(np.argmin(errors)) == i


def test_sound_follows_the_mouth(clip, tmp_path):
    wav = extract_audio(clip, tmp_path / "talk.wav")
    samples, rate = read_wav(wav)
    assert rate == SAMPLE_RATE
    n = round(SECONDS * FPS)
    lag, corr = best_lag(loudness_per_frame(samples, rate, n), speech_envelope(SECONDS, FPS, SEED))
    assert lag == 0 and corr > 0.9


def test_wide_shot_places_the_face_in_a_larger_frame(tmp_path):
    out = make_synthetic_video(tmp_path / "wide.mp4", seconds=0.4, fps=FPS, frame_size=(96, 64), audio=False)
    info = probe(out)
    assert (info.width, info.height, info.n_frames, info.has_audio) == (96, 64, 10, False)
    _, labels = next(iter(iter_synthetic_frames(0.4, FPS, frame_size=(96, 64))))
    face = np.argwhere(labels > 0)           # everything but the background
    assert labels.shape == (64, 96) and 0 < len(face) < 0.5 * labels.size
    assert (labels[0] == 0).all() and (labels[:, 0] == 0).all() and (labels[:, -1] == 0).all()


def test_portrait_clip_is_the_close_up_of_its_first_frame_face(tmp_path):
    from colab_utils.data.synthetic import PARTS, sample_face_params

    image, labels = next(iter(iter_synthetic_frames(0.4, FPS, size=64, seed=3, style="dark_brunette",
                                                    preset="portrait")))
    classic = next(iter(iter_synthetic_frames(0.4, FPS, size=64, seed=3, style="dark_brunette")))[1]
    skin = PARTS.index("skin")
    assert (labels == skin).mean() > 1.5 * (classic == skin).mean()     # a close-up: the face fills the frame
    params = sample_face_params(3, "dark_brunette", preset="portrait")
    assert params.zoom > 1.4 and set(np.unique(labels)) == set(range(len(PARTS)))
    out = make_synthetic_video(tmp_path / "portrait.mp4", seconds=0.4, fps=FPS, size=64, audio=False,
                               preset="portrait")
    assert probe(out).n_frames == 10
    with pytest.raises(ValueError, match="preset"):
        next(iter(iter_synthetic_frames(0.4, FPS, size=64, preset="headshot")))


def test_synthetic_video_rejects_odd_frame_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        make_synthetic_video(tmp_path / "odd.mp4", frame_size=(65, 48))
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------- reading

def test_iter_frames_is_lazy_and_memory_stays_flat(tmp_path):
    long_clip = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x128:rate=25", "-t", "24", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(long_clip))
    frames = iter_frames(long_clip)
    assert inspect.isgenerator(frames)
    frame_bytes = 128 * 128 * 3
    tracemalloc.start()
    try:
        first = next(frames)
        count = 1 + sum(1 for _ in frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.shape == (128, 128, 3) and count == 600
    assert peak < 8 * frame_bytes            # the whole clip would be 600 frames


def test_iter_frames_trims_and_resamples(clip):
    everything = list(iter_frames(clip))
    middle = list(iter_frames(clip, start=0.4, end=1.2))
    assert len(middle) == 20
    for i in (0, 7, 19):                     # frame i shows time start + i / fps
        assert np.abs(middle[i].astype(int) - everything[10 + i].astype(int)).mean() < 1.0
    assert len(list(iter_frames(clip, fps=10))) == round(SECONDS * 10)
    with pytest.raises(ValueError):
        iter_frames(clip, start=1.0, end=0.5)


def test_variable_frame_rate_is_normalised(tmp_path):
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=30", "-t", "2",
           "-vf", "setpts='(N/30+0.012*sin(N*1.7))/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
           str(vfr))
    info = probe(vfr)
    assert info.variable_frame_rate and info.fps == 30
    frames = list(iter_frames(vfr))
    assert len(frames) == info.n_frames and abs(len(frames) - 60) <= 1


def test_gif_input_decodes(clip, tmp_path):
    frames = list(iter_frames(clip, end=0.8))
    gif = write_gif(frames, tmp_path / "talk.gif", FPS)
    info = probe(gif)
    assert (info.codec, info.width, info.height, info.fps, info.has_audio) == ("gif", SIZE, SIZE, FPS, False)
    decoded = list(iter_frames(gif))
    assert len(decoded) == len(frames) == 20
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 8   # 256-colour palette


@pytest.mark.parametrize("content", [b"", bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8))])
def test_unreadable_file_names_the_file(tmp_path, content):
    bad = tmp_path / "broken_clip.mp4"
    bad.write_bytes(content)
    for call in (probe, iter_frames):
        with pytest.raises(VideoError, match="broken_clip.mp4"):
            call(bad)
    with pytest.raises(ValueError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_zero_frame_file_names_the_file(tmp_path):
    empty = tmp_path / "empty_clip.avi"
    ffmpeg("-f", "lavfi", "-i", "color=size=64x64:rate=25", "-frames:v", "0", str(empty))
    with pytest.raises(VideoError, match=r"empty_clip\.avi.*no frames"):
        probe(empty)
    audio_only = tmp_path / "voice.wav"
    write_wav(np.zeros(4410, np.float32), audio_only)
    with pytest.raises(VideoError, match=r"voice\.wav.*no video stream"):
        probe(audio_only)
    assert audio_duration(audio_only) == pytest.approx(0.1, abs=1e-3)


# ----------------------------------------------------------------------------------------------- writing

def test_writer_keeps_audio_in_sync(clip, tmp_path):
    out = tmp_path / "copy.mp4"
    with VideoWriter(out, FPS, audio_from=clip, preset="ultrafast") as writer:
        writer.write_batch(iter_frames(clip))
    info = probe(out)
    assert info.n_frames == round(SECONDS * FPS) and info.fps == FPS
    assert abs(info.audio_duration - info.duration) < ONE_FRAME
    samples, rate = read_wav(extract_audio(out, tmp_path / "copy.wav"))
    lag, corr = best_lag(loudness_per_frame(samples, rate, info.n_frames), speech_envelope(SECONDS, FPS, SEED))
    assert lag == 0 and corr > 0.9
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_writer_trims_audio_with_the_frames(clip, tmp_path):
    out = tmp_path / "trim.mp4"
    with VideoWriter(out, FPS, audio_from=clip, audio_start=0.4, audio_end=1.6, preset="ultrafast") as writer:
        writer.write_batch(iter_frames(clip, start=0.4, end=1.6))
    info = probe(out)
    assert info.n_frames == 30 and abs(info.audio_duration - 1.2) < ONE_FRAME
    samples, rate = read_wav(extract_audio(out, tmp_path / "trim.wav"))
    reference = speech_envelope(SECONDS, FPS, SEED)[10:40]
    lag, corr = best_lag(loudness_per_frame(samples, rate, 30), reference)
    assert lag == 0 and corr > 0.9


@pytest.fixture(scope="module")
def tone_clip(tmp_path_factory):
    """One second of grey frames with a 440 Hz tone."""
    folder = tmp_path_factory.mktemp("tone")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    wav = write_wav(0.5 * np.sin(2 * np.pi * 440 * t), folder / "tone.wav")
    with VideoWriter(folder / "tone.mp4", FPS, audio_from=wav, preset="ultrafast") as writer:
        for i in range(FPS):
            writer.write(np.full((48, 64, 3), 4 * i, np.uint8))
    return folder / "tone.mp4"


@pytest.mark.parametrize("keep_pitch, pitch", [(True, 440), (False, 880)])
def test_speed_two_halves_video_and_audio(tone_clip, tmp_path, keep_pitch, pitch):
    out = tmp_path / "fast.mp4"
    with VideoWriter(out, FPS, audio_from=tone_clip, speed=2, keep_pitch=keep_pitch,
                     preset="ultrafast") as writer:
        writer.write_batch(iter_frames(tone_clip))
    info = probe(out)
    assert abs(info.n_frames - FPS / 2) <= 1 and info.fps == FPS
    assert abs(info.duration - 0.5) <= ONE_FRAME
    assert abs(info.audio_duration - info.duration) < ONE_FRAME
    samples, rate = read_wav(extract_audio(out, tmp_path / "fast.wav"))
    assert dominant_frequency(samples[: int(0.4 * rate)], rate) == pytest.approx(pitch, rel=0.04)
    assert any("pitch" in note for note in writer.notes)


def test_odd_size_is_padded_and_decodes(tmp_path):
    out = tmp_path / "odd.mp4"
    y, x = np.mgrid[0:47, 0:65]
    frame = np.stack([x * 3, y * 5, np.full_like(x, 128)], -1).astype(np.uint8)
    with VideoWriter(out, FPS, preset="ultrafast", crf=0) as writer:
        writer.write_batch(np.stack([frame] * 5))
    assert any("65x47 to 66x48" in note for note in writer.notes)
    info = probe(out)
    assert (info.width, info.height, info.n_frames) == (66, 48, 5)
    decoded = next(iter_frames(out)).astype(int)
    assert np.abs(decoded[:47, :65] - frame).mean() < 3
    assert np.abs(decoded[:, 65] - decoded[:, 64]).mean() < 3      # the edge is repeated


def test_source_without_audio_gives_silent_video_and_one_warning(tmp_path):
    silent = make_synthetic_video(tmp_path / "silent.mp4", seconds=0.4, fps=FPS, size=32, audio=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with VideoWriter(tmp_path / "out.mp4", FPS, audio_from=silent, preset="ultrafast") as writer:
            writer.write_batch(iter_frames(silent))
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "silent.mp4 has no audio stream" in messages[0]
    info = probe(tmp_path / "out.mp4")
    assert info.n_frames == 10 and not info.has_audio and info.audio_duration is None
    assert audio_duration(tmp_path / "out.mp4") is None
    assert extract_audio(tmp_path / "out.mp4", tmp_path / "none.wav") is None
    assert not (tmp_path / "none.wav").exists()


def test_failure_mid_write_leaves_nothing(clip, tmp_path):
    out = tmp_path / "result.mp4"
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(out, FPS, audio_from=clip, preset="ultrafast") as writer:
            for i, frame in enumerate(iter_frames(clip)):
                if i == 10:
                    raise RuntimeError("model crashed")
                writer.write(frame)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_frames_and_empty_output(tmp_path):
    with pytest.raises(ValueError, match="frame 1 is 32x32"):
        with VideoWriter(tmp_path / "a.mp4", FPS) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "b.mp4", FPS) as writer:
            writer.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(VideoError, match="no frames"):
        with VideoWriter(tmp_path / "c.mp4", FPS):
            pass
    with pytest.raises(ValueError, match="H.264 MP4"):
        VideoWriter(tmp_path / "d.avi", FPS)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- GIFs, layout

def test_write_gif_respects_max_bytes(clip, tmp_path, capsys):
    frames = list(iter_frames(clip))
    free = write_gif(frames, tmp_path / "free.gif", FPS).stat().st_size
    capped = write_gif(frames, tmp_path / "capped.gif", FPS, max_bytes=free // 3)
    assert capped.stat().st_size <= free // 3
    said = capsys.readouterr().out
    assert "max_bytes" in said and ("scaled" in said or "every" in said)
    assert len(list(iter_frames(capped))) >= len(frames) // 4
    with pytest.raises(VideoError, match="cannot fit"):
        write_gif(frames, tmp_path / "tiny.gif", FPS, max_bytes=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capped.gif", "free.gif"]


def test_write_gif_max_side(clip, tmp_path):
    gif = write_gif(iter_frames(clip, end=0.4), tmp_path / "small.gif", FPS, max_side=32)
    info = probe(gif)
    assert (info.width, info.height, info.n_frames) == (32, 32, 10)


def test_side_by_side():
    left = np.zeros((40, 30, 3), np.uint8)
    right = np.full((20, 10, 3), 255, np.uint8)
    both = side_by_side(left, right)
    assert both.shape == (40, 50, 3) and (both[:, 30:] == 255).all() and (both[:, :30] == 0).all()
    with pytest.raises(ValueError):
        side_by_side(left, np.zeros((40, 30), np.uint8))


def test_short_audio_is_padded_to_the_video(clip, tmp_path):
    out = tmp_path / "padded.mp4"
    with VideoWriter(out, FPS, audio_from=clip, audio_end=0.5, preset="ultrafast") as writer:
        writer.write_batch(iter_frames(clip))
    info = probe(out)
    assert info.n_frames == round(SECONDS * FPS) and abs(info.audio_duration - SECONDS) < ONE_FRAME
    assert any("covers 0.50 s" in note for note in writer.notes)


def _ffmpeg_binaries():
    """This environment's ffmpeg, plus any named in ``COLAB_UTILS_TEST_FFMPEG`` (``os.pathsep``-separated):
    CI points it at the other environment's binary, so that the fresh install's ffmpeg 9 and Colab's ffmpeg 7
    (imageio-ffmpeg 0.6.0) are both checked from either side."""
    import os
    extra = [p for p in os.environ.get("COLAB_UTILS_TEST_FFMPEG", "").split(os.pathsep) if p]
    missing = [p for p in extra if not os.access(p, os.X_OK)]
    assert not missing, f"COLAB_UTILS_TEST_FFMPEG names binaries that are not there: {missing}"
    return [ffmpeg_exe(), *extra]


def _ffmpeg_version(exe):
    first = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    return first.split(" Copyright")[0]


@pytest.mark.parametrize("exe", _ffmpeg_binaries(), ids=lambda p: _ffmpeg_version(p).replace(" ", "_")[:40])
def test_written_video_is_probed_with_its_frame_count_on_every_ffmpeg(exe, clip, tmp_path, monkeypatch):
    # ffmpeg 7's -progress has no frame= line when streams are copied: a count that relied on it read 0.
    frames = [frame for frame, _ in zip(iter_frames(clip), range(17))]
    out = tmp_path / "written.mp4"
    with VideoWriter(out, fps=FPS) as writer:
        for frame in frames:
            writer.write(frame)
    monkeypatch.setattr("colab_utils.data.video_io.ffmpeg_exe", lambda: exe)
    info = probe(out)
    assert (info.n_frames, info.n_frames_exact) == (17, True), _ffmpeg_version(exe)
    assert info.duration == pytest.approx(17 / FPS)
    assert probe(clip).n_frames == int(SECONDS * FPS), _ffmpeg_version(exe)
    assert probe(clip).audio_duration == pytest.approx(SECONDS, abs=0.05), _ffmpeg_version(exe)
