"""StarGAN v2 networks, FAN masks and the official checkpoint format (colab_utils.stargan)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from colab_utils.stargan import (FAN, Discriminator, FANRequiredError, Generator, StarGANConfig, StarGANFormatError,
                                 build_nets, compute_masks, export_official, face_masks, heatmap_peaks, infer_config, load_fan,
                                 load_official)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"
STYLEGAN2_FILE = FIXTURES / "stylegan2_rosinality_64_small.pt"
TOL = 1e-4


def fixture_paths(tag: str) -> tuple[Path, Path, Path]:
    return (FIXTURES / f"stargan_v2_{tag}_small_100000_nets_ema.ckpt",
            FIXTURES / f"stargan_v2_{tag}_small_100000_nets_D.ckpt",
            FIXTURES / f"stargan_v2_{tag}_small_io.pt")


def need(*paths: Path) -> None:
    if not all(p.is_file() for p in paths):
        pytest.skip(f"{FIXTURES} is absent (a user's clone): fixture tests skipped")


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="module", params=["whpf1", "whpf0"])
def fixture(request):
    ema, disc, io_path = fixture_paths(request.param)
    need(ema, disc, io_path)
    nets, config = load_official([ema, disc])
    return request.param, nets, config, torch.load(io_path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------------------
# Equivalence with clovaai/stargan-v2
# ------------------------------------------------------------------------------------------------------------

def test_inferred_config_is_the_fixture_config(fixture):
    tag, nets, config, io = fixture
    assert config == StarGANConfig(**io["config"])  # hidden_dim and base_dim: the official defaults
    assert nets.config == config
    assert (nets.fan is not None) == (config.w_hpf > 0)
    assert nets.discriminator is not None


def test_styles_and_discriminator_reproduced(fixture):
    _, nets, _, io = fixture
    with torch.no_grad():
        assert max_err(nets.mapping_network(io["z"], io["y"]), io["s_latent"]) < TOL
        assert max_err(nets.style_encoder(io["ref"], io["y"]), io["s_reference"]) < TOL
        assert max_err(nets.discriminator(io["x"], io["y"]), io["d_out"]) < TOL


def test_fan_masks_reproduced(fixture):
    tag, nets, _, io = fixture
    masks = compute_masks(nets.fan, io["x"])
    if tag == "whpf0":
        assert masks is None and io["masks"] is None
        return
    assert len(masks) == 2
    for ours, theirs in zip(masks, io["masks"]):
        assert ours.shape == theirs.shape == (2, 1, 256, 256)
        assert max_err(ours, theirs) < TOL
    assert nets.fan.get_heatmap(io["x"], preprocess=False).shape == (2, 98, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a mixed-precision trainer still gets fp32 masks
        under_autocast = compute_masks(nets.fan, io["x"][:1])
    assert under_autocast[0].dtype == torch.float32 and torch.allclose(under_autocast[0], masks[0][:1], atol=1e-6)


def test_generator_outputs_reproduced(fixture):
    """In float64 our only error is gone, so what is left is the fixture's own float32 rounding (~5e-5).
    In float32, outputs of magnitude up to 10 (random weights) add our rounding to theirs: 2e-4."""
    tag, nets, _, io = fixture
    G = nets.generator
    with torch.no_grad():
        for style, out in (("s_latent", "out_latent"), ("s_reference", "out_reference")):
            assert max_err(G(io["x"], io[style], masks=io["masks"]), io[out]) < 2 * TOL
        G64 = copy.deepcopy(G).double()
        masks64 = None if io["masks"] is None else [m.double() for m in io["masks"]]
        for style, out in (("s_latent", "out_latent"), ("s_reference", "out_reference")):
            assert max_err(G64(io["x"].double(), io[style].double(), masks=masks64), io[out]) < TOL


def test_generator_with_our_masks_end_to_end(fixture):
    tag, nets, _, io = fixture
    if tag == "whpf0":
        pytest.skip("no masks without the high-pass skip")
    with torch.no_grad():
        s = nets.mapping_network(io["z"], io["y"])
        out = nets.generator(io["x"], s, masks=compute_masks(nets.fan, io["x"]))
    assert max_err(out, io["out_latent"]) < 2 * TOL


# ------------------------------------------------------------------------------------------------------------
# Loading real-world variants, export, bad input
# ------------------------------------------------------------------------------------------------------------

def load_raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_file_without_hpf_filter_and_with_module_prefixes_loads(tmp_path):
    ema, disc, io_path = fixture_paths("whpf1")
    need(ema, disc, io_path)
    raw = load_raw(ema)
    del raw["generator"]["hpf.filter"]  # like the released CelebA-HQ file
    raw = {net: {"module." + k: v for k, v in sd.items()} for net, sd in raw.items()}
    path = tmp_path / "100000_nets_ema.ckpt"
    torch.save(raw, path)
    nets, config = load_official(path)
    io = load_raw(io_path)
    assert config == StarGANConfig(**io["config"]) and nets.discriminator is None
    assert torch.equal(nets.generator.hpf.filter, load_raw(ema)["generator"]["hpf.filter"])
    with torch.no_grad():
        out = nets.generator(io["x"], io["s_reference"], masks=io["masks"])
    assert max_err(out, io["out_reference"]) < 2 * TOL


def test_export_round_trip_is_exact(tmp_path):
    ema, disc, _ = fixture_paths("whpf1")
    need(ema, disc)
    nets, config = load_official([ema, disc])
    out_ema = export_official(nets, tmp_path / "a" / "nets_ema.ckpt", tmp_path / "a" / "nets_D.ckpt")
    assert out_ema == tmp_path / "a" / "nets_ema.ckpt"
    for ours, theirs in ((out_ema, ema), (tmp_path / "a" / "nets_D.ckpt", disc)):
        a, b = load_raw(ours), load_raw(theirs)
        assert set(a) == set(b)
        for net in a:
            assert list(a[net]) == list(b[net]), net  # same keys, same order
            assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    again, config2 = load_official([out_ema, tmp_path / "a" / "nets_D.ckpt"])
    assert config2 == config
    for net in ("generator", "mapping_network", "style_encoder", "discriminator", "fan"):
        sd1, sd2 = nets[net].state_dict(), again[net].state_dict()
        assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_stylegan2_file_is_refused_with_a_clear_error():
    need(STYLEGAN2_FILE)
    with pytest.raises(StarGANFormatError, match=r"stylegan2_rosinality_64_small\.pt.*StyleGAN2"):
        load_official(STYLEGAN2_FILE)


def test_mismatches_name_the_file_and_the_keys(tmp_path):
    ema, disc, _ = fixture_paths("whpf0")
    need(ema, disc)
    raw = load_raw(ema)
    del raw["style_encoder"]["unshared.1.bias"]
    path = tmp_path / "broken_nets_ema.ckpt"
    torch.save(raw, path)
    with pytest.raises(StarGANFormatError, match=r"broken_nets_ema\.ckpt: style_encoder .*missing keys \(1\): "
                                                 r"\['unshared\.1\.bias'\]"):
        load_official(path)
    raw = load_raw(ema)
    raw["generator"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, path)
    with pytest.raises(StarGANFormatError, match=r"generator .*unexpected keys \(1\): \['extra\.weight'\]"):
        load_official(path)
    raw = load_raw(ema)
    raw["generator"]["to_rgb.2.weight"] = torch.zeros(3, 65, 1, 1)
    torch.save(raw, path)
    with pytest.raises(StarGANFormatError, match=r"shape mismatches \(1\): \['to_rgb\.2\.weight: file \(3, 65, 1, 1\) vs model"):
        load_official(path)
    with pytest.raises(StarGANFormatError, match=r"nets_D\.ckpt.*no \['generator', 'mapping_network'"):
        load_official(disc)
    with pytest.raises(StarGANFormatError, match=r"'generator' is in both"):
        load_official([ema, ema])
    optims = tmp_path / "100000_optims.ckpt"
    torch.save({"generator": {"state": {}, "param_groups": []}}, optims)
    with pytest.raises(StarGANFormatError, match="optimizer"):
        load_official(optims)
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_official(tmp_path / "nowhere.ckpt")


def test_missing_fan_is_an_error_unless_asked_and_fan_path_accepts_wing_ckpt(tmp_path):
    ema, _, io_path = fixture_paths("whpf1")
    need(ema, io_path)
    raw = load_raw(ema)
    fan_sd = raw.pop("fan")
    with pytest.raises(FANRequiredError, match=r"w_hpf=1: .*no FAN weights were given.*without_masks=True"):
        load_official(dict(raw))
    nets, _ = load_official(dict(raw), without_masks=True)
    assert nets.fan is None and nets.without_masks and compute_masks(nets.fan, torch.zeros(1, 3, 256, 256)) is None
    # wing.ckpt: {"state_dict": ...} of the 4-hourglass Adaptive Wing model; later stacks are ignored
    wing = {"state_dict": {**fan_sd, "m1.coordconv.conv.weight": torch.zeros(1), "l3.bias": torch.zeros(99),
                           "bl0.weight": torch.zeros(1), "al2.bias": torch.zeros(1)}}
    torch.save(wing, tmp_path / "wing.ckpt")
    nets, _ = load_official(dict(raw), fan_path=tmp_path / "wing.ckpt")
    io = load_raw(io_path)
    masks = compute_masks(nets.fan, io["x"])
    assert max_err(masks[0], io["masks"][0]) < TOL and max_err(masks[1], io["masks"][1]) < TOL
    wing["state_dict"]["conv1.conv.weight"] = torch.zeros(64, 5, 7, 7)
    torch.save(wing, tmp_path / "wing.ckpt")
    with pytest.raises(ValueError, match=r"wing\.ckpt.*conv1\.conv\.weight: file \(64, 5, 7, 7\) vs model "
                                         r"\(64, 6, 7, 7\)"):
        load_fan(tmp_path / "wing.ckpt")


# ------------------------------------------------------------------------------------------------------------
# Networks at other sizes, landmarks, masks
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("w_hpf", [0, 1])
def test_any_size_and_domain_count_round_trips_through_the_format(tmp_path, w_hpf):
    torch.manual_seed(0)
    config = StarGANConfig(img_size=64, style_dim=16, latent_dim=8, num_domains=3, w_hpf=w_hpf, max_conv_dim=48)
    nets = build_nets(config).eval()
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.tensor([2, 0])
    with torch.no_grad():
        s = nets.mapping_network(torch.randn(2, 8), y)
        masks = compute_masks(nets.fan, x)
        out = nets.generator(x, s, masks=masks)
        logits = nets.discriminator(x, y)
    assert s.shape == (2, 16) and out.shape == x.shape and logits.shape == (2,)
    assert (masks is None) == (w_hpf == 0)
    export_official(nets, tmp_path / "ema.ckpt", tmp_path / "d.ckpt")
    loaded, inferred = load_official([tmp_path / "ema.ckpt", tmp_path / "d.ckpt"])
    assert inferred == config
    with torch.no_grad():
        assert torch.equal(loaded.generator(x, s, masks=masks), out)


def test_uncapped_width_and_bad_arguments():
    config = StarGANConfig(img_size=32, max_conv_dim=8192, num_domains=1, w_hpf=0)
    with torch.device("meta"):  # shapes only
        nets = build_nets(config)
        inferred = infer_config({k: m.state_dict() for k, m in nets.items()})
        assert inferred.max_conv_dim == 4096  # any cap >= the widest layer (4096) builds the same networks
        rebuilt = build_nets(inferred)
    for name, module in nets.items():
        ours = {k: v.shape for k, v in rebuilt[name].state_dict().items()}
        assert ours == {k: v.shape for k, v in module.state_dict().items()}
    with pytest.raises(ValueError, match="power of two"):
        Generator(img_size=100)
    with pytest.raises(ValueError, match="w_hpf=0"):
        Generator(img_size=32, max_conv_dim=16, w_hpf=0)(torch.zeros(1, 3, 32, 32), torch.zeros(1, 64),
                                                        masks=[torch.ones(1, 1, 32, 32)] * 2)
    with pytest.raises(ValueError, match="one domain index per image"):
        Discriminator(32, 2, 16)(torch.zeros(2, 3, 32, 32), torch.tensor([[0, 1]]))


def test_heatmap_peaks_refine_a_quarter_pixel_towards_the_larger_neighbour():
    hm = torch.zeros(1, 3, 64, 64)
    hm[0, 0, 10, 20], hm[0, 0, 10, 21], hm[0, 0, 10, 19], hm[0, 0, 9, 20], hm[0, 0, 11, 20] = 1, .5, .2, .6, .1
    hm[0, 1, 0, 5] = 1  # on the border: no refinement
    hm[0, 2, 30, 40], hm[0, 2, 30, 41], hm[0, 2, 30, 39] = 1, .3, .3  # equal neighbours: none either
    assert heatmap_peaks(hm).tolist() == [[[20.75, 10.25], [5.5, 0.5], [40.5, 30.5]]]


def test_landmarks_are_in_pixels_of_the_input():
    torch.manual_seed(0)
    fan = FAN()
    x = torch.rand(1, 3, 128, 256) * 2 - 1
    hm = fan.landmark_heatmaps(x)
    expected = heatmap_peaks(hm) * torch.tensor([256 / 64, 128 / 64])
    got = fan.landmarks(x)
    assert got.shape == (1, 98, 2) and torch.equal(got, expected)
    assert torch.equal(fan.get_landmark(x), got)
    assert not fan.train().training and not any(p.requires_grad for p in fan.parameters())


def test_face_masks_keep_the_inner_face_only_in_the_second_mask():
    hm = torch.zeros(1, 98, 256, 256)
    hm[0, 96, 100, 90] = hm[0, 97, 100, 166] = 1.0  # pupils: kept in both masks
    hm[0, 85, 200, 128] = 1.0                       # lower lip: moved up 8 rows, whole-face mask only
    hm[0, 0, 50, 10] = 1.0                          # upper face line: dropped
    hm[0, 60, 90, 80] = 1.0                         # eye contour: stretched 8 and 24 rows down
    whole, inner = face_masks(hm)
    whole, inner = whole[0, 0], inner[0, 0]
    one = pytest.approx(1, abs=1e-5)  # min-max normalisation divides by (max - min + 1e-6)
    for value in (whole[100, 90], inner[100, 166], whole[192, 128], whole[98, 80], whole[114, 80], inner[98, 80]):
        assert value.item() == one
    assert inner[192, 128] == 0 and whole[200, 128] == 0 and whole[50, 10] == 0 and whole[90, 80] == 0
    assert whole.sum().item() == pytest.approx(5, abs=1e-4) and inner.sum().item() == pytest.approx(4, abs=1e-4)
    with pytest.raises(ValueError, match="98 landmark heatmaps"):
        face_masks(torch.zeros(1, 68, 64, 64))
