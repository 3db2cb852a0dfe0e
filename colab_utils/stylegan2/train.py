"""Train StyleGAN2 on an image folder, a zip or synthetic faces, across interrupted sessions.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Appendix B: the
non-saturating logistic loss, lazy regularisation (R1 on real images every 16 steps, Mescheder et al. 2018;
path-length regularisation every 4 steps on half batches), style mixing with probability 0.9, an exponential
moving average of the generator, and Adam (beta1 0, beta2 0.99) whose learning rate and betas are corrected
for the lazy regularisation interval (Sec. B "Lazy regularization": lr * c, beta ** c with c = k / (k + 1)).
Optional adaptive augmentation (Karras et al. 2020, "Training GANs with limited data") for small datasets.

    from colab_utils.stylegan2.train import TrainConfig, train
    result = train(TrainConfig(size=256, batch=16, kimg=5000), "/content/drive/MyDrive/faces.zip", "runs/faces")

Run the same call again after a disconnect and it continues from the newest verified checkpoint in
``run_dir`` (or ``drive_dir``), bit-exactly on the CPU. Everything meant for Google Drive is written to local
disk first and copied by one :class:`colab_utils.drive.DriveWriter`: a full, stale, unmounted or hung Drive
never stops or hangs the run. Mixed precision, channels_last, fused Adam and torch.compile
(``compile="auto"``: :mod:`colab_utils.compile`) follow the device; ``plain_fp32(config)`` switches them all off
(the benchmark's baseline).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from colab_utils import distributed, runtime, viz
from colab_utils.checkpoint import FORMAT, CheckpointManager, ResumableSampler, infinite_batches
from colab_utils.compile import Compiler
from colab_utils.compile import check_setting as compile_setting
from colab_utils.data.images import ImageFolderDataset, list_images, prepare_dataset
from colab_utils.data.synthetic import make_faces
from colab_utils.drive import DriveWriter, is_drive_path
from colab_utils.loading import identify, read_source
from colab_utils.metrics import MetricHistory, due
from colab_utils.training import EMA, Precision, ProgressLog, make_adam, requires_grad

from .augment import AdaptiveAugment
from .evaluate import PeriodicMetrics, real_statistics_for
from .formats import LoadedStyleGAN, StyleGANFormatError, export_rosinality, load_rosinality
from .generate import generate, mean_w
from .model import Discriminator, Generator, check_size, default_channels, mixing_latents, stddev_group_note

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
CACHE_LIMIT_BYTES = 1 << 30   # decoded datasets up to this size stay in memory
MAX_GIF_FRAMES = 60


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything a run needs. Paper defaults (config-f at ``channel_multiplier=2``) unless noted."""

    # networks
    size: int = 256                       # image side, a power of two from 32 to 1024
    channel_multiplier: int = 2           # 2 = config-f, 1 = the smaller config-e table
    channels: int | dict | None = None    # an int caps every resolution's feature maps; a dict is the table
    style_dim: int = 512
    n_mlp: int = 8
    # optimisation
    batch: int = 16
    lr: float = 0.002
    r1_gamma: float = 10.0                # R1 weight (10 in the paper at 256-1024 px; 0: no R1)
    r1_every: int = 16
    pl_weight: float = 2.0                # 0: no path-length regularisation
    pl_every: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing: float = 0.9
    ema_kimg: float = 10.0                # half-life of the generator average, in thousands of images
    ema_rampup: float | None = 0.05       # half-life at most this fraction of the images seen (None: off)
    mirror: bool = True                   # random horizontal flips of the real images
    # adaptive augmentation
    augment: bool = True
    ada_target: float | None = 0.6        # None: a fixed probability ada_p
    ada_p: float = 0.0                    # starting (or fixed) augmentation probability
    ada_speed_kimg: float = 500.0         # images for p to go from 0 to 1
    ada_interval: int = 4
    # speed
    precision: str = "auto"               # auto | bf16 | fp16 | fp32
    channels_last: bool | None = None     # NHWC activations (None: on CUDA, where tensor cores want them)
    fast_optim: bool = True               # fused (CUDA) or foreach Adam; False: PyTorch's default Adam
    compile: str = "auto"                 # torch.compile G and D: auto (on CUDA) | on | off (colab_utils.compile)
    cudnn_benchmark: bool = True
    device: str = "auto"
    workers: int | None = None            # data loader processes (None: 2 on a GPU for image folders, else 0)
    # run length, pictures, checkpoints
    seed: int = 0
    steps: int | None = None              # training length in steps; else from kimg
    kimg: float = 1000.0
    sample_every: int = 500               # steps between sample grids
    n_samples: int = 32
    sample_seed: int = 0
    log_every: int = 10                   # steps between recorded losses
    checkpoint_every: int | None = None   # steps between checkpoints (None: by time only)
    checkpoint_minutes: float | None = 10.0
    keep_last: int = 3
    session_hours: float | None = None    # stop with a checkpoint before this many hours have passed
    drive_dir: str | None = None          # copy every checkpoint there (Google Drive)
    drive_wait_s: float = 60.0            # the end of a run (or a stop) waits at most this long for Drive copies
    synthetic_images: int = 2000          # how many faces data="synthetic" draws
    # quality metrics (colab_utils.metrics): FID / KID of the G average against every training image
    metrics_every_kimg: float | None = 50.0     # every this many kimg (None or 0: never; shorter runs: never)
    metrics_images: int = 10_000                # generated images of the periodic fid10k_full / kid10k_full
    metrics_final_images: int | None = 50_000   # fid50k_full once the run completes (None: skip it)
    metrics_kid: bool = True                    # KID beside every FID
    metrics_batch: int = 32                     # images per generation and feature batch

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.kimg * 1000 / self.batch))

    def channel_table(self) -> dict[int, int]:
        """Feature maps per resolution 4..size."""
        if isinstance(self.channels, Mapping):
            return {int(k): int(v) for k, v in self.channels.items()}
        table = default_channels(self.channel_multiplier)
        cap = self.channels if self.channels is not None else max(table.values())
        return {r: min(c, int(cap)) for r, c in table.items() if r <= self.size}

    def check(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; return self."""
        check_size(self.size)
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be an even number >= 2 (path-length steps use half batches), "
                             f"got {self.batch}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        compile_setting(self.compile)
        for name in ("r1_every", "pl_every", "pl_batch_shrink", "sample_every", "log_every", "n_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.mixing <= 1.0:
            raise ValueError(f"mixing must be in [0, 1], got {self.mixing}")
        if self.steps is not None and self.steps < 1 or self.steps is None and not self.kimg > 0:
            raise ValueError(f"give steps >= 1 or kimg > 0, got steps={self.steps}, kimg={self.kimg}")
        if isinstance(self.channels, int) and self.channels < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        if not self.drive_wait_s >= 0:
            raise ValueError(f"drive_wait_s must be >= 0 seconds, got {self.drive_wait_s}")
        for name in ("metrics_images", "metrics_final_images"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 2:
                raise ValueError(f"{name} must be >= 2 (a covariance needs two images), got {getattr(self, name)!r}")
        if int(self.metrics_batch) < 1:
            raise ValueError(f"metrics_batch must be >= 1, got {self.metrics_batch!r}")
        return self

    def identity(self) -> dict:
        """The fields a checkpoint must agree with to continue (run length, pictures and speed settings may
        change between sessions)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in _IDENTITY_FIELDS}


_IDENTITY_FIELDS = {"size", "channel_multiplier", "channels", "style_dim", "n_mlp", "batch", "lr", "r1_gamma",
                    "r1_every", "pl_weight", "pl_every", "pl_batch_shrink", "pl_decay", "mixing", "ema_kimg",
                    "ema_rampup", "mirror", "augment", "ada_target", "seed"}


def plain_fp32(config: TrainConfig) -> TrainConfig:
    """The same run in plain fp32 eager mode: no autocast, no channels_last, no fused/foreach Adam, no cuDNN
    autotuning, no torch.compile (the benchmark's baseline)."""
    return dataclasses.replace(config, precision="fp32", channels_last=False, fast_optim=False, cudnn_benchmark=False,
                               compile="off")


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------

class SyntheticFaces(torch.utils.data.Dataset):
    """``n`` procedural faces (:mod:`colab_utils.data.synthetic`, drawn with ``preset``) held in memory, as
    [3, size, size] in [-1, 1]."""

    def __init__(self, n: int, size: int, seed: int = 0, preset: str = "classic"):
        images, _ = make_faces(n, size, seed=seed, preset=preset)
        self.pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_unit_range(self.pixels[index])

    def uint8_item(self, index: int) -> torch.Tensor:
        """Item ``index`` as its uint8 pixels [3, size, size] (what the training loader moves)."""
        return self.pixels[index]


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [-1, 1], on their device."""
    return pixels.float() / 127.5 - 1.0


class LoaderItems(torch.utils.data.Dataset):
    """What the training loader reads from ``dataset``: its uint8 pixels where it can hand them (a
    ``uint8_item(index)`` method, as :class:`SyntheticFaces` has), else its float items. uint8 batches are a
    quarter of the bytes to pin and copy; :func:`real_batch` turns them into floats on the device."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset
        self.read = getattr(dataset, "uint8_item", dataset.__getitem__)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.read(index)


def training_images(data: Any, size: int, *, min_images: int, synthetic_images: int = 2000,
                    seed: int = 0) -> torch.utils.data.Dataset:
    """The dataset for ``data``: ``"synthetic"``, an image folder (searched recursively), a ``.zip`` of one
    (copied to local disk and unpacked first), or a ready Dataset of [3, size, size] tensors. Unreadable
    files are skipped and named in one warning; fewer usable images than ``min_images`` raise ValueError."""
    if isinstance(data, torch.utils.data.Dataset):
        if len(data) < min_images:
            raise ValueError(f"the dataset has {len(data)} images, need at least {min_images} (one batch)")
        return data
    if isinstance(data, str) and data == "synthetic":
        return SyntheticFaces(max(synthetic_images, min_images), size, seed=seed)
    folder = prepare_dataset(data)
    cache = _fits_in_memory(len(list_images(folder)), size)
    return ImageFolderDataset(folder, size, min_images=min_images, cache=cache, min_reason=f"one batch of {min_images}")


def _fits_in_memory(count: int, size: int) -> bool:
    """Whether ``count`` decoded images stay in memory (no loader processes needed then)."""
    return count * 3 * size * size <= CACHE_LIMIT_BYTES


def _flip(images: torch.Tensor, dist: distributed.Dist = distributed.Dist()) -> torch.Tensor:
    """Mirror a random half of the batch (global torch RNG: saved and restored with every checkpoint). With
    several ranks the coins are tossed for the global batch and each rank keeps its rows."""
    flip = distributed.rank_share(torch.rand(images.shape[0] * dist.world_size), dist) < 0.5
    flip = flip.to(images.device, non_blocking=True)   # a blocking copy would wait for the device's queue
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


# ---------------------------------------------------------------------------------------------------------
# Losses (StyleGAN2 App. B)
# ---------------------------------------------------------------------------------------------------------

def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits.float()).mean()


def _input_gradient(output: torch.Tensor, inputs: torch.Tensor, precision: Precision) -> torch.Tensor:
    """d output / d inputs with a graph for the penalty's own backward. Under fp16 the output is scaled
    first (so small gradients survive) and the gradient unscaled; an overflow gives inf, which the grad
    scaler then skips, as for any other step."""
    if precision.scaler is None:
        return torch.autograd.grad(output, inputs, create_graph=True)[0]
    scale = precision.loss_scale()  # a device tensor: no host sync
    return torch.autograd.grad(output * scale, inputs, create_graph=True)[0] / scale


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, precision: Precision) -> torch.Tensor:
    """E ||d D(x) / d x||^2 over real images (Mescheder et al. 2018, Eq. 9)."""
    grad = _input_gradient(real_logits.float().sum(), real, precision)
    return grad.float().square().reshape(grad.shape[0], -1).sum(1).mean()


class PathLengthPenalty:
    """(||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(pixels) and a the running mean of the lengths
    (StyleGAN2 Sec. 3.2, Eq. 4)."""

    def __init__(self, decay: float = 0.01, device="cpu"):
        self.decay = decay
        self.mean = torch.zeros((), dtype=torch.float32, device=device)

    def __call__(self, fake: torch.Tensor, latents: torch.Tensor, precision: Precision,
                 dist: distributed.Dist = distributed.Dist()) -> torch.Tensor:
        """With several ranks ``fake`` is this rank's share: the projection noise is drawn for the global batch
        (each rank keeps its rows) and the running mean moves by the mean over all ranks' lengths."""
        shape = (fake.shape[0] * dist.world_size,) + tuple(fake.shape[1:])
        noise = distributed.rank_share(torch.randn(shape, dtype=torch.float32, device=fake.device), dist)
        noise = noise / math.sqrt(fake.shape[2] * fake.shape[3])
        grad = _input_gradient((fake.float() * noise).sum(), latents, precision)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        batch_mean = lengths.mean().detach()
        if dist.enabled:
            torch.distributed.all_reduce(batch_mean)
            batch_mean = batch_mean / dist.world_size
        # An fp16 overflow (inf/nan, a step the grad scaler skips) must not poison the running mean.
        self.mean = torch.where(batch_mean.isfinite(), self.mean.lerp(batch_mean, self.decay), self.mean)
        return (lengths - self.mean).square().mean()

    def state_dict(self) -> dict:
        return {"mean": self.mean.detach().cpu()}

    def load_state_dict(self, state: Mapping) -> None:
        self.mean = state["mean"].to(self.mean.device)


def ema_beta(config: TrainConfig, images_seen: int) -> float:
    """Per-step decay of the generator average for a half-life of ``ema_kimg`` (ramped up early on)."""
    half_life = config.ema_kimg * 1000.0
    if config.ema_rampup is not None:
        half_life = min(half_life, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch / max(half_life, 1e-8))


# ---------------------------------------------------------------------------------------------------------
# The run's state
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Nets:
    """Networks, their optimizers and the per-run helpers that checkpoints save."""

    G: Generator
    D: Discriminator
    ema: EMA
    g_optim: torch.optim.Optimizer
    d_optim: torch.optim.Optimizer
    precision: Precision
    augment: AdaptiveAugment | None
    pl: PathLengthPenalty
    device: torch.device
    channels_last: bool
    dist: distributed.Dist = field(default_factory=distributed.Dist)
    G_train: torch.nn.Module | None = None   # the DDP wrappers the trained passes go through (see wrap())
    D_train: torch.nn.Module | None = None
    compiler: Compiler = field(default_factory=lambda: Compiler(False))   # torch.compile of the main passes

    def wrap(self, dist: distributed.Dist) -> None:
        """Train through DistributedDataParallel wrappers of G and D (after a restore: DDP broadcasts rank 0's
        weights); the plain modules stay for the EMA, samples, checkpoints and the untrained side of a pass."""
        self.dist = dist
        self.G_train, self.D_train = distributed.wrap(self.G, dist), distributed.wrap(self.D, dist)

    @property
    def compiled(self) -> bool:
        return self.compiler.enabled

    def fast(self, module: torch.nn.Module):
        """The compiled callable of ``module`` (G, D or their DDP wrappers) for the main D and G passes, made
        once; ``module`` itself when compile is off. The lazy regularisers call the modules directly (see
        :mod:`colab_utils.compile`)."""
        return self.compiler.cached(module)

    def objects(self) -> dict:
        objects = {"g": self.G, "d": self.D, "g_ema": self.ema, "g_optim": self.g_optim, "d_optim": self.d_optim,
                   "precision": self.precision, "pl": self.pl}
        if self.augment is not None:
            objects["augment"] = self.augment
        return objects

    def aug(self, images: torch.Tensor) -> torch.Tensor:
        """Adaptive augmentation; with several ranks the rows are placed in a global-batch tensor (rank ``r``
        at rows r, r + W, ...) so every rank draws the one-process parameters, and each keeps its rows."""
        if self.augment is None:
            return images
        dist = self.dist
        if not dist.enabled or self.augment.p <= 0.0:
            return self.augment(images)
        b = images.shape[0]
        rows = torch.arange(dist.rank, b * dist.world_size, dist.world_size, device=images.device)
        full = images.new_zeros((b * dist.world_size,) + tuple(images.shape[1:])).index_copy(0, rows, images)
        return distributed.rank_share(self.augment(full), dist)

    def update_augment(self, real_logits: torch.Tensor) -> None:
        """ADA's p moves by the sign of D(real) over the global batch (the same p on every rank)."""
        if self.augment is None:
            return
        if self.dist.enabled:
            parts = [torch.empty_like(real_logits) for _ in range(self.dist.world_size)]
            torch.distributed.all_gather(parts, real_logits.detach().contiguous())
            real_logits = torch.cat(parts)
        self.augment.update(real_logits)

    def apply_adam_settings(self, config: "TrainConfig") -> None:
        for optim, network in ((self.g_optim, "g"), (self.d_optim, "d")):
            lr, betas = adam_settings(config, network)
            for group in optim.param_groups:
                group["lr"], group["betas"] = lr, betas


def resolve_device(config: TrainConfig) -> torch.device:
    return runtime.default_device() if config.device == "auto" else torch.device(config.device)


def adam_settings(config: TrainConfig, network: str) -> tuple[float, tuple[float, float]]:
    """Learning rate and betas of G's (``"g"``) or D's (``"d"``) Adam, corrected for the lazy regulariser
    that takes an extra step every k steps: lr * c and beta ** c with c = k / (k + 1) (App. B)."""
    every = config.pl_every if network == "g" and config.pl_weight else \
        config.r1_every if network == "d" and config.r1_gamma else None
    ratio = every / (every + 1) if every else 1.0
    return config.lr * ratio, (0.0, 0.99 ** ratio)


def build_nets(config: TrainConfig, device: torch.device | str | None = None) -> Nets:
    """G, D, the G average and two Adams with the lazy-regularisation correction, on ``device``."""
    config.check()
    device = torch.device(device) if device is not None else resolve_device(config)
    table = config.channel_table()
    G = Generator(config.size, config.style_dim, config.n_mlp, channel_multiplier=None, channels=table).to(device)
    D = Discriminator(config.size, channel_multiplier=None, channels=table).to(device)
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    if channels_last:
        G.use_channels_last(True)
        D.to(memory_format=torch.channels_last)
    ema = EMA(G, beta=0.999)
    g_optim = make_adam(G.parameters(), *adam_settings(config, "g"), device=device, fast=config.fast_optim)
    d_optim = make_adam(D.parameters(), *adam_settings(config, "d"), device=device, fast=config.fast_optim)
    augment = (AdaptiveAugment(config.ada_p, config.ada_target, speed_kimg=config.ada_speed_kimg,
                               interval=config.ada_interval, seed=config.seed) if config.augment else None)
    return Nets(G, D, ema, g_optim, d_optim, Precision(device, config.precision), augment,
                PathLengthPenalty(config.pl_decay, device), device, channels_last,
                compiler=Compiler.for_setting(config.compile, device))


# ---------------------------------------------------------------------------------------------------------
# The four phases of a step
# ---------------------------------------------------------------------------------------------------------

def _latents(nets: Nets, config: TrainConfig, batch: int) -> dict:
    """G's keyword arguments for ``batch`` images (the global batch). With several ranks every rank draws the
    global batch's latents, mixing point and per-layer noise and keeps its rows; one process draws the noise
    inside G, as before."""
    z = mixing_latents(batch, nets.G.style_dim, config.mixing, nets.G.n_latent, device=nets.device)
    styles, inject = z.styles, z.inject_index
    if nets.compiled:  # one compiled graph whether or not this batch mixes: the crossover layer as a tensor, and
        # no mixing as mixing z with a copy of itself after the last layer (the same W+; a copy, because the
        # compiler specialises on two arguments being one tensor)
        if inject is None:
            styles, inject = [styles[0], styles[0].clone()], nets.G.n_latent
        inject = torch.tensor(inject).to(nets.device, non_blocking=True)
    if not nets.dist.enabled:
        return {"styles": styles, "inject_index": inject}
    share = lambda t: distributed.rank_share(t, nets.dist)  # noqa: E731
    noise = [share(n) for n in nets.G.make_noise(batch)]
    return {"styles": [share(s) for s in styles], "inject_index": inject, "noise": noise}


def discriminator_step(nets: Nets, config: TrainConfig, real: torch.Tensor) -> dict:
    requires_grad(nets.G, False)
    requires_grad(nets.D, True)
    z = _latents(nets, config, real.shape[0] * nets.dist.world_size)
    D = nets.fast(nets.D_train or nets.D)
    with nets.precision.autocast():
        with torch.no_grad():  # nothing of G is trained here; and torch 2.11's compiler tells this pass from the G
            fake, _ = nets.fast(nets.G)(**z)  # step by the grad mode only (it misses G's requires_grad switch)
        fake_logits = D(nets.aug(fake))
        real_logits = D(nets.aug(real))
        loss = d_logistic_loss(real_logits, fake_logits)
    nets.precision.backward_step(loss, nets.d_optim)
    nets.update_augment(real_logits)
    return {"d": loss.detach(), "real": real_logits.detach().float().mean(),
            "fake": fake_logits.detach().float().mean()}


def r1_step(nets: Nets, config: TrainConfig, real: torch.Tensor) -> torch.Tensor:
    """Eager even with compile on: the penalty's double backward cannot be compiled (colab_utils.compile)."""
    real = real.detach().requires_grad_(True)
    with nets.precision.autocast():
        real_logits = (nets.D_train or nets.D)(nets.aug(real))
        penalty = r1_penalty(real_logits, real, nets.precision)
        loss = config.r1_gamma / 2 * penalty * config.r1_every
        if nets.dist.enabled:  # D's last bias has no input gradient: a zero term so DDP sees every parameter used
            loss = loss + 0 * real_logits.float().sum()
    nets.precision.backward_step(loss, nets.d_optim)
    return penalty.detach()


def generator_step(nets: Nets, config: TrainConfig) -> torch.Tensor:
    requires_grad(nets.G, True)
    requires_grad(nets.D, False)
    z = _latents(nets, config, config.batch)
    with nets.precision.autocast():
        fake, _ = nets.fast(nets.G_train or nets.G)(**z)
        loss = g_nonsaturating_loss(nets.fast(nets.D)(nets.aug(fake)))
    nets.precision.backward_step(loss, nets.g_optim)
    return loss.detach()


def path_length_step(nets: Nets, config: TrainConfig) -> torch.Tensor:
    """Eager even with compile on, like :func:`r1_step` (a double backward, and a half batch)."""
    z = _latents(nets, config, max(1, config.batch // config.pl_batch_shrink))
    with nets.precision.autocast():
        fake, latents = (nets.G_train or nets.G)(**z, return_latents=True)
        penalty = nets.pl(fake, latents, nets.precision, nets.dist)
        loss = config.pl_weight * config.pl_every * penalty
        if nets.dist.enabled:  # the same for G's parameters the Jacobian does not depend on
            loss = loss + 0 * fake.float().sum()
    nets.precision.backward_step(loss, nets.g_optim)
    return penalty.detach()


def real_batch(batch: torch.Tensor, nets: Nets, config: TrainConfig) -> torch.Tensor:
    """A loader batch as D's input: copied to the device without waiting (from pinned memory on CUDA: the
    loader pins), uint8 pixels (:class:`LoaderItems`) turned into [-1, 1] floats there, randomly mirrored
    there, in the networks' memory format. The mirror's coins come from the global CPU generator, so a
    resumed run flips the same images."""
    batch = batch.to(nets.device, non_blocking=True)
    if batch.dtype == torch.uint8:
        batch = to_unit_range(batch)
    if config.mirror:
        batch = _flip(batch, nets.dist)
    return batch.contiguous(memory_format=torch.channels_last) if nets.channels_last else batch


def training_step(nets: Nets, config: TrainConfig, real: torch.Tensor, step: int) -> dict:
    """One iteration: D, R1 (every ``r1_every`` steps), G, path length (every ``pl_every``), G average.
    Returns the losses as tensors (no device sync)."""
    losses = discriminator_step(nets, config, real)
    if config.r1_gamma and step % config.r1_every == 0:
        losses["r1"] = r1_step(nets, config, real)
    losses["g"] = generator_step(nets, config)
    if config.pl_weight and step % config.pl_every == 0:
        losses["pl"] = path_length_step(nets, config)
    nets.ema.update(nets.G, ema_beta(config, step * config.batch))
    return losses


# ---------------------------------------------------------------------------------------------------------
# Pictures of the run
# ---------------------------------------------------------------------------------------------------------

class SampleSheets:
    """Fixed-seed sample grids of the G average (``samples/step-000001000.png``), the progress GIF made from
    them and the loss curves, written in ``folder`` (local disk) and, with a ``drive`` folder, copied there in
    the background by ``writer``. A picture that cannot be written is warned about and never stops training."""

    def __init__(self, folder: Path, n: int, seed: int, writer: DriveWriter | None = None,
                 drive: Path | None = None, batch: int | None = None):
        self.folder, self.n, self.seed, self.batch = Path(folder), n, seed, batch   # batch: kimg in the titles
        self.grids = self.folder / "samples"
        self.gif = self.folder / "progress.gif"
        self.curves = self.folder / "loss_curves.png"
        self.last_step: int | None = None
        self.writer = writer if writer is not None else DriveWriter(verbose=False)
        self.drive = Path(drive) if drive is not None else None

    def _on_drive(self, local: Path) -> Path | None:
        return self.drive / local.relative_to(self.folder) if self.drive is not None else None

    def grid(self, step: int, G: Generator) -> Path | None:
        images = generate(G, self.n, seed=self.seed)
        path = self.grids / f"step-{step:09d}.png"
        title = f"step {step:,}" + (f" ({step * self.batch / 1000:.1f} kimg)" if self.batch else "")
        return self.writer.save(path, lambda p: viz.save_grid(images, p, nrow=min(8, self.n), title=title),
                                self._on_drive(path))

    def progress_gif(self) -> Path | None:
        paths = sorted(self.grids.glob("step-*.png"))
        if len(paths) > MAX_GIF_FRAMES:
            keep = np.linspace(0, len(paths) - 1, MAX_GIF_FRAMES).round().astype(int)
            paths = [paths[i] for i in sorted(set(keep))]

        def make(path: Path):
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
            if not frames or len({f.shape for f in frames}) > 1:
                return False
            viz.make_gif(frames, path, fps=4, max_side=768)

        return self.writer.save(self.gif, make, self._on_drive(self.gif))

    def loss_curves(self, history: Mapping) -> Path | None:
        if not any(history.values()):
            return None
        return self.writer.save(self.curves, lambda p: viz.plot_curves(history, p, title="StyleGAN2 training"),
                                self._on_drive(self.curves), kind="log")

    def fetch_earlier(self) -> int:
        """On a resumed run whose local disk was wiped (a new session): copy the earlier grids back from Drive
        (a bounded read), so the progress GIF still covers the whole run. Returns how many came back."""
        if self.drive is None:
            return 0

        def fetch(tick) -> int:
            count = 0
            for source in sorted((self.drive / "samples").glob("step-*.png")):
                local = self.grids / source.name
                if not local.exists():
                    self.grids.mkdir(parents=True, exist_ok=True)
                    partial = local.with_name(f".{local.name}.fetching")
                    shutil.copyfile(source, partial)
                    os.replace(partial, local)
                    count += 1
                tick()
            return count

        ok, count = self.writer.call(fetch, self.drive, "fetching earlier sample grids from")
        return count if ok else 0

    def update(self, step: int, G: Generator, history: Mapping) -> tuple[Path, Path | None, Path | None]:
        """The grid of ``step``, then the GIF and the loss curves brought up to date."""
        self.last_step = step
        return self.grid(step, G), self.progress_gif(), self.loss_curves(history)


# ---------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train` returns. ``stopped`` is why the run stopped before ``total`` (None when complete)."""

    g_ema: Generator
    G: Generator
    D: Discriminator
    step: int
    total: int
    stopped: str | None
    history: dict
    augment_p: float | None
    run_dir: Path
    out_dir: Path
    grid: Path | None = None
    gif: Path | None = None
    curves: Path | None = None
    export: Path | None = None
    checkpoint: Path | None = None
    extra: dict = field(default_factory=dict)
    drive_report: list = field(default_factory=list)  # what did not reach Drive, with the command to copy it
    drive_status: str | None = None                   # "last checkpoint on Drive: step N, M minutes ago"
    metrics: MetricHistory | None = None              # FID / KID by kimg, across every session of the run
    fid_curve: Path | None = None                     # the plot of it, resumes marked


def train(config: TrainConfig, data: Any = "synthetic", run_dir: str | os.PathLike = "runs/stylegan2", *,
          out_dir: str | os.PathLike | None = None, progress: bool = True, verbose: bool = True,
          extractor=None, stats_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train (or continue training) StyleGAN2 on ``data``; see :func:`training_images` for what it takes.

    Checkpoints go to ``run_dir`` (copied to ``config.drive_dir`` when set); the run resumes by itself from
    the newest verified one. Sample grids, the progress GIF, loss curves and, once the run is complete, the
    G average in rosinality format (``stylegan2-<size>px.pt``) go to ``out_dir`` (default: ``drive_dir``,
    else ``run_dir``); when that is on Drive they are written to ``run_dir`` and copied there. SIGTERM, Ctrl-C /
    the notebook's stop button and ``session_hours`` stop the run with a checkpoint.

    Drive faults (full, stale, unmounted, hung) are warned about once per kind and retried, never raised; the
    end of the run (or a stop) waits at most ``config.drive_wait_s`` for Drive, then ``result.drive_report``
    says what is only on local disk and how to copy it.

    Quality metrics (:mod:`colab_utils.stylegan2.evaluate`): every ``config.metrics_every_kimg`` the G
    average's ``fid10k_full`` / ``kid10k_full`` are measured (and ``fid50k_full`` when the run completes),
    recorded in ``result.metrics`` and in every checkpoint (so the history survives resumes and the schedule,
    a function of the step, is the same as in an uninterrupted run), plotted in ``fid_curve.png`` and the best
    G kept as ``best-fid.pt`` in ``out_dir``, outside checkpoint retention. ``extractor``: the feature network
    (default: the Inception-v3 through :mod:`colab_utils.hub`); ``stats_dir``: where the real images'
    statistics are cached (default: beside the zip or inside the image folder of ``data``).

    Under ``torchrun --nproc_per_node=N`` the run trains with DistributedDataParallel: ``config.batch`` is the
    global batch, every rank draws the global batch's latents, noise, flips and augmentation and keeps its rows
    (:func:`colab_utils.distributed.rank_share`), rank 0 alone writes checkpoints, samples and the export, and
    checkpoints move between process counts. D's minibatch-stddev groups are formed within each rank's share;
    a share the official code could not split into groups of 4 (say 6 images) uses smaller groups, and the log
    says so (:func:`colab_utils.stylegan2.model.stddev_group_note`)."""
    config.check()
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    dist = distributed.init(None if config.device == "auto" else config.device)
    per_rank = distributed.per_rank_batch(config.batch, dist)
    distributed.per_rank_batch(max(1, config.batch // config.pl_batch_shrink), dist)  # the path-length batch
    progress, verbose = progress and dist.is_main, verbose and dist.is_main
    stddev_note = stddev_group_note(per_rank, Discriminator.stddev_group)
    if stddev_note and verbose:
        print(f"StyleGAN2: {stddev_note}")
    device = resolve_device(config)
    if dist.enabled:
        device = dist.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    dataset = training_images(data, config.size, min_images=config.batch,
                              synthetic_images=config.synthetic_images, seed=config.seed)
    runtime.seed_everything(config.seed)
    nets = build_nets(config, device)
    sampler = ResumableSampler(len(dataset), seed=config.seed)  # the one-process order; each rank takes its rows
    total = config.total_steps
    log = ProgressLog(total, desc="StyleGAN2", batch_size=config.batch, record_every=config.log_every,
                      disable=not progress,
                      reduce=(lambda losses: distributed.mean_over_ranks(losses, dist)) if dist.enabled else None)
    objects = {**nets.objects(), "sampler": sampler, "log": log}
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(config.drive_dir or run_dir)
    to_drive = is_drive_path(out, config.drive_dir) and os.path.abspath(out) != os.path.abspath(run_dir)
    writer = DriveWriter.bounded(config.drive_wait_s, verbose=verbose) if dist.is_main else None
    sheets = SampleSheets(run_dir if to_drive else out, config.n_samples, config.sample_seed, writer=writer,
                          drive=out if to_drive else None, batch=config.batch)
    from_disk = isinstance(dataset, ImageFolderDataset) and not _fits_in_memory(len(dataset), config.size)
    workers = config.workers if config.workers is not None else (2 if device.type == "cuda" and from_disk else 0)

    manager = CheckpointManager(run_dir, every_steps=config.checkpoint_every, every_minutes=config.checkpoint_minutes,
                                keep_last=config.keep_last, session_hours=config.session_hours,
                                drive_dir=config.drive_dir, config=config.identity(), verbose=verbose,
                                drive_writer=writer, copy_wait_s=config.drive_wait_s)
    with distributed.Checkpoints(manager, dist) as ckpt:
        info = ckpt.restore(objects)
        start = info["step"] if info else 0
        nets.apply_adam_settings(config)  # a learning rate changed between sessions applies on resume
        if dist.enabled:
            nets.wrap(dist)
        if start == 0 and dist.is_main:
            sheets.grid(0, nets.ema.module)
        elif dist.is_main:
            sheets.fetch_earlier()
        batches = infinite_batches(LoaderItems(dataset), sampler, per_rank, workers,
                                   pin_memory=device.type == "cuda", share=(dist.rank, dist.world_size))
        stopped, step = None, start
        latest = dict(info["extra"].get("latest", {})) if info else {}  # newest value of every loss, lazy ones too
        history = MetricHistory.from_state(info["extra"].get("metrics") if info else None)
        if 0 < start < total:
            history.mark_resume(start * config.batch / 1000)
        periodic = None
        if dist.is_main and start < total and _metrics_wanted(config, total):
            def publish(local, make, kind):
                return writer.save(local, make, out / local.name if to_drive else None, kind=kind)

            periodic = _periodic_metrics(config, data, dataset, extractor, stats_dir, nets, history, sheets.folder,
                                         publish, workers, progress, verbose)
        extra = lambda: {"latest": latest, "metrics": history.state()}  # noqa: E731 (evaluated only when saving)
        for step in range(start + 1, total + 1):
            real = real_batch(next(batches), nets, config)
            with nets.compiler.timed():
                losses = training_step(nets, config, real, step)
            if nets.augment is not None:
                losses["p"] = nets.augment.p
            latest.update(losses)
            log.update(step, losses)  # summed on the device, read every log_every steps
            report = nets.compiler.report() if verbose and nets.compiled else None
            if report:
                log.write(f"StyleGAN2: {report}")
            if step % config.sample_every == 0 and dist.is_main:
                sheets.update(step, nets.ema.module, log.history)
            if periodic is not None:
                _score(periodic, config, nets, step, total)
            if ckpt.step(step, objects, extra=extra):
                stopped = ckpt.stop_reason
                break
        if ckpt.last_saved_step != step:
            ckpt.save(step, objects, extra=extra)
        log.close()
        export = None
        if dist.is_main:  # before the manager closes: its bounded wait for Drive covers these copies too
            if sheets.last_step != step:
                sheets.update(step, nets.ema.module, log.history)
            if step >= total:
                local = sheets.folder / f"stylegan2-{config.size}px.pt"
                export = writer.save(local, lambda p: export_rosinality(p, nets.ema.module, g=nets.G, d=nets.D,
                                                                        latent_avg=mean_w(nets.ema.module)),
                                     out / local.name if to_drive else None, kind="export")

    if not had_group:
        distributed.shutdown(dist)
    result = TrainResult(nets.ema.module, nets.G, nets.D, step, total, stopped, log.history,
                         nets.augment.p if nets.augment is not None else None, run_dir, out,
                         checkpoint=manager.last_checkpoint if dist.is_main else None)
    if not dist.is_main:
        return result
    result.grid = sheets.grids / f"step-{step:09d}.png"
    result.gif = sheets.gif if sheets.gif.is_file() else None
    result.curves = sheets.curves if sheets.curves.is_file() else None
    result.export = export
    result.metrics = history
    curve = sheets.folder / "fid_curve.png"  # local disk: never look at Drive from here (a hung Drive would block)
    result.fid_curve = curve if curve.is_file() else None
    result.drive_report, result.drive_status = manager.drive_report, manager.drive_status()
    if verbose:
        state = f"stopped at step {step} of {total} ({stopped})" if stopped else f"finished {step} steps"
        print(f"StyleGAN2: {state}; samples in {sheets.grids}")
    return result


def _metrics_wanted(config: TrainConfig, total: int) -> bool:
    """Whether the run lasts long enough for at least one periodic evaluation."""
    every = config.metrics_every_kimg
    return bool(every) and every > 0 and total * config.batch / 1000 >= every


def _periodic_metrics(config: TrainConfig, data, dataset, extractor, stats_dir, nets: Nets, history: MetricHistory,
                      folder: Path, publish, workers: int, progress: bool, verbose: bool) -> PeriodicMetrics:
    """The feature extractor (Inception through the hub unless one is given) and the real images' statistics
    (cached), prepared before training so a missing download fails at once, not hours in."""
    if extractor is None:
        from colab_utils.metrics import WeightsUnavailableError, inception

        try:
            extractor = inception(nets.device, progress=progress)
        except WeightsUnavailableError as exc:
            raise WeightsUnavailableError(f"{exc}\nOr train without quality metrics: metrics_every_kimg=0 "
                                          "(CLI: --metrics-every-kimg 0).") from exc
    real = real_statistics_for(dataset, extractor, data=data, stats_dir=stats_dir, batch_size=config.metrics_batch,
                               workers=workers, progress=progress, verbose=verbose)
    return PeriodicMetrics(history, folder, real=real, extractor=extractor, n=config.metrics_images,
                           final_n=config.metrics_final_images, kid=config.metrics_kid,
                           batch_size=config.metrics_batch, seed=config.seed, autocast=nets.precision.autocast,
                           publish=publish, verbose=verbose)


def _score(periodic: PeriodicMetrics, config: TrainConfig, nets: Nets, step: int, total: int) -> None:
    """The evaluations that fall in ``step``: the periodic one (with a best-FID snapshot) and, at the last
    step, the final one."""
    kimg = step * config.batch / 1000
    if due(step, config.batch, config.metrics_every_kimg):
        G = nets.ema.module
        periodic.run(step, kimg, G, snapshot=lambda path: export_rosinality(path, G, g=nets.G, d=nets.D,
                                                                            latent_avg=mean_w(G)))
    if step == total and config.metrics_final_images:
        periodic.run(step, kimg, nets.ema.module, final=True)


# ---------------------------------------------------------------------------------------------------------
# Reading a run back
# ---------------------------------------------------------------------------------------------------------

def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The newest verified checkpoint of a run folder; FileNotFoundError when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    manager = CheckpointManager(run_dir, every_minutes=None, handle_signals=False, verbose=False)
    try:
        path = manager.latest()
    finally:
        manager.close()
    if path is None:
        raise FileNotFoundError(f"{run_dir} holds no verified training checkpoint (ckpt-*.pt with its .json)")
    return path


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedStyleGAN:
    """G average, G and D of a training checkpoint (a file, or a run folder: its newest checkpoint), or of a
    rosinality ``.pt`` file. The architecture is read from the tensor shapes. Files go through
    :func:`colab_utils.loading.safe_load`; another model's file is refused with an error that names it."""
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path)
    payload, _ = read_source(path, "StyleGAN2 checkpoint")
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        saved = payload["objects"]
        if "g_ema" not in saved:
            what = identify(payload)
            raise StyleGANFormatError(f"{path} is a colab_utils training checkpoint but not of a StyleGAN2 run "
                                      f"(it holds {sorted(saved)})" + (f": it is {what}" if what else ""),
                                      path=path)
        nets = {name: saved[name] for name in ("g_ema", "g", "d") if name in saved}
        loaded = load_rosinality(nets, which="all", device=device, source=str(path))
        loaded.extra = {"step": payload.get("step"), "config": payload.get("config")}
        return loaded
    return load_rosinality(payload, which="all", device=device, source=str(path))
