"""StyleGAN2 model, rosinality checkpoint format and sampling helpers."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from colab_utils.stylegan2 import (Discriminator, Generator, StyleGANFormatError, export_rosinality, generate,
                                   infer_config, load_rosinality, mixing_latents, save_interpolation,
                                   style_mixing_grid)
from colab_utils.loading import CheckpointCorruptError
from colab_utils.stylegan2 import formats

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "stylegan2_rosinality_64_small.pt"
FIXTURE_IO = SHARED / "fixtures" / "stylegan2_rosinality_64_small_io.pt"
STARGAN_FILE = SHARED / "fixtures" / "stargan_v2_whpf0_small_100000_nets_D.ckpt"
TOL = 1e-4


def tiny_channels(ch: int = 8) -> dict[int, int]:
    return {2**i: ch for i in range(2, 11)}


def tiny_generator(size: int = 32, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(size, style_dim=16, n_mlp=2, channels=tiny_channels())
    with torch.no_grad():  # make noise strengths and biases non-zero so every term counts
        for name, p in G.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.normal_(0, 0.1)
    return G.eval()


@pytest.fixture(scope="module")
def fixture_files():
    if not FIXTURE.is_file() or not FIXTURE_IO.is_file():
        pytest.skip(f"{SHARED / 'fixtures'} is absent (a user's clone): fixture tests skipped")
    return FIXTURE, torch.load(FIXTURE_IO, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------------------
# Equivalence with rosinality/stylegan2-pytorch
# ------------------------------------------------------------------------------------------------------------

def test_fixture_outputs_reproduced(fixture_files):
    path, io = fixture_files
    net = load_rosinality(path, which="all")
    cfg = io["config"]
    assert net.config["size"] == cfg["size"] == 64
    assert net.config["style_dim"] == cfg["style_dim"] and net.config["n_mlp"] == cfg["n_mlp"]
    assert net.config["channels"] == {r: c for r, c in cfg["channels"].items() if r <= 64}
    assert net.d is not None and net.g is None and net.args is None
    G, D = net.g_ema, net.d
    with torch.no_grad():
        img, _ = G([io["z"]], randomize_noise=False)
        trunc, _ = G([io["z"]], randomize_noise=False, truncation=io["truncation"], truncation_latent=net.latent_avg)
        mix, _ = G([io["z"], io["z2"]], randomize_noise=False, inject_index=io["inject_index"])
        w = G.get_latent(io["z"])
        img_w, _ = G([io["w"]], input_is_latent=True, randomize_noise=False)
        d_out = D(io["img"])
    for name, ours in [("img", img), ("img_trunc", trunc), ("img_mix", mix), ("w", w), ("img_w", img_w),
                       ("d_out", d_out)]:
        assert ours.shape == io[name].shape, name
        assert (ours - io[name]).abs().max().item() < TOL, name
    # The outputs differ from each other, so each comparison above tests something.
    assert (img - trunc).abs().max() > 0.1 and (img - mix).abs().max() > 0.1


def test_fixture_reproduced_by_both_modulated_conv_forms(fixture_files):
    path, io = fixture_files
    G = load_rosinality(path, which="g_ema").g_ema
    assert io["z"].shape[0] > 1
    with torch.no_grad():
        for form in ("grouped", "input_scaling"):
            img, _ = G.set_modconv(form)([io["z"]], randomize_noise=False)
            assert (img - io["img"]).abs().max().item() < TOL, form
            one, _ = G([io["z"][:1]], randomize_noise=False)
            assert (one - io["img"][:1]).abs().max().item() < TOL, form
        G.set_modconv("auto").use_channels_last()
        one, _ = G([io["z"][-1:]], randomize_noise=False)   # auto: grouped for one sample, channels_last
    assert (one - io["img"][-1:]).abs().max().item() < TOL


def test_fixture_channels_last_and_autocast(fixture_files):
    path, io = fixture_files
    net = load_rosinality(path, which="all")
    G, D = net.g_ema, net.d
    with torch.no_grad():
        ref, _ = G([io["z"]], randomize_noise=False)
        G.use_channels_last()
        w_plus = G.w_plus([io["z"]])
        img, acts = G.synthesis(G.style_vectors(w_plus), return_activations=True)
        assert acts["convs.7"].is_contiguous(memory_format=torch.channels_last)
        assert (img - ref).abs().max().item() < TOL
        D = D.to(memory_format=torch.channels_last)
        d = D(io["img"].contiguous(memory_format=torch.channels_last))
        assert (d - io["d_out"]).abs().max().item() < TOL
        G.use_channels_last(False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img16, acts16 = G.synthesis(G.style_vectors(w_plus), return_activations=True)
            d16 = D(io["img"])
    assert acts16["convs.7"].dtype == torch.bfloat16        # activations stay in bf16
    assert img16.dtype == torch.float32                      # the RGB skip sum is kept in fp32
    assert torch.isfinite(img16).all()
    assert (img16 - ref).abs().mean().item() < 0.05 * ref.abs().mean().item()
    assert (d16.float() - io["d_out"]).abs().max().item() < 0.1


# ------------------------------------------------------------------------------------------------------------
# Checkpoint format: export, training checkpoints, wrong files
# ------------------------------------------------------------------------------------------------------------

def test_export_round_trip_is_exact(fixture_files, tmp_path):
    path, _ = fixture_files
    original = torch.load(path, map_location="cpu", weights_only=True)
    net = load_rosinality(path, which="all")
    out = export_rosinality(tmp_path / "sub" / "exported.pt", net.g_ema, d=net.d, latent_avg=net.latent_avg)
    assert out == tmp_path / "sub" / "exported.pt" and not list(out.parent.glob(".*tmp*"))
    written = torch.load(out, map_location="cpu", weights_only=True)
    assert set(written) == set(original) == {"g_ema", "d", "latent_avg"}
    for key in ("g_ema", "d"):
        assert list(written[key]) == list(original[key])                   # same keys, same order
        for name, tensor in original[key].items():
            assert torch.equal(written[key][name], tensor), (key, name)
    assert torch.equal(written["latent_avg"], original["latent_avg"])
    again = load_rosinality(out, which="all")
    for name, tensor in net.g_ema.state_dict().items():
        assert torch.equal(again.g_ema.state_dict()[name], tensor)


def test_training_checkpoint_with_namespace_args_loads_weights_only(tmp_path, monkeypatch):
    G, G_ema, D = tiny_generator(32, seed=1), tiny_generator(32, seed=2), Discriminator(32, channels=tiny_channels())
    opt = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
    G(mixing_latents(2, 16, 0.9, G.n_latent, torch.Generator().manual_seed(0)).styles)[0].mean().backward()
    opt.step()
    args = argparse.Namespace(size=32, batch=2, lr=0.002, r1=10.0, path="data/", ckpt=None, augment=False)
    ckpt = {"g": G.state_dict(), "d": D.state_dict(), "g_ema": G_ema.state_dict(), "g_optim": opt.state_dict(),
            "d_optim": torch.optim.Adam(D.parameters()).state_dict(), "args": args}
    path = tmp_path / "010000.pt"
    torch.save(ckpt, path)
    with pytest.raises(Exception):  # the file really holds a non-tensor global
        torch.load(path, map_location="cpu", weights_only=True)

    seen = []
    real_load = torch.load

    def spy(*a, **kw):
        seen.append(kw.get("weights_only"))
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    net = load_rosinality(path, which="all")
    assert seen == [True]
    assert net.args == vars(args)
    assert net.latent_avg is None
    assert set(net.extra) == {"g_optim", "d_optim"}
    assert net.extra["g_optim"]["param_groups"][0]["betas"] == (0.0, 0.99)
    for model, ref in ((net.g, G), (net.g_ema, G_ema), (net.d, D)):
        for name, tensor in ref.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), name
    only_ema = load_rosinality(path)
    assert only_ema.g is None and only_ema.d is None


def test_stargan_file_is_refused_with_a_clear_error():
    if not STARGAN_FILE.is_file():
        pytest.skip(f"{STARGAN_FILE} is absent")
    with pytest.raises(StyleGANFormatError) as err:
        load_rosinality(STARGAN_FILE)
    msg = str(err.value)
    assert str(STARGAN_FILE) in msg and "'g_ema'" in msg and "discriminator" in msg and "StarGAN" in msg


def test_mismatched_state_dict_lists_missing_unexpected_and_shapes(tmp_path):
    sd = tiny_generator(32).state_dict()
    del sd["convs.1.noise.weight"]
    sd["convs.1.extra_thing"] = torch.zeros(2)
    sd["conv1.activate.bias"] = torch.zeros(5)
    path = tmp_path / "broken.pt"
    torch.save({"g_ema": sd}, path)
    with pytest.raises(StyleGANFormatError) as err:
        load_rosinality(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys (1): ['convs.1.noise.weight']" in msg
    assert "unexpected keys (1): ['convs.1.extra_thing']" in msg
    assert "conv1.activate.bias: file (5,) vs model (8,)" in msg


def test_not_a_checkpoint_and_missing_networks(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("hello")
    with pytest.raises(CheckpointCorruptError, match="notes.pt is damaged or not a PyTorch checkpoint"):
        load_rosinality(junk)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_rosinality(tmp_path / "nope.pt")
    only_g = tmp_path / "only_ema.pt"
    export_rosinality(only_g, tiny_generator(32))
    with pytest.raises(StyleGANFormatError, match=r"requested \['d'\]"):
        load_rosinality(only_g, which=("g_ema", "d"))
    with pytest.raises(StyleGANFormatError, match="not a StyleGAN2 generator state_dict"):
        load_rosinality({"g_ema": {"encoder.weight": torch.zeros(1)}})
    # A bare generator state_dict is accepted as g_ema.
    assert load_rosinality(tiny_generator(32).state_dict()).config["size"] == 32


# ------------------------------------------------------------------------------------------------------------
# Architecture and API
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 128])
def test_shapes_and_inferred_config(size):
    G = tiny_generator(size)
    log = int(math.log2(size))
    assert G.n_latent == 2 * log - 2 and G.num_layers == 2 * (log - 2) + 1
    assert len(G.style_layers) == 2 + 3 * (log - 2)
    assert [layer.latent_index for layer in G.style_layers][-1] == G.n_latent - 1
    with torch.no_grad():
        img, latent = G([torch.randn(2, 16)], return_latents=True)
    assert img.shape == (2, 3, size, size) and latent.shape == (2, G.n_latent, 16)
    D = Discriminator(size, channels=tiny_channels())
    assert D(img).shape == (2, 1)
    cfg = infer_config(G.state_dict())
    assert cfg == {"size": size, "style_dim": 16, "n_mlp": 2, "channels": {2**i: 8 for i in range(2, log + 1)},
                   "channel_multiplier": None}
    assert formats.infer_discriminator_config(D.state_dict()) == {"size": size, "channels": cfg["channels"]}
    assert infer_config(Generator(64, style_dim=32, n_mlp=1, channel_multiplier=1).state_dict())["channel_multiplier"] == 1


@pytest.mark.parametrize("size", [48, 16, 2048, 100])
def test_bad_size_is_refused(size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(size, style_dim=16, n_mlp=1, channels=tiny_channels())
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(size, channels=tiny_channels())


def test_incomplete_channel_table_is_refused():
    with pytest.raises(ValueError, match=r"lacks resolutions \[64\]"):
        Generator(64, style_dim=16, n_mlp=1, channels={4: 8, 8: 8, 16: 8, 32: 8})


def test_w_plus_equals_list_of_w_and_mixing():
    G = tiny_generator(32)
    z, z2 = torch.randn(3, 16), torch.randn(3, 16)
    with torch.no_grad():
        w, w2 = G.get_latent(z), G.get_latent(z2)
        from_z, _ = G([z], randomize_noise=False)
        from_w, _ = G([w], input_is_latent=True, randomize_noise=False)
        w_plus = w.unsqueeze(1).repeat(1, G.n_latent, 1)
        from_w_plus, _ = G([w_plus], input_is_latent=True, randomize_noise=False)
        assert torch.equal(from_w, from_w_plus)
        assert (from_z - from_w).abs().max() < 1e-6
        mixed, latent = G([z, z2], inject_index=3, randomize_noise=False, return_latents=True)
        assert torch.equal(latent[:, :3], w_plus[:, :3])
        assert torch.equal(latent[:, 3:], w2[:, None].expand(-1, G.n_latent - 3, -1))
        manual = torch.cat([w_plus[:, :3], w2[:, None].repeat(1, G.n_latent - 3, 1)], 1)
        assert torch.equal(G([manual], input_is_latent=True, randomize_noise=False)[0], mixed)
        center = torch.randn(16)
        trunc = G.w_plus([w], input_is_latent=True, truncation=0.5, truncation_latent=center)
        assert torch.allclose(trunc, (center + 0.5 * (w - center))[:, None].expand_as(trunc), atol=1e-6)
    with pytest.raises(ValueError, match="truncation_latent"):
        G([z], truncation=0.7)
    with pytest.raises(ValueError, match="W\\+"):
        G([torch.randn(3, 4, 16)], input_is_latent=True)


def test_style_vectors_and_synthesis_reproduce_forward_exactly():
    G = tiny_generator(32)
    z = torch.randn(2, 16)
    with torch.no_grad():
        ref, _ = G([z], randomize_noise=False)
        styles = G.style_vectors(G.w_plus([z]))
        img, acts = G.synthesis(styles, return_activations=True)
        assert torch.equal(img, ref)
        assert [s.shape[1] for s in styles] == [layer.in_channels for layer in G.style_layers]
        names = [layer.name for layer in G.style_layers]
        assert names[:6] == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0", "convs.2"]
        assert set(acts) == {layer.name for layer in G.style_layers}
        for layer in G.style_layers:
            assert acts[layer.name].shape == (2, 3 if layer.is_rgb else layer.out_channels, layer.resolution,
                                              layer.resolution)
        assert torch.equal(acts["to_rgbs.2"], img)
        # Demodulation makes a conv blind to a uniform scale of s, but not to one channel of s.
        edited = list(styles)
        edited[5] = edited[5] * 3
        assert (G.synthesis(edited) - img).abs().max() < 1e-5
        edited[5] = styles[5].clone()
        edited[5][:, 0] *= 3
        assert (G.synthesis(edited) - img).abs().max() > 1e-3
        # Fresh noise differs from the stored noise; explicit noise is honoured by both paths.
        assert (G.synthesis(styles, randomize_noise=True) - img).abs().max() > 1e-4
        noise = G.make_noise(2, generator=torch.Generator().manual_seed(1))
        assert torch.equal(G.synthesis(styles, noise=noise), G([z], noise=noise)[0])
    with pytest.raises(ValueError, match="style vectors"):
        G.synthesis(styles[:-1])


def test_mixing_latents_is_reproducible():
    a = mixing_latents(4, 16, 0.9, 10, torch.Generator().manual_seed(3))
    b = mixing_latents(4, 16, 0.9, 10, torch.Generator().manual_seed(3))
    assert len(a.styles) == len(b.styles) and all(torch.equal(x, y) for x, y in zip(a.styles, b.styles))
    assert a.inject_index == b.inject_index
    never = mixing_latents(4, 16, 0.0, 10, torch.Generator().manual_seed(0))
    always = [mixing_latents(4, 16, 1.0, 10, torch.Generator().manual_seed(s)) for s in range(20)]
    assert len(never.styles) == 1 and never.inject_index is None
    assert all(len(m.styles) == 2 and 1 <= m.inject_index <= 9 for m in always)


# ------------------------------------------------------------------------------------------------------------
# Sampling helpers
# ------------------------------------------------------------------------------------------------------------

def test_generate_is_deterministic_per_seed():
    G = tiny_generator(32)
    G.train()
    a = generate(G, 5, seed=7, batch_size=2)
    b = generate(G, 5, seed=7, batch_size=16)
    assert G.training  # mode restored
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-6)
    assert (generate(G, 5, seed=8) - a).abs().max() > 1e-3
    t = generate(G, 3, seed=7, truncation=0.5)
    assert (t - a[:3]).abs().max() > 1e-4 and torch.equal(t, generate(G, 3, seed=7, truncation=0.5))


def test_truncation_centres_on_the_loaded_files_latent_avg(tmp_path):
    from colab_utils.editing.catalog import _sample_w_plus
    from colab_utils.editing.transfer import seeded_w_plus
    from colab_utils.stylegan2 import mean_w, truncation_center

    G = tiny_generator(32)
    assert G.latent_avg is None and torch.equal(truncation_center(G), mean_w(G))
    avg = torch.linspace(-1, 1, 16)
    loaded = load_rosinality(export_rosinality(tmp_path / "g.pt", G, latent_avg=avg)).g_ema
    assert torch.equal(loaded.latent_avg, avg[None]) and "latent_avg" not in loaded.state_dict()
    assert torch.equal(truncation_center(loaded), avg[None])
    # truncation 0 puts every sample exactly on the centre: the file's latent_avg, not the mean of seeded w
    on_avg = generate(loaded, 2, seed=3, truncation=0.0)
    assert torch.equal(on_avg[0], on_avg[1])
    assert torch.equal(on_avg, generate(loaded, 2, seed=3, truncation=0.0, truncation_latent=avg))
    assert (on_avg - generate(loaded, 2, seed=3, truncation=0.0, truncation_latent=mean_w(loaded))).abs().max() > 1e-3
    # the editing code takes the same centre
    w_avg = loaded.w_plus([avg[None]], input_is_latent=True).expand(2, -1, -1)
    assert torch.equal(seeded_w_plus(loaded, 2, 5, truncation=0.0), w_avg)
    assert torch.equal(_sample_w_plus(loaded, 2, 0, 0.0, None, 2, torch.device("cpu"))[0], w_avg)
    assert not torch.equal(seeded_w_plus(G, 2, 5, truncation=0.0), w_avg)


def test_stddev_group_note_only_when_the_official_grouping_differs():
    from colab_utils.stylegan2.model import minibatch_stddev, stddev_group, stddev_group_note

    assert [stddev_group(b) for b in (1, 2, 3, 4, 6, 8, 10, 12)] == [1, 2, 3, 4, 3, 4, 2, 4]
    assert [b for b in range(1, 33) if stddev_group_note(b)] == [b for b in range(5, 33) if b % 4]
    assert "groups of 3 are used instead" in stddev_group_note(6)
    assert minibatch_stddev(torch.randn(6, 4, 2, 2)).shape == (6, 5, 2, 2)


def test_style_mixing_grid_layout():
    G = tiny_generator(32)
    grid = style_mixing_grid(G, 3, 2, seed=1, cross_layers=(0, 4), padding=2)
    assert grid.size == (4 * 32 + 5 * 2, 3 * 32 + 4 * 2)
    # Taking every layer from the source reproduces the source in each cell of its column.
    full = np.asarray(style_mixing_grid(G, 2, 2, seed=1, cross_layers=(0, G.n_latent), padding=2))

    def cell(row, col):
        y, x = 2 + row * 34, 2 + col * 34
        return full[y:y + 32, x:x + 32].astype(int)

    for col in (1, 2):
        assert np.abs(cell(1, col) - cell(0, col)).max() <= 1 and np.abs(cell(2, col) - cell(0, col)).max() <= 1
    assert np.abs(cell(1, 0) - cell(0, 1)).max() > 10                    # destinations differ from sources
    with pytest.raises(ValueError, match="cross_layers"):
        style_mixing_grid(G, 2, 2, cross_layers=(4, 99))


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_save_interpolation(tmp_path, suffix):
    import imageio.v3 as iio

    G = tiny_generator(32)
    path = save_interpolation(G, tmp_path / f"walk{suffix}", seeds=[1, 2], steps_per_pair=3, fps=10)
    assert path.is_file() and not list(tmp_path.glob(".*"))
    frames = iio.imread(path, index=None) if suffix == ".gif" else None
    if suffix == ".gif":
        assert frames.shape[0] == 6 and frames.shape[1:3] == (32, 32)
        meta = iio.immeta(path, index=0)
        assert meta.get("loop") == 0 and meta.get("duration") == 100
    else:
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(path))
        info = next(reader)
        assert tuple(info["size"]) == (32, 32)
        assert sum(1 for _ in reader) == 6
    with pytest.raises(ValueError, match="gif or .mp4"):
        save_interpolation(G, tmp_path / "walk.avi", seeds=[1, 2])


def test_interpolation_space_w_ends_on_last_seed():
    from colab_utils.stylegan2 import interpolation_frames, to_uint8

    G = tiny_generator(32)
    frames = list(interpolation_frames(G, [4, 5], steps_per_pair=2, space="w", loop=False))
    assert len(frames) == 3 and frames[0].dtype == np.uint8 and frames[0].shape == (32, 32, 3)
    last = to_uint8(generate(G, 1, seed=5))[0]
    assert np.abs(frames[-1].astype(int) - last.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="space"):
        next(interpolation_frames(G, [1, 2], space="q"))
