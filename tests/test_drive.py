"""colab_utils.drive: the one guarded path to Google Drive (mount check, faults, retries, bounded waits, report,
the copy command) and what CheckpointManager says about where local disk and Drive stand."""
from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from colab_utils import drive, viz
from colab_utils.checkpoint import CheckpointManager, CheckpointWarning, sha256_file
from colab_utils.drive import DriveUnavailableError, DriveWarning, DriveWriter

from tests.helpers_drive import BlockedDrive, FakeMount, FaultyDrive, join_copy_threads, wrap_drive_writes


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_files(folder: Path, count: int, size: int = 5000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"pic-{i}.png"
        path.write_bytes(bytes([i % 251]) * size + os.urandom(16))
        out.append(path)
    return out


def until(predicate, timeout: float = 20.0) -> None:
    """Poll for a condition the copy thread brings about (not a speed claim: the timeout only ends a broken run)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never reached"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert join_copy_threads(), "a Drive copy thread is still running"


# ---------------------------------------------------------------------------------------------------------
# Where Drive is
# ---------------------------------------------------------------------------------------------------------

def test_drive_paths_are_decided_without_touching_the_file_system(tmp_path, monkeypatch):
    monkeypatch.setenv(drive.ROOT_ENV, str(tmp_path / "mnt"))
    assert drive.drive_root(tmp_path / "mnt" / "MyDrive" / "run") == tmp_path / "mnt"
    assert drive.drive_root("/content/drive/MyDrive/colab_utils/runs/x") == Path("/content/drive")
    assert drive.drive_root(tmp_path / "mntx") is None and drive.drive_root("/content/drivex") is None
    assert drive.is_drive_path(tmp_path / "d" / "samples", drive_dir=tmp_path / "d")
    assert not drive.is_drive_path(tmp_path / "run", drive_dir=tmp_path / "d")


def test_mount_check_is_a_mount_point_check(tmp_path):
    assert drive.mount_problem("/") is None
    (tmp_path / "MyDrive").mkdir()  # looks like Drive, is not a mount
    kind, text = drive.mount_problem(tmp_path)
    assert kind == "unmounted" and "is not a mount point" in text and str(tmp_path) in text
    kind, text = drive.mount_problem(tmp_path / "gone")
    assert kind == "unmounted" and "does not exist" in text


def test_direct_writes_never_create_folders_under_an_unmounted_drive(tmp_path, monkeypatch):
    root = tmp_path / "content_drive"
    root.mkdir()
    monkeypatch.setenv(drive.ROOT_ENV, str(root))  # a plain folder: not a mount point
    target = root / "MyDrive" / "colab_utils" / "outputs" / "grid.png"
    with pytest.raises(DriveUnavailableError, match=r"not writing .*grid\.png.*not a mount point.*mount_drive"):
        viz.save_grid(torch.zeros(2, 3, 8, 8), target)
    with pytest.raises(DriveUnavailableError):
        viz.plot_curves({"loss": [1.0, 0.5]}, root / "MyDrive" / "curves.png")
    assert list(root.iterdir()) == []
    elsewhere = viz.save_grid(torch.zeros(2, 3, 8, 8), tmp_path / "local" / "grid.png")
    assert elsewhere.is_file() and [p.name for p in elsewhere.parent.iterdir()] == ["grid.png"]  # no temp left


# ---------------------------------------------------------------------------------------------------------
# Copies and faults
# ---------------------------------------------------------------------------------------------------------

def test_copies_land_verified_and_a_newer_version_replaces_a_queued_one(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "drive"
    sources = make_files(local, 3)
    writer = DriveWriter(verbose=False)
    for path in sources:
        writer.put(path, remote / "samples" / path.name, kind="export")  # exports are read back and verified
    assert writer.wait(timeout=30)
    assert files(remote / "samples") == files(local)
    sources[0].write_bytes(b"second version")
    writer.put(sources[0], remote / "samples" / sources[0].name)
    assert writer.close(timeout=30) == [] and writer.copied == 4
    assert (remote / "samples" / sources[0].name).read_bytes() == b"second version"
    assert not [p for p in remote.rglob("*") if "drive-partial" in p.name]


@pytest.mark.parametrize("name, code, title", [("ENOSPC", errno.ENOSPC, "Google Drive is full"),
                                               ("ENOTCONN", errno.ENOTCONN, "mount is stale"),
                                               ("EIO", errno.EIO, "I/O error")])
def test_a_write_fault_warns_once_keeps_the_local_file_and_is_retried_later(tmp_path, monkeypatch, name, code,
                                                                              title):
    local, remote = tmp_path / "local", tmp_path / "drive"
    sources = make_files(local, 3)
    fault = FaultyDrive(remote, code, after_bytes=7000).install(monkeypatch)  # the first file fits
    writer = DriveWriter(retry_s=0.2, verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in sources:
            writer.put(path, remote / path.name)
        until(lambda: fault.failures >= 2 and writer.pending() == 2)
    messages = [str(w.message) for w in caught if w.category is DriveWarning]
    assert len(messages) == 1, messages
    assert title in messages[0] and "pic-1.png" in messages[0] and f"saved locally at {local / 'pic-1.png'}" in \
        messages[0] and "To fix:" in messages[0] and "partial copy was removed" in messages[0]
    assert files(remote) == {"pic-0.png": sources[0].read_bytes()}  # no partial file left behind
    assert files(local) == {p.name: p.read_bytes() for p in sources}
    fault.heal()  # Drive has room again: the waiting copies go through without anything new being saved
    until(lambda: writer.pending() == 0)
    assert writer.close(timeout=30) == []
    assert files(remote) == files(local)


def test_a_partial_file_that_cannot_be_removed_is_counted_and_removed_by_a_later_copy(tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "drive"
    sources = make_files(local, 2, size=30000)
    # Leftovers of an earlier session (another machine) and of a dead process here go at the first copy; a live
    # process's partial file stays.
    remote.mkdir()
    old_session = remote / ".ckpt-000000001.pt.drive-partial-othermachine-123-0123abcd"
    old_session.write_bytes(b"x" * 1000)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_here = remote / f".a.png.drive-partial-{drive._HOST}-{int(dead.stdout)}-0123abcd"
    dead_here.write_bytes(b"y")
    alive_here = remote / f".b.png.drive-partial-{drive._HOST}-{os.getppid()}-0123abcd"
    alive_here.write_bytes(b"z")
    fault = FaultyDrive(remote, errno.ENOTCONN, after_bytes=12345).install(monkeypatch)
    stale = threading.Event()
    stale.set()
    unlink = Path.unlink

    def stale_unlink(self, missing_ok=False):  # the stale mount refuses to delete our partial copy, too
        if stale.is_set() and f"-{os.getpid()}-" in self.name and self.parent == remote:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stale_unlink)
    writer = DriveWriter(retry_s=60, verbose=False)
    with pytest.warns(DriveWarning) as caught:
        writer.put(sources[0], remote / sources[0].name)
        until(lambda: fault.failures == 1 and writer.pending() == 1)
    assert not old_session.exists() and not dead_here.exists() and alive_here.exists()
    left = [p for p in remote.iterdir() if "drive-partial" in p.name and p != alive_here]
    assert len(left) == 1 and left[0].stat().st_size == 12345
    message = str(caught[0].message)
    assert "mount is stale" in message and "A partial copy (12 kB) could not be removed" in message
    assert left[0].name in message and "the next copy into that folder, or the next session, removes it" in message
    stale.clear()
    fault.heal()
    writer.put(sources[1], remote / sources[1].name)  # a later save into the same folder
    until(lambda: (remote / sources[1].name).exists())
    assert not left[0].exists()
    assert writer.close(timeout=30) == []
    assert files(remote)[sources[0].name] == sources[0].read_bytes()


def test_an_unmounted_drive_gets_nothing_and_copies_resume_when_it_is_back(tmp_path, monkeypatch):
    mount = FakeMount(tmp_path / "content_drive").install(monkeypatch)
    local, remote = tmp_path / "local", mount.root / "MyDrive" / "colab_utils" / "runs" / "r"
    sources = make_files(local, 3)
    writer = DriveWriter(retry_s=0.2, verbose=False)
    writer.put(sources[0], remote / sources[0].name)
    assert writer.wait(timeout=30)
    mount.unmount()
    with pytest.warns(DriveWarning, match=r"Google Drive is not mounted: could not copy picture pic-1\.png.*"
                                          r"is not a mount point.*mount_drive\(\)"):
        writer.put(sources[1], remote / sources[1].name)
        writer.put(sources[2], remote / sources[2].name)
        until(lambda: len(writer._waiting) == 2)
    assert mount.bare_contents() == []  # no folder rebuilt on the local disk under the mount point
    mount.remount()
    until(lambda: writer.pending() == 0)
    assert writer.close(timeout=30) == []
    assert files(remote) == files(local)


# ---------------------------------------------------------------------------------------------------------
# Bounded waits: slow is not hung
# ---------------------------------------------------------------------------------------------------------

def test_a_blocked_copy_is_abandoned_after_the_bound_and_reported_as_hung(tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "drive"
    sources = make_files(local, 2)
    blocked = BlockedDrive(remote).install(monkeypatch)
    writer = DriveWriter(stall_s=0.3, verbose=False)
    try:
        with pytest.warns(DriveWarning) as caught:
            writer.put(sources[0], remote / sources[0].name, kind="export")
            writer.put(sources[1], remote / sources[1].name, kind="export")
            assert blocked.waiting.wait(20)
            until(lambda: time.monotonic() - writer._progress_at > 0.4)
            writer.poll()
            started = time.monotonic()
            report = writer.close(timeout=5.0)  # returns once the copy has stalled for stall_s, not after 5 s
            waited = time.monotonic() - started
        assert not blocked.released.is_set() and waited < 5.0 + 5.0
        assert "Google Drive is not answering: the copy of export pic-0.png" in str(caught[0].message)
        assert "has made no progress for" in str(caught[0].message)
        assert len(report) == 2
        assert report[0].startswith(f"export pic-0.png saved locally at {sources[0]}; the Drive copy failed because "
                                    f"Drive looks hung: the copy had moved no byte for")
        assert f"run `python -m colab_utils.drive copy {sources[0]} {remote}` to copy it" in report[0]
        assert "it was still queued behind export pic-0.png, on which Drive looks hung (no byte moved for" in report[1]
        ok, reason = writer.call(lambda tick: 1, remote, "listing")
        assert not ok and "no progress" in reason  # reads do not queue behind a hung copy
    finally:
        blocked.release()


def test_a_slow_copy_is_not_called_hung(tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "drive"
    (source,) = make_files(local, 1, size=400_000)
    monkeypatch.setattr(drive, "CHUNK", 4096)
    gate = threading.Event()

    def slow(file, data):
        gate.wait(0.01)  # a trickle: one small chunk every 10 ms
        return file.write(data)

    wrap_drive_writes(monkeypatch, slow)
    writer = DriveWriter(stall_s=30.0, verbose=False)
    writer.put(source, remote / source.name, kind="export")
    until(lambda: writer._current is not None and writer._current.done_bytes > 0)
    with pytest.warns(DriveWarning):
        report = writer.close(timeout=0.3)
    assert len(report) == 1 and "Drive was slow: the copy was still moving" in report[0]
    gate.set()


def test_a_read_that_stops_moving_gives_up_within_the_bound(tmp_path):
    writer = DriveWriter(stall_s=0.3, verbose=False)
    release = threading.Event()
    with pytest.warns(DriveWarning, match="Google Drive is not answering: listing"):
        ok, reason = writer.call(lambda tick: release.wait(), tmp_path, "listing")
    assert not ok and "made no progress for" in reason
    ok, reason = writer.call(lambda tick: 42, tmp_path)
    assert not ok and "still stuck" in reason
    release.set()
    until(lambda: not writer._stuck_reader.is_alive())
    assert writer.call(lambda tick: 42, tmp_path) == (True, 42)
    assert writer.close(timeout=1) == []


# ---------------------------------------------------------------------------------------------------------
# The end-of-run report and the command it gives
# ---------------------------------------------------------------------------------------------------------

def test_the_report_names_each_file_the_fault_and_a_command_that_copies_it(tmp_path, monkeypatch):
    local, remote = tmp_path / "run", tmp_path / "drive" / "run"
    ckpt = CheckpointManager(local, every_minutes=None, handle_signals=False, verbose=False)
    saved = ckpt.save(2, {"m": torch.nn.Linear(3, 2)})
    ckpt.close()
    grids = make_files(local / "samples", 6, size=300)
    FaultyDrive(remote, errno.ENOSPC, after_bytes=0).install(monkeypatch)
    writer = DriveWriter(verbose=False)
    writer.put(saved, remote / saved.name, kind="checkpoint", group="ckpts")
    for grid in grids:
        writer.put(grid, remote / "samples" / grid.name)
    with pytest.warns(DriveWarning) as caught:
        report = writer.close(timeout=30)
    assert "Google Drive is full" in str(caught[0].message)
    assert str(caught[-1].message).startswith("Not everything reached Google Drive:\n" + report[0])
    command = f"python -m colab_utils.drive copy {saved} {remote}"
    assert report[0] == (f"checkpoint ckpt-000000002.pt saved locally at {saved}; the Drive copy failed because "
                         f"Google Drive is full ([Errno 28] No space left on device); run `{command}` to copy it "
                         f"when Drive is back (in this session: the local disk does not outlive it).")
    assert report[1].startswith(f"6 picture files for {remote / 'samples'} stayed local ({local / 'samples'}) "
                                f"because Google Drive is full")
    assert f"`python -m colab_utils.drive copy '{local / 'samples'}/*.png' {remote / 'samples'}`" in report[1]
    monkeypatch.undo()  # Drive has room again: run the commands as a user would
    for line in report:
        cmd = shlex.split(line.split("`")[1])
        assert cmd[:4] == ["python", "-m", "colab_utils.drive", "copy"]
        done = subprocess.run([sys.executable] + cmd[1:], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert files(remote / "samples") == files(local / "samples")
    assert json.loads((remote / "ckpt-000000002.json").read_text())["sha256"] == sha256_file(remote / saved.name)
    assert drive.main(["copy", str(saved), str(remote)]) == 0  # again: nothing to do
    assert "already there" in "".join(subprocess.run([sys.executable, "-m", "colab_utils.drive", "copy", str(saved),
                                                      str(remote)], capture_output=True, text=True).stdout)


def test_the_copy_command_refuses_an_unmounted_drive_and_a_missing_file(tmp_path, monkeypatch, capsys):
    root = tmp_path / "content_drive"
    root.mkdir()
    monkeypatch.setenv(drive.ROOT_ENV, str(root))
    (src,) = make_files(tmp_path / "run", 1)
    assert drive.main(["copy", str(src), str(root / "MyDrive" / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m colab_utils.drive: error: {root} is not a mount point")
    assert "is not a mount point" in err and "Nothing was copied" in err and "mount_drive()" in err
    assert list(root.iterdir()) == []
    assert drive.main(["copy", str(tmp_path / "nothing.pt"), str(tmp_path / "d")]) == 2
    assert "nothing.pt is not a file" in capsys.readouterr().err
    assert drive.main(["copy", str(tmp_path / "run" / "*.gif"), str(tmp_path / "d")]) == 2
    assert "*.gif matches no file" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------------------
# Where local disk and Drive stand
# ---------------------------------------------------------------------------------------------------------

def test_resume_says_where_local_and_drive_stand_and_catches_drive_up(tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "drive"
    model = torch.nn.Linear(3, 2)
    first = CheckpointManager(local, drive_dir=remote, every_minutes=None, handle_signals=False, verbose=False)
    first.save(1, {"m": model})
    first.close()
    manifest = json.loads((remote / "ckpt-000000001.json").read_text())
    assert manifest["file"] == "ckpt-000000001.pt" and first.drive_status().startswith(
        "last checkpoint on Drive: step 1, less than a minute ago")
    CheckpointManager(local, every_minutes=None, handle_signals=False, verbose=False).save(2, {"m": model})

    behind = CheckpointManager(local, drive_dir=remote, every_minutes=None, handle_signals=False)
    assert behind.restore({"m": model})["step"] == 2
    out = capsys.readouterr().out
    assert "Drive is behind local disk: Drive has step 1 (less than a minute ago), local disk step 2" in out
    assert "a disconnect now would lose 1 steps. Copying step 2 to Drive now." in out
    behind.close()
    assert sorted(p.name for p in remote.glob("*.pt")) == ["ckpt-000000001.pt", "ckpt-000000002.pt"]
    assert "last checkpoint on Drive: step 2" in capsys.readouterr().out

    data = json.loads((remote / "ckpt-000000002.json").read_text())
    data["time"] -= 5 * 60
    (remote / "ckpt-000000002.json").write_text(json.dumps(data))
    for path in local.iterdir():
        path.unlink()  # a new session: local disk is empty
    fresh = CheckpointManager(local, drive_dir=remote, every_minutes=None, handle_signals=False)
    info = fresh.restore({"m": model})
    out = capsys.readouterr().out
    assert info["step"] == 2 and info["path"] == remote / "ckpt-000000002.pt"
    assert f"No checkpoint on local disk ({local}: a new session, or it was wiped): resumed from the Drive copy " \
           f"of step 2 (5 minutes ago)." in out
    assert fresh.drive_status() == "last checkpoint on Drive: step 2, 5 minutes ago"
    fresh.close()


def test_an_unreadable_drive_with_an_empty_local_disk_is_said_loudly(tmp_path, monkeypatch):
    mount = FakeMount(tmp_path / "content_drive").install(monkeypatch)
    remote = mount.root / "MyDrive" / "run"
    mgr = CheckpointManager(tmp_path / "local", drive_dir=remote, every_minutes=None, handle_signals=False,
                            verbose=False)
    mgr.save(1, {"m": torch.nn.Linear(2, 2)})
    mgr.close()
    mount.unmount()
    for path in (tmp_path / "local").iterdir():
        path.unlink()
    again = CheckpointManager(tmp_path / "local", drive_dir=remote, every_minutes=None, handle_signals=False,
                              verbose=False)
    with pytest.warns(CheckpointWarning, match=r"could not be read \(.*is not a mount point.*\) and local disk .* "
                                               r"holds no checkpoint: the run starts from step 0"):
        assert again.restore({"m": torch.nn.Linear(2, 2)}) is None
    assert "Drive: " in again.drive_status() and "not a mount point" in again.drive_status()
    again.close()
    assert mount.bare_contents() == []
