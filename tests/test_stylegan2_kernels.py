"""StyleGAN2's kernels: the two forms of the modulated convolution compute the same function, ``"auto"``
picks by shape, and the generator's and discriminator's blocks trace into one graph each (bias + leaky ReLU
+ gain and upfirdn are plain torch ops the compiler can fuse)."""
from __future__ import annotations

import pytest
import torch

from colab_utils import compile as fastpath
from colab_utils.stylegan2.model import (ConvLayer, Generator, ModulatedConv2d, ResBlock, StyledConv, ToRGB,
                                         modconv_form)

pytestmark = pytest.mark.usefixtures("one_thread")

UNAVAILABLE = fastpath.unavailable_reason()
needs_compile = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"torch.compile unavailable: {UNAVAILABLE}")


def _conv(in_ch: int, out_ch: int, k: int, *, upsample: bool = False, demodulate: bool = True,
          seed: int = 0) -> ModulatedConv2d:
    torch.manual_seed(seed)
    conv = ModulatedConv2d(in_ch, out_ch, k, style_dim=8, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        conv.modulation.bias.normal_(1.0, 0.3)   # styles far from 1, so modulation matters
    return conv


def _forms(conv: ModulatedConv2d, x: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for form in ("grouped", "input_scaling", "auto"):
        conv.form = form
        out[form] = conv(x, s)
    return out


@pytest.mark.parametrize("batch, in_ch, out_ch, k, upsample, demodulate, side", [
    (1, 8, 6, 3, False, True, 8),
    (3, 8, 6, 3, False, True, 8),
    (4, 5, 7, 3, True, True, 8),      # the upsampling conv: transposed conv + blur
    (1, 5, 7, 3, True, True, 4),
    (2, 8, 3, 1, False, False, 16),   # tRGB: 1x1, no demodulation
])
def test_grouped_and_input_scaling_forms_agree(batch, in_ch, out_ch, k, upsample, demodulate, side):
    conv = _conv(in_ch, out_ch, k, upsample=upsample, demodulate=demodulate)
    torch.manual_seed(1)
    x = torch.randn(batch, in_ch, side, side, dtype=torch.float64)
    s = conv.style(torch.randn(batch, 8)).double()
    conv.double()
    out = _forms(conv, x, s)
    expected_side = side * 2 if upsample else side
    assert out["grouped"].shape == (batch, out_ch, expected_side, expected_side)
    assert (out["grouped"] - out["input_scaling"]).abs().max().item() < 1e-12
    picked = "grouped" if batch == 1 else "input_scaling"
    assert torch.equal(out["auto"], out[picked])
    if demodulate:   # demodulation gives every output channel of every sample unit weight norm
        norm = conv.modulated_weight(s).square().sum(dim=(2, 3, 4))
        assert torch.allclose(norm, torch.ones_like(norm), atol=1e-6)
    # each sample has its own style: swapping styles changes the output of both forms
    if batch > 1:
        for form in ("grouped", "input_scaling"):
            conv.form = form
            assert (conv(x, s.flip(0)) - out[form]).abs().max() > 1e-3


def test_forms_agree_in_float32_with_gradients_and_channels_last():
    conv = _conv(8, 6, 3, upsample=True)
    torch.manual_seed(2)
    x = torch.randn(3, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    w = torch.randn(3, 8)
    results = {}
    for form in ("grouped", "input_scaling"):
        conv.form = form
        conv.zero_grad()
        xi, wi = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = conv(xi, conv.style(wi))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        assert out.is_contiguous(memory_format=torch.channels_last)
        results[form] = (out.detach(), xi.grad, wi.grad, conv.weight.grad.clone(), conv.modulation.weight.grad.clone())
    for a, b in zip(results["grouped"], results["input_scaling"]):
        assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


def test_generator_forms_agree_and_auto_follows_the_batch():
    torch.manual_seed(0)
    G = Generator(32, style_dim=16, n_mlp=1, channels={r: 8 for r in (4, 8, 16, 32)}).eval()
    z = torch.randn(3, 16)
    with torch.no_grad():
        images = {form: G.set_modconv(form)([z], randomize_noise=False)[0]
                  for form in ("grouped", "input_scaling", "auto")}
        single = G.set_modconv("auto")([z[:1]], randomize_noise=False)[0]
    assert (images["grouped"] - images["input_scaling"]).abs().max().item() < 1e-5
    assert torch.equal(images["auto"], images["input_scaling"])
    assert (single - images["input_scaling"][:1]).abs().max().item() < 1e-5
    assert all(m.form == "auto" for m in G.modules() if isinstance(m, ModulatedConv2d))


def test_form_names_are_checked():
    assert modconv_form("auto", 1) == "grouped" and modconv_form("auto", 2) == "input_scaling"
    assert modconv_form("grouped", 8) == "grouped" and modconv_form("input_scaling", 1) == "input_scaling"
    with pytest.raises(ValueError, match="grouped"):
        modconv_form("fused", 1)
    with pytest.raises(ValueError, match="input_scaling"):
        Generator(32, style_dim=8, n_mlp=1, channels={r: 4 for r in (4, 8, 16, 32)}).set_modconv("fast")
    with pytest.raises(ValueError):
        ModulatedConv2d(4, 4, 3, 8, form="nope")


# ---------------------------------------------------------------------------------------------------------
# One graph per block: nothing in bias + leaky ReLU + gain, upfirdn or either modconv form breaks a trace
# ---------------------------------------------------------------------------------------------------------

def _one_graph(module: torch.nn.Module, *args) -> None:
    """Compile ``module`` with ``fullgraph=True`` (a graph break raises) and check forward and backward
    against eager."""
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True, dynamic=False)
    inputs = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    out = compiled(*inputs)
    out.square().mean().backward()
    eager_inputs = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    ref = module(*eager_inputs)
    ref.square().mean().backward()
    assert (out - ref).abs().max().item() < 1e-5
    for a, b in zip(inputs, eager_inputs):
        if a.is_floating_point():
            assert (a.grad - b.grad).abs().max().item() < 1e-5
    torch._dynamo.reset()


@needs_compile
@pytest.mark.parametrize("form", ["grouped", "input_scaling"])
def test_styled_blocks_trace_into_one_graph(form):
    torch.manual_seed(0)
    up = StyledConv(6, 4, style_dim=8, upsample=True)
    up.conv.form = form
    x, s = torch.randn(2, 6, 4, 4), torch.randn(2, 6)
    _one_graph(up, x, s, torch.randn(2, 1, 8, 8))
    rgb = ToRGB(4, style_dim=8)
    rgb.conv.form = form
    _one_graph(rgb, torch.randn(2, 4, 8, 8), torch.randn(2, 4), torch.randn(2, 3, 4, 4))


@needs_compile
def test_discriminator_blocks_trace_into_one_graph():
    torch.manual_seed(0)
    _one_graph(ResBlock(4, 6), torch.randn(2, 4, 8, 8))   # blur + stride-2 conv, bias + leaky ReLU + gain
    _one_graph(ConvLayer(4, 6, 3), torch.randn(2, 4, 8, 8))
