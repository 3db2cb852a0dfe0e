"""colab_utils.editing.demo_generator: the trainer of the shipped local-editing generator (a StyleGAN2 taught by
the synthetic renderer to draw faces and part swaps). Tiny configurations only: the shipped asset's own figures
are asserted in tests/test_demo_assets.py."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from colab_utils.data.synthetic import PARTS, UNIFORMS_PER_FACE, face_params_from_uniforms
from colab_utils.editing.demo_generator import (GLOBAL, DemoGeneratorConfig, PartSwapBatches, build_generator,
                                                channel_groups, comparison_sheet, input_resolution, latent_face,
                                                latent_uniforms, learning_rate, weighted_l1, locality_penalty, part_swap_losses, swap_styles,
                                                train_demo_generator)

TINY = DemoGeneratorConfig(size=32, channels={4: 16, 8: 16, 16: 16, 32: 16}, style_dim=96, n_mlp=2, batch=2,
                           steps=4, workers=0, log_every=1, sample_every=1000, checkpoint_minutes=1000.0)


def test_a_latent_is_the_face_the_mapping_network_sees():
    G = build_generator(TINY)
    z = np.random.default_rng(0).standard_normal(TINY.style_dim).astype(np.float32)
    u = latent_uniforms(z)
    assert u.shape == (UNIFORMS_PER_FACE,) and 0 < u.min() and u.max() < 1
    normed = G.style[0](torch.from_numpy(z)[None])[0, :UNIFORMS_PER_FACE].double().numpy()   # the pixel norm
    expected = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in normed])
    assert np.allclose(u, expected, atol=1e-6)
    assert np.allclose(latent_uniforms(3.0 * z), u, atol=1e-6)                     # scale-free, as G is
    image, labels = latent_face(z, 32)
    assert image.shape == (32, 32, 3) and set(np.unique(labels)) == set(range(len(PARTS)))
    swapped, _ = latent_face(z, 32, swap=(-z, "mouth"))
    assert not np.array_equal(swapped, image)


def test_channel_blocks_per_part_in_wide_enough_layers():
    G = build_generator(TINY)
    groups = channel_groups(G, 16)
    assert len(groups) == len(G.style_layers)
    width = 16 // (len(PARTS) + 1)
    for layer, g in zip(G.style_layers, groups):
        assert g.shape == (layer.in_channels,)
        if input_resolution(G, layer) < 16:
            assert (g == GLOBAL).all(), layer.name
        else:
            assert [int((g == i).sum()) for i in range(len(PARTS))] == [width] * len(PARTS), layer.name
            assert int((g == GLOBAL).sum()) == 16 - width * len(PARTS)
    assert [input_resolution(G, layer) for layer in G.style_layers] == [4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32]
    with pytest.raises(ValueError, match="too few"):
        channel_groups(build_generator(dataclasses.replace(TINY, channels={4: 16, 8: 16, 16: 4, 32: 4})), 16)


def test_swapped_styles_take_one_block_from_the_other_face():
    G = build_generator(TINY)
    groups = channel_groups(G, 16)
    s_a = [torch.randn(3, layer.in_channels) for layer in G.style_layers]
    s_b = [torch.randn(3, layer.in_channels) for layer in G.style_layers]
    part = torch.tensor([GLOBAL, PARTS.index("eyes"), PARTS.index("background")])
    out = swap_styles(s_a, s_b, groups, part)
    for a, b, g, o in zip(s_a, s_b, groups, out):
        assert torch.equal(o[0], a[0])
        for row in (1, 2):
            take = g == part[row]
            assert torch.equal(o[row][take], b[row][take]) and torch.equal(o[row][~take], a[row][~take])


def test_locality_is_the_share_of_block_energy_off_the_part():
    G = build_generator(TINY)
    groups = channel_groups(G, 16)
    styles = G.style_vectors(G.w_plus([torch.randn(2, TINY.style_dim)]))
    _, acts = G.synthesis(styles, return_activations=True)
    eyes = torch.full((2, 32, 32), PARTS.index("eyes"))
    # every pixel is eyes: the eyes' blocks are all on their part, the other six parts' blocks all off theirs
    assert float(locality_penalty(G, acts, eyes, groups).detach()) == pytest.approx(6 / 7, abs=1e-5)
    half = eyes.clone()
    half[:, :, 16:] = PARTS.index("mouth")     # eyes left, mouth right: two blocks partly on their part
    value = float(locality_penalty(G, acts, half, groups).detach())
    assert 5 / 7 - 1e-5 <= value < 6 / 7


def test_l1_weighs_the_small_parts_up():
    real = torch.zeros(1, 3, 32, 32)
    fake = real.clone()
    fake[..., 31] = 1.0                                     # wrong in the last column only, off the eyes
    labels = torch.full((1, 32, 32), PARTS.index("skin"))
    assert float(weighted_l1(fake, real, labels, 8.0)) == pytest.approx(1 / 32)    # no small part: plain L1
    labels[..., :16] = PARTS.index("eyes")                 # eyes on the left half: 17 columns weigh 9 (one of slack)
    assert float(weighted_l1(fake, real, labels, 8.0)) == pytest.approx(1 / (17 * 9 + 15))
    assert float(weighted_l1(fake, real, labels, 0.0)) == pytest.approx(1 / 32)


def test_batches_are_a_function_of_the_step():
    batches = PartSwapBatches(dataclasses.replace(TINY, batch=8, swap_share=0.5))
    first, again, other = batches[3], batches[3], batches[4]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["z_a"], other["z_a"])
    assert first["images"].shape == (8, 3, 32, 32) and first["images"].dtype == torch.uint8
    assert set(first["part"].tolist()) <= set(range(-1, len(PARTS)))
    plain = PartSwapBatches(dataclasses.replace(TINY, swap_share=0.0))[0]
    assert (plain["part"] == GLOBAL).all()
    losses = part_swap_losses(build_generator(TINY), first, channel_groups(build_generator(TINY), 16), TINY)
    assert set(losses) == {"l1", "locality", "total"}
    total, l1, locality = (float(losses[k].detach()) for k in ("total", "l1", "locality"))
    assert total == pytest.approx(l1 + TINY.locality_weight * locality)


def test_training_resumes_bit_exactly_and_learns(tmp_path):
    # a shorter first session stands in for a disconnect; without the ramp (which depends on the run's length)
    # its first two steps are those of the full run
    config = dataclasses.replace(TINY, lr_ramp_down=0.0)
    straight = train_demo_generator(config, tmp_path / "straight", progress=False, verbose=False)
    train_demo_generator(dataclasses.replace(config, steps=2), tmp_path / "resumed", progress=False, verbose=False)
    resumed = train_demo_generator(config, tmp_path / "resumed", progress=False, verbose=False)
    assert straight.step == resumed.step == 4
    for (name, a), b in zip(straight.g_ema.state_dict().items(), resumed.g_ema.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "resumed" / "samples" / "step-000000004.png").is_file()
    assert all(name.endswith("noise.weight") is False or float(p.abs().max()) == 0
               for name, p in straight.g_ema.named_parameters())          # noise stays off
    longer = train_demo_generator(dataclasses.replace(TINY, steps=40, batch=4, lr=0.01), tmp_path / "longer",
                                  progress=False, verbose=False)
    l1 = [v for _, v in longer.history["l1"]]
    assert np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5])
    assert comparison_sheet(longer.g_ema, TINY, n=4).size[0] > 4 * 32


def test_learning_rate_ramps_down_at_the_end():
    config = dataclasses.replace(TINY, lr=0.01, steps=100, lr_ramp_down=0.3)
    assert [learning_rate(config, s) for s in (1, 70, 85, 100)] == pytest.approx([0.01, 0.01, 0.005, 0.0005])
    assert learning_rate(dataclasses.replace(config, lr_ramp_down=0.0), 100) == 0.01


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="style_dim"):
        dataclasses.replace(TINY, style_dim=64).check()
    with pytest.raises(ValueError, match="swap_share"):
        dataclasses.replace(TINY, swap_share=1.5).check()
