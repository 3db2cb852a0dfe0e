"""Face alignment: exact geometry, and recovery of a known transform on real CelebA-HQ photos."""
import math

import numpy as np
import pytest
from PIL import Image

from colab_utils.stargan import align


def rotation_scale_shift(angle_deg, scale, shift, center):
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(center, float)
    return np.hstack([rot, (c + np.asarray(shift) - rot @ c)[:, None]])


def test_similarity_transform_recovers_exact_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 256, size=(7, 2))
    m = rotation_scale_shift(17.0, 0.8, (5.0, -3.0), (128, 128))
    got = align.similarity_transform(src, align.apply_affine(m, src))
    np.testing.assert_allclose(got, m, atol=1e-9)


def test_similarity_transform_rejects_bad_points():
    with pytest.raises(ValueError, match="N×2"):
        align.similarity_transform(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        align.similarity_transform(np.ones((3, 2)), np.zeros((3, 2)))


def test_warp_affine_moves_a_dot_where_the_matrix_says():
    image = np.zeros((64, 64, 3), np.uint8)
    image[20, 30] = 255
    m = rotation_scale_shift(0.0, 1.0, (7.0, -4.0), (32, 32))
    out = align.warp_affine(image, m, 64, resample=Image.NEAREST)
    ys, xs = np.nonzero(out[..., 0])
    assert (xs[0], ys[0]) == (37, 16)
    inv = align.invert_affine(m)
    np.testing.assert_allclose(align.apply_affine(inv, align.apply_affine(m, [[3.0, 4.0]])), [[3.0, 4.0]])


@pytest.mark.parametrize("scale", [2.0, 0.5, 1.7])
def test_warp_affine_scales_about_pixel_centres(scale):
    """Pixel centres sit at integer coordinates: a blob at (20, 30) lands at (20s, 30s), not half a pixel off."""
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 0] = np.round(255 * np.exp(-((xx - 20) ** 2 + (yy - 30) ** 2) / 8.0))
    out = align.warp_affine(image, np.array([[scale, 0, 0], [0, scale, 0]]), 128).astype(float)[..., 0]
    oy, ox = np.mgrid[0:128, 0:128]
    centroid = np.array([(out * ox).sum(), (out * oy).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, [20 * scale, 30 * scale], atol=0.02)


def test_paste_back_of_untouched_crop_restores_the_frame():
    rng = np.random.default_rng(1)
    frame = (rng.uniform(0, 1, (96, 128, 1)) * np.linspace(60, 200, 128)[None, :, None]).astype(np.uint8).repeat(3, 2)
    frame = np.asarray(Image.fromarray(frame).resize((128, 96), Image.BILINEAR).filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(3)))
    m = rotation_scale_shift(10.0, 1.5, (-20.0, -10.0), (64, 48))
    crop = align.warp_affine(frame, m, 64)
    pasted = align.paste_back(frame, crop, m)
    assert np.abs(pasted.astype(int) - frame.astype(int)).mean() < 2.0
    # a white crop turns the face region white and leaves the corners untouched
    white = align.paste_back(frame, np.full_like(crop, 255), m)
    centre = align.apply_affine(align.invert_affine(m), [[32.0, 35.0]])[0].round().astype(int)
    assert white[centre[1], centre[0]].min() == 255
    assert (white[0, 0] == frame[0, 0]).all()


def _photos(shared_dir, n):
    paths = sorted((shared_dir / "data" / "celeba_hq_256").rglob("*.jpg"))
    if not paths:
        pytest.skip("no CelebA-HQ photos in ../shared/data")
    return paths[:: max(1, len(paths) // n)][:n]


@pytest.fixture(scope="module")
def landmarker():
    pytest.importorskip("mediapipe")
    try:
        return align.make_landmarker("mediapipe")
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("angle,scale,shift", [(12.0, 0.85, (10.0, -6.0)), (-8.0, 1.1, (-12.0, 8.0))])
def test_recovers_known_transform_on_celeba_photos(shared_dir, landmarker, angle, scale, shift):
    corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255], [128, 128]], float)
    errors = []
    for path in _photos(shared_dir, 6):
        image = np.asarray(Image.open(path).convert("RGB"))
        truth = rotation_scale_shift(angle, scale, shift, (128, 128))
        moved = align.warp_affine(image, truth, 256, fill=(128, 128, 128))
        lm_a, lm_b = landmarker(image), landmarker(moved)
        assert lm_a is not None and lm_b is not None, f"no face found in {path}"
        est = align.similarity_transform(lm_a, lm_b, align.TEMPLATE_WEIGHTS)
        err = np.linalg.norm(align.apply_affine(est, corners) - align.apply_affine(truth, corners), axis=1)
        errors.append(err.max())
        # aligning the moved photo lands the face where aligning the original does
        a = align.align_face(image, 256, landmarks=lm_a)
        b = align.align_face(moved, 256, landmarks=lm_b)
        centre_err = np.abs(align.apply_affine(a.matrix, [[128, 128]]) - align.apply_affine(b.matrix @ np.vstack([truth, [0, 0, 1]]), [[128, 128]]))
        assert centre_err.max() < 4.0
    print(f"max corner error per photo (px): {np.round(errors, 2).tolist()}")
    assert max(errors) < 4.0


def test_celeba_photo_is_already_aligned(shared_dir, landmarker):
    """CelebA-HQ faces are the template: aligning one moves its eyes by at most a few pixels."""
    for path in _photos(shared_dir, 4):
        face = align.align_face(str(path), 256, landmarker=landmarker)
        eyes = align.apply_affine(face.matrix, face.landmarks[:2])
        assert np.abs(eyes - align.TEMPLATE_5[:2] * 256).max() < 5.0


def test_no_face_is_named(tmp_path, landmarker):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(blank)
    with pytest.raises(align.NoFaceError, match="wall.png"):
        align.align_face(str(blank), 128, landmarker=landmarker)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown landmark backend"):
        align.make_landmarker("dlib")
