"""Where am I running? Colab or not, Drive or local disk, which GPU, which precision, which seed.

This is the only module that asks those questions; everything else takes its answers.
"""
from __future__ import annotations

import importlib.util
import os
import random
import re
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

DRIVE_MOUNT = "/content/drive"
DRIVE_PROJECT = "MyDrive/colab_utils"
LOCAL_PROJECT = "checkpoints"


def in_colab() -> bool:
    """True inside a Google Colab runtime (checked without importing google.colab)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def mount_drive(path: str = DRIVE_MOUNT, *, force_remount: bool = False, verbose: bool = True) -> Path:
    """Mount Google Drive at ``path`` in Colab and return the mount point.

    Outside Colab there is no Drive to mount: this prints that it will use local disk and returns the
    local project folder (``./checkpoints``) instead of raising.
    """
    if not in_colab():
        local = Path(LOCAL_PROJECT).resolve()
        local.mkdir(parents=True, exist_ok=True)
        if verbose:
            print(f"Not in Colab: no Google Drive to mount; using local folder {local}")
        return local
    mount = Path(path)
    if " " in str(mount):
        raise ValueError(f"Drive mount point {mount} contains a space; Colab refuses such paths")
    if mount.is_symlink():
        raise ValueError(f"Drive mount point {mount} is a symbolic link; Colab refuses such paths")
    mounted = _looks_mounted(mount)
    if mounted and not force_remount:
        if verbose:
            print(f"Google Drive already mounted at {mount}")
        return _announce_drive_root(mount)
    if not mounted and mount.is_dir() and any(mount.iterdir()):
        raise ValueError(f"Drive mount point {mount} exists and is not empty (and no Drive is mounted there); "
                         "Colab mounts only into an empty folder: move its contents away or pick another folder")
    from google.colab import drive  # type: ignore[import-not-found]

    # force_remount=True on a live (or stale) mount: Colab's own drive.mount unmounts it first.
    drive.mount(str(mount), force_remount=force_remount)
    return _announce_drive_root(mount)


def _announce_drive_root(mount: Path) -> Path:
    """colab_utils.drive checks that Drive is still mounted before every copy: tell it where this one lives."""
    if mount.resolve() != Path(DRIVE_MOUNT):
        os.environ["COLAB_UTILS_DRIVE_ROOT"] = str(mount.resolve())
    return mount


def _looks_mounted(mount: Path) -> bool:
    """A Drive is (or was) mounted at ``mount``: its ``MyDrive`` folder is there, the folder is a mount point,
    or it cannot even be listed (a stale FUSE mount answers "Transport endpoint is not connected")."""
    try:
        return (mount / "MyDrive").is_dir() or os.path.ismount(mount)
    except OSError:
        return True


def drive_mounted(path: str = DRIVE_MOUNT) -> bool:
    return (Path(path) / "MyDrive").is_dir()


def project_dir(name: str | None = None, *, drive_path: str = DRIVE_MOUNT, local_root: str | os.PathLike | None = None,
                create: bool = True) -> Path:
    """The folder that holds downloads and runs: ``MyDrive/colab_utils`` when Drive is mounted, else
    ``./checkpoints`` (or ``local_root``). With ``name``, the sub-folder of that name. Created if missing,
    unless ``create=False`` (to look for a file without leaving folders behind)."""
    if local_root is None and drive_mounted(drive_path):
        root = Path(drive_path) / DRIVE_PROJECT
    else:
        root = Path(local_root if local_root is not None else LOCAL_PROJECT)
    out = root / name if name else root
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def compile_cache_dir(*, drive_path: str = DRIVE_MOUNT) -> Path | None:
    """Where torch.compile's inductor keeps its compiled kernels: ``MyDrive/colab_utils/compile_cache/torch-<version>``
    in Colab with Drive mounted (a new session reuses the last one's kernels instead of compiling for minutes
    again), else None (torch's default temporary folder). The inductor's own keys include the GPU and the code,
    so one folder per torch version is enough."""
    if not (in_colab() and drive_mounted(drive_path)):
        return None
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", torch.__version__)
    return project_dir("compile_cache", drive_path=drive_path, create=False) / f"torch-{version}"


COLAB_RUNS = "/content/runs"
_RUN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class RunFolders(NamedTuple):
    """Where a training run lives: ``run_dir`` receives the checkpoints (fast local disk); ``drive_dir``, when
    not None, receives a copy of each (Google Drive), so a new session finds the run again."""

    run_dir: Path
    drive_dir: Path | None


def run_folders(name: str, *, drive_path: str = DRIVE_MOUNT, local_root: str | os.PathLike | None = None) -> RunFolders:
    """The one rule for where run ``name`` lives, used by the notebooks and ``CheckpointManager.for_run``.

    In Colab with Drive mounted: checkpoints are written to ``/content/runs/<name>`` (local disk: fast, and a
    write never waits for Drive) and copied to ``MyDrive/colab_utils/runs/<name>``. Elsewhere:
    ``./checkpoints/runs/<name>`` (or ``<local_root>/runs/<name>``), with no copy. The run's own folders are
    not created here (the checkpoint manager does that)."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"run name must be letters, digits, '_', '.', '-', got {name!r}")
    if local_root is None and in_colab() and drive_mounted(drive_path):
        return RunFolders(Path(COLAB_RUNS) / name, project_dir("runs", drive_path=drive_path) / name)
    return RunFolders(project_dir("runs", local_root=local_root) / name, None)


@dataclass(frozen=True)
class DeviceInfo:
    """What the training code needs to know about the accelerator."""

    device: str  # "cuda", "mps" or "cpu"
    name: str
    total_memory_gb: float | None
    free_memory_gb: float | None
    compute_capability: tuple[int, int] | None
    bf16_supported: bool
    fp16_supported: bool
    precision: str  # "bf16", "fp16" (with a grad scaler) or "fp32"
    note: str

    @property
    def uses_grad_scaler(self) -> bool:
        return self.precision == "fp16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        rows = [("device", self.device), ("name", self.name)]
        if self.total_memory_gb is not None:
            rows.append(("memory", f"{self.free_memory_gb:.1f} GB free of {self.total_memory_gb:.1f} GB"))
        if self.compute_capability is not None:
            rows.append(("compute capability", "%d.%d" % self.compute_capability))
        rows += [
            ("bf16 / fp16", f"{'yes' if self.bf16_supported else 'no'} / {'yes' if self.fp16_supported else 'no'}"),
            ("training precision", self.precision + (" + grad scaler" if self.uses_grad_scaler else "")),
            ("note", self.note),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def choose_precision(compute_capability: tuple[int, int] | None) -> tuple[str, str]:
    """bf16 on Ampere (8.x) and newer, fp16 with a grad scaler on older CUDA GPUs (T4 7.5, V100 7.0,
    P100 6.0), fp32 without CUDA. Returns (precision, reason)."""
    if compute_capability is None:
        return "fp32", "no CUDA GPU: training runs in fp32 on the CPU (slow; use a Colab GPU runtime for real runs)"
    major, minor = compute_capability
    if major >= 8:
        return "bf16", f"sm_{major}{minor} has bf16 tensor cores: bf16 autocast, no grad scaler needed"
    if major >= 6:
        return "fp16", f"sm_{major}{minor} has no bf16: fp16 autocast with a dynamic grad scaler"
    return "fp32", f"sm_{major}{minor} is too old for useful mixed precision: fp32"


def describe_device(device: str | torch.device | None = None, *, verbose: bool = False) -> DeviceInfo:
    """Report the accelerator and the precision our trainers will use on it."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        cc = (props.major, props.minor)
        precision, note = choose_precision(cc)
        info = DeviceInfo("cuda", props.name, total / 2**30, free / 2**30, cc, cc[0] >= 8, cc[0] >= 6, precision, note)
    elif dev.type == "mps":
        info = DeviceInfo("mps", "Apple GPU (MPS)", None, None, None, False, True, "fp32", "MPS: fp32 (mixed precision not tuned here)")
    else:
        precision, note = choose_precision(None)
        info = DeviceInfo("cpu", f"CPU ({os.cpu_count()} cores)", None, None, None, False, False, precision, note)
    if verbose:
        print(info)
    return info


def default_device() -> torch.device:
    """cuda when present, else cpu (MPS is opt-in: pass device='mps')."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every CUDA device).

    With ``deterministic=True`` cuDNN picks deterministic kernels too (slower on GPU)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def smoke_mode() -> bool:
    """True when notebooks and CLIs should run their tiny CPU smoke configuration (CI, the README's main
    command). Set with the environment variable ``COLAB_UTILS_SMOKE=1``."""
    return os.environ.get("COLAB_UTILS_SMOKE", "0").strip().lower() in {"1", "true", "yes", "on"}


def output_dir(name: str | None = None) -> Path:
    """Where notebooks write their pictures: ``$COLAB_UTILS_OUTPUT`` when set (CI, the README's main command),
    else ``<project folder>/outputs`` (on Drive when mounted); with ``name``, its sub-folder of that name.
    Created if missing. The main command already points ``$COLAB_UTILS_OUTPUT`` at a folder named after the
    notebook, so a ``name`` equal to that folder's name is not added a second time."""
    env = os.environ.get("COLAB_UTILS_OUTPUT")
    root = Path(env) if env else project_dir("outputs")
    out = root / name if name and name != root.name else root
    out.mkdir(parents=True, exist_ok=True)
    return out
