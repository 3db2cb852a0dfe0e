import dataclasses

import numpy as np
import pytest
from PIL import Image

from colab_utils.data.synthetic import (PARTS, STYLES, FaceParams, make_face, make_faces, render_face,
                                        sample_face_params, write_domain_folders, write_image_folder)


def test_same_seed_same_bytes_and_different_seeds_differ():
    a_img, a_lab = make_face(7, 64)
    b_img, b_lab = make_face(7, 64)
    assert a_img.dtype == np.uint8 and a_img.shape == (64, 64, 3)
    assert a_lab.dtype == np.uint8 and a_lab.shape == (64, 64)
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    c_img, _ = make_face(8, 64)
    assert np.abs(a_img.astype(int) - c_img.astype(int)).mean() > 5
    assert sample_face_params(7) == sample_face_params(7) != sample_face_params(8)


def test_make_faces_is_deterministic_and_prefix_stable():
    imgs, labs = make_faces(5, 32, seed=3)
    assert imgs.shape == (5, 32, 32, 3) and labs.shape == (5, 32, 32)
    again, _ = make_faces(3, 32, seed=3)
    assert np.array_equal(imgs[:3], again)
    other, _ = make_faces(5, 32, seed=4)
    assert not any(np.array_equal(imgs[i], other[j]) for i in range(5) for j in range(5))
    assert len({im.tobytes() for im in imgs}) == 5


@pytest.mark.parametrize("size", [32, 64, 256])
def test_every_part_in_every_label_map(size):
    n = {32: 40, 64: 20, 256: 3}[size]
    for seed in range(n):
        image, labels = make_face(seed, size)
        assert labels.max() < len(PARTS)
        present = set(np.unique(labels).tolist())
        assert present == set(range(len(PARTS))), f"seed {seed} at {size}px lacks {set(range(7)) - present}"


def test_every_part_present_in_turned_and_open_mouth_poses():
    p = sample_face_params(11)
    for kw in (dict(yaw=1.0), dict(yaw=-1.0, mouth_open=1.0), dict(roll=25.0, scale=0.8)):
        _, labels = render_face(p, 32, **kw)
        assert set(np.unique(labels).tolist()) == set(range(len(PARTS))), kw


def test_parts_are_where_a_face_has_them():
    _, labels = make_face(5, 128)
    rows = {part: np.nonzero(labels == k)[0].mean() for k, part in enumerate(PARTS)}
    assert rows["brows"] < rows["eyes"] < rows["nose"] < rows["mouth"]
    cols = np.nonzero(labels == PARTS.index("eyes"))[1]
    assert cols.min() < 64 < cols.max()  # two eyes, one each side of the middle


@pytest.mark.parametrize("bad", [48, 16, 2048, "64", 64.0, True, 0, -32])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="power of two"):
        make_face(0, bad)
    with pytest.raises(ValueError, match="power of two"):
        make_faces(1, bad)


def test_bad_arguments_raise():
    p = sample_face_params(0)
    with pytest.raises(ValueError, match="style"):
        sample_face_params(0, "purple")
    with pytest.raises(ValueError, match="seed"):
        sample_face_params(-1)
    with pytest.raises(ValueError, match="yaw"):
        render_face(p, 64, yaw=1.5)
    with pytest.raises(ValueError, match="mouth_open"):
        render_face(p, 64, mouth_open=-0.1)
    with pytest.raises(ValueError, match="scale"):
        render_face(p, 64, scale=0)
    with pytest.raises(TypeError, match="FaceParams"):
        render_face({"seed": 1}, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.head_w = 1.0


def test_styles_differ_in_mean_colour():
    assert len(STYLES) == 2
    means = {}
    for style in STYLES:
        imgs, labels = make_faces(20, 64, seed=1, style=style)
        skin = imgs[labels == PARTS.index("skin")].mean(0)
        hair = imgs[labels == PARTS.index("hair")].mean(0)
        background = imgs[labels == PARTS.index("background")].mean(0)
        means[style] = imgs.reshape(-1, 3).mean(0), skin, hair, background
        assert all(sample_face_params(s, style).style == style for s in range(5))
    (fair, fair_skin, fair_hair, fair_bg), (dark, dark_skin, dark_hair, dark_bg) = means.values()
    assert np.linalg.norm(fair - dark) > 25          # whole-image mean colour
    assert fair_skin.mean() - dark_skin.mean() > 60   # light vs dark skin
    assert fair_hair.mean() - dark_hair.mean() > 80   # blond vs dark hair
    assert fair_bg[2] > fair_bg[0] and dark_bg[0] > dark_bg[2]  # cool vs warm background


def test_shift_moves_the_face():
    p = sample_face_params(2)
    _, base = render_face(p, 64)
    skin = PARTS.index("skin")

    def centroid(labels):
        ys, xs = np.nonzero(labels == skin)
        return xs.mean(), ys.mean()

    x0, y0 = centroid(base)
    x1, y1 = centroid(render_face(p, 64, shift=(0.1, 0.0))[1])
    x2, y2 = centroid(render_face(p, 64, shift=(0.0, -0.1))[1])
    assert x1 - x0 == pytest.approx(6.4, abs=0.7) and abs(y1 - y0) < 0.7
    assert y2 - y0 == pytest.approx(-6.4, abs=1.0) and abs(x2 - x0) < 0.7


def test_yaw_slides_features_and_mouth_opens():
    p = sample_face_params(4)
    nose = PARTS.index("nose")
    x0 = np.nonzero(render_face(p, 128)[1] == nose)[1].mean()
    x_right = np.nonzero(render_face(p, 128, yaw=0.8)[1] == nose)[1].mean()
    x_left = np.nonzero(render_face(p, 128, yaw=-0.8)[1] == nose)[1].mean()
    assert x_left < x0 - 3 and x_right > x0 + 3
    mouth = PARTS.index("mouth")
    closed = (render_face(p, 128)[1] == mouth).sum()
    opened = (render_face(p, 128, mouth_open=1.0)[1] == mouth).sum()
    assert opened > 1.5 * closed


def test_roll_is_clockwise_and_scale_zooms():
    p = sample_face_params(3)
    eyes, skin = PARTS.index("eyes"), PARTS.index("skin")

    def eye_rows(labels):
        ys, xs = np.nonzero(labels == eyes)
        right = xs > xs.mean()
        return ys[right].mean(), ys[~right].mean()

    right, left = eye_rows(render_face(p, 128)[1])
    assert abs(right - left) < 1
    right, left = eye_rows(render_face(p, 128, roll=30)[1])
    assert right - left > 8                                   # the eye on the right of the image drops
    small = (render_face(p, 128, scale=0.8)[1] == skin).sum()
    large = (render_face(p, 128, scale=1.2)[1] == skin).sum()
    assert large > 1.8 * small


def test_write_domain_folders(tmp_path):
    root = write_domain_folders(tmp_path / "domains", n_train=3, n_val=2, size=32, seed=5)
    assert root == tmp_path / "domains"
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(STYLES)
        for style in STYLES:
            files = sorted((root / split / style).glob("*.png"))
            assert len(files) == count
            assert Image.open(files[0]).size == (32, 32)
    fair = np.asarray(Image.open(root / "train" / STYLES[0] / "00000.png"))
    assert np.array_equal(fair, np.asarray(Image.open(
        write_domain_folders(tmp_path / "again", 1, 0, 32, seed=5) / "train" / STYLES[0] / "00000.png")))
    with pytest.raises(ValueError, match="style"):
        write_domain_folders(tmp_path / "bad", 1, 1, 32, domains=("fair_blond", "green"))


def test_write_image_folder_matches_make_faces(tmp_path):
    root = write_image_folder(tmp_path / "faces", 3, size=32, seed=9)
    files = sorted(root.glob("*.png"))
    assert [f.name for f in files] == ["00000.png", "00001.png", "00002.png"]
    images, _ = make_faces(3, 32, seed=9)
    for f, image in zip(files, images):
        assert np.array_equal(np.asarray(Image.open(f)), image)
    jpgs = write_image_folder(tmp_path / "jpg", 2, size=32, fmt="jpg")
    assert len(list(jpgs.glob("*.jpg"))) == 2
    with pytest.raises(ValueError, match="fmt"):
        write_image_folder(tmp_path / "gif", 1, fmt="gif")


def test_face_params_is_a_frozen_dataclass_of_every_choice():
    p = sample_face_params(3, "dark_brunette")
    assert isinstance(p, FaceParams) and dataclasses.is_dataclass(p)
    q = dataclasses.replace(p, skin=(250, 220, 200))
    a, _ = render_face(p, 64)
    b, _ = render_face(q, 64)
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------------------------- portrait preset

def test_portrait_faces_are_seeded_and_hold_every_part():
    a_img, a_lab = make_face(3, 64, preset="portrait")
    b_img, b_lab = make_face(3, 64, preset="portrait")
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, make_face(3, 64)[0])          # another preset, another face
    imgs, labs = make_faces(40, 64, seed=2, preset="portrait")
    assert np.array_equal(imgs[:5], make_faces(5, 64, seed=2, preset="portrait")[0])
    for labels in labs:
        assert set(np.unique(labels).tolist()) == set(range(len(PARTS)))
    assert sample_face_params(9, preset="portrait").zoom > 1.4 > sample_face_params(9).zoom


def test_portrait_parts_cover_several_cells_at_the_catalog_layer():
    """The catalog clusters the generator's 32x32 features: on the 64 px portraits every facial part must be
    the majority label of several 2x2 cells, eyes the most."""
    _, labs = make_faces(100, 64, seed=5, preset="portrait")
    onehot = np.eye(len(PARTS))[labs]                                       # [n, 64, 64, parts]
    cells = onehot.reshape(100, 32, 2, 32, 2, len(PARTS)).mean((2, 4))     # part share of every 32x32 cell
    majority = (cells > 0.5).sum((1, 2))                                    # [n, parts]
    mean = dict(zip(PARTS, majority.mean(0)))
    assert mean["eyes"] > 14 and mean["brows"] > 6 and mean["nose"] > 6 and mean["mouth"] > 8, mean
    assert np.median(majority[:, PARTS.index("eyes")]) >= 12                # both eyes, >= 6 cells each


def test_portrait_parts_vary_independently_of_the_style():
    """Iris, brow and lip colours come from their own palettes (not from the skin / hair family), and the
    background is drawn alike for both styles, so the StarGAN domains differ in skin and hair alone."""
    def mean_colour(imgs, labs, part):
        return np.stack([img[lab == PARTS.index(part)].mean(0) for img, lab in zip(imgs, labs)])

    fair = make_faces(60, 64, seed=1, style=STYLES[0], preset="portrait")
    dark = make_faces(60, 64, seed=1, style=STYLES[1], preset="portrait")
    for part in ("brows", "mouth"):
        a, b = mean_colour(*fair, part), mean_colour(*dark, part)
        assert a.std(0).mean() > 15 and b.std(0).mean() > 15, part          # strong variation within a style
    assert mean_colour(*fair, "skin").mean() - mean_colour(*dark, "skin").mean() > 60
    assert mean_colour(*fair, "hair").mean() - mean_colour(*dark, "hair").mean() > 80
    bg_gap = np.abs(mean_colour(*fair, "background").mean(0) - mean_colour(*dark, "background").mean(0))
    assert bg_gap.max() < 25, bg_gap
    params = [sample_face_params(s, STYLES[0], preset="portrait") for s in range(40)]
    assert len({p.iris for p in params}) == 40 and np.ptp([p.brow_thick for p in params]) > 0.04
    assert np.ptp([p.mouth_w for p in params]) > 0.08 and max(p.mouth_gap for p in params) > 0.5


def test_bad_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        sample_face_params(0, preset="cartoon")
    with pytest.raises(ValueError, match="preset"):
        make_faces(1, 64, preset="")


def test_studio_background_changes_the_backdrop_only():
    bg = PARTS.index("background")
    portrait, studio = [], []
    for seed in range(12):
        style = STYLES[seed % 2]
        plain = sample_face_params(seed, style, preset="portrait")
        fixed = sample_face_params(seed, style, preset="portrait", background="studio")
        # every choice but the backdrop is the same face
        changed = {f.name for f in dataclasses.fields(FaceParams) if getattr(plain, f.name) != getattr(fixed, f.name)}
        assert changed <= {"bg_top", "bg_bottom", "bg_angle"}, changed
        a, la = make_face(seed, 64, style, preset="portrait")
        b, lb = make_face(seed, 64, style, preset="portrait", background="studio")
        assert np.array_equal(la, lb)
        inner = (la != bg) & (np.abs(a.astype(int) - b.astype(int)).max(-1) == 0)
        assert inner.sum() > 0.5 * (la != bg).sum()      # the face's pixels (but its anti-aliased rim) are equal
        portrait.append(a[la == bg].mean(0))
        studio.append(b[lb == bg].mean(0))
    # one backdrop: the studio backgrounds spread over a few levels, the portrait ones over the whole palette
    assert np.ptp(np.stack(studio), axis=0).max() < 40 < np.ptp(np.stack(portrait), axis=0).max()
    with pytest.raises(ValueError, match="background"):
        sample_face_params(0, preset="portrait", background="beach")


def test_domain_folders_with_a_studio_background(tmp_path):
    root = write_domain_folders(tmp_path / "d", 3, 1, size=32, seed=3, preset="portrait", background="studio")
    corners = np.stack([np.asarray(Image.open(p))[0, 0] for p in sorted(root.glob("*/*/*.png"))])
    assert len(corners) == 8
    # the same grey-blue backdrop in every image of both domains (its corner shaded darker than the top's centre)
    assert np.ptp(corners.astype(int), axis=0).max() < 30 and (corners[:, 2] > corners[:, 0] + 10).all(), corners


# ----------------------------------------------------------------------------------------------- faces from numbers

def test_uniforms_stand_in_for_the_random_generator():
    """The same numbers a seeded numpy Generator would hand the sampler give the same face."""
    from colab_utils.data.synthetic import UNIFORMS_PER_FACE, _UniformStream, _sample_portrait, \
        face_params_from_uniforms

    values = np.random.default_rng(5).uniform(size=UNIFORMS_PER_FACE)
    stream = _UniformStream(values)
    direct = _sample_portrait(0, None, stream)
    assert 80 <= stream.used <= UNIFORMS_PER_FACE
    assert face_params_from_uniforms(values) == direct
    assert face_params_from_uniforms(values * 0.999) != direct          # the numbers matter...
    low, high = face_params_from_uniforms(np.zeros(UNIFORMS_PER_FACE)), face_params_from_uniforms(
        np.ones(UNIFORMS_PER_FACE))
    assert low.eye_w < high.eye_w and low.hair_cut == "short" and high.hair_cut == "long"   # ...and reach both ends
    for bad in (np.full(UNIFORMS_PER_FACE, 1.5), np.full(UNIFORMS_PER_FACE, -0.1)):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            face_params_from_uniforms(bad)
    with pytest.raises(ValueError, match="needs more"):
        face_params_from_uniforms(values[:40])


def test_mixing_a_part_changes_that_part_only():
    from colab_utils.data.synthetic import PART_FIELDS, mix_face_params, render_face

    a, b = (sample_face_params(s, preset="portrait") for s in (3, 4))
    assert mix_face_params(a, b, []) == a
    image_a, labels_a = render_face(a, 64)
    image_b, labels_b = render_face(b, 64)
    for part, fields in PART_FIELDS.items():
        mixed = mix_face_params(a, b, part)
        assert all(getattr(mixed, f) == getattr(b, f) for f in fields), part
        assert mixed.head_w == a.head_w and mixed.light_x == a.light_x
        image, labels = render_face(mixed, 64)
        index = PARTS.index(part)
        region = (labels == index) | (labels_a == index) | (labels_b == index)
        if part in ("nose", "mouth"):               # the others move outlines of their neighbours
            grown = region.copy()
            for dy in (-2, -1, 0, 1, 2):            # 2 px of slack for anti-aliasing and the nose's shadow
                for dx in (-2, -1, 0, 1, 2):
                    grown |= np.roll(region, (dy, dx), axis=(0, 1))
            assert np.abs(image.astype(int) - image_a.astype(int))[~grown].max() <= 2, part
        # inside the part, the mix is the reference's part, not the target's
        assert np.abs(image.astype(int) - image_b.astype(int))[region].mean() < \
            np.abs(image_a.astype(int) - image_b.astype(int))[region].mean(), part
    everything = mix_face_params(a, b, list(PART_FIELDS))           # every part, but the target's head shape
    assert everything == dataclasses.replace(b, seed=a.seed, head_x=a.head_x, head_y=a.head_y, head_w=a.head_w,
                                             head_h=a.head_h, jaw=a.jaw, ear_w=a.ear_w, ear_h=a.ear_h,
                                             neck_w=a.neck_w, light_x=a.light_x, light_y=a.light_y, zoom=a.zoom,
                                             style=a.style, brow_gap=everything.brow_gap,
                                             hairline=everything.hairline)
    # the brows keep their own gap above the eyes they end up over
    eyes_only = mix_face_params(a, b, "eyes")
    assert eyes_only.brow_gap - eyes_only.eye_h - eyes_only.brow_thick / 2 == pytest.approx(
        a.brow_gap - a.eye_h - a.brow_thick / 2)
    with pytest.raises(ValueError, match="unknown parts"):
        mix_face_params(a, b, "ears")
