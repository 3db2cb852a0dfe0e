"""The catalog: which parts of a face a generator draws where, and which style channels act on each part.

Collins, Bala, Price, Süsstrunk, "Editing in Style: Uncovering the Local Semantics of GANs", CVPR 2020,
Sec. 3.1-3.2, on any generator with our StyleGAN2 interface (``colab_utils.stylegan2.model.Generator``):

1. Sample latents and render them, keeping the feature maps of one layer: the output of the last styled
   conv at ``layer_resolution`` (32x32 by default).
2. Cluster every pixel's feature vector by direction (spherical k-means, ``kmeans.SphericalKMeans``). Each
   sample gets a cluster map; clusters turn out to be object parts (eyes, mouth, hair, background...).
3. For every style layer, the contribution matrix ``M[k, c]`` (the paper's Eq. 1): the share of channel c's
   activation energy (squared activation) that falls inside cluster k, averaged over the samples. The
   activation of a style layer is the input its style vector scales (the output of the styled conv before it;
   the constant input for the first layer), resized to the cluster map's resolution: area averaging of the
   energy when it is finer, nearest repetition when it is coarser, so that each share is that of the energy at
   the layer's own resolution. Every column of ``M`` sums to 1 (a channel with no energy at all is spread
   evenly).

A user then names parts (a part is a set of clusters), and ``edit.query`` turns ``M`` into the channels that
move a part from a reference face onto a target face.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from colab_utils.loading import CheckpointMismatchError, identify, safe_load

from .edit import combine_queries, query
from .kmeans import SphericalKMeans

FORMAT_VERSION = 1
TENSORS_FILE = "catalog.pt"
SETTINGS_FILE = "catalog.json"


# ---------------------------------------------------------------------------------------------------------
# Which activations to read from the generator
# ---------------------------------------------------------------------------------------------------------

def cluster_layer_name(G, resolution: int) -> str:
    """The last styled conv (not a toRGB) whose output is ``resolution`` pixels wide."""
    convs = [layer for layer in G.style_layers if not layer.is_rgb and layer.resolution == resolution]
    if not convs:
        available = sorted({layer.resolution for layer in G.style_layers if not layer.is_rgb})
        raise ValueError(f"build_catalog: the generator has no styled conv at {resolution}x{resolution}; "
                         f"pick layer_resolution among {available}")
    return convs[-1].name


def style_layer_inputs(G, activations: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """The feature map each style vector scales, one per entry of ``G.style_layers``.

    A modulated conv or toRGB scales the channels of its input, which is the output of the styled conv
    before it in synthesis order; the first layer reads the generator's constant input (``G.input``), or,
    for a generator without one, its own output when the channel counts agree.
    """
    inputs, previous = [], None
    for layer in G.style_layers:
        if previous is None:
            first = activations[layer.name]
            if hasattr(G, "input") and callable(G.input):
                previous = G.input(first.shape[0])
            elif first.shape[1] == layer.in_channels:
                previous = first
            else:
                raise ValueError(f"catalog: cannot find the input of the first style layer {layer.name!r}")
        if previous.shape[1] != layer.in_channels:
            raise ValueError(f"catalog: the input of style layer {layer.name!r} has {previous.shape[1]} channels, "
                             f"its style vector {layer.in_channels}")
        inputs.append(previous)
        if not layer.is_rgb:
            previous = activations[layer.name]
    return inputs


def _energy_at(act: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Squared activation [B, C, H, W] resized to ``size``: area mean when finer, nearest when coarser."""
    energy = act.float() ** 2
    if energy.shape[-2:] == size:
        return energy
    if energy.shape[-2] >= size[0] and energy.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(energy, size)
    return F.interpolate(energy, size=size, mode="nearest")


def _pixel_features(act: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B*H*W, C]."""
    return act.permute(0, 2, 3, 1).reshape(-1, act.shape[1])


def _device_of(G) -> torch.device:
    try:
        return next(G.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------------------------

class Catalog:
    """Cluster centres, contribution matrices and part names of one generator.

    ``centers``: [K, C] unit vectors over the channels of ``cluster_layer``; ``M``: one [K, C_i] matrix per
    style layer (``layer_names``, in ``G.style_layers`` order); ``cluster_area``: the share of pixels each
    cluster covered over the samples; ``settings``: how the catalog was built; ``parts``: part name -> list of
    cluster ids.
    """

    def __init__(self, centers: torch.Tensor, M: Sequence[torch.Tensor], layer_names: Sequence[str],
                 settings: Mapping, cluster_area: torch.Tensor | None = None,
                 parts: Mapping[str, Iterable[int]] | None = None):
        self.centers = centers
        self.M = list(M)
        self.layer_names = list(layer_names)
        self.settings = dict(settings)
        self.cluster_area = cluster_area if cluster_area is not None else torch.full((self.k,), 1.0 / self.k)
        if len(self.M) != len(self.layer_names):
            raise ValueError(f"Catalog: {len(self.M)} contribution matrices for {len(self.layer_names)} layers")
        for name, m in zip(self.layer_names, self.M):
            if m.dim() != 2 or m.shape[0] != self.k:
                raise ValueError(f"Catalog: M of layer {name!r} has shape {tuple(m.shape)}, expected [{self.k}, C]")
        self.parts: dict[str, list[int]] = {}
        if parts:
            self.set_parts(parts)

    # -- basic facts ------------------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    @property
    def cluster_layer(self) -> str:
        return self.settings["cluster_layer"]

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={ids}" for name, ids in self.parts.items()) or "none named"
        return (f"Catalog(K={self.k}, clusters from {self.cluster_layer} at "
                f"{self.settings.get('cluster_resolution')}px, {len(self.M)} style layers, "
                f"{self.settings.get('n_samples')} samples; parts: {parts})")

    # -- parts ------------------------------------------------------------------------------------------------
    def set_parts(self, parts: Mapping[str, Iterable[int]]) -> None:
        """Name parts: ``{"eyes": [3, 11], "mouth": [5]}`` (replaces earlier names)."""
        named = {}
        for name, ids in parts.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Catalog.set_parts: part names must be non-empty strings, got {name!r}")
            ids = sorted({int(i) for i in ([ids] if isinstance(ids, int) else ids)})
            if not ids:
                raise ValueError(f"Catalog.set_parts: part {name!r} names no cluster")
            bad = [i for i in ids if not 0 <= i < self.k]
            if bad:
                raise ValueError(f"Catalog.set_parts: part {name!r} has cluster ids {bad} outside [0, {self.k})")
            named[name] = ids
        self.parts = named

    def part_ids(self, part: str | int | Iterable[int]) -> list[int]:
        """Cluster ids of a named part, or of an explicit id / list of ids."""
        if isinstance(part, str):
            if part not in self.parts:
                known = ", ".join(self.parts) or "none yet (use set_parts)"
                raise KeyError(f"Catalog: no part named {part!r}; named parts: {known}")
            return list(self.parts[part])
        ids = [int(part)] if isinstance(part, int) else [int(i) for i in part]
        bad = [i for i in ids if not 0 <= i < self.k]
        if not ids or bad:
            raise ValueError(f"Catalog: cluster ids {ids} must be a non-empty list within [0, {self.k})")
        return ids

    def query(self, parts: str | int | Iterable[int] | Sequence[str], *, rho: float | Sequence[float] = 0.0,
              epsilon: float | Sequence[float] | None = None,
              strengths: Sequence[float] | None = None) -> list[torch.Tensor]:
        """The query q (one [C_i] tensor per style layer) for one part or, given a list of part names,
        several parts combined (per channel the largest ``strength * q``); see ``edit.query``."""
        if isinstance(parts, (list, tuple)) and parts and all(isinstance(p, str) for p in parts):
            queries = [query(self.M, self.part_ids(p), rho=rho, epsilon=epsilon) for p in parts]
            return combine_queries(queries, strengths)
        q = query(self.M, self.part_ids(parts), rho=rho, epsilon=epsilon)
        return combine_queries([q], strengths) if strengths is not None else q

    # -- cluster maps for new images --------------------------------------------------------------------------
    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Cluster map [B, H, W] of feature maps [B, C, H, W] from ``cluster_layer``."""
        if features.dim() != 4 or features.shape[1] != self.centers.shape[1]:
            raise ValueError(f"Catalog.assign: expected features [B, {self.centers.shape[1]}, H, W] from "
                             f"{self.cluster_layer}, got {tuple(features.shape)}")
        centers = self.centers.to(features.device, torch.float32)
        sims = torch.einsum("bchw,kc->bkhw", features.float(), centers)
        return sims.argmax(dim=1)

    def check_generator(self, G) -> None:
        """Raise a clear error when ``G``'s style layers do not match the catalog's."""
        names = [layer.name for layer in G.style_layers]
        channels = [layer.in_channels for layer in G.style_layers]
        if names != self.layer_names or channels != [m.shape[1] for m in self.M]:
            raise ValueError("Catalog: this generator's style layers (names or channel counts) differ from the "
                             "ones the catalog was built on; build a catalog for this generator")

    @torch.no_grad()
    def cluster_maps(self, G, w_plus: torch.Tensor, *, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Cluster maps [B, H, W] (at the catalog's cluster resolution) of the images ``G`` renders from
        ``w_plus`` [B, n_latent, style_dim] (fixed noise unless ``noise`` is given)."""
        self.check_generator(G)
        styles = G.style_vectors(w_plus)
        _, acts = G.synthesis(styles, noise=noise, randomize_noise=False, return_activations=True)
        return self.assign(acts[self.cluster_layer])

    def part_mask(self, labels: torch.Tensor, part: str | int | Iterable[int]) -> torch.Tensor:
        """Boolean mask [B, H, W] of the pixels of ``labels`` (cluster maps) that belong to the part."""
        ids = torch.tensor(self.part_ids(part), device=labels.device)
        return torch.isin(labels, ids)

    # -- files ------------------------------------------------------------------------------------------------
    def save(self, path_dir: str | os.PathLike) -> Path:
        """Write ``catalog.pt`` (tensors) and ``catalog.json`` (settings, layer names, part names) into a folder."""
        folder = Path(path_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"centers": self.centers.detach().cpu(), "M": [m.detach().cpu() for m in self.M],
                   "cluster_area": self.cluster_area.detach().cpu()}
        meta = {"format_version": FORMAT_VERSION, "settings": self.settings, "layer_names": self.layer_names,
                "layer_channels": [int(m.shape[1]) for m in self.M], "parts": self.parts}
        tmp_pt, tmp_json = folder / (TENSORS_FILE + ".tmp"), folder / (SETTINGS_FILE + ".tmp")
        torch.save(tensors, tmp_pt)
        tmp_json.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_pt, folder / TENSORS_FILE)
        os.replace(tmp_json, folder / SETTINGS_FILE)
        return folder

    @classmethod
    def load(cls, path_dir: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> "Catalog":
        """Read a catalog written by :meth:`save` (tensors through :func:`colab_utils.loading.safe_load`)."""
        folder = Path(path_dir)
        pt, js = folder / TENSORS_FILE, folder / SETTINGS_FILE
        for path in (pt, js):
            if not path.is_file():
                raise FileNotFoundError(f"Catalog.load: {path} is missing (a catalog folder holds {TENSORS_FILE} "
                                        f"and {SETTINGS_FILE})")
        try:
            meta = json.loads(js.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Catalog.load: {js} is not valid JSON ({err})") from err
        for key in ("format_version", "settings", "layer_names", "layer_channels", "parts"):
            if key not in meta:
                raise ValueError(f"Catalog.load: {js} lacks the entry {key!r}")
        if meta["format_version"] != FORMAT_VERSION:
            raise ValueError(f"Catalog.load: {js} has format version {meta['format_version']}, "
                             f"this code reads version {FORMAT_VERSION}")
        tensors = safe_load(pt, map_location)  # unsafe or damaged files are refused, named
        if not isinstance(tensors, dict) or not {"centers", "M", "cluster_area"} <= set(tensors):
            what = identify(tensors)
            raise CheckpointMismatchError(f"Catalog.load: {pt} does not hold centers, M and cluster_area"
                                          + (f": it is {what}" if what else ""), path=pt)
        channels = [int(m.shape[1]) for m in tensors["M"]]
        if channels != meta["layer_channels"] or len(tensors["M"]) != len(meta["layer_names"]):
            raise ValueError(f"Catalog.load: the matrices in {pt} do not match the layers listed in {js}")
        return cls(tensors["centers"], tensors["M"], meta["layer_names"], meta["settings"],
                   cluster_area=tensors["cluster_area"], parts=meta["parts"])


# ---------------------------------------------------------------------------------------------------------
# Building one
# ---------------------------------------------------------------------------------------------------------

def _sample_w_plus(G, n_samples: int, seed: int, truncation: float, truncation_latent: torch.Tensor | None,
                   batch_size: int, device: torch.device) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if truncation < 1 and truncation_latent is None:
        # drawn even when the file's latent_avg is the centre, so the faces are the same either way
        z_mean = torch.randn(4096, G.style_dim, generator=generator).to(device)
        truncation_latent = getattr(G, "latent_avg", None)  # the loaded file's average w
        if truncation_latent is None:
            truncation_latent = torch.cat([G.get_latent(z) for z in z_mean.split(512)]).mean(0, keepdim=True)
    z = torch.randn(n_samples, G.style_dim, generator=generator)
    return [G.w_plus([chunk.to(device)], truncation=truncation, truncation_latent=truncation_latent).cpu()
            for chunk in z.split(batch_size)]


@torch.no_grad()
def build_catalog(G, *, n_samples: int = 200, layer_resolution: int = 32, k: int = 18, seed: int = 0,
                  truncation: float = 0.7, truncation_latent: torch.Tensor | None = None, batch_size: int = 8,
                  device: str | torch.device | None = None, kmeans_iter: int = 30,
                  progress: bool = True) -> Catalog:
    """Build a :class:`Catalog` for generator ``G`` from ``n_samples`` random faces.

    ``layer_resolution``: where to cluster (the last styled conv at that size); ``k``: number of clusters;
    ``truncation``: truncation of the sampled latents, around ``truncation_latent`` (by default the loaded
    file's ``G.latent_avg``, else the mean w of 4096 latents drawn from ``seed``); ``batch_size``: images rendered at once; ``device``: where to run (by
    default G's device). Everything random comes from ``seed``; noise is the generator's fixed noise. The
    samples are rendered twice (once to cluster, once to measure contributions) so only one layer's features
    are ever kept in memory, on the CPU in float16.
    """
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"build_catalog: n_samples and batch_size must be positive, got {n_samples}, {batch_size}")
    device = torch.device(device) if device is not None else _device_of(G)
    cluster_layer = cluster_layer_name(G, layer_resolution)
    layers = list(G.style_layers)
    latents = _sample_w_plus(G, n_samples, seed, truncation, truncation_latent, batch_size, device)

    def render(w_plus: torch.Tensor) -> dict[str, torch.Tensor]:
        _, acts = G.synthesis(G.style_vectors(w_plus.to(device)), randomize_noise=False, return_activations=True)
        return acts

    # 1. features of the cluster layer, then spherical k-means on every pixel vector
    features, size = [], None
    for w_plus in tqdm(latents, desc="catalog 1/2: features", disable=not progress):
        act = render(w_plus)[cluster_layer]
        size = tuple(act.shape[-2:])
        features.append(_pixel_features(act).half().cpu())
    n_pixels = sum(f.shape[0] for f in features)
    if n_pixels < k:
        raise ValueError(f"build_catalog: {n_pixels} pixel vectors cannot make {k} clusters")
    kmeans = SphericalKMeans(k, n_iter=kmeans_iter, batch_size=8192, seed=seed).fit(features, device=device)
    del features

    # 2. contribution of every channel of every style layer to every cluster (Eq. 1)
    sums = [torch.zeros(k, layer.in_channels, dtype=torch.float64, device=device) for layer in layers]
    area = torch.zeros(k, dtype=torch.float64, device=device)
    centers = kmeans.centers.to(device)
    for w_plus in tqdm(latents, desc="catalog 2/2: contributions", disable=not progress):
        acts = render(w_plus)
        labels = torch.einsum("bchw,kc->bkhw", acts[cluster_layer].float(), centers).argmax(dim=1)
        onehot = F.one_hot(labels.flatten(1), k).to(torch.float32)          # [B, HW, K]
        area += onehot.sum(dim=(0, 1)).double()
        for i, act in enumerate(style_layer_inputs(G, acts)):
            energy = _energy_at(act, size).flatten(2)                       # [B, C, HW]
            inside = torch.einsum("bcp,bpk->bkc", energy, onehot)           # [B, K, C]
            total = energy.sum(dim=2)                                       # [B, C]
            share = torch.where(total[:, None] > 0, inside / total[:, None].clamp_min(1e-30),
                                torch.full_like(inside, 1.0 / k))
            sums[i] += share.sum(dim=0).double()
    M = [(s / n_samples).float().cpu() for s in sums]
    settings = {
        "k": k, "n_samples": n_samples, "seed": seed, "truncation": truncation, "layer_resolution": layer_resolution,
        "cluster_layer": cluster_layer, "cluster_resolution": list(size), "feature_channels": int(centers.shape[1]),
        "style_dim": int(G.style_dim), "n_latent": int(G.n_latent), "kmeans_inertia": kmeans.inertia_,
        "kmeans_passes": kmeans.n_iter_,
    }
    return Catalog(kmeans.centers.cpu(), M, [layer.name for layer in layers], settings,
                   cluster_area=(area / area.sum()).float().cpu())
