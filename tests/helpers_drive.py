"""Google Drive faults for the tests, through the project's own seams (not collected by pytest).

- :class:`FaultyDrive`: writes under a folder raise ENOSPC / ENOTCONN / EIO once ``after_bytes`` bytes went there
  (``colab_utils.drive._open_target`` is the one place every byte bound for Drive is written through);
- :class:`FakeMount`: a folder that is a live "mount point" for the mount check until it is unmounted, which
  moves its contents aside and leaves the bare, empty mount point behind, as a real unmount does;
- :class:`BlockedDrive`: writes under a folder block until released (a hung Drive).
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

from colab_utils import drive


def _under(path, folder: Path) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)


class _Wrapped:
    def __init__(self, file, on_write):
        self.file, self.on_write = file, on_write

    def write(self, data):
        return self.on_write(self.file, data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def wrap_drive_writes(monkeypatch, on_write, folder: Path | None = None) -> None:
    """Send every write bound for Drive (under ``folder``, or anywhere when None) through
    ``on_write(file, data)``, which writes what it likes to the real file and returns the count."""
    real = drive._open_target

    def open_target(path):
        f = real(path)
        return _Wrapped(f, on_write) if folder is None or _under(path, folder) else f

    monkeypatch.setattr(drive, "_open_target", open_target)


class FaultyDrive:
    """Writes under ``folder`` fail with OSError(``code``) once ``after_bytes`` bytes in all have been written
    there (the write that crosses the limit lands partly, as on a real full disk); ``heal()`` ends the fault."""

    def __init__(self, folder: Path, code: int, after_bytes: int):
        self.folder, self.code, self.budget = Path(folder), code, after_bytes
        self.written = 0
        self.failures = 0
        self.healed = False
        self._lock = threading.Lock()

    def install(self, monkeypatch) -> "FaultyDrive":
        wrap_drive_writes(monkeypatch, self._write, self.folder)
        return self

    def heal(self) -> None:
        self.healed = True

    def _write(self, file, data) -> int:
        data = bytes(data)
        with self._lock:
            room = len(data) if self.healed else max(0, self.budget - self.written)
            if room >= len(data):
                self.written += len(data)
                return file.write(data)
            file.write(data[:room])
            self.written += room
            self.failures += 1
        raise OSError(self.code, os.strerror(self.code), str(file.name))


class FakeMount:
    """``root`` counts as a mounted Drive for :func:`colab_utils.drive.mount_problem` until :meth:`unmount` (or
    the ``unmount_at``-th mount check, made from whatever thread checks). Unmounting moves the contents to
    ``gone`` and leaves ``root`` an empty folder: anything found under it afterwards was written while Drive
    was not mounted."""

    def __init__(self, root: Path, unmount_at: int | None = None):
        self.root, self.gone = Path(root), Path(str(root) + "-gone")
        self.root.mkdir(parents=True, exist_ok=True)
        self.unmount_at, self.calls, self.mounted = unmount_at, 0, True
        self._lock = threading.Lock()

    def install(self, monkeypatch) -> "FakeMount":
        monkeypatch.setenv(drive.ROOT_ENV, str(self.root))
        monkeypatch.setattr(drive, "mount_problem", self.check)
        return self

    def check(self, root):
        with self._lock:
            self.calls += 1
            if self.mounted and self.unmount_at is not None and self.calls >= self.unmount_at:
                self._unmount()
            if Path(root) != self.root or self.mounted:
                return None
            return "unmounted", f"{root} is not a mount point: Google Drive is not mounted there"

    def unmount(self) -> None:
        with self._lock:
            self._unmount()

    def _unmount(self) -> None:
        if self.mounted:
            shutil.move(str(self.root), str(self.gone))
            self.root.mkdir()
            self.mounted, self.unmount_at = False, None

    def remount(self) -> None:
        """Drive is back: the bare mount point (which must be empty) gives way to the contents again."""
        with self._lock:
            if not self.mounted:
                self.root.rmdir()
                shutil.move(str(self.gone), str(self.root))
                self.mounted = True

    def bare_contents(self) -> list[str]:
        """What lies in the bare mount point (should be nothing)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")) if not self.mounted else []


class BlockedDrive:
    """Writes under ``folder`` block until :meth:`release`; ``waiting`` is set while one is blocked."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.waiting = threading.Event()
        self.released = threading.Event()

    def install(self, monkeypatch) -> "BlockedDrive":
        wrap_drive_writes(monkeypatch, self._write, self.folder)
        return self

    def _write(self, file, data) -> int:
        self.waiting.set()
        self.released.wait()
        return file.write(data)

    def release(self) -> None:
        self.released.set()


def join_copy_threads(timeout: float = 10.0) -> bool:
    """Wait for every Drive copy thread to end (after releasing a blocked one). True when all have."""
    for thread in threading.enumerate():
        if thread.name in ("drive-writer", "drive-read"):
            thread.join(timeout)
    return not any(t.name in ("drive-writer", "drive-read") and t.is_alive() for t in threading.enumerate())


FAULTS = {"ENOSPC": (errno.ENOSPC, "Google Drive is full"),                        # errno, how the warning begins
          "ENOTCONN": (errno.ENOTCONN, "the Google Drive mount is stale"),
          "EIO": (errno.EIO, "Google Drive answered with an I/O error")}
