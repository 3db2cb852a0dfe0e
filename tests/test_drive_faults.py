"""Both trainers' command lines under Google Drive faults (tiny CPU configurations, Drive faked through the
project's seams, see tests/helpers_drive.py): a Drive whose writes fail with ENOSPC / ENOTCONN / EIO after k
bytes, a Drive that stops being a mount point, a copy that blocks until released. Under each the run reaches
its last step, exits 0 with a warning naming the fault, leaves a verified local checkpoint and writes nothing
under a path that is no longer a mount; a blocked copy delays neither the end nor a SIGTERM stop by more than
the bound; and a run whose local folder was wiped resumes from the newest verified Drive checkpoint, bit-exact."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from colab_utils.checkpoint import CheckpointManager, safe_load, sha256_file
from colab_utils.data.synthetic import write_domain_folders
from colab_utils.drive import DriveWriter
from colab_utils.stargan import __main__ as stargan_cli
from colab_utils.stylegan2.__main__ import main as stylegan2_cli

from tests.helpers_drive import FAULTS, BlockedDrive, FakeMount, FaultyDrive, join_copy_threads

SG2 = ["train", "--data", "synthetic", "--synthetic-images", "16", "--size", "32", "--channels", "16",
       "--style-dim", "16", "--n-mlp", "1", "--batch", "4", "--no-augment", "--pl-every", "2", "--r1-every", "2",
       "--checkpoint-every", "1", "--checkpoint-minutes", "none", "--no-progress", "--n-samples", "4",
       "--sample-every", "2", "--log-every", "1"]
STARGAN = ["train", "--img-size", "32", "--base-dim", "8", "--max-conv-dim", "16", "--hidden-dim", "16",
           "--style-dim", "8", "--latent-dim", "4", "--w-hpf", "0", "--batch", "4", "--workers", "0",
           "--sample-every", "2", "--sample-per-domain", "1", "--checkpoint-minutes", "0", "--checkpoint-every",
           "1", "--log-every", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def quick_plots(monkeypatch):
    """StarGAN's loss plot takes seconds of matplotlib; StyleGAN2's stays (it is one of the files copied)."""
    monkeypatch.setattr("colab_utils.stargan.train._plot_losses", lambda log, folder: None)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_domain_folders(tmp_path_factory.mktemp("faces"), n_train=8, n_val=2, size=32, seed=0)


def run_cli(trainer: str, run: Path, drive_dir: Path, faces: Path, steps: int, *more: str) -> int:
    common = ["--run-dir", str(run), "--drive-dir", str(drive_dir), *more]
    if trainer == "stylegan2":
        return stylegan2_cli(SG2 + ["--steps", str(steps)] + common)
    return stargan_cli.main(STARGAN + ["--data", str(faces), "--total-iters", str(steps)] + common)


def drive_checkpoints(trainer: str, drive_dir: Path) -> Path:
    return drive_dir / "checkpoints" if trainer == "stargan" else drive_dir


def verified_local(run: Path) -> tuple[int, Path]:
    """The newest checkpoint of the local run folder alone, checked against its manifest."""
    latest = CheckpointManager(run, every_minutes=None, handle_signals=False, verbose=False).latest()
    assert latest is not None and latest.parent == run
    manifest = json.loads(latest.with_suffix(".json").read_text())
    assert sha256_file(latest) == manifest["sha256"] and safe_load(latest)["step"] == manifest["step"]
    return manifest["step"], latest


def whole_on_drive(folder: Path) -> None:
    """What reached Drive is whole: no partial copies, every checkpoint matches its manifest."""
    if not folder.exists():
        return
    assert not [p for p in folder.rglob("*") if "drive-partial" in p.name]
    for pt in folder.rglob("ckpt-*.pt"):
        assert sha256_file(pt) == json.loads(pt.with_suffix(".json").read_text())["sha256"], pt


def warned(err: str) -> list[str]:
    """The warnings a command line printed (the shared CLI handler prints each as one ``prog: warning:`` line)."""
    return [line.split(": warning: ", 1)[1] for line in err.splitlines() if ": warning: " in line]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert join_copy_threads(), "a Drive copy thread is still running"


# ---------------------------------------------------------------------------------------------------------
# Full, stale, failing and unmounted Drive
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["ENOSPC", "ENOTCONN", "EIO", "unmount"])
@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_the_run_finishes_under_a_drive_fault(trainer, fault, faces, tmp_path, monkeypatch, capsys):
    mount = FakeMount(tmp_path / "content_drive", unmount_at=6 if fault == "unmount" else None).install(monkeypatch)
    drive_dir = mount.root / "MyDrive" / "colab_utils" / "runs" / "r"
    if fault == "unmount":
        title = "Google Drive is not mounted"
    else:
        code, title = FAULTS[fault]
        faulty = FaultyDrive(mount.root, code, after_bytes=20_000).install(monkeypatch)
    run = tmp_path / "run"
    assert run_cli(trainer, run, drive_dir, faces, 3) == 0
    said = warned(capsys.readouterr().err)
    assert any(m.startswith(title) and "saved locally at" in m and "To fix:" in m for m in said), said
    step, latest = verified_local(run)
    assert step == 3
    report = next(m for m in said if m.startswith("Not everything reached Google Drive"))
    command = f"python -m colab_utils.drive copy {latest} {drive_checkpoints(trainer, drive_dir)}"
    assert f"checkpoint {latest.name} saved locally at {latest}; the Drive copy failed because {title}" in report
    assert f"run `{command}` to copy it when Drive is back" in report
    if fault == "unmount":
        assert mount.bare_contents() == []  # nothing written under the bare mount point
        assert (mount.gone / drive_dir.relative_to(mount.root)).is_dir()  # what landed before the unmount
        # A copy cut off by the unmount may have left its partial file on Drive; the next session removes it.
        mount.remount()
        assert run_cli(trainer, run, drive_dir, faces, 4) == 0
        whole_on_drive(mount.root)
        assert (drive_checkpoints(trainer, drive_dir) / "ckpt-000000004.pt").is_file()
    else:
        whole_on_drive(mount.root)
        assert faulty.failures >= 2 and faulty.written == 20_000


# ---------------------------------------------------------------------------------------------------------
# A hung Drive: bounded waits at the end and at a SIGTERM stop
# ---------------------------------------------------------------------------------------------------------

def _sigterm_at(trainer: str, monkeypatch, at: int) -> None:
    """Send SIGTERM to this process right after the ``at``-th training step (as Colab or a scheduler would)."""
    if trainer == "stylegan2":
        module = importlib.import_module("colab_utils.stylegan2.train")  # the package exports a train() too
        real = module.training_step

        def step_then_signal(nets, config, real_batch, step):
            out = real(nets, config, real_batch, step)
            if step == at:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        monkeypatch.setattr(module, "training_step", step_then_signal)
    else:
        module = importlib.import_module("colab_utils.stargan.train")
        real, calls = module.train_step, []

        def step_then_signal(*args, **kwargs):
            out = real(*args, **kwargs)
            calls.append(1)
            if len(calls) == at:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        monkeypatch.setattr(module, "train_step", step_then_signal)


@pytest.mark.parametrize("stop", ["end", "sigterm"])
@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_a_blocked_copy_delays_the_end_or_a_sigterm_stop_by_at_most_the_bound(trainer, stop, faces, tmp_path,
                                                                                monkeypatch, capsys):
    mount = FakeMount(tmp_path / "content_drive").install(monkeypatch)
    drive_dir = mount.root / "MyDrive" / "run"
    blocked = BlockedDrive(mount.root).install(monkeypatch)
    closes = []
    real_close = DriveWriter.close

    def timed_close(self, timeout=60.0):
        started = time.monotonic()
        lines = real_close(self, timeout)
        closes.append((timeout, time.monotonic() - started, blocked.released.is_set(), lines))
        return lines

    monkeypatch.setattr(DriveWriter, "close", timed_close)
    steps = 3
    if stop == "sigterm":
        _sigterm_at(trainer, monkeypatch, 2)
        steps = 50
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert run_cli(trainer, tmp_path / "run", drive_dir, faces, steps, "--drive-wait-s", "1.5") == 0
        assert blocked.waiting.is_set() and not blocked.released.is_set()
        assert len(closes) == 1
        bound, took, released, report = closes[0]
        assert bound == 1.5 and not released
        assert took < bound + 10.0, took  # generous margin: the point is that it returned while still blocked
        step, latest = verified_local(tmp_path / "run")
        assert step == (2 if stop == "sigterm" else 3)
        assert any(line.startswith(f"checkpoint {latest.name} saved locally at {latest}; the Drive copy failed "
                                   f"because") for line in report), report
        assert all("Drive looks hung" in line for line in report), report
        said = warned(capsys.readouterr().err)
        assert any(m.startswith("Not everything reached Google Drive") and "Drive looks hung" in m for m in said)
        assert signal.getsignal(signal.SIGTERM) == previous
    finally:
        blocked.release()
    assert join_copy_threads()
    whole_on_drive(mount.root)


# ---------------------------------------------------------------------------------------------------------
# A new session: local disk wiped, Drive holds the run
# ---------------------------------------------------------------------------------------------------------

def _same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("trainer", ["stylegan2", "stargan"])
def test_after_a_wipe_the_run_resumes_from_the_newest_verified_drive_checkpoint_bit_exactly(trainer, faces,
                                                                                            tmp_path, monkeypatch,
                                                                                            capsys):
    mount = FakeMount(tmp_path / "content_drive").install(monkeypatch)
    assert run_cli(trainer, tmp_path / "straight", mount.root / "straight", faces, 4) == 0
    run, drive_dir = tmp_path / "run", mount.root / "MyDrive" / "run"
    first = ["--stop-at", "2"] if trainer == "stargan" else []
    assert run_cli(trainer, run, drive_dir, faces, 4 if trainer == "stargan" else 2, *first) == 0
    on_drive = drive_checkpoints(trainer, drive_dir)
    assert sorted(p.name for p in on_drive.glob("ckpt-*.pt")) == ["ckpt-000000001.pt", "ckpt-000000002.pt"]
    torn = on_drive / "ckpt-000000002.pt"
    torn.write_bytes(torn.read_bytes()[:1000])  # a copy cut off mid-way: the newest verified one is step 1
    shutil.rmtree(run)  # the session ended: local disk is gone
    capsys.readouterr()
    assert run_cli(trainer, run, drive_dir, faces, 4) == 0
    out, err = capsys.readouterr()
    assert any(m.startswith(f"Skipping checkpoint {torn}: it has 1000 bytes") for m in warned(err)), err
    assert f"Resumed from {on_drive / 'ckpt-000000001.pt'} (step 1" in out
    assert f"No checkpoint on local disk ({run}: a new session, or it was wiped): resumed from the Drive copy" in out
    a = safe_load(tmp_path / "straight" / "ckpt-000000004.pt")
    b = safe_load(run / "ckpt-000000004.pt")
    _same(a["objects"], b["objects"])
    assert "last checkpoint on Drive: step 4" in out
    whole = sorted(p.name for p in on_drive.glob("ckpt-*.pt"))
    assert "ckpt-000000004.pt" in whole and sha256_file(on_drive / "ckpt-000000004.pt") == sha256_file(
        run / "ckpt-000000004.pt")
