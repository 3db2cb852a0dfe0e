import io
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils.data.images import (EXTRACTED_MARKER, IMAGE_EXTENSIONS, DomainFolderDataset, ImageFolderDataset,
                                     ImageLoadError, list_images, load_image, prepare_dataset,
                                     resize_center_crop)
from colab_utils.data.synthetic import make_face, write_domain_folders, write_image_folder


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def messy_folder(tmp_path):
    """Good files of every kind, nested, plus two bad ones and files that are not images."""
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    face = Image.fromarray(make_face(1, 64)[0])
    face.save(root / "a_rgb.png")
    face.convert("L").save(root / "b_gray.png")
    rgba = face.convert("RGBA")
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, :32] = 0  # left half fully transparent -> white
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(root / "nested" / "c_rgba.png")
    face.save(root / "nested" / "deeper" / "d.webp", quality=90)
    face.convert("P").save(root / "nested" / "e_palette.bmp")
    face.resize((96, 64)).save(root / "f_wide.JPG", quality=95)
    (root / "bad_random.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    whole = _png_bytes(face)
    (root / "nested" / "bad_truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(whole)
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a_rgb.png").write_bytes(b"\x00\x05\x16\x07junk")
    return root


def test_list_images_sorted_recursive_and_skips_junk(messy_folder):
    names = [p.relative_to(messy_folder).as_posix() for p in list_images(messy_folder)]
    assert names == ["a_rgb.png", "b_gray.png", "bad_random.jpg", "f_wide.JPG", "nested/bad_truncated.png",
                     "nested/c_rgba.png", "nested/deeper/d.webp", "nested/e_palette.bmp"]
    flat = [p.name for p in list_images(messy_folder, recursive=False)]
    assert flat == ["a_rgb.png", "b_gray.png", "bad_random.jpg", "f_wide.JPG"]
    assert ".webp" in IMAGE_EXTENSIONS
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(messy_folder / "nowhere")


def test_load_image_converts_modes(messy_folder):
    for name in ("b_gray.png", "nested/c_rgba.png", "nested/deeper/d.webp", "nested/e_palette.bmp"):
        img = load_image(messy_folder / name)
        assert img.mode == "RGB" and img.size == (64, 64), name
    gray = np.asarray(load_image(messy_folder / "b_gray.png"))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    rgba = np.asarray(load_image(messy_folder / "nested" / "c_rgba.png"))
    assert (rgba[:, :32] == 255).all()                       # transparent -> white
    assert np.array_equal(rgba[:, 32:], make_face(1, 64)[0][:, 32:])


def test_load_image_sixteen_bit_and_exif_rotation(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    deep = np.asarray(load_image(tmp_path / "deep.png"))
    assert deep.dtype == np.uint8 and deep[-1, -1, 0] == round(int(ramp[-1, -1]) * 255 / 65535)
    wide = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    wide.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "phone.jpg").size == (20, 40)


def test_load_image_errors_name_the_file(messy_folder):
    with pytest.raises(ImageLoadError, match="bad_random.jpg") as info:
        load_image(messy_folder / "bad_random.jpg")
    assert isinstance(info.value, ValueError) and info.value.path.name == "bad_random.jpg"
    with pytest.raises(ImageLoadError, match="bad_truncated.png"):
        load_image(messy_folder / "nested" / "bad_truncated.png")
    with pytest.raises(ImageLoadError, match="missing.png.*no such file"):
        load_image(messy_folder / "missing.png")


def test_resize_center_crop():
    img = Image.new("RGB", (300, 100), (0, 0, 0))
    img.paste((255, 255, 255), (100, 0, 200, 100))         # white middle third
    out = resize_center_crop(img, 32)
    assert out.size == (32, 32)
    pixels = np.asarray(out)
    assert pixels[:, 1:-1].min() > 250 and pixels.min() > 200  # only the centre square is kept
    assert resize_center_crop(Image.new("RGB", (10, 30)), 64).size == (64, 64)


def test_dataset_skips_bad_files_with_one_warning(messy_folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(messy_folder, 32)
    ours = [w for w in caught if "unreadable" in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "skipped 2" in message and "bad_random.jpg" in message and "nested/bad_truncated.png" in message
    assert sorted(p.name for p, _ in ds.skipped) == ["bad_random.jpg", "bad_truncated.png"]
    assert len(ds) == 6
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    white_left = ds[ds.paths.index(messy_folder / "nested" / "c_rgba.png")]
    assert torch.equal(white_left[:, :, :12], torch.ones(3, 32, 12))


def test_dataset_values_map_uint8_to_unit_range(tmp_path):
    Image.new("RGB", (8, 8), (0, 255, 51)).save(tmp_path / "x.png")
    x = ImageFolderDataset(tmp_path, 8)[0]
    assert torch.allclose(x[:, 0, 0], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))


@pytest.mark.parametrize("cache", [False, True])
def test_dataset_hands_uint8_pixels_to_the_training_loader(tmp_path, cache):
    from colab_utils.stylegan2.train import LoaderItems, to_unit_range

    Image.new("RGB", (8, 8), (0, 255, 51)).save(tmp_path / "x.png")
    ds = ImageFolderDataset(tmp_path, 8, cache=cache)
    pixels = LoaderItems(ds)[0]                      # what StyleGAN2's loader reads: uint8, floats on the device
    assert pixels.dtype == torch.uint8 and pixels[:, 0, 0].tolist() == [0, 255, 51]
    assert torch.equal(to_unit_range(pixels), ds[0])


def test_dataset_cache_equals_uncached(tmp_path):
    root = write_image_folder(tmp_path / "faces", 4, size=64, seed=2)
    plain = ImageFolderDataset(root, 32)
    cached = ImageFolderDataset(root, 32, cache=True)
    before = [plain[i] for i in range(4)]
    for i in range(4):
        assert torch.equal(before[i], cached[i])
    for f in root.iterdir():
        f.unlink()
    assert torch.equal(cached[3], before[3])                  # served from memory
    with pytest.raises(ImageLoadError, match="00003.png"):
        plain[3]


def test_too_few_images_names_folder_and_count(tmp_path):
    root = write_image_folder(tmp_path / "tiny", 3, size=32)
    with pytest.raises(ValueError, match=r"found 3 usable images in .*tiny, need at least 16 \(the batch size\)"):
        ImageFolderDataset(root, 32, min_images=16, min_reason="the batch size")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="found 0 usable images"):
        ImageFolderDataset(empty, 32)
    with pytest.raises(FileNotFoundError, match="absent"):
        ImageFolderDataset(tmp_path / "absent", 32)


def test_unchecked_dataset_fails_on_read_naming_the_file(messy_folder):
    ds = ImageFolderDataset(messy_folder, 32, check=False)
    assert len(ds) == 8 and ds.skipped == []
    with pytest.raises(ImageLoadError, match="bad_random.jpg"):
        ds[ds.paths.index(messy_folder / "bad_random.jpg")]


def test_domain_dataset_labels(tmp_path):
    root = write_domain_folders(tmp_path / "d", n_train=3, n_val=1, size=32, seed=1) / "train"
    (root / "fair_blond" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = DomainFolderDataset(root, 32)
    assert ds.domains == ["dark_brunette", "fair_blond"]
    assert ds.targets == [0, 0, 0, 1, 1, 1]
    assert ds.indices_of("fair_blond") == [3, 4, 5]
    x, y = ds[4]
    assert x.shape == (3, 32, 32) and y == 1
    # the fair domain is lighter on average than the dark one
    assert ds[3][0].mean() > ds[0][0].mean()


def test_domain_dataset_errors(tmp_path):
    root = write_domain_folders(tmp_path / "d", n_train=2, n_val=0, size=32, domains=("fair_blond",))
    with pytest.raises(ValueError, match="at least 2"):
        DomainFolderDataset(root / "train", 32)
    (root / "train" / "empty_domain").mkdir()
    with pytest.raises(ValueError, match="empty_domain has 0 usable images"):
        DomainFolderDataset(root / "train", 32)
    (root / "train" / "empty_domain" / "x.png").write_bytes(_png_bytes(Image.new("RGB", (8, 8))))
    assert len(DomainFolderDataset(root / "train", 32)) == 3
    with pytest.raises(ValueError, match="empty_domain has 1 usable images, need at least 5"):
        DomainFolderDataset(root / "train", 32, min_images_per_domain=5)
    split_root = write_domain_folders(tmp_path / "splits", 1, 1, 32)
    with pytest.raises(ValueError, match="split folders"):
        DomainFolderDataset(split_root, 32)


def _zip_folder(folder, path, prefix=""):
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/._junk.png", b"junk")
    return path


def test_prepare_dataset_folder_and_zip(tmp_path):
    faces = write_image_folder(tmp_path / "faces", 3, size=32)
    assert prepare_dataset(faces) == faces
    archive = _zip_folder(faces, tmp_path / "my faces.zip", prefix="faces/")
    local = tmp_path / "local"
    got = prepare_dataset(archive, local, copy_first=True)
    assert got == local / "my faces" / "faces"               # descended into the single top folder
    assert sorted(p.name for p in got.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert not (local / "my faces" / "__MACOSX").exists()
    assert sorted(p.name for p in local.iterdir()) == ["my faces"]  # the local copy of the zip is gone
    assert (local / "my faces" / EXTRACTED_MARKER).is_file()
    assert np.array_equal(np.asarray(Image.open(got / "00001.png")), np.asarray(Image.open(faces / "00001.png")))

    # a second call for the same zip does not extract again
    sentinel = got / "sentinel.txt"
    sentinel.write_text("still here")
    assert prepare_dataset(archive, local) == got and sentinel.exists()
    # a changed zip (new size and mtime) is extracted afresh
    (faces / "00000.png").unlink()
    _zip_folder(faces, archive, prefix="faces/")
    os.utime(archive, ns=(1, 1))
    got = prepare_dataset(archive, local)
    assert sorted(p.name for p in got.iterdir()) == ["00001.png", "00002.png"]
    assert len(ImageFolderDataset(got, 32)) == 2


def test_prepare_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.zip"):
        prepare_dataset(tmp_path / "nothing.zip", tmp_path / "local")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(ValueError, match="junk.zip is not a valid zip"):
        prepare_dataset(junk, tmp_path / "local")
    # a zip whose directory is intact but whose data is damaged
    faces = write_image_folder(tmp_path / "faces", 2, size=32)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(faces.iterdir()):
            zf.write(f, f.name)
    data = bytearray(damaged.read_bytes())
    for i in range(200, 400):
        data[i] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged.zip is a corrupt zip"):
        prepare_dataset(damaged, tmp_path / "local")
    assert not (tmp_path / "local" / "damaged").exists()
    text = tmp_path / "faces.tar"
    text.write_text("x")
    with pytest.raises(ValueError, match="expected an image folder or a .zip"):
        prepare_dataset(text)


def test_a_zip_without_images_leaves_nothing_behind(tmp_path):
    empty = tmp_path / "faces.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("faces/README.txt", "the photos are on my phone")
        zf.writestr("faces/.DS_Store", "x")
    local = tmp_path / "local"
    for copy_first in (True, False):
        with pytest.raises(ValueError, match=r"faces\.zip holds no images \(.jpg/.jpeg/.png/.webp/.bmp\), only "
                                             r"faces/README\.txt"):
            prepare_dataset(empty, local, copy_first=copy_first)
        assert list(local.iterdir()) == []  # no extracted copy, no copied zip, no partial folder
