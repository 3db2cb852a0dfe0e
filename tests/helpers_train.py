"""A tiny resumable training run for the checkpoint tests (not collected by pytest).

It exercises everything a real trainer checkpoints: a module with BatchNorm buffers and dropout, its EMA,
Adam, an fp16 GradScaler (CPU autocast), a decaying loss weight, the ResumableSampler behind
infinite_batches, the loss history, and Python / NumPy / torch randomness in every step.

Two ways to run it:
- ``python tests/helpers_train.py --run-dir D --total 20 [--stop-at 10] [--out final.pt] ...``: one run.
- ``python tests/helpers_train.py --serve``: a fork server. It imports torch once (and runs no torch op),
  then reads one JSON object per line on stdin: ``{"cmd": "run", "args": {...}}`` forks a child that trains
  with those arguments and answers ``PID <pid>``; ``{"cmd": "wait", "pid": N}`` reaps it and answers
  ``EXIT <pid> <code>`` (negative: killed by that signal); ``{"cmd": "quit"}`` ends. Each trial of the kill
  test is such a child, so 20+ trials cost milliseconds of start-up instead of seconds of ``import torch``.

Events go to ``--log`` one line at a time with unbuffered writes (they survive SIGKILL): ``RESUMED <step>``,
``STEP <step>``, ``SAVE_START <step>``, ``SAVE_END <step>``, ``STOPPED <step>``, ``DONE <step>``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

from colab_utils import checkpoint
from colab_utils.checkpoint import CheckpointManager, ResumableSampler, infinite_batches
from colab_utils.runtime import seed_everything
from colab_utils.training import EMA, Precision, ProgressLog, make_adam

DEFAULTS = {"run_dir": None, "drive_dir": None, "total": 20, "stop_at": None, "every_steps": 3, "keep_last": 2,
            "pad_mb": 0.0, "slow_write_s": 0.0, "log": None, "out": None, "step_sleep": 0.0, "no_rng": False,
            "session_seconds": None, "margin_s": None}


class _Events:
    def __init__(self, path: str | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if path else None

    def __call__(self, event: str, step: int) -> None:
        if self.fd is not None:
            os.write(self.fd, f"{event} {step}\n".encode())


class _LoggedManager(CheckpointManager):
    events: _Events

    def save(self, step, objects, *, extra=None):
        self.events("SAVE_START", step)
        path = super().save(step, objects, extra=extra)
        self.events("SAVE_END", step)
        return path


def _slow_writes(seconds: float) -> None:
    original = checkpoint._HashingWriter.write

    def write(self, data):
        time.sleep(seconds)
        return original(self, data)

    checkpoint._HashingWriter.write = write


def train(args: dict) -> int:
    a = argparse.Namespace(**{**DEFAULTS, **args})
    torch.set_num_threads(1)
    events = _Events(a.log)
    if a.slow_write_s:
        _slow_writes(a.slow_write_s)
    seed_everything(0)
    data = torch.randn(37, 8, generator=torch.Generator().manual_seed(1234))
    dataset = torch.utils.data.TensorDataset(data, data.sum(1, keepdim=True).sin())
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    ema = EMA(model, beta=0.9)
    opt = make_adam(model.parameters(), lr=1e-2, betas=(0.5, 0.99), device="cpu")
    precision = Precision("cpu", "fp16", init_scale=2.0 ** 10, growth_interval=3)
    sampler = ResumableSampler(len(dataset), seed=5)
    log = ProgressLog(a.total, batch_size=8, disable=True)
    objects = {"model": model, "ema": ema, "opt": opt, "precision": precision, "sampler": sampler, "log": log}
    pad = torch.ones(int(a.pad_mb * 2 ** 18))

    session_hours = a.session_seconds / 3600 if a.session_seconds is not None else None
    ckpt = _LoggedManager(a.run_dir, drive_dir=a.drive_dir, keep_last=a.keep_last, every_steps=a.every_steps,
                          every_minutes=None, session_hours=session_hours, deadline_margin_s=a.margin_s,
                          config={"lr": 1e-2, "batch": 8}, verbose=False)
    ckpt.events = events
    info = ckpt.restore(objects, restore_rng=not a.no_rng)
    start = info["step"] if info else 0
    lam = info["extra"]["lam"] if info else 1.0
    events("RESUMED", start)

    batches = infinite_batches(dataset, sampler, batch_size=8)
    step = start
    for step in range(start + 1, a.total + 1):
        x, y = next(batches)
        x = x + 0.05 * torch.randn_like(x)
        if random.random() < 0.5:
            x = x.flip(0)
            y = y.flip(0)
        x = x * float(np.random.uniform(0.8, 1.2))
        with precision.autocast():
            pred = model(x).float()
        loss = F.mse_loss(pred, y) + lam * pred.pow(2).mean()
        precision.backward_step(loss, opt)
        ema.update(model)
        lam *= 0.97
        log.update(step, {"loss": loss})
        events("STEP", step)
        extra = {"lam": lam, "pad": pad}
        if ckpt.step(step, objects, extra=extra):
            events("STOPPED", step)
            break
        if step == a.stop_at:
            if ckpt.last_saved_step != step:
                ckpt.save(step, objects, extra=extra)
            break
        if a.step_sleep:
            time.sleep(a.step_sleep)
    ckpt.close()
    if a.out:
        final = {name: obj.state_dict() for name, obj in objects.items()}
        final["lam"] = lam
        final["step"] = step
        torch.save(final, a.out)
    events("DONE", step)
    return 0


def serve() -> None:
    """The fork server (see the module docstring)."""
    # Pay once for the modules torch imports lazily on the first optimizer (about a second); this starts
    # no threads, so forking afterwards stays safe.
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], foreach=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "quit":
            return
        if request["cmd"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(f"EXIT {request['pid']} {code}", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out = os.open(request["args"].get("stdout") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(out, 1)
                os.dup2(out, 2)
                sys.stdin.close()
                code = train(request["args"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"PID {pid}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true")
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            kind = {"total": int, "stop_at": int, "every_steps": int, "keep_last": int}.get(key, float)
            parser.add_argument(flag, type=str if key in ("run_dir", "drive_dir", "log", "out") else kind,
                                default=value)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    return train({k: v for k, v in vars(args).items() if k != "serve"})


if __name__ == "__main__":
    sys.exit(main())
