"""Reading files safely, and saying what is wrong with the ones we refuse.

Every file the package reads (rosinality StyleGAN2 files, official StarGAN v2 and FAN weights, part
segmenters, editing catalogs, training checkpoints) goes through :func:`safe_load`: ``torch.load`` with
``weights_only=True`` and only :data:`SAFE_GLOBALS` allowed beyond torch's own list. A file it cannot use
raises one of three errors, all :class:`CheckpointError`:

- :class:`UnsafeCheckpointError`: the pickle inside imports a Python global that could run code
  (``posix.system``, ``subprocess.Popen``, ``builtins.eval``...). The message names it and says that nothing
  was executed: the weights-only unpickler stops at the import, before any call. A file the user trusts can
  be converted once with :func:`convert_trusted`.
- :class:`CheckpointCorruptError`: damaged (truncated, overwritten) or not a checkpoint at all.
- :class:`CheckpointMismatchError`: a readable checkpoint of another model or run. :func:`compare_state_dicts`
  makes the key and shape report every loader prints, and :func:`identify` says what the file is instead.

How a refusal is told apart: torch raises ``pickle.UnpicklingError`` from its weights-only unpickler, but
exposes no structure with it, words it differently across versions, and for a protocol-4 pickle names no
global at all ("Unsupported operand 147"). So after that error the pickle itself is read opcode by opcode
with :mod:`pickletools`, which executes nothing, and the globals outside torch's allowlist are listed
(:func:`refused_globals`). Only when that finds none is torch's message searched for the wordings of the
versions in use (:func:`global_named_in`).
"""
from __future__ import annotations

import _compat_pickle
import argparse
import dataclasses
import enum
import errno
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

# The only globals (besides torch's own defaults) we let torch.load rebuild: rosinality StyleGAN2 training
# checkpoints store their arguments as an argparse.Namespace, which holds plain values and runs no code.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
_SHOW = 10  # how many keys a report lists per kind of problem

# Allowed when torch's private allowlist cannot be read (it has been there since torch 2.0).
_FALLBACK_ALLOWED = frozenset({"collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
                               "builtins.bytearray", "builtins.complex", "builtins.slice", "_codecs.encode"})
# What these modules are better known as, for the message.
_ALIASES = {"posix": "os", "nt": "os"}


class CheckpointError(Exception):
    """A file could not be used as the checkpoint it was given as; the message names it and says why."""


class UnsafeCheckpointError(CheckpointError, RuntimeError):
    """The file's pickle imports globals that could run code; they are in ``globals``. Nothing was executed."""

    def __init__(self, message: str, *, path: Path | None = None, globals: list[str] | None = None):
        super().__init__(message)
        self.path = path
        self.globals = list(globals or [])


class CheckpointCorruptError(CheckpointError, RuntimeError):
    """A file is not a readable PyTorch checkpoint (truncated, damaged or not a checkpoint at all)."""


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """A readable checkpoint that does not fit what it is loaded into (another model, architecture or run):
    lists what is missing, unexpected or misshapen."""

    def __init__(self, message: str, *, path: Path | None = None, missing: list | None = None,
                 unexpected: list | None = None, mismatched: list | None = None):
        super().__init__(message)
        self.path = path
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


# ---------------------------------------------------------------------------------------------------------
# Which globals a pickle imports (read, never run)
# ---------------------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _globals_in_pickle(stream: IO[bytes]) -> list[str]:
    """``module.name`` of every global one pickle imports (GLOBAL, INST, STACK_GLOBAL), read opcode by opcode
    from ``stream`` up to its STOP. The strings STACK_GLOBAL takes from the stack are followed through the
    memo. Raises what pickletools raises for bytes that are no pickle."""
    found: list[str] = []
    pushed: list[Any] = []        # the last values pushed (strings, else None): STACK_GLOBAL's arguments
    memo: dict[int, Any] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "<unknown>")
            pushed.append(None)
        elif name in _STRING_OPS:
            pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _PUT_OPS:
            memo[int(arg)] = pushed[-1] if pushed else None
        elif name in _GET_OPS:
            pushed.append(memo.get(int(arg)))
        elif opcode.stack_after:
            pushed.append(None)
    return found


def _pickle_streams(path: Path) -> Iterator[IO[bytes]]:
    """The pickles torch would unpickle: ``*/data.pkl`` of a zip checkpoint, else the file from its start
    (a legacy checkpoint is several pickles in a row, then raw storage bytes)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member == "data.pkl" or (member.endswith("/data.pkl") and member.count("/") == 1):
                    with archive.open(member) as stream:
                        yield stream
        return
    with open(path, "rb") as stream:
        for _ in range(5):  # magic number, protocol, system info, the object, storage keys
            yield stream


def _mapped(name: str) -> str:
    """The global unpickling would really import: Python 2 names as pickle maps them (a protocol-2 pickle,
    the kind torch.save writes, spells ``subprocess.Popen`` as ``commands.Popen``)."""
    module, _, attr = name.rpartition(".")
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        return ".".join(_compat_pickle.NAME_MAPPING[(module, attr)])
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def _allowed_globals() -> set[str]:
    names = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    try:
        from torch import _weights_only_unpickler as unpickler

        return names | set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    except (ImportError, AttributeError, TypeError, ValueError):
        return names | _FALLBACK_ALLOWED | {"torch.*"}


def _is_allowed(name: str, allowed: set[str]) -> bool:
    return name in allowed or ("torch.*" in allowed and name.startswith("torch."))


def refused_globals(path: str | os.PathLike) -> list[str]:
    """The globals that ``path``'s pickle imports and ``weights_only`` loading does not allow, in order of
    appearance, without running anything. Empty for a checkpoint of tensors and plain values, and for bytes
    that are no pickle."""
    allowed = _allowed_globals()
    refused: list[str] = []
    try:
        for stream in _pickle_streams(Path(path)):
            try:
                names = _globals_in_pickle(stream)
            except Exception:  # not (or no longer) a pickle: what was read before counts
                break
            for name in map(_mapped, names):
                if name == "<unknown>" or (_NAME.fullmatch(name) and not _is_allowed(name, allowed)):
                    if name not in refused:
                        refused.append(name)
    except (OSError, zipfile.BadZipFile, RuntimeError):
        pass
    return refused


# torch's wordings: 2.4 and later (Colab's 2.11, 2.14) for a global outside the allowlist; 2.5 and later for
# one of a blocked module (os, posix, nt, sys); before 2.4.
_TORCH_WORDINGS = (re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global"),
                   re.compile(r"Trying to load unsupported GLOBAL (\S+) whose module \S+ is blocked"),
                   re.compile(r"Unsupported class (\S+)"))


def global_named_in(message: str) -> str | None:
    """The global torch's weights-only error message names, or None (the fallback to :func:`refused_globals`)."""
    for wording in _TORCH_WORDINGS:
        match = wording.search(message)
        if match:
            return match.group(1).rstrip(".")
    return None


# ---------------------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------------------

def _shown(name: str) -> str:
    module, _, attr = name.rpartition(".")
    return f"{name} (that is {_ALIASES[module]}.{attr})" if module in _ALIASES else name


def unsafe_message(path: Path, names: list[str]) -> str:
    """What :class:`UnsafeCheckpointError` says about ``path`` whose pickle imports ``names``."""
    listed = ", ".join(_shown(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"{path} is unsafe: loading it would call {listed}, Python code that can do anything on this "
            f"machine, so it was refused and nothing in it was executed. If you trust where it came from, "
            f"convert it once with colab_utils.loading.convert_trusted({str(path)!r}, 'converted.pt') (that step "
            f"does run its code) and load the converted file.")


# OSErrors about reading the file rather than its content (a Drive mount that dropped is ENOTCONN, errno 107);
# torch's zip reader says EINVAL for a truncated archive.
_IO_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ETIMEDOUT,
              errno.EISDIR, errno.ENXIO, errno.EBADF, errno.ENOMEM}


def read_source(source: Any, what: str, default_name: str = "<dict>", *, map_location: Any = "cpu"
                ) -> tuple[Any, str]:
    """``(content, name)`` of what a loader was handed: a path is read with :func:`safe_load` (a missing one
    is a FileNotFoundError naming it as the ``what``); anything else, an already loaded dict, passes through
    as it is under ``default_name``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        return safe_load(path, map_location), str(path)
    return source, default_name


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _weights_only_load(path: Path, map_location: Any, mmap: bool) -> Any:
    serialization = torch.serialization
    with warnings.catch_warnings():
        # torch's note on pickle protocols other than 2 comes before the verdict that matters here
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        if hasattr(serialization, "safe_globals"):
            with serialization.safe_globals(list(SAFE_GLOBALS)):
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        if hasattr(serialization, "add_safe_globals"):
            serialization.add_safe_globals(list(SAFE_GLOBALS))
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def safe_load(path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` allowing only :data:`SAFE_GLOBALS` beyond torch's defaults.

    Raises :class:`UnsafeCheckpointError` for a file whose pickle imports globals that could run code,
    :class:`CheckpointCorruptError` for a damaged or foreign file, FileNotFoundError for a missing one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        return _weights_only_load(path, map_location, mmap)
    except pickle.UnpicklingError as err:
        names = refused_globals(path)
        if not names:
            named = global_named_in(str(err))
            names = [named] if named else []
        if names:
            raise UnsafeCheckpointError(unsafe_message(path, names), path=path, globals=names) from None
        detail = next((line.strip() for line in reversed(str(err).splitlines())
                       if line.strip() and not line.startswith("Check the documentation")), "")
        raise CheckpointCorruptError(f"{path} is damaged or not a PyTorch checkpoint: it holds no readable "
                                     f"pickle ({detail.replace('WeightsUnpickler error: ', '')})") from None
    except OSError as err:
        if err.errno in _IO_ERRNOS:  # the file could not be read: not a verdict on its content
            raise
        raise CheckpointCorruptError(f"{path} is damaged or not a PyTorch checkpoint ({type(err).__name__}: "
                                     f"{_first_line(err)})") from None
    except MemoryError:
        raise
    except Exception as err:  # torch reports truncated or foreign files with many exception types
        raise CheckpointCorruptError(f"{path} is damaged or not a PyTorch checkpoint ({type(err).__name__}: "
                                     f"{_first_line(err)})") from None


# ---------------------------------------------------------------------------------------------------------
# Plain values, and converting a trusted file to them
# ---------------------------------------------------------------------------------------------------------

def plain(obj: Any, where: str = "value") -> Any:
    """``obj`` as types that load with ``weights_only=True``: tensors, numbers, strings, None, dicts, lists,
    tuples. NumPy values become tensors or numbers, paths strings, dataclasses and Namespaces dicts, enums
    their value, modules their state_dict; anything else raises TypeError naming where it was found."""
    if obj is None or type(obj) in (bool, int, float, str, bytes) or isinstance(obj, (torch.Tensor, torch.dtype)):
        return obj
    if isinstance(obj, enum.Enum):
        return plain(obj.value, where)
    for base in (bool, int, float, str, bytes):  # subclasses (torch's TorchVersion is a str) pickle by class
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, nn.Module):
        return plain(obj.state_dict(), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)}
    if isinstance(obj, argparse.Namespace):
        return plain(vars(obj), where)
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[plain(key, f"{where} key")] = plain(value, f"{where}[{key!r}]")
        metadata = getattr(obj, "_metadata", None)  # nn.Module state_dict version info
        if metadata is not None and isinstance(out, OrderedDict):
            out._metadata = metadata
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        values = [plain(v, f"{where}[{i}]") for i, v in enumerate(items)]
        return tuple(values) if isinstance(obj, tuple) else values
    raise TypeError(f"cannot store {where} (a {type(obj).__module__}.{type(obj).__qualname__}) in a checkpoint: "
                    f"only tensors, numbers, strings, None, lists, tuples and dicts load safely; convert it "
                    f"(e.g. to a dict or a tensor) first")


def convert_trusted(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rewrite a checkpoint you trust, which :func:`safe_load` refuses, as one it reads: modules become state
    dicts, NumPy arrays tensors, Namespaces and dataclasses dicts (see :func:`plain`).

    **This runs the code in ``src``** (``torch.load(weights_only=False)``): only for files whose origin you
    trust. Raises TypeError naming any value that has no plain form. Returns ``Path(dst)``."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"convert_trusted: {src} does not exist")
    content = plain(torch.load(src, map_location="cpu", weights_only=False), src.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        torch.save(content, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    safe_load(dst)  # proves the result loads weights-only
    return dst


# ---------------------------------------------------------------------------------------------------------
# What a file is, and how it differs from what was expected
# ---------------------------------------------------------------------------------------------------------

_STARGAN_NETS = {"generator", "mapping_network", "style_encoder", "discriminator"}


def _is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and {"state", "param_groups"} <= set(value)


def _listed(keys: Iterable) -> str:
    keys = sorted(map(str, keys))
    return ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")


def identify(obj: Any) -> str | None:
    """What a loaded file is, from its entries, as a phrase with the loader that reads it ("a StarGAN v2
    checkpoint (official layout: ...), which colab_utils.stargan.load_official reads"); None when it is not a
    file this package knows. Loaders add it to their error when given the wrong file."""
    if not isinstance(obj, Mapping):
        return None
    keys = {str(k) for k in obj}
    if str(obj.get("format", "")).startswith("colab_utils.checkpoint/"):
        objects = obj.get("objects") if isinstance(obj.get("objects"), Mapping) else {}
        step = f"step {obj.get('step')}"
        if "g_ema" in objects:
            return (f"a colab_utils StyleGAN2 training checkpoint ({step}), which colab_utils.stylegan2.train."
                    f"load_checkpoint and python -m colab_utils.stylegan2 read")
        if "generator" in objects or "generator_ema" in objects:
            return (f"a colab_utils StarGAN v2 training checkpoint ({step}), which colab_utils.stargan.load_nets "
                    f"and python -m colab_utils.stargan read")
        return f"a colab_utils training checkpoint ({step}) of {_listed(objects)}"
    if "g_ema" in keys or "latent_avg" in keys or {"g", "d"} <= keys:
        return (f"a StyleGAN2 checkpoint (rosinality layout: {_listed(keys)}), which "
                f"colab_utils.stylegan2.load_rosinality reads")
    if {"style.1.weight", "input.input"} <= keys:
        return "a bare StyleGAN2 generator state_dict, which colab_utils.stylegan2.load_rosinality reads"
    if keys & _STARGAN_NETS:
        if any(_is_optimizer_state(obj[k]) for k in obj if str(k) in _STARGAN_NETS):
            return "StarGAN v2 optimizer states (like the official *_optims.ckpt), not network weights"
        return (f"a StarGAN v2 checkpoint (official layout: {_listed(keys)}), which "
                f"colab_utils.stargan.load_official reads")
    if {"state_dict", "part_names", "width", "size"} <= keys:
        return "a PartSegmenter (face-part segmenter), which colab_utils.editing.segmenter.PartSegmenter.load reads"
    if {"centers", "M", "cluster_area"} <= keys:
        return "the tensors of an editing Catalog (catalog.pt), which colab_utils.editing.Catalog.load reads"
    inner = obj.get("state_dict", obj.get("fan"))
    if isinstance(inner, Mapping) and any(str(k).startswith(("m0.", "module.m0.")) for k in inner):
        return "FAN face-landmark weights (like wing.ckpt), which colab_utils.stargan.load_fan reads (fan_path=)"
    return None


@dataclass(frozen=True)
class KeyReport:
    """How a state dict from a file differs from the one expected: keys only the model has (``missing``),
    keys only the file has (``unexpected``) and ``(key, in the file, expected)`` shapes that differ."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, Any, tuple]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self, show: int = _SHOW) -> str:
        """``missing keys (2): [...]; unexpected keys (1): [...]; shape mismatches (1): ['k: file (3,) vs
        model (4,)']``, listing at most ``show`` keys of each kind."""
        parts = []
        shapes = [f"{k}: file {found} vs model {expected}" for k, found, expected in self.mismatched]
        for title, items in (("missing keys", self.missing), ("unexpected keys", self.unexpected),
                             ("shape mismatches", shapes)):
            if items:
                more = f" ... and {len(items) - show} more" if len(items) > show else ""
                parts.append(f"{title} ({len(items)}): {items[:show]}{more}")
        return "; ".join(parts)


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def compare_state_dicts(expected: nn.Module | Mapping[str, torch.Tensor], found: Mapping[str, Any], *,
                        optional: Iterable[str] = (), ignore: Callable[[str], bool] | None = None) -> KeyReport:
    """The :class:`KeyReport` of ``found`` (from a file) against ``expected`` (a module or its state dict).
    ``optional`` keys may be absent; keys of ``found`` for which ``ignore(key)`` is true are not reported."""
    own = expected.state_dict() if isinstance(expected, nn.Module) else expected
    optional = set(optional)
    missing = [k for k in own if k not in found and k not in optional]
    unexpected = [k for k in found if k not in own and not (ignore is not None and ignore(str(k)))]
    mismatched = [(k, _shape(found[k]), tuple(v.shape)) for k, v in own.items()
                  if k in found and (not isinstance(found[k], torch.Tensor) or found[k].shape != v.shape)]
    return KeyReport(missing, unexpected, mismatched)
