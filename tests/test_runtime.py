import os
import random

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
