"""Local edits by style mixing: the query vector q and the blend of target and reference styles.

Collins, Bala, Price, Süsstrunk, "Editing in Style: Uncovering the Local Semantics of GANs", CVPR 2020, Sec. 3.

The catalog gives, for every style layer, a contribution matrix ``M`` of shape [K, C]: ``M[k, c]`` is the
share of channel c's activation that falls inside cluster k, so every column sums to one. A part (eyes, say)
is a set of clusters; ``M[part, c]`` summed over those clusters is how much channel c acts on the part, and
the rest, summed over the other clusters, how much it acts elsewhere.

The query q selects the channels to take from the reference (paper, Sec. 3.2): rank the channels by their
contribution to the part, largest first, and keep them while the running total of their contributions
*outside* the part stays within ``epsilon``; of those, keep only the ones whose contribution to the part is at
least ``rho``. ``epsilon`` is in channel units (a total over channels, so it scales with the layer's width);
both thresholds may be given per layer. The edit then moves the target's style towards the reference's only
in the selected channels::

    s = s_target + lambda * q * (s_reference - s_target)
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

Part = Sequence[int]


def _per_layer(value: float | Sequence[float] | None, n_layers: int, name: str) -> list[float | None]:
    if value is None or isinstance(value, (int, float)):
        return [value] * n_layers
    values = list(value)
    if len(values) != n_layers:
        raise ValueError(f"{name}: got {len(values)} per-layer values for {n_layers} layers")
    return values


def _part_rows(part: Part, k: int) -> torch.Tensor:
    rows = torch.as_tensor(list(part), dtype=torch.long)
    if rows.numel() == 0:
        raise ValueError("query: the part names no cluster")
    if rows.min() < 0 or rows.max() >= k:
        raise ValueError(f"query: part clusters {rows.tolist()} are out of range for K={k} clusters")
    return rows


def part_contribution(m: torch.Tensor, part: Part) -> tuple[torch.Tensor, torch.Tensor]:
    """For one layer's M [K, C]: (contribution of each channel to the part, contribution outside it)."""
    if m.dim() != 2:
        raise ValueError(f"part_contribution: M must be [K, C], got shape {tuple(m.shape)}")
    rows = _part_rows(part, m.shape[0])
    inside_rows = torch.zeros(m.shape[0], dtype=torch.bool)
    inside_rows[rows] = True
    inside_rows = inside_rows.to(m.device)
    return m[inside_rows].sum(dim=0), m[~inside_rows].sum(dim=0)


def layer_query(m: torch.Tensor, part: Part, rho: float, epsilon: float | None) -> torch.Tensor:
    """q over the C channels of one layer (1.0 selected, 0.0 not) for a part, given M [K, C].

    Channels are ranked by contribution to the part (ties keep channel order); a channel is kept when the
    sum of outside-part contributions of itself and every higher-ranked channel is at most ``epsilon``
    (``None``: no limit) and its own contribution to the part is at least ``rho``.
    """
    inside, outside = part_contribution(m.float(), part)
    order = torch.sort(inside, descending=True, stable=True).indices
    budget = math.inf if epsilon is None else float(epsilon)
    within = torch.cumsum(outside[order], dim=0) <= budget
    q = torch.zeros_like(inside)
    q[order[within]] = 1.0
    return q * (inside >= rho).to(q.dtype)


def query(m: Sequence[torch.Tensor], part: Part, *, rho: float | Sequence[float] = 0.0,
          epsilon: float | Sequence[float] | None = None) -> list[torch.Tensor]:
    """The query q for a part, one [C_i] tensor per style layer.

    ``m`` is the catalog's list of contribution matrices; ``part`` the cluster ids making the part; ``rho``
    and ``epsilon`` a value for every layer or a list with one value per layer (an ``epsilon`` of 0 turns a
    layer off; ``None`` means no limit).
    """
    m = list(m)
    rhos = _per_layer(rho, len(m), "query rho")
    epsilons = _per_layer(epsilon, len(m), "query epsilon")
    return [layer_query(layer_m, part, r if r is not None else 0.0, e)
            for layer_m, r, e in zip(m, rhos, epsilons)]


def combine_queries(queries: Iterable[Sequence[torch.Tensor]],
                    strengths: Sequence[float] | None = None) -> list[torch.Tensor]:
    """Several parts at once: per channel, the largest of ``strength_p * q_p`` over the parts.

    With the default strengths of 1 this is the union of the selected channels. Blend the result with
    ``strength=1`` to apply every part at its own strength.
    """
    queries = [list(q) for q in queries]
    if not queries:
        raise ValueError("combine_queries: no queries given")
    if strengths is None:
        strengths = [1.0] * len(queries)
    if len(strengths) != len(queries):
        raise ValueError(f"combine_queries: {len(strengths)} strengths for {len(queries)} queries")
    n_layers = len(queries[0])
    if any(len(q) != n_layers for q in queries):
        raise ValueError("combine_queries: queries cover different numbers of layers")
    combined = []
    for layer in range(n_layers):
        stacked = torch.stack([float(s) * q[layer].float() for q, s in zip(queries, strengths)])
        combined.append(stacked.max(dim=0).values)
    return combined


def global_query(q: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The global style-mixing baseline for an edit: every channel of each layer that q touches at all."""
    return [torch.full_like(layer_q.float(), float(layer_q.max()) if layer_q.numel() else 0.0) for layer_q in q]


def blend_styles(s_target: Sequence[torch.Tensor], s_reference: Sequence[torch.Tensor],
                 q: Sequence[torch.Tensor], strength: float | Sequence[float] = 1.0) -> list[torch.Tensor]:
    """``s = s_target + strength * q * (s_reference - s_target)`` for every style layer.

    Each style is [B, C_i] (a batch of 1 on either side is broadcast over the other); q is [C_i] per layer
    with values in [0, 1]; ``strength`` is one number or one per layer. The blend is computed with
    ``torch.lerp``, which is exact at both ends: a weight of 0 returns the target styles bit for bit and a
    weight of 1 returns the reference styles bit for bit.
    """
    s_target, s_reference, q = list(s_target), list(s_reference), list(q)
    if not len(s_target) == len(s_reference) == len(q):
        raise ValueError(f"blend_styles: {len(s_target)} target layers, {len(s_reference)} reference layers "
                         f"and {len(q)} query layers; they must match")
    strengths = _per_layer(strength, len(q), "blend_styles strength")
    out = []
    for i, (t, r, qi, lam) in enumerate(zip(s_target, s_reference, q, strengths)):
        if t.shape[-1] != r.shape[-1] or qi.shape[-1] != t.shape[-1]:
            raise ValueError(f"blend_styles: layer {i} has target {tuple(t.shape)}, reference {tuple(r.shape)} "
                             f"and q {tuple(qi.shape)}; the channel counts differ")
        if lam is None or not math.isfinite(lam):
            raise ValueError(f"blend_styles: strength of layer {i} must be a finite number, got {lam!r}")
        weight = float(lam) * qi.to(device=t.device, dtype=t.dtype)
        out.append(torch.lerp(t, r.to(device=t.device, dtype=t.dtype), weight))
    return out
