"""StarGAN v2 data sampling, trainer, synthesis and CLI on tiny CPU configurations."""
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils import viz
from colab_utils.data.synthetic import write_domain_folders
from colab_utils.stargan import __main__ as cli
from colab_utils.stargan import data as sdata
from colab_utils.stargan.fan import FANRequiredError
from colab_utils.stargan.formats import load_official
from colab_utils.stargan.synthesize import (interpolation_frames, latent_grid, load_nets, reference_grid,
                                            style_codes, translate)
from colab_utils.stargan.train import (TrainConfig, _init_from_official, build_state, diversity_weight,
                                       nets_from_checkpoint, train, train_step)

TINY = dict(img_size=32, base_dim=8, max_conv_dim=16, hidden_dim=16, style_dim=8, latent_dim=4, w_hpf=0,
            batch=4, workers=0, sample_every=0, checkpoint_minutes=0, log_every=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the loss-curve PNG (matplotlib takes seconds) where a test does not look at it."""
    monkeypatch.setattr("colab_utils.stargan.train._plot_losses", lambda log, folder: None)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """train/ and val/ with two colour domains of synthetic faces at 32 px."""
    return write_domain_folders(tmp_path_factory.mktemp("faces"), n_train=24, n_val=4, size=32, seed=0)


def _states_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _states_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _states_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------

def test_balanced_sampler_draws_every_domain_equally_and_resumes():
    labels = [0] * 90 + [1] * 10
    sampler = sdata.BalancedSampler(labels, seed=3)
    drawn = [i for _, i in zip(range(4000), sampler.stream())]
    share = np.mean([labels[i] for i in drawn])
    assert 0.46 < share < 0.54  # 10 % of the files, half of the draws
    assert drawn[:300] == [i for _, i in zip(range(300), sdata.BalancedSampler(labels, seed=3).stream())]
    assert drawn[:300] != [i for _, i in zip(range(300), sdata.BalancedSampler(labels, seed=4).stream())]

    sampler.advance(137)
    resumed = sdata.BalancedSampler(labels, seed=3)
    resumed.load_state_dict(sampler.state_dict())
    assert [i for _, i in zip(range(200), resumed.stream())] == drawn[137:337]


def test_reference_pairs_are_two_different_images_of_one_domain(tmp_path):
    root = write_domain_folders(tmp_path, n_train=5, n_val=0, size=32, seed=1)
    for extra in range(4):  # unbalanced: 9 and 5 images
        Image.open(root / "train" / "fair_blond" / "00000.png").save(root / "train" / "fair_blond" / f"x{extra}.png")
    data = sdata.TrainingData(root, 32, batch_size=6, latent_dim=4, seed=0, crop_prob=0.0)
    targets = np.asarray(data.dataset.targets)
    partner = data.pairs.partner
    assert (targets[partner] == targets).all() and (partner != np.arange(len(targets))).all()
    x_ref, x_ref2, y = data.pairs[3]
    assert y == targets[3] and torch.equal(x_ref, data.dataset[3][0]) and torch.equal(x_ref2, data.dataset[partner[3]][0])
    batch = data.next()
    assert batch.x_src.shape == (6, 3, 32, 32) and batch.z_trg.shape == (6, 4) and batch.y_ref.shape == (6,)
    assert not torch.equal(batch.z_trg, batch.z_trg2)
    assert batch.x_src.min() >= -1 and batch.x_src.max() <= 1


def test_training_data_resumes_exactly_with_augmentation_and_latents(faces):
    straight = sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=7)
    expected = [straight.next() for _ in range(5)]
    first = sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=7)
    for _ in range(2):
        first.next()
    state = first.state_dict()
    resumed = sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=7)
    resumed.load_state_dict(state)
    for want in expected[2:]:
        got = resumed.next()
        for a, b in zip(want, got):
            assert torch.equal(a, b)


def test_augmentation_is_the_official_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = sdata.crop_box(64, 64, g)
        assert 0.8 * 64 * 64 * 0.97 <= h * w <= 64 * 64 and 0.9 * 0.94 <= w / h <= 1.1 / 0.94
        assert 0 <= top <= 64 - h and 0 <= left <= 64 - w
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    out = sdata.augment(x, g, crop_prob=0.0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    assert all(f or torch.equal(o, xi) for f, o, xi in zip(flipped, out, x))
    assert 20 < sum(flipped) < 44  # about half
    cropped = sdata.augment(x, g, crop_prob=1.0, flip_prob=0.0)
    unchanged = sum(torch.equal(c, xi) for c, xi in zip(cropped, x))  # a crop may cover the whole image
    assert cropped.shape == x.shape and unchanged < 16


def test_domain_folders_are_checked_and_named(tmp_path):
    one = tmp_path / "one" / "train" / "cats"
    one.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(one / "a.png")
    with pytest.raises(ValueError, match=r"at least 2.*\['cats'\]"):
        sdata.load_domains(tmp_path / "one", 32)

    root = write_domain_folders(tmp_path / "two", n_train=3, n_val=0, size=32)
    for f in (root / "train" / "dark_brunette").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"dark_brunette has 0 usable images, need at least 2"):
        sdata.load_domains(root, 32)

    root = write_domain_folders(tmp_path / "three", n_train=3, n_val=0, size=32)
    (root / "train" / "fair_blond" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match=r"fair_blond/broken\.png"):
        dataset = sdata.load_domains(root, 32)
    assert sdata.domain_counts(dataset) == {"dark_brunette": 3, "fair_blond": 3}


def test_a_zip_is_unpacked_to_local_disk_first(tmp_path, faces, monkeypatch):
    monkeypatch.setattr("colab_utils.data.images.default_data_dir", lambda: tmp_path / "local")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(faces.rglob("*.png")):
            zf.write(path, Path("faces") / path.relative_to(faces))
    dataset = sdata.load_domains(archive, 32)
    assert dataset.root == tmp_path / "local" / "faces" / "faces" / "train"
    assert sdata.domain_counts(dataset) == {"dark_brunette": 24, "fair_blond": 24}


# ------------------------------------------------------------------------------------------------------------
# Trainer
# ------------------------------------------------------------------------------------------------------------

def test_resume_is_bit_exact_including_the_diversity_weight(faces, tmp_path, no_plots):
    config = TrainConfig(**TINY, total_iters=4, ds_iter=10, seed=5)
    straight = train(config, faces, tmp_path / "straight", device="cpu", progress=False, verbose=False)
    half = train(config, faces, tmp_path / "resumed", device="cpu", stop_at=2, progress=False, verbose=False)
    assert half.step == 2 and not half.finished and half.stop_reason == "stop_at=2"
    resumed = train(config, faces, tmp_path / "resumed", device="cpu", progress=False, verbose=False)
    assert straight.finished and resumed.finished and resumed.step == straight.step == 4

    a, b = straight.state.checkpoint_objects(), resumed.state.checkpoint_objects()
    assert set(a) >= {"generator", "discriminator", "generator_ema", "optim_mapping_network", "precision_g"}
    for name in a:
        _states_equal(a[name].state_dict(), b[name].state_dict(), name)
    _states_equal(straight.history, resumed.history, "history")
    assert straight.lambda_ds == resumed.lambda_ds == pytest.approx(0.6)  # 1 - 4/10 for iteration 5
    saved = torch.load(resumed.checkpoint, weights_only=True)
    assert saved["extra"]["lambda_ds"] == pytest.approx(0.6)
    assert [v for _, v in resumed.history["lambda_ds"]] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    _states_equal(torch.load(straight.checkpoint, weights_only=True)["objects"]["data"], saved["objects"]["data"])
    # the moving average moved, and differs from the trained generator
    assert not torch.equal(a["generator_ema"].module.to_rgb[2].weight, a["generator"].to_rgb[2].weight)
    # the mapping network has its own learning rate
    assert a["optim_mapping_network"].param_groups[0]["lr"] == config.f_lr != config.lr


def test_diversity_weight_decays_linearly_to_zero():
    config = TrainConfig(lambda_ds=2.0, ds_iter=4)
    assert [diversity_weight(config, s) for s in range(1, 7)] == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]


def test_short_run_moves_translations_toward_the_target_domain_colours(faces, tmp_path, no_plots):
    """Measured on the val faces: t = projection of an image's mean colour on the axis from the mean of
    domain 0 (t=0) to that of domain 1 (t=1). The gap t(translated to 1) - t(translated to 0) starts near
    0 for the random networks and must grow once the networks learn the domains."""
    val = sdata.load_domains(faces, 32, split="val", min_images=1)
    x, y = torch.stack([val[i][0] for i in range(len(val))]), torch.tensor(val.targets)
    means = torch.stack([x[y == d].mean((0, 2, 3)) for d in range(2)])
    axis = means[1] - means[0]

    def gaps(nets):
        t = lambda img: ((img.mean((2, 3)) - means[0]) @ axis / axis.dot(axis)).mean()  # noqa: E731
        refs = [x[y == d][:1] for d in range(2)]
        ref_gap = t(translate(nets, x, ref=refs[1], domain=1)) - t(translate(nets, x, ref=refs[0], domain=0))
        lat_gap = t(translate(nets, x, domain=1, seed=3)) - t(translate(nets, x, domain=0, seed=3))
        return float(ref_gap), float(lat_gap)

    config = TrainConfig(**{**TINY, "max_conv_dim": 32, "hidden_dim": 32}, total_iters=100, lr=3e-3, f_lr=2e-3,
                         ema=0.9, seed=1)
    before = gaps(build_state(config, 2, "cpu").ema_nets().eval())
    result = train(config, faces, tmp_path / "run", device="cpu", progress=False, verbose=False)
    after = gaps(result.nets)
    assert abs(before[0]) < 0.1 and abs(before[1]) < 0.1, before
    assert after[0] > 0.3 and after[1] > 0.2, after  # about 0.6 and 0.4


class _StubFAN(torch.nn.Module):
    """Stands in for FAN (too slow for a unit test): constant masks, and a record of what it saw."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def get_heatmap(self, x):
        self.seen.append(x.detach().clone())
        ones = torch.ones(x.size(0), 1, 256, 256)
        return ones, ones * 0.5


def test_the_high_pass_path_takes_fan_masks_of_sources_and_fakes(faces, tmp_path):
    config = TrainConfig(**{**TINY, "w_hpf": 1.0})
    with pytest.raises(ValueError, match=r"stargan_v2_wing.*w_hpf=0"):
        train(config, faces, tmp_path / "run", device="cpu", progress=False, verbose=False)
    fan = _StubFAN()
    state = build_state(config, 2, "cpu", fan=fan)
    data = sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=0)
    batch = data.next()
    losses = train_step(state, batch, lambda_ds=1.0)
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(fan.seen) == 3 and torch.equal(fan.seen[0], batch.x_src)  # sources, then the two fakes (cycle)
    assert not torch.equal(fan.seen[1], batch.x_src)


def test_init_from_official_weights(tmp_path):
    config = TrainConfig(**TINY)
    donor = build_state(config, 2, "cpu")
    from colab_utils.stargan.formats import export_official
    export_official({**donor.ema_nets(), "discriminator": donor.nets.discriminator},
                    tmp_path / "9_nets_ema.ckpt", tmp_path / "9_nets_D.ckpt")
    torch.manual_seed(1)
    state = build_state(config, 2, "cpu")
    _init_from_official(state, tmp_path / "9_nets_ema.ckpt")
    for name in ("generator", "mapping_network", "style_encoder", "discriminator"):
        _states_equal(state.nets[name].state_dict(), donor.nets[name].state_dict(), name)
    _states_equal(state.ema["generator"].module.state_dict(), donor.ema["generator"].module.state_dict())
    with pytest.raises(ValueError, match="img_size"):
        _init_from_official(build_state(TrainConfig(**{**TINY, "img_size": 64}), 2, "cpu"), tmp_path / "9_nets_ema.ckpt")


# ------------------------------------------------------------------------------------------------------------
# Synthesis
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_nets():
    torch.manual_seed(0)
    return build_state(TrainConfig(**TINY), 2, "cpu").ema_nets().eval()


def test_translate_api(tiny_nets):
    nets = tiny_nets
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    ref = torch.rand(2, 3, 32, 32) * 2 - 1
    out = translate(nets, x, domain=1, seed=4)
    assert out.shape == x.shape and out.dtype == torch.float32
    # one seed: one style shared by every image (a video keeps its look)
    assert torch.equal(out, translate(nets, x, style=style_codes(nets, 1, seed=4)))
    assert torch.allclose(out[2:3], translate(nets, x[2:3], domain=1, seed=4), atol=1e-4)
    assert not torch.allclose(out, translate(nets, x, domain=1, seed=5))
    # a reference: broadcast over the batch; one per row; chunks give the same result
    by_ref = translate(nets, x, ref=ref[:1], domain=0)
    assert torch.allclose(by_ref, translate(nets, x, ref=ref[:1].expand(5, -1, -1, -1), domain=[0] * 5, batch_size=2),
                          atol=1e-4)
    z = torch.randn(5, 4)
    assert torch.allclose(translate(nets, x, z=z, domain=[0, 1, 0, 1, 1])[1],
                          translate(nets, x[1:2], z=z[1:2], domain=1)[0], atol=1e-4)
    with pytest.raises(ValueError, match=r"\[N,3,32,32\]"):
        translate(nets, torch.zeros(1, 3, 64, 64), domain=0, seed=0)
    with pytest.raises(ValueError, match="domain="):
        translate(nets, x, seed=0)
    with pytest.raises(ValueError, match="exactly one"):
        translate(nets, x, domain=0, seed=0, ref=ref)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        translate(nets, x, domain=2, seed=0)


def test_translate_with_the_high_pass_skip_needs_masks_unless_asked_not_to():
    torch.manual_seed(0)
    state = build_state(TrainConfig(**{**TINY, "w_hpf": 1.0}), 2, "cpu", fan=_StubFAN())
    nets = state.ema_nets().eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with_masks = translate(nets, x, domain=0, seed=0)
    assert len(nets.fan.seen) == 1
    del nets["fan"]
    with pytest.raises(FANRequiredError, match=r"w_hpf=1\.0: .*no FAN weights.*without_masks=True"):
        translate(nets, x, domain=0, seed=0)
    nets.without_masks = True  # the explicit choice: the generator runs without face masks
    without = translate(nets, x, domain=0, seed=0)
    assert not torch.allclose(with_masks, without)


def test_reference_grid_layout(tiny_nets):
    sources, refs = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    grid = np.asarray(reference_grid(tiny_nets, sources, refs, [0, 1], progress=False, padding=2))
    assert grid.shape == (4 * 32 + 5 * 2, 3 * 32 + 4 * 2, 3)  # (1 + sources) rows, (1 + refs) columns
    tile = lambda r, c: grid[2 + r * 34:2 + r * 34 + 32, 2 + c * 34:2 + c * 34 + 32]  # noqa: E731
    assert (tile(0, 0) == 255).all()
    assert np.array_equal(tile(0, 2), viz.to_uint8(refs[1])[0])
    assert np.array_equal(tile(2, 0), viz.to_uint8(sources[1])[0])
    assert np.array_equal(tile(2, 2), viz.to_uint8(translate(tiny_nets, sources[1:2], ref=refs[1:2], domain=1))[0])

    latent = latent_grid(tiny_nets, sources, per_domain=2, domain_names=["a", "b"], progress=False)
    assert latent.height == 5 * 32 + 6 * 2  # sources, then 2 rows per domain

    frames = interpolation_frames(tiny_nets, sources, refs, [0, 1], steps=3, progress=False)
    assert len(frames) == 2 * 3 and frames[0].shape == (32 + 4, 4 * 32 + 5 * 2, 3)
    first = viz.to_uint8(translate(tiny_nets, sources, ref=refs[:1], domain=0))
    assert np.array_equal(frames[0][2:34, 36:68], first[0])


# ------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------

def test_cli_help_explains_every_option(capsys):
    result = subprocess.run([sys.executable, "-m", "colab_utils.stargan", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and all(c in result.stdout for c in ("train", "sample", "align", "export"))
    for command in ("train", "sample", "align", "export"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--" in text
    train_help = (cli.build_parser()._subparsers._group_actions[0].choices["train"]).format_help()
    for field in TrainConfig.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in train_help


def test_cli_train_sample_export(faces, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--img-size", "32", "--base-dim", "8", "--max-conv-dim", "16", "--hidden-dim", "16", "--style-dim", "8",
             "--latent-dim", "4", "--w-hpf", "0", "--batch", "4", "--workers", "0", "--sample-every", "2",
             "--checkpoint-minutes", "0", "--betas", "0.5", "0.9", "--log-every", "1"]
    assert cli.main(["train", "--data", str(faces), "--run-dir", str(run), "--total-iters", "2", "--quiet", *flags]) == 0
    assert "finished at iteration 2" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["000002_latent.png", "000002_reference.png"]
    assert (run / "losses.png").is_file() and (run / "000002_nets_ema.ckpt").is_file()
    saved = torch.load(next(run.glob("ckpt-*.pt")), weights_only=True)
    assert saved["config"]["betas"] == (0.5, 0.9)

    assert cli.main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "x_nets_ema.ckpt"),
                     "--out-d", str(tmp_path / "x_nets_D.ckpt")]) == 0
    exported, config = load_official([tmp_path / "x_nets_ema.ckpt", tmp_path / "x_nets_D.ckpt"])
    from_ckpt = nets_from_checkpoint(run)
    assert from_ckpt.domains == ["dark_brunette", "fair_blond"] and config == from_ckpt.config
    _states_equal(exported.generator.state_dict(), from_ckpt.generator.state_dict())
    _states_equal(load_nets(run / "000002_nets_ema.ckpt").generator.state_dict(), from_ckpt.generator.state_dict())

    out = tmp_path / "samples"
    assert cli.main(["sample", "--checkpoint", str(run), "--src", str(faces / "val" / "fair_blond"),
                     "--ref", str(faces / "val"), "--out", str(out), "--gif-steps", "2", "--max-images", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["latent.png", "ref_vid.gif", "reference.png"]
    assert Image.open(out / "reference.png").size == (5 * 32 + 6 * 2, 3 * 32 + 4 * 2)


def test_a_high_pass_model_without_fan_is_an_error_unless_no_masks_is_asked(faces, tmp_path, capsys):
    from colab_utils.checkpoint import CheckpointManager
    from colab_utils.stargan import build_nets
    from colab_utils.stargan.train import export_checkpoint

    config = TrainConfig(**{**TINY, "w_hpf": 1.0}).model_config(2)
    nets = build_nets(config, discriminator=False, fan=False)
    run = tmp_path / "run"   # a run trained with a FAN file that is not on this machine
    CheckpointManager(run, handle_signals=False, verbose=False).save(
        3, {f"{name}_ema": nets[name] for name in ("generator", "mapping_network", "style_encoder")},
        extra={"model": config.to_dict(), "domains": ["dark_brunette", "fair_blond"],
               "fan_path": str(tmp_path / "elsewhere" / "wing.ckpt")})
    with pytest.raises(FANRequiredError, match=r"ckpt-000000003\.pt: this StarGAN v2 model has w_hpf=1\.0"):
        load_nets(run)
    loaded = load_nets(run, without_masks=True)
    assert loaded.fan is None and loaded.without_masks
    assert translate(loaded, torch.zeros(1, 3, 32, 32), domain=0, seed=0).shape == (1, 3, 32, 32)
    # writing the weights needs no FAN; loading the written file asks for one again
    export_checkpoint(run, tmp_path / "x_nets_ema.ckpt")
    with pytest.raises(FANRequiredError, match=r"x_nets_ema\.ckpt: .*w_hpf=1"):
        load_official(tmp_path / "x_nets_ema.ckpt")
    argv = ["sample", "--checkpoint", str(run), "--src", str(faces / "val" / "fair_blond"), "--ref",
            str(faces / "val"), "--out", str(tmp_path / "out"), "--gif-steps", "0", "--max-images", "1"]
    assert cli.main(argv) == 2
    assert "--no-masks" in capsys.readouterr().err
    assert cli.main(argv + ["--no-masks"]) == 0 and (tmp_path / "out" / "reference.png").is_file()


def test_small_widths_round_trip_through_the_official_format(tmp_path):
    """base_dim / hidden_dim (small models) are read back from the tensors; parts of different models are refused."""
    from colab_utils.stargan import StarGANFormatError, build_nets, export_official
    small = TrainConfig(**TINY).model_config(3)
    export_official(build_nets(small, discriminator=False), tmp_path / "small_nets_ema.ckpt")
    assert load_official(tmp_path / "small_nets_ema.ckpt")[1] == small
    mixed = {name: m.state_dict() for name, m in build_nets(small, discriminator=False).items()}
    mixed["generator"] = build_nets(TrainConfig(**{**TINY, "base_dim": 16}).model_config(3)).generator.state_dict()
    with pytest.raises(StarGANFormatError, match="do not belong together"):
        load_official(mixed)
