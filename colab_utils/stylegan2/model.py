"""StyleGAN2 generator and discriminator in plain PyTorch (no compiled CUDA extensions).

Karras, Laine, Aittala, Hellsten, Lehtinen, Aila. "Analyzing and Improving the Image Quality of StyleGAN",
CVPR 2020 (config-e/f: weight demodulation, skip generator, residual discriminator). Read top to bottom in
the order the paper introduces the parts: equalized learning rate (Karras et al. 2018), the resampling filter,
the mapping network, modulated convolution with demodulation, noise injection, the styled convolution, the
skip-connected tRGB layers, the generator; then the residual discriminator with the minibatch standard
deviation layer.

Module and parameter names follow the rosinality/stylegan2-pytorch state-dict layout key for key, so its
checkpoints (``stylegan2-ffhq-config-f.pt``, training checkpoints) load with ``load_state_dict`` unchanged.

Precision: every elementwise step runs in the activations' dtype (parameters are cast to it), so the network
stays in bf16/fp16 under ``torch.autocast``; the demodulation coefficients are computed in the parameters'
precision (fp32) and the RGB skip path is kept in at least fp32, as in the official implementation. Works with
``channels_last`` models and inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

BLUR_KERNEL = (1, 3, 3, 1)
MIN_SIZE, MAX_SIZE = 32, 1024
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Feature maps per resolution of the paper's networks (config-f uses ``channel_multiplier=2``)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def check_size(size: int) -> int:
    """The image size as an int; ValueError unless it is a power of two from 32 to 1024."""
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE or size > MAX_SIZE or size & (size - 1):
        raise ValueError(f"StyleGAN2 image size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return size


def resolve_channels(size: int, channel_multiplier: int | None, channels: dict | None) -> dict[int, int]:
    """The channel table for resolutions 4..size: the explicit ``channels`` (keys may be str, e.g. from JSON)
    or the paper's table scaled by ``channel_multiplier``."""
    if channels is None:
        if channel_multiplier is None:
            raise ValueError("give channel_multiplier or an explicit channels table")
        channels = default_channels(channel_multiplier)
    table = {int(k): int(v) for k, v in channels.items()}
    needed = [2**i for i in range(2, int(math.log2(size)) + 1)]
    missing = [r for r in needed if r not in table]
    if missing:
        raise ValueError(f"channels table lacks resolutions {missing} (needs every one of {needed})")
    bad = {r: table[r] for r in needed if table[r] < 1}
    if bad:
        raise ValueError(f"channel counts must be positive, got {bad}")
    return {r: table[r] for r in needed}


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# ---------------------------------------------------------------------------------------------------------
# Equalized learning rate (ProGAN, Sec. 4.1): weights drawn from N(0, 1), scaled by He's constant at run time.
# ---------------------------------------------------------------------------------------------------------

def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = LRELU_SLOPE,
                     gain: float = LRELU_GAIN) -> torch.Tensor:
    """Bias, leaky ReLU and the sqrt(2) gain that keeps activations at unit variance."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.to(x.dtype).view(shape), negative_slope) * gain


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate; ``lr_mul`` slows the mapping network (0.01)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, LRELU_SLOPE) * LRELU_GAIN
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}"


# ---------------------------------------------------------------------------------------------------------
# Resampling with the [1, 3, 3, 1] binomial filter (Zhang 2019; StyleGAN Sec. 2 / StyleGAN2 App. B)
# ---------------------------------------------------------------------------------------------------------

def make_kernel(taps: Sequence[float] = BLUR_KERNEL) -> torch.Tensor:
    """Separable 2-D low-pass filter from 1-D taps, normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter (true convolution with ``kernel``), then keep every
    ``down``-th sample, on each channel separately. Runs in the input's dtype, also under autocast."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return F.conv2d(x, weight, stride=down, groups=c)


class Blur(nn.Module):
    """Low-pass filter with explicit padding; ``upsample_factor`` keeps the gain of a zero-stuffed input."""

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1, taps: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling of the RGB skip path: zero insertion then the filter (gain 4)."""

    def __init__(self, factor: int = 2, taps: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


# ---------------------------------------------------------------------------------------------------------
# Mapping network f: Z -> W (StyleGAN Sec. 2): pixel norm, then n_mlp fully connected layers.
# ---------------------------------------------------------------------------------------------------------

class PixelNorm(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)


def mapping_network(style_dim: int, n_mlp: int, lr_mlp: float) -> nn.Sequential:
    """``style.0`` is the pixel norm, ``style.1..n_mlp`` the equalized-lr layers."""
    layers: list[nn.Module] = [PixelNorm()]
    layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------------------
# Modulated convolution with weight demodulation (StyleGAN2 Sec. 2.2, Eq. 1-3)
# ---------------------------------------------------------------------------------------------------------

MODCONV_FORMS = ("auto", "grouped", "input_scaling")


def modconv_form(form: str, batch: int) -> str:
    """The form a modulated convolution of ``batch`` samples runs in: ``form`` itself, or for ``"auto"``
    ``"grouped"`` when the batch holds one sample and ``"input_scaling"`` otherwise.

    The rule looks at the shape only (no timing at run time, so a compiled graph depends on nothing else).
    One sample: the grouped form is a single ordinary convolution with that sample's demodulated weights,
    with no elementwise pass over the activations before or after it (the editing slider's case). Several
    samples: the input-scaling form runs one convolution with the weight all samples share (cuDNN's best
    tuned kernels, channels_last without reshapes, one weight gradient), where the grouped form would
    build a [batch*out, in, k, k] weight and a grouped convolution and its backward (NVlabs'
    stylegan2-ada-pytorch likewise trains with the non-fused form)."""
    if form not in MODCONV_FORMS:
        raise ValueError(f"modulated convolution form must be one of {MODCONV_FORMS}, got {form!r}")
    if form == "auto":
        return "grouped" if batch == 1 else "input_scaling"
    return form


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a per-sample style ``s`` (Eq. 1) and whose output
    channels are divided by the resulting weight norm (demodulation, Eq. 3).

    ``modulation`` is the affine layer A that turns w into s (bias initialised to 1); ``forward`` takes s
    itself, so editing code can change style vectors directly. ``upsample`` is a stride-2 transposed
    convolution followed by the blur filter.

    Two forms compute the same function (``form``, see :func:`modconv_form`; ``"auto"`` by default):
    - ``"grouped"``, the paper's Fig. 2d: per-sample weights w' = s * w, demodulated, then one grouped
      convolution over the batch;
    - ``"input_scaling"`` (``fused_modconv=False`` in the official code): scale the input by s, convolve
      with the shared weight, scale the output by the demodulation coefficients.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, form: str = "auto"):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        modconv_form(form, 1)  # an unknown form fails here, not at the first call
        self.form = form
        if upsample:
            factor = 2
            p = (len(BLUR_KERNEL) - factor) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """The style vector s = A(w), one entry per input channel."""
        return self.modulation(w)

    def demodulation(self, s: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(sum over inputs and taps of (w * s)^2 + eps), shape [B, out], in the weights' dtype."""
        weight = self.weight[0] * self.scale
        s = s.to(weight.dtype)
        energy = weight.square().sum(dim=(2, 3))                 # [out, in]
        return torch.rsqrt((s.square()[:, None, :] * energy[None]).sum(dim=2) + 1e-8)

    def modulated_weight(self, s: torch.Tensor) -> torch.Tensor:
        """Per-sample weights s * w (Eq. 1), demodulated (Eq. 3): [B, out, in, k, k] in the weights' dtype."""
        weight = self.weight * self.scale * s.to(self.weight.dtype)[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
        return weight

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if modconv_form(self.form, x.shape[0]) == "grouped":
            out = self._grouped(x, s)
        else:
            out = self._input_scaling(x, s)
        return self.blur(out) if self.upsample else out

    def _grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        fmt = _memory_format(x)
        weight = self.modulated_weight(s).to(x.dtype)            # [B, out, in, k, k]
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)                            # a view for one sample, else a copy
        if self.upsample:  # transposed conv weights are [in, out, k, k] per group
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight.contiguous(memory_format=_memory_format(x)), stride=2, padding=0,
                                     groups=b)
        else:
            weight = weight.reshape(b * self.out_channels, c, k, k)
            out = F.conv2d(x, weight.contiguous(memory_format=_memory_format(x)), padding=self.padding, groups=b)
        return out.reshape(b, self.out_channels, *out.shape[2:]).contiguous(memory_format=fmt)

    def _input_scaling(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = (self.weight[0] * self.scale).to(x.dtype)       # [out, in, k, k]
        fmt = _memory_format(x)
        x = x * s.to(x.dtype)[:, :, None, None]
        if self.upsample:
            weight = weight.transpose(0, 1).contiguous(memory_format=fmt)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0)
        else:
            out = F.conv2d(x, weight.contiguous(memory_format=fmt), padding=self.padding)
        if self.demodulate:
            out = out * self.demodulation(s).to(out.dtype)[:, :, None, None]
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, {self.kernel_size}, demodulate={self.demodulate}, "
                f"upsample={self.upsample}, form={self.form!r}")


# ---------------------------------------------------------------------------------------------------------
# Noise inputs (StyleGAN Sec. 3.2) and the styled convolution block (StyleGAN2 Fig. 2c)
# ---------------------------------------------------------------------------------------------------------

class NoiseInjection(nn.Module):
    """Adds single-channel Gaussian noise scaled by a learned strength (``weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from. Its output's memory format
    (``memory_format``) sets the format of every later activation."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))
        self.memory_format = torch.contiguous_format

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1).contiguous(memory_format=self.memory_format)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, noise, bias and leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, s), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB (no demodulation) added to the upsampled RGB of the previous
    resolution: the skip-connection generator of StyleGAN2 Sec. 4.1 (Fig. 7b). The RGB sum is kept in at
    least float32."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, s)
        rgb_dtype = torch.promote_types(out.dtype, torch.float32)
        out = out.to(rgb_dtype) + self.bias.to(rgb_dtype)
        if skip is not None:
            out = out + self.upsample(skip.to(out.dtype))
        return out


# ---------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer of the synthesis network, in the order of ``Generator.style_vectors``.

    ``name`` is the module path (``"conv1"``, ``"to_rgb1"``, ``"convs.0"``, ``"to_rgbs.0"``...),
    ``resolution`` the side of its output, ``in_channels`` the length of its style vector s,
    ``latent_index`` the entry of W+ that drives it."""

    name: str
    resolution: int
    in_channels: int
    out_channels: int
    is_rgb: bool
    latent_index: int


class MixingLatents(NamedTuple):
    """What ``mixing_latents`` draws: the z list to pass as ``styles`` and the crossover point."""

    styles: list[torch.Tensor]
    inject_index: int | None


def mixing_latents(batch: int, style_dim: int, prob: float, n_latent: int,
                   generator: torch.Generator | None = None, device: torch.device | str | None = None) -> MixingLatents:
    """Style-mixing regularisation (StyleGAN Sec. 3.1): with probability ``prob`` two z batches and a random
    crossover layer in [1, n_latent - 1], else one z batch. All draws come from ``generator`` (on its device)
    so a training loop that saves the generator's state resumes bit-exactly."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    mix = float(torch.rand((), generator=generator, device=gen_device)) < prob
    if mix:
        z = torch.randn(2, batch, style_dim, generator=generator, device=gen_device)
        inject = int(torch.randint(1, n_latent, (), generator=generator, device=gen_device))
        styles = [z[0], z[1]]
    else:
        styles = [torch.randn(batch, style_dim, generator=generator, device=gen_device)]
        inject = None
    if device is not None:
        styles = [s.to(device, non_blocking=True) for s in styles]   # a blocking copy waits for the device
    return MixingLatents(styles, inject)


class Generator(nn.Module):
    """StyleGAN2 generator (config-e/f): mapping network ``style``, constant ``input``, ``conv1``/``to_rgb1``
    at 4x4, then per resolution an upsampling ``convs[2k]``, a ``convs[2k+1]`` and ``to_rgbs[k]``; fixed noise
    images in the ``noises`` buffers.

    ``forward`` is rosinality-compatible; it runs ``w_plus`` -> ``style_vectors`` -> ``synthesis``, so the
    explicit style-vector path used for editing is the only synthesis path.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int | None = 2,
                 lr_mlp: float = 0.01, channels: dict[int, int] | None = None):
        super().__init__()
        self.size = check_size(size)
        if style_dim < 1 or n_mlp < 1:
            raise ValueError(f"style_dim and n_mlp must be positive, got {style_dim} and {n_mlp}")
        self.style_dim, self.n_mlp, self.lr_mlp = style_dim, n_mlp, lr_mlp
        self.channel_multiplier = channel_multiplier
        self.channels = resolve_channels(size, channel_multiplier, channels)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1       # styled convs, one noise image each
        self.n_latent = self.log_size * 2 - 2                # entries of W+

        self.style = mapping_network(style_dim, n_mlp, lr_mlp)

        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, style_dim)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = c4
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

        self.noises = nn.Module()
        for layer, shape in enumerate(self.noise_shapes()):
            self.noises.register_buffer(f"noise_{layer}", torch.randn(shape))
        # The average w of the file G was loaded from ([1, style_dim]; None until then): the truncation
        # centre sampling and editing use by default. Not part of the state_dict (rosinality keeps it beside).
        self.register_buffer("latent_avg", None, persistent=False)

        self.style_layers: list[StyleLayer] = self._describe_style_layers()

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def use_channels_last(self, enabled: bool = True) -> "Generator":
        """Run the synthesis network in channels_last (NHWC) memory format.

        ``G.to(memory_format=torch.channels_last)`` cannot be used: torch refuses it for the 5-D modulated
        weights that the rosinality layout stores. Activations follow the constant input's format instead
        (every convolution matches its weight to its input), so this switch is all that is needed."""
        self.input.memory_format = torch.channels_last if enabled else torch.contiguous_format
        return self

    def set_modconv(self, form: str = "auto") -> "Generator":
        """Run every modulated convolution in ``form``: ``"auto"`` (the default: grouped for one sample,
        input scaling for more, see :func:`modconv_form`), ``"grouped"`` or ``"input_scaling"``. The forms
        compute the same function; only speed differs."""
        modconv_form(form, 1)
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                module.form = form
        return self

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shape of each per-layer noise image: 4x4 for conv1, then two per resolution."""
        return [(1, 1, 2 ** ((layer + 5) // 2), 2 ** ((layer + 5) // 2)) for layer in range(self.num_layers)]

    def _describe_style_layers(self) -> list[StyleLayer]:
        c4 = self.channels[4]
        layers = [StyleLayer("conv1", 4, c4, c4, False, 0), StyleLayer("to_rgb1", 4, c4, 3, True, 1)]
        for k in range(len(self.to_rgbs)):
            res = 2 ** (k + 3)
            up, conv = self.convs[2 * k].conv, self.convs[2 * k + 1].conv
            layers += [
                StyleLayer(f"convs.{2 * k}", res, up.in_channels, up.out_channels, False, 2 * k + 1),
                StyleLayer(f"convs.{2 * k + 1}", res, conv.in_channels, conv.out_channels, False, 2 * k + 2),
                StyleLayer(f"to_rgbs.{k}", res, conv.out_channels, 3, True, 2 * k + 3),
            ]
        return layers

    def _modulated(self, name: str) -> ModulatedConv2d:
        return self.get_submodule(name).conv

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh noise images (one per styled conv), on the generator's device."""
        device = self.input.input.device
        gen_device = generator.device if generator is not None else device
        return [torch.randn((batch,) + shape[1:], generator=generator, device=gen_device).to(device)
                for shape in self.noise_shapes()]

    # -- Z -> W -> W+ ----------------------------------------------------------------------------------------
    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """w = f(z)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n_latent: int) -> torch.Tensor:
        """Average w of ``n_latent`` random z (the centre for the truncation trick), shape [1, style_dim]."""
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def w_plus(self, styles: Sequence[torch.Tensor], *, inject_index: int | torch.Tensor | None = None,
               truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
               input_is_latent: bool = False) -> torch.Tensor:
        """One w per modulated layer, [B, n_latent, style_dim].

        ``styles``: one or two tensors, z (mapped here) or, with ``input_is_latent``, w [B, style_dim] or W+
        [B, n_latent, style_dim]. Two tensors mix styles: entries before ``inject_index`` come from the
        first, the rest from the second (an int or a 0-d tensor; a random crossover in [1, n_latent-1] when
        None). ``truncation`` < 1
        pulls every w toward ``truncation_latent`` (StyleGAN Sec. 3.3)."""
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        if not 1 <= len(styles) <= 2:
            raise ValueError(f"styles must hold one or two tensors (two for style mixing), got {len(styles)}")
        if not input_is_latent:
            for z in styles:
                if z.dim() != 2 or z.shape[1] != self.style_dim:
                    raise ValueError(f"z must be [batch, {self.style_dim}], got {tuple(z.shape)}")
            styles = [self.style(z) for z in styles]
        latents = [self._broadcast_latent(w) for w in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (G.mean_latent(4096) or the "
                                 "checkpoint's latent_avg)")
            center = truncation_latent.to(latents[0].dtype).reshape(1, -1, self.style_dim)
            latents = [center + truncation * (w - center) for w in latents]
        if len(latents) == 1:
            return latents[0]
        if inject_index is None:
            inject_index = int(torch.randint(1, self.n_latent, ()))
        first, second = latents
        if isinstance(inject_index, torch.Tensor):  # the same selection without a Python int (torch.compile
            # then keeps one graph for every crossover layer instead of one per value); not range-checked
            take_first = torch.arange(self.n_latent, device=first.device) < inject_index.to(first.device)
            return torch.where(take_first.view(1, -1, 1), first, second)
        if not 0 <= inject_index <= self.n_latent:
            raise ValueError(f"inject_index must be in [0, {self.n_latent}], got {inject_index}")
        return torch.cat([first[:, :inject_index], second[:, inject_index:]], dim=1)

    def _broadcast_latent(self, w: torch.Tensor) -> torch.Tensor:
        if w.dim() == 2 and w.shape[1] == self.style_dim:
            return w.unsqueeze(1).repeat(1, self.n_latent, 1)
        if w.dim() == 3 and w.shape[1:] == (self.n_latent, self.style_dim):
            return w
        raise ValueError(f"a latent must be W [batch, {self.style_dim}] or W+ [batch, {self.n_latent}, "
                         f"{self.style_dim}], got {tuple(w.shape)}")

    # -- W+ -> style vectors s -> image ----------------------------------------------------------------------
    def style_vectors(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """The modulation outputs s = A(w) of every modulated layer, in ``style_layers`` order."""
        w_plus = self._broadcast_latent(w_plus)
        return [self._modulated(layer.name).style(w_plus[:, layer.latent_index]) for layer in self.style_layers]

    def _noise_list(self, noise, randomize_noise: bool) -> list[torch.Tensor | None]:
        if noise is None:
            if randomize_noise:
                return [None] * self.num_layers
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} images (one per styled conv), got {len(noise)}")
        return noise

    def synthesis(self, styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor | None] | None = None,
                  randomize_noise: bool = False, return_activations: bool = False):
        """Render from explicit style vectors (one per entry of ``style_layers``, each [B, in_channels]).

        ``noise``: a list of ``num_layers`` images (None entries draw fresh noise); when omitted, the stored
        ``noises`` buffers, or fresh noise with ``randomize_noise``. Returns the image, or ``(image,
        activations)`` with the output of every styled conv (after noise and activation) and the RGB image
        after every tRGB skip sum, keyed by layer name."""
        if len(styles) != len(self.style_layers):
            raise ValueError(f"synthesis needs {len(self.style_layers)} style vectors, got {len(styles)}")
        for s, layer in zip(styles, self.style_layers):
            if s.dim() != 2 or s.shape[1] != layer.in_channels:
                raise ValueError(f"style vector for {layer.name} must be [batch, {layer.in_channels}], "
                                 f"got {tuple(s.shape)}")
        noise = self._noise_list(noise, randomize_noise)
        acts: dict[str, torch.Tensor] = {}
        s = iter(styles)

        x = self.conv1(self.input(styles[0].shape[0]), next(s), noise[0])
        acts["conv1"] = x
        img = self.to_rgb1(x, next(s))
        acts["to_rgb1"] = img
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, next(s), noise[2 * k + 1])
            acts[f"convs.{2 * k}"] = x
            x = self.convs[2 * k + 1](x, next(s), noise[2 * k + 2])
            acts[f"convs.{2 * k + 1}"] = x
            img = to_rgb(x, next(s), img)
            acts[f"to_rgbs.{k}"] = img
        return (img, acts) if return_activations else img

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False,
                inject_index: int | torch.Tensor | None = None, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, input_is_latent: bool = False,
                noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = True):
        """rosinality-compatible call: ``(image, W+ or None)``."""
        latent = self.w_plus(styles, inject_index=inject_index, truncation=truncation,
                             truncation_latent=truncation_latent, input_is_latent=input_is_latent)
        img = self.synthesis(self.style_vectors(latent), noise=noise, randomize_noise=randomize_noise)
        return img, (latent if return_latents else None)


# ---------------------------------------------------------------------------------------------------------
# Residual discriminator (StyleGAN2 Sec. 4.1, Fig. 7c) with minibatch standard deviation (ProGAN Sec. 3)
# ---------------------------------------------------------------------------------------------------------

class ConvLayer(nn.Sequential):
    """[blur] -> equalized conv (stride 2 when downsampling) -> [bias + leaky ReLU]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel_size - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def stddev_group(batch: int, group_size: int = 4) -> int:
    """The group size :func:`minibatch_stddev` uses for ``batch`` images: the largest divisor of the batch not
    above ``group_size``."""
    return next(g for g in range(min(group_size, batch), 0, -1) if batch % g == 0)


def stddev_group_note(batch: int, group_size: int = 4) -> str | None:
    """A sentence for the training log when ``batch`` images per D call make :func:`minibatch_stddev` differ
    from the official code, which groups ``min(group_size, batch)`` images and requires the batch to divide
    into such groups (Karras et al. 2020; rosinality's port likewise); None when they agree."""
    official = min(group_size, batch)
    if batch % official == 0:
        return None
    return (f"minibatch stddev: D sees {batch} images per step, which the official code cannot split into groups "
            f"of {official}; groups of {stddev_group(batch, group_size)} are used instead, so D's statistics "
            f"differ slightly from the official model's (a batch per process that is a multiple of {official} "
            f"matches it)")


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the average feature standard deviation over groups of samples as extra channel(s).

    Sample b is grouped with the samples b +- k*(B/G); G is :func:`stddev_group` of the batch, the largest
    divisor not above ``group_size``. The official code requires the batch to divide into groups of
    ``min(group_size, B)``; for such batches the result is the same, for others :func:`stddev_group_note`
    says how it differs."""
    b, c, h, w = x.shape
    group = stddev_group(b, group_size)
    y = x.reshape(group, -1, num_features, c // num_features, h, w)
    y = y.to(torch.promote_types(y.dtype, torch.float32))
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)          # [B/G, F, C/F, H, W]
    y = y.mean(dim=(2, 3, 4))                                     # [B/G, F]
    y = y.reshape(-1, num_features, 1, 1).repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y.contiguous(memory_format=_memory_format(x))], dim=1)


class Discriminator(nn.Module):
    """Residual discriminator: ``convs`` = fromRGB then one ``ResBlock`` per resolution down to 4x4,
    minibatch stddev, ``final_conv`` and two ``final_linear`` layers to one logit per image."""

    stddev_group = 4
    stddev_feat = 1

    def __init__(self, size: int, channel_multiplier: int | None = 2, channels: dict[int, int] | None = None):
        super().__init__()
        self.size = check_size(size)
        self.channel_multiplier = channel_multiplier
        self.channels = resolve_channels(size, channel_multiplier, channels)
        log_size = int(math.log2(size))
        blocks: list[nn.Module] = [ConvLayer(3, self.channels[size], 1)]
        in_ch = self.channels[size]
        for i in range(log_size, 2, -1):
            out_ch = self.channels[2 ** (i - 1)]
            blocks.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*blocks)
        c4 = self.channels[4]
        self.final_conv = ConvLayer(in_ch + self.stddev_feat, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 4 * 4, c4, activation=True), EqualLinear(c4, 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 4 or img.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"Discriminator expects [batch, 3, {self.size}, {self.size}] images, "
                             f"got {tuple(img.shape)}")
        x = self.convs(img)
        x = minibatch_stddev(x, self.stddev_group, self.stddev_feat)
        x = self.final_conv(x)
        return self.final_linear(x.reshape(x.shape[0], -1))
