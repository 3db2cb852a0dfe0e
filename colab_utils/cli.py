"""What every ``python -m colab_utils.<tool>`` command line shares: the error handler and common arguments.

    from colab_utils import cli

    def build_parser():
        parser = cli.ArgumentParser(prog="python -m colab_utils.video")
        commands = parser.add_subparsers(dest="command", required=True)
        p = cli.add_command(commands, "translate", example="python -m colab_utils.video translate talk.mp4 ...")
        cli.add_checkpoint_argument(p, "--checkpoint", hub=True, help="StarGAN v2 weights, a run folder or a hub name")
        cli.add_device_argument(p)
        return parser

    def run_translate(args) -> int:
        device = cli.device_from(args.device)
        ...

    def main(argv=None) -> int:
        return cli.run(build_parser(), {"translate": run_translate}, argv)

What :func:`run` does with what a command raises:

- a project error (:func:`project_errors`: a file that is missing, unsafe, damaged or of another model, bad
  input the package checked, a failed download) prints ``<prog>: error: <message>`` as one line on stderr and
  exits with :data:`EXIT_ERROR` (2, as argparse does for a bad command line);
- Ctrl-C prints ``<prog>: interrupted`` and exits with :data:`EXIT_INTERRUPTED` (130);
- anything else is a bug: its traceback is printed, then a line asking for a report, exit 1.

Warnings print as ``<prog>: warning: <message>`` lines, without the source line Python shows.

Also shared: :class:`ArgumentParser` (a bad command line is one line too), :func:`add_command` and
:func:`examples` (every ``--help`` ends with an example that runs as written; :class:`HelpFormatter` keeps it
as written), :func:`add_checkpoint_argument` with ``hub=True`` (a file, a run folder or a
:mod:`colab_utils.hub` name), and :func:`no_partial_output` (a failing command leaves no output behind).
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ISSUES_URL = "https://github.com/colab-utils/colab_utils/issues"
EXIT_OK = 0
EXIT_BUG = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEVICE_HELP = "auto (cuda when present), cuda, cuda:1, cpu or mps"


def project_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input rather than a bug: every :class:`colab_utils.loading.CheckpointError`
    (unsafe, damaged, another model's file), a checkpoint that could not be saved, a failed download, OS
    errors (missing files, full disks), ValueError, which the package raises for input it checked (its
    format, image, video and face errors are ValueErrors), and a missing face-landmark backend."""
    from colab_utils.checkpoint import CheckpointSaveError
    from colab_utils.hub import DownloadError
    from colab_utils.loading import CheckpointError

    errors: list[type[BaseException]] = [CheckpointError, CheckpointSaveError, DownloadError, OSError, ValueError]
    try:
        import torch

        errors.append(torch.cuda.OutOfMemoryError)
    except (ImportError, AttributeError):
        pass
    try:  # no landmark backend on this machine (an ImportError, so that `except ImportError` code keeps working)
        from colab_utils.stargan.landmarks import LandmarkBackendError

        errors.append(LandmarkBackendError)
    except ImportError:
        pass
    return tuple(errors)


def one_line(err: BaseException) -> str:
    """The error's message on one line (the lines of a multi-line report joined with "; ")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = "; ".join(lines).replace(":; ", ": ") if lines else type(err).__name__
    if type(err).__name__ == "OutOfMemoryError":
        text = f"out of GPU memory: use a smaller batch or image size ({lines[0] if lines else ''})"
    return text


def _show_warning(prog: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {one_line(message) if isinstance(message, Warning) else message}",
              file=file if file is not None else sys.stderr)
    return show


def call(func: Callable[..., int | None], *args, prog: str) -> int:
    """``func(*args)`` under the shared handler (see the module docstring); returns the exit code."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(prog)
        try:
            code = func(*args)
            return EXIT_OK if code is None else int(code)
        except KeyboardInterrupt:
            print(f"\n{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except project_errors() as err:
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as err:
            traceback.print_exc()
            print(f"{prog}: unexpected error ({type(err).__name__}). This is a bug in colab_utils: please report it "
                  f"at {ISSUES_URL} with the command you ran and the traceback above.", file=sys.stderr)
            return EXIT_BUG


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad command line is one line on stderr (``<prog>: error: <message>
    (see <prog> --help)``) instead of the usage block and the line; exit code 2 as before. Sub-command
    parsers made through ``add_subparsers`` are of this class too."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run(parser: argparse.ArgumentParser, commands: Mapping[str, Callable[[argparse.Namespace], int | None]],
        argv: Sequence[str] | None = None, *, dest: str = "command") -> int:
    """Parse ``argv`` (argparse exits 2 itself on a bad command line) and run ``commands[args.<dest>]`` under
    the shared handler. Returns the exit code, for ``sys.exit(main())``."""
    args = parser.parse_args(argv)
    return call(commands[getattr(args, dest)], args, prog=parser.prog)


# ---------------------------------------------------------------------------------------------------------
# Arguments every tool spells the same way
# ---------------------------------------------------------------------------------------------------------

def add_device_argument(parser, *flags: str, default: str = "auto", help: str | None = None) -> None:
    """``--device`` (or ``flags``), read with :func:`device_from`."""
    parser.add_argument(*(flags or ("--device",)), default=default,
                        help=help or f"{DEVICE_HELP} (default: %(default)s)")


def device_from(name: str | None):
    """The ``torch.device`` a ``--device`` value names: ``auto`` (or None) is CUDA when present, else the CPU.
    A device this machine lacks is a ValueError that says what to do."""
    import torch

    from colab_utils import runtime

    if name is None or str(name).strip().lower() in ("", "auto"):
        return runtime.default_device()
    try:
        device = torch.device(str(name).strip())
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device: use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible here (in Colab: Runtime > Change runtime "
                             f"type > GPU); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


def existing_path(text: str) -> Path:
    """An argparse ``type`` for a file or folder that must exist (a clear usage error otherwise)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def checkpoint_source(text: str) -> Path | str:
    """An argparse ``type`` for weights given as a file or folder that exists (a :class:`~pathlib.Path`), or
    as a :mod:`colab_utils.hub` name or URL (kept as the string; the loader fetches it once, cached)."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    from colab_utils import hub

    try:
        hub.resolve(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{path} does not exist, and it is not a colab_utils.hub name "
                                         f"({', '.join(sorted(hub.REGISTRY))})") from None
    return text


def add_checkpoint_argument(parser, *flags: str, help: str, required: bool = True, dest: str = "checkpoint",
                            hub: bool = False) -> None:
    """A checkpoint argument (``--checkpoint`` unless ``flags`` say otherwise) whose value must exist, or with
    ``hub`` may also be a :mod:`colab_utils.hub` name (:func:`checkpoint_source`); read it with the model's
    loader, which goes through :func:`colab_utils.loading.safe_load`."""
    parser.add_argument(*(flags or ("--checkpoint",)), dest=dest, type=checkpoint_source if hub else existing_path,
                        required=required, default=None, help=help)


# ---------------------------------------------------------------------------------------------------------
# Help pages with examples, and outputs that appear only when a command succeeds
# ---------------------------------------------------------------------------------------------------------

class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a paragraph of the description or epilog whose lines are indented
    (an example block, see :func:`examples`) is printed as written instead of re-wrapped."""

    def _fill_text(self, text, width, indent):
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if len(lines) > 1 and all(line.startswith("  ") for line in lines[1:]):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


class DefaultsHelpFormatter(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """:class:`HelpFormatter` that also shows every option's default."""


def examples(*lines: str, heading: str = "example") -> str:
    """An epilog block of command lines, kept as written by :class:`HelpFormatter`. Each line must work as
    written (tests run them on the embedded assets)."""
    return f"{heading}{'s' if len(lines) > 1 else ''}:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(commands, name: str, *, example: str | Sequence[str], defaults: bool = False, **kwargs):
    """``commands.add_parser(name, ...)`` with :func:`examples` as its epilog and :class:`HelpFormatter`
    (:class:`DefaultsHelpFormatter` with ``defaults``)."""
    lines = [example] if isinstance(example, str) else list(example)
    kwargs.setdefault("formatter_class", DefaultsHelpFormatter if defaults else HelpFormatter)
    return commands.add_parser(name, epilog=examples(*lines), **kwargs)


@contextlib.contextmanager
def no_partial_output(*paths):
    """Remove what a failing command created at ``paths`` (files or folders; None entries are skipped), so a
    bad input leaves nothing behind. Paths that existed before are left alone."""
    fresh = [Path(p) for p in paths if p is not None and not Path(p).exists()]
    try:
        yield
    except BaseException:
        for path in fresh:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        raise
