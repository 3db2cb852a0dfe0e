"""FID and KID of a StyleGAN2 generator against its training images, as NVlabs' StyleGAN2(-ADA) measures them:
``fid50k_full`` is the FID of 50,000 generated images against every real image (Karras et al., CVPR 2020,
Sec. 5; "Training GANs with limited data", NeurIPS 2020, App. A), ``kid50k_full`` its KID. The trainer
measures ``fid10k_full`` / ``kid10k_full`` periodically (cheaper, consistently biased upward against the
50k numbers) and keeps the history in its checkpoints; :func:`evaluate_checkpoint` scores any checkpoint or
rosinality ``.pt`` file.

Generated images: untruncated, with fresh per-layer noise; image ``i`` comes from a CPU generator seeded by
``(seed, first index of its batch)``, so the numbers repeat on every device and do not touch the training
run's random state. Generation runs in ``autocast`` (the training precision); features always in fp32.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from colab_utils import metrics
from colab_utils.metrics import FeatureStats, MetricHistory

from .model import Generator


def metric_names(n: int) -> tuple[str, str]:
    """``("fid10k_full", "kid10k_full")`` for ``n`` = 10,000 generated images against all real ones."""
    count = f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return f"fid{count}_full", f"kid{count}_full"


def _seed(seed: int, start: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFF_FFFF, int(start)]).generate_state(1, np.uint64)[0]) >> 1


def sampler(G: Generator, *, seed: int = 0, autocast: Callable[[], contextlib.AbstractContextManager] | None = None
            ) -> Callable[[int, int], torch.Tensor]:
    """``sample(start, count)``: generated images ``start .. start+count-1`` (float in [-1, 1], on G's
    device), for :func:`colab_utils.metrics.generated_statistics`."""
    device = G.input.input.device

    @torch.no_grad()
    def sample(start: int, count: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_seed(seed, start))
        z = torch.randn(count, G.style_dim, generator=generator)
        noise = G.make_noise(count, generator=generator)
        with autocast() if autocast is not None else contextlib.nullcontext():
            images, _ = G([z.to(device)], noise=noise, randomize_noise=False)
        return images.float()

    return sample


def evaluate_generator(G: Generator, real: FeatureStats, extractor, n: int, *, kid: bool = True, seed: int = 0,
                       batch_size: int = 32, autocast=None, progress: bool = True) -> dict[str, float]:
    """``{"fid<n>_full": ..., "kid<n>_full": ...}`` of ``n`` images of ``G`` against the real statistics."""
    was_training = G.training
    G.eval()
    try:
        fake = metrics.generated_statistics(sampler(G, seed=seed, autocast=autocast), n, extractor,
                                            batch_size=batch_size, progress=progress,
                                            desc=f"{metric_names(n)[0]}: generating")
    finally:
        G.train(was_training)
    fid_name, kid_name = metric_names(n)
    values = {fid_name: metrics.frechet_distance(real, fake)}
    if kid:
        values[kid_name] = metrics.kernel_inception_distance(real, fake, seed=seed, device=G.input.input.device)[0]
    return values


def real_statistics_for(dataset, extractor, *, data=None, stats_dir=None, batch_size: int = 32, workers: int = 0,
                        progress: bool = True, verbose: bool = True) -> FeatureStats:
    """Real-image statistics of a training dataset, cached in ``stats_dir``; by default beside ``data``
    when it is a zip (so on Drive when the zip is), else inside the image folder; in-memory datasets are
    not cached."""
    if stats_dir is None and isinstance(data, (str, os.PathLike)) and str(data) != "synthetic" and Path(data).exists():
        stats_dir = metrics.default_cache_dir(data)
    return metrics.real_statistics(dataset, extractor, cache_dir=stats_dir, batch_size=batch_size, workers=workers,
                                   progress=progress, verbose=verbose)


def _write_now(local: Path, make, kind: str) -> Path:
    local.parent.mkdir(parents=True, exist_ok=True)
    make(local)
    return local


class PeriodicMetrics:
    """What the trainer asks for: real statistics and the extractor prepared once, then ``run(step, kimg, G)``
    scores the G average, records it in ``history``, keeps the best-FID snapshot (``best-fid.pt``: the
    rosinality layout with G, D and ``latent_avg``, and ``best-fid.json``) outside checkpoint retention and
    redraws the FID curve (``fid_curve.png``), all in ``folder``. ``publish(local, make, kind)`` writes a file
    (the trainer's Drive writer: locally, then copied to Drive); by default it is written directly."""

    def __init__(self, history: MetricHistory, folder: Path, *, real: FeatureStats, extractor, n: int,
                 final_n: int | None, kid: bool, batch_size: int, seed: int, autocast=None, publish=None,
                 verbose: bool = True):
        self.history, self.folder = history, Path(folder)
        self.real, self.extractor = real, extractor
        self.n, self.final_n, self.kid, self.batch_size, self.seed = n, final_n, kid, batch_size, seed
        self.autocast, self.verbose = autocast, verbose
        self.publish = publish or _write_now
        self.best_path = self.folder / "best-fid.pt"
        self.curve = self.folder / "fid_curve.png"

    def run(self, step: int, kimg: float, G: Generator, *, final: bool = False, snapshot=None) -> dict[str, float]:
        """Score G (``final``: with ``final_n`` images), record the values, and when the periodic FID is the
        best so far save ``snapshot(path)`` (a callable that writes the networks) as ``best-fid.pt``."""
        n = self.final_n if final else self.n
        with torch.random.fork_rng(devices=[]):  # belt and braces: the run's random state stays untouched
            values = evaluate_generator(G, self.real, self.extractor, n, kid=self.kid, seed=self.seed,
                                        batch_size=self.batch_size, autocast=self.autocast, progress=self.verbose)
        fid_name = metric_names(n)[0]
        previous = self.history.best(fid_name)
        self.history.add(step, kimg, values, images=n)
        best = not final and (previous is None or values[fid_name] < previous["value"])
        if best and snapshot is not None:
            record = {"step": step, "kimg": kimg, "metric": fid_name, "value": values[fid_name],
                      "extractor": self.extractor.name}
            self.publish(self.best_path, snapshot, "export")
            self.publish(self.best_path.with_suffix(".json"), lambda p: p.write_text(json.dumps(record) + "\n"), "log")
        self.publish(self.curve, lambda p: self.history.plot(p, title="StyleGAN2: FID during training"), "log")
        if self.verbose:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"step {step} ({kimg:.1f} kimg): {shown}" + (" (best so far)" if best else ""))
        return values


def evaluate_checkpoint(path, data, *, n: int = 50_000, kid: bool = True, extractor=None, device=None,
                        batch_size: int = 32, seed: int = 0, stats_dir=None, progress: bool = True) -> dict[str, float]:
    """Score a training checkpoint, a run folder (its newest checkpoint) or a rosinality ``.pt`` file against
    the images of ``data`` (a folder, a zip, or ``"synthetic"``) at the generator's resolution."""
    from .train import load_checkpoint, training_images

    device = torch.device(device) if device is not None else torch.device("cpu")
    net = load_checkpoint(path, device=device)
    size = net.config["size"]
    dataset = training_images(data, size, min_images=2)
    if extractor is None:
        extractor = metrics.inception(device, progress=progress)
    real = real_statistics_for(dataset, extractor, data=data, stats_dir=stats_dir, batch_size=batch_size,
                               progress=progress)
    return evaluate_generator(net.g_ema, real, extractor, n, kid=kid, seed=seed, batch_size=batch_size,
                              progress=progress)
