"""Image synthesis with trained StarGAN v2 networks (Choi et al., CVPR 2020, Sec. 4 and its figures).

- :func:`translate`: a batch of aligned faces in the style of a reference image, or of a latent code, for a
  target domain; the one call other code (video) builds on;
- :func:`reference_grid`: sources × references, like the paper's reference-guided figure: the first row
  holds the references, the first column the sources, each cell a source in the style of a reference;
- :func:`latent_grid`: every source translated with a few latent codes into every domain;
- :func:`interpolation_frames` / :func:`style_interpolation_gif`: the style code moves smoothly from one
  reference to the next while the sources follow (the official release's ``ref_vid``).

Images are float tensors ``[N,3,H,W]`` in [-1, 1] at the generator's size (faces aligned like CelebA-HQ:
:mod:`colab_utils.stargan.align`). Outputs are not clamped; :func:`colab_utils.viz.to_uint8` clamps.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from colab_utils import viz
from colab_utils.drive import ensure_parent

from .fan import FANRequiredError, compute_masks, fan_required_message
from .model import Nets

DEFAULT_CHUNK = 16


def _device(nets: Nets) -> torch.device:
    return next(nets.generator.parameters()).device


def _check_images(nets: Nets, images: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a float tensor [N,3,H,W] in [-1, 1], got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    size = nets.generator.img_size
    if images.dim() != 4 or images.size(1) != 3 or tuple(images.shape[2:]) != (size, size):
        raise ValueError(f"{what} must be [N,3,{size},{size}] (aligned faces at the generator's size), got "
                         f"{tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{what} must be float in [-1, 1], got {images.dtype}")
    return images


def _domains(domain, count: int, num_domains: int, device) -> torch.Tensor:
    """``domain`` (an int, a sequence or a tensor of one or ``count`` ints) as a [count] long tensor."""
    y = torch.as_tensor(domain, dtype=torch.long).flatten()
    if y.numel() == 1:
        y = y.expand(count)
    if y.numel() != count:
        raise ValueError(f"domain must be one index or one per image ({count}), got {y.numel()}")
    if ((y < 0) | (y >= num_domains)).any():
        raise ValueError(f"domain indices must be in 0..{num_domains - 1}, got {y.tolist()}")
    return y.to(device)


def _broadcast(t: torch.Tensor, count: int, what: str) -> torch.Tensor:
    if t.size(0) == count:
        return t
    if t.size(0) == 1:
        return t.expand(count, *t.shape[1:])
    raise ValueError(f"{what} must hold 1 or {count} rows, got {t.size(0)}")


def latent_codes(latent_dim: int, count: int = 1, seed: int = 0) -> torch.Tensor:
    """``count`` standard-normal latent codes [count, latent_dim] drawn from ``seed`` (CPU)."""
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def style_codes(nets: Nets, domain, *, ref: torch.Tensor | None = None, z: torch.Tensor | None = None,
                seed: int | None = None, count: int | None = None) -> torch.Tensor:
    """Style codes [N, style_dim] of ``domain``: from reference images ``ref`` (the style encoder), from
    latent codes ``z`` (the mapping network), or from one latent code drawn from ``seed``. ``count`` repeats
    a single latent code that many times."""
    device = _device(nets)
    if sum(v is not None for v in (ref, z, seed)) != 1:
        raise ValueError("give exactly one of ref= (reference images), z= (latent codes) or seed=")
    if ref is not None:
        ref = _check_images(nets, ref, "ref").to(device)
        return nets.style_encoder(ref, _domains(domain, ref.size(0), nets.style_encoder.num_domains, device))
    if z is None:
        z = latent_codes(nets.mapping_network.latent_dim, 1, seed)
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.dim() == 1:
        z = z[None]
    if z.dim() != 2 or z.size(1) != nets.mapping_network.latent_dim:
        raise ValueError(f"z must be [N, {nets.mapping_network.latent_dim}], got {tuple(z.shape)}")
    if count is not None and torch.as_tensor(domain).numel() > 1:
        z = _broadcast(z, count, "z")  # one code, several domains
    s = nets.mapping_network(z.to(device), _domains(domain, z.size(0), nets.mapping_network.num_domains, device))
    return _broadcast(s, count, "z") if count is not None else s


def check_masks(nets: Nets) -> bool:
    """Whether ``nets`` translate with FAN face masks: True for a generator with the high-pass skip
    (``w_hpf > 0``) and a loaded FAN. Without the FAN that is a :class:`FANRequiredError` unless
    ``nets.without_masks`` was asked for; False for ``w_hpf == 0`` and for that explicit choice."""
    if nets.generator.w_hpf <= 0:
        return False
    if nets.fan is not None:
        return True
    if getattr(nets, "without_masks", False):
        return False
    raise FANRequiredError(fan_required_message("translate", nets.generator.w_hpf)
                           + "; on networks at hand set nets.without_masks = True")


def face_masks_for(nets: Nets, images: torch.Tensor):
    """The generator's ``masks`` for ``images``: FAN masks when the generator has the high-pass skip
    (``w_hpf > 0``), None for ``w_hpf == 0`` or ``nets.without_masks`` (see :func:`check_masks`)."""
    return compute_masks(nets.fan, images) if check_masks(nets) else None


@torch.no_grad()
def translate(nets: Nets, images: torch.Tensor, *, ref: torch.Tensor | None = None, domain=None,
              seed: int | None = None, z: torch.Tensor | None = None, style: torch.Tensor | None = None,
              batch_size: int | None = DEFAULT_CHUNK) -> torch.Tensor:
    """``images`` [B,3,H,W] (aligned faces in [-1, 1]) translated by the generator; returns [B,3,H,W] on
    ``images``' device.

    The style comes from exactly one of:
    - ``ref``: reference image(s) [1 or B,3,H,W] of domain ``domain`` (reference-guided);
    - ``seed``: one latent code drawn from the seed, shared by every image (latent-guided; the same seed
      gives the same look on every frame of a video);
    - ``z``: latent codes [1 or B, latent_dim] (latent-guided);
    - ``style``: style codes [1 or B, style_dim] (e.g. from :func:`style_codes`); ``domain`` is not needed.
    ``domain`` is one index or one per row. FAN masks are computed from ``images`` when the generator has the
    high-pass skip (``w_hpf > 0``). Work is done in chunks of ``batch_size`` images (None: all at once)."""
    images = _check_images(nets, images, "images")
    count, out_device = images.size(0), images.device
    if sum(v is not None for v in (ref, seed, z, style)) != 1:
        raise ValueError("translate needs exactly one of ref= (reference images), seed=, z= (latent codes) or "
                         "style= (style codes)")
    if style is None:
        if domain is None:
            raise ValueError("translate needs domain= (the target domain) unless style= is given")
        if ref is not None:
            ref = _check_images(nets, ref, "ref")
            style = style_codes(nets, domain, ref=_broadcast(ref, count, "ref") if ref.size(0) != 1 else ref)
        else:
            style = style_codes(nets, domain, z=z, seed=seed, count=count)
    style = _broadcast(torch.as_tensor(style), count, "style").to(_device(nets))
    chunk = batch_size or count
    outputs = []
    for start in range(0, count, chunk):
        x = images[start:start + chunk].to(_device(nets), torch.float32)
        s = style[start:start + chunk]
        outputs.append(nets.generator(x, s, masks=face_masks_for(nets, x)).to(out_device))
    return torch.cat(outputs)


# ---------------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------------

def _save(image, path):
    """Save ``image`` to ``path`` (when given) through a temporary name, never into an unmounted Drive."""
    if path is not None:
        path = ensure_parent(path)
        tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        try:
            image.save(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return image


def reference_grid(nets: Nets, sources: torch.Tensor, references: torch.Tensor, ref_domains, *,
                   path: str | os.PathLike | None = None, progress: bool = True, padding: int = 2):
    """The paper's reference-guided figure as a PIL image: ``(1 + S)`` rows × ``(1 + R)`` columns; the first
    row is a blank tile then the ``R`` references, each further row a source then that source in the style
    of every reference (of domain ``ref_domains[j]``). Saved to ``path`` when given."""
    sources = _check_images(nets, sources, "sources")
    references = _check_images(nets, references, "references")
    y = _domains(ref_domains, references.size(0), nets.style_encoder.num_domains, "cpu")
    columns = []
    for j in tqdm(range(references.size(0)), desc="reference-guided grid", unit="ref", disable=not progress):
        columns.append(translate(nets, sources, ref=references[j:j + 1], domain=int(y[j])).cpu())
    blank = torch.ones_like(sources[:1]).cpu()
    tiles = [blank, references.cpu()]
    for i in range(sources.size(0)):
        tiles += [sources[i:i + 1].cpu()] + [column[i:i + 1] for column in columns]
    return _save(viz.image_grid(tiles, nrow=references.size(0) + 1, padding=padding), path)


def latent_grid(nets: Nets, sources: torch.Tensor, *, per_domain: int = 2, seed: int = 0,
                domain_names: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                progress: bool = True, padding: int = 2):
    """Latent-guided samples as a PIL image: the first row holds the ``S`` sources, then for every domain
    ``per_domain`` rows, each the sources translated with one latent code (codes drawn from ``seed``, the
    same codes for every domain). Rows are labelled with ``domain_names`` when given."""
    sources = _check_images(nets, sources, "sources")
    num_domains = nets.mapping_network.num_domains
    names = list(domain_names) if domain_names is not None else [f"domain {d}" for d in range(num_domains)]
    if len(names) != num_domains:
        raise ValueError(f"domain_names has {len(names)} names for {num_domains} domains")
    z = latent_codes(nets.mapping_network.latent_dim, per_domain, seed)
    tiles, labels = [sources.cpu()], ["source"]
    jobs = [(d, k) for d in range(num_domains) for k in range(per_domain)]
    for d, k in tqdm(jobs, desc="latent-guided samples", unit="row", disable=not progress):
        tiles.append(translate(nets, sources, domain=d, z=z[k:k + 1]).cpu())
        labels.append(f"{names[d]} {k + 1}")
    return _save(viz.image_grid(tiles, nrow=sources.size(0), padding=padding, row_labels=labels), path)


def _ease(alpha: np.ndarray) -> np.ndarray:
    """Smoothstep: the style lingers near each reference and moves fastest between them."""
    return alpha * alpha * (3 - 2 * alpha)


@torch.no_grad()
def interpolation_frames(nets: Nets, sources: torch.Tensor, references: torch.Tensor, ref_domains, *,
                         steps: int = 20, loop: bool = True, progress: bool = True, padding: int = 2
                         ) -> list[np.ndarray]:
    """Frames (uint8 [H',W',3]) in which the style code moves from each reference to the next (and back to
    the first when ``loop``), ``steps`` frames per move. Each frame is one row: the two references
    cross-faded by the same amount, then every source in the interpolated style."""
    sources = _check_images(nets, sources, "sources")
    references = _check_images(nets, references, "references")
    if references.size(0) < 2:
        raise ValueError("style interpolation needs at least two references")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    styles = style_codes(nets, ref_domains, ref=references)
    count = references.size(0)
    pairs = [(k, (k + 1) % count) for k in range(count if loop else count - 1)]
    frames = []
    for a, b in tqdm(pairs, desc="style interpolation", unit="ref", disable=not progress):
        for alpha in _ease(np.arange(steps) / steps):
            style = torch.lerp(styles[a:a + 1], styles[b:b + 1], float(alpha))
            out = translate(nets, sources, style=style).cpu()
            shown = torch.lerp(references[a:a + 1], references[b:b + 1], float(alpha)).cpu()
            frames.append(np.asarray(viz.image_grid([shown, out], nrow=sources.size(0) + 1, padding=padding)))
    if not loop:
        out = translate(nets, sources, style=styles[-1:]).cpu()
        frames.append(np.asarray(viz.image_grid([references[-1:].cpu(), out], nrow=sources.size(0) + 1,
                                                padding=padding)))
    return frames


def style_interpolation_gif(nets: Nets, sources: torch.Tensor, references: torch.Tensor, ref_domains,
                            path: str | os.PathLike, *, steps: int = 20, fps: float = 20, loop: bool = True,
                            progress: bool = True) -> Path:
    """The ``ref_vid.gif`` of the official release: :func:`interpolation_frames` written as a looping GIF."""
    frames = interpolation_frames(nets, sources, references, ref_domains, steps=steps, loop=loop,
                                  progress=progress)
    return viz.make_gif(frames, path, fps=fps)


# ---------------------------------------------------------------------------------------------------------
# Loading networks for synthesis
# ---------------------------------------------------------------------------------------------------------

# colab_utils.hub files: the FAN an official face model needs, and the domain names of each release (the
# official code numbers domains in the sorted order of the training folders)
HUB_FAN = {"stargan_v2_celeba_hq": "stargan_v2_wing"}
HUB_DOMAINS = {"stargan_v2_celeba_hq": ("female", "male"), "stargan_v2_afhq": ("cat", "dog", "wild")}
_HUB_FORMATS = ("stargan_v2_nets_ema", "unknown")


def _hub_file(source, what: str, formats: Sequence[str]) -> Path:
    """``source`` as a local path: itself when it exists, else the :mod:`colab_utils.hub` file it names
    (downloaded once, cached), refused before any download when the registry says it is another format."""
    path = Path(source)
    if path.exists():
        return path
    from colab_utils import hub

    try:
        entry = hub.resolve(str(source))
    except ValueError:
        raise FileNotFoundError(f"{source} does not exist, and it is not a colab_utils.hub name "
                                f"({', '.join(sorted(hub.REGISTRY))})") from None
    if entry.format not in formats:
        from .formats import StarGANFormatError

        raise StarGANFormatError(f"{source} is a {entry.format} file ({entry.description}), not {what}")
    return Path(hub.download(str(source)))


def load_nets(path: str | os.PathLike, *, fan_path: str | os.PathLike | None = None, device="cpu",
              without_masks: bool = False) -> Nets:
    """Networks for synthesis from an official ``*_nets_ema.ckpt`` file, one of our training checkpoints
    (``ckpt-*.pt``: its EMA networks), a training run folder (its newest verified checkpoint), or a
    :mod:`colab_utils.hub` name (``stargan_v2_celeba_hq``, ``stargan_v2_afhq``: downloaded once, cached). With
    ``w_hpf > 0`` FAN weights come from ``fan_path`` (``wing.ckpt`` or the hub name ``stargan_v2_wing``), the
    file's ``fan`` entry, or for ``stargan_v2_celeba_hq`` the release's ``stargan_v2_wing``; without them it
    raises :class:`FANRequiredError` unless ``without_masks=True``. ``nets.domains`` holds the domain names
    where they are known (training checkpoints, the hub releases, the shipped demo), else it is empty."""
    from colab_utils.checkpoint import FORMAT
    from colab_utils.loading import read_source

    from .demo import DEMO_ASSET, DEMO_DOMAINS
    from .formats import load_official
    from .train import nets_from_checkpoint

    name = str(path)
    if fan_path is None and name in HUB_FAN and not Path(name).exists():
        fan_path = HUB_FAN[name]
    if fan_path is not None:
        fan_path = _hub_file(fan_path, "FAN weights (wing.ckpt)", ("stargan_v2_fan", "unknown"))
    path = _hub_file(path, "StarGAN v2 networks", _HUB_FORMATS)
    if path.is_dir():
        return nets_from_checkpoint(path, fan_path=fan_path, device=device, without_masks=without_masks)
    payload, _ = read_source(path, "StarGAN v2 checkpoint")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return nets_from_checkpoint(path, fan_path=fan_path, device=device, payload=payload,
                                    without_masks=without_masks)
    nets, _ = load_official(payload, device=device, fan_path=fan_path, without_masks=without_masks, source=path)
    domains = HUB_DOMAINS.get(name) or (DEMO_DOMAINS if path.name == DEMO_ASSET else ())
    nets.domains = list(domains) if len(domains) == nets.mapping_network.num_domains else []
    return nets


def domain_index(nets: Nets, domain: int | str) -> int:
    """The index of ``domain``: a name among ``nets.domains`` (e.g. ``"male"``) or an index (an int, or a
    string of digits); a ValueError that lists the choices otherwise."""
    count = nets.mapping_network.num_domains
    names = list(getattr(nets, "domains", None) or [])
    text = str(domain).strip()
    if isinstance(domain, bool):
        raise ValueError(f"a domain is a name or an index, not {domain!r}")
    if isinstance(domain, int) or text.isdigit():
        index = int(text)
        if not 0 <= index < count:
            raise ValueError(f"domain {index} is out of range: this model has {count} domains"
                             + (f" ({', '.join(f'{i} {n}' for i, n in enumerate(names))})" if names else
                                f", numbered 0..{count - 1}"))
        return index
    if text in names:
        return names.index(text)
    if names:
        raise ValueError(f"unknown domain {text!r}: this model's domains are "
                         f"{', '.join(f'{n} ({i})' for i, n in enumerate(names))}")
    raise ValueError(f"unknown domain {text!r}: this model's {count} domains have no names; give an index "
                     f"0..{count - 1}")
