"""Spherical k-means in plain torch, and the adjusted Rand index to judge a clustering.

Collins et al., "Editing in Style: Uncovering the Local Semantics of GANs" (CVPR 2020) cluster the per-pixel
feature vectors of a StyleGAN layer by direction, ignoring magnitude: spherical k-means, where a point belongs
to the unit-norm centre with the highest cosine similarity. This module is our own implementation:

* k-means++ seeding on the sphere (Arthur & Vassilvitskii, 2007): each next centre is drawn with probability
  proportional to the squared chord distance to the nearest centre so far, ``|x - c|^2 = 2 (1 - cos)``, the
  best of a few such draws being kept (the "greedy" variant);
* mini-batch updates (after Sculley, "Web-scale k-means clustering", 2010): after every batch each centre
  moves towards the mean of the points assigned to it, with a step of ``n_batch / n_seen`` so that it is the
  running mean of every point it has received in the pass, projected back onto the sphere;
* data given as one tensor or as chunks streamed from a list or a function, so N*H*W pixel vectors never have
  to sit in memory at once; the work runs on the device of the data (or the one asked for);
* every random draw comes from a seeded CPU ``torch.Generator``: the same seed gives the same centres.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

ChunkSource = torch.Tensor | Sequence[torch.Tensor] | Callable[[], Iterable[torch.Tensor]] | Iterable[torch.Tensor]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1, eps=1e-12)


def _check_chunk(chunk: object, dim: int | None) -> torch.Tensor:
    if not isinstance(chunk, torch.Tensor):
        raise TypeError(f"SphericalKMeans: expected chunks of type torch.Tensor, got {type(chunk).__name__}")
    if chunk.dim() != 2:
        raise ValueError(f"SphericalKMeans: each chunk must be 2-D [n, dim], got shape {tuple(chunk.shape)}")
    if dim is not None and chunk.shape[1] != dim:
        raise ValueError(f"SphericalKMeans: chunk has {chunk.shape[1]} features, expected {dim}")
    return chunk


def _check_finite(values: torch.Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError("SphericalKMeans: the data contains NaN or infinite values")


def _cluster_sums(labels: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """[k, dim]: the sum of the rows of ``x`` given each label (a one-hot product, fast on CPU and GPU)."""
    return F.one_hot(labels, k).to(x.dtype).T @ x


class _Source:
    """One interface over the accepted kinds of data: ``chunks()`` and ``batches()`` read it once per call."""

    def __init__(self, data: ChunkSource, batch_size: int, generator: torch.Generator):
        self.batch_size = batch_size
        self.generator = generator
        self.one_shot = False
        self._replay: list[torch.Tensor] = []  # chunks of a one-shot stream read early, for seeding
        if isinstance(data, torch.Tensor):
            _check_chunk(data, None)
            self._tensor: torch.Tensor | None = data
            self._make: Callable[[], Iterator[torch.Tensor]] | None = None
        else:
            self._tensor = None
            if callable(data):
                self._make = lambda: iter(data())
            elif isinstance(data, Sequence):
                if len(data) == 0:
                    raise ValueError("SphericalKMeans: the list of chunks is empty")
                self._make = lambda: (data[i] for i in torch.randperm(len(data), generator=generator).tolist())
            elif isinstance(data, Iterable):
                it = iter(data)
                self.one_shot = it is data  # a generator or iterator can be read only once
                self._make = (lambda: it) if self.one_shot else (lambda: iter(data))
            else:
                raise TypeError(
                    "SphericalKMeans.fit: data must be a tensor [N, dim], a list of tensor chunks, a function "
                    f"returning an iterable of chunks, or an iterable of chunks; got {type(data).__name__}"
                )

    def chunks(self) -> Iterator[torch.Tensor]:
        """The data once, as tensor chunks (shuffled rows for a single tensor)."""
        if self._tensor is not None:
            order = torch.randperm(self._tensor.shape[0], generator=self.generator)
            for start in range(0, len(order), self.batch_size):
                yield self._tensor[order[start:start + self.batch_size].to(self._tensor.device)]
        else:
            assert self._make is not None
            replay, self._replay = self._replay, []
            dim = None
            for chunk in itertools.chain(replay, self._make()):
                chunk = _check_chunk(chunk, dim)
                dim = chunk.shape[1]
                if chunk.shape[0] == 0:
                    continue
                yield chunk

    def head(self, n: int) -> list[torch.Tensor]:
        """The first chunks, at least ``n`` rows in all where the data has them (a one-shot stream keeps
        them to yield again on its pass)."""
        taken, rows = [], 0
        for chunk in self.chunks():
            taken.append(chunk)
            rows += chunk.shape[0]
            if rows >= n:
                break
        if self.one_shot:
            self._replay = list(taken)
        return taken

    def batches(self, device: torch.device) -> Iterator[torch.Tensor]:
        """The data once, as unit-norm mini-batches of at most ``batch_size`` rows on ``device``."""
        for chunk in self.chunks():
            for start in range(0, chunk.shape[0], self.batch_size):
                yield _unit(chunk[start:start + self.batch_size].to(device))


class SphericalKMeans:
    """Mini-batch spherical k-means with k-means++ seeding.

    Args:
        k: number of clusters.
        n_iter: maximum number of passes over the data.
        batch_size: rows per mini-batch update (chunks larger than this are split).
        seed: seed of the CPU ``torch.Generator`` behind every random choice.
        tol: stop when no centre turned by more than this between two passes, measured as ``1 - cos``.
        init_size: how many points the seeding uses (a random subset of a tensor, or the first chunks of a
            stream). Defaults to ``max(10 * k, 3 * batch_size)``.
        n_init: how many k-means++ seedings to try on that sample (each refined by ``init_steps`` Lloyd
            steps there); the best one, by inertia on the sample, starts the passes over all the data.

    After :meth:`fit`: ``centers`` ([k, dim], unit norm), ``counts`` (points each centre received in the last
    pass), ``inertia_`` (sum over the points of ``1 - cos`` to their centre), ``n_iter_`` (passes made).
    """

    def __init__(self, k: int, *, n_iter: int = 30, batch_size: int = 4096, seed: int = 0, tol: float = 1e-4,
                 init_size: int | None = None, n_init: int = 3, init_steps: int = 10):
        if int(k) != k or k < 1:
            raise ValueError(f"SphericalKMeans: k must be a positive integer, got {k!r}")
        if n_iter < 1:
            raise ValueError(f"SphericalKMeans: n_iter must be at least 1, got {n_iter}")
        if batch_size < 1:
            raise ValueError(f"SphericalKMeans: batch_size must be at least 1, got {batch_size}")
        if n_init < 1 or init_steps < 0:
            raise ValueError(f"SphericalKMeans: need n_init >= 1 and init_steps >= 0, got {n_init}, {init_steps}")
        if tol < 0:
            raise ValueError(f"SphericalKMeans: tol must be non-negative, got {tol}")
        self.k = int(k)
        self.n_iter = int(n_iter)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.tol = float(tol)
        self.n_init = int(n_init)
        self.init_steps = int(init_steps)
        self.init_size = int(init_size) if init_size is not None else max(10 * self.k, 3 * self.batch_size)
        self.centers: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.inertia_: float | None = None
        self.n_iter_: int = 0

    # ----------------------------------------------------------------------------------------- seeding
    def _init_sample(self, source: _Source) -> torch.Tensor:
        """Unit vectors to seed from, on the data's own device."""
        if source._tensor is not None:
            data = source._tensor
            pick = torch.randperm(data.shape[0], generator=source.generator)[: self.init_size]
            sample = _unit(data[pick.to(data.device)])
        else:
            taken = source.head(self.init_size)
            if not taken:
                raise ValueError("SphericalKMeans.fit: the data yielded no vectors")
            sample = _unit(torch.cat([t.to(taken[0].device) for t in taken])[: self.init_size])
        _check_finite(sample)
        return sample

    def _kmeans_plus_plus(self, sample: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Greedy k-means++ on the sphere: each step draws a few candidates with probability proportional
        to ``1 - cos`` to the nearest centre so far and keeps the one that lowers the total most."""
        n = sample.shape[0]
        if n < self.k:
            raise ValueError(f"SphericalKMeans.fit: {n} vectors cannot make {self.k} clusters")
        trials = 2 + int(math.log(self.k))
        first = int(torch.randint(n, (1,), generator=generator))
        chosen = [first]
        best_sim = sample @ sample[first]
        for _ in range(1, self.k):
            weight = (1.0 - best_sim).clamp_min(0).double().cpu()
            if float(weight.sum()) <= 0:  # every point already sits on a centre
                weight = torch.ones(n, dtype=torch.float64)
            candidates = torch.multinomial(weight, trials, replacement=True, generator=generator)
            sims = torch.maximum(best_sim[None], sample[candidates.to(sample.device)] @ sample.T)
            pick = int((1.0 - sims).sum(dim=1).argmin())
            chosen.append(int(candidates[pick]))
            best_sim = sims[pick]
        return sample[torch.tensor(chosen, device=sample.device)]

    def _best_start(self, sample: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``n_init`` seedings, each refined by a few Lloyd steps on the in-memory sample; the one with the
        lowest inertia on that sample starts the mini-batch passes."""
        best, best_inertia = None, math.inf
        for _ in range(self.n_init):
            centers = self._kmeans_plus_plus(sample, generator)
            for _ in range(self.init_steps):
                labels = (sample @ centers.T).argmax(dim=1)
                sums = _cluster_sums(labels, sample, self.k)
                filled = sums.norm(dim=1) > 0
                centers[filled] = _unit(sums[filled])
            inertia = float((1.0 - (sample @ centers.T).max(dim=1).values).sum())
            if inertia < best_inertia:
                best, best_inertia = centers, inertia
        assert best is not None
        return best

    # ----------------------------------------------------------------------------------------- fitting
    def fit(self, data: ChunkSource, *, device: str | torch.device | None = None) -> "SphericalKMeans":
        """Cluster ``data`` by direction.

        ``data`` is a tensor [N, dim]; a list of chunk tensors [n_i, dim]; a function returning a fresh
        iterable of chunks each time it is called (for streams too large to keep); or any other iterable of
        chunks. An iterable that can be read only once (a generator) allows a single pass, so ``n_iter`` is
        then 1 and ``inertia_`` is measured during that pass. Work happens on ``device``, by default the
        device of the data (the first chunk).
        """
        generator = torch.Generator().manual_seed(self.seed)
        source = _Source(data, self.batch_size, generator)
        sample = self._init_sample(source)
        dev = torch.device(device) if device is not None else sample.device
        centers = self._best_start(sample.to(dev), generator)
        del sample

        passes = 1 if source.one_shot else self.n_iter
        self.n_iter_ = 0
        for _ in range(passes):
            previous = centers
            centers, counts, inertia = self._one_pass(source, centers, dev)
            self.n_iter_ += 1
            if float((1.0 - (centers * previous).sum(dim=1)).max()) <= self.tol:
                break
        self.centers = centers
        self.counts = counts
        self.inertia_ = inertia if source.one_shot else self._inertia(source, dev)
        return self

    def _one_pass(self, source: _Source, centers: torch.Tensor,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One pass of mini-batch updates.

        Each batch is assigned to the current centres; every centre that received points then moves to the
        running mean of all the points it has received in this pass (a step of ``n_batch / n_seen`` towards
        the batch mean), projected back onto the sphere. Counts restart each pass, so a converged pass is a
        fixed point of spherical Lloyd iterations.
        """
        centers = centers.clone()
        means = torch.zeros_like(centers)
        counts = torch.zeros(self.k, device=device, dtype=torch.float64)
        inertia = 0.0
        last_batch = None
        for batch in source.batches(device):
            best, labels = (batch @ centers.T).max(dim=1)
            _check_finite(best)
            inertia += float((1.0 - best).sum())
            n_batch = torch.bincount(labels, minlength=self.k).to(torch.float64)
            sums = _cluster_sums(labels, batch, self.k)
            counts += n_batch
            hit = n_batch > 0
            step = (n_batch[hit] / counts[hit]).to(centers.dtype)[:, None]
            batch_means = sums[hit] / n_batch[hit].to(centers.dtype)[:, None]
            means[hit] += step * (batch_means - means[hit])
            centers[hit] = _unit(means[hit])
            last_batch = batch
        if last_batch is None:
            raise ValueError("SphericalKMeans.fit: the data yielded no vectors")
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # re-seed clusters that received nothing at the points farthest from every centre
            far = (last_batch @ centers.T).max(dim=1).values.argsort()
            centers[empty] = last_batch[far[: len(empty)]]
        return centers, counts, inertia

    def _inertia(self, source: _Source, device: torch.device) -> float:
        assert self.centers is not None
        total = 0.0
        for batch in source.batches(device):
            total += float((1.0 - (batch @ self.centers.T).max(dim=1).values).sum())
        return total

    # ----------------------------------------------------------------------------------------- using
    def _need_fit(self) -> torch.Tensor:
        if self.centers is None:
            raise RuntimeError("SphericalKMeans: call fit() before predict()")
        return self.centers

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each row of ``x`` [N, dim] to each centre: [N, k]."""
        centers = self._need_fit()
        x = _check_chunk(x, centers.shape[1])
        return _unit(x.to(centers.device)) @ centers.T

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the most similar centre for each row of ``x`` [N, dim] (on the centres' device)."""
        centers = self._need_fit()
        x = _check_chunk(x, centers.shape[1])
        out = torch.empty(x.shape[0], dtype=torch.long, device=centers.device)
        for start in range(0, x.shape[0], self.batch_size):
            part = x[start:start + self.batch_size].to(centers.device).float()
            out[start:start + self.batch_size] = (part @ centers.T).argmax(dim=1)
        return out

    def fit_predict(self, x: torch.Tensor) -> torch.Tensor:
        """``fit(x)`` then ``predict(x)`` for a tensor [N, dim]."""
        return self.fit(x).predict(x)


def adjusted_rand_index(a: Sequence[int] | torch.Tensor, b: Sequence[int] | torch.Tensor) -> float:
    """Adjusted Rand index between two labelings of the same points (Hubert & Arabie, 1985).

    1.0 for the same partition whatever the label names, about 0 for independent random labelings. Labels
    may be any integers. When both labelings put every point in one cluster, or every point in its own
    cluster, the index is 1.0 by convention.
    """
    a = torch.as_tensor(a).flatten()
    b = torch.as_tensor(b).flatten()
    if a.shape != b.shape:
        raise ValueError(f"adjusted_rand_index: labelings differ in length ({a.numel()} vs {b.numel()})")
    if a.numel() == 0:
        raise ValueError("adjusted_rand_index: the labelings are empty")
    _, ia = torch.unique(a.cpu(), return_inverse=True)
    _, ib = torch.unique(b.cpu(), return_inverse=True)
    n_b = int(ib.max()) + 1
    table = torch.bincount(ia * n_b + ib, minlength=(int(ia.max()) + 1) * n_b).double()

    def pairs(counts: torch.Tensor) -> torch.Tensor:
        return (counts * (counts - 1) / 2).sum()

    n = float(a.numel())
    index = pairs(table)
    rows = pairs(torch.bincount(ia).double())
    cols = pairs(torch.bincount(ib).double())
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else torch.tensor(0.0, dtype=torch.float64)
    maximum = (rows + cols) / 2
    if float(maximum - expected) == 0.0:
        return 1.0
    return float((index - expected) / (maximum - expected))
