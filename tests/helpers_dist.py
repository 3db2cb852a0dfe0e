"""A toy training run for the distributed tests: launched in 1 or 2 processes by distributed.launch_local.

Each rank writes its final parameters (and the step it stopped at) to ``out_dir/rank<r>.pt``."""
from __future__ import annotations

from pathlib import Path

import torch

from colab_utils import distributed
from colab_utils.checkpoint import CheckpointManager, ResumableSampler, infinite_batches

GLOBAL_BATCH = 4
DATA = 24


class Pairs(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(DATA, 8, generator=g)
        self.y = torch.randn(DATA, 1, generator=g)

    def __len__(self):
        return DATA

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def toy_train(run_dir: str, out_dir: str, steps: int, every_steps: int | None = None,
              stop_at: int | None = None, stop_rank: int = 0) -> None:
    dist = distributed.init("cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    ddp = distributed.wrap(model, dist)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = Pairs()
    sampler = ResumableSampler(len(data), seed=7, rank=dist.rank, world_size=dist.world_size)
    batches = infinite_batches(data, sampler, distributed.per_rank_batch(GLOBAL_BATCH, dist))
    manager = CheckpointManager(run_dir, every_steps=every_steps, every_minutes=None, keep_last=50,
                                handle_signals=False, verbose=False)
    ckpt = distributed.Checkpoints(manager, dist)
    objects = {"model": model, "opt": opt, "sampler": sampler}
    info = ckpt.restore(objects)
    start = info["step"] if info else 0
    step = start
    for step in range(start + 1, steps + 1):
        x, y = next(batches)
        noise = distributed.rank_share(torch.randn(GLOBAL_BATCH, 8) * 0.1, dist)  # drawn for the global batch
        loss = torch.nn.functional.mse_loss(ddp(x + noise), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if stop_at is not None and step == stop_at and dist.rank == stop_rank:
            manager.request_stop("test stop")
        if ckpt.step(step, objects):
            break
    ckpt.close()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "params": [p.detach().clone() for p in model.parameters()]},
               Path(out_dir) / f"rank{dist.rank}.pt")
    distributed.shutdown(dist)
