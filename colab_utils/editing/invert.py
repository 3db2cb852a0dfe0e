"""From a photo to StyleGAN2 latents: projection into W / W+ and noise, then optional pivotal tuning.

**Projection** follows the StyleGAN2 projector (Karras, Laine, Aittala, Hellsten, Lehtinen, Aila, "Analyzing and
Improving the Image Quality of StyleGAN", CVPR 2020, Sec. 5 and Appendix D): start at the mean W (of
``n_mean`` mapped z), optimise W (one vector for every layer) or W+ (one per layer) together with the per-layer
noise maps with Adam; the learning rate ramps up over the first ``lr_rampup`` of the steps and down along a
cosine over the last ``lr_rampdown``; Gaussian noise of ``noise_factor`` times the spread of W, fading to zero
over the first ``noise_ramp`` of the steps (quadratically), is added to the latent; the loss is a perceptual
distance (LPIPS-VGG) plus ``mse_weight`` times the pixel MSE plus ``noise_weight`` times the noise regulariser,
which penalises the autocorrelation of every noise map at every scale down to 8x8 so that the maps do not carry
the picture; the maps are renormalised to zero mean and unit variance after every step.

**Pivotal tuning** (Roich, Mokady, Bermano, Cohen-Or, "Pivotal Tuning for Latent-based Editing of Real Images",
ACM TOG 2022): keep the projected latent fixed as the *pivot* and fine-tune a copy of the synthesis network so
that it draws the photo exactly from it (LPIPS + ``l2_weight`` x MSE). The locality regulariser keeps the rest of
the latent space in place: every ``locality_every`` steps a latent ``w_r = w_p + alpha (w_z - w_p) /
|w_z - w_p|`` a fixed distance ``alpha`` from the pivot towards a random w_z is drawn, and the tuned copy's
image of it must stay close to the original generator's (LPIPS + MSE, weight ``locality_weight``).

:func:`invert` runs both, shows a progress bar and keeps a preview strip, and stores the result (latent, noise,
the tuned copy's difference to G) in the project folder (Google Drive when mounted) under a key made of the
image's hash, the generator's hash and the settings, so each photo is inverted once.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from colab_utils.training import Precision

from .perceptual import perceptual_distance

FORMAT = "colab_utils.inversion"
FORMAT_VERSION = 1
SPACES = ("w+", "w")


# ---------------------------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------------------------

def _device_of(G) -> torch.device:
    try:
        return next(G.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [-1, 1] (peak: the full range)."""
    mse = F.mse_loss(a.float().clamp(-1, 1), b.float().clamp(-1, 1)).item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def noise_regularization(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """The StyleGAN2 projector's noise regulariser: the squared autocorrelation of each map with itself moved
    by one pixel across and down, at every scale (2x2 average pooling) down to 8x8, summed."""
    loss = 0.0
    for noise in noises:
        n = noise[None, None] if noise.dim() == 2 else noise
        while True:
            loss = loss + (n * torch.roll(n, 1, dims=3)).mean().pow(2) + (n * torch.roll(n, 1, dims=2)).mean().pow(2)
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


def _normalize_noise_(noises: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in noises:
            n.sub_(n.mean()).div_(n.std() + 1e-8)


def learning_rate(t: float, base: float, rampdown: float, rampup: float) -> float:
    """The projector's schedule at progress ``t`` in [0, 1]: linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return base * ramp


def _check_target(G, target: torch.Tensor) -> torch.Tensor:
    if not isinstance(target, torch.Tensor) or target.dim() not in (3, 4) or target.shape[-3] != 3:
        raise ValueError(f"the target must be an image tensor [1, 3, H, W] in [-1, 1], got "
                         f"{tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__}")
    target = target if target.dim() == 4 else target[None]
    if target.shape[0] != 1 or tuple(target.shape[-2:]) != (G.size, G.size):
        raise ValueError(f"the target must be one {G.size}x{G.size} image (the generator's size), got "
                         f"{tuple(target.shape)}: align the photo at size={G.size}")
    return target.float().to(_device_of(G))


@torch.no_grad()
def w_statistics(G, n: int = 10000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean W [1, style_dim] and the spread of W (root mean squared distance to the mean) over ``n`` mapped z
    drawn from ``seed``."""
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(_device_of(G))
    w = torch.cat([G.get_latent(chunk) for chunk in z.split(4096)])
    mean = w.mean(0, keepdim=True)
    return mean, float(((w - mean) ** 2).sum(1).mean().sqrt())


# ---------------------------------------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Projection:
    """A projection: ``w_plus`` [1, n_latent, style_dim] (every row equal when the space was W), ``noise`` (one
    map per styled conv), ``image`` [1, 3, H, W] in [-1, 1], ``history`` (per step: loss terms), ``previews``
    ((step, image) pairs)."""

    w_plus: torch.Tensor
    noise: list[torch.Tensor]
    image: torch.Tensor
    history: list[dict] = field(default_factory=list)
    previews: list[tuple[int, torch.Tensor]] = field(default_factory=list)


def project(G, target: torch.Tensor, *, steps: int = 1000, space: str = "w+", perceptual="lpips-vgg",
            mse_weight: float = 1.0, noise_weight: float = 1e5, lr: float = 0.1, noise_factor: float = 0.05,
            noise_ramp: float = 0.75, lr_rampdown: float = 0.25, lr_rampup: float = 0.05, n_mean: int = 10000,
            optimize_noise: bool = True, seed: int = 0, previews: int = 6, progress: bool = True,
            precision: str = "auto") -> Projection:
    """Project one image ``target`` [1, 3, G.size, G.size] in [-1, 1] into ``space`` ("w+" or "w") and the noise
    maps of ``G`` (see the module docstring). ``perceptual``: ``"lpips-vgg"``, ``"random"`` or a module ``(x, y) ->
    [N]`` (:func:`~colab_utils.editing.perceptual.perceptual_distance`). ``previews``: how many snapshots to keep
    for the preview strip. ``precision``: as training runs (:class:`~colab_utils.training.Precision`: bf16 or fp16
    autocast on a GPU, fp32 on the CPU). G itself is not changed."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = _device_of(G)
    target = _check_target(G, target)
    distance = perceptual_distance(perceptual, device)
    w_mean, w_std = w_statistics(G, n_mean, seed)
    rows = 1 if space == "w" else G.n_latent
    w = w_mean[:, None, :].repeat(1, rows, 1).detach().requires_grad_(True)
    generator = torch.Generator().manual_seed(seed + 1)
    noise = [torch.randn(shape, generator=generator).to(device).requires_grad_(optimize_noise)
             for shape in G.noise_shapes()]
    params = [w] + (noise if optimize_noise else [])
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    amp = Precision(device, precision)
    snapshot_at = {round(i * (steps - 1) / max(previews - 1, 1)) for i in range(previews)} if previews else set()
    result = Projection(w.detach(), [n.detach() for n in noise], target)
    was_training, grads = G.training, [p.requires_grad for p in G.parameters()]
    G.eval().requires_grad_(False)
    try:
        for step in tqdm(range(steps), desc=f"projecting into {space.upper()}", disable=not progress, leave=False):
            t = step / steps
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(t, lr, lr_rampdown, lr_rampup)
            jitter = w_std * noise_factor * max(0.0, 1.0 - t / noise_ramp) ** 2 if noise_ramp > 0 else 0.0
            latent = w + torch.randn(w.shape, generator=generator).to(device) * jitter
            latent = latent.expand(1, G.n_latent, G.style_dim) if space == "w" else latent
            with amp.autocast():
                image = G.synthesis(G.style_vectors(latent), noise=noise).float()
                perceptual_loss = distance(image, target).float().mean()
            mse = F.mse_loss(image, target)
            reg = noise_regularization(noise) if optimize_noise else torch.zeros((), device=device)
            loss = perceptual_loss + mse_weight * mse + noise_weight * reg
            amp.backward_step(loss, optimizer)
            if optimize_noise:
                _normalize_noise_(noise)
            result.history.append({"step": step, "loss": loss.item(), "perceptual": perceptual_loss.item(),
                                   "mse": mse.item(), "noise_reg": float(reg.detach())})
            if step in snapshot_at:
                result.previews.append((step + 1, image.detach().clamp(-1, 1)))
    finally:
        G.train(was_training)
        for p, grad in zip(G.parameters(), grads):
            p.requires_grad_(grad)
    w_plus = w.detach().expand(1, G.n_latent, G.style_dim).clone()
    noise = [n.detach().clone() for n in noise]
    with torch.no_grad():
        result.image = G.synthesis(G.style_vectors(w_plus), noise=noise).clamp(-1, 1)
    result.w_plus, result.noise = w_plus, noise
    return result


# ---------------------------------------------------------------------------------------------------------
# Pivotal tuning
# ---------------------------------------------------------------------------------------------------------

def with_noise(G, noise: Sequence[torch.Tensor]):
    """Set ``G``'s stored noise maps (the ones ``synthesis`` uses by default) to ``noise``; returns G."""
    with torch.no_grad():
        for i, n in enumerate(noise):
            getattr(G.noises, f"noise_{i}").copy_(n.reshape(getattr(G.noises, f"noise_{i}").shape))
    return G


def tunable_parameters(G) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters pivotal tuning changes: every one except the mapping network's (``G.style``)."""
    return [(name, p) for name, p in G.named_parameters() if not name.startswith("style.")]


def pivotal_tuning(G, target: torch.Tensor, w_pivot: torch.Tensor, noise: Sequence[torch.Tensor], *,
                   steps: int = 350, lr: float = 3e-4, perceptual="lpips-vgg", l2_weight: float = 1.0,
                   locality_weight: float = 0.1, locality_alpha: float = 30.0, locality_every: int = 1,
                   locality_truncation: float = 0.5, seed: int = 0, progress: bool = True, precision: str = "auto"):
    """``(tuned copy of G, history)``: PTI around ``w_pivot`` [1, n_latent, style_dim] (see the module
    docstring). The copy's stored noise maps are ``noise``; G is not changed. ``locality_alpha``: the distance of
    the regulariser's latents from the pivot (PTI: 30 in FFHQ's W); a random w_z closer than that is used as it
    is; ``locality_weight=0`` turns the regulariser off. ``precision``: as in :func:`project`."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = _device_of(G)
    target = _check_target(G, target)
    distance = perceptual_distance(perceptual, device)
    tuned = with_noise(copy.deepcopy(G).eval(), noise).requires_grad_(False)
    G_frozen = G.eval()
    params = [p.requires_grad_(True) for _, p in tunable_parameters(tuned)]
    optimizer = torch.optim.Adam(params, lr=lr)
    amp = Precision(device, precision)
    w_pivot = w_pivot.detach().to(device)
    generator = torch.Generator().manual_seed(seed + 2)
    history = []
    w_center = None
    if locality_weight > 0 and locality_truncation < 1:
        w_center, _ = w_statistics(G, 4096, seed)
    for step in tqdm(range(steps), desc="pivotal tuning", disable=not progress, leave=False):
        with amp.autocast():
            image = tuned.synthesis(tuned.style_vectors(w_pivot)).float()
            rec_perceptual = distance(image, target).float().mean()
        rec_l2 = F.mse_loss(image, target)
        loss = rec_perceptual + l2_weight * rec_l2
        local = torch.zeros((), device=device)
        if locality_weight > 0 and step % locality_every == 0:
            with torch.no_grad():
                z = torch.randn(1, G.style_dim, generator=generator).to(device)
                w_z = G_frozen.get_latent(z)
                if w_center is not None:
                    w_z = w_center + locality_truncation * (w_z - w_center)
                w_z = w_z[:, None, :].expand_as(w_pivot)
                direction = w_z - w_pivot
                length = direction[:, 0].norm()
                w_r = w_z if length <= locality_alpha else w_pivot + direction * (locality_alpha / length)
                reference = G_frozen.synthesis(G_frozen.style_vectors(w_r), noise=list(noise))
            with amp.autocast():
                drawn = tuned.synthesis(tuned.style_vectors(w_r)).float()
                local = distance(drawn, reference.float()).float().mean()
            local = local + F.mse_loss(drawn, reference.float())
            loss = loss + locality_weight * local
        amp.backward_step(loss, optimizer)
        history.append({"step": step, "loss": loss.item(), "perceptual": rec_perceptual.item(), "mse": rec_l2.item(),
                        "locality": local.item()})
    tuned.requires_grad_(False)
    return tuned, history


def generator_delta(G, tuned) -> dict[str, torch.Tensor]:
    """The tuned copy's parameters minus G's, for every parameter that changed (CPU, float32)."""
    original = dict(G.named_parameters())
    return {name: (p.detach() - original[name].detach()).float().cpu()
            for name, p in tuned.named_parameters() if not torch.equal(p.detach(), original[name].detach())}


def apply_delta(G, delta: dict[str, torch.Tensor], noise: Sequence[torch.Tensor] | None = None):
    """A copy of ``G`` with ``delta`` added to its parameters (and its stored noise set to ``noise``)."""
    tuned = copy.deepcopy(G).eval().requires_grad_(False)
    params = dict(tuned.named_parameters())
    unknown = sorted(set(delta) - set(params))
    if unknown:
        raise ValueError(f"the tuned generator's difference names parameters this generator lacks ({unknown[:3]}...):"
                         f" the inversion was made with another generator")
    with torch.no_grad():
        for name, d in delta.items():
            if params[name].shape != d.shape:
                raise ValueError(f"{name}: the stored difference is {tuple(d.shape)}, the generator's parameter "
                                 f"{tuple(params[name].shape)}: the inversion was made with another generator")
            params[name].add_(d.to(params[name].device, params[name].dtype))
    return with_noise(tuned, noise) if noise is not None else tuned


# ---------------------------------------------------------------------------------------------------------
# The whole inversion, stored once per photo
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Inversion:
    """A photo inverted into a generator: ``w_plus`` [1, n_latent, style_dim], ``noise`` maps, ``delta`` (the
    tuned copy's parameters minus G's; empty without tuning), ``settings`` (how it was made), ``figures``
    (``psnr`` and ``perceptual`` of the projection, and ``tuned_psnr``/``tuned_perceptual`` after tuning), ``key``
    (the file name it is stored under) and ``previews`` (the strip's images, not stored)."""

    w_plus: torch.Tensor
    noise: list[torch.Tensor]
    delta: dict[str, torch.Tensor]
    settings: dict
    figures: dict
    key: str = ""
    previews: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        return bool(self.delta)

    def generator(self, G):
        """The generator to edit this photo with: a copy of G with the tuning applied and this photo's noise maps
        stored (so ``synthesis`` without ``noise`` draws the photo), eval mode, no gradients."""
        return apply_delta(G, self.delta, [n.to(_device_of(G)) for n in self.noise])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the inversion (atomically: a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "version": FORMAT_VERSION, "w_plus": self.w_plus.cpu(),
                   "noise": [n.cpu() for n in self.noise], "delta": self.delta, "settings": self.settings,
                   "figures": self.figures, "key": self.key, "seconds": self.seconds}
        temporary = path.with_name(path.name + ".partial")
        torch.save(payload, temporary)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Inversion":
        from colab_utils.loading import safe_load

        payload = safe_load(path)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not an inversion saved by colab_utils.editing.invert")
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: inversion format version {payload.get('version')}, this code reads "
                             f"{FORMAT_VERSION}; delete the file to invert again")
        return cls(payload["w_plus"], list(payload["noise"]), dict(payload["delta"]), dict(payload["settings"]),
                   dict(payload["figures"]), payload.get("key", ""), seconds=dict(payload.get("seconds", {})))


def image_hash(image: torch.Tensor) -> str:
    """sha256 of an image's pixels (rounded to 8 bits), its shape included."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    digest = hashlib.sha256(str(tuple(pixels.shape)).encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


def generator_hash(G) -> str:
    """sha256 over the generator's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(G.state_dict().items()):
        if name.startswith("noises."):
            continue                                 # the stored noise is replaced per photo
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``inversions/`` in the project folder (``MyDrive/colab_utils`` when Drive is mounted)."""
    from colab_utils import runtime

    return runtime.project_dir("inversions")


def invert(G, target: torch.Tensor, *, steps: int = 1000, space: str = "w+", tune: bool = True,
           tune_steps: int = 350, perceptual="lpips-vgg", cache_dir: str | os.PathLike | None | bool = None,
           seed: int = 0, progress: bool = True, project_options: dict | None = None,
           tune_options: dict | None = None, precision: str = "auto") -> Inversion:
    """Invert one aligned image ``target`` [1, 3, G.size, G.size] in [-1, 1]: :func:`project`, then (with
    ``tune``) :func:`pivotal_tuning` around the projected latent.

    The result is stored in ``cache_dir`` (default :func:`default_cache_dir`; ``False``: not stored) as
    ``<image hash>-<generator hash>-<settings hash>.pt`` and read back instead of inverting again when that file
    exists. ``perceptual`` is the distance both stages use (``"lpips-vgg"``, ``"random"``, or a module); a module
    passed in is keyed by its class name and ``name`` attribute. ``precision``: as in :func:`project` (on a GPU,
    bf16 or fp16 autocast as training uses)."""
    target = _check_target(G, target)
    distance = perceptual_distance(perceptual, _device_of(G))
    settings = {"steps": int(steps), "space": space, "tune": bool(tune), "tune_steps": int(tune_steps) if tune else 0,
                "perceptual": perceptual if isinstance(perceptual, str) else
                f"{type(perceptual).__name__}:{getattr(perceptual, 'name', '')}", "seed": int(seed), "precision": precision,
                "project_options": dict(project_options or {}), "tune_options": dict(tune_options or {})}
    key = "-".join([image_hash(target)[:16], generator_hash(G)[:12],
                    hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]])
    folder = None if cache_dir is False else Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{key}.pt" if folder is not None else None
    if path is not None and path.is_file():
        return Inversion.load(path)

    import time

    start = time.perf_counter()
    projection = project(G, target, steps=steps, space=space, perceptual=distance, seed=seed, progress=progress,
                         precision=precision, **(project_options or {}))
    seconds = {"projection": time.perf_counter() - start}
    with torch.no_grad():
        figures = {"psnr": psnr(projection.image, target),
                   "perceptual": float(distance(projection.image, target).mean())}
    previews = [("photo", target)] + [(f"step {s}", image) for s, image in projection.previews]
    delta: dict[str, torch.Tensor] = {}
    if tune:
        start = time.perf_counter()
        tuned, _ = pivotal_tuning(G, target, projection.w_plus, projection.noise, steps=tune_steps,
                                  perceptual=distance, seed=seed, progress=progress, precision=precision,
                                  **(tune_options or {}))
        seconds["tuning"] = time.perf_counter() - start
        with torch.no_grad():
            image = tuned.synthesis(tuned.style_vectors(projection.w_plus)).clamp(-1, 1)
            figures.update(tuned_psnr=psnr(image, target), tuned_perceptual=float(distance(image, target).mean()))
        previews.append(("tuned", image))
        delta = generator_delta(G, tuned)
    inversion = Inversion(projection.w_plus.cpu(), [n.cpu() for n in projection.noise], delta, settings, figures,
                          key, previews, seconds)
    if path is not None:
        inversion.save(path)
    return inversion


def preview_strip(inversion: Inversion, *, min_side: int = 128):
    """The photo, the projection at its snapshots and the tuned reconstruction side by side (a PIL image)."""
    from colab_utils.viz import image_grid, to_uint8

    if not inversion.previews:
        raise ValueError("this inversion has no previews (it was read from the cache): they are kept only by the "
                         "run that made it")
    labels = [label for label, _ in inversion.previews]
    tiles = to_uint8(torch.cat([image.detach().cpu() for _, image in inversion.previews]))
    if tiles.shape[1] < min_side:
        factor = -(-min_side // tiles.shape[1])
        tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    return image_grid(list(tiles), nrow=len(labels), padding=2, col_labels=labels)
