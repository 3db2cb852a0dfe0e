"""CheckpointManager, ResumableSampler and safe loading: exact resume, kills, corruption, signals, Drive staging."""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from colab_utils import checkpoint
from colab_utils import drive as drive_io
from colab_utils.checkpoint import (CheckpointCorruptError, CheckpointManager, CheckpointMismatchError,
                                    CheckpointSaveError, CheckpointWarning, ResumableSampler,
                                    UnsafeCheckpointError, infinite_batches, plain, safe_load, sha256_file)
from tests.helpers_drive import wrap_drive_writes

HELPER = Path(__file__).with_name("helpers_train.py")


def manager(run_dir, **kwargs) -> CheckpointManager:
    kwargs = {"every_minutes": None, "handle_signals": False, "verbose": False, **kwargs}
    return CheckpointManager(run_dir, **kwargs)


def tiny(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    return {"model": model, "opt": torch.optim.Adam(model.parameters(), lr=0.1)}


def nudge(objects: dict, amount: float = 1.0) -> None:
    with torch.no_grad():
        objects["model"].weight.add_(amount)


def assert_same(a, b, path="") -> None:
    """Recursive bit-exact equality of nested state (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"differs at {path}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"keys differ at {path}: {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"lengths differ at {path}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}/{i}")
    else:
        assert a == b, f"differs at {path}: {a!r} vs {b!r}"


def steps_on_disk(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in folder.glob("ckpt-*.pt"))


# ---------------------------------------------------------------------------------------------------------
# The data order
# ---------------------------------------------------------------------------------------------------------

def test_sampler_epochs_are_seeded_permutations_and_resume_mid_epoch():
    s = ResumableSampler(10, seed=3)
    first = list(s)
    assert sorted(first) == list(range(10)) and s.epoch == 1 and s.index == 0
    assert first == torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    second_part = [next(it) for it in [iter(s)] for _ in range(4)]
    state = s.state_dict()
    assert state["epoch"] == 1 and state["index"] == 4
    rest = list(s)
    resumed = ResumableSampler(10, seed=3)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert sorted(second_part + rest) == list(range(10))
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_sampler_shards_cover_each_epoch_once_per_rank():
    shards = [ResumableSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    items = [i for s in shards for i in s.epoch_indices(0)]
    assert sorted(set(items)) == list(range(10)) and len(items) == 12  # padded by wrapping around
    dropped = [ResumableSampler(10, seed=1, rank=r, world_size=3, drop_last=True).epoch_indices(0) for r in range(3)]
    flat = [i for d in dropped for i in d]
    assert len(flat) == 9 and len(set(flat)) == 9
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, rank=3, world_size=3)


def test_sampler_load_warns_when_dataset_size_changed():
    s = ResumableSampler(10, seed=0)
    s.advance(14)
    assert (s.epoch, s.index) == (1, 4)
    other = ResumableSampler(12, seed=0)
    with pytest.warns(CheckpointWarning, match="had 10 items"):
        other.load_state_dict(s.state_dict())
    assert (other.epoch, other.index) == (2, 0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_infinite_batches_resume_exactly_where_the_loop_stood(num_workers):
    data = torch.arange(23)
    dataset = torch.utils.data.TensorDataset(data)
    straight_sampler = ResumableSampler(23, seed=7)
    straight = infinite_batches(dataset, straight_sampler, 5, num_workers=num_workers)
    reference = [next(straight)[0].tolist() for _ in range(12)]

    sampler = ResumableSampler(23, seed=7)
    first = infinite_batches(dataset, sampler, 5, num_workers=num_workers)
    got = [next(first)[0].tolist() for _ in range(7)]
    state = sampler.state_dict()  # workers have read ahead; the position counts only consumed batches
    assert (state["epoch"], state["index"]) == divmod(7 * 5, 23)
    del first
    resumed_sampler = ResumableSampler(23, seed=7)
    resumed_sampler.load_state_dict(state)
    resumed = infinite_batches(dataset, resumed_sampler, 5, num_workers=num_workers)
    got += [next(resumed)[0].tolist() for _ in range(5)]
    assert got == reference
    with pytest.raises(ValueError, match="23"):
        infinite_batches(torch.utils.data.TensorDataset(torch.arange(5)), sampler, 2)


# ---------------------------------------------------------------------------------------------------------
# Safe loading and plain values
# ---------------------------------------------------------------------------------------------------------

def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = checkpoint.capture_rng_state()
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    torch.save(state, tmp_path / "rng.pt")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.restore_rng_state(safe_load(tmp_path / "rng.pt"))
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_safe_load_refuses_files_that_need_unpickling(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"when": datetime.date(2020, 1, 1)}, bad)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt.*datetime"):
        safe_load(bad)
    ok = tmp_path / "rosinality_like.pt"
    torch.save({"g": {"w": torch.ones(2)}, "args": argparse.Namespace(size=256)}, ok)
    assert safe_load(ok)["args"].size == 256  # the one allow-listed class
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointCorruptError, match="garbage.pt"):
        safe_load(garbage)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        safe_load(tmp_path / "missing.pt")


def test_plain_converts_common_values_and_names_what_it_cannot_store():
    @dataclasses.dataclass
    class Cfg:
        size: int
        root: Path

    out = plain({"a": np.float32(1.5), "b": np.arange(3), "c": Cfg(64, Path("/x")), "d": (1, {2})})
    assert out["a"] == 1.5 and type(out["a"]) is float
    assert torch.equal(out["b"], torch.arange(3))
    assert out["c"] == {"size": 64, "root": "/x"} and out["d"] == (1, [2])
    with pytest.raises(TypeError, match=r"extra\[.obj.\] \(a _thread.lock\)"):
        plain({"obj": threading.Lock()}, "extra")


def test_save_refuses_unstorable_extra_before_writing(tmp_path):
    mgr = manager(tmp_path)
    with pytest.raises(TypeError, match="extra"):
        mgr.save(1, tiny(), extra={"lock": threading.Lock()})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Saving, verifying, falling back
# ---------------------------------------------------------------------------------------------------------

def test_save_writes_checkpoint_and_manifest_and_restore_returns_everything(tmp_path):
    objects = tiny()
    mgr = manager(tmp_path, config={"size": 64})
    path = mgr.save(5, objects, extra={"lambda_ds": 0.5, "kimg": 1.25})
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["step"] == 5 and manifest["size"] == path.stat().st_size
    assert manifest["sha256"] == sha256_file(path) and manifest["file"] == path.name
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    before = objects["model"].weight.clone()
    nudge(objects)
    info = manager(tmp_path, config={"size": 64}).restore(objects)
    assert info["step"] == 5 and info["extra"] == {"lambda_ds": 0.5, "kimg": 1.25}
    assert info["config"] == {"size": 64} and info["path"] == path and info["elapsed"] >= 0
    assert torch.equal(objects["model"].weight, before)
    assert manager(tmp_path / "empty").restore(objects) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest", "bad_manifest"])
def test_damaged_newest_checkpoint_falls_back_to_previous_with_warning(tmp_path, damage):
    objects = tiny()
    mgr = manager(tmp_path, keep_last=5)
    for step in (1, 2, 3):
        nudge(objects)
        mgr.save(step, objects)
    newest = tmp_path / "ckpt-000000003.pt"
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(data)
    elif damage == "no_manifest":
        newest.with_suffix(".json").unlink()
    else:
        newest.with_suffix(".json").write_text("{not json")
    fresh = manager(tmp_path)
    with pytest.warns(CheckpointWarning, match="ckpt-000000003.pt"):
        assert fresh.latest() == tmp_path / "ckpt-000000002.pt"
    restored = tiny(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        assert fresh.restore(restored)["step"] == 2
    assert torch.equal(restored["model"].weight, tiny(seed=0)["model"].weight + 2)
    assert newest.exists()  # never deleted


def test_retention_keeps_last_n_and_milestones(tmp_path):
    objects = tiny()
    mgr = manager(tmp_path, keep_last=2, keep_every=10)
    for step in range(3, 31, 3):
        mgr.save(step, objects)
    assert steps_on_disk(tmp_path) == [3, 12, 21, 27, 30]
    assert sorted(int(p.stem.split("-")[1]) for p in tmp_path.glob("ckpt-*.json")) == [3, 12, 21, 27, 30]


def test_retention_never_touches_a_damaged_file_and_keeps_a_verified_one(tmp_path):
    objects = tiny()
    mgr = manager(tmp_path, keep_last=1)
    mgr.save(1, objects)
    mgr.save(2, objects)
    assert steps_on_disk(tmp_path) == [2]
    damaged = tmp_path / "ckpt-000000002.pt"
    damaged.write_bytes(damaged.read_bytes()[:100])
    fresh = manager(tmp_path, keep_last=1)
    with pytest.warns(CheckpointWarning):
        assert fresh.latest() is None  # the only checkpoint is damaged: nothing to resume from
    fresh.save(1, objects)
    assert steps_on_disk(tmp_path) == [1, 2] and damaged.stat().st_size == 100


def test_failed_verification_of_new_file_keeps_previous(tmp_path, monkeypatch):
    objects = tiny()
    mgr = manager(tmp_path, keep_last=1)
    mgr.save(1, objects)
    monkeypatch.setattr(checkpoint, "sha256_file", lambda path: "0" * 64)
    with pytest.raises(CheckpointSaveError, match="read back.*ckpt-000000001.pt is intact"):
        mgr.save(2, objects)
    monkeypatch.undo()
    assert steps_on_disk(tmp_path) == [1] and manager(tmp_path).latest() == tmp_path / "ckpt-000000001.pt"


def test_full_disk_leaves_previous_checkpoint_intact_with_clear_error(tmp_path, monkeypatch):
    objects = tiny()
    mgr = manager(tmp_path)
    first = mgr.save(1, objects)
    digest = sha256_file(first)
    original = checkpoint._HashingWriter.write
    calls = []

    def fills_up(self, data):
        calls.append(1)
        if len(calls) > 3:  # a few records land, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(checkpoint._HashingWriter, "write", fills_up)
    nudge(objects)
    with pytest.raises(CheckpointSaveError, match=r"no space left.*ckpt-000000001.pt is intact") as caught:
        mgr.save(2, objects)
    assert "ckpt-000000002.pt" in str(caught.value)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000001.json", "ckpt-000000001.pt"]
    assert sha256_file(first) == digest and manager(tmp_path).latest() == first


def test_mismatched_architecture_lists_keys_and_shapes_and_loads_nothing(tmp_path):
    manager(tmp_path).save(1, {"model": torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))})
    other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Linear(16, 2), torch.nn.Linear(2, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as caught:
        manager(tmp_path).restore({"model": other, "opt": torch.optim.Adam(other.parameters())})
    message = str(caught.value)
    assert "model: missing keys (2): ['2.weight', '2.bias']" in message
    assert "shape mismatches (3): ['0.weight: file (8, 4) vs model (16, 4)'," in message
    assert "objects missing from the checkpoint: ['opt']" in message
    assert ("model", "0.weight", (8, 4), (16, 4)) in caught.value.mismatched
    assert_same(other.state_dict(), before)


def test_restore_refuses_a_foreign_file(tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"g_ema": {"w": torch.ones(1)}}, foreign)
    with pytest.raises(CheckpointMismatchError, match="not a colab_utils training checkpoint"):
        manager(tmp_path / "run").restore(tiny(), path=foreign)


# ---------------------------------------------------------------------------------------------------------
# When to save, when to stop
# ---------------------------------------------------------------------------------------------------------

def test_due_every_steps_and_minutes(tmp_path, monkeypatch):
    objects = tiny()
    mgr = manager(tmp_path, every_steps=4)
    saved = [step for step in range(1, 13) if mgr.step(step, objects) is False and mgr.last_saved_step == step]
    assert saved == [4, 8, 12]
    clock = [1000.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])
    timed = manager(tmp_path / "t", every_minutes=10.0)
    assert not timed.due(1)
    clock[0] += 601
    assert timed.due(1)


def test_deadline_stops_with_a_checkpoint(tmp_path):
    objects = tiny()
    mgr = manager(tmp_path, session_hours=1.0 / 3600, deadline_margin_s=0.3)
    started = time.monotonic()
    step = 0
    while True:
        step += 1
        nudge(objects, 0.01)
        if mgr.step(step, objects):
            break
        time.sleep(0.01)
        assert time.monotonic() - started < 10, "never stopped"
    took = time.monotonic() - started
    assert 0.6 <= took < 8.0, took  # the deadline is 1 s away, the margin 0.3 s: never before 0.7 s
    assert "deadline" in mgr.stop_reason
    assert mgr.latest() == tmp_path / f"ckpt-{step:09d}.pt"
    assert mgr.step(step + 1, objects) is True  # stays stopped, saves nothing more
    assert steps_on_disk(tmp_path) == [step]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_sets_a_flag_then_step_saves_and_handlers_are_restored(tmp_path):
    objects = tiny()
    previous = signal.getsignal(signal.SIGINT)
    mgr = CheckpointManager(tmp_path, every_minutes=None, verbose=False)
    try:
        assert signal.getsignal(signal.SIGINT) == mgr._on_signal
        assert mgr.step(1, objects) is False
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert mgr.should_stop() and "SIGINT" in mgr.stop_reason
        assert mgr.step(2, objects) is True
        assert signal.getsignal(signal.SIGINT) == previous
        assert steps_on_disk(tmp_path) == [2]
    finally:
        mgr.close()
    assert signal.getsignal(signal.SIGINT) == previous


def test_manager_in_a_thread_leaves_signals_alone(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    made = []
    thread = threading.Thread(target=lambda: made.append(CheckpointManager(tmp_path, verbose=False)))
    thread.start()
    thread.join()
    assert made and signal.getsignal(signal.SIGTERM) == before
    made[0].close()


def test_keyboard_interrupt_in_with_block_saves_last_step(tmp_path):
    objects = tiny()
    with pytest.raises(KeyboardInterrupt):
        with manager(tmp_path, every_steps=100) as mgr:
            for step in range(1, 6):
                nudge(objects)
                mgr.step(step, objects)
            raise KeyboardInterrupt
    assert steps_on_disk(tmp_path) == [5]


# ---------------------------------------------------------------------------------------------------------
# Drive staging
# ---------------------------------------------------------------------------------------------------------

def test_drive_copy_runs_in_background_and_lands_verified(tmp_path, monkeypatch):
    open_target = drive_io._open_target

    def throttled(path):  # a slow Drive: 0.4 s per file
        time.sleep(0.4)
        return open_target(path)

    monkeypatch.setattr(drive_io, "_open_target", throttled)
    local, drive = tmp_path / "local", tmp_path / "drive"
    objects = tiny()
    mgr = manager(local, drive_dir=drive, every_steps=10, keep_last=2)
    for step in range(1, 31):
        nudge(objects, 0.1)
        mgr.step(step, objects)
    pending = mgr.drive.pending()
    mgr.close()
    # Three saves whose copies take 0.4 s each: the loop ended with copies still queued, so it did not wait.
    assert pending >= 1, "training waited for the Drive copies"
    assert steps_on_disk(local) == [20, 30] and steps_on_disk(drive) == [20, 30]
    for step in (20, 30):
        name = f"ckpt-{step:09d}"
        manifest = json.loads((drive / f"{name}.json").read_text())
        assert manifest == json.loads((local / f"{name}.json").read_text())
        assert sha256_file(drive / f"{name}.pt") == manifest["sha256"]
    assert not [p for p in drive.iterdir() if ".tmp-" in p.name] and not mgr.copy_errors

    # A new session: local disk is empty, Drive has the run.
    shutil.rmtree(local)
    resumed = tiny(seed=1)
    info = manager(local, drive_dir=drive).restore(resumed)
    assert info["step"] == 30 and info["path"] == drive / "ckpt-000000030.pt"
    assert torch.equal(resumed["model"].weight, objects["model"].weight)
    # A newer local checkpoint (its copy not made yet) wins over Drive's.
    manager(local).save(31, objects)
    assert manager(local, drive_dir=drive).latest() == local / "ckpt-000000031.pt"


def test_drive_copy_with_wrong_bytes_is_rejected_and_local_kept(tmp_path, monkeypatch):
    def corrupting(file, data):  # flips one byte of what is written: Drive stored something else
        data = bytearray(data)
        data[-10] ^= 0xFF
        return file.write(data)

    wrap_drive_writes(monkeypatch, corrupting)
    local, drive_dir = tmp_path / "local", tmp_path / "drive"
    mgr = manager(local, drive_dir=drive_dir)
    with pytest.warns(drive_io.DriveWarning, match="sha256"):
        mgr.save(1, tiny())
        mgr.close()
    assert list(drive_dir.iterdir()) == [] and len(mgr.copy_errors) == 1
    assert "ckpt-000000001.pt" in mgr.copy_errors[0] and "sha256" in mgr.copy_errors[0]
    assert steps_on_disk(local) == [1]
    assert "saved locally at" in mgr.drive_report[0] and "ckpt-000000001.pt" in mgr.drive_report[0]


# ---------------------------------------------------------------------------------------------------------
# Real processes: exact resume, SIGTERM, SIGKILL at random moments
# ---------------------------------------------------------------------------------------------------------

class ForkServer:
    """tests/helpers_train.py --serve: imports torch once, forks one training child per request."""

    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(HELPER), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def _ask(self, request: dict) -> list[str]:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the fork server died"
        return line.split()

    def start(self, **args) -> int:
        return int(self._ask({"cmd": "run", "args": args})[1])

    def wait(self, pid: int) -> int:
        return int(self._ask({"cmd": "wait", "pid": pid})[2])

    def run(self, **args) -> int:
        return self.wait(self.start(**args))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def forks():
    server = ForkServer()
    yield server
    server.close()


def read_events(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by SIGKILL mid-write would be shorter
            out.append((parts[0], int(parts[1])))
    return out


def wait_for(log: Path, predicate, timeout: float = 20.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(log)
        if predicate(events):
            return events
        time.sleep(0.001)
    raise AssertionError(f"timed out waiting on {log}: {read_events(log)[-5:]}")


def test_resume_in_a_new_process_is_bit_exact(forks, tmp_path):
    n = 12
    straight, stopped, control = tmp_path / "straight", tmp_path / "stopped", tmp_path / "control"
    assert forks.run(run_dir=str(straight), total=2 * n, every_steps=5, out=str(tmp_path / "a.pt")) == 0
    assert forks.run(run_dir=str(stopped), total=2 * n, every_steps=5, stop_at=n) == 0
    assert steps_on_disk(stopped)[-1] == n
    shutil.copytree(stopped, control)
    # The second half runs in a brand-new interpreter.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(HELPER), "--run-dir", str(stopped), "--total", str(2 * n),
                           "--every-steps", "5", "--out", str(tmp_path / "b.pt")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a["step"] == b["step"] == 2 * n
    assert set(a) == {"model", "ema", "opt", "precision", "sampler", "log", "lam", "step"}
    assert a["precision"]["scaler"]["scale"] != 2.0 ** 10  # the scaler's state really moved
    assert_same(a, b)
    # The test can fail: resuming without the RNG states gives different weights.
    assert forks.run(run_dir=str(control), total=2 * n, every_steps=5, no_rng=True, out=str(tmp_path / "c.pt")) == 0
    c = torch.load(tmp_path / "c.pt")
    assert not torch.equal(a["model"]["0.weight"], c["model"]["0.weight"])


def test_sigterm_saves_and_exits_with_code_zero(forks, tmp_path):
    log = tmp_path / "events.log"
    pid = forks.start(run_dir=str(tmp_path / "run"), total=100000, every_steps=100000, step_sleep=0.01,
                      log=str(log), stdout=str(tmp_path / "out.txt"))
    wait_for(log, lambda ev: ("STEP", 5) in ev)
    os.kill(pid, signal.SIGTERM)
    assert forks.wait(pid) == 0, (tmp_path / "out.txt").read_text()
    events = read_events(log)
    stopped = [s for e, s in events if e == "STOPPED"]
    assert len(stopped) == 1 and ("DONE", stopped[0]) in events
    assert steps_on_disk(tmp_path / "run") == stopped
    assert manager(tmp_path / "run").latest().name == f"ckpt-{stopped[0]:09d}.pt"


def test_deadline_stops_a_real_run(forks, tmp_path):
    log = tmp_path / "events.log"
    code = forks.run(run_dir=str(tmp_path / "run"), total=100000, every_steps=100000, step_sleep=0.01,
                     session_seconds=1.5, margin_s=0.5, log=str(log))
    assert code == 0
    stopped = [s for e, s in read_events(log) if e == "STOPPED"]
    assert len(stopped) == 1 and steps_on_disk(tmp_path / "run") == stopped


def test_sigkill_at_random_moments_always_resumes_from_a_verified_checkpoint(forks, tmp_path, capsys):
    """>= 20 kills, half aimed inside a save (some saves made slow or big); each next run must resume from
    the newest checkpoint that verifies, and after all the kills the run still ends bit-exact."""
    rng = random.Random(20240601)
    run = tmp_path / "run"
    rows, expected = [], 0
    for trial in range(24):
        kind = ("plain", "big", "slow")[trial % 3]
        aim = "save" if trial % 2 == 0 else "random"
        log = tmp_path / f"trial{trial:02d}.log"
        args = {"run_dir": str(run), "total": 10 ** 6, "every_steps": 3 if aim == "save" else 8, "keep_last": 2,
                "log": str(log),
                "stdout": str(tmp_path / "children.txt")}
        if kind == "big":
            args["pad_mb"] = 4.0
        if kind == "slow":
            args["slow_write_s"] = 0.002
        pid = forks.start(**args)
        if aim == "save":
            wait_for(log, lambda ev: any(e == "SAVE_START" for e, _ in ev))
            time.sleep(rng.uniform(0.0, 0.02 if kind == "plain" else 0.06))
        else:
            wait_for(log, lambda ev: any(e == "RESUMED" for e, _ in ev))
            time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        assert forks.wait(pid) == -signal.SIGKILL
        events = read_events(log)
        resumed = [s for e, s in events if e == "RESUMED"]
        assert resumed == [expected], f"trial {trial}: resumed from {resumed}, the newest verified was {expected}"
        started = [s for e, s in events if e == "SAVE_START"]
        finished = [s for e, s in events if e == "SAVE_END"]
        in_save = len(started) > len(finished)
        torn = sorted(p.name for p in run.iterdir() if ".tmp-" in p.name)
        orphans = sorted(p.name for p in run.glob("ckpt-*.pt") if not p.with_suffix(".json").exists())
        assert orphans == [], f"trial {trial}: finished-looking files without a manifest: {orphans}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)
            latest = manager(run).latest()
        step = int(latest.stem.split("-")[1]) if latest is not None else 0  # 0: killed inside the first save
        allowed = {max(finished, default=expected)} | ({started[-1]} if in_save else set())
        assert step in allowed, f"trial {trial}: latest {step}, expected one of {allowed}"
        if latest is not None:
            manifest = json.loads(latest.with_suffix(".json").read_text())
            assert sha256_file(latest) == manifest["sha256"] and safe_load(latest)["step"] == step
        rows.append((trial, kind, aim, expected, max((s for e, s in events if e == "STEP"), default=expected),
                     in_save, len(torn), step))
        expected = step
    # After every kill, finish the run and compare with one that was never interrupted.
    total = expected + 9
    assert forks.run(run_dir=str(run), total=total, every_steps=3, keep_last=2, out=str(tmp_path / "killed.pt")) == 0
    assert forks.run(run_dir=str(tmp_path / "straight"), total=total, every_steps=3,
                     out=str(tmp_path / "straight.pt")) == 0
    assert_same(torch.load(tmp_path / "killed.pt"), torch.load(tmp_path / "straight.pt"))
    inside = sum(r[5] for r in rows)
    with capsys.disabled():
        print(f"\nSIGKILL trials ({len(rows)}; {inside} killed inside a save; final state after {total} steps is "
              f"bit-exact with an uninterrupted run):")
        print(" trial  kind   aim     resumed  last step  in save  temp files  next resume")
        for r in rows:
            print(f" {r[0]:5d}  {r[1]:5s}  {r[2]:6s}  {r[3]:7d}  {r[4]:9d}  {str(r[5]):7s}  {r[6]:10d}  {r[7]:11d}")
    assert inside >= 5, "too few kills landed inside a save to test anything"
