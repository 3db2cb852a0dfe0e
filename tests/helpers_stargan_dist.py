"""A tiny StarGAN v2 run for tests/test_stargan_distributed.py, started in 1 or 2 processes by
``distributed.launch_local``. Each rank writes its trained and averaged weights (and the step it stopped at)
to ``out_dir/rank<r>.pt``."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from colab_utils.stargan import data as sdata
from colab_utils.stargan import train as trainer
from colab_utils.stargan.train import TrainConfig, train

TINY = dict(img_size=32, base_dim=8, max_conv_dim=16, hidden_dim=16, style_dim=8, latent_dim=4, w_hpf=0,
            batch=4, workers=0, sample_every=0, checkpoint_minutes=0, log_every=1, lr=1e-3, f_lr=1e-4)


def stargan_train(data_root: str, run_dir: str, out_dir: str, total_iters: int, stop_at: int | None = None) -> None:
    torch.set_num_threads(1)
    trainer._plot_losses = lambda log, folder: None  # matplotlib takes seconds; this process ends here
    # float64: Adam divides every gradient by its own size, so float32 rounding noise in gradients that are
    # zero in exact arithmetic (conv biases before instance norm) would become lr-sized steps and hide
    # whether 2 processes compute what 1 does
    torch.set_default_dtype(torch.float64)
    next_batch = sdata.TrainingData.next
    sdata.TrainingData.next = lambda self, *args: sdata.Batch(
        *(t.double() if t.is_floating_point() else t for t in next_batch(self, *args)))
    result = train(TrainConfig(total_iters=total_iters, **TINY), data_root, run_dir, device="cpu", stop_at=stop_at,
                   progress=False, verbose=False)
    weights = {f"{name}.{key}": value.detach().clone()
               for name in ("generator", "mapping_network", "style_encoder", "discriminator")
               for key, value in result.state.nets[name].state_dict().items()}
    weights.update({f"{name}_ema.{key}": value.detach().clone() for name, ema in result.state.ema.items()
                    for key, value in ema.module.state_dict().items()})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.save({"step": result.step, "weights": weights, "history": result.history},
               Path(out_dir) / f"rank{os.environ.get('RANK', '0')}.pt")
