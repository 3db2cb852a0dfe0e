"""Both trainers against real mounts standing in for /content/drive: a full tmpfs, a tmpfs detached with
``umount -l`` mid-run, and a FUSE mount with no daemon (hung; then stale once the connection is aborted).
Needs root (``mount``); skips with the reason elsewhere."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from colab_utils import drive
from colab_utils.checkpoint import CheckpointManager, safe_load, sha256_file
from colab_utils.data.synthetic import write_domain_folders

from tests.helpers_drive import join_copy_threads
from tests.test_drive_faults import drive_checkpoints, run_cli, warned


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; None when done, else why it could not be."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs these as root)"
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs failed here: {done.stderr.strip() or done.returncode}"


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A function mounting a tmpfs (skips the test when it cannot); every mount is detached at the end."""
    mounted = []

    def make(path: Path, size: str) -> Path:
        problem = _mount_tmpfs(path, size)
        if problem is not None:
            pytest.skip(problem)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        if os.path.ismount(path):
            _umount(path)


def _mount_fuse_without_daemon(path: Path) -> int:
    """A FUSE mount nobody answers: every request blocks (hung Drive) until the returned /dev/fuse descriptor is
    closed, which aborts the connection (a stale Drive: ENOTCONN)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting FUSE needs root (CI runs these as root)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this machine")
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"colab_utils_test", str(path).encode(), b"fuse", 0, options) != 0:
        err = ctypes.get_errno()
        os.close(fd)
        pytest.skip(f"mounting FUSE failed here: {os.strerror(err)}")
    return fd


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_domain_folders(tmp_path_factory.mktemp("faces"), n_train=8, n_val=2, size=32, seed=0)


@pytest.fixture(autouse=True)
def setup(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr("colab_utils.stargan.train._plot_losses", lambda log, folder: None)
    yield
    torch.set_num_threads(before)


def verified_local(run: Path) -> int:
    latest = CheckpointManager(run, every_minutes=None, handle_signals=False, verbose=False).latest()
    assert latest is not None and latest.parent == run
    manifest = json.loads(latest.with_suffix(".json").read_text())
    assert sha256_file(latest) == manifest["sha256"] and safe_load(latest)["step"] == manifest["step"]
    return manifest["step"]


@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_a_full_tmpfs_drive(trainer, faces, tmp_path, tmpfs, monkeypatch, capsys):
    root = tmpfs(tmp_path / "content_drive", "64k")  # a picture fits, a checkpoint does not
    monkeypatch.setenv(drive.ROOT_ENV, str(root))
    drive_dir = root / "MyDrive" / "run"
    assert run_cli(trainer, tmp_path / "run", drive_dir, faces, 3) == 0
    said = warned(capsys.readouterr().err)
    assert any(m.startswith("Google Drive is full: could not copy") and "[Errno 28] No space left on device" in m
               for m in said), said
    assert verified_local(tmp_path / "run") == 3
    assert not [p for p in root.rglob("*") if "drive-partial" in p.name]  # the partial copies were removed
    for pt in root.rglob("ckpt-*.pt"):
        assert sha256_file(pt) == json.loads(pt.with_suffix(".json").read_text())["sha256"]
    assert any(m.startswith("Not everything reached Google Drive") and "ckpt-000000003.pt saved locally" in m
               for m in said)


@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_drive_detached_with_umount_mid_run(trainer, faces, tmp_path, tmpfs, monkeypatch, capsys):
    root = tmpfs(tmp_path / "content_drive", "64m")
    monkeypatch.setenv(drive.ROOT_ENV, str(root))
    real_check, calls, lock = drive.mount_problem, [], threading.Lock()

    def check_then_detach(path):  # the 6th mount check finds Drive gone: a disconnect in mid-run
        with lock:
            calls.append(path)
            if len(calls) == 6:
                _umount(root)
        return real_check(path)

    monkeypatch.setattr(drive, "mount_problem", check_then_detach)
    assert run_cli(trainer, tmp_path / "run", root / "MyDrive" / "run", faces, 3) == 0
    said = warned(capsys.readouterr().err)
    assert not os.path.ismount(root) and len(calls) > 6
    assert any(m.startswith("Google Drive is not mounted: could not copy") and "is not a mount point" in m
               for m in said), said
    assert list(root.iterdir()) == []  # nothing rebuilt under the bare mount point
    assert verified_local(tmp_path / "run") == 3


@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_a_hung_then_stale_fuse_drive(trainer, faces, tmp_path, monkeypatch, capsys):
    root = tmp_path / "content_drive"
    fd = _mount_fuse_without_daemon(root)
    monkeypatch.setenv(drive.ROOT_ENV, str(root))
    drive_dir = root / "MyDrive" / "run"
    closed = False
    try:
        # Hung: every request to the mount blocks; the run ends on its own, within the bound.
        assert run_cli(trainer, tmp_path / "run", drive_dir, faces, 3, "--drive-wait-s", "1") == 0
        said = warned(capsys.readouterr().err)
        assert any(m.startswith("Google Drive is not answering") for m in said), said
        report = next(m for m in said if m.startswith("Not everything reached Google Drive"))
        assert "ckpt-000000003.pt saved locally at" in report and "Drive looks hung" in report
        assert verified_local(tmp_path / "run") == 3
        # Stale: the connection is aborted (the blocked threads get ENOTCONN and end); the next session resumes
        # from local disk and says why Drive was not used.
        os.close(fd)
        closed = True
        assert join_copy_threads(), "threads blocked on the hung mount did not end after the abort"
        assert run_cli(trainer, tmp_path / "run", drive_dir, faces, 4) == 0
        out, err = capsys.readouterr()
        said = warned(err)
        assert any(m.startswith("the Google Drive mount is stale") and "Transport endpoint is not connected" in m
                   for m in said), said
        assert "could not be read" in out and "resumed from local step 3" in out
        assert verified_local(tmp_path / "run") == 4
    finally:
        if not closed:
            os.close(fd)
        _umount(root)
    assert join_copy_threads()
