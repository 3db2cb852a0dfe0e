"""StarGAN v2's evaluation protocol (Choi et al., "StarGAN v2: Diverse Image Synthesis for Multiple Domains",
CVPR 2020, Sec. 4 and App. C; the official ``--mode eval``), on any trained networks.

For every ordered pair of domains (source -> target), every validation image of the source domain is
translated ``num_outs`` times (10 in the paper):
- latent-guided: each output with a fresh latent code z through the mapping network;
- reference-guided: each output with the style of the next batch of the target domain's validation images
  (taken in order, whole batches only, cycling; one stream per target domain, as the official loader; for
  a domain with fewer images than a batch, a window over them that moves by one image per output).
FID compares all outputs of a task with the target domain's **training** images (as the official code
does); LPIPS diversity is the mean LPIPS over all pairs of the outputs of one source (AlexNet-LPIPS v0.1).
The table gives every task and the mean over tasks, latent- and reference-guided side by side: the paper
reports the means (CelebA-HQ: FID 13.73 latent / 23.84 reference, LPIPS 0.452 / 0.388).

One difference to know when comparing numbers: the official FID uses torchvision's ImageNet Inception-v3,
whereas this evaluation (like NVlabs' and torch-fidelity's FID) uses the TensorFlow Inception-v3 port
(:func:`colab_utils.metrics.features.inception`), the standard the rest of the field reports; the two give
close but not identical values. Generated images are rounded to 8 bits before their features are computed,
as writing them to PNG files does.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from colab_utils.data.images import ImageFolderDataset, prepare_dataset

from .dataset_stats import real_statistics
from .features import check_extractor, extractor_device, features_of
from .fid import FeatureStats, frechet_distance
from .perceptual import pairwise_diversity

MODES = ("latent", "reference")
NUM_OUTS = 10          # outputs per source image (official --num_outs_per_domain)
VAL_BATCH = 32         # official --val_batch_size


@dataclass
class StarGANEvaluation:
    """FID and LPIPS per task (``"female2male"``) and mode; ``sources`` images translated per task."""

    domains: list[str]
    fid: dict[str, dict[str, float]] = field(default_factory=dict)      # mode -> task -> FID
    lpips: dict[str, dict[str, float]] = field(default_factory=dict)    # mode -> task -> LPIPS
    sources: dict[str, int] = field(default_factory=dict)
    num_outs: int = NUM_OUTS
    extractor: str = ""

    @property
    def tasks(self) -> list[str]:
        return [task_name(s, t) for t in self.domains for s in self.domains if s != t]

    def mean(self, kind: str, mode: str) -> float:
        values = (self.fid if kind == "fid" else self.lpips)[mode]
        return float(np.mean([values[t] for t in self.tasks]))

    def as_official(self) -> dict:
        """The official JSON keys: ``FID_latent/female2male``, ..., ``LPIPS_reference/mean``."""
        out = {}
        for kind, table in (("FID", self.fid), ("LPIPS", self.lpips)):
            for mode, values in table.items():
                for task in self.tasks:
                    out[f"{kind}_{mode}/{task}"] = values[task]
                out[f"{kind}_{mode}/mean"] = self.mean(kind.lower(), mode)
        return out

    def table(self) -> str:
        """Per task and the mean, latent- and reference-guided FID / LPIPS side by side (the paper's columns)."""
        modes = [m for m in MODES if m in self.fid]
        width = max(len("mean"), *(len(t) for t in self.tasks))
        top = f"{'':<{width}}" + "".join(f"  {m + '-guided':^17}" for m in modes)
        head = f"{'task':<{width}}" + "".join(f"  {'FID':>8} {'LPIPS':>8}" for _ in modes)
        lines = [top, head, "-" * len(head)]
        for task in self.tasks:
            lines.append(f"{task:<{width}}" + "".join(f"  {self.fid[m][task]:>8.2f} {self.lpips[m][task]:>8.3f}"
                                                       for m in modes))
        lines.append("-" * len(head))
        lines.append(f"{'mean':<{width}}" + "".join(f"  {self.mean('fid', m):>8.2f} {self.mean('lpips', m):>8.3f}"
                                                     for m in modes))
        counts = sorted(set(self.sources.values()))
        lines.append(f"({'/'.join(map(str, counts))} source images per task, {self.num_outs} outputs each; "
                     f"features: {self.extractor})")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"official": self.as_official(), "sources": self.sources,
                                    "num_outs": self.num_outs, "extractor": self.extractor}, indent=1))
        return path


def task_name(source: str, target: str) -> str:
    return f"{source}2{target}"


def _domain_folders(root: Path) -> list[str]:
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(names) < 2:
        raise ValueError(f"{root} must hold one folder per domain (at least two), found {names}")
    return names


def _split(root: Path, split: str) -> Path:
    return root / split if (root / split).is_dir() else root


def _model_index(nets, domains: list[str]) -> dict[str, int]:
    """The model's index of every domain folder: by name when the model knows its domains, else by sorted
    position (the official ImageFolder order)."""
    known = list(getattr(nets, "domains", None) or [])
    count = nets.mapping_network.num_domains
    if known:
        missing = [d for d in domains if d not in known]
        if missing:
            raise ValueError(f"domain folders {missing} are not among the model's domains {known}")
        return {d: known.index(d) for d in domains}
    if len(domains) > count:
        raise ValueError(f"{len(domains)} domain folders {domains} but the model has {count} domains")
    return dict(zip(domains, range(len(domains))))


def _batches(dataset, batch_size: int, limit: int | None = None):
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, count, batch_size):
        yield torch.stack([dataset[i] for i in range(start, min(start + batch_size, count))])


class _References:
    """The references of one target domain, in folder order. With at least ``batch_size`` images, whole
    batches, cycling (the official loader with ``drop_last``; a batch is cut to the number of sources);
    with fewer, a window that moves by one image per call, so the outputs of a source get different ones."""

    def __init__(self, dataset, batch_size: int):
        self.dataset, self.batch_size, self.position = dataset, batch_size, 0

    def next(self, n: int) -> torch.Tensor:
        count = len(self.dataset)
        if count >= self.batch_size:
            start = (self.position % (count // self.batch_size)) * self.batch_size
            self.position += 1
            return torch.stack([self.dataset[i] for i in range(start, start + min(n, self.batch_size))])
        picks = [(self.position + k) % count for k in range(n)]
        self.position += 1  # a rotating window: source k gets reference k, k+1, k+2, ... over its outputs
        return torch.stack([self.dataset[i] for i in picks])


@torch.no_grad()
def evaluate_stargan_v2(nets, data_root: str | os.PathLike, *, modes=MODES, num_outs: int = NUM_OUTS,
                        batch_size: int = VAL_BATCH, max_sources: int | None = None, extractor=None, lpips=None,
                        seed: int = 0, same_style: bool = False, device=None, real_batch_size: int = 64,
                        progress: bool = True) -> StarGANEvaluation:
    """Run the protocol on ``nets`` (trained or official StarGAN v2 networks, e.g. from
    :func:`colab_utils.stargan.synthesize.load_nets`) with the domain folders of ``data_root`` (a folder or a
    zip of one): ``val/<domain>/`` gives sources and references, ``train/<domain>/`` the real images for FID
    (``val/`` when there is no ``train/``).

    ``max_sources``: use only the first that many validation images per source domain (smoke runs; the
    protocol uses all). ``extractor``: FID features (default: the TensorFlow Inception-v3 through the hub);
    ``lpips``: a model ``(x, y) -> [N]`` distances (default: AlexNet-LPIPS v0.1 through the hub).
    ``same_style``: hold the style input fixed across the ``num_outs`` outputs of a source (one z, one
    reference batch): a control whose diversity must be 0. Latent codes come from ``seed``."""
    from colab_utils.stargan.synthesize import style_codes, translate

    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"modes must be among {MODES}, got {mode!r}")
    if num_outs < 2:
        raise ValueError(f"num_outs must be >= 2 (diversity compares outputs of one source), got {num_outs}")
    if device is None:
        device = next(nets.generator.parameters()).device
    if extractor is None:
        from .features import inception

        extractor = inception(device, progress=progress)
    check_extractor(extractor)
    if lpips is None:
        from .perceptual import lpips_model

        lpips = lpips_model("alex", device, progress=progress)
    size = nets.generator.img_size
    root = prepare_dataset(data_root)  # a folder as it is; a zip (on Drive) unpacked to local disk once
    val_root, train_root = _split(root, "val"), _split(root, "train")
    domains = _domain_folders(val_root)
    index = _model_index(nets, domains)
    result = StarGANEvaluation(domains, num_outs=num_outs, extractor=extractor.name)
    real = {}
    for target in domains:
        folder = train_root / target
        if not folder.is_dir():
            raise FileNotFoundError(f"{train_root} has no folder {target}/ of real images for the FID of tasks "
                                    f"into {target}")
        real[target] = real_statistics(ImageFolderDataset(folder, size), extractor, batch_size=real_batch_size,
                                       progress=progress)
    generator = torch.Generator().manual_seed(int(seed))
    latent_dim = nets.mapping_network.latent_dim
    for mode in modes:
        result.fid[mode], result.lpips[mode] = {}, {}
        for target in domains:
            y = index[target]
            if mode == "reference":
                refs = _References(ImageFolderDataset(val_root / target, size), batch_size)
            for source in (d for d in domains if d != target):
                task = task_name(source, target)
                sources = ImageFolderDataset(val_root / source, size)
                count = len(sources) if max_sources is None else min(max_sources, len(sources))
                stats = FeatureStats(extractor.dim, keep=0, device=extractor_device(extractor))
                diversity = []
                with tqdm(total=count * num_outs, desc=f"{mode} {task}", unit="img", disable=not progress,
                          leave=False) as bar:
                    for x_src in _batches(sources, batch_size, count):
                        n = x_src.shape[0]
                        x_src = x_src.to(device)
                        outputs = []
                        for j in range(num_outs):
                            if j == 0 or not same_style:
                                if mode == "latent":
                                    z = torch.randn(n, latent_dim, generator=generator)
                                    style = style_codes(nets, y, z=z)
                                else:
                                    style = style_codes(nets, y, ref=refs.next(n).to(device))
                            fake = translate(nets, x_src, style=style, batch_size=None)
                            outputs.append(fake)
                            stats.add(features_of(extractor, fake, on_device=True))
                            bar.update(n)
                        diversity.append(pairwise_diversity(lpips, outputs))
                result.fid[mode][task] = frechet_distance(real[target], stats)
                result.lpips[mode][task] = float(np.mean(diversity))
                result.sources[task] = count
    return result
