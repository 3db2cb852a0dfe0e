"""The jobs of notebooks 02 and 03 and of ``python -m colab_utils.editing``, one call each, so that both front
ends run the same code (Collins, Bala, Price, Süsstrunk, "Editing in Style", CVPR 2020).

- :func:`make_catalog` / :func:`name_catalog`: a catalog for a generator, its clusters named from a dict of
  part names or, for the generator trained on synthetic faces, by the shipped part segmenter;
- :func:`read_part_names`: part names as JSON (a file or the text itself), checked;
- :func:`read_face`: a target or reference given on a command line: a seed, or a W / W+ latent file;
- :func:`part_edits_grid`: one row per part, the part moved at a few strengths (notebook 02);
- :func:`full_face_grid`: the full-face progression of several pairs (notebook 03);
- :func:`edited_image`: the target with parts of the reference applied together;
- :func:`locality_rows`: how local each part edit is, averaged over pairs (notebook 03's table).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from colab_utils.viz import image_grid

from .catalog import Catalog, build_catalog
from .generators import SYNTHETIC_ASSET
from .metrics import EditLocality
from .transfer import (DEFAULT_TRUNCATION, GLOBAL_PARTS, Face, PartTransfer, Progression, mean_locality,
                       ordered_parts, progression_grid)

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LATENT_KEYS = ("w_plus", "w", "latent")


def is_synthetic(weights) -> bool:
    """Whether ``weights`` (as :func:`colab_utils.editing.load_generator` takes them) is the generator trained
    on synthetic faces, whose clusters the shipped part segmenter can name."""
    return str(weights) == "synthetic" or Path(str(weights)).name == SYNTHETIC_ASSET


def name_catalog(G, catalog: Catalog, *, part_names: Mapping[str, Iterable[int]] | None = None,
                 auto_name: bool = False, segmenter_steps: int | None = None, seed: int = 0,
                 truncation: float = DEFAULT_TRUNCATION):
    """Name the catalog's clusters: with ``part_names`` (``{"eyes": [3, 11], ...}``), else with ``auto_name``
    by the part segmenter of the synthetic faces (:func:`colab_utils.editing.load_segmenter`; trained for
    ``segmenter_steps`` when the shipped file is missing) on 16 faces drawn from ``seed + 2``. Returns the
    segmenter's :class:`~colab_utils.editing.segmenter.ClusterNaming` report, or None."""
    if part_names:
        catalog.set_parts(part_names)
        return None
    if not auto_name:
        return None
    from .generators import load_segmenter
    from .segmenter import auto_name_clusters

    segmenter = load_segmenter(fallback_steps=segmenter_steps)
    return auto_name_clusters(G, catalog, segmenter, n_samples=16, seed=seed + 2, truncation=truncation)


def make_catalog(G, *, n_samples: int = 200, k: int = 18, layer_resolution: int = 32, seed: int = 0,
                 truncation: float = DEFAULT_TRUNCATION, batch_size: int = 8, device=None, progress: bool = True,
                 part_names: Mapping[str, Iterable[int]] | None = None, auto_name: bool = False,
                 segmenter_steps: int | None = None):
    """``(catalog, naming)``: :func:`~colab_utils.editing.build_catalog` of ``G`` from ``n_samples`` faces,
    ``k`` clusters at the last styled conv of ``layer_resolution`` pixels, then :func:`name_catalog`."""
    catalog = build_catalog(G, n_samples=n_samples, layer_resolution=layer_resolution, k=k, seed=seed,
                            truncation=truncation, batch_size=batch_size, device=device, progress=progress)
    naming = name_catalog(G, catalog, part_names=part_names, auto_name=auto_name, segmenter_steps=segmenter_steps,
                          seed=seed, truncation=truncation)
    return catalog, naming


def read_part_names(source: str | os.PathLike) -> dict[str, list[int]]:
    """Part names from JSON, ``{"eyes": [3, 11], "mouth": 5}``: a ``.json`` file, or the JSON text itself."""
    text, where = str(source), "the part names"
    path = Path(text)
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (give a JSON file of part names, or the JSON itself, "
                                    f"e.g. '{{\"eyes\": [3, 11]}}')")
        text, where = path.read_text(), str(path)
    try:
        names = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(names, dict) or not names:
        raise ValueError(f"{where}: expected an object of part names to cluster ids, e.g. {{\"eyes\": [3, 11]}}")
    out = {}
    for name, ids in names.items():
        ids = [ids] if isinstance(ids, int) else ids
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{where}: part {name!r} must map to a cluster id or a list of them, got {ids!r}")
        out[name] = ids
    return out


def read_face(text: str | int) -> Face:
    """A target or reference as a command line gives it: a seed (``"7"``), a photo (its path, returned as it
    is: ``PartTransfer`` aligns and inverts it), or a file holding one W ``[style_dim]`` or W+
    ``[n_latent, style_dim]`` latent: a tensor saved with ``torch.save`` (alone, or in a dict under ``w_plus`` /
    ``w`` / ``latent``) or a ``.npy`` array. The shape is checked against the generator when it is used."""
    if isinstance(text, int) or str(text).strip().isdigit():
        return int(text)
    path = Path(text)
    if path.suffix.lower() in PHOTO_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such photo")
        return str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is neither a seed nor an existing W / W+ latent file (.pt or .npy)")
    if path.suffix.lower() == ".npy":
        try:
            value = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a plain numpy array ({err})") from None
        return torch.from_numpy(np.asarray(value, np.float32))
    from colab_utils.loading import identify, safe_load

    value = safe_load(path)
    if isinstance(value, Mapping):
        found = [key for key in LATENT_KEYS if isinstance(value.get(key), torch.Tensor)]
        if not found:
            what = identify(value)
            raise ValueError(f"{path} holds no latent tensor under {' / '.join(LATENT_KEYS)}"
                             + (f": it is {what}" if what else ""))
        value = value[found[0]]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{path} holds a {type(value).__name__}, not a W / W+ latent tensor")
    return value.float()


def part_edits_grid(transfer: PartTransfer, parts: Sequence[str] | None = None,
                    strengths: Sequence[float] = (0.5, 1.0), *, padding: int = 2):
    """One row per part (by default every named part, facial features first and the background last): the
    target, the part of the reference moved at each of ``strengths``, the reference. A PIL image with
    column labels and row labels (a part whose channels carry the global style is marked *global*)."""
    parts = ordered_parts(transfer.catalog, parts)
    rows = [transfer.render([transfer.target_styles, *[transfer.blend({part: s}) for s in strengths],
                             transfer.reference_styles]) for part in parts]
    return image_grid(rows, nrow=len(strengths) + 2, padding=padding,
                      row_labels=[f"{p} (global)" if p in GLOBAL_PARTS else p for p in parts],
                      col_labels=["target", *[f"{s:g}" for s in strengths], "reference"])


def full_face_grid(transfer: PartTransfer, pairs: Sequence[tuple[Face, Face]], parts: Sequence[str] | None = None,
                   strength: float = 1.0, *, labels: Sequence[str] | None = None):
    """``(grid, progressions)``: the full-face transfer of every (target, reference) pair, one row each:
    target, +part, ..., all parts jointly, reference (:func:`~colab_utils.editing.progression_grid`)."""
    progressions: list[Progression] = []
    for target, reference in pairs:
        transfer.set_target(target)
        transfer.set_reference(reference)
        progressions.append(transfer.progression(parts, strength))
    labels = list(labels) if labels is not None else [f"{t} <- {r}" for t, r in pairs]
    return progression_grid(progressions, row_labels=labels), progressions


def edited_image(transfer: PartTransfer, parts: Sequence[str] | None = None, strength: float = 1.0) -> torch.Tensor:
    """The target with ``parts`` of the reference (by default every named part but the background) applied
    together at ``strength``: ``[1, 3, H, W]`` in [-1, 1]."""
    parts = ordered_parts(transfer.catalog, parts, include_global=False)
    return transfer.render(transfer.blend({part: strength for part in parts}))


def locality_rows(transfer: PartTransfer, pairs: Sequence[tuple[Face, Face]], parts: Sequence[str] | None = None,
                  strength: float = 1.0, *, space: str = "lab") -> dict[str, EditLocality]:
    """:meth:`PartTransfer.locality` of every (target, reference) pair, averaged (rows for
    :func:`~colab_utils.editing.locality_table`); ``transfer`` is left on the last pair."""
    if not pairs:
        raise ValueError("locality_rows: no pairs given")
    reports = []
    for target, reference in pairs:
        transfer.set_target(target)
        transfer.set_reference(reference)
        reports.append(transfer.locality(parts, strength, space=space))
    return mean_locality(reports)
