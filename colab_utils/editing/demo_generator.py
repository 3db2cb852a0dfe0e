"""Train the demo editing generator: a StyleGAN2 that draws the synthetic renderer's faces, with one block of
style channels per face part.

Collins et al., "Editing in Style: Uncovering the Local Semantics of GANs" (CVPR 2020) find that the style
channels of a generator trained on FFHQ act on single parts (eyes, nose, mouth...), so that moving a part from
one face to another is a matter of copying those channels' styles. That is a property of wide layers (512
channels) trained for days. A generator small and quick enough to ship with the project and train in one CPU
session does not get it from adversarial training: ours, GAN-trained for 79 kimg with layers of 16-64 channels,
named every part but moved none of them (see ``tools/train_synthetic_stylegan.py``).

So the demo generator is taught the property directly, by supervision from the renderer that made its data
(:mod:`colab_utils.data.synthetic`), which can draw any face and any mix of two faces exactly:

1. **A latent code is a face.** ``z`` is normalised as the mapping network's pixel norm does, turned into
   numbers in [0, 1] through the normal CDF, and those drive the renderer's sampler
   (:func:`~colab_utils.data.synthetic.face_params_from_uniforms`): G(z) must draw that face (L1 loss).
2. **Part swaps.** In every style layer whose input is at least ``part_resolution`` pixels wide, the channels
   are split into blocks, one per part of :data:`~colab_utils.data.synthetic.PARTS` and one left global. With
   the styles of face A, except the block of part p taken from face B, G must draw A wearing B's part p
   (:func:`~colab_utils.data.synthetic.mix_face_params`). So each block carries its part and nothing else.
   The L1 loss weighs the pixels of the small parts (brows, eyes, nose, mouth) ``1 + part_weight`` times.
3. **Locality.** A block's activations (the feature maps its styles scale) are pushed to lie on its part: the
   share of their energy outside the part (one cell of slack, from the exact label map) is penalised.

The result is a plain StyleGAN2 in the rosinality layout, sampled from z ~ N(0, I) like any other. Nothing of
the block layout is stored or used by the editing code: the catalog, the automatic naming of clusters and the
queries of ``colab_utils.editing`` find the parts' channels on their own, exactly as they do on FFHQ.

Training uses the project's shared machinery: :class:`~colab_utils.checkpoint.CheckpointManager` (resumable,
bit-exact: each step's batch is a pure function of the seed and the step), :class:`~colab_utils.training.EMA`
and :class:`~colab_utils.training.ProgressLog`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colab_utils import runtime, viz
from colab_utils.checkpoint import CheckpointManager
from colab_utils.data.synthetic import PARTS, UNIFORMS_PER_FACE, face_params_from_uniforms, mix_face_params, \
    render_face
from colab_utils.stylegan2.model import Generator
from colab_utils.training import EMA, ProgressLog

from .catalog import style_layer_inputs
from .figures import FACIAL_PARTS

GLOBAL = -1   # the group of channels that belongs to no part


@dataclass
class DemoGeneratorConfig:
    """Settings of :func:`train_demo_generator` (the shipped asset's are the defaults)."""

    size: int = 64
    channels: dict = field(default_factory=lambda: {4: 64, 8: 64, 16: 64, 32: 64, 64: 32})
    style_dim: int = 128          # at least UNIFORMS_PER_FACE: the first 96 numbers of z draw the face
    n_mlp: int = 4
    part_resolution: int = 16     # style layers whose input is at least this wide get a block per part
    batch: int = 16
    swap_share: float = 0.5       # share of each batch drawn as part swaps (the rest: plain faces)
    lr: float = 0.01
    mapping_lr_mult: float = 100.0  # the mapping network's layers have lr_mul 0.01: this undoes it
    lr_ramp_down: float = 0.3     # over this last share of the steps the learning rate falls linearly to 5%
    betas: tuple = (0.9, 0.99)
    locality_weight: float = 0.2
    part_weight: float = 8.0      # extra L1 weight on the small facial parts' pixels (brows, eyes, nose, mouth)
    ema_beta: float = 0.998
    steps: int = 20_000
    seed: int = 0
    device: str = "cpu"
    workers: int = 1              # processes that render the training faces ahead of the step
    log_every: int = 20
    sample_every: int = 500
    checkpoint_minutes: float = 3.0
    keep_last: int = 2
    session_hours: float | None = None

    def check(self) -> "DemoGeneratorConfig":
        if self.style_dim < UNIFORMS_PER_FACE:
            raise ValueError(f"style_dim must be at least {UNIFORMS_PER_FACE} (the numbers that draw one face), "
                             f"got {self.style_dim}")
        if not 0.0 <= self.swap_share <= 1.0:
            raise ValueError(f"swap_share must be in [0, 1], got {self.swap_share}")
        if self.batch < 1 or self.steps < 1:
            raise ValueError(f"batch and steps must be positive, got {self.batch} and {self.steps}")
        return self

    def identity(self) -> dict:
        """The fields a checkpoint must agree with to continue (run length and pictures may change)."""
        free = {"steps", "workers", "log_every", "sample_every", "checkpoint_minutes", "keep_last", "session_hours",
                "device"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in free}


# ---------------------------------------------------------------------------------------------------------
# Latent codes <-> faces
# ---------------------------------------------------------------------------------------------------------

def latent_uniforms(z: np.ndarray) -> np.ndarray:
    """The numbers in [0, 1] that latent ``z`` [style_dim] hands the renderer: z normalised as the mapping
    network's pixel norm does (so G sees exactly the same input), then through the normal CDF."""
    z = np.asarray(z, np.float64)
    zn = z / math.sqrt(float(np.mean(z * z)) + 1e-8)
    return np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in zn[:UNIFORMS_PER_FACE]])


def latent_face(z: np.ndarray, size: int, *, swap: tuple[np.ndarray, str] | None = None):
    """``(image, labels)`` the renderer draws for latent ``z`` (uint8 [size, size, 3] and [size, size]); with
    ``swap=(z_b, part)`` the face of z wearing that part of z_b's face."""
    params = face_params_from_uniforms(latent_uniforms(z))
    if swap is not None:
        params = mix_face_params(params, face_params_from_uniforms(latent_uniforms(swap[0])), swap[1])
    return render_face(params, size)


# ---------------------------------------------------------------------------------------------------------
# Channel blocks and swapped styles
# ---------------------------------------------------------------------------------------------------------

def input_resolution(G: Generator, layer) -> int:
    """Width of the feature map a style layer's styles scale (an upsampling conv reads the half-size one)."""
    return layer.resolution // 2 if G.get_submodule(layer.name).conv.upsample else layer.resolution


def channel_groups(G: Generator, part_resolution: int = 16, parts=PARTS) -> list[torch.Tensor]:
    """Per style layer, the group of every channel: an index into ``parts`` or :data:`GLOBAL`. Layers whose
    input is narrower than ``part_resolution`` are all global; the others give each part an equal block and
    the global group the rest (and at least as many), block by block from channel 0."""
    groups = []
    for layer in G.style_layers:
        c = layer.in_channels
        g = torch.full((c,), GLOBAL, dtype=torch.long)
        if input_resolution(G, layer) >= part_resolution:
            width = c // (len(parts) + 1)
            if width < 1:
                raise ValueError(f"channel_groups: {layer.name} has {c} channels, too few for a block for each of "
                                 f"{len(parts)} parts and a global one")
            for i in range(len(parts)):
                g[i * width:(i + 1) * width] = i
        groups.append(g)
    return groups


def swap_styles(s_a: list[torch.Tensor], s_b: list[torch.Tensor], groups: list[torch.Tensor],
                part: torch.Tensor) -> list[torch.Tensor]:
    """Styles of A with, for each row i, the block of part ``part[i]`` taken from B (``part[i] < 0``: none)."""
    out = []
    for a, b, g in zip(s_a, s_b, groups):
        row_part = part.to(a.device)[:, None]
        take = (g.to(a.device)[None, :] == row_part) & (row_part >= 0)
        out.append(torch.where(take, b, a))
    return out


# ---------------------------------------------------------------------------------------------------------
# Data: one batch per step, a pure function of (seed, step)
# ---------------------------------------------------------------------------------------------------------

class PartSwapBatches(torch.utils.data.Dataset):
    """``batches[step]``: latents of faces A and B, the part swapped in each row (-1: none), and the
    renderer's image and label map of what G must draw."""

    def __init__(self, config: DemoGeneratorConfig):
        self.config = config

    def __len__(self) -> int:
        return self.config.steps + 1

    def __getitem__(self, step: int) -> dict:
        c = self.config
        rng = np.random.default_rng([c.seed, int(step)])
        z_a = rng.standard_normal((c.batch, c.style_dim)).astype(np.float32)
        z_b = rng.standard_normal((c.batch, c.style_dim)).astype(np.float32)
        swapped = rng.uniform(size=c.batch) < c.swap_share
        part = np.where(swapped, rng.integers(len(PARTS), size=c.batch), GLOBAL)
        images = np.empty((c.batch, c.size, c.size, 3), np.uint8)
        labels = np.empty((c.batch, c.size, c.size), np.uint8)
        for i in range(c.batch):
            swap = (z_b[i], PARTS[part[i]]) if part[i] >= 0 else None
            images[i], labels[i] = latent_face(z_a[i], c.size, swap=swap)
        return {"z_a": torch.from_numpy(z_a), "z_b": torch.from_numpy(z_b), "part": torch.from_numpy(part),
                "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                "labels": torch.from_numpy(labels)}


# ---------------------------------------------------------------------------------------------------------
# Losses and the step
# ---------------------------------------------------------------------------------------------------------

def locality_penalty(G: Generator, activations: dict, labels: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the part blocks of every style layer of the share of their activation energy that lies outside
    their part (the label map max-pooled to the layer's width, then grown by one cell)."""
    onehot = F.one_hot(labels.long(), len(PARTS)).permute(0, 3, 1, 2).float()
    shares = []
    for layer, x, g in zip(G.style_layers, style_layer_inputs(G, activations), groups):
        part_channels = g >= 0
        if not bool(part_channels.any()):
            continue
        region = F.max_pool2d(F.adaptive_max_pool2d(onehot, x.shape[-2:]), 3, stride=1, padding=1)
        allowed = region[:, g[part_channels].to(region.device)]
        energy = x[:, part_channels.to(x.device)].float() ** 2
        outside = (energy * (1.0 - allowed)).sum(dim=(2, 3))
        shares.append((outside / (energy.sum(dim=(2, 3)) + 1e-6)).mean())
    return torch.stack(shares).mean() if shares else labels.new_zeros((), dtype=torch.float32)


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor, part_weight: float) -> torch.Tensor:
    """Mean absolute error with the pixels of the facial parts (grown by one pixel) weighing ``1 + part_weight``:
    without it the eyes, brows, nose and mouth (6% of a face) are the last thing a decoder learns."""
    small = torch.zeros_like(labels, dtype=torch.bool)
    for part in FACIAL_PARTS:
        small |= labels == PARTS.index(part)
    small = F.max_pool2d(small[:, None].float(), 3, stride=1, padding=1)
    weight = 1.0 + part_weight * small
    return ((fake - real).abs().mean(dim=1, keepdim=True) * weight).sum() / weight.sum()


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def part_swap_losses(G: Generator, batch: dict, groups: list[torch.Tensor], config: DemoGeneratorConfig) -> dict:
    """``{"l1", "locality", "total"}`` of one batch (see the module docstring; "l1" weighs the small parts up)."""
    device = next(G.parameters()).device
    z_a, z_b = batch["z_a"].to(device), batch["z_b"].to(device)
    s_a = G.style_vectors(G.w_plus([z_a]))
    s_b = G.style_vectors(G.w_plus([z_b]))
    styles = swap_styles(s_a, s_b, groups, batch["part"])
    fake, acts = G.synthesis(styles, randomize_noise=False, return_activations=True)
    l1 = weighted_l1(fake, to_pixels(batch["images"].to(device)), batch["labels"].to(device), config.part_weight)
    locality = locality_penalty(G, acts, batch["labels"].to(device), groups)
    return {"l1": l1, "locality": locality, "total": l1 + config.locality_weight * locality}


def build_generator(config: DemoGeneratorConfig) -> Generator:
    """A fresh generator with its noise inputs switched off for good (a decoder has nothing to randomise)."""
    G = Generator(config.size, style_dim=config.style_dim, n_mlp=config.n_mlp, channels=dict(config.channels))
    for name, p in G.named_parameters():
        if name.endswith("noise.weight"):
            p.requires_grad_(False)
    return G


def learning_rate(config: DemoGeneratorConfig, step: int) -> float:
    """The base learning rate at ``step`` (1-based): constant, then a linear ramp down to 5% at the end."""
    ramp = config.lr_ramp_down * config.steps
    if ramp <= 0:
        return config.lr
    return config.lr * max(0.05, min(1.0, (config.steps - step) / ramp))


def make_optimizer(G: Generator, config: DemoGeneratorConfig) -> torch.optim.Adam:
    mapping = [p for n, p in G.named_parameters() if n.startswith("style.") and p.requires_grad]
    rest = [p for n, p in G.named_parameters() if not n.startswith("style.") and p.requires_grad]
    return torch.optim.Adam([{"params": rest, "lr": config.lr},
                             {"params": mapping, "lr": config.lr * config.mapping_lr_mult}],
                            betas=tuple(config.betas))


# ---------------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------------

@torch.no_grad()
def comparison_sheet(G: Generator, config: DemoGeneratorConfig, n: int = 8, seed: int = 1234):
    """A PIL grid: the renderer's faces, G's faces for the same latents, then for each of ``FACIAL_PARTS`` the
    renderer's swap and G's (the next face's part on each face)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, config.style_dim)).astype(np.float32)
    z_next = np.roll(z, 1, axis=0)
    groups = channel_groups(G, config.part_resolution)
    device = next(G.parameters()).device
    s = G.style_vectors(G.w_plus([torch.from_numpy(z).to(device)]))
    s_next = G.style_vectors(G.w_plus([torch.from_numpy(z_next).to(device)]))
    rows, labels = [], []
    truth = np.stack([latent_face(z[i], config.size)[0] for i in range(n)])
    rows += [torch.from_numpy(truth).permute(0, 3, 1, 2), G.synthesis(s).cpu()]
    labels += ["renderer", "G"]
    for part in FACIAL_PARTS:
        index = torch.full((n,), PARTS.index(part))
        truth = np.stack([latent_face(z[i], config.size, swap=(z_next[i], part))[0] for i in range(n)])
        rows += [torch.from_numpy(truth).permute(0, 3, 1, 2), G.synthesis(swap_styles(s, s_next, groups, index)).cpu()]
        labels += [f"+{part} (renderer)", f"+{part} (G)"]
    return viz.image_grid(rows, nrow=n, row_labels=labels)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------

@dataclass
class DemoGeneratorResult:
    g_ema: Generator
    step: int
    stopped: str | None
    history: dict
    sheet: Path | None


def train_demo_generator(config: DemoGeneratorConfig, run_dir: str | Path, *, progress: bool = True,
                         verbose: bool = True) -> DemoGeneratorResult:
    """Train (or continue, from the newest checkpoint in ``run_dir``) until ``config.steps`` or the session's
    end (``config.session_hours``, SIGTERM, Ctrl-C: a checkpoint is written first). Comparison sheets go to
    ``run_dir/samples``."""
    config.check()
    run_dir = Path(run_dir)
    runtime.seed_everything(config.seed)
    device = torch.device(config.device)
    G = build_generator(config).to(device)
    ema = EMA(G, config.ema_beta)
    optimizer = make_optimizer(G, config)
    groups = channel_groups(G, config.part_resolution)
    log = ProgressLog(config.steps, desc="demo generator", batch_size=config.batch, record_every=config.log_every,
                      disable=not progress)
    objects = {"G": G, "ema": ema, "optimizer": optimizer, "log": log}
    samples = run_dir / "samples"
    manager = CheckpointManager(run_dir, every_minutes=config.checkpoint_minutes, keep_last=config.keep_last,
                                session_hours=config.session_hours, config=config.identity(), verbose=verbose)
    stopped, sheet = None, None
    try:
        info = manager.restore(objects)
        start = info["step"] if info else 0
        step = start
        loader = torch.utils.data.DataLoader(PartSwapBatches(config), batch_size=None,
                                             sampler=range(start + 1, config.steps + 1),
                                             num_workers=config.workers,
                                             prefetch_factor=4 if config.workers else None)
        G.train()
        for step, batch in enumerate(loader, start=start + 1):
            for group, mult in zip(optimizer.param_groups, (1.0, config.mapping_lr_mult)):
                group["lr"] = learning_rate(config, step) * mult
            losses = part_swap_losses(G, batch, groups, config)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            ema.update(G)
            log.update(step, {k: v.detach() for k, v in losses.items()})
            if step % config.sample_every == 0:
                sheet = _save_sheet(ema.module, config, samples, step)
            if manager.step(step, objects):
                stopped = manager.stop_reason
                break
        if manager.last_saved_step != step:
            manager.save(step, objects)
    finally:
        manager.close()
        log.close()
    if sheet is None or not sheet.name.endswith(f"{step:09d}.png"):
        sheet = _save_sheet(ema.module, config, samples, step)
    return DemoGeneratorResult(ema.module.eval(), step, stopped, log.history, sheet)


def _save_sheet(G: Generator, config: DemoGeneratorConfig, folder: Path, step: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    image = viz.add_title(comparison_sheet(G, config), f"step {step} ({step * config.batch / 1000:.1f} kimg)")
    path = folder / f"step-{step:09d}.png"
    image.save(path)
    if time.time() - started > 30:
        print(f"demo generator: the sample sheet took {time.time() - started:.0f} s")
    return path
