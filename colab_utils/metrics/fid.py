"""FID and KID from streamed features.

- FID (Heusel et al., NeurIPS 2017): ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between the
  Gaussians fitted to two sets of Inception features. The formula is torch-fidelity's
  (``fid_statistics_to_metric``, the trace of the matrix square root from the eigenvalues of ``S_a S_b``).
- KID (Bińkowski et al., ICLR 2018): the unbiased estimate of the squared MMD with the cubic polynomial
  kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets; torch-fidelity's
  ``kid_features_to_metric``.

:class:`FeatureStats` accumulates the mean and covariance batch by batch in float64 (the pairwise update of
Chan, Golub and LeVeque, 1979), so no image set has to be held in memory, and keeps a seeded subset of the
features themselves for KID.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .features import check_extractor, extractor_device, features_of

KID_FEATURES = 10_000        # most features of one set kept for KID
KID_SUBSETS = 100            # as StyleGAN2-ADA's kid50k_full and torch-fidelity's defaults
KID_SUBSET_SIZE = 1000


class FeatureStats:
    """Running mean and covariance (float64) of ``dim``-dimensional features, plus up to ``keep`` of the
    features for KID. With ``total`` (the number of vectors that will be added) the kept ones are a random
    subset drawn from ``seed``; without it, the first ``keep``. The sums live on ``device`` (a GPU adds a
    batch of 2048-dimensional features in microseconds where a CPU needs milliseconds); ``mean`` and ``cov``
    are numpy arrays."""

    def __init__(self, dim: int, *, keep: int = KID_FEATURES, total: int | None = None, seed: int = 0,
                 device=None):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim, self.keep = dim, max(0, int(keep))
        self.device = torch.device(device if device is not None else "cpu")
        if self.device.type == "mps":
            self.device = torch.device("cpu")  # no float64 there
        self.n = 0
        self._mean = torch.zeros(dim, dtype=torch.float64, device=self.device)
        self._m2 = torch.zeros(dim, dim, dtype=torch.float64, device=self.device)  # sum of outer deviations
        self._kept: list[np.ndarray] = []
        self._chosen = None
        if total is not None and total > self.keep:
            picks = np.random.default_rng(seed).choice(total, self.keep, replace=False)
            self._chosen = np.zeros(total, bool)
            self._chosen[picks] = True

    def add(self, features) -> "FeatureStats":
        """Add a batch of feature vectors [B, dim] (tensor or array)."""
        x = torch.as_tensor(features).detach().to(self.device, torch.float64)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be [batch, {self.dim}], got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("features hold NaN or inf (a diverged generator?): FID is undefined")
        b = x.shape[0]
        if b == 0:
            return self
        if self._chosen is not None:
            if self.n + b > self._chosen.size:
                raise ValueError(f"more features than the announced total {self._chosen.size}")
            rows = np.flatnonzero(self._chosen[self.n:self.n + b])
        else:
            rows = np.arange(min(b, max(0, self.keep - sum(len(k) for k in self._kept))))
        if len(rows):
            self._kept.append(x[torch.from_numpy(rows).to(self.device)].cpu().numpy().astype(np.float32))
        batch_mean = x.mean(0)
        centred = x - batch_mean
        total = self.n + b
        delta = batch_mean - self._mean
        self._m2 += centred.T @ centred + torch.outer(delta, delta) * (self.n * b / total)
        self._mean += delta * (b / total)
        self.n = total
        return self

    @property
    def mean(self) -> np.ndarray:
        return self._mean.cpu().numpy()

    @property
    def cov(self) -> np.ndarray:
        """The unbiased covariance (``n - 1`` in the denominator, as ``np.cov``)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, have {self.n}")
        return (self._m2 / (self.n - 1)).cpu().numpy()

    @property
    def kept(self) -> np.ndarray:
        """The features kept for KID, [k, dim] float32."""
        return np.concatenate(self._kept) if self._kept else np.zeros((0, self.dim), np.float32)

    def to_dict(self) -> dict:
        return {"n": np.int64(self.n), "mu": self.mean, "sigma": self.cov, "kid_features": self.kept}

    @classmethod
    def from_dict(cls, data) -> "FeatureStats":
        """Back from :meth:`to_dict` (or an ``.npz`` of it)."""
        mu = np.asarray(data["mu"], np.float64)
        stats = cls(mu.shape[0], keep=0)
        stats.n = int(data["n"])
        stats._mean = torch.from_numpy(mu.copy())
        stats._m2 = torch.from_numpy(np.asarray(data["sigma"], np.float64) * (stats.n - 1))
        kept = np.asarray(data["kid_features"], np.float32)
        stats._kept = [kept] if len(kept) else []
        stats.keep = len(kept)
        return stats


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two feature sets (torch-fidelity's formula on float64 statistics)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    if a.dim != b.dim:
        raise ValueError(f"the two feature sets differ in dimension ({a.dim} vs {b.dim}): another extractor?")
    result = fid_statistics_to_metric({"mu": a.mean, "sigma": a.cov}, {"mu": b.mean, "sigma": b.cov}, verbose=False)
    return float(result[KEY_METRIC_FID])


def kernel_inception_distance(a, b, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                              seed: int = 0, device=None) -> tuple[float, float]:
    """KID (mean, standard deviation over ``subsets`` random subsets) between two feature sets
    (:class:`FeatureStats` or arrays [n, dim]). The subset size is cut to the smaller set, as StyleGAN2-ADA
    does; each subset gives an unbiased estimate, so values slightly below 0 mean "indistinguishable".

    On the CPU this is torch-fidelity's ``kid_features_to_metric``. With a GPU ``device`` the kernel matrices
    (the costly part: 100 subsets of 2048-dimensional features take minutes of CPU) are computed there in
    float64, with torch-fidelity's subset draws and its estimator (``mmd2``), so the numbers agree."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    fa = a.kept if isinstance(a, FeatureStats) else np.asarray(a)
    fb = b.kept if isinstance(b, FeatureStats) else np.asarray(b)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"KID needs two feature sets [n, d] of one dimension, got {fa.shape} and {fb.shape}")
    size = min(len(fa), len(fb), subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 features in each set, got {len(fa)} and {len(fb)}")
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    if device is not None and torch.device(device).type != "cpu":
        return _kid_on(torch.device(device), fa, fb, subsets, size, seed)
    result = kid_features_to_metric(torch.from_numpy(fa), torch.from_numpy(fb), kid_subsets=subsets,
                                    kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(result[KEY_METRIC_KID_MEAN]), float(result[KEY_METRIC_KID_STD])


def _kid_on(device: torch.device, fa: np.ndarray, fb: np.ndarray, subsets: int, size: int,
            seed: int) -> tuple[float, float]:
    """torch-fidelity's KID loop (the same ``RandomState`` draws, cubic kernel, ``mmd2``) with the kernels
    computed on ``device``."""
    from torch_fidelity.metric_kid import mmd2

    rng = np.random.RandomState(seed)
    xa, xb = torch.from_numpy(fa).to(device), torch.from_numpy(fb).to(device)

    def kernel(x, y):
        return ((x @ y.T) / x.shape[1] + 1.0) ** 3

    values = np.zeros(subsets)
    for i in range(subsets):
        x = xa[torch.from_numpy(rng.choice(len(fa), size, replace=False)).to(device)]
        y = xb[torch.from_numpy(rng.choice(len(fb), size, replace=False)).to(device)]
        values[i] = mmd2(kernel(x, x).cpu().numpy(), kernel(x, y).cpu().numpy(), kernel(y, y).cpu().numpy())
    return float(np.mean(values)), float(np.std(values))


def generated_statistics(sample: Callable[[int, int], torch.Tensor], n: int, extractor, *, batch_size: int = 64,
                         keep: int = KID_FEATURES, progress: bool = True, desc: str = "generating") -> FeatureStats:
    """Statistics of ``n`` generated images: ``sample(start, count)`` returns images ``start .. start+count-1``
    (uint8, or float in [-1, 1]; it should depend only on its arguments, so the numbers repeat). Batches go
    through the extractor one by one under a progress bar with an ETA."""
    check_extractor(extractor)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (a covariance needs two images), got {n!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stats = FeatureStats(extractor.dim, keep=keep, device=extractor_device(extractor))
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            images = sample(start, count)
            if images.shape[0] != count:
                raise ValueError(f"sample({start}, {count}) returned {images.shape[0]} images")
            stats.add(features_of(extractor, images, on_device=True))
            bar.update(count)
    return stats
