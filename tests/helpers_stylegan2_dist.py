"""A tiny StyleGAN2 run for tests/test_stylegan2_distributed.py, started in 1 or 2 processes by
``distributed.launch_local``. Each rank writes its networks, ADA p, path-length mean, step and loss history to
``out_dir/rank<r>.pt``."""
from __future__ import annotations

import os
from pathlib import Path

import torch

import importlib
from colab_utils.stylegan2.model import Discriminator
from colab_utils.stylegan2.train import SyntheticFaces, TrainConfig, train

trainer = importlib.import_module("colab_utils.stylegan2.train")  # the package exports train() under this name

# global batch 4 over 2 ranks; R1 and path length (half batch: 1 image per rank) both run within 4 steps;
# ADA on with a target and a fast speed so p moves (and the augmentation is drawn) from step 1
TINY = dict(size=32, channels=8, style_dim=8, n_mlp=1, batch=4, r1_every=2, pl_every=2, ada_p=0.3,
            ada_target=0.6, ada_interval=1, ada_speed_kimg=0.04, precision="fp32", device="cpu", workers=0,
            checkpoint_minutes=None, log_every=1, n_samples=4, sample_every=10_000)


class DoubleFaces(torch.utils.data.Dataset):
    """The synthetic faces in float64."""

    def __init__(self):
        self.faces = SyntheticFaces(8, 32, seed=0)

    def __len__(self):
        return len(self.faces)

    def __getitem__(self, index):
        return self.faces[index].double()


def stylegan2_train(run_dir: str, out_dir: str, steps: int) -> None:
    torch.set_num_threads(1)
    # float64: 1 and 2 processes sum gradients in a different order; float32 rounding, amplified by Adam's
    # division by the gradient's size, would hide whether they compute the same thing
    torch.set_default_dtype(torch.float64)
    # D's minibatch-stddev groups: one process groups rows b and b + 2 of the batch of 4, which is exactly
    # the share of one rank (rows r, r + 2), so 2 processes compute the same statistic
    Discriminator.stddev_group = 2
    trainer.SampleSheets.update = lambda self, step, G, history: (None, None, None)  # matplotlib: seconds
    trainer.SampleSheets.grid = lambda self, step, G: None
    result = train(TrainConfig(steps=steps, **TINY), DoubleFaces(), run_dir, progress=False, verbose=False)
    weights = {f"{name}.{key}": value.detach().clone()
               for name, net in (("g", result.G), ("d", result.D), ("g_ema", result.g_ema))
               for key, value in net.state_dict().items()}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.save({"step": result.step, "weights": weights, "history": result.history, "p": result.augment_p},
               Path(out_dir) / f"rank{os.environ.get('RANK', '0')}.pt")
