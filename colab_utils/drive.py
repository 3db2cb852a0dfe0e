"""Writes to Google Drive that never stop or hang training.

Google Drive in Colab is a FUSE mount that fails in known ways (colabtools #280, #5970; see
``COLAB_NOTES.md``): it goes stale ("Transport endpoint is not connected", ENOTCONN) or disappears at a
disconnect, fills up mid-copy (ENOSPC, EDQUOT), answers EIO, or blocks for minutes. Everything this project
sends to Drive during training (checkpoint copies, sample grids, GIFs, loss curves, exports) is first written
to local disk, then copied by one :class:`DriveWriter`, which

- before each copy checks that the Drive root (``/content/drive``, or ``$COLAB_UTILS_DRIVE_ROOT``) is a live
  mount point, and never creates a folder under an unmounted one (that would fill the bare mount point, which
  makes the next ``drive.mount`` refuse it);
- copies in one background thread to a temporary name (``.NAME.drive-partial-HOST-PID-XXXX``), fsyncs,
  verifies and renames; temporary files of a copy that was cut off are removed by a later copy into the same
  folder, or by the next session;
- on ENOSPC, EDQUOT, ENOTCONN, EIO, an unmounted root or a copy that stops making progress keeps the local
  file, warns once per kind of fault (naming the file and the remedy) and retries later;
- never raises into the training loop, and can be abandoned: :meth:`DriveWriter.close` waits at most a given
  time, tells a slow copy (bytes still moving) from a hung one, and reports what was not copied with the
  command that copies it later (``python -m colab_utils.drive copy ...``).

    writer = DriveWriter()
    grid = writer.save(run_dir / "samples/step-100.png", lambda p: viz.save_grid(images, p),
                       drive_dir / "samples/step-100.png")      # local path; the copy happens in the background
    ...
    writer.close(timeout=60)                                    # bounded; returns (and warns) what is missing

Reading from Drive goes through :meth:`DriveWriter.call`, which runs the read in a helper thread and gives up
when it stops making progress.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import glob
import hashlib
import os
import re
import secrets
import shlex
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from colab_utils import runtime

ROOT_ENV = "COLAB_UTILS_DRIVE_ROOT"
CHUNK = 1 << 20
COMMAND = "python -m colab_utils.drive copy"
IMPORTANT = ("checkpoint", "export")     # kinds retried at the end and reported one by one
_SKIPPED = object()                       # a job whose local file was retired before its turn

# Each kind of fault: what happened, and what the user can do about it.
FAULTS = {
    "full": ("Google Drive is full", "free space on Drive (empty its bin too), or keep fewer checkpoints "
                                     "(keep_last)"),
    "disconnected": ("the Google Drive mount is stale (the connection to Drive dropped)",
                     "remount Drive: colab_utils.runtime.mount_drive(force_remount=True)"),
    "unmounted": ("Google Drive is not mounted", "mount Drive again: colab_utils.runtime.mount_drive()"),
    "io": ("Google Drive answered with an I/O error",
           "this is often temporary (Drive busy or throttled); if it persists, remount Drive: "
           "colab_utils.runtime.mount_drive(force_remount=True)"),
    "hung": ("Google Drive is not answering", "wait, or remount Drive: "
                                              "colab_utils.runtime.mount_drive(force_remount=True)"),
    "other": ("the copy to Google Drive failed", "see the error above; the local file is intact"),
}
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_GONE = {errno.ENOTCONN, errno.ESTALE, errno.ECONNABORTED, errno.ECONNRESET, errno.ENODEV, errno.ENXIO}
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.drive-partial-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]{8}$")
_LEGACY_TEMP = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]+$")  # what older versions left on Drive


class DriveWarning(UserWarning):
    """A copy to Google Drive failed or is late; the local file is intact."""


class DriveUnavailableError(OSError):
    """The Drive root is not a live mount point: nothing is written (and no folder created) under it."""


class DriveFault(Exception):
    """Raised inside the copy thread for a fault that is not an OSError (unmounted root, read-back mismatch)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------------------
# Where Drive is, and whether it is alive
# ---------------------------------------------------------------------------------------------------------

def _under(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False


def drive_root(path: str | os.PathLike) -> Path | None:
    """The mount point that ``path`` lives under when it is on Google Drive: ``$COLAB_UTILS_DRIVE_ROOT`` (tests,
    other mounts) or ``/content/drive``; None for any other path. Decided from the path alone (no file system
    access, so a hung mount cannot block it)."""
    env = os.environ.get(ROOT_ENV)
    for root in ([Path(env)] if env else []) + [Path(runtime.DRIVE_MOUNT)]:
        if _under(Path(path), root):
            return Path(os.path.abspath(root))
    return None


def is_drive_path(path: str | os.PathLike, drive_dir: str | os.PathLike | None = None) -> bool:
    """True when ``path`` is on Drive: under a Drive root (:func:`drive_root`) or under ``drive_dir`` (the
    folder a run was told is on Drive). No file system access."""
    return drive_root(path) is not None or (drive_dir is not None and _under(Path(path), Path(drive_dir)))


def mount_problem(root: str | os.PathLike) -> tuple[str, str] | None:
    """None when ``root`` is a live mount point, else ``(kind, explanation)`` with kind ``"unmounted"`` or
    ``"disconnected"`` (a stale FUSE mount: stat fails with ENOTCONN). This is the mount check every Drive write
    runs first; tests replace it (``monkeypatch.setattr(drive, "mount_problem", ...)``). On a hung mount the
    stat itself blocks, which is why only the copy thread and bounded helper threads call it."""
    root = Path(root)
    try:
        os.stat(root)
    except FileNotFoundError:
        return "unmounted", f"{root} does not exist, so Google Drive is not mounted there"
    except OSError as err:
        return _kind_of(err), f"{root} cannot be read ({err.strerror or err}, errno {err.errno})"
    if not os.path.ismount(root):
        return "unmounted", f"{root} is not a mount point: Google Drive is not mounted there"
    return None


def ensure_parent(path: str | os.PathLike) -> Path:
    """Create the folder of ``path`` unless it lies under a Drive root that is not a live mount point, in which
    case raise :class:`DriveUnavailableError` and create nothing. For direct writes outside the training loop
    (``viz.save_grid`` and friends); trainers use :class:`DriveWriter` instead."""
    path = Path(path)
    root = drive_root(path)
    if root is not None:
        problem = mount_problem(root)
        if problem is not None:
            raise DriveUnavailableError(errno.ENOTCONN, f"not writing {path}: {problem[1]}. Nothing was created "
                                                        f"under {root}; {FAULTS[problem[0]][1]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _kind_of(err: BaseException) -> str:
    if isinstance(err, DriveFault):
        return err.kind
    if isinstance(err, OSError):
        if err.errno in _FULL:
            return "full"
        if err.errno in _GONE:
            return "disconnected"
        if err.errno == errno.ETIMEDOUT:
            return "hung"
        if err.errno == errno.EIO:
            return "io"
    return "other"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MB" if nbytes >= 2**17 else f"{nbytes / 2**10:.0f} kB"


def _open_target(path: Path):
    """Every byte written to Drive goes through a file opened here (the seam fault tests replace)."""
    return open(path, "wb")


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.drive-partial-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ---------------------------------------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class _Job:
    local: Path
    target: Path
    kind: str
    label: str
    verify: bool = False
    sha256: str | None = None
    before_commit: Callable[[Path], None] | None = None
    after: Callable[[], None] | None = None
    lock: Any = None
    on_fail: Callable[[str], None] | None = None
    group: str | None = None
    order: int = 0
    attempts: int = 0
    error: str | None = None
    fault: str | None = None
    retry_at: float = 0.0
    size: int = 0
    done_bytes: int = 0
    partial: int = 0          # bytes of the partial copy removed after the last failed try


class DriveWriter:
    """One background copier to Google Drive for a whole run (see the module docstring).

    - ``stall_s``: a copy or read that moves no byte for this long counts as hung (warned once; reads give up).
    - ``retry_s``: a failed copy is tried again this long after (doubling up to 10 minutes), and once more at
      :meth:`close`.
    - ``check``: the mount check (default :func:`mount_problem`, looked up at each call).
    """

    def __init__(self, *, stall_s: float = 30.0, retry_s: float = 60.0,
                 check: Callable[[Path], tuple[str, str] | None] | None = None, verbose: bool = True):
        if not stall_s > 0 or not retry_s > 0:
            raise ValueError(f"stall_s and retry_s must be > 0, got {stall_s}, {retry_s}")
        self.stall_s, self.retry_s, self.verbose = float(stall_s), float(retry_s), verbose
        self._check_fn = check
        self._cv = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._waiting: list[_Job] = []        # failed, to be retried at job.retry_at
        self._failed: list[_Job] = []         # failed for good (their final try at close() failed too)
        self._current: _Job | None = None
        self._progress_at = time.monotonic()
        self._order = 0
        self._newest: dict[str, int] = {}     # group -> order of its newest job
        self._group_done: dict[str, int] = {}  # group -> order of its newest job that reached Drive
        self._worker: threading.Thread | None = None
        self._stuck_reader: threading.Thread | None = None
        self._closing = self._stopped = False
        self._report: list[str] | None = None
        self._cleaned: set[Path] = set()
        self._in_flight: set[Path] = set()
        self._leftovers: dict[Path, int] = {}  # partial files we could not remove -> their size
        self.faults: dict[str, str] = {}       # kind -> the first warning of that kind
        self._warn_lock = threading.Lock()
        self.copied = 0
        self.slowest_copy = 0.0

    @classmethod
    def bounded(cls, wait_s: float, *, verbose: bool = True) -> "DriveWriter":
        """A writer for a run that waits for Drive at most ``wait_s`` at a time: a copy or read that moves no byte
        for ``min(30 s, wait_s)`` counts as hung."""
        return cls(stall_s=min(30.0, max(0.5, float(wait_s))), verbose=verbose)

    # ---- what callers use ---------------------------------------------------------------------------------

    def save(self, local: str | os.PathLike, make: Callable[[Path], Any], target: str | os.PathLike | None = None,
             *, kind: str = "picture", **put_kw) -> Path | None:
        """Write ``local`` with ``make(local)``, then queue its copy to ``target`` (when given). A picture or a
        log that cannot even be written locally is warned about and skipped (None is returned); exports raise.
        ``make`` returning False means there was nothing to write (None is returned). Returns the local path."""
        local = Path(local)
        try:
            if make(local) is False:
                return None
        except OSError as err:
            if kind in IMPORTANT:
                raise
            self._warn_once(f"local-{kind}", f"could not write the {kind} {local} ({err}); training goes on "
                                             f"without it")
            return None
        if target is not None:
            self.put(local, target, kind=kind, **put_kw)
        return local

    def put(self, local: str | os.PathLike, target: str | os.PathLike, *, kind: str = "picture",
            label: str | None = None, verify: bool | None = None, sha256: str | None = None,
            before_commit: Callable[[Path], None] | None = None, after: Callable[[], None] | None = None,
            lock: Any = None, on_fail: Callable[[str], None] | None = None, group: str | None = None) -> None:
        """Queue a copy of the local file ``local`` to ``target`` on Drive; returns at once.

        ``verify`` (default: for checkpoints and exports) reads the copy back and compares sha256 (with
        ``sha256``, against that). ``before_commit(target)`` runs in the copy thread after the copy verified and
        before it is renamed into place (e.g. to write a manifest with :meth:`write_now`), ``after()`` once it is
        in place; both under ``lock`` when given. ``on_fail(message)`` hears about each failed try. Within a
        ``group`` a newer job supersedes older failed ones (a run's checkpoints). A queued copy of the same
        ``target`` is replaced."""
        if self._stopped:
            warnings.warn(f"{local} was not copied to {target}: the Drive writer is closed", DriveWarning,
                          stacklevel=2)
            return
        local, target = Path(local), Path(target)
        job = _Job(local, target, kind, label or f"{kind} {local.name}",
                   verify=kind in IMPORTANT if verify is None else verify, sha256=sha256,
                   before_commit=before_commit, after=after, lock=lock, on_fail=on_fail, group=group)
        with self._cv:
            self._order += 1
            job.order = self._order
            self._queue = collections.deque(j for j in self._queue if j.target != target)
            self._waiting = [j for j in self._waiting if j.target != target
                             and not (group is not None and j.group == group)]
            if group is not None:
                self._newest[group] = job.order
            self._queue.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="drive-writer", daemon=True)
                self._worker.start()
            self._cv.notify_all()
        self.poll()

    def call(self, fn: Callable[[Callable[..., None]], Any], target: str | os.PathLike,
             what: str = "reading") -> tuple[bool, Any]:
        """Run ``fn(tick)`` (a read from Drive; ``tick()`` marks progress) in a helper thread after the mount
        check for ``target``. Returns ``(True, value)``, or ``(False, reason)`` when the root is not a live mount,
        ``fn`` raised OSError, or nothing moved for ``stall_s`` (the thread is then abandoned). Never blocks
        longer than that; answers at once while an earlier read or copy is known to hang."""
        target = Path(target)
        hung = self._hung_reason()
        if hung is not None:
            return False, hung
        root = drive_root(target)
        box: dict[str, Any] = {}
        done = threading.Event()
        moved = [time.monotonic()]

        def tick(*_):
            moved[0] = time.monotonic()

        def run():
            try:
                problem = self._check(root) if root is not None else None
                tick()
                if problem is not None:
                    box["error"] = f"{problem[1]}"
                else:
                    box["value"] = fn(tick)
            except OSError as err:
                box["error"] = f"{type(err).__name__}: {err}"
            finally:
                done.set()

        thread = threading.Thread(target=run, name="drive-read", daemon=True)
        thread.start()
        while not done.wait(0.02):
            if time.monotonic() - moved[0] >= self.stall_s:
                self._stuck_reader = thread
                reason = f"{what} {target} made no progress for {self.stall_s:.0f} s"
                self._warn_once("hung", f"{FAULTS['hung'][0]}: {reason}. Training goes on from local disk; "
                                        f"to fix: {FAULTS['hung'][1]}.")
                return False, reason
        if "error" in box:
            return False, box["error"]
        return True, box.get("value")

    def write_now(self, target: Path, data: bytes) -> None:
        """Write ``data`` to ``target`` on Drive through a temp file, from inside a job (``before_commit``).
        Raises on failure (the job then fails as a whole)."""
        tmp = _temp_name(target)
        self._in_flight.add(tmp)
        try:
            with _open_target(tmp) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            self._remove_partial(tmp, len(data))
            raise
        finally:
            self._in_flight.discard(tmp)

    def poll(self) -> None:
        """Warn (once) when the copy in progress has stopped moving for ``stall_s``; cheap, never blocks."""
        with self._cv:
            job, since = self._current, time.monotonic() - self._progress_at
        if job is not None and since >= self.stall_s:
            self._warn_once("hung", f"{FAULTS['hung'][0]}: the copy of {job.label} to {job.target} has made no "
                                    f"progress for {since:.0f} s. It is saved locally at {job.local}; training goes "
                                    f"on and later copies wait. To fix: {FAULTS['hung'][1]}.")

    def pending(self, group: str | None = None) -> int:
        """Copies not done yet (queued, in progress, or waiting for a retry), of ``group`` when given."""
        with self._cv:
            jobs = list(self._queue) + self._waiting + ([self._current] if self._current else [])
        return sum(1 for j in jobs if group is None or j.group == group)

    def wait(self, timeout: float | None = None, group: str | None = None) -> bool:
        """Wait until the queued copies (of ``group``) are done (copies waiting for a retry are not waited for),
        at most ``timeout`` seconds, and no longer once the copy in progress has moved nothing for ``stall_s``.
        True when nothing is left in the queue."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                busy = [j for j in list(self._queue) + ([self._current] if self._current else [])
                        if group is None or j.group == group]
                if not busy:
                    return True
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                if self._current is not None and now - self._progress_at >= self.stall_s:
                    return False
                self._cv.wait(0.05 if deadline is None else max(0.001, min(0.05, deadline - now)))

    def close(self, timeout: float = 60.0) -> list[str]:
        """Give every failed copy one last try, wait at most ``timeout`` seconds (less when the copy in progress
        has stopped moving for ``stall_s``), then stop: a copy stuck in a system call is abandoned. Returns what
        is not on Drive, one line per checkpoint or export ("saved locally at X; the Drive copy failed because
        Y; run `...` to copy it when Drive is back") and a summary of pictures and logs; the same text is
        warned once. Calling it again returns the same lines."""
        with self._cv:
            if self._report is not None:
                return self._report
            self._closing = True
            now = time.monotonic()
            for job in self._waiting:
                job.retry_at = now
            self._cv.notify_all()
        started = time.monotonic()
        moved_at_start = self._moved_marker()
        deadline = started + max(0.0, timeout)
        with self._cv:
            while True:
                busy = self._queue or self._waiting or self._current is not None
                now = time.monotonic()
                if not busy or now >= deadline:
                    break
                if self._current is not None and now - self._progress_at >= self.stall_s:
                    break
                self._cv.wait(max(0.001, min(0.05, deadline - now)))
            self._stopped = True
            self._cv.notify_all()
            current = self._current
            leftover = ([current] if current else []) + list(self._queue) + self._waiting + self._failed
            stalled = time.monotonic() - self._progress_at
        waited = time.monotonic() - started
        moved = self._moved_marker() != moved_at_start
        lines = self._report_lines(leftover, current, stalled, waited, moved)
        self._report = lines
        if lines:
            warnings.warn("Not everything reached Google Drive:\n" + "\n".join(lines), DriveWarning, stacklevel=2)
        return lines

    @property
    def closed(self) -> bool:
        return self._stopped

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the copy thread to end (tests: after releasing a blocked copy). True when it has."""
        if self._worker is None:
            return True
        self._worker.join(timeout)
        return not self._worker.is_alive()

    # ---- the copy thread ----------------------------------------------------------------------------------

    def _check(self, root: Path) -> tuple[str, str] | None:
        return (self._check_fn or mount_problem)(root)

    def _tick(self, job: _Job | None = None, nbytes: int = 0) -> None:
        self._progress_at = time.monotonic()
        if job is not None:
            job.done_bytes += nbytes

    def _moved_marker(self) -> tuple[int, float]:
        return self.copied, self._progress_at

    def _hung_reason(self) -> str | None:
        if self._stuck_reader is not None and self._stuck_reader.is_alive():
            return "an earlier read from Drive is still stuck"
        with self._cv:
            job, since = self._current, time.monotonic() - self._progress_at
        if job is not None and since >= self.stall_s:
            return f"the copy of {job.label} has made no progress for {since:.0f} s"
        return None

    def _next_job(self) -> _Job | None:
        if self._queue:
            return self._queue.popleft()
        now = time.monotonic()
        due = [j for j in self._waiting if j.retry_at <= now]
        if not due:
            return None
        job = min(due, key=lambda j: j.retry_at)
        self._waiting.remove(job)
        return job

    def _work(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stopped:
                        return
                    job = self._next_job()
                    if job is not None:
                        break
                    soonest = min((j.retry_at for j in self._waiting), default=None)
                    self._cv.wait(None if soonest is None else max(0.01, soonest - time.monotonic()))
                self._current = job
                self._progress_at = time.monotonic()
            error = self._run(job)
            failed = error is not None and error is not _SKIPPED
            if failed and not self._stopped:  # told before anyone can see the job waiting for its retry
                job.attempts += 1
                job.fault = _kind_of(error)
                job.error = f"{FAULTS[job.fault][0]} ({_describe(error)})"
                self._warn_fault(job, error)
                if job.on_fail is not None:
                    try:
                        job.on_fail(job.error)
                    except Exception:  # a callback must not kill the copy thread
                        pass
            with self._cv:
                self._current = None
                if error is None:
                    self._succeeded(job)
                elif failed:
                    self._failed_try(job)
                self._cv.notify_all()

    def _succeeded(self, job: _Job) -> None:
        self.copied += 1
        if job.group is not None:
            self._group_done[job.group] = max(self._group_done.get(job.group, 0), job.order)
            self._waiting = [j for j in self._waiting if not (j.group == job.group and j.order < job.order)]
        if self._waiting and not self._closing:  # Drive works again: retry the others now
            now = time.monotonic()
            for other in self._waiting:
                other.retry_at = min(other.retry_at, now)
            if self.faults and self.verbose:
                print(f"Google Drive works again: retrying {len(self._waiting)} earlier cop"
                      f"{'y' if len(self._waiting) == 1 else 'ies'}")

    def _failed_try(self, job: _Job) -> None:
        superseded = job.group is not None and (self._newest.get(job.group, 0) > job.order)
        if superseded or self._stopped:
            if not superseded:
                self._failed.append(job)
            return
        if self._closing:
            self._failed.append(job)
            return
        job.retry_at = time.monotonic() + min(600.0, self.retry_s * 2 ** (job.attempts - 1))
        self._waiting.append(job)

    def _run(self, job: _Job) -> Any:
        """One try of one copy; returns the error, None when the file is on Drive, or _SKIPPED."""
        started = time.monotonic()
        root = drive_root(job.target)
        tmp = None
        job.partial = 0
        try:
            if not job.local.exists():
                return _SKIPPED  # superseded: the local file was retired (retention) before its turn
            if root is not None:
                problem = self._check(root)
                self._tick()
                if problem is not None:
                    raise DriveFault(problem[0], problem[1])
            self._make_dirs(job.target.parent, root)
            self._clean_folder(job.target.parent)
            tmp = _temp_name(job.target)
            self._in_flight.add(tmp)
            digest = self._copy(job, tmp)
            if job.verify:
                expected = job.sha256 or digest
                got = self._sha256(tmp, job)
                if got != expected:
                    raise DriveFault("io", f"the copy read back from Drive has sha256 {got[:12]}..., the local "
                                           f"file {expected[:12]}...")
            if root is not None:
                problem = self._check(root)
                if problem is not None:
                    raise DriveFault(problem[0], problem[1])
            if self._stopped:  # abandoned by close(): its report says this file is not on Drive, so keep it so
                raise DriveFault("hung", "abandoned when the writer closed")
            with job.lock if job.lock is not None else _NoLock():
                if job.before_commit is not None:
                    job.before_commit(job.target)
                os.replace(tmp, job.target)
                self._in_flight.discard(tmp)
                tmp = None
                fsync_dir(job.target.parent)
                if job.after is not None:
                    try:
                        job.after()
                    except OSError as err:  # e.g. retention on Drive: the copy itself is fine
                        self._warn_once("after", f"after copying {job.label} to {job.target}: {_describe(err)}")
            self.slowest_copy = max(self.slowest_copy, time.monotonic() - started)
            return None
        except Exception as err:  # never into the training loop
            return err
        finally:
            if tmp is not None:
                self._in_flight.discard(tmp)
                job.partial = self._remove_partial(tmp, job.done_bytes)

    def _copy(self, job: _Job, tmp: Path) -> str:
        digest = hashlib.sha256()
        job.done_bytes = 0
        with open(job.local, "rb") as fin:
            job.size = os.fstat(fin.fileno()).st_size
            with _open_target(tmp) as fout:
                while chunk := fin.read(CHUNK):
                    fout.write(chunk)
                    digest.update(chunk)
                    self._tick(job, len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
        self._tick()
        return digest.hexdigest()

    def _sha256(self, path: Path, job: _Job) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                self._tick()
        return digest.hexdigest()

    def _make_dirs(self, folder: Path, root: Path | None) -> None:
        """Create ``folder``; under a Drive root only while the root is a live mount (checked again after, and
        what was just created removed if the mount went away meanwhile)."""
        if root is None:
            folder.mkdir(parents=True, exist_ok=True)
            return
        missing, p = [], folder
        while _under(p, root) and Path(os.path.abspath(p)) != root and not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
        if missing:
            problem = self._check(root)
            if problem is not None:
                for d in missing:
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
                raise DriveFault(problem[0], problem[1])
        self._tick()

    def _clean_folder(self, folder: Path) -> None:
        """Remove partial files in ``folder`` left by copies that were cut off: another machine's (an earlier
        session), a dead process's on this machine, or our own failed ones (once per folder, and again after a
        failure left one behind)."""
        if folder in self._cleaned:
            return
        self._cleaned.add(folder)
        removed, total = 0, 0
        for name in os.listdir(folder):
            match = _PARTIAL.match(name)
            path = folder / name
            if match:
                pid = int(match.group("pid"))
                stale = (match.group("host") != _HOST or (pid != os.getpid() and not _pid_alive(pid))
                         or (pid == os.getpid() and path not in self._in_flight))
            else:
                legacy = _LEGACY_TEMP.match(name)
                stale = legacy is not None and not _pid_alive(int(legacy.group("pid")))
            if not stale:
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed, total = removed + 1, total + size
            self._leftovers.pop(path, None)
        if removed and self.verbose:
            print(f"Removed {removed} partial file{'s' if removed > 1 else ''} ({_mb(total)}) that an interrupted "
                  f"copy left in {folder}")

    def _remove_partial(self, tmp: Path, size_hint: int) -> int:
        """Remove a failed copy's temp file; returns its size. One that cannot be removed (a stale mount) is
        remembered, counted in the warnings and removed by a later copy into its folder."""
        try:
            size = tmp.stat().st_size
        except OSError:
            size = size_hint
        try:
            tmp.unlink()
        except FileNotFoundError:
            size = 0
        except OSError:
            self._leftovers[tmp] = size
            self._cleaned.discard(tmp.parent)  # the next copy into this folder tries again
            return size
        self._leftovers.pop(tmp, None)
        return size

    # ---- messages -----------------------------------------------------------------------------------------

    def _warn_once(self, kind: str, message: str) -> None:
        with self._warn_lock:
            if kind in self.faults:
                return
            self.faults[kind] = message
        warnings.warn(message, DriveWarning, stacklevel=3)

    def _warn_fault(self, job: _Job, error: BaseException) -> None:
        kind = job.fault or "other"
        title, remedy = FAULTS[kind]
        partial = ""
        left = {p: s for p, s in self._leftovers.items() if p.parent == job.target.parent}
        if left:
            partial = (f" A partial copy ({_mb(sum(left.values()))}) could not be removed from Drive: "
                       f"{', '.join(p.name for p in left)}; the next copy into that folder, or the next session, "
                       f"removes it.")
        elif job.partial:
            partial = f" The {_mb(job.partial)} partial copy was removed."
        retry = "once more when the run ends" if self._closing else "later"
        self._warn_once(kind, f"{title}: could not copy {job.label} to {job.target} ({_describe(error)}). It is "
                              f"saved locally at {job.local}; training goes on and the copy is retried {retry}."
                              f"{partial} To fix: {remedy}. (Further faults of this kind are reported at the end.)")

    def _report_lines(self, leftover: list[_Job], current: _Job | None, stalled: float, waited: float,
                      moved: bool) -> list[str]:
        lines: list[str] = []
        newest: dict[str, _Job] = {}
        singles: list[_Job] = []
        for job in leftover:
            if job.group is not None:
                if self._group_done.get(job.group, 0) >= job.order:
                    continue  # a newer one of the group reached Drive
                if job.group not in newest or job.order > newest[job.group].order:
                    newest[job.group] = job
            else:
                singles.append(job)
        important = [j for j in list(newest.values()) + singles if j.kind in IMPORTANT and j.local.exists()]
        minor = [j for j in singles if j.kind not in IMPORTANT and j.local.exists()]
        for job in sorted(important, key=lambda j: j.order):
            reason = self._why(job, current, stalled, waited, moved)
            lines.append(f"{job.label} saved locally at {job.local}; the Drive copy failed because {reason}; run "
                         f"`{copy_command([job.local], job.target.parent)}` to copy it when Drive is back (in this "
                         f"session: the local disk does not outlive it).")
        if minor:
            by_folder: dict[Path, list[_Job]] = {}
            for job in minor:
                by_folder.setdefault(job.target.parent, []).append(job)
            for folder, jobs in by_folder.items():
                reason = self._why(jobs[-1], current, stalled, waited, moved)
                kinds = sorted({j.kind for j in jobs})
                lines.append(f"{len(jobs)} {' and '.join(kinds)} file{'s' if len(jobs) > 1 else ''} for {folder} "
                             f"stayed local ({jobs[0].local.parent}) because {reason}; run "
                             f"`{copy_command([j.local for j in jobs], folder)}` to copy "
                             f"{'them' if len(jobs) > 1 else 'it'} when Drive is back.")
        if self._leftovers:
            lines.append(f"{len(self._leftovers)} partial file(s) ({_mb(sum(self._leftovers.values()))}) could not "
                         f"be removed from Drive ({', '.join(str(p) for p in self._leftovers)}); the next copy into "
                         f"that folder, or the next session, removes them.")
        return lines

    def _why(self, job: _Job, current: _Job | None, stalled: float, waited: float, moved: bool) -> str:
        if job is current:
            done = f"{_mb(job.done_bytes)} of {_mb(job.size)}" if job.size else "nothing yet"
            if stalled >= self.stall_s or not moved:
                return (f"Drive looks hung: the copy had moved no byte for {stalled:.1f} s when the run stopped "
                        f"waiting ({done} written)")
            return f"Drive was slow: the copy was still moving when the run stopped waiting ({done} written)"
        if job.error is not None:
            return job.error
        if current is not None:
            state = (f"on which Drive looks hung (no byte moved for {stalled:.1f} s)"
                     if stalled >= self.stall_s or not moved else "which was still copying, slowly")
            return f"it was still queued behind {current.label}, {state}"
        return f"it was still queued when the run stopped waiting ({waited:.1f} s)"


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"[Errno {err.errno}] {err.strerror}"
    return f"{type(err).__name__}: {err}" if not isinstance(err, DriveFault) else str(err)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: FUSE mounts often refuse fsync on folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # FUSE mounts often do not support fsync on folders
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# Copying later by hand: python -m colab_utils.drive copy FILES... FOLDER
# ---------------------------------------------------------------------------------------------------------

def copy_command(sources: Iterable[Path], folder: Path) -> str:
    """The shell command that copies ``sources`` into ``folder`` (a glob for many files of one folder)."""
    sources = [Path(s) for s in sources]
    parents = {s.parent for s in sources}
    if len(sources) > 4 and len(parents) == 1:
        suffixes = {s.suffix for s in sources}
        pattern = f"*{suffixes.pop()}" if len(suffixes) == 1 else "*"
        names = [str(parents.pop() / pattern)]
    else:
        names = [str(s) for s in sources]
    return " ".join([COMMAND] + [shlex.quote(n) for n in names] + [shlex.quote(str(folder))])


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
    except OSError:
        return False
    return _sha256_of(a) == _sha256_of(b)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_files(sources: Iterable[str | os.PathLike], folder: str | os.PathLike, *, stall_s: float = 60.0,
               verbose: bool = True) -> tuple[list[Path], list[str]]:
    """Copy local files (or glob patterns) into the Drive ``folder`` through a :class:`DriveWriter`: the mount
    check, temp files, read-back verification. A checkpoint's manifest (``X.json`` beside ``X.pt``) goes first.
    Files already there with the same bytes are skipped. Returns (files copied, problems)."""
    folder = Path(folder)
    files: list[Path] = []
    for source in sources:
        pattern = any(c in str(source) for c in "*?[")
        matches = sorted(glob.glob(str(source))) if pattern else [str(source)]
        if not matches:
            raise FileNotFoundError(f"{source} matches no file (nothing to copy)")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is not a file (nothing to copy)")
            if path.suffix == ".pt" and path.with_suffix(".json").is_file():
                files.append(path.with_suffix(".json"))
            files.append(path)
    files = list(dict.fromkeys(files))
    root = drive_root(folder)
    if root is not None:
        problem = mount_problem(root)
        if problem is not None:
            return [], [f"{problem[1]}. Nothing was copied (and no folder made under {root}); to fix: "
                        f"{FAULTS[problem[0]][1]}"]
    writer = DriveWriter(stall_s=stall_s, verbose=verbose)
    todo = [f for f in files if not _same_file(f, folder / f.name)]
    why: dict[Path, str] = {}
    for path in todo:
        writer.put(path, folder / path.name, kind="export", label=path.name,
                   on_fail=lambda message, p=path: why.__setitem__(p, message))
        writer.wait()  # one by one: a manifest lands before its checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriveWarning)
        writer.close(timeout=stall_s)
    copied = [p for p in todo if _same_file(p, folder / p.name)]
    if verbose:
        for path in files:
            state = "copied" if path in copied else ("already there" if path not in todo else "NOT copied")
            print(f"{state}: {path} -> {folder / path.name}")
    problems = [f"{p}: {why.get(p, f'Drive moved no byte for {stall_s:.0f} s')}" for p in todo if p not in copied]
    return copied, problems


def _run_copy(args: argparse.Namespace) -> int:
    copied, problems = copy_files(args.sources, args.folder, stall_s=args.stall_s)
    if problems:
        raise DriveUnavailableError("; ".join(problems))
    return 0


def main(argv: list[str] | None = None) -> int:
    from colab_utils import cli  # the shared handler: a missing file or a Drive problem is one line and exit 2

    parser = argparse.ArgumentParser(prog="python -m colab_utils.drive",
                                     description="Copy files that a run left on local disk to Google Drive, with "
                                                 "the same checks as during training (live mount, temp file, "
                                                 "read-back).")
    sub = parser.add_subparsers(dest="command", required=True)
    copy = sub.add_parser("copy", help="copy local files (or glob patterns) into a Drive folder")
    copy.add_argument("sources", nargs="+", help="local files or quoted glob patterns ('run/samples/*.png')")
    copy.add_argument("folder", help="the Drive folder to copy them into (created if missing, on a live mount)")
    copy.add_argument("--stall-s", type=float, default=60.0,
                      help="give up when Drive moves no byte for this many seconds (default: 60)")
    return cli.run(parser, {"copy": _run_copy}, argv)


if __name__ == "__main__":
    sys.exit(main())
