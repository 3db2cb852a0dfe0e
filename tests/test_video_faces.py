import numpy as np
import pytest

from colab_utils.video.faces import FaceTracker, OneEuroFilter


def test_one_euro_passes_constant_and_damps_jitter():
    f = OneEuroFilter(fps=25)
    base = np.array([[100.0, 120.0], [150.0, 120.0]])
    assert np.array_equal(f(base), base)
    assert np.allclose(f(base), base)
    rng = np.random.default_rng(0)
    f.reset()
    noisy = [base + rng.normal(0, 1.5, base.shape) for _ in range(200)]
    out = np.array([f(x) for x in noisy])[20:]
    raw = np.array(noisy)[20:]
    jitter_raw = np.abs(np.diff(raw, axis=0)).mean()
    jitter_out = np.abs(np.diff(out, axis=0)).mean()
    assert jitter_out < 0.25 * jitter_raw


def test_one_euro_follows_a_moving_face():
    f = OneEuroFilter(fps=25, beta=0.05)
    out = [f(np.array([t * 4.0, 0.0])) for t in range(50)]  # 100 px/s
    assert abs(out[-1][0] - 49 * 4.0) < 8.0  # lag stays under two frames of motion


def test_one_euro_rejects_bad_fps():
    with pytest.raises(ValueError, match="fps"):
        OneEuroFilter(fps=0)


def test_tracker_counts_missing_faces_and_restarts_after_a_gap():
    points = np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 15.0], [12.0, 20.0], [18.0, 20.0]])
    script = [points, points, None, None, None, None, points + 100, points + 100]
    it = iter(script)
    tracker = FaceTracker(lambda frame: next(it), fps=25, max_gap=3)
    out = [tracker.update(None) for _ in script]
    assert tracker.frames == 8 and tracker.frames_without_face == 4
    assert out[2] is None and out[5] is None
    # the filter was reset by the long gap: the reappearing face is not dragged from the old place
    np.testing.assert_allclose(out[6], points + 100)
