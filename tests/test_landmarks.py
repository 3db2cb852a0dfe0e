"""The landmark backend chooser (issue 11): MediaPipe where it runs, else the FAN, else an error saying how to get
one; the FAN path's geometry (box -> crop -> landmarks -> image -> aligned crop) and its tracking in video."""
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils import hub
from colab_utils.stargan import align, landmarks
from colab_utils.stargan.face_boxes import FaceBox, FaceBoxDetector, dlib_detector, haar_detector
from colab_utils.stargan.fan import FAN
from colab_utils.stargan.landmarks import (FAN_GROUPS, FANLandmarks, LandmarkBackendError, box_crop_matrix,
                                           landmark_backend_report, make_landmarker, mediapipe_status)

CORNERS = np.array([[0, 0], [255, 0], [0, 255], [255, 255]], float)
FIXTURE = "fixtures/stargan_v2_whpf1_small_100000_nets_ema.ckpt"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"     # as tests/conftest.py finds it


@pytest.fixture
def no_mediapipe(monkeypatch, tmp_path):
    """MediaPipe unimportable (as on Python 3.13) and an empty hub cache (cwd in a fresh folder, no Drive)."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def celeba_photos(shared_dir, n=None):
    paths = sorted((shared_dir / "data" / "celeba_hq_256").rglob("*.jpg"))
    if not paths:
        pytest.skip("no CelebA-HQ photos in ../shared/data")
    return paths if n is None else paths[:: max(1, len(paths) // n)][:n]


# ---------------------------------------------------------------------------------------------------------
# Oracles with the FAN's interface: get_landmark([B,3,256,256] in [-1, 1]) -> [B, 98, 2] crop pixels
# ---------------------------------------------------------------------------------------------------------

DOT_COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]], float)


def dot_weights(image01: np.ndarray) -> list[np.ndarray]:
    """Per dot colour, how much of it each pixel holds (the dots lie on black)."""
    r, g, b = image01[..., 0], image01[..., 1], image01[..., 2]
    signatures = [r - g - b, g - r - b, b - r - g, np.minimum(r, g) - b, np.minimum(g, b) - r]
    return [np.where(w > 0.02, w, 0.0) for w in signatures]


def dot_image(points, width, height, sigma=2.5) -> np.ndarray:
    """Five Gaussian dots of distinct colours centred at ``points`` (pixel (i, j) covers [j, j+1))."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float) + 0.5
    image = np.zeros((height, width, 3))
    for (x, y), colour in zip(points, DOT_COLOURS):
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))[..., None] * colour
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


class DotFAN:
    """Finds the five coloured dots in the crop it is given (weighted centroids): exact landmarks, so any
    error left is the FAN path's geometry. A crop missing a dot gives degenerate points (no face)."""

    def __init__(self):
        self.calls = 0

    def get_landmark(self, batch):
        out = []
        for x in batch:
            self.calls += 1
            image01 = ((x.permute(1, 2, 0) + 1) / 2).numpy()
            points = np.full((98, 2), 128.0)
            yy, xx = np.mgrid[0:image01.shape[0], 0:image01.shape[1]].astype(float)
            weights = dot_weights(image01)
            if all(w.sum() > 1.0 for w in weights):
                for group, w in zip(FAN_GROUPS, weights):
                    points[group] = [(w * xx).sum() / w.sum() + 0.5, (w * yy).sum() / w.sum() + 0.5]
            out.append(points)
        return torch.tensor(np.stack(out), dtype=torch.float32)


class MeshOracleFAN:
    """MediaPipe Face Mesh run on the crop it is given, its five points put at the FAN's indices: a FAN as good
    as MediaPipe. Built while MediaPipe is importable; keeps working after it is hidden."""

    def __init__(self):
        import mediapipe as mp

        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
        self.calls = 0

    def get_landmark(self, batch):
        out = []
        for x in batch:
            self.calls += 1
            crop = np.ascontiguousarray(((x.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
            result = self.mesh.process(crop)
            points = np.full((98, 2), 128.0)
            if result.multi_face_landmarks:
                mesh = np.array([[p.x * 256, p.y * 256] for p in result.multi_face_landmarks[0].landmark])
                for group, point in zip(FAN_GROUPS, landmarks.five_points(mesh, landmarks.MESH_GROUPS)):
                    points[group] = point
            out.append(points)
        return torch.tensor(np.stack(out), dtype=torch.float32)


def face_points(centre, eye_distance, degrees):
    """The template's five points for a face of this size and roll around ``centre``."""
    t = (align.TEMPLATE_5 - align.TEMPLATE_5[:2].mean(0)) / (align.TEMPLATE_5[1, 0] - align.TEMPLATE_5[0, 0])
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return t @ rot.T * eye_distance + np.asarray(centre, float)


def box_around(points, source="opencv haar"):
    """A face box around five points, as a detector would give it."""
    centre, side = points.mean(0), 2.2 * np.linalg.norm(points[1] - points[0])
    return FaceBox(centre[0] - side / 2, centre[1] - side / 2 + 0.1 * side, side, side, source)


# ---------------------------------------------------------------------------------------------------------
# The chooser and its messages
# ---------------------------------------------------------------------------------------------------------

def test_auto_takes_the_fan_when_mediapipe_is_missing(no_mediapipe):
    fan = DotFAN()
    landmarker = make_landmarker("auto", fan=fan)
    assert isinstance(landmarker, FANLandmarks) and landmarker.name == "fan" and landmarker.fan is fan
    assert landmarker.description.startswith("FAN (the network passed in); face boxes:")
    assert align.make_landmarker is make_landmarker              # the old import path still works
    with pytest.raises(TypeError, match="get_landmark"):
        make_landmarker("auto", fan=object())
    with pytest.raises(ValueError, match="unknown landmark backend 'dlib'"):
        make_landmarker("dlib")


def test_auto_prefers_mediapipe_where_it_runs():
    if not mediapipe_status()[0]:
        pytest.skip(f"mediapipe with bundled models is not usable here: {mediapipe_status()[1]}")
    landmarker = make_landmarker("auto", fan=DotFAN())
    assert landmarker.name == "mediapipe" and landmarker.description.startswith("mediapipe 0.10.")
    landmarker.close()
    assert landmark_backend_report().startswith("mediapipe 0.10.")


def test_no_backend_error_says_how_to_get_one_on_each_python(no_mediapipe, monkeypatch):
    monkeypatch.setattr(landmarks, "_python_version", lambda: (3, 12))
    with pytest.raises(LandmarkBackendError) as caught:
        make_landmarker("auto")
    text = str(caught.value)
    assert text.startswith("no face landmark backend: mediapipe is not installed, and no FAN was given")
    assert "pip install 'mediapipe>=0.10.9,<0.10.30'" in text
    assert "fan=nets.fan" in text and "colab_utils.hub.download('stargan_v2_wing')" in text
    assert "download=True" in text
    assert isinstance(caught.value, ImportError)                # callers catching ImportError still do

    monkeypatch.setattr(landmarks, "_python_version", lambda: (3, 13))
    texts = {}
    for backend in ("auto", "mediapipe", "fan"):
        with pytest.raises(LandmarkBackendError) as caught:
            make_landmarker(backend)
        texts[backend] = text = str(caught.value)
        assert "pip install" not in text, text                  # no mediapipe wheel with models for 3.13
        assert "colab_utils.hub.download('stargan_v2_wing')" in text and "fan=nets.fan" in text
    no_wheel = "no mediapipe wheel with bundled face models for Python 3.13"
    assert texts["auto"].startswith(f"no face landmark backend: {no_wheel}") and "On Python 3.13 use the FAN" in texts["auto"]
    assert texts["mediapipe"].startswith(f"MediaPipe landmarks unavailable: {no_wheel}")
    assert texts["fan"].startswith("no face landmark backend: no FAN was given")
    report = landmark_backend_report()
    assert report == ("FAN (no mediapipe wheel with bundled face models for Python 3.13; weights: nets.fan of a "
                      "loaded model, or wing.ckpt fetched once through colab_utils.hub)")
    assert "pip install" not in report
    assert not (no_mediapipe / "checkpoints").exists()          # asking created no folder


def test_mediapipe_without_bundled_models_is_not_used(monkeypatch):
    monkeypatch.setattr(landmarks.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(landmarks.metadata, "version", lambda name: "1.2.3")
    usable, why = mediapipe_status()
    assert not usable and why.startswith("mediapipe 1.2.3 has no bundled face models")
    monkeypatch.setattr(landmarks.metadata, "version", lambda name: "0.10.21")
    assert mediapipe_status() == (True, "mediapipe 0.10.21")


def test_cached_wing_weights_are_found_and_downloads_only_when_allowed(no_mediapipe, monkeypatch):
    state = {"state_dict": {k: v.clone() for k, v in FAN().state_dict().items()}}
    fetched = []

    def fake_download(name, *args, **kwargs):
        fetched.append(name)
        path = no_mediapipe / "checkpoints" / "downloads" / "wing.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return path

    monkeypatch.setattr(hub, "download", fake_download)
    with pytest.raises(LandmarkBackendError):
        make_landmarker("fan")
    assert fetched == []                                        # no download unless allowed
    landmarker = make_landmarker("auto", download=True)
    assert fetched == ["stargan_v2_wing"] and landmarker.name == "fan"
    assert "wing.ckpt at" in landmarker.description and isinstance(landmarker.fan, FAN)
    torch.testing.assert_close(landmarker.fan.l0.weight, state["state_dict"]["l0.weight"])
    # now cached: found without downloading, and named by the report
    again = make_landmarker("auto")
    assert fetched == ["stargan_v2_wing"] and "wing.ckpt at" in again.description
    assert "weights: wing.ckpt cached at" in landmark_backend_report()


# ---------------------------------------------------------------------------------------------------------
# Face boxes
# ---------------------------------------------------------------------------------------------------------

def test_box_detectors_are_tried_in_order_then_the_whole_face_crop_with_a_warning():
    calls = []
    first = ("first", lambda image: calls.append("first"))
    second = ("second", lambda image: calls.append("second") or (10.0, 20.0, 30.0, 40.0))
    box = FaceBoxDetector([first, second])(np.zeros((100, 100, 3), np.uint8))
    assert calls == ["first", "second"] and box == FaceBox(10.0, 20.0, 30.0, 40.0, "second")

    nothing = FaceBoxDetector([first])
    with pytest.warns(UserWarning, match=r"no face detector found a face \(tried: first\); the nearly square"):
        box = nothing(np.zeros((120, 110, 3), np.uint8))
    assert box == FaceBox(0.0, 5.0, 110.0, 110.0, "whole image")
    assert box.crop_square() == (55.0, 60.0, 110.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nothing(np.zeros((100, 200, 3), np.uint8)) is None   # a wide frame is no face crop: no face
        assert FaceBoxDetector([first], whole_image_fallback=False)(np.zeros((100, 100, 3), np.uint8)) is None


def test_a_machine_without_detectors_says_so(monkeypatch):
    for name in ("mediapipe", "cv2", "dlib"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.warns(UserWarning, match=r"no face detector on this machine \(missing: mediapipe \(not importable\), "
                                         r"OpenCV \(not installed\), dlib \(not installed\)\): only pictures that are "
                                         r"already face crops are found \(pip install dlib-bin"):
        detector = FaceBoxDetector()
    assert detector.available == []
    landmarker = FANLandmarks(DotFAN(), box_detector=detector)
    assert landmarker.description == "FAN; face boxes: no detector, else the whole picture if it is a face crop"


def test_box_crop_matrix_frames_the_box_like_celeba():
    box = FaceBox(100.0, 50.0, 80.0, 80.0, "dlib hog")
    cx, cy, side = box.crop_square()
    assert (cx, cy, side) == pytest.approx((140.0, 90.0 - 0.2 * 80, 1.64 * 80))
    m = box_crop_matrix(box)
    # the crop square's edges land on the crop's edges (pixel centres at integers: edges at -0.5 and 255.5)
    edges = align.apply_affine(m, [[cx - side / 2 - 0.5, cy - side / 2 - 0.5], [cx + side / 2 - 0.5, cy + side / 2 - 0.5]])
    np.testing.assert_allclose(edges, [[-0.5, -0.5], [255.5, 255.5]], atol=1e-9)


@pytest.mark.parametrize("build", [haar_detector, dlib_detector], ids=["opencv-haar", "dlib-hog"])
def test_real_detectors_find_every_celeba_face(shared_dir, build):
    detect, name = build()
    if detect is None:
        pytest.skip(f"face detector unavailable here: {name}")
    for path in celeba_photos(shared_dir, 8):
        image = np.asarray(Image.open(path).convert("RGB"))
        box = detect(image)
        assert box is not None, f"{name} found no face in {path}"
        # the box, framed by FRAMING, gives about the CelebA-HQ crop (the whole photo)
        cx, cy, side = FaceBox(*box, source=name).crop_square()
        assert abs(cx - 128) < 20 and abs(cy - 128) < 25 and 200 < side < 320, (path, cx, cy, side)


# ---------------------------------------------------------------------------------------------------------
# The FAN path's geometry
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("refine", [0, 1])
def test_fan_path_returns_the_exact_landmarks(refine):
    truth = face_points((170.0, 120.0), 46.0, degrees=12.0)
    image = dot_image(truth, 300, 220)
    landmarker = FANLandmarks(DotFAN(), box_detector=lambda img: box_around(truth), refine=refine)
    got = landmarker(image)
    error = np.abs(got - truth).max()
    print(f"refine={refine}: max landmark error {error:.3f} px")
    assert error < 0.05
    assert landmarker.fan.calls == 1 + refine and landmarker.last_box.source == "opencv haar"


def test_whole_image_fallback_on_a_face_crop_is_exact():
    truth = align.TEMPLATE_5 * 200 + [3.0, -2.0]          # a CelebA-like 200 px crop, face slightly off
    landmarker = FANLandmarks(DotFAN(), box_detector=FaceBoxDetector([]))
    with pytest.warns(UserWarning, match="taken as a face crop"):
        got = landmarker(dot_image(truth, 200, 200))
    assert np.abs(got - truth).max() < 0.05 and landmarker.last_box.source == "whole image"


def test_align_folder_through_the_fan_names_faceless_and_whole_photos(no_mediapipe):
    truth = align.TEMPLATE_5 * 120
    Image.fromarray(dot_image(truth, 120, 120)).save(no_mediapipe / "crop.png")
    Image.fromarray(np.zeros((90, 160, 3), np.uint8)).save(no_mediapipe / "dark.png")      # no face, not square
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(no_mediapipe / "wall.png")     # square, FAN finds none
    landmarker = make_landmarker("auto", fan=DotFAN(), box_detector=FaceBoxDetector([]))
    with pytest.warns(UserWarning) as caught:
        report = align.align_folder(sorted(no_mediapipe.glob("*.png")), no_mediapipe / "out", 64,
                                    landmarker=landmarker)
    assert [p.name for p in report.aligned] == ["crop.png"] and [p.name for p in report.whole_image] == ["crop.png"]
    assert [p.name for p in report.no_face] == ["dark.png", "wall.png"]
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("no face found in") and m.endswith("wall.png") for m in messages)
    aligned = np.asarray(Image.open(report.aligned[0]))
    # the dots sit where the template puts them in the 64 px crop
    centres = [(np.argwhere(w > 0.02).mean(axis=0)[::-1] + 0.5) for w in dot_weights(aligned / 255.0)]
    np.testing.assert_allclose(centres, align.TEMPLATE_5 * 64, atol=0.6)


def test_fan_video_tracks_and_detects_only_when_the_face_is_lost():
    detector_calls = []

    def detector(image):
        detector_calls.append(1)
        return box_around(truths[len(frames_seen) - 1])

    truths = [face_points((120.0 + 3 * i, 100.0 + i), 40.0 + i, degrees=2.0 * i) for i in range(6)]
    truths.append(face_points((260.0, 150.0), 40.0, degrees=0.0))     # the face jumps across the frame
    landmarker = FANLandmarks(DotFAN(), video=True, box_detector=detector)
    frames_seen, errors = [], []
    for truth in truths:
        frames_seen.append(truth)
        got = landmarker(dot_image(truth, 340, 240))
        errors.append(np.abs(got - truth).max())
    print(f"max landmark error per frame (px): {np.round(errors, 3).tolist()}")
    assert max(errors) < 0.05
    assert landmarker.detections == len(detector_calls) == 2     # the first frame, and after the jump
    assert landmarker.calls == 7
    landmarker.reset()
    landmarker(dot_image(truths[-1], 340, 240))
    assert landmarker.detections == 3


def test_fan_landmarks_reject_wrong_shapes():
    class Wrong:
        def get_landmark(self, batch):
            return torch.zeros(1, 68, 2)

    with pytest.raises(ValueError, match=r"expected 98 WFLW points"):
        FANLandmarks(Wrong(), box_detector=lambda img: FaceBox(0, 0, 64, 64, "x"))(np.zeros((64, 64, 3), np.uint8))


@pytest.fixture(scope="module")
def mesh_oracle():
    """A :class:`MeshOracleFAN`, built while MediaPipe is importable."""
    if not mediapipe_status()[0]:
        pytest.skip(f"the MediaPipe oracle needs MediaPipe with bundled models: {mediapipe_status()[1]}")
    return MeshOracleFAN()


@pytest.fixture(scope="module")
def mediapipe_crops(mesh_oracle):
    """MediaPipe's aligned crops of the shared CelebA-HQ photos, and the mesh oracle."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone): fixture tests skipped")
    paths = celeba_photos(SHARED)
    mesh = make_landmarker("mediapipe")
    crops = {path: align.align_face(str(path), 256, landmarker=mesh) for path in paths}
    mesh.close()
    return crops, mesh_oracle


@pytest.mark.parametrize("boxes", ["detectors", "whole-image"])
def test_fan_path_gives_the_mediapipe_crop_on_celeba_photos(mediapipe_crops, no_mediapipe, boxes):
    crops, oracle = mediapipe_crops
    detector = FaceBoxDetector() if boxes == "detectors" else FaceBoxDetector([])
    landmarker = make_landmarker("auto", fan=oracle, box_detector=detector)
    assert landmarker.name == "fan"
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # the whole-image fallback says so each time
        for path, reference in crops.items():
            face = align.align_face(str(path), 256, landmarker=landmarker)
            corners = np.linalg.norm(align.apply_affine(face.inverse, CORNERS)
                                     - align.apply_affine(reference.inverse, CORNERS), axis=1)
            errors.append(corners.max())
    errors = np.array(errors)
    print(f"{boxes} ({landmarker.description}): corner error vs MediaPipe over {len(errors)} photos: "
          f"max {errors.max():.2f} px, median {np.median(errors):.2f} px")
    assert errors.max() < 6.0 and np.median(errors) < 2.0


def test_align_folder_goes_through_the_fan(mediapipe_crops, no_mediapipe):
    crops, oracle = mediapipe_crops
    paths = list(crops)[:4]
    report = align.align_folder(paths, no_mediapipe / "aligned", fan=oracle)
    assert report.landmarks.startswith("FAN (the network passed in)")
    assert len(report.aligned) == 4 and not report.no_face and not report.whole_image
    fan_landmarker = make_landmarker("auto", fan=oracle)
    for path, out in zip(paths, report.aligned):      # exactly the FAN crop (the previous test: = MediaPipe's)
        expected = align.align_face(str(path), 256, landmarker=fan_landmarker).image
        np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_real_fan_network_runs_through_the_path(shared_dir, no_mediapipe):
    """The fixture's FAN (random weights, so the points mean nothing) through box -> crop -> FAN -> aligned crop."""
    from colab_utils.stargan.fan import load_fan

    fan = load_fan(shared_dir / FIXTURE)
    landmarker = make_landmarker("auto", fan=fan)
    path = celeba_photos(shared_dir, 1)[0]
    points = landmarker(np.asarray(Image.open(path).convert("RGB")))
    assert points.shape == (5, 2) and points.dtype == np.float64 and np.isfinite(points).all()
    assert landmarker.name == "fan" and landmarker.detections == 1 and landmarker.last_box is not None
    face = align.align_face(str(path), 128, landmarks=points)
    assert face.image.shape == (128, 128, 3) and face.image.dtype == np.uint8


def test_cli_align_uses_the_fan_without_mediapipe(shared_dir, no_mediapipe, capsys):
    from colab_utils.stargan.__main__ import main

    src = no_mediapipe / "photos"
    src.mkdir()
    for path in celeba_photos(shared_dir, 1):
        (src / path.name).write_bytes(path.read_bytes())
    assert main(["align", "--src", str(src), "--out", str(no_mediapipe / "none")]) == 2   # the shared handler
    err = capsys.readouterr().err
    assert re.fullmatch(r"python -m colab_utils\.stargan: error: no face landmark backend: .*no FAN was given.*\n", err)
    assert main(["align", "--src", str(src), "--out", str(no_mediapipe / "out"),
                 "--fan", str(shared_dir / FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "landmarks: FAN (the network passed in); face boxes:" in out and "aligned 1 photo(s)" in out
    assert len(list((no_mediapipe / "out").glob("*.png"))) == 1


# ---------------------------------------------------------------------------------------------------------
# Video through the FAN
# ---------------------------------------------------------------------------------------------------------

class Mirror:
    """A cheap stand-in for StarGAN: negative colours, mirrored left-right (a wrong crop shows)."""

    size = 64

    def __call__(self, x):
        return torch.flip(-x, dims=[3])


FAST = dict(preset="ultrafast", crf=0, progress=False, verbose=False)


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory):
    from colab_utils.data.synthetic_video import make_synthetic_video

    return make_synthetic_video(tmp_path_factory.mktemp("clip") / "talk.mp4", seconds=1.0, fps=10,
                                frame_size=(128, 96), face_fraction=0.8, seed=1)


def tiny_nets(fan: bool):
    from colab_utils.stargan import StarGANConfig, build_nets

    config = StarGANConfig(img_size=32, style_dim=8, latent_dim=4, num_domains=2, w_hpf=0, max_conv_dim=32,
                           base_dim=16, hidden_dim=32)
    torch.manual_seed(0)
    return build_nets(config, discriminator=False, fan=fan).eval()


@pytest.fixture(scope="module")
def mediapipe_video(talking_clip, mesh_oracle, tmp_path_factory):
    """The clip translated with MediaPipe landmarks (while MediaPipe is importable)."""
    from colab_utils.video import translate_video

    summary = translate_video(talking_clip, tmp_path_factory.mktemp("mp") / "mediapipe.mp4", Mirror(), **FAST)
    assert summary.landmarks.startswith("mediapipe 0.10.")
    return summary


def test_video_through_the_fan_tracks_and_matches_mediapipe(talking_clip, mesh_oracle, mediapipe_video,
                                                           no_mediapipe):
    from colab_utils.data.video_io import iter_frames, probe
    from colab_utils.video import translate_video

    reference = mediapipe_video
    landmarker = make_landmarker("auto", video=True, fan=mesh_oracle)
    summary = translate_video(talking_clip, no_mediapipe / "fan.mp4", Mirror(), landmarker=landmarker, **FAST)
    assert summary.frames == probe(summary.output).n_frames == 10 and summary.faces_found == 10
    assert summary.landmarks.startswith("FAN (the network passed in)")
    assert summary.landmarks.endswith("face detector ran on 1 of 10 frames (tracking in between)")
    source = list(iter_frames(talking_clip))
    fan_frames, mediapipe_frames = list(iter_frames(summary.output)), list(iter_frames(reference.output))
    gaps = [np.abs(a.astype(float) - b).mean() for a, b in zip(fan_frames, mediapipe_frames)]
    changes = [np.abs(a.astype(float) - b).mean() for a, b in zip(mediapipe_frames, source)]
    print(f"FAN vs MediaPipe output per frame: max {max(gaps):.2f} levels (the translation changes "
          f"{min(changes):.1f}-{max(changes):.1f})")
    assert max(gaps) < 0.25 * min(changes)


def test_video_default_landmarks_come_from_nets_fan(talking_clip, no_mediapipe):
    """No MediaPipe, no landmarker given: translate_video aligns the reference and the frames with nets.fan
    (random weights here: the points mean nothing, but every frame goes through the FAN path)."""
    from colab_utils.data.video_io import probe
    from colab_utils.video import StarGANFrameModel, translate_video

    nets = tiny_nets(fan=True)
    summary = translate_video(talking_clip, no_mediapipe / "out.mp4", nets, domain=1, end=0.3, **FAST)
    assert summary.frames == probe(summary.output).n_frames == 3
    assert summary.landmarks.startswith("FAN (the network passed in); face boxes:")
    face = np.zeros((96, 96, 3), np.uint8) + 90
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = StarGANFrameModel.from_reference(nets, face, domain=0)   # square: taken whole as a face crop
    assert model.reference_crop.shape == (32, 32, 3)

    without_fan = tiny_nets(fan=False)
    with pytest.raises(LandmarkBackendError, match="no FAN was given"):
        translate_video(talking_clip, no_mediapipe / "none.mp4", without_fan, domain=1, **FAST)
    with pytest.raises(LandmarkBackendError, match="no FAN was given"):
        StarGANFrameModel.from_reference(without_fan, face, domain=0)
    assert not list(no_mediapipe.glob("none*"))               # nothing written before the error


def dot_box(image):
    """A face box around the coloured dots of a dot face (a detector for :func:`dot_image` frames)."""
    ys, xs = np.nonzero(image.max(axis=2) > 60)
    if len(xs) == 0:
        return None
    side = 1.6 * max(xs.max() - xs.min(), ys.max() - ys.min())
    return ((xs.min() + xs.max()) / 2 - side / 2, (ys.min() + ys.max()) / 2 - side / 2 + 0.1 * side, side, side)


@pytest.fixture(scope="module")
def dot_clip(tmp_path_factory):
    """A dot face drifting, turning and growing across a 160x112 frame for 10 frames at 10 fps, with sound."""
    from colab_utils.data.synthetic_video import speech_audio, write_wav
    from colab_utils.data.video_io import VideoWriter

    folder = tmp_path_factory.mktemp("dots")
    wav = write_wav(speech_audio(1.0), folder / "speech.wav")
    with VideoWriter(folder / "dots.mp4", 10, audio_from=wav, crf=0, preset="ultrafast") as writer:
        for i in range(10):
            writer.write(dot_image(face_points((70.0 + 2 * i, 55.0 + i), 30.0 + 0.5 * i, 1.5 * i), 160, 112))
    return folder / "dots.mp4"


def dot_landmarker():
    return make_landmarker("auto", video=True, fan=DotFAN(), box_detector=FaceBoxDetector([("dots", dot_box)]))


def test_faces_mode_video_through_the_fan_everywhere(dot_clip, no_mediapipe):
    """Faces mode on any machine (no MediaPipe, no OpenCV or dlib needed): the FAN path tracks the face, the
    output keeps frames, rate and sound, and equals the plain pipeline (landmarks -> crop -> model -> paste)."""
    from colab_utils.data.video_io import iter_frames, probe
    from colab_utils.stargan.align import face_mask, paste_back, warp_affine
    from colab_utils.video import translate_video, to_tensor, to_uint8
    from colab_utils.video.faces import FaceTracker

    summary = translate_video(dot_clip, no_mediapipe / "out.mp4", Mirror(), landmarker=dot_landmarker(), **FAST)
    result = probe(summary.output)
    assert summary.frames == result.n_frames == 10 and summary.faces_found == 10 and result.fps == 10
    assert result.has_audio and abs(result.audio_duration - result.duration) < 0.1
    assert summary.landmarks == ("FAN (the network passed in); face boxes: dots, else the whole picture if it is a "
                                 "face crop; face detector ran on 1 of 10 frames (tracking in between)")
    frames_in = list(iter_frames(dot_clip))
    tracker, model, mask = FaceTracker(dot_landmarker(), 10), Mirror(), face_mask(Mirror.size)
    for frame, written in zip(frames_in, iter_frames(summary.output)):
        matrix = tracker.matrix(frame, model.size)
        translated = to_uint8(model(to_tensor([warp_affine(frame, matrix, model.size)])))[0]
        expected = paste_back(frame, translated, matrix, mask=mask)
        codec = np.abs(written.astype(float) - expected).mean()
        changed = np.abs(expected.astype(float) - frame).mean()
        assert codec < 1.0 and changed > 8 * codec, (codec, changed)
