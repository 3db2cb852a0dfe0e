"""What every trainer shares: mixed precision, an EMA copy, Adam, ``requires_grad`` and a progress log.

Every class here has ``state_dict()`` / ``load_state_dict()`` so a :class:`colab_utils.checkpoint.CheckpointManager`
saves and restores it with the networks and optimizers.
"""
from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from colab_utils import runtime

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def _grad_scaler(device_type: str, **kwargs):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device_type, **kwargs)
    if device_type != "cuda":
        raise ValueError(f"fp16 with a grad scaler needs CUDA on torch {torch.__version__}")
    return torch.cuda.amp.GradScaler(**kwargs)


class Precision:
    """Autocast and (for fp16) a dynamic grad scaler, chosen for the device.

    ``precision="auto"`` takes :func:`colab_utils.runtime.describe_device`'s choice: bf16 on Ampere and newer,
    fp16 with a GradScaler on older CUDA GPUs (T4, V100, P100), fp32 on the CPU. ``state_dict()`` holds the
    scaler's state, so a run resumed on a GPU that uses another precision simply starts a fresh scaler.
    """

    def __init__(self, device: str | torch.device, precision: str = "auto", *, init_scale: float = 2.0 ** 16,
                 growth_interval: int = 2000):
        self.device = torch.device(device)
        if precision == "auto":
            precision = runtime.describe_device(self.device).precision
        if precision not in _DTYPES:
            raise ValueError(f"precision must be 'auto', 'bf16', 'fp16' or 'fp32', got {precision!r}")
        if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{torch.cuda.get_device_name(self.device)} has no bf16 support: use precision='fp16' "
                             f"(or 'auto')")
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.scaler = (_grad_scaler(self.device.type, init_scale=init_scale, growth_interval=growth_interval)
                       if precision == "fp16" else None)

    def __repr__(self) -> str:
        return f"Precision({self.device.type}, {self.precision}{' + grad scaler' if self.scaler else ''})"

    def autocast(self):
        """A context manager running the forward pass in the chosen precision (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
                      params: Iterable[torch.nn.Parameter] | None = None, *, max_grad_norm: float | None = None,
                      zero_grad: bool = True) -> torch.Tensor | None:
        """zero_grad, (scaled) backward, optional unscale + clip of ``params`` (default: the optimizers'),
        step every optimizer, update the scaler. Returns the gradient norm when clipping, else None.

        Several optimizers (StarGAN v2's generator, mapping network and style encoder) step on one loss."""
        optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
        if zero_grad:
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        norm = None
        if max_grad_norm is not None:
            if self.scaler is not None:
                for opt in optimizers:
                    self.scaler.unscale_(opt)
            if params is None:
                params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(list(params), max_grad_norm)
        for opt in optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        return norm

    def loss_scale(self) -> torch.Tensor | float:
        """The grad scaler's current scale as a device tensor (1.0 without a scaler). Unlike
        ``scaler.get_scale()`` it does not wait for the GPU, so penalties that scale their own gradients
        (R1, path length) cost no host sync."""
        if self.scaler is None:
            return 1.0
        return self.scaler.scale(torch.ones((), device=self.device))

    def state_dict(self) -> dict:
        return {"precision": self.precision, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: Mapping) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


class EMA:
    """An exponential moving average of a module's parameters in a frozen copy (``.module``); buffers
    (BatchNorm statistics, StyleGAN2's noise) are copied as they are.

    ``update(model, beta)``: ema = beta * ema + (1 - beta) * model, as in StyleGAN2 (``G_smoothing``) and
    StarGAN v2 (``moving_average(..., beta=0.999)``)."""

    def __init__(self, model: torch.nn.Module, beta: float = 0.999):
        self.module = copy.deepcopy(model).eval()
        requires_grad(self.module, False)
        self.beta = beta

    @torch.no_grad()
    def update(self, model: torch.nn.Module, beta: float | None = None) -> None:
        beta = self.beta if beta is None else beta
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"EMA beta must be in [0, 1], got {beta!r}")
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        ema_buffers, buffers = list(self.module.buffers()), list(model.buffers())
        if len(ema_params) != len(params) or len(ema_buffers) != len(buffers):
            raise ValueError(f"EMA.update: the model has {len(params)} parameters / {len(buffers)} buffers, the "
                             f"average {len(ema_params)} / {len(ema_buffers)}: not the same architecture")
        if hasattr(torch, "_foreach_lerp_"):
            torch._foreach_lerp_(ema_params, params, 1.0 - beta)
        else:
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1.0 - beta)
        for e, b in zip(ema_buffers, buffers):
            e.copy_(b)

    def to(self, *args, **kwargs) -> "EMA":
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.module.load_state_dict(state)


def make_adam(params, lr: float, betas: tuple[float, float] = (0.0, 0.99), *, device: str | torch.device,
              eps: float = 1e-8, weight_decay: float = 0.0, fast: bool = True) -> torch.optim.Adam:
    """Adam, fused into one kernel on CUDA when this torch supports it, multi-tensor (foreach) otherwise.
    ``fast=False`` gives PyTorch's default choice, as the official code runs (foreach on CUDA, the
    per-parameter loop on the CPU; never fused): the benchmarks' baseline."""
    params = list(params)
    kwargs = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
    if not fast:
        return torch.optim.Adam(params, **kwargs)
    if torch.device(device).type == "cuda":
        try:
            return torch.optim.Adam(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, foreach=True, **kwargs)


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    """Switch gradients of every parameter of ``module`` on or off (freeze D while G steps, and back)."""
    for p in module.parameters():
        p.requires_grad_(flag)


class ProgressLog:
    """A tqdm progress bar over training steps plus the history of scalar losses.

    ``update(step, {"d": d_loss, "g": g_loss})`` moves the bar to ``step`` and adds this step's losses to
    running sums; tensors stay on their device, so a step never waits for the GPU. Every ``record_every``
    steps the sums are read once (the only host sync) and their means since the last record go to
    ``history[name] = [(step, mean), ...]`` (a loss computed only on some steps, such as a lazy regulariser,
    is averaged over the steps that had it). The bar shows the newest means, images per second and kimg
    (thousands of images seen, counted with ``images`` or ``batch_size`` per step). ``reduce`` (several
    processes) maps the dict of pending tensor means to their means over the processes before they are read."""

    def __init__(self, total: int, *, start: int = 0, desc: str = "train", batch_size: int | None = None,
                 record_every: int = 1, refresh_s: float = 0.5, disable: bool = False,
                 reduce: Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]] | None = None):
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every!r}")
        self.total, self.batch_size, self.record_every, self.refresh_s = total, batch_size, record_every, refresh_s
        self.step = start
        self.images_seen = 0
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, disable=disable)
        self._window = (time.monotonic(), 0)
        self._shown: dict[str, float] = {}  # the newest recorded value of every loss, for the bar
        self._sums: dict[str, torch.Tensor | float] = {}  # since the last record: on the losses' device
        self._counts: dict[str, int] = {}
        self.reduce = reduce

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000.0

    def update(self, step: int, losses: Mapping[str, Any] | None = None, *, images: int | None = None) -> None:
        advanced = step - self.step
        if advanced < 0:
            raise ValueError(f"ProgressLog.update: step {step} is before the current step {self.step}")
        if images is None:
            images = (self.batch_size or 0) * advanced
        self.images_seen += images
        self.step = step
        for name, value in (losses or {}).items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self._sums[name] = value if name not in self._sums else self._sums[name] + value
            self._counts[name] = self._counts.get(name, 0) + 1
        if self._sums and (step % self.record_every == 0 or advanced >= self.record_every):
            self._record(step)
        self.bar.update(step - self.bar.n)
        now = time.monotonic()
        if now - self._window[0] >= self.refresh_s:
            rate = (self.images_seen - self._window[1]) / (now - self._window[0])
            postfix = {name: f"{value:.3g}" for name, value in self._shown.items()}
            if self.images_seen:
                postfix.update({"img/s": f"{rate:.1f}", "kimg": f"{self.kimg:.1f}"})
            self.bar.set_postfix(postfix, refresh=True)
            self._window = (now, self.images_seen)

    def _record(self, step: int) -> None:
        means = {name: total / self._counts[name] for name, total in self._sums.items()}
        tensors = {name: value for name, value in means.items() if isinstance(value, torch.Tensor)}
        if tensors and self.reduce is not None:
            means.update(self.reduce(tensors))
        if tensors:  # one read of every pending loss together: a single device sync per record
            names = sorted(tensors)
            device = means[names[0]].device
            values = torch.stack([means[name].reshape(()).float().to(device) for name in names]).tolist()
            means.update(zip(names, values))
        for name in means:
            number = float(means[name])
            self.history.setdefault(name, []).append((step, number))
            self._shown[name] = number
        self._sums, self._counts = {}, {}

    def write(self, message: str) -> None:
        """Print a line above the bar."""
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()

    def state_dict(self) -> dict:
        history = {name: torch.tensor(values, dtype=torch.float64).reshape(-1, 2) for name, values in self.history.items()}
        pending = {name: torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(())
                   for name, value in self._sums.items()}
        return {"step": self.step, "images_seen": self.images_seen, "history": history,
                "pending": pending, "pending_counts": dict(self._counts),
                "pending_host": sorted(name for name, value in self._sums.items() if isinstance(value, float))}

    def load_state_dict(self, state: Mapping) -> None:
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.history = {name: [(int(s), float(v)) for s, v in values.tolist()]
                        for name, values in state["history"].items()}
        host = set(state.get("pending_host", ()))
        self._sums = {name: float(value) if name in host else value.float()
                      for name, value in state.get("pending", {}).items()}
        self._counts = {name: int(count) for name, count in state.get("pending_counts", {}).items()}
        self.bar.n = self.step
        self.bar.refresh()
        self._window = (time.monotonic(), self.images_seen)
