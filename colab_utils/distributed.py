"""Several processes, one training run: PyTorch's own distributed engine (torchrun + DistributedDataParallel).

    dist = distributed.init()                          # reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    device = dist.device("cuda")                       # this rank's GPU (or the CPU)
    model = distributed.wrap(model, dist)              # DDP when world_size > 1, the module itself otherwise
    sampler = ResumableSampler(len(data), seed, rank=dist.rank, world_size=dist.world_size)
    batch = distributed.per_rank_batch(global_batch, dist)
    ckpt = distributed.Checkpoints(CheckpointManager(run_dir, ...), dist)   # same restore()/step() as a manager
    ...
    distributed.shutdown(dist)

A run started with plain ``python`` (no torchrun) gets ``world_size == 1``: no process group, no wrapper,
and :class:`Checkpoints` hands every call straight to the :class:`~colab_utils.checkpoint.CheckpointManager`,
so single-process training is exactly what it was.

With several ranks:
- every rank holds the same weights (DDP broadcasts rank 0's at wrap time and averages gradients);
- rank ``r`` reads every ``world_size``-th index of each epoch's permutation (:class:`ResumableSampler`), so
  the union of the ranks' batches is the single-process batch of the same global size. A tensor drawn for
  the whole global batch on every rank (latents, noise) is cut to this rank's share with :func:`rank_share`,
  which picks rows ``r, r + W, r + 2W, ...`` to line up with the sampler's order;
- only rank 0 writes checkpoints (atomically, through its manager) and the Drive copy; every rank's RNG state
  is gathered into the checkpoint, all ranks resume from the one file rank 0 picks, and a stop asked on any
  rank (SIGTERM, Ctrl-C, the session deadline) stops every rank at the same step, after the save.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as tdist

from colab_utils.checkpoint import CheckpointManager, capture_rng_state, restore_rng_state


@dataclasses.dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a process group (more than one rank)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and sample grids."""
        return self.rank == 0

    def device(self, preferred: str | torch.device | None = None) -> torch.device:
        """This rank's device: ``cuda:<local_rank>`` when CUDA is asked for (or ``None`` and present), else CPU."""
        kind = torch.device(preferred).type if preferred is not None else (
            "cuda" if torch.cuda.is_available() else "cpu")
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA was asked for but this machine has no CUDA device")
            return torch.device("cuda", self.local_rank if self.enabled else torch.cuda.current_device())
        return torch.device(kind)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init(device: str | torch.device | None = None, *, backend: str | None = None,
         timeout_minutes: float = 30.0) -> Dist:
    """Join the process group that torchrun describes in the environment, or return a single-process Dist.

    ``backend`` defaults to NCCL when the run uses CUDA and gloo otherwise (CPU runs, tests). Calling it when
    the group already exists returns the current ranks without initialising again.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    if world_size == 1:
        return Dist()
    if not tdist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run with a single process")
    use_cuda = (torch.device(device).type == "cuda") if device is not None else torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: start "
                               f"torchrun with --nproc_per_node <= {torch.cuda.device_count()}")
        torch.cuda.set_device(local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group(backend, rank=rank, world_size=world_size,
                                 timeout=datetime.timedelta(minutes=timeout_minutes))
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                backend=tdist.get_backend())


def shutdown(dist: Dist) -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(module: torch.nn.Module, dist: Dist, **ddp_kwargs) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` with several ranks; the module itself with one.

    Buffers are not re-broadcast at every forward (``broadcast_buffers=False``) because our GANs call the
    same network several times per step (regularization passes) and keep no running statistics.
    """
    if not dist.enabled:
        return module
    ddp = torch.nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:  # torch >= 2.14 renamed it
        ddp_kwargs.setdefault("forward_sync_buffers", False)
    else:
        ddp_kwargs.setdefault("broadcast_buffers", False)
    param = next(module.parameters(), None)
    if param is not None and param.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [param.device.index])
    return ddp(module, **ddp_kwargs)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (for EMA, saving, sampling)."""
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


@contextlib.contextmanager
def no_sync(module: torch.nn.Module, enabled: bool = True):
    """Skip DDP's gradient all-reduce inside the block (gradient accumulation micro-steps); a no-op otherwise."""
    if enabled and isinstance(module, torch.nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def per_rank_batch(global_batch: int, dist: Dist) -> int:
    """This rank's share of a global batch; the global batch must split evenly over the ranks."""
    if not isinstance(global_batch, int) or global_batch < 1:
        raise ValueError(f"the batch size must be an int >= 1, got {global_batch!r}")
    if global_batch % dist.world_size:
        raise ValueError(f"a global batch of {global_batch} does not split over {dist.world_size} processes; use a "
                         f"multiple of {dist.world_size} (or --batch-per-gpu)")
    return global_batch // dist.world_size


def rank_share(tensor: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Rows ``rank, rank + W, rank + 2W, ...`` of a tensor drawn for the whole global batch on every rank: the
    rows that go with this rank's images (see :class:`~colab_utils.checkpoint.ResumableSampler`)."""
    if not dist.enabled:
        return tensor
    if tensor.shape[0] % dist.world_size:
        raise ValueError(f"cannot share {tensor.shape[0]} rows evenly over {dist.world_size} processes")
    return tensor[dist.rank::dist.world_size]


def mean_over_ranks(values: Mapping[str, torch.Tensor], dist: Dist) -> dict[str, torch.Tensor]:
    """Scalars of each rank's share (losses) averaged over the ranks: the global batch's values."""
    if not dist.enabled:
        return dict(values)
    names = sorted(values)
    stacked = torch.stack([values[name].detach().float() for name in names]).to(_flags_device(dist))
    tdist.all_reduce(stacked)
    return dict(zip(names, stacked / dist.world_size))


def broadcast_object(obj: Any, dist: Dist, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (a picklable value)."""
    if not dist.enabled:
        return obj
    box = [obj if dist.rank == src else None]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.enabled:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def _flags_device(dist: Dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.backend == "nccl" else torch.device("cpu")


def any_true(flags: list[bool] | bool, dist: Dist) -> list[bool]:
    """Element-wise OR of boolean flags over the ranks (one small all-reduce)."""
    flags = [flags] if isinstance(flags, bool) else list(flags)
    if not dist.enabled:
        return [bool(f) for f in flags]
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=_flags_device(dist))
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


class Checkpoints:
    """A :class:`CheckpointManager` seen by every rank: the same ``restore`` / ``step`` / ``save`` calls.

    Rank 0's manager writes; the other ranks' managers only read and watch for signals. ``restore`` loads,
    on every rank, the one checkpoint rank 0 found newest-and-verified; ``step`` agrees across ranks on
    whether to save (rank 0's schedule) and whether to stop (any rank's signal or deadline), so all ranks
    leave the loop at the same step. Each rank's RNG state travels in the checkpoint (``extra["rank_rng"]``):
    a run resumed with the same number of ranks continues bit-exactly; with another number each rank takes
    rank 0's state (the data order still continues at the same global position).
    """

    def __init__(self, manager: CheckpointManager, dist: Dist):
        self.manager, self.dist = manager, dist
        self._saved_step: int | None = None  # the same on every rank (the manager's is rank 0's alone)

    def __getattr__(self, name: str):
        return getattr(self.manager, name)

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.manager.__exit__(exc_type, exc, tb)

    @property
    def last_saved_step(self) -> int | None:
        """The step of the newest checkpoint saved or restored in this run, the same on every rank."""
        return self._saved_step if self.dist.enabled else self.manager.last_saved_step

    def restore(self, objects: Mapping[str, Any], **kwargs) -> dict | None:
        if not self.dist.enabled:
            return self.manager.restore(objects, **kwargs)
        path = kwargs.pop("path", None)
        if path is None:
            latest = self.manager.latest() if self.dist.is_main else None
            path = broadcast_object(None if latest is None else str(latest), self.dist)
        if path is None:
            return None
        kwargs.setdefault("restore_rng", True)
        restore_rng = kwargs.pop("restore_rng")
        info = self.manager.restore(objects, path=path, restore_rng=restore_rng, **kwargs)
        states = info["extra"].get("rank_rng") if restore_rng else None
        if states is not None and len(states) == self.dist.world_size:
            restore_rng_state(states[self.dist.rank])
        info["extra"] = {k: v for k, v in info["extra"].items() if k != "rank_rng"}
        self._saved_step = info["step"]
        return info

    def save(self, step: int, objects: Mapping[str, Any], *, extra: dict | Callable[[], dict] | None = None):
        """Collective: every rank calls it; rank 0 writes (returns the path there, None elsewhere)."""
        if not self.dist.enabled:
            return self.manager.save(step, objects, extra=extra)
        states = gather_objects(capture_rng_state(), self.dist)
        path = None
        if self.dist.is_main:
            extra = extra() if callable(extra) else dict(extra or {})
            path = self.manager.save(step, objects, extra={**extra, "rank_rng": states})
        barrier(self.dist)
        self._saved_step = step
        return path

    def step(self, step: int, objects: Mapping[str, Any], *, extra: dict | Callable[[], dict] | None = None) -> bool:
        if not self.dist.enabled:
            return self.manager.step(step, objects, extra=extra)
        manager = self.manager
        stop, due = any_true([manager.should_stop(), self.dist.is_main and manager.due(step)], self.dist)
        if stop and manager.stop_reason is None:
            manager.request_stop("another rank was told to stop")
        if (stop or due) and self._saved_step != step:
            self.save(step, objects, extra=extra)
        if stop and self.dist.is_main and manager.verbose:
            print(f"Stopping all {self.dist.world_size} processes at step {step} ({manager.stop_reason}); "
                  f"checkpoint {manager.latest()}")
        return stop

    def close(self) -> None:
        self.manager.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a local process group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, fn: Callable, world_size: int, port: int, args: tuple) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    fn(*args)


def launch_local(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(*args)`` in ``world_size`` new processes on this machine with torchrun's environment set (what
    ``torchrun --nproc_per_node`` does), for tests and benchmarks. ``fn`` must be importable (top level).
    The processes are spawned, never forked: a fork of a process whose OpenMP or CUDA threads are running can
    hang in the child."""
    import torch.multiprocessing as mp

    mp.start_processes(_spawned, args=(fn, world_size, free_port(), args), nprocs=world_size, join=True,
                       start_method="spawn")
