import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from colab_utils import runtime


def test_not_colab_here():
    assert runtime.in_colab() is False


def test_mount_drive_outside_colab_returns_local_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = runtime.mount_drive()
    assert path == (tmp_path / "checkpoints").resolve()
    assert path.is_dir()
    assert "Not in Colab" in capsys.readouterr().out


def test_project_dir_local_and_drive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runtime.project_dir("runs") == (tmp_path / "checkpoints" / "runs").resolve()
    fake_drive = tmp_path / "drive"
    (fake_drive / "MyDrive").mkdir(parents=True)
    got = runtime.project_dir("downloads", drive_path=str(fake_drive))
    assert got == (fake_drive / "MyDrive" / "colab_utils" / "downloads").resolve()


def test_run_folders_is_the_one_rule_for_where_a_run_lives(tmp_path, monkeypatch):
    from colab_utils.checkpoint import CheckpointManager

    monkeypatch.chdir(tmp_path)
    local = runtime.run_folders("faces")           # not Colab: ./checkpoints/runs/<name>, no Drive copy
    assert local == ((tmp_path / "checkpoints" / "runs" / "faces").resolve(), None)
    elsewhere = runtime.run_folders("faces", local_root=tmp_path / "x")
    assert elsewhere.run_dir == (tmp_path / "x" / "runs" / "faces").resolve()
    manager = CheckpointManager.for_run("faces", handle_signals=False, verbose=False)
    assert (manager.run_dir, manager.drive_dir) == local
    manager.close()
    fake_drive = tmp_path / "drive"
    (fake_drive / "MyDrive").mkdir(parents=True)
    assert runtime.run_folders("faces", drive_path=str(fake_drive)).drive_dir is None  # mounted, but not Colab
    monkeypatch.setattr(runtime, "in_colab", lambda: True)
    run_dir, drive_dir = runtime.run_folders("faces", drive_path=str(fake_drive))
    assert run_dir == Path("/content/runs/faces")  # Colab: fast local disk, copied to Drive
    assert drive_dir == (fake_drive / "MyDrive" / "colab_utils" / "runs" / "faces").resolve()
    for bad in ("", "a/b", "..", "my run"):
        with pytest.raises(ValueError, match="run name must be"):
            runtime.run_folders(bad)


def test_describe_device_cpu_is_fp32():
    info = runtime.describe_device("cpu")
    assert info.device == "cpu"
    assert info.precision == "fp32"
    assert info.autocast_dtype is None and not info.uses_grad_scaler
    text = str(info)
    assert "fp32" in text and "training precision" in text


@pytest.mark.parametrize("cc,expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"),
                                         ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 0), "fp16"),
                                         ((3, 7), "fp32"), (None, "fp32")])
def test_precision_choice(cc, expected):
    precision, reason = runtime.choose_precision(cc)
    assert precision == expected
    assert reason


def test_seed_everything_covers_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.seed_everything(123)
    a = draw()
    runtime.seed_everything(123)
    b = draw()
    runtime.seed_everything(124)
    c = draw()
    assert a == b
    assert all(x != y for x, y in zip(a, c))


@pytest.mark.parametrize("bad", [-1, 1.5, "7"])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(bad)


def test_smoke_mode_and_output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_UTILS_SMOKE", "1")
    assert runtime.smoke_mode()
    monkeypatch.setenv("COLAB_UTILS_SMOKE", "0")
    assert not runtime.smoke_mode()
    monkeypatch.setenv("COLAB_UTILS_OUTPUT", str(tmp_path / "o"))
    assert runtime.output_dir("x") == tmp_path / "o" / "x"
    assert (tmp_path / "o" / "x").is_dir()
    # the main command names the folder after the notebook already: no outputs/02_x/02_x/
    monkeypatch.setenv("COLAB_UTILS_OUTPUT", str(tmp_path / "02_x"))
    assert runtime.output_dir("02_x") == tmp_path / "02_x"
    assert not (tmp_path / "02_x" / "02_x").exists()


class StandInDrive:
    """``google.colab.drive`` as Colab behaves: refuses a non-empty folder that holds no Drive, and with
    ``force_remount=True`` unmounts a mounted Drive before mounting it again."""

    def __init__(self):
        self.calls = []

    def mount(self, mountpoint, force_remount=False, timeout_ms=120000):
        import shutil
        from pathlib import Path
        self.calls.append((mountpoint, force_remount))
        point = Path(mountpoint)
        mounted = (point / "MyDrive").is_dir()
        if mounted and not force_remount:
            return
        if mounted:
            shutil.rmtree(point / "MyDrive")          # the unmount
        if point.is_dir() and any(point.iterdir()):
            raise ValueError("Mountpoint must not already contain files")
        (point / "MyDrive").mkdir(parents=True)
        (point / "MyDrive" / "mounted.txt").write_text(str(len(self.calls)))


@pytest.fixture
def stand_in_colab(monkeypatch):
    import sys
    import types
    from importlib.machinery import ModuleSpec
    drive = StandInDrive()
    google, colab = types.ModuleType("google"), types.ModuleType("google.colab")
    google.__path__, colab.__path__ = [], []
    google.__spec__, colab.__spec__ = ModuleSpec("google", None, is_package=True), ModuleSpec("google.colab", None, is_package=True)
    drive_module = types.ModuleType("google.colab.drive")
    drive_module.mount = drive.mount
    google.colab, colab.drive = colab, drive_module
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive_module)
    assert runtime.in_colab()
    return drive


def test_mount_drive_force_remount_twice(stand_in_colab, tmp_path):
    point = tmp_path / "drive"
    assert runtime.mount_drive(str(point), verbose=False) == point
    assert runtime.mount_drive(str(point), verbose=False) == point          # already mounted: no call
    assert runtime.mount_drive(str(point), force_remount=True, verbose=False) == point
    assert runtime.mount_drive(str(point), force_remount=True, verbose=False) == point
    assert stand_in_colab.calls == [(str(point), False), (str(point), True), (str(point), True)]
    assert (point / "MyDrive" / "mounted.txt").read_text() == "3"
    assert os.environ["COLAB_UTILS_DRIVE_ROOT"] == str(point.resolve())   # the Drive writer's mount check


@pytest.fixture(autouse=True)
def _keep_drive_root(monkeypatch):
    monkeypatch.delenv("COLAB_UTILS_DRIVE_ROOT", raising=False)


def test_mount_drive_refuses_a_folder_with_local_files(stand_in_colab, tmp_path):
    point = tmp_path / "drive"
    (point / "MyDrive_backup").mkdir(parents=True)
    with pytest.raises(ValueError, match="exists and is not empty"):
        runtime.mount_drive(str(point), force_remount=True, verbose=False)
    assert stand_in_colab.calls == []
