"""What the scripts that train the shipped demo models share: their command line, the run folder and the log of
sessions written beside each asset (``tools/train_synthetic_stylegan.py``, ``tools/train_stargan_demo.py``).

A demo model is trained in wall-clock sessions on a CPU: each session continues the run in ``--run-dir``
(the project's own resumable trainers keep the data order, averages and optimizers), exports the asset, and
appends its settings and the step it reached to ``training.json`` in the run folder, which is copied beside the
asset as ``<asset>.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

RUNS = Path.home() / ".cache" / "colab_utils_demo"   # outside the repository: checkpoints never reach git


def session_parser(description: str, default_run: Path | None, default_out: Path,
                   out_help: str) -> argparse.ArgumentParser:
    """The options every demo training script takes: --minutes, --run-dir, --fresh, --out, --threads
    (``default_run`` None: the script picks the run folder after parsing)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--minutes", type=float, default=90.0, help="wall-clock budget of this session (default 90)")
    parser.add_argument("--run-dir", type=Path, default=default_run,
                        help="checkpoint folder; an existing run there is continued"
                             + (f" (default {default_run})" if default_run else ""))
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first and train from scratch")
    parser.add_argument("--out", type=Path, default=default_out, help=out_help)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    return parser


def open_run(args: argparse.Namespace) -> None:
    """Empty the run folder first with ``--fresh``, create it, and set torch's thread count."""
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if isinstance(value, (int, float, str, bool, type(None), list)) else str(value)


def record_session(args: argparse.Namespace, config, *, minutes: float, step: int, batch: int, stopped,
                   asset_bytes: int, **about) -> Path:
    """Append this session to ``run_dir/training.json`` (the trainer's ``config`` dataclass and the ``about``
    entries, such as the data's preset, are rewritten at the top level), copy the log beside ``args.out`` as
    ``<asset>.json``, and return the copy's path."""
    path = args.run_dir / "training.json"
    log = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
    log["config"] = {k: _plain(v) for k, v in dataclasses.asdict(config).items()}
    log.update({k: _plain(v) for k, v in about.items()})
    log["sessions"].append({"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "minutes": round(minutes, 1),
                            "threads": args.threads, "step": step, "kimg": round(step * batch / 1000, 1),
                            "stopped": _plain(stopped), "asset_bytes": asset_bytes})
    path.write_text(json.dumps(log, indent=2))
    copy = args.out.with_suffix(".json")
    shutil.copyfile(path, copy)
    return copy
