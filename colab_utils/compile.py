"""``torch.compile`` for the trainers' hot networks: one switch, one place, and a report of what it cost.

Both trainers take ``compile="auto" | "on" | "off"`` (``"auto"``: on for CUDA, off elsewhere, where the
inductor's C++ backend compiles slowly and gains little). :class:`Compiler` turns a network into a compiled
*callable* beside it: the ``nn.Module`` itself is never replaced, so its ``state_dict`` keys (no
``_orig_mod.`` prefix), the EMA copies and the checkpoints are the same with compile on and off, and a
checkpoint written by one loads in the other.

Shapes are fixed (``dynamic=False``): each phase of a step always calls a network with the same batch, so a
graph is compiled once per phase (and per grad mode) and never recompiled. The lazy regularisers (StyleGAN2's
R1 every 16 steps and path length every 4, StarGAN v2's R1) call the plain modules instead: their penalties
need a double backward, which AOTAutograd cannot compile ("torch.compile with aot_autograd does not currently
support double backward", torch 2.14), and keeping them out of the compiled callables also means their
other batch sizes never recompile or break the main graphs.

Compile time is measured (the steps in which new graphs were compiled) and logged; the inductor's
cache lives where :func:`colab_utils.runtime.compile_cache_dir` says (Google Drive in Colab), so a new
session reuses the kernels of the last one.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable

import torch

from colab_utils import runtime

SETTINGS = ("auto", "on", "off")
DEFAULT_BACKEND = "inductor"   # tests switch to "aot_eager": the same graphs and autograd, no kernel compile


def check_setting(setting: str | bool) -> str:
    """``"auto"``, ``"on"`` or ``"off"`` (True / False accepted); ValueError otherwise."""
    if isinstance(setting, bool):
        return "on" if setting else "off"
    text = str(setting).strip().lower()
    text = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(text, text)
    if text not in SETTINGS:
        raise ValueError(f"compile must be one of {SETTINGS} (or a bool), got {setting!r}")
    return text


def wanted(setting: str | bool, device: str | torch.device) -> bool:
    """Whether ``setting`` compiles on ``device``: ``"auto"`` means on CUDA only."""
    setting = check_setting(setting)
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return setting == "on"


def unavailable_reason() -> str | None:
    """Why ``torch.compile`` cannot run in this Python / torch, or None when it can."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:  # raises on Python versions this torch's dynamo does not support
        dynamo = importlib.import_module("torch._dynamo")
    except Exception as exc:  # pragma: no cover - depends on the installed versions
        return f"torch.compile is unavailable on this Python / torch {torch.__version__}: {exc}"
    is_supported = getattr(dynamo, "is_dynamo_supported", None)
    if is_supported is not None and not is_supported():  # pragma: no cover
        return f"torch {torch.__version__}'s dynamo does not support this Python"
    return None


def configure_cache() -> str | None:
    """Point the inductor cache (``TORCHINDUCTOR_CACHE_DIR``; Triton's cache lives inside it) at
    :func:`colab_utils.runtime.compile_cache_dir` unless the user chose one. Returns the folder in use, or
    None for torch's default (a temporary folder)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    folder = runtime.compile_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable Drive: torch's default local cache still works
        return None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return str(folder)


def _graphs_compiled() -> int | None:
    """How many graphs dynamo has compiled in this process (None when this torch does not count them)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return None
    return int(counters["stats"]["unique_graphs"])


class Compiler:
    """Makes compiled callables of networks when ``enabled``, and adds up the time spent compiling.

    ``compiler(module)`` returns ``torch.compile(module, dynamic=False, mode=mode, backend=backend)``, or
    ``module`` itself when disabled; ``compiler.cached(module)`` makes that callable once per module (or per
    ``key``) and hands the same one back on every later call, as the trainers' passes want. A trainer runs each step inside ``with compiler.timed():``; a step in
    which new graphs were compiled (forward and, lazily, backward) counts as compile time. ``report()`` is the
    log line about what was compiled since the last report."""

    def __init__(self, enabled: bool, *, mode: str | None = None, backend: str | None = None):
        self.enabled = bool(enabled)
        self.mode = mode
        self.backend = backend or DEFAULT_BACKEND
        self.seconds = 0.0
        self.graphs = 0
        self.cache_dir: str | None = None
        self._reported = (0, 0.0)
        self._cache: dict[int, tuple[object, Callable]] = {}   # id(key) -> (key, compiled): the key held alive
        if self.enabled:
            reason = unavailable_reason()
            if reason is not None:
                raise RuntimeError(f"compile is on, but {reason}: use compile='off'")
            self.cache_dir = configure_cache()

    @classmethod
    def for_setting(cls, setting: str | bool, device: str | torch.device, **kwargs) -> "Compiler":
        return cls(wanted(setting, device), **kwargs)

    def __repr__(self) -> str:
        return f"Compiler({'on, ' + self.backend if self.enabled else 'off'})"

    def __call__(self, fn: Callable) -> Callable:
        if not self.enabled:
            return fn
        return torch.compile(fn, dynamic=False, mode=self.mode, backend=self.backend)

    def cached(self, fn: Callable, key: object | None = None) -> Callable:
        """``self(fn)``, made on the first call for ``key`` (default: ``fn`` itself, e.g. a module or its DDP
        wrapper) and returned unchanged after; ``fn`` itself when disabled. Pass ``key`` for a callable that is
        a new object at every access (a bound method): the object it belongs to."""
        if not self.enabled:
            return fn
        key = fn if key is None else key
        entry = self._cache.get(id(key))
        if entry is None or entry[0] is not key:
            entry = self._cache[id(key)] = (key, self(fn))
        return entry[1]

    @contextlib.contextmanager
    def timed(self):
        """Charge the wall time of the enclosed code to compile time when it compiled new graphs."""
        if not self.enabled:
            yield
            return
        before = _graphs_compiled()
        start = time.perf_counter()
        yield
        after = _graphs_compiled()
        new = after - before if before is not None and after is not None else int(self.graphs == 0)
        if new:
            self.graphs += new
            self.seconds += time.perf_counter() - start

    def report(self) -> str | None:
        """A line about the graphs compiled since the last report (None when nothing new was compiled)."""
        if not self.enabled or (self.graphs, self.seconds) == self._reported:
            return None
        graphs, seconds = self.graphs - self._reported[0], self.seconds - self._reported[1]
        self._reported = (self.graphs, self.seconds)
        cache = self.cache_dir or "torch's default temporary folder"
        return (f"torch.compile: {graphs} graph{'s' if graphs != 1 else ''} compiled during steps that took "
                f"{seconds:.1f} s in all (inductor cache: {cache})")
