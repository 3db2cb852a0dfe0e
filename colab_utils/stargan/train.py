"""Train StarGAN v2 (Choi et al., CVPR 2020) with the official objective and schedule, resumable exactly
across Colab sessions.

Every iteration, as in the official release:
1. two discriminator steps: fakes from a latent code, then from a reference (adversarial + R1);
2. two generator steps: latent-guided (generator, mapping network and style encoder step) and
   reference-guided (the generator steps): adversarial, style reconstruction, diversity sensitive (its
   weight decays linearly to 0 over ``ds_iter`` iterations) and cycle consistency losses;
3. moving averages (0.999) of the generator, mapping network and style encoder, which make the samples.

    from colab_utils.stargan.train import TrainConfig, train
    result = train(TrainConfig(img_size=256, total_iters=100_000, fan_path="wing.ckpt"), "faces.zip", "runs/me")

Calling ``train`` again with the same ``run_dir`` continues from the newest verified checkpoint: networks,
moving averages, optimizers, grad scalers, the diversity weight, the data order, augmentation and latent
codes, and the loss history all continue exactly. Checkpoints are written every ``checkpoint_minutes``
(and/or ``checkpoint_every`` steps), on SIGTERM / Ctrl-C and before the session deadline
(``session_hours``), and copied to ``drive_dir``. ``precision="fp32"`` with ``channels_last=False`` is the
official behaviour; ``"auto"`` picks bf16 or fp16 autocast on GPUs (:mod:`colab_utils.runtime`), and
``compile="auto"`` runs the networks through torch.compile on CUDA (:mod:`colab_utils.compile`; the R1 pass
stays eager). Losses stay on the device and are read only when the log records them.

Sample grids, loss curves and exports are written to ``run_dir`` and, like the checkpoints, copied to
``drive_dir`` by one :class:`colab_utils.drive.DriveWriter`: a full, stale, unmounted or hung Drive is warned
about and retried, never fatal, and never delays the end of a run by more than ``drive_wait_s``.

Several GPUs: ``torchrun --nproc_per_node=N -m colab_utils.stargan train ...`` trains with PyTorch's
DistributedDataParallel; ``batch`` is then the global batch, each process takes every N-th row of it, and
the result equals one process with that batch (see :func:`train`).
"""
from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from colab_utils import distributed, runtime, viz
from colab_utils.checkpoint import FORMAT, CheckpointManager
from colab_utils.compile import Compiler
from colab_utils.compile import check_setting as compile_setting
from colab_utils.drive import DriveWriter
from colab_utils.loading import identify, read_source
from colab_utils.training import EMA, Precision, ProgressLog, make_adam, requires_grad

from .data import Batch, TrainingData, find_split, fixed_examples, load_domains
from .fan import FANRequiredError, compute_masks, fan_required_message, load_fan
from .formats import StarGANFormatError, export_official, load_official
from .losses import LossWeights, discriminator_loss, generator_loss
from .model import Nets, StarGANConfig, build_nets, check_img_size
from .synthesize import check_masks, latent_grid, reference_grid

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
COMPILE_SETTINGS = ("auto", "on", "off")
TRAINED = ("generator", "mapping_network", "style_encoder", "discriminator")
AVERAGED = ("generator", "mapping_network", "style_encoder")
_EXPORT = re.compile(r"^\d{6,}_nets_(ema|D)\.ckpt$")


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that defines a run; defaults are the official CelebA-HQ settings."""

    # model
    img_size: int = _opt(256, "image size in pixels (a power of two; 256 for CelebA-HQ)")
    num_domains: int | None = _opt(None, "number of domains; default: the number of domain folders (checked "
                                   "against them when given)")
    latent_dim: int = _opt(16, "latent code size (input of the mapping network)")
    style_dim: int = _opt(64, "style code size")
    hidden_dim: int = _opt(512, "width of the mapping network's layers")
    max_conv_dim: int = _opt(512, "most channels of any convolution")
    base_dim: int | None = _opt(None, "channels after the first convolution; default 2**14 // img_size as "
                                "in the paper (smaller values make small, fast models)")
    w_hpf: float = _opt(1.0, "weight of the high-pass skip with FAN face masks (1 for faces, 0 for animals "
                        "or anything not a face; >0 needs FAN weights, see fan_path)")
    # objective
    lambda_reg: float = _opt(1.0, "weight of the R1 penalty on real images")
    lambda_sty: float = _opt(1.0, "weight of the style reconstruction loss")
    lambda_ds: float = _opt(1.0, "initial weight of the diversity sensitive loss")
    ds_iter: int = _opt(100_000, "iterations over which the diversity weight decays linearly to 0")
    lambda_cyc: float = _opt(1.0, "weight of the cycle consistency loss")
    # optimisation
    lr: float = _opt(1e-4, "learning rate of the generator, style encoder and discriminator")
    f_lr: float = _opt(1e-6, "learning rate of the mapping network")
    betas: tuple[float, float] = _opt((0.0, 0.99), "Adam's beta1 and beta2", nargs=2)
    weight_decay: float = _opt(1e-4, "Adam's weight decay (L2)")
    ema: float = _opt(0.999, "decay of the moving averages of generator, mapping network and style encoder")
    total_iters: int = _opt(100_000, "iterations to train in total (across all sessions)")
    batch: int = _opt(8, "images per batch (with torchrun: the global batch, split over the processes)")
    batch_per_gpu: int | None = _opt(None, "with torchrun: images per process instead of --batch (the global "
                                     "batch is this times the number of processes)")
    precision: str = _opt("auto", "auto (bf16 on Ampere+, fp16 + grad scaler on T4/V100, fp32 on CPU), bf16, "
                          "fp16 or fp32 (the official behaviour)", choices=PRECISIONS)
    channels_last: bool | None = _opt(None, "channels-last memory format; default: on CUDA unless precision "
                                      "is fp32")
    fast_optim: bool = _opt(True, "fused (CUDA) or foreach Adam; false: PyTorch's default Adam, as the official "
                            "code runs it")
    compile: str = _opt("auto", "torch.compile the networks (generator, mapping network, style encoder, "
                        "discriminator, FAN): auto = on CUDA; the R1 pass stays eager", choices=COMPILE_SETTINGS)
    seed: int = _opt(777, "seed of the initial weights, the data order, augmentation and latent codes")
    # data
    crop_prob: float = _opt(0.5, "probability of the random resized crop augmentation")
    min_images: int = _opt(2, "fewest usable images a domain folder may have")
    workers: int = _opt(2, "data loader worker processes (0: load in the training process)")
    cache_images: bool | None = _opt(None, "keep decoded images in memory; default: when they fit in 1 GiB")
    # bookkeeping
    sample_every: int = _opt(5000, "save sample grids every this many iterations (0: never)")
    sample_per_domain: int = _opt(3, "sources and references per domain in the sample grids")
    log_every: int = _opt(10, "record the losses every this many iterations")
    checkpoint_every: int | None = _opt(None, "save a checkpoint every this many iterations (besides minutes)")
    checkpoint_minutes: float | None = _opt(10.0, "save a checkpoint every this many minutes (0: only by "
                                            "checkpoint_every; default 10)")
    keep_last: int = _opt(3, "checkpoints kept")
    session_hours: float | None = _opt(None, "stop with a checkpoint before this many hours (Colab: ~11.5)")
    drive_dir: str | None = _opt(None, "folder (on Google Drive) to copy checkpoints, samples and exports to")
    drive_wait_s: float = _opt(60.0, "at the end of a run, or a stop by SIGTERM, wait at most this many seconds "
                               "for Drive copies; what is left is reported with the command that copies it later")
    fan_path: str | None = _opt(None, "FAN weights (wing.ckpt, hub name stargan_v2_wing) for w_hpf > 0")
    init_from: str | None = _opt(None, "start a new run from official weights (a *_nets_ema.ckpt file; "
                                 "a *_nets_D.ckpt beside it is used too)")

    def __post_init__(self):
        check_img_size(self.img_size)
        self.betas = tuple(float(b) for b in self.betas)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.compile = compile_setting(self.compile)
        for name in ("batch", "total_iters", "ds_iter", "log_every", "keep_last", "sample_per_domain",
                     "min_images"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.batch_per_gpu is not None and (not isinstance(self.batch_per_gpu, int) or self.batch_per_gpu < 1):
            raise ValueError(f"TrainConfig.batch_per_gpu must be a positive int or None, got {self.batch_per_gpu!r}")
        if not self.drive_wait_s >= 0:
            raise ValueError(f"TrainConfig.drive_wait_s must be >= 0 seconds, got {self.drive_wait_s!r}")
        if self.w_hpf < 0 or not 0 <= self.ema <= 1 or len(self.betas) != 2:
            raise ValueError(f"TrainConfig: need w_hpf >= 0, 0 <= ema <= 1 and two betas, got w_hpf={self.w_hpf}, "
                             f"ema={self.ema}, betas={self.betas}")

    def model_config(self, num_domains: int) -> StarGANConfig:
        return StarGANConfig(img_size=self.img_size, style_dim=self.style_dim, latent_dim=self.latent_dim,
                             num_domains=num_domains, w_hpf=self.w_hpf, max_conv_dim=self.max_conv_dim,
                             hidden_dim=self.hidden_dim, base_dim=self.base_dim)

    def recipe(self) -> dict:
        """The fields that change what is computed (checkpoints warn when they differ on resume)."""
        bookkeeping = {"sample_every", "sample_per_domain", "log_every", "checkpoint_every", "checkpoint_minutes",
                       "keep_last", "session_hours", "drive_dir", "drive_wait_s", "fan_path", "init_from", "workers", "cache_images",
                       "total_iters", "batch_per_gpu", "compile", "fast_optim"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in bookkeeping}


def diversity_weight(config: TrainConfig, step: int) -> float:
    """The diversity weight used at iteration ``step`` (1-based): ``lambda_ds`` decayed linearly to 0 over
    ``ds_iter`` iterations, as the official loop's running decrement."""
    return config.lambda_ds * max(0.0, 1.0 - (step - 1) / config.ds_iter)


def he_init(module: nn.Module) -> None:
    """The official initialisation: He-normal (fan-in) weights and zero biases for convolutions and
    linear layers."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------------
# Training state and one iteration
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """The networks, their moving averages, optimizers and precision of a run."""

    config: TrainConfig
    nets: Nets                  # trained copies (and the frozen FAN when w_hpf > 0)
    ema: dict[str, EMA]
    optims: dict[str, torch.optim.Optimizer]
    precision_d: Precision
    precision_g: Precision
    memory_format: torch.memory_format
    compiler: Compiler = field(default_factory=lambda: Compiler(False))

    def fast(self, module: nn.Module | None):
        """The compiled callable of ``module`` (a network or its DDP wrapper), made once; ``module`` itself
        when compile is off. For the FAN: an object whose ``get_heatmap`` (all that the masks use) is compiled."""
        if module is None or not self.compiler.enabled:
            return module
        if module is self.nets.fan:
            return types.SimpleNamespace(get_heatmap=self.compiler.cached(module.get_heatmap, key=module))
        return self.compiler.cached(module)

    def checkpoint_objects(self) -> dict:
        objects = {name: self.nets[name] for name in TRAINED}
        objects.update({f"{name}_ema": ema for name, ema in self.ema.items()})
        objects.update({f"optim_{name}": opt for name, opt in self.optims.items()})
        objects.update({"precision_d": self.precision_d, "precision_g": self.precision_g})
        return objects

    def ema_nets(self) -> Nets:
        """The averaged networks (what samples and exports use), sharing weights with the averages."""
        modules = {name: ema.module for name, ema in self.ema.items()}
        if self.nets.fan is not None:
            modules["fan"] = self.nets.fan
        return Nets(self.nets.config, modules)


def build_state(config: TrainConfig, num_domains: int, device, fan: nn.Module | None = None) -> TrainState:
    """Fresh networks (official initialisation), moving averages, per-network Adam (the mapping network
    with ``f_lr``) and precision for ``config`` on ``device``."""
    device = torch.device(device)
    nets = build_nets(config.model_config(num_domains), discriminator=True, fan=False)
    for name in TRAINED:
        nets[name].apply(he_init)
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = device.type == "cuda" and config.precision != "fp32"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    nets = nets.to(device=device, memory_format=memory_format).train()
    if fan is not None:
        nets["fan"] = fan.to(device).eval()
    ema = {name: EMA(nets[name], config.ema) for name in AVERAGED}
    optims = {name: make_adam(nets[name].parameters(), config.f_lr if name == "mapping_network" else config.lr,
                              config.betas, device=device, weight_decay=config.weight_decay, fast=config.fast_optim)
              for name in TRAINED}
    return TrainState(config, nets, ema, optims, Precision(device, config.precision),
                      Precision(device, config.precision), memory_format,
                      Compiler.for_setting(config.compile, device))


def _synced(state: TrainState, wrapped: dict[str, nn.Module] | None, names: tuple[str, ...]):
    """The networks a pass calls: the DistributedDataParallel wrappers of ``names`` (the networks it trains)
    in place of the plain modules, the others plain, so DDP only waits for gradients that the pass computes;
    each one compiled when compile is on."""
    nets = state.nets
    if not wrapped and not state.compiler.enabled:
        return nets
    modules = {name: state.fast(wrapped[name] if wrapped and name in names else nets[name]) for name in TRAINED}
    return types.SimpleNamespace(**modules, fan=state.fast(nets.fan), config=nets.config)


def train_step(state: TrainState, batch: Batch, lambda_ds: float,
               wrapped: dict[str, nn.Module] | None = None) -> dict[str, torch.Tensor]:
    """One official iteration on ``batch``; returns the losses (detached tensors, averaged over the
    latent- and reference-guided steps). ``wrapped``: DDP wrappers of the trained networks (several
    processes); each pass runs through the wrappers of the networks it trains, which average their gradients
    over the processes during the backward pass (the R1 penalty's double backward included)."""
    c, plain, opt = state.config, state.nets, state.optims
    weights = LossWeights(c.lambda_reg, c.lambda_sty, lambda_ds, c.lambda_cyc)
    x, y_org, y_trg = batch.x_src, batch.y_src, batch.y_ref
    masks = compute_masks(state.fast(plain.fan), x) if c.w_hpf > 0 and check_masks(plain) else None
    nets = _synced(state, wrapped, ("discriminator",))
    # R1 needs a double backward, which torch.compile cannot do: the real pass calls the module itself
    r1_discriminator = wrapped["discriminator"] if wrapped else plain.discriminator

    # 1. discriminator: fakes from a latent code, then from a reference
    requires_grad(plain.discriminator, True)
    d_parts = []
    for style in ({"z_trg": batch.z_trg}, {"x_ref": batch.x_ref}):
        loss, parts = discriminator_loss(nets, x, y_org, y_trg, masks=masks, weights=weights,
                                         autocast=state.precision_d.autocast,
                                         grad_scale=state.precision_d.loss_scale(),
                                         r1_discriminator=r1_discriminator, **style)
        state.precision_d.backward_step(loss, opt["discriminator"])
        d_parts.append(parts)
    requires_grad(plain.discriminator, False)

    # 2. generator: latent-guided (G, F, E step), then reference-guided (G steps)
    nets = _synced(state, wrapped, AVERAGED)
    loss, g_latent = generator_loss(nets, x, y_org, y_trg, z_trgs=(batch.z_trg, batch.z_trg2), masks=masks,
                                    weights=weights, autocast=state.precision_g.autocast)
    state.precision_g.backward_step(loss, [opt[name] for name in AVERAGED])
    for name in ("mapping_network", "style_encoder"):
        requires_grad(plain[name], False)
    nets = _synced(state, wrapped, ("generator",))
    loss, g_ref = generator_loss(nets, x, y_org, y_trg, x_refs=(batch.x_ref, batch.x_ref2), masks=masks,
                                 weights=weights, autocast=state.precision_g.autocast)
    state.precision_g.backward_step(loss, opt["generator"])
    for name in ("mapping_network", "style_encoder"):
        requires_grad(plain[name], True)

    # 3. moving averages (of the plain modules: the same weights on every process)
    for name, ema in state.ema.items():
        ema.update(plain[name])

    losses = {f"D/{k}": (d_parts[0][k] + d_parts[1][k]) / 2 for k in d_parts[0]}
    losses.update({f"G/{k}": (g_latent[k] + g_ref[k]) / 2 for k in g_latent})
    return losses


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    step: int                   # the last iteration done
    finished: bool              # total_iters reached
    stop_reason: str | None     # why it stopped early (signal, session deadline, stop_at)
    nets: Nets                  # the averaged networks (eval mode), for synthesis
    state: TrainState
    history: dict               # loss name -> [(step, value), ...]
    lambda_ds: float            # the diversity weight of the next iteration
    domains: list[str]
    checkpoint: Path | None     # the newest checkpoint
    exported: Path | None       # the official-format *_nets_ema.ckpt
    run_dir: Path
    drive_report: list = field(default_factory=list)  # what did not reach Drive, with the command to copy it
    drive_status: str | None = None                   # "last checkpoint on Drive: step N, M minutes ago"


def _load_fan_for(config: TrainConfig, fan: nn.Module | None, device) -> nn.Module | None:
    if config.w_hpf <= 0:
        return None
    if fan is not None:
        return fan
    if config.fan_path is None:
        raise ValueError(f"w_hpf={config.w_hpf} uses FAN face masks, so it needs the FAN weights: pass "
                         f"fan_path=colab_utils.hub.download('stargan_v2_wing') (or fan=...), or set w_hpf=0 "
                         f"to train without the high-pass skip")
    return load_fan(config.fan_path, device=device)


def _init_from_official(state: TrainState, path: str) -> None:
    """Copy official weights (``*_nets_ema.ckpt`` and, when beside it, ``*_nets_D.ckpt``) into the networks
    and their averages."""
    path = Path(path)
    files = [path]
    partner = path.with_name(path.name.replace("_nets_ema.ckpt", "_nets_D.ckpt"))
    if partner != path and partner.is_file():
        files.append(partner)
    loaded, config = load_official(files)
    if config != state.nets.config:
        raise ValueError(f"init_from={path} holds {config}, but this run builds {state.nets.config}: set the "
                         f"model options to match (e.g. img_size, w_hpf, num_domains)")
    for name in TRAINED:
        if loaded[name] is None:
            continue
        state.nets[name].load_state_dict(loaded[name].state_dict())
        if name in state.ema:
            state.ema[name].module.load_state_dict(loaded[name].state_dict())


def _sample_set(data: TrainingData, root, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Fixed sources and references for the sample grids: from ``val/`` when it fits, else from training."""
    dataset = data.dataset
    if root is not None and find_split(root, "val") != dataset.root:
        try:
            val = load_domains(root, config.img_size, split="val", min_images=1, cache=False)
            if val.domains == dataset.domains:
                dataset = val
        except ValueError:
            pass  # an unusable val/ folder: sample from the training images
    images, domains = fixed_examples(dataset, config.sample_per_domain, seed=config.seed)
    return images, domains, list(dataset.domains)


def save_samples(nets: Nets, sources: torch.Tensor, domains: torch.Tensor, names: list[str], folder: Path,
                 step: int, seed: int = 0) -> list[Path]:
    """The reference-guided grid (the sample images are both sources and references) and latent-guided
    samples, as ``<folder>/<step>_reference.png`` and ``_latent.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{step:06d}_reference.png", folder / f"{step:06d}_latent.png"]
    reference_grid(nets, sources, sources, domains, path=paths[0], progress=False)
    latent_grid(nets, sources, per_domain=2, seed=seed, domain_names=names, path=paths[1], progress=False)
    return paths


def _plot_losses(log: ProgressLog, folder: Path) -> None:
    if log.history:
        viz.plot_curves(log.history, folder / "losses.png", title="StarGAN v2 losses")


def _save_pictures(writer: DriveWriter, nets: Nets, samples, log: ProgressLog, step: int, seed: int,
                   run_dir: Path, drive: Path | None) -> None:
    """The sample grids of ``step`` (when ``samples``) and the loss curves, in ``run_dir`` and copied to
    ``drive`` in the background; one that cannot be written is warned about and never stops training."""
    if samples is not None:
        folder = run_dir / "samples"
        names = [f"{step:06d}_reference.png", f"{step:06d}_latent.png"]
        first = writer.save(folder / names[0], lambda _: save_samples(nets, *samples, folder, step, seed),
                            drive / "samples" / names[0] if drive else None)
        if first is not None and drive is not None:
            writer.put(folder / names[1], drive / "samples" / names[1])

    def plot(path: Path):
        _plot_losses(log, path.parent)
        return None if path.exists() else False

    writer.save(run_dir / "losses.png", plot, drive / "losses.png" if drive else None, kind="log")


def _remove_old_exports(folder: Path, step: int) -> None:
    for old in folder.iterdir():
        if _EXPORT.match(old.name) and not old.name.startswith(f"{step:06d}_"):
            old.unlink(missing_ok=True)


def _export(state: TrainState, step: int, folder: Path, writer: DriveWriter, drive: Path | None) -> Path:
    """Write the averaged networks (and D) in the official layout in ``folder``, replacing older exports of
    this run; with ``drive``, queue their copies there (Drive's older exports go once both have landed)."""
    nets = {**state.ema_nets(), "discriminator": state.nets.discriminator}
    main = folder / f"{step:06d}_nets_ema.ckpt"
    partner = main.with_name(f"{step:06d}_nets_D.ckpt")
    export_official(nets, main, partner)
    _remove_old_exports(folder, step)
    if drive is not None:
        writer.put(main, drive / main.name, kind="export")
        writer.put(partner, drive / partner.name, kind="export", after=lambda: _remove_old_exports(drive, step))
    return main


def train(config: TrainConfig, data_root, run_dir, *, device=None, fan: nn.Module | None = None,
          stop_at: int | None = None, progress: bool = True, verbose: bool = True) -> TrainResult:
    """Train (or continue training) StarGAN v2 on the domain folders of ``data_root`` (a folder or zip with
    ``train/<domain>/``; see :mod:`colab_utils.stargan.data`), keeping checkpoints, sample grids
    (``samples/``), the loss curves (``losses.png``) and the final official-format export in ``run_dir``.

    ``fan``: a loaded FAN (else ``config.fan_path``) for ``w_hpf > 0``. ``stop_at``: stop after that
    iteration with a checkpoint (as a session end would). Returns a :class:`TrainResult`.

    Started by ``torchrun --nproc_per_node=N`` it trains on N processes (one GPU each) with
    DistributedDataParallel: ``config.batch`` is the global batch (or ``batch_per_gpu`` per process), every
    process trains on its share of the one-process batch, rank 0 alone writes checkpoints, samples, plots and
    the export, and checkpoints move freely between process counts (see :mod:`colab_utils.distributed`)."""
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    dist = distributed.init(device)
    if dist.enabled:
        device = dist.device(device)
    if config.batch_per_gpu is not None:
        config = dataclasses.replace(config, batch=config.batch_per_gpu * dist.world_size, batch_per_gpu=None)
    distributed.per_rank_batch(config.batch, dist)  # a clear error when the global batch does not split
    progress, verbose = progress and dist.is_main, verbose and dist.is_main
    device = torch.device(device) if device is not None else runtime.default_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes, as the official main.py
    run_dir = Path(run_dir)
    runtime.seed_everything(config.seed)
    data = TrainingData(data_root, config.img_size, config.batch, config.latent_dim, seed=config.seed,
                        min_images=config.min_images, num_workers=config.workers, crop_prob=config.crop_prob,
                        cache=config.cache_images, pin_memory=device.type == "cuda", rank=dist.rank,
                        world_size=dist.world_size)
    if config.num_domains is not None and config.num_domains != data.num_domains:
        raise ValueError(f"num_domains={config.num_domains}, but {data.dataset.root} holds {data.num_domains} "
                         f"domain folders: {data.domains}")
    if verbose:
        print(f"{data.dataset.root}: " + ", ".join(f"{n} {c} images" for n, c in data.counts().items()))
        if dist.enabled:
            print(f"{dist.world_size} processes ({dist.backend}), {config.batch // dist.world_size} images each "
                  f"of a global batch of {config.batch}")
    state = build_state(config, data.num_domains, device, _load_fan_for(config, fan, device))
    log = ProgressLog(config.total_iters, desc="StarGAN v2", batch_size=config.batch, record_every=config.log_every,
                      disable=not progress,
                      reduce=(lambda losses: distributed.mean_over_ranks(losses, dist)) if dist.enabled else None)
    objects = {**state.checkpoint_objects(), "data": data, "log": log}
    model = state.nets.config.to_dict()

    def extra(next_step: int) -> dict:
        return {"lambda_ds": diversity_weight(config, next_step), "model": model, "domains": data.domains,
                "fan_path": config.fan_path}

    drive = Path(config.drive_dir) if config.drive_dir else None
    writer = DriveWriter.bounded(config.drive_wait_s, verbose=verbose) if dist.is_main else None
    manager = CheckpointManager(run_dir, keep_last=config.keep_last, every_steps=config.checkpoint_every,
                                every_minutes=config.checkpoint_minutes or None, session_hours=config.session_hours,
                                drive_dir=drive / "checkpoints" if drive else None, drive_writer=writer,
                                copy_wait_s=config.drive_wait_s, config=config.recipe(), verbose=verbose)
    ckpt = distributed.Checkpoints(manager, dist)
    info = ckpt.restore(objects, map_location=device)
    start = info["step"] if info else 0
    if info is None and config.init_from:
        _init_from_official(state, config.init_from)
    wrapped = {name: distributed.wrap(state.nets[name], dist) for name in TRAINED} if dist.enabled else None
    samples = _sample_set(data, data_root, config) if config.sample_every and dist.is_main else None

    step, stop_reason = start, None
    with ckpt:
        for step in range(start + 1, config.total_iters + 1):
            batch = data.next(device, state.memory_format)
            with state.compiler.timed():
                losses = train_step(state, batch, diversity_weight(config, step), wrapped)
            log.update(step, {**losses, "lambda_ds": diversity_weight(config, step)})  # read every log_every
            report = state.compiler.report() if verbose else None
            if report:
                log.write(f"StarGAN v2: {report}")
            if samples is not None and step % config.sample_every == 0:
                _save_pictures(writer, state.ema_nets(), samples, log, step, config.seed, run_dir, drive)
            if ckpt.step(step, objects, extra=lambda: extra(step + 1)):
                stop_reason = ckpt.stop_reason
                break
            if step == stop_at:
                if ckpt.last_saved_step != step:
                    ckpt.save(step, objects, extra=extra(step + 1))
                stop_reason = f"stop_at={stop_at}"
                break
        else:
            if step > start and ckpt.last_saved_step != step:
                ckpt.save(step, objects, extra=extra(step + 1))
        log.close()
        exported = None
        if dist.is_main:  # before the manager closes: its bounded wait for Drive covers these copies too
            _save_pictures(writer, state.ema_nets(), None, log, step, config.seed, run_dir, drive)
            exported = _export(state, step, run_dir, writer, drive) if step > 0 else None
    if not had_group:
        distributed.shutdown(dist)
    nets = state.ema_nets().eval()
    nets.domains = list(data.domains)
    return TrainResult(step, step >= config.total_iters, stop_reason, nets, state, log.history,
                       diversity_weight(config, step + 1), list(data.domains),
                       manager.last_checkpoint if dist.is_main else ckpt.latest(), exported, run_dir,
                       manager.drive_report, manager.drive_status())


# ---------------------------------------------------------------------------------------------------------
# Networks back from a training checkpoint
# ---------------------------------------------------------------------------------------------------------

def _checkpoint_payload(path) -> tuple[Path, dict]:
    """(file, contents) of one of our training checkpoints, or of the newest verified one in a run folder."""
    path = Path(path)
    if path.is_dir():
        manager = CheckpointManager(path, handle_signals=False, verbose=False, every_minutes=None)
        latest = manager.latest()
        manager.close()
        if latest is None:
            raise FileNotFoundError(f"{path} holds no verified training checkpoint (ckpt-*.pt with its .json)")
        path = latest
    return path, read_source(path, "StarGAN v2 training checkpoint")[0]


def _not_a_training_checkpoint(path, payload, problem: str) -> StarGANFormatError:
    what = identify(payload)
    return StarGANFormatError(f"{path} is not a StarGAN v2 training checkpoint of colab_utils ({problem})"
                              + (f": it is {what}" if what else ""), path=Path(path))


def nets_from_checkpoint(path, *, fan_path=None, device="cpu", payload=None, discriminator: bool = False,
                         without_masks: bool = False) -> Nets:
    """The averaged networks of one of our training checkpoints (``ckpt-*.pt``, or a run folder: its newest
    verified one), in eval mode, with ``.domains`` (the domain folder names) set; with ``discriminator``
    also the (trained) discriminator. FAN weights come from ``fan_path``, else from the run's ``fan_path``
    when that file exists here; a ``w_hpf > 0`` model without them raises :class:`FANRequiredError` unless
    ``without_masks=True``."""
    if payload is None:
        path, payload = _checkpoint_payload(path)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise _not_a_training_checkpoint(path, payload, "no colab_utils checkpoint format")
    try:
        extra, objects = payload["extra"], payload["objects"]
        config = StarGANConfig(**extra["model"])
        states = {name: objects[f"{name}_ema"] for name in AVERAGED}
        if discriminator:
            states["discriminator"] = objects["discriminator"]
    except (KeyError, TypeError) as exc:
        raise _not_a_training_checkpoint(path, payload, f"no {exc}") from None
    nets = build_nets(config, discriminator=discriminator, fan=False)
    for name, state in states.items():
        nets[name].load_state_dict(state)
    if config.w_hpf > 0:
        run_fan = extra.get("fan_path")
        if fan_path is not None:
            nets["fan"] = load_fan(fan_path)
        elif run_fan is not None and Path(run_fan).is_file():
            nets["fan"] = load_fan(run_fan)
        elif without_masks:
            nets.without_masks = True
        else:
            raise FANRequiredError(fan_required_message(str(path), config.w_hpf))
    nets = nets.to(device).eval()
    nets.domains = list(extra.get("domains", []))
    return nets


def export_checkpoint(path, out_ema, out_d=None, *, fan_path=None) -> Path:
    """Write one of our training checkpoints (or a run folder's newest) as official files: the averaged
    generator, mapping network and style encoder (and FAN when loaded) to ``out_ema``, the discriminator to
    ``out_d`` when given. Returns ``Path(out_ema)``."""
    path, payload = _checkpoint_payload(path)
    # without a FAN the export simply holds none (loading it later asks for one)
    nets = nets_from_checkpoint(path, fan_path=fan_path, payload=payload, discriminator=out_d is not None,
                                without_masks=True)
    return export_official(nets, out_ema, out_d)
