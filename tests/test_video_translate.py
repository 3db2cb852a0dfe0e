"""Video transfer (issue 7): streaming translation with aligned faces, the original sound, and a flicker metric."""
import math
import subprocess
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils.data.synthetic_video import make_synthetic_video
from colab_utils.data.video_io import VideoError, ffmpeg_exe, iter_frames, probe
from colab_utils.stargan import StarGANConfig, build_nets
from colab_utils.stargan.align import face_mask, paste_back, warp_affine
from colab_utils.video import (FlickerMeter, StarGANFrameModel, flicker, to_tensor, to_uint8, translate_frames,
                               translate_video)
from colab_utils.video.faces import FaceTracker

pytestmark = pytest.mark.filterwarnings("ignore:crop.mp4 has no audio stream:UserWarning")

FPS, SECONDS = 10, 1.0
ONE_FRAME = 1 / FPS
FAST = dict(preset="ultrafast", progress=False, verbose=False)
LOSSLESS = dict(FAST, crf=0)


class Mirror:
    """A cheap stand-in for StarGAN: negative colours, mirrored left-right (non-local, so a wrong crop shows)."""

    size = 64

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("model crashed")
        return torch.flip(-x, dims=[3])


class Noisy:
    """Identity plus fresh seeded noise at every call: a model whose details change from frame to frame."""

    size = 32

    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, x):
        return (x + 0.3 * torch.randn(x.shape, generator=self.generator)).clamp(-1, 1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A talking face in a wider shot, with sound."""
    return make_synthetic_video(tmp_path_factory.mktemp("clip") / "talk.mp4", seconds=SECONDS, fps=FPS,
                                frame_size=(128, 96), face_fraction=0.8, seed=1)


@pytest.fixture(scope="module")
def crop_clip(tmp_path_factory):
    """A clip that is already a face crop (for whole mode), without sound."""
    return make_synthetic_video(tmp_path_factory.mktemp("crop") / "crop.mp4", seconds=SECONDS, fps=FPS, size=64,
                                audio=False)


def landmarker():
    from colab_utils.stargan.landmarks import make_landmarker, mediapipe_status

    usable, why = mediapipe_status()
    if not usable:
        pytest.skip(f"MediaPipe landmarks: {why} (faces mode through the FAN: tests/test_landmarks.py)")
    return make_landmarker("mediapipe", video=True)


def reference_pipeline(frames, model, fps=FPS):
    """The faces pipeline written out plainly, in memory: smoothed landmarks -> aligned crop -> model ->
    inverse warp under the feathered mask."""
    tracker, mask, out = FaceTracker(landmarker(), fps), face_mask(model.size), []
    for frame in frames:
        matrix = tracker.matrix(frame, model.size)
        if matrix is None:
            out.append(frame)
            continue
        crop = warp_affine(frame, matrix, model.size)
        translated = to_uint8(model(to_tensor([crop])))[0]
        out.append(paste_back(frame, translated, matrix, mask=mask))
    return out


def mean_error(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


class NoFace:
    """A landmarker that never finds a face."""

    description = "finds no face"

    def __call__(self, frame):
        return None


def test_a_video_without_a_face_warns(clip, tmp_path):
    with pytest.warns(UserWarning, match=r"no face was found in any of the 10 frames of talk\.mp4: the output is "
                                         r"the source unchanged") as caught:
        summary = translate_video(clip, tmp_path / "out.mp4", Mirror(), landmarker=NoFace(), **FAST)
    said = [str(w.message) for w in caught if "no face was found" in str(w.message)]
    assert (summary.frames, summary.faces_found) == (10, 0) and len(said) == 1 and said[0] in summary.notes


# ----------------------------------------------------------------------------------------------- faces mode

def test_faces_output_keeps_frames_fps_and_sound_and_matches_the_model(clip, tmp_path):
    landmarker()   # the default landmarks here are MediaPipe's (tests/test_landmarks.py runs faces mode with the FAN)
    out = tmp_path / "result.mp4"
    summary = translate_video(clip, out, Mirror(), batch_size=3, **LOSSLESS)
    source, result = probe(clip), probe(out)
    assert result.n_frames == source.n_frames == round(SECONDS * FPS) and result.fps == source.fps
    assert result.has_audio and abs(result.audio_duration - result.duration) < ONE_FRAME
    assert abs(result.audio_duration - source.audio_duration) < ONE_FRAME
    assert (summary.frames, summary.faces_found, summary.frames_without_face) == (10, 10, 0)
    assert summary.output == out and summary.audio and summary.fps == FPS

    frames_in = list(iter_frames(clip))
    expected = reference_pipeline(frames_in, Mirror())
    written = list(iter_frames(out))
    for i in (0, 2, 4, 9):      # yuv420p costs ~1.3 levels; unsmoothed landmarks would be off by 4-6
        codec = mean_error(written[i], expected[i])
        changed = mean_error(expected[i], frames_in[i])
        assert codec < 2.0 and changed > 8 * codec, (i, codec, changed)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_translate_frames_is_exactly_the_plain_pipeline_at_any_batch_size(clip):
    frames_in = list(iter_frames(clip))[:6]
    expected = reference_pipeline(frames_in, Mirror())
    for batch_size in (1, 4):
        results = list(translate_frames(iter(frames_in), Mirror(), fps=FPS, batch_size=batch_size,
                                        landmarker=landmarker()))
        assert [r.translated for r in results] == [True] * 6
        for r, frame, want in zip(results, frames_in, expected):
            assert r.source is frame
            np.testing.assert_array_equal(r.output, want)


def test_frames_without_a_face_pass_unchanged_and_are_counted():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 80, 3), np.uint8) for _ in range(4)]
    script = iter([None, np.array([[20., 30], [44, 30], [32, 40], [24, 48], [40, 48]]), None, None])
    results = list(translate_frames(frames, Mirror(), landmarker=lambda frame: next(script), batch_size=3))
    assert [r.translated for r in results] == [False, True, False, False]
    for i in (0, 2, 3):
        assert results[i].output is frames[i]
    assert not np.array_equal(results[1].output, frames[1])


# ----------------------------------------------------------------------------------------------- whole mode, options

def test_whole_mode_without_audio_says_so_once(crop_clip, tmp_path):
    out, pair = tmp_path / "crop_out.mp4", tmp_path / "pair.mp4"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = translate_video(crop_clip, out, Mirror(), mode="whole", side_by_side=pair, **LOSSLESS)
    said = [w for w in caught if "no audio" in str(w.message)]
    assert len(said) == 1 and "crop.mp4" in str(said[0].message)
    assert not summary.audio and not probe(out).has_audio and not probe(pair).has_audio
    assert summary.faces_found == summary.frames == probe(crop_clip).n_frames
    frames_in, written = list(iter_frames(crop_clip)), list(iter_frames(out))
    pairs = list(iter_frames(pair))
    assert len(written) == len(pairs) == len(frames_in) and pairs[0].shape == (64, 128, 3)
    for i in (0, 5):
        expected = 255 - frames_in[i][:, ::-1]
        assert mean_error(written[i], expected) < 1.5
        assert mean_error(pairs[i][:, :64], frames_in[i]) < 1.5 and mean_error(pairs[i][:, 64:], expected) < 1.5


def test_trim_speed_gif_and_odd_size(clip, tmp_path):
    odd = tmp_path / "odd.mkv"         # 65x49 frames with the clip's sound (lossless FFV1 takes odd sizes)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-vf", "scale=65:49", "-c:v", "ffv1",
                    "-c:a", "copy", str(odd)], check=True)
    out, gif = tmp_path / "odd_out.mp4", tmp_path / "odd_out.gif"
    summary = translate_video(odd, out, Mirror(), mode="whole", start=0.2, end=0.8, gif=gif, gif_max_side=40,
                              gif_max_bytes=30_000, **FAST)
    result = probe(out)
    assert summary.frames == result.n_frames == 6 and (result.width, result.height) == (66, 50)
    assert any("padded 65x49" in n for n in summary.notes)
    assert abs(result.audio_duration - 0.6) < ONE_FRAME
    with Image.open(gif) as image:
        assert max(image.size) <= 40 and image.n_frames == 6
    assert gif.stat().st_size <= 30_000 and summary.gif == gif

    fast = translate_video(clip, tmp_path / "fast.mp4", Mirror(), mode="whole", speed=2.0, **FAST)
    result = probe(fast.output)
    assert fast.frames == 10 and result.n_frames == 5 and abs(result.audio_duration - 0.5) < ONE_FRAME


# ----------------------------------------------------------------------------------------------- bad input, failures

def test_unreadable_zero_frame_and_empty_range_name_the_file(clip, tmp_path):
    bad = tmp_path / "broken_clip.mp4"
    bad.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8)))
    with pytest.raises(VideoError, match="broken_clip.mp4"):
        translate_video(bad, tmp_path / "a.mp4", Mirror(), **FAST)
    empty = tmp_path / "empty_clip.avi"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=size=64x64:rate=25",
                    "-frames:v", "0", str(empty)], check=True)
    with pytest.raises(VideoError, match=r"empty_clip\.avi.*no frames"):
        translate_video(empty, tmp_path / "b.mp4", Mirror(), **FAST)
    with pytest.raises(VideoError, match=r"talk\.mp4: no frames between 5 s"):
        translate_video(clip, tmp_path / "c.mp4", Mirror(), mode="whole", start=5.0, **FAST)
    with pytest.raises(ValueError, match="overwrite the source"):
        translate_video(clip, clip, Mirror(), **FAST)
    with pytest.raises(ValueError, match="reference= and domain="):
        translate_video(clip, tmp_path / "d.mp4", Mirror(), domain=1, **FAST)
    with pytest.raises(TypeError, match=r"\.size"):
        translate_video(clip, tmp_path / "e.mp4", lambda x: x, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken_clip.mp4", "empty_clip.avi"]


def test_failure_mid_way_leaves_nothing_at_the_destination(clip, tmp_path):
    out, pair, gif = tmp_path / "result.mp4", tmp_path / "pair.mp4", tmp_path / "result.gif"
    model = Mirror(fail_after=2)
    with pytest.raises(RuntimeError, match="model crashed"):
        translate_video(clip, out, model, mode="whole", batch_size=2, side_by_side=pair, gif=gif, **FAST)
    assert model.calls == 3
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- flicker

def test_flicker_exact_values():
    def frames(*levels):
        return [np.full((2, 3, 3), v, np.uint8) for v in levels]

    # input changes 10 then 10; output 5 then 0 -> (5 + 0) / (10 + 10)
    assert flicker(frames(0, 10, 20), frames(0, 5, 5)) == pytest.approx(0.25)
    assert flicker(frames(0, 10, 20), frames(9, 9, 9)) == 0.0
    assert flicker(frames(0, 10, 20), frames(0, 20, 40)) == pytest.approx(2.0)
    checker = np.zeros((2, 2, 3), np.uint8)
    checker[0, 0] = 200                                   # one pixel of four: mean change 50 levels
    assert flicker([checker * 0, checker], [checker, checker * 0]) == pytest.approx(1.0)
    assert math.isnan(flicker(frames(0), frames(0)))
    assert flicker(frames(7, 7), frames(3, 3)) == 1.0 and flicker(frames(7, 7), frames(3, 4)) == math.inf
    meter = FlickerMeter()
    for a, b in zip(frames(0, 10, 20), frames(0, 5, 5)):
        meter.update(a, b)
    assert (meter.input_change, meter.output_change, meter.value) == (10.0, 2.5, 0.25)
    with pytest.raises(ValueError, match="differ in length"):
        flicker(frames(0, 1, 2), frames(0, 1))


def test_temporal_blend_lowers_flicker(crop_clip):
    frames_in = list(iter_frames(crop_clip))
    values = {}
    for blend in (0.0, 0.6):
        results = list(translate_frames(frames_in, Noisy(), mode="whole", temporal_blend=blend))
        values[blend] = flicker([r.source for r in results], [r.output for r in results])
    assert values[0.6] < 0.75 * values[0.0]
    with pytest.raises(ValueError, match="temporal_blend"):
        next(translate_frames(frames_in, Noisy(), mode="whole", temporal_blend=1.0))


def test_translate_video_reports_the_streamed_flicker(crop_clip, tmp_path):
    summary = translate_video(crop_clip, tmp_path / "o.mp4", Noisy(), mode="whole", temporal_blend=0.5, **FAST)
    results = translate_frames(iter_frames(crop_clip), Noisy(), mode="whole", temporal_blend=0.5)
    pairs = [(r.source, r.output) for r in results]
    assert summary.flicker == pytest.approx(flicker(*zip(*pairs)))


# ----------------------------------------------------------------------------------------------- memory

def test_memory_stays_flat_with_clip_length():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (96, 96, 3), np.uint8)

    def stream(n):                          # a fresh array per frame, like a decoder
        for i in range(n):
            yield np.roll(frame, i, axis=1)

    peaks = []
    for n in (10, 60):
        tracemalloc.start()
        try:
            meter = FlickerMeter()
            for r in translate_frames(stream(n), Mirror(), mode="whole", batch_size=4, temporal_blend=0.3):
                meter.update(r.source, r.output)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 1.15 * peaks[0] and peaks[1] < 30 * frame.nbytes


# ----------------------------------------------------------------------------------------------- StarGAN as a frame model

@pytest.fixture(scope="module")
def tiny_nets():
    torch.manual_seed(0)
    config = StarGANConfig(img_size=32, style_dim=8, latent_dim=4, num_domains=2, w_hpf=0, max_conv_dim=32,
                           base_dim=16, hidden_dim=32)
    return build_nets(config, discriminator=False).eval()


def test_stargan_frame_model_uses_one_style_for_the_clip(tiny_nets):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model = StarGANFrameModel.from_latent(tiny_nets, domain=1, seed=5)
    z = torch.randn(1, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        style = tiny_nets.mapping_network(z, torch.tensor([1]))
        expected = tiny_nets.generator(x, style.expand(2, -1))
    assert model.size == 32
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(StarGANFrameModel.from_latent(tiny_nets, 1, seed=5).style, model.style)
    assert not torch.allclose(StarGANFrameModel.from_latent(tiny_nets, 1, seed=6).style, model.style)

    reference = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    model = StarGANFrameModel.from_reference(tiny_nets, reference, domain=0, align=False)
    with torch.no_grad():
        style = tiny_nets.style_encoder(to_tensor([reference]), torch.tensor([0]))
    torch.testing.assert_close(model.style, style)
    with pytest.raises(ValueError, match="2 domains"):
        StarGANFrameModel.from_latent(tiny_nets)
    with pytest.raises(ValueError, match="domain must be"):
        StarGANFrameModel.from_latent(tiny_nets, domain=2)


def test_a_high_pass_model_needs_its_fan_unless_asked_to_run_without_masks():
    from colab_utils.stargan import FANRequiredError

    torch.manual_seed(0)
    config = StarGANConfig(img_size=32, style_dim=8, latent_dim=4, num_domains=2, w_hpf=1, max_conv_dim=32,
                           base_dim=16, hidden_dim=32)
    nets = build_nets(config, discriminator=False, fan=False).eval()
    with pytest.raises(FANRequiredError, match="without_masks"):
        StarGANFrameModel.from_latent(nets, domain=0)
    nets.without_masks = True
    model = StarGANFrameModel.from_latent(nets, domain=0)
    assert not model.use_masks and model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_translate_video_with_stargan_nets(crop_clip, tmp_path, tiny_nets):
    summary = translate_video(crop_clip, tmp_path / "s.mp4", tiny_nets, domain=1, seed=2, mode="whole", end=0.3,
                              device="cpu", **FAST)
    assert summary.frames == 3 and probe(summary.output).n_frames == 3
