"""StyleGAN2 trainer: learning, bit-exact resume, bad data, augmentation, CLI (tiny CPU configurations)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils.checkpoint import safe_load
from colab_utils.data.synthetic import make_face, write_image_folder
from colab_utils.stylegan2 import generate, load_rosinality
from colab_utils.stylegan2.__main__ import main as cli
from colab_utils.stylegan2.augment import AdaptiveAugment
from colab_utils.stylegan2.train import (LoaderItems, SyntheticFaces, TrainConfig, build_nets, ema_beta,
                                         load_checkpoint, plain_fp32, real_batch, to_unit_range, train,
                                         training_images)

TINY = dict(size=32, channels=16, style_dim=16, n_mlp=1, batch=8, checkpoint_minutes=None, n_samples=8,
            synthetic_images=64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces32():
    return SyntheticFaces(128, 32, seed=0)


def _colour_stats(images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation of a batch in [-1, 1]."""
    return torch.cat([images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))])


# ---------------------------------------------------------------------------------------------------------
# learning
# ---------------------------------------------------------------------------------------------------------

def test_short_training_moves_colour_statistics_toward_the_data(faces32, tmp_path):
    target = _colour_stats(faces32.pixels.float() / 127.5 - 1)
    config = TrainConfig(**TINY, steps=30, lr=0.004, augment=False, r1_gamma=0.0, pl_weight=0.0, mixing=0.0,
                         sample_every=15, log_every=5)
    result = train(config, faces32, tmp_path / "run", progress=False, verbose=False)
    first = sorted((tmp_path / "run" / "samples").glob("step-*.png"))
    assert [p.name for p in first] == ["step-000000000.png", "step-000000015.png", "step-000000030.png"]
    untrained = np.asarray(Image.open(first[0]))
    band = untrained.shape[0] - (2 + 34)       # one row of 8 tiles of 32 px, 2 px padding, under a title line
    assert untrained.shape[1:] == (2 + 8 * 34, 3) and 8 < band < 40
    assert (untrained[:band] < 128).any() and (untrained[:band] == 255).mean() > 0.8   # dark text: the step
    titled = [np.asarray(Image.open(p))[:band] for p in first]
    assert not np.array_equal(titled[0], titled[1]) and not np.array_equal(titled[1], titled[2])

    torch.manual_seed(0)
    before = build_nets(config, "cpu").ema.module        # the same initial G average (seed 0)
    start = (_colour_stats(generate(before, 64, seed=1)) - target).norm()
    end = (_colour_stats(generate(result.g_ema, 64, seed=1)) - target).norm()
    assert end < 0.5 * start, (float(start), float(end))
    assert result.step == 30 and result.stopped is None
    assert {"d", "g", "real", "fake"} <= set(result.history)
    assert result.gif.is_file() and result.curves.is_file() and result.export.is_file()
    exported = load_rosinality(result.export, which="all")
    assert exported.latent_avg.shape == (16,)
    for key, value in result.g_ema.state_dict().items():
        assert torch.equal(exported.g_ema.state_dict()[key], value), key


def test_plain_fp32_and_lazy_regularisation_settings():
    config = TrainConfig(**TINY, steps=1)
    plain = plain_fp32(config)
    assert (plain.precision, plain.channels_last, plain.fast_optim, plain.cudnn_benchmark) == \
        ("fp32", False, False, False)
    assert config.channel_table() == {4: 16, 8: 16, 16: 16, 32: 16}
    nets = build_nets(config, "cpu")
    g, d = nets.g_optim.param_groups[0], nets.d_optim.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5) and g["betas"] == (0.0, pytest.approx(0.99 ** 0.8))
    assert d["lr"] == pytest.approx(0.002 * 16 / 17) and d["betas"] == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert g["foreach"] and not build_nets(plain, "cpu").g_optim.param_groups[0]["foreach"]
    unregularised = build_nets(dataclasses.replace(config, pl_weight=0.0, r1_gamma=0.0), "cpu")
    assert unregularised.g_optim.param_groups[0]["lr"] == unregularised.d_optim.param_groups[0]["lr"] == 0.002
    # half-life ema_kimg: after ema_kimg * 1000 images the old average weighs one half
    steps = int(config.ema_kimg * 1000 / config.batch)
    assert ema_beta(dataclasses.replace(config, ema_rampup=None), 10**9) ** steps == pytest.approx(0.5)
    assert ema_beta(config, 160) == pytest.approx(0.5)  # ramp-up: half-life 0.05 * 160 = 8 images = one batch
    with pytest.raises(ValueError, match="batch must be an even"):
        TrainConfig(**{**TINY, "batch": 3}).check()
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(**TINY, precision="fp8").check()


def test_fp16_grad_scaler_skips_overflowing_penalties_without_poisoning_state(faces32, tmp_path):
    """fp16 autocast (CPU here, a T4 on Colab): the first scaled penalties overflow; those steps are skipped,
    the scale drops, and the path-length running mean stays finite, so later penalties are usable."""
    config = TrainConfig(**{**TINY, "batch": 4}, steps=8, r1_every=2, pl_every=2, precision="fp16", augment=False,
                         log_every=1, sample_every=100)
    result = train(config, faces32, tmp_path, progress=False, verbose=False)
    assert not np.isfinite(result.history["pl"][0][1])  # the first one overflowed at scale 2**16
    state = safe_load(tmp_path / "ckpt-000000008.pt")["objects"]
    assert torch.isfinite(state["pl"]["mean"]) and state["pl"]["mean"] > 0
    assert state["precision"]["scaler"]["scale"] < 2.0 ** 16
    assert np.isfinite(result.history["pl"][-1][1]) and np.isfinite(result.history["r1"][-1][1])
    assert all(torch.isfinite(p).all() for p in result.G.parameters())


# ---------------------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------------------

def _last_checkpoint(run_dir):
    ckpt = safe_load(sorted(run_dir.glob("ckpt-*.pt"))[-1])
    return ckpt["step"], ckpt["objects"]


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resumed_run_is_bit_exact(faces32, tmp_path):
    """Every phase on (R1 and path length every 2 steps, mixing, mirror, adaptive augmentation whose p moves,
    channels_last as on a GPU), 4 steps straight vs 2 + 2 resumed: identical networks, G average, optimizers,
    path-length mean, ADA state, data position and loss history."""
    config = dict(TINY, r1_every=2, pl_every=2, augment=True, ada_p=0.4, ada_target=0.6, ada_speed_kimg=0.02,
                  ada_interval=1, sample_every=100, log_every=1, channels_last=True)
    straight = train(TrainConfig(**config, steps=4), faces32, tmp_path / "a", progress=False, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no config-change warning: only the run length differs
        train(TrainConfig(**config, steps=2), faces32, tmp_path / "b", progress=False, verbose=False)
        resumed = train(TrainConfig(**config, steps=4), faces32, tmp_path / "b", progress=False, verbose=False)
    step_a, a = _last_checkpoint(tmp_path / "a")
    step_b, b = _last_checkpoint(tmp_path / "b")
    assert step_a == step_b == 4
    assert a["augment"]["p"] != 0.4  # p really moved
    _assert_same(a, b)
    assert straight.augment_p == resumed.augment_p
    assert sorted(p.name for p in (tmp_path / "b").glob("ckpt-*.pt")) == ["ckpt-000000002.pt", "ckpt-000000004.pt"]


class _FloatItems(torch.utils.data.Dataset):
    """A user's dataset: float items only."""

    def __init__(self, faces):
        self.faces = faces

    def __len__(self):
        return len(self.faces)

    def __getitem__(self, index):
        return self.faces[index]


def test_loader_moves_uint8_pixels_and_real_batch_makes_the_same_floats_and_flips(faces32):
    items = LoaderItems(faces32)
    assert len(items) == len(faces32) and items[3].dtype == torch.uint8
    assert torch.equal(to_unit_range(items[3]), faces32[3])
    assert LoaderItems(_FloatItems(faces32))[3].dtype == torch.float32   # no uint8_item: float items
    config = TrainConfig(**TINY, mirror=True)
    nets = build_nets(config, "cpu")
    pixels = torch.stack([items[i] for i in range(8)])
    floats = torch.stack([faces32[i] for i in range(8)])
    torch.manual_seed(5)
    from_pixels = real_batch(pixels, nets, config)
    torch.manual_seed(5)
    from_floats = real_batch(floats, nets, config)
    assert from_pixels.dtype == torch.float32 and torch.equal(from_pixels, from_floats)
    flipped = (from_pixels != floats).flatten(1).any(1)
    assert 0 < int(flipped.sum()) < 8
    assert torch.equal(from_pixels[flipped], floats[flipped].flip(3))
    assert torch.equal(from_pixels[~flipped], floats[~flipped])


def test_the_training_loop_reads_uint8_batches(faces32, tmp_path, monkeypatch):
    seen = []

    def spy(batch, nets, config):
        seen.append(batch.dtype)
        return real_batch(batch, nets, config)

    monkeypatch.setattr(sys.modules["colab_utils.stylegan2.train"], "real_batch", spy)
    config = TrainConfig(**TINY, steps=1, augment=False, sample_every=100, log_every=1)
    train(config, faces32, tmp_path / "run", progress=False, verbose=False)
    assert seen == [torch.uint8]


def test_the_log_says_when_minibatch_stddev_groups_differ_from_the_official_code(faces32, tmp_path, capsys):
    train(TrainConfig(**{**TINY, "batch": 6}, steps=1, augment=False), faces32, tmp_path / "six", progress=False)
    assert ("StyleGAN2: minibatch stddev: D sees 6 images per step, which the official code cannot split into "
            "groups of 4; groups of 3 are used instead") in capsys.readouterr().out
    train(TrainConfig(**TINY, steps=1, augment=False), faces32, tmp_path / "eight", progress=False)
    assert "minibatch stddev" not in capsys.readouterr().out


def test_checkpoint_from_another_architecture_is_refused(faces32, tmp_path):
    from colab_utils.checkpoint import CheckpointMismatchError

    train(TrainConfig(**TINY, steps=1, augment=False), faces32, tmp_path, progress=False, verbose=False)
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        train(TrainConfig(**{**TINY, "style_dim": 8}, steps=2, augment=False), faces32, tmp_path, progress=False,
              verbose=False)


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------

def test_mixed_formats_load_and_a_corrupt_file_is_skipped_and_named(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    face = Image.fromarray(make_face(3, 64)[0])
    face.save(root / "a.png")
    face.save(root / "b.jpg", quality=90)
    face.save(root / "sub" / "c.webp")
    face.convert("L").save(root / "sub" / "d_gray.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "e_rgba.png")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable.*sub/broken\.jpg"):
        data = training_images(root, 32, min_images=4)
    assert len(data) == 5
    batch = torch.stack([data[i] for i in range(len(data))])
    assert batch.shape == (5, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    gray = data[data.paths.index(root / "sub" / "d_gray.png")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_tiny_folder_is_refused(tmp_path):
    write_image_folder(tmp_path / "few", 3, size=32)
    with pytest.raises(ValueError, match=r"found 3 usable images in .*few, need at least 8 \(one batch of 8\)"):
        train(TrainConfig(**TINY, steps=1), tmp_path / "few", tmp_path / "run", progress=False, verbose=False)


def test_zip_and_missing_data(tmp_path, monkeypatch):
    import zipfile

    from colab_utils.data import images as images_module

    folder = write_image_folder(tmp_path / "faces", 8, size=32)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"faces/{path.name}")
    monkeypatch.setattr(images_module, "default_data_dir", lambda: tmp_path / "local")
    data = training_images(archive, 32, min_images=8)
    assert len(data) == 8 and data.root == tmp_path / "local" / "faces" / "faces"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        training_images(tmp_path / "nowhere", 32, min_images=1)


# ---------------------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------------------

def test_augment_with_p_zero_is_identity_and_shapes_are_kept():
    x = torch.randn(6, 3, 32, 32)
    aug = AdaptiveAugment(p=0.0)
    assert aug(x) is x
    full = AdaptiveAugment(p=1.0, target=None, seed=1)
    y = full(x.clone().requires_grad_(True))
    assert y.shape == x.shape and y.dtype == x.dtype
    y.sum().backward()  # differentiable
    cl = x.contiguous(memory_format=torch.channels_last)
    out = AdaptiveAugment(p=1.0, seed=2)(cl)
    assert torch.allclose(out, AdaptiveAugment(p=1.0, seed=2)(x), atol=1e-6)  # same draws in either format
    assert out.is_contiguous(memory_format=torch.channels_last) and not torch.allclose(out, x)
    assert torch.equal(AdaptiveAugment(p=0.7, seed=5)(x), AdaptiveAugment(p=0.7, seed=5)(x))  # seeded
    with pytest.raises(ValueError, match="square RGB"):
        full(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AdaptiveAugment(p=1.5)


def test_geometric_part_permutes_pixels_without_colour_change():
    """With only geometry (no colour, no cutout) every output pixel is some input pixel."""
    from colab_utils.stylegan2.augment import _geometric

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    flip, turns = torch.tensor([True, False]), torch.tensor([0, 1])
    dy, dx = torch.tensor([0, 0]), torch.tensor([0, 0])
    y = _geometric(x, (flip, turns, dy, dx))
    assert torch.equal(y[0], x[0].flip(2))
    assert torch.equal(y[1], torch.rot90(x[1], 1, dims=(1, 2)))
    shifted = _geometric(x, (torch.tensor([False, False]), torch.tensor([0, 0]), torch.tensor([2, 0]),
                             torch.tensor([0, -1])))
    assert torch.equal(shifted[0, :, 2:], x[0, :, :-2]) and torch.equal(shifted[0, :, 1], x[0, :, 1])  # reflected
    assert torch.equal(shifted[1, :, :, :-1], x[1, :, :, 1:])


def test_adaptive_p_moves_in_the_right_direction():
    aug = AdaptiveAugment(p=0.5, target=0.6, speed_kimg=1.0, interval=2)
    confident = torch.full((32,), 3.0)   # D sure about every real image: overfitting -> more augmentation
    aug.update(confident)
    assert aug.p == 0.5                  # only every `interval` calls
    aug.update(confident)
    assert aug.p == 0.5 and aug.last_rt is None   # an interval's r_t applies when the next interval ends
    unsure = torch.tensor([1.0, -1.0] * 16)  # r_t = 0 < 0.6 -> less augmentation
    for _ in range(2):
        aug.update(unsure)
    assert aug.p == pytest.approx(0.5 + 64 / 1000) and aug.last_rt == 1.0
    for _ in range(2):
        aug.update(-confident)
    assert aug.p == pytest.approx(0.5) and aug.last_rt == 0.0
    for _ in range(40):
        aug.update(-confident)
    assert aug.p == 0.0                  # clamped
    restored = AdaptiveAugment(p=0.0, target=0.6, speed_kimg=1.0, interval=2)
    aug.update(confident)                # a pending half-interval and the ended interval are saved too
    restored.load_state_dict(aug.state_dict())
    for _ in range(3):
        aug.update(confident), restored.update(confident)
    assert restored.p == aug.p > 0 and restored.last_rt == aug.last_rt == 1.0
    x = torch.randn(4, 3, 16, 16)
    aug.p = restored.p = 0.9
    assert torch.equal(aug(x), restored(x))


# ---------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------

def test_cli_help_explains_every_command():
    out = subprocess.run([sys.executable, "-m", "colab_utils.stylegan2", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for option in ("--data", "--run-dir", "--size", "--batch", "--kimg", "--steps", "--precision", "--augment",
                   "--resume", "--session-hours", "--drive-dir", "--plain"):
        assert option in out
    for command in ("generate", "export"):
        with pytest.raises(SystemExit) as exit_info:
            cli([command, "--help"])
        assert exit_info.value.code == 0


def test_cli_train_generate_export(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", "synthetic", "--synthetic-images", "16", "--run-dir", str(run), "--size", "32",
            "--channels", "16", "--style-dim", "16", "--n-mlp", "1", "--batch", "4", "--steps", "2",
            "--no-augment", "--pl-every", "2", "--checkpoint-minutes", "none", "--no-progress", "--n-samples", "4"]
    assert cli(args) == 0
    assert (run / "ckpt-000000002.pt").is_file() and (run / "ckpt-000000002.json").is_file()
    assert cli(args[:-2] + ["--resume", "fresh"]) == 2
    assert "already holds ckpt-000000002.pt" in capsys.readouterr().err
    assert cli(["generate", "--ckpt", str(run), "--n", "4", "--out", str(tmp_path / "grid.png"), "--nrow", "2",
                "--truncation", "0.7", "--interpolate", str(tmp_path / "walk.gif"), "--steps-per-pair", "2"]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)
    assert (tmp_path / "walk.gif").stat().st_size > 0
    assert cli(["export", "--ckpt", str(run), "--out", str(tmp_path / "g.pt")]) == 0
    assert cli(["generate", "--ckpt", str(tmp_path / "grid.png")]) == 2
    assert "grid.png is damaged or not a PyTorch checkpoint" in capsys.readouterr().err
    assert cli(["train", "--data", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r2")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    loaded = load_rosinality(tmp_path / "g.pt", which="all")
    trained = load_checkpoint(run)
    assert loaded.config["size"] == 32 and loaded.d is not None
    for key, value in trained.g_ema.state_dict().items():
        assert torch.equal(loaded.g_ema.state_dict()[key], value)
