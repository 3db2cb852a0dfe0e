"""Training state that survives any interruption: resumable data order and verified, atomic checkpoints.

Colab ends a session after ~12 hours, or earlier without warning, and a disconnect is a hard kill. So a run
saves everything it needs to continue *exactly* (weights, optimizers, EMA copies, grad scaler, schedules,
counters, the data order and every RNG), often, atomically, and resumes from the newest file that verifies.

    ckpt = CheckpointManager.for_run("my_run", every_minutes=10, session_hours=11.5)
    info = ckpt.restore(objects)                       # None on a fresh run
    start = info["step"] if info else 0
    batches = infinite_batches(dataset, sampler, batch_size=8)
    for step in range(start + 1, total + 1):
        ...one update...
        if ckpt.step(step, objects, extra={"lambda_ds": lambda_ds}):
            break                                       # SIGTERM, Ctrl-C or the session deadline: saved
    ckpt.close()                                        # waits (at most copy_wait_s) for the Drive copies

On disk, beside each ``ckpt-000001000.pt`` lies ``ckpt-000001000.json`` (step, time, size, sha256). Both are
written to a temporary file in the same folder, flushed, fsynced, renamed over the final name and the folder
fsynced; the manifest is renamed into place first, so a kill leaves at worst a manifest without its file
(ignored). A checkpoint without a manifest, or whose bytes do not match it, is damaged and is skipped (with a
warning naming it) in favour of an older one. Nothing damaged is deleted. Temporary files left by a killed
writer are removed the next time a manager opens the folder.

The Drive copy goes through :class:`colab_utils.drive.DriveWriter`: it never writes under an unmounted Drive,
survives a full, stale or hung Drive (the local checkpoint is the one that counts), and never holds up the end of
a run, a SIGTERM stop or a read of Drive for longer than a bounded time.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colab_utils.drive import DriveWriter, fsync_dir
from colab_utils import runtime
from colab_utils.loading import (SAFE_GLOBALS, CheckpointCorruptError, CheckpointError, CheckpointMismatchError,
                                 UnsafeCheckpointError, compare_state_dicts, identify, plain, safe_load)

FORMAT = "colab_utils.checkpoint/1"
_CHUNK = 8 << 20
# Loading lives in colab_utils.loading; these names stay importable from here.
__all__ = ["FORMAT", "SAFE_GLOBALS", "CheckpointCorruptError", "CheckpointError", "CheckpointManager",
           "CheckpointMismatchError", "CheckpointSaveError", "CheckpointWarning", "ResumableSampler",
           "UnsafeCheckpointError", "capture_rng_state", "infinite_batches", "plain", "restore_rng_state",
           "safe_load", "sha256_file"]


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (damaged, incomplete) or a Drive copy failed; training data is intact."""


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (disk full, I/O error); the previous checkpoint is untouched."""


# ---------------------------------------------------------------------------------------------------------
# Resumable data order
# ---------------------------------------------------------------------------------------------------------

class ResumableSampler(torch.utils.data.Sampler[int]):
    """Indices of a dataset of ``n`` items, epoch after epoch, that resume mid-epoch exactly.

    Epoch ``e`` visits the permutation drawn by a ``torch.Generator`` seeded with ``seed + e`` (or ``0..n-1``
    with ``shuffle=False``); ``index`` counts the indices of the current epoch already consumed. With
    ``world_size > 1`` each ``rank`` takes every ``world_size``-th index of every epoch's permutation (padded
    by wrapping around, or cut with ``drop_last``), as torch's DistributedSampler does.

    Iterating yields the rest of the current epoch and advances ``index`` as it goes (exact with
    ``num_workers=0``); :func:`infinite_batches` advances it only by the batches the loop really consumed,
    which stays exact with worker processes that read ahead.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"ResumableSampler needs a dataset size n > 0, got {n!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if drop_last and n < world_size:
            raise ValueError(f"drop_last with {n} items and world_size {world_size} leaves no item per rank")
        self.n, self.seed, self.shuffle = n, int(seed), bool(shuffle)
        self.rank, self.world_size, self.drop_last = rank, world_size, bool(drop_last)
        self.epoch = 0
        self.index = 0
        self._cache: tuple[int, list[int]] | None = None

    @property
    def num_samples(self) -> int:
        """Indices this rank visits per epoch."""
        return self.n // self.world_size if self.drop_last else math.ceil(self.n / self.world_size)

    def __len__(self) -> int:
        return self.num_samples

    def epoch_order(self, epoch: int) -> list[int]:
        """All ranks' indices for ``epoch`` before the split over ranks: a permutation drawn from ``seed +
        epoch``, or ``0..n-1`` without shuffling. Subclasses draw other orders (e.g. weighted ones)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            return torch.randperm(self.n, generator=generator).tolist()
        return list(range(self.n))

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``, in order."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        order = self.epoch_order(epoch)
        total = self.num_samples * self.world_size
        if total > len(order):
            order = (order * math.ceil(total / len(order)))[:total]
        shard = order[:total][self.rank::self.world_size]
        self._cache = (epoch, shard)
        return shard

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_indices(self.epoch)
        while self.index < len(order):
            i = order[self.index]
            self.index += 1
            yield i
        self.epoch += 1
        self.index = 0

    def stream(self) -> Iterator[int]:
        """Indices from the current position on, across epochs, forever; does not move the position."""
        epoch, index = self.epoch, self.index
        while True:
            order = self.epoch_indices(epoch)
            yield from order[index:]
            epoch, index = epoch + 1, 0

    def advance(self, count: int) -> None:
        """Mark ``count`` more indices as consumed (crossing into later epochs as needed)."""
        self.index += int(count)
        while self.index >= self.num_samples:
            self.index -= self.num_samples
            self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning; a no-op when already in that epoch (keeps a resumed position)."""
        if epoch != self.epoch:
            self.epoch, self.index = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "n": self.n,
                "shuffle": self.shuffle, "rank": self.rank, "world_size": self.world_size,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: Mapping) -> None:
        missing = {"epoch", "index", "seed"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}; got keys {sorted(state)}")
        if (state.get("seed"), state.get("shuffle", self.shuffle)) != (self.seed, self.shuffle):
            warnings.warn(f"sampler: using the checkpoint's seed {state['seed']} / shuffle "
                          f"{state.get('shuffle', self.shuffle)} instead of {self.seed} / {self.shuffle} so the "
                          f"data order continues exactly", CheckpointWarning, stacklevel=2)
        self.seed, self.shuffle = int(state["seed"]), bool(state.get("shuffle", self.shuffle))
        self._cache = None
        saved_n = state.get("n", self.n)
        if saved_n != self.n:
            warnings.warn(f"sampler: the dataset had {saved_n} items when saved and has {self.n} now; the "
                          f"old data order cannot continue, so epoch {int(state['epoch']) + 1} starts from "
                          f"its beginning", CheckpointWarning, stacklevel=2)
            self.epoch, self.index = int(state["epoch"]) + 1, 0
            return
        self.epoch = int(state["epoch"])
        saved_world = int(state.get("world_size", self.world_size))
        index = int(state["index"])
        if saved_world != self.world_size:
            # Same global position in the epoch, re-split over the new number of ranks.
            index = index * saved_world // self.world_size
            warnings.warn(f"sampler: world_size changed from {saved_world} to {self.world_size}; each rank "
                          f"continues at the same global position of epoch {self.epoch}", CheckpointWarning,
                          stacklevel=2)
        self.index = min(index, self.num_samples)


class _StreamBatches:
    """A batch sampler over ``sampler.stream()``: full batches forever, crossing epoch boundaries."""

    def __init__(self, sampler: ResumableSampler, batch_size: int, share: tuple[int, int] = (0, 1)):
        self.sampler, self.batch_size, self.share = sampler, batch_size, share

    def __iter__(self) -> Iterator[list[int]]:
        stream = self.sampler.stream()
        rank, world = self.share
        while True:
            yield [next(stream) for _ in range(self.batch_size * world)][rank::world]


def infinite_batches(dataset, sampler: ResumableSampler, batch_size: int, num_workers: int = 0, *,
                     collate_fn: Callable | None = None, pin_memory: bool = False,
                     worker_init_fn: Callable | None = None, prefetch_factor: int | None = None,
                     share: tuple[int, int] = (0, 1)) -> Iterator:
    """Batches of ``batch_size`` items forever, in the sampler's order, starting where the sampler stands.

    The sampler's position advances by each batch handed to the loop (not by what worker processes
    prefetch), so a checkpoint taken between steps resumes with exactly the next batch. The loader is built
    lazily at the first ``next()``, so ``restore()`` may run after this call. The DataLoader draws its worker
    seeds from its own generator (seeded from the sampler's position), never from the global torch RNG:
    with ``num_workers=0``, random augmentation uses the restored global RNGs and resumes bit-exactly; with
    workers it is reproducible from a given resume point.

    ``share=(rank, world_size)`` with a single-process sampler (``world_size=1``): each batch is rows ``rank,
    rank + world_size, ...`` of the next global batch of ``batch_size * world_size`` indices, and the sampler
    advances by the global batch, so every rank's sampler state is the one-process state (see
    :func:`colab_utils.distributed.rank_share`).
    """
    rank, world = share
    if not 0 <= rank < world or sampler.world_size != 1 and world != 1:
        raise ValueError(f"share={share!r} needs 0 <= rank < world_size and a sampler with world_size 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(dataset) != sampler.n:
        raise ValueError(f"the sampler was built for {sampler.n} items but the dataset has {len(dataset)}")

    def generate():
        seed = hash((sampler.seed, sampler.epoch, sampler.index, sampler.rank)) & 0x7FFF_FFFF_FFFF_FFFF
        extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 and prefetch_factor else {}
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=_StreamBatches(sampler, batch_size, share), num_workers=num_workers,
            collate_fn=collate_fn, pin_memory=pin_memory, worker_init_fn=worker_init_fn,
            generator=torch.Generator().manual_seed(seed), **extra)
        for batch in loader:
            sampler.advance(batch_size * world)
            yield batch

    return generate()


# ---------------------------------------------------------------------------------------------------------
# RNG state as plain tensors (loads with weights_only=True, no numpy globals)
# ---------------------------------------------------------------------------------------------------------

def capture_rng_state() -> dict:
    """Python, NumPy (legacy global), torch CPU and every CUDA device's generator state."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
    }


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state`; warns when the number of CUDA devices differs."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    saved_cuda = list(state.get("cuda", []))
    if torch.cuda.is_available() and saved_cuda:
        count = torch.cuda.device_count()
        if count != len(saved_cuda):
            warnings.warn(f"the checkpoint holds RNG states of {len(saved_cuda)} CUDA devices, this machine has "
                          f"{count}: restoring the first {min(count, len(saved_cuda))}", CheckpointWarning,
                          stacklevel=2)
        for device, rng in enumerate(saved_cuda[:count]):
            torch.cuda.set_rng_state(rng.cpu(), device)


# ---------------------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------------------

class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, file):
        self._file = file
        self._hash = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            written = self._file.write(data)
        except OSError as err:  # torch.save may re-raise it as a RuntimeError: keep the cause
            self.error = err
            raise
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self.size += view.nbytes
        return written

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _write_temp(final: Path, write: Callable[[Any], None]) -> tuple[Path, int, str]:
    """Write through ``write(file)`` into a temp file beside ``final``, fsync it and check the bytes on disk.

    Returns (temp path, size, sha256); on failure the temp file is removed and the error raised."""
    tmp = _temp_name(final)
    writer = None
    try:
        with open(tmp, "wb") as f:
            writer = _HashingWriter(f)
            write(writer)
            f.flush()
            os.fsync(f.fileno())
        digest = writer.hexdigest()
        if sha256_file(tmp) != digest:
            raise OSError(errno.EIO, f"the bytes read back from {tmp} differ from those written")
    except BaseException as err:
        _remove_quietly(tmp)
        if writer is not None and writer.error is not None and _find_oserror(err) is None:
            raise writer.error from err
        raise
    return tmp, writer.size, digest


def _commit(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over ``final`` (atomic on one filesystem) and make the rename durable."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _write_json_atomic(final: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, sort_keys=True).encode()
    tmp, _, _ = _write_temp(final, lambda f: f.write(text))
    _commit(tmp, final)


def _sha256_ticking(path: Path, tick: Callable[..., None]) -> str:
    """sha256 of a file on Drive, calling ``tick()`` after each chunk (a bounded reader watches it move)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            tick()
    return digest.hexdigest()


def _ago(timestamp: Any) -> str:
    if not timestamp:
        return "time unknown"
    minutes = (time.time() - float(timestamp)) / 60
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes:.0f} minute{'' if round(minutes) == 1 else 's'} ago"
    return f"{minutes / 60:.1f} hours ago"


def _find_oserror(err: BaseException) -> OSError | None:
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Entry:
    step: int
    path: Path
    manifest_path: Path
    manifest: dict | None
    problem: str | None  # why the manifest is unusable, when it is
    local: bool
    size_ok: bool | None = None  # Drive entries: the file has the size its manifest gives (a cheap check)


class CheckpointManager:
    """Saves and restores complete training state in ``run_dir`` (and a Drive copy in ``drive_dir``).

    - ``keep_last``: newest checkpoints kept; ``keep_every``: also keep the first checkpoint of every
      ``keep_every`` steps (milestones). The newest verified checkpoint is never deleted.
    - ``every_steps`` / ``every_minutes``: when :meth:`step` saves (either reached).
    - ``session_hours``: the runtime's lifetime counted from now; :meth:`step` stops with a checkpoint
      ``deadline_margin_s`` before it (default: 60 s or three times the slowest save + Drive copy seen).
    - ``drive_dir``: each checkpoint saved locally is then copied there in the background by ``drive_writer``
      (a :class:`colab_utils.drive.DriveWriter`; one is made when not given; give one to send a run's other
      Drive files through the same copier, and :meth:`close` closes it), its hash verified; a failed copy is
      retried, never raised. :meth:`latest` and :meth:`restore` look in both folders (Drive with a bounded
      wait) and :meth:`restore` says when Drive is behind local disk or local disk is empty.
    - ``copy_wait_s``: :meth:`close` (the end of a run, or a stop by a signal or the deadline) waits at most
      this long for Drive copies, and never past the session deadline; then it reports what is not on Drive.
    - ``handle_signals``: SIGTERM and SIGINT (Ctrl-C, the notebook's stop button) set a flag; the next
      :meth:`step` saves and returns True. A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self, run_dir: str | os.PathLike, *, keep_last: int = 3, keep_every: int | None = None,
                 every_steps: int | None = None, every_minutes: float | None = 10.0,
                 session_hours: float | None = None, drive_dir: str | os.PathLike | None = None,
                 prefix: str = "ckpt", handle_signals: bool = True, config: Any = None,
                 deadline_margin_s: float | None = None, verbose: bool = True,
                 drive_writer: DriveWriter | None = None, copy_wait_s: float = 60.0):
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be an int >= 1 (the newest checkpoint is always kept), got {keep_last!r}")
        for name, value in (("keep_every", keep_every), ("every_steps", every_steps)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        for name, value in (("every_minutes", every_minutes), ("session_hours", session_hours),
                            ("deadline_margin_s", deadline_margin_s)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be None or a number >= 0, got {value!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"prefix must be letters, digits, '_', '.', '-', got {prefix!r}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.drive_dir = Path(drive_dir) if drive_dir is not None else None
        # No file system access to drive_dir here: a hung Drive must not block the start of a run.
        if self.drive_dir is not None and os.path.abspath(self.drive_dir) == os.path.abspath(self.run_dir):
            raise ValueError(f"drive_dir and run_dir are the same folder ({self.run_dir})")
        if not (isinstance(copy_wait_s, (int, float)) and copy_wait_s >= 0):
            raise ValueError(f"copy_wait_s must be a number >= 0, got {copy_wait_s!r}")
        self.copy_wait_s = float(copy_wait_s)
        self.drive = drive_writer
        if self.drive is None and self.drive_dir is not None:
            self.drive = DriveWriter.bounded(self.copy_wait_s, verbose=verbose)
        self.keep_last, self.keep_every = keep_last, keep_every
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self.prefix = prefix
        self.config = plain(config, "config") if config is not None else None
        self.verbose = verbose
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.(pt|json)$")

        now = time.monotonic()
        self._t0 = now
        self._elapsed_base = 0.0
        self._last_save_time = now
        self._last_save_step: int | None = None
        self._last_path: Path | None = None
        self._deadline = now + session_hours * 3600.0 if session_hours is not None else None
        self._margin = deadline_margin_s
        self._slowest_save = 0.0
        self._stop_reason: str | None = None
        self._sigint_seen = False
        self._stopped = False
        self._closed = False
        self._last_seen: tuple[int, dict, Any] | None = None  # (step, objects, extra) from step()
        self._bad: set[Path] = set()
        self._warned: set[tuple[Path, str]] = set()
        self._verified: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._drive_lock = threading.RLock()  # Drive-side renames, deletions and scans (never held by the loop)
        self._drive_scan: list[_Entry] | None = None
        self._drive_newest: tuple[int, float] | None = None  # (step, time) of the newest checkpoint on Drive
        self._drive_problem: str | None = None
        self._copy_failures: dict[str, str] = {}
        self.drive_report: list[str] = []
        self._clean_stale_temps(self.run_dir)  # Drive's are cleaned by the writer at its first copy there

        self._previous_handlers: dict[int, Any] = {}
        if handle_signals:
            self._install_signal_handlers()

    @classmethod
    def for_run(cls, name: str, **kwargs) -> "CheckpointManager":
        """A manager for run ``name`` in the folders :func:`colab_utils.runtime.run_folders` gives: in Colab
        with Drive mounted ``/content/runs/<name>`` copied to ``MyDrive/colab_utils/runs/<name>``, elsewhere
        ``<project folder>/runs/<name>`` with no copy."""
        run_dir, drive_dir = runtime.run_folders(name)
        if drive_dir is not None:
            kwargs.setdefault("drive_dir", drive_dir)
        return cls(run_dir, **kwargs)

    # ---- time -------------------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Training seconds, accumulated across resumes."""
        return self._elapsed_base + (time.monotonic() - self._t0)

    def seconds_left(self) -> float | None:
        """Seconds until the session deadline (None without ``session_hours``)."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _deadline_margin(self) -> float:
        if self._margin is not None:
            return float(self._margin)
        slowest_copy = self.drive.slowest_copy if self.drive is not None else 0.0
        return max(60.0, 3.0 * (self._slowest_save + slowest_copy))

    def due(self, step: int) -> bool:
        """True when ``every_steps`` steps or ``every_minutes`` minutes have passed since the last save."""
        if self._last_save_step is not None and step <= self._last_save_step:
            return False
        since = step - (self._last_save_step or 0)
        if self.every_steps is not None and since >= self.every_steps:
            return True
        return (self.every_minutes is not None
                and time.monotonic() - self._last_save_time >= self.every_minutes * 60.0)

    def should_stop(self) -> bool:
        """True once SIGTERM/SIGINT arrived or the session deadline (minus the margin) is reached."""
        if self._stop_reason is None and self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= self._deadline_margin():
                self._stop_reason = f"session deadline in {max(left, 0.0):.0f} s"
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def last_saved_step(self) -> int | None:
        """Step of the last checkpoint written or restored by this manager."""
        return self._last_save_step

    # ---- the training-loop hook -------------------------------------------------------------------------

    def step(self, step: int, objects: Mapping[str, Any], *, extra: dict | Callable[[], dict] | None = None) -> bool:
        """Call once per iteration, after the update. Saves when due or when stopping; returns True when
        the loop must stop (a signal arrived or the deadline is near: a checkpoint has been written).
        ``extra`` may be a callable, evaluated only when a save happens."""
        self._last_seen = (step, objects, extra)
        if self.drive is not None:
            self.drive.poll()  # warns once when a Drive copy has stopped moving; never waits
        if self._stopped:  # the loop went on after being told to stop: keep the regular schedule
            if self.due(step):
                self.save(step, objects, extra=extra)
            return True
        if self.should_stop():
            if self._last_save_step != step:
                self.save(step, objects, extra=extra)
            self._stopped = True
            self._restore_signal_handlers()
            if self.verbose:
                print(f"Stopping at step {step} ({self._stop_reason}); checkpoint {self._last_path}")
            return True
        if self.due(step):
            self.save(step, objects, extra=extra)
        return False

    # ---- saving -----------------------------------------------------------------------------------------

    def _name(self, step: int, suffix: str) -> str:
        return f"{self.prefix}-{step:09d}.{suffix}"

    def save(self, step: int, objects: Mapping[str, Any], *, extra: dict | Callable[[], dict] | None = None) -> Path:
        """Write a checkpoint of ``objects`` (name -> anything with ``state_dict()``) and ``extra`` (plain
        values and tensors) at ``step``; returns its local path. Raises :class:`CheckpointSaveError` when the
        file cannot be written (the previous checkpoint is untouched)."""
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        started = time.monotonic()
        if callable(extra):
            extra = extra()
        states = {}
        for name, obj in objects.items():
            if not hasattr(obj, "state_dict"):
                raise TypeError(f"objects[{name!r}] (a {type(obj).__name__}) has no state_dict(); pass it in "
                                f"extra= if it is a plain value")
            states[name] = plain(obj.state_dict(), f"objects[{name!r}]")
        payload = {"format": FORMAT, "step": step, "time": time.time(), "elapsed": self.elapsed,
                   "config": self.config, "objects": states, "extra": plain(extra or {}, "extra"),
                   "rng": capture_rng_state(),
                   "versions": {"torch": str(torch.__version__), "python": ".".join(map(str, sys.version_info[:3]))}}
        final = self.run_dir / self._name(step, "pt")
        manifest_path = self.run_dir / self._name(step, "json")
        self._set_aside_if_bad(final)
        tmp = None
        try:
            tmp, size, digest = _write_temp(final, lambda f: torch.save(payload, f))
            manifest = {"format": FORMAT, "file": final.name, "step": step, "time": payload["time"],
                        "time_iso": datetime.fromtimestamp(payload["time"], timezone.utc).isoformat(timespec="seconds"),
                        "size": size, "sha256": digest, "elapsed": payload["elapsed"]}
            # The manifest goes first: a kill before the rename leaves a manifest without its file (ignored),
            # never a finished-looking checkpoint that nothing vouches for.
            _write_json_atomic(manifest_path, manifest)
            _commit(tmp, final)
        except Exception as err:
            if tmp is not None:
                _remove_quietly(tmp)
            raise self._save_error(step, final, err) from err
        stat = final.stat()
        self._verified[final] = (stat.st_size, stat.st_mtime_ns)
        self._last_save_step, self._last_save_time, self._last_path = step, time.monotonic(), final
        self._slowest_save = max(self._slowest_save, time.monotonic() - started)
        self._apply_retention(self.run_dir, keep=final)
        if self.drive is not None and self.drive_dir is not None:
            if self._closed:
                warnings.warn(f"{final} saved after close(): not copied to {self.drive_dir}", CheckpointWarning,
                              stacklevel=2)
            else:
                self._queue_copy(final, manifest)
        return final

    def _save_error(self, step: int, final: Path, err: Exception) -> CheckpointSaveError:
        previous = self._last_path if self._last_path is not None and self._last_path.exists() else None
        kept = f"The previous checkpoint {previous} is intact." if previous else "No earlier checkpoint was touched."
        oserr = _find_oserror(err)
        if oserr is not None and oserr.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                free = shutil.disk_usage(final.parent).free / 2**20
                where = f" ({free:.0f} MB free in {final.parent})"
            except OSError:
                where = ""
            return CheckpointSaveError(f"Could not save the step-{step} checkpoint {final}: no space left on the "
                                       f"device{where}. {kept} Free some space (old runs, outputs, downloads) or "
                                       f"lower keep_last, then resume.")
        return CheckpointSaveError(f"Could not save the step-{step} checkpoint {final}: {type(err).__name__}: "
                                   f"{err}. {kept}")

    def _set_aside_if_bad(self, final: Path) -> None:
        """A damaged file with the name we are about to write is renamed, not overwritten (kept for a look)."""
        if final in self._bad and final.exists():
            aside = final.with_name(final.name + ".corrupt")
            n = 1
            while aside.exists():
                aside = final.with_name(f"{final.name}.corrupt{n}")
                n += 1
            os.replace(final, aside)
            self._bad.discard(final)
            warnings.warn(f"{final} was damaged; renamed to {aside.name} before writing a new checkpoint of that "
                          f"step", CheckpointWarning, stacklevel=3)

    # ---- finding and verifying --------------------------------------------------------------------------

    def _scan(self, folder: Path, local: bool) -> list[_Entry]:
        entries: dict[int, _Entry] = {}
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        for name in names:
            match = self._pattern.match(name)
            if not match:
                continue
            step = int(match.group(1))
            if step not in entries:
                entries[step] = _Entry(step, folder / self._name(step, "pt"), folder / self._name(step, "json"),
                                       None, "no manifest beside it (the save was interrupted before it finished)",
                                       local)
        for entry in entries.values():
            if not entry.manifest_path.exists():
                continue
            try:
                entry.manifest = json.loads(entry.manifest_path.read_text())
                entry.problem = None
                if not isinstance(entry.manifest, dict) or not {"sha256", "size", "step"} <= set(entry.manifest):
                    raise ValueError("fields missing")
            except (OSError, ValueError) as err:
                entry.manifest = None
                entry.problem = f"its manifest {entry.manifest_path.name} is unreadable ({err})"
        return [e for e in entries.values() if e.path.exists()]

    def _entries(self) -> list[_Entry]:
        """Every checkpoint in run_dir and drive_dir, newest first (local before Drive at the same step). Drive
        is listed in a helper thread with a bounded wait; when it cannot be read only local ones are returned
        (and ``_drive_problem`` says why)."""
        entries = self._scan(self.run_dir, True)
        if self.drive_dir is not None:
            entries += self._drive_entries()
        entries.sort(key=lambda e: (e.step, e.local), reverse=True)
        return entries

    def _drive_entries(self) -> list[_Entry]:
        def listing(tick):
            with self._drive_lock:
                found = self._scan(self.drive_dir, False)
                for entry in found:
                    tick()
                    try:
                        entry.size_ok = entry.manifest is not None and \
                            entry.path.stat().st_size == entry.manifest["size"]
                    except OSError:
                        entry.size_ok = False
                return found

        ok, value = self.drive.call(listing, self.drive_dir, "listing")
        self._drive_problem = None if ok else value
        self._drive_scan = value if ok else None
        return value if ok else []

    def _verify(self, entry: _Entry, tick: Callable[..., None] | None = None) -> str | None:
        """None when ``entry`` is sound, else why it is not. ``tick`` marks progress of a read from Drive."""
        if entry.problem is not None:
            return entry.problem
        manifest = entry.manifest
        try:
            stat = entry.path.stat()
        except OSError as err:
            return f"unreadable ({err})"
        if self._verified.get(entry.path) == (stat.st_size, stat.st_mtime_ns):
            return None
        if stat.st_size != manifest["size"]:
            return f"it has {stat.st_size} bytes, its manifest says {manifest['size']} (truncated or incomplete)"
        try:
            digest = sha256_file(entry.path) if tick is None else _sha256_ticking(entry.path, tick)
        except OSError as err:
            return f"unreadable ({err})"
        if digest != manifest["sha256"]:
            return "its sha256 does not match its manifest (the file is damaged)"
        try:
            with zipfile.ZipFile(entry.path) as archive:
                if not any(n.endswith("data.pkl") for n in archive.namelist()):
                    return "not a PyTorch checkpoint archive"
        except (zipfile.BadZipFile, OSError) as err:
            return f"not a readable PyTorch checkpoint archive ({err})"
        self._verified[entry.path] = (stat.st_size, stat.st_mtime_ns)
        return None

    def _warn_skip(self, entry: _Entry, reason: str) -> None:
        self._bad.add(entry.path)
        if (entry.path, reason) not in self._warned:
            self._warned.add((entry.path, reason))
            warnings.warn(f"Skipping checkpoint {entry.path}: {reason}. Falling back to an older one; the file "
                          f"is left in place.", CheckpointWarning, stacklevel=3)

    def _verified_entries(self) -> Iterator[_Entry]:
        """Checkpoints that verify, newest first; warns about (and skips) the others."""
        with self._lock:
            entries = self._entries()
        for entry in entries:
            if entry.local:
                with self._lock:
                    reason = self._verify(entry)
            else:  # read from Drive in a helper thread, under the lock of the Drive copy thread's renames
                ok, reason = self.drive.call(lambda tick, e=entry: self._verify_on_drive(e, tick), entry.path,
                                             "checking")
                if not ok:
                    continue  # Drive stopped answering: its checkpoints are not considered (warned once)
            if reason is None:
                yield entry
            else:
                self._warn_skip(entry, reason)

    def _verify_on_drive(self, entry: _Entry, tick: Callable[..., None]) -> str | None:
        with self._drive_lock:
            return self._verify(entry, tick)

    def latest(self) -> Path | None:
        """The newest checkpoint (in run_dir or drive_dir) whose manifest, size and sha256 verify."""
        return next((e.path for e in self._verified_entries()), None)

    def checkpoints(self) -> list[dict]:
        """Manifests of the checkpoints on disk (both folders), oldest first, with their path and folder."""
        with self._lock:
            entries = self._entries()
        return [dict(e.manifest or {}, path=str(e.path), local=e.local, problem=e.problem) for e in reversed(entries)]

    # ---- restoring --------------------------------------------------------------------------------------

    def restore(self, objects: Mapping[str, Any], *, path: str | os.PathLike | None = None,
                map_location: Any = "cpu", strict: bool = True, restore_rng: bool = True) -> dict | None:
        """Load the newest verified checkpoint (or ``path``) into ``objects``.

        Returns ``{"step", "extra", "elapsed", "config", "path"}``, or None when there is no checkpoint.
        Raises :class:`CheckpointMismatchError` when the checkpoint does not fit ``objects`` (nothing is
        loaded then). A ``path`` that is unsafe or damaged raises :class:`UnsafeCheckpointError` or
        :class:`CheckpointCorruptError`; such a file found in the run folders is skipped with a warning that
        says which it is, and the next older checkpoint is used."""
        payload, source = None, None
        if path is not None:
            source = Path(path)
            payload = safe_load(source, map_location)
        else:
            for entry in self._verified_entries():
                try:
                    payload, source = safe_load(entry.path, map_location), entry.path
                    break
                except (CheckpointCorruptError, UnsafeCheckpointError) as err:
                    self._warn_skip(entry, str(err))
            if payload is None:
                self._where_we_stand()
                return None
        if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
            found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
            what = identify(payload)
            raise CheckpointMismatchError(f"{source} is not a colab_utils training checkpoint (format {found!r}, "
                                          f"expected {FORMAT!r})" + (f": it is {what}" if what else
                                                                     "; load model weights with their own loader"),
                                          path=source)
        self._load_objects(objects, payload, source, strict)
        if restore_rng:
            restore_rng_state(payload["rng"])
        self._warn_config_change(payload.get("config"), source)
        step = int(payload["step"])
        now = time.monotonic()
        self._elapsed_base, self._t0 = float(payload.get("elapsed", 0.0)), now
        self._last_save_step, self._last_save_time, self._last_path = step, now, source
        if self.verbose:
            print(f"Resumed from {source} (step {step}, {self._elapsed_base / 3600:.2f} h trained)")
        if path is None or self.verbose:
            self._where_we_stand()
        return {"step": step, "extra": payload.get("extra", {}), "elapsed": self._elapsed_base,
                "config": payload.get("config"), "path": source}

    def _load_objects(self, objects: Mapping[str, Any], payload: Mapping, source: Path, strict: bool) -> None:
        saved = payload["objects"]
        missing = [name for name in objects if name not in saved]
        unexpected = [name for name in saved if name not in objects]
        lines, mismatched, missing_keys, unexpected_keys = [], [], [], []
        for name, obj in objects.items():
            if name not in saved:
                continue
            current = obj.state_dict()
            if not (_is_tensor_dict(current) and _is_tensor_dict(saved[name])):
                continue
            report = compare_state_dicts(current, saved[name])
            if not strict:  # keys may come and go; shapes must still agree
                report = dataclasses.replace(report, missing=[], unexpected=[])
            if report:
                lines.append(f"  {name}: {report.describe(8)}")
            mismatched += [(name, key, found, expected) for key, found, expected in report.mismatched]
            missing_keys += [(name, k) for k in report.missing]
            unexpected_keys += [(name, k) for k in report.unexpected]
        if missing and strict:
            lines.insert(0, f"  objects missing from the checkpoint: {missing} (it holds {sorted(saved)})")
        elif missing:
            warnings.warn(f"{source}: {missing} not in the checkpoint; left as they are", CheckpointWarning,
                          stacklevel=3)
        if unexpected and strict:
            lines.insert(0, f"  objects in the checkpoint but not given to restore(): {unexpected}")
        if lines:
            diff = _config_diff(payload.get("config"), self.config)
            if diff:
                lines.append("  config differs: " + "; ".join(diff[:10]))
            raise CheckpointMismatchError(f"{source} does not fit what is being restored (another architecture or "
                                          f"config?); nothing was loaded:\n" + "\n".join(lines), path=source,
                                          missing=missing + missing_keys, unexpected=unexpected + unexpected_keys,
                                          mismatched=mismatched)
        for name, obj in objects.items():
            if name not in saved:
                continue
            try:
                if isinstance(obj, torch.nn.Module):
                    obj.load_state_dict(saved[name], strict=strict)
                else:
                    obj.load_state_dict(saved[name])
            except Exception as err:
                raise CheckpointMismatchError(f"{source}: could not load {name!r} ({type(obj).__name__}): {err}",
                                              path=source) from err

    def _warn_config_change(self, saved: Any, source: Path) -> None:
        diff = _config_diff(saved, self.config)
        if diff:
            warnings.warn(f"{source} was written with another config: " + "; ".join(diff[:10]), CheckpointWarning,
                          stacklevel=3)

    # ---- retention --------------------------------------------------------------------------------------

    def _apply_retention(self, folder: Path, keep: Path) -> None:
        """Delete checkpoints beyond keep_last that are not milestones; never ``keep`` (just verified), never a
        damaged or incomplete file."""
        with self._lock if folder == self.run_dir else self._drive_lock:  # Drive: from the copy thread
            entries = [e for e in self._scan(folder, folder == self.run_dir)
                       if e.problem is None and e.path not in self._bad]
            entries.sort(key=lambda e: e.step, reverse=True)
            if not any(e.path == keep for e in entries):
                return
            kept = {e.path for e in entries[:self.keep_last]} | {keep}
            if self.keep_every:
                first_of_block: dict[int, _Entry] = {}
                for e in entries:
                    block = e.step // self.keep_every
                    if block not in first_of_block or e.step < first_of_block[block].step:
                        first_of_block[block] = e
                kept |= {e.path for e in first_of_block.values()}
            for e in entries:
                if e.path in kept:
                    continue
                _remove_quietly(e.path)  # data first: a manifest without its file is ignored
                _remove_quietly(e.manifest_path)
                self._verified.pop(e.path, None)

    def _clean_stale_temps(self, folder: Path) -> None:
        """Remove temp files whose writer process is gone (torn writes, never checkpoints)."""
        temp = re.compile(rf"^\.{re.escape(self.prefix)}-\d+\.(pt|json)\.tmp-(\d+)-[0-9a-f]+$")
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            match = temp.match(name)
            if match and int(match.group(2)) != os.getpid() and not _pid_alive(int(match.group(2))):
                _remove_quietly(folder / name)

    # ---- Drive copies -----------------------------------------------------------------------------------

    @property
    def _group(self) -> str:
        return f"checkpoints {self.drive_dir}"

    def _queue_copy(self, final: Path, manifest: dict) -> None:
        """Copy the local checkpoint ``final`` to drive_dir in the background: the copy is read back against the
        manifest's sha256, the manifest lands first, then the checkpoint is renamed into place and Drive's
        retention applied (all in the copy thread; a failure is warned about and retried, never raised)."""
        target = self.drive_dir / final.name
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        step = int(manifest["step"])

        def before_commit(_target: Path) -> None:
            self.drive.write_now(target.with_suffix(".json"), data)

        def after() -> None:
            stat = target.stat()
            self._verified[target] = (stat.st_size, stat.st_mtime_ns)
            if self._drive_newest is None or step >= self._drive_newest[0]:
                self._drive_newest = (step, float(manifest["time"]))
            self._apply_retention(self.drive_dir, keep=target)

        def failed(message: str) -> None:
            self._copy_failures[final.name] = f"copy of {final.name} to {self.drive_dir} failed: {message}"

        self.drive.put(final, target, kind="checkpoint", label=f"checkpoint {final.name}",
                       sha256=manifest["sha256"], before_commit=before_commit, after=after, lock=self._drive_lock,
                       on_fail=failed, group=self._group)

    @property
    def copy_errors(self) -> list[str]:
        """One message per checkpoint whose Drive copy failed at least once (the local file is intact)."""
        return list(self._copy_failures.values())

    @property
    def last_checkpoint(self) -> Path | None:
        """The checkpoint this manager last wrote (local) or restored from; no file system access."""
        return self._last_path

    def wait_for_copies(self, timeout: float | None = None) -> bool:
        """Wait until the queued checkpoint copies are done, at most ``timeout`` seconds, and no longer once a
        copy has stopped moving (see :class:`colab_utils.drive.DriveWriter`). True when none is left."""
        if self.drive is None:
            return True
        pending = self.drive.pending(self._group)
        if pending and self.verbose:
            print(f"Waiting for {pending} checkpoint cop{'y' if pending == 1 else 'ies'} to {self.drive_dir} ...")
        return self.drive.wait(timeout, group=self._group)

    def copy_wait_bound(self) -> float:
        """How long the end of a run (or a stop by a signal or the deadline) waits for Drive copies:
        ``copy_wait_s``, and never past the session deadline (5 s before it)."""
        left = self.seconds_left()
        return self.copy_wait_s if left is None else min(self.copy_wait_s, max(0.0, left - 5.0))

    def drive_status(self) -> str:
        """One line on the newest checkpoint on Drive ("last checkpoint on Drive: step N, M minutes ago") from
        what this manager saw (its restore and its copies); no file system access."""
        if self.drive_dir is None:
            return f"no Drive copy: checkpoints are only on local disk ({self.run_dir})"
        if self._drive_newest is None:
            return "no checkpoint on Drive yet" + (f" (Drive: {self._drive_problem})" if self._drive_problem else "")
        step, when = self._drive_newest
        text = f"last checkpoint on Drive: step {step}, {_ago(when)}"
        if self._last_save_step is not None and self._last_save_step > step:
            text += (f"; local disk has step {self._last_save_step}, so Drive is {self._last_save_step - step} "
                     f"steps behind")
        return text

    def _where_we_stand(self) -> None:
        """After looking for a checkpoint: say what local disk and Drive each hold, so a user knows what a
        disconnect would cost now, and copy the newest local checkpoint when Drive is behind. The Drive side is
        the newest checkpoint whose size matches its manifest (from the bounded listing; no full read)."""
        if self.drive_dir is None or self.drive is None:
            return
        local = None
        for entry in sorted(self._scan(self.run_dir, True), key=lambda e: e.step, reverse=True):
            with self._lock:
                if self._verify(entry) is None:
                    local = entry
                    break
        if self._drive_scan is None:
            head = f"Drive ({self.drive_dir}) could not be read ({self._drive_problem})"
            if local is None:
                warnings.warn(f"{head} and local disk ({self.run_dir}) holds no checkpoint: the run starts from step "
                              f"0. If it has checkpoints on Drive, stop now, fix Drive (remount it: "
                              f"colab_utils.runtime.mount_drive(force_remount=True)) and start again.",
                              CheckpointWarning, stacklevel=3)
            elif self.verbose:
                print(f"{head}: resumed from local step {local.step} ({_ago(local.manifest.get('time'))}); Drive "
                      f"copies are retried in the background.")
            return
        drive = next((e for e in sorted(self._drive_scan, key=lambda e: e.step, reverse=True) if e.size_ok), None)
        if drive is not None:
            self._drive_newest = (drive.step, float(drive.manifest.get("time") or 0.0))
        say = print if self.verbose else (lambda *_: None)
        if local is None and drive is None:
            return  # a new run
        if local is None:
            say(f"No checkpoint on local disk ({self.run_dir}: a new session, or it was wiped): resumed from the "
                f"Drive copy of step {drive.step} ({_ago(drive.manifest.get('time'))}).")
        elif drive is None or local.step > drive.step:
            have = (f"Drive has step {drive.step} ({_ago(drive.manifest.get('time'))})" if drive is not None
                    else "Drive has no checkpoint of this run yet")
            lost = f"{local.step - drive.step} steps" if drive is not None else "everything since the start"
            say(f"Drive is behind local disk: {have}, local disk step {local.step} "
                f"({_ago(local.manifest.get('time'))}); a disconnect now would lose {lost}. Copying step "
                f"{local.step} to Drive now.")
            self._queue_copy(local.path, local.manifest)
        elif local.step < drive.step:
            say(f"Local disk is behind Drive (step {local.step} vs {drive.step}): resumed from Drive.")
        else:
            say(f"Local disk and Drive both hold step {local.step} ({_ago(local.manifest.get('time'))}).")

    # ---- signals and lifetime ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):
                pass

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            if self._sigint_seen:
                self._restore_signal_handlers()
                raise KeyboardInterrupt  # pressed twice: the user insists
            self._sigint_seen = True
        if self._stop_reason is None:
            self._stop_reason = f"{signal.Signals(signum).name} received"

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._previous_handlers.clear()

    def request_stop(self, reason: str = "stop requested") -> None:
        """Make the next :meth:`step` save and return True (what a signal does)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def close(self) -> None:
        """Restore the signal handlers, wait at most :meth:`copy_wait_bound` seconds for the Drive copies (a hung
        copy is abandoned), then close the Drive writer and report what is not on Drive (``drive_report``, also
        warned)."""
        if self._closed:
            return
        self._closed = True
        self._restore_signal_handlers()
        if self.drive is not None:
            pending, bound = self.drive.pending(), self.copy_wait_bound()
            if pending and self.verbose:
                print(f"Waiting at most {bound:.0f} s for {pending} Drive cop{'y' if pending == 1 else 'ies'} to "
                      f"{self.drive_dir} ...")
            self.drive_report = self.drive.close(bound)
            if self.verbose and self.drive_dir is not None:
                print(self.drive_status())

    def __enter__(self) -> "CheckpointManager":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is KeyboardInterrupt and self._last_seen is not None:
                step, objects, extra = self._last_seen
                if self._last_save_step != step:
                    # The interrupt may have landed inside the next update; the state is the one after `step`
                    # plus, at worst, part of one more update. Better than losing everything since the last save.
                    path = self.save(step, objects, extra=extra)
                    if self.verbose:
                        print(f"Interrupted: saved step {step} to {path}")
        finally:
            self.close()


def _is_tensor_dict(state: Any) -> bool:
    return isinstance(state, Mapping) and len(state) > 0 and all(isinstance(v, torch.Tensor) for v in state.values())


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, Mapping):
        out = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: config}


def _config_diff(saved: Any, current: Any) -> list[str]:
    if saved is None or current is None:
        return []
    a, b = _flatten(saved), _flatten(current)
    diff = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        same = torch.equal(va, vb) if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) else va == vb
        if not same:
            diff.append(f"{key}: checkpoint {va!r}, now {vb!r}")
    return diff
