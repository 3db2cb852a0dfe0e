"""The figures that say whether part transfer works on a generator: does each part move, does the rest stay?

Collins et al., "Editing in Style" (CVPR 2020, Sec. 4) judge a part transfer by two errors: inside the part
the edited face should match the *reference*, outside it the *target*. :meth:`PartTransfer.locality` measures
them under the catalog's own cluster maps; here the part is located by an independent labeler (the segmenter
trained on the synthetic faces' exact label maps, or any face parser), so a catalog whose "eyes" cluster
missed the eyes cannot grade itself well.

For every part and every (target, reference) pair, with ``mask`` = the part in the target *or* the reference
(by the labeler), in CIELAB:

* ``inside_edit``: MSE of the edited face against the reference inside ``mask``;
* ``inside_none``: the same for the unedited target (how far apart the two faces are there to begin with);
* ``outside_edit``: MSE of the edited face against the target outside ``mask``.

``reduction = 1 - inside_edit / inside_none`` is the share of the in-part error the edit removed (1: the part
now looks like the reference's, 0: nothing moved); errors are averaged over the pairs first.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from .catalog import Catalog
from .metrics import edit_locality
from .transfer import Face, each_pair

FACIAL_PARTS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth")


@dataclass(frozen=True)
class PartFigure:
    """The errors of one part's transfer, averaged over ``pairs`` pairs (see the module docstring)."""

    part: str
    inside_edit: float
    inside_none: float
    outside_edit: float
    part_fraction: float
    pairs: int

    @property
    def reduction(self) -> float:
        """Share of the in-part error to the reference that the edit removed."""
        return 1.0 - self.inside_edit / self.inside_none if self.inside_none > 0 else float("nan")


def _labels(labeler, images: torch.Tensor) -> torch.Tensor:
    predict = getattr(labeler, "predict", None)
    return torch.as_tensor(predict(images) if callable(predict) else labeler(images)).long().cpu()


@torch.no_grad()
def part_transfer_figures(G, catalog: Catalog, labeler: Callable[[torch.Tensor], torch.Tensor],
                          pairs: Sequence[tuple[Face, Face]], *, parts: Iterable[str] = FACIAL_PARTS,
                          part_names: Sequence[str] | None = None, strength: float = 1.0,
                          **transfer_options) -> dict[str, PartFigure]:
    """One :class:`PartFigure` per part: each part of the reference moved alone onto the target, for every
    pair, located by ``labeler`` (a :class:`~colab_utils.editing.segmenter.PartSegmenter` or any callable
    from images [B, 3, H, W] in [-1, 1] to label maps [B, H, W]) whose classes are ``part_names`` (default:
    the labeler's ``part_names``, else :data:`colab_utils.data.synthetic.PARTS`). ``transfer_options`` go to
    :class:`PartTransfer` (``rho``, ``epsilon``, ``truncation``). A pair where neither face shows the part is
    skipped; a part no pair shows raises ValueError."""
    from colab_utils.data.synthetic import PARTS

    parts = list(parts)
    if not pairs:
        raise ValueError("part_transfer_figures: no pairs given")
    names = list(part_names or getattr(labeler, "part_names", None) or PARTS)
    missing = [p for p in parts if p not in names]
    if missing:
        raise ValueError(f"part_transfer_figures: the labeler knows no part {missing} (its parts: {names})")
    rows: dict[str, list[tuple[float, float, float, float]]] = {p: [] for p in parts}
    for transfer in each_pair(G, catalog, pairs, **transfer_options):
        edits = [transfer.blend({part: strength}) for part in parts]
        images = transfer.render([list(transfer.target_styles), list(transfer.reference_styles)] + edits)
        target_img, reference_img = images[:1], images[1:2]
        labels = _labels(labeler, images[:2])
        for i, part in enumerate(parts):
            mask = ((labels[0] == names.index(part)) | (labels[1] == names.index(part)))[None]
            if bool(mask.any()):
                rows[part].append(_figure_row(images[2 + i:3 + i], target_img, reference_img, mask))
    return _mean_figures(rows, "part_transfer_figures")


def _figure_row(edited: torch.Tensor, target: torch.Tensor, reference: torch.Tensor,
                mask: torch.Tensor) -> tuple[float, float, float, float]:
    """(in-part error of the edit, of the unedited target, out-of-part change, part area) of one pair."""
    moved = edit_locality(edited, target, reference, mask)
    untouched = edit_locality(target, target, reference, mask)
    return moved.inside_vs_reference, untouched.inside_vs_reference, moved.outside_vs_target, moved.part_fraction


def _mean_figures(rows: dict[str, list[tuple[float, float, float, float]]], caller: str) -> dict[str, PartFigure]:
    """One :class:`PartFigure` per part: its rows averaged over the pairs."""
    out = {}
    for part, values in rows.items():
        if not values:
            raise ValueError(f"{caller}: no pair shows the part {part!r}")
        means = [sum(v[j] for v in values) / len(values) for j in range(4)]
        out[part] = PartFigure(part, *means, pairs=len(values))
    return out


def renderer_transfer_figures(n_pairs: int = 16, *, size: int = 64, seed: int = 1000,
                              parts: Iterable[str] = FACIAL_PARTS) -> dict[str, PartFigure]:
    """The same figures for the synthetic renderer's *exact* part swaps (``mix_face_params``) on portrait faces,
    located by their true label maps: the most a part transfer can reach under this measure. A part drawn in
    another part's colour (the nose, in the skin's) cannot reach much, however well it is moved."""
    from colab_utils.data.synthetic import PARTS, mix_face_params, render_face, sample_face_params

    def tensor(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0

    parts = list(parts)
    rows: dict[str, list[tuple[float, float, float, float]]] = {p: [] for p in parts}
    for i in range(n_pairs):
        a, b = (sample_face_params(seed + 2 * i + j, preset="portrait") for j in (0, 1))
        (image_a, labels_a), (image_b, labels_b) = render_face(a, size), render_face(b, size)
        for part in parts:
            image, _ = render_face(mix_face_params(a, b, part), size)
            index = PARTS.index(part)
            mask = torch.from_numpy((labels_a == index) | (labels_b == index))[None]
            rows[part].append(_figure_row(tensor(image), tensor(image_a), tensor(image_b), mask))
    return _mean_figures(rows, "renderer_transfer_figures")


def figures_table(figures: dict[str, PartFigure]) -> str:
    """A markdown table of :func:`part_transfer_figures`: one line per part."""
    lines = ["| part | in-part error to reference, no edit | with the edit | fall | out-of-part change | "
             "part area | pairs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for f in figures.values():
        lines.append(f"| {f.part} | {f.inside_none:.1f} | {f.inside_edit:.1f} | {100 * f.reduction:.0f}% | "
                     f"{f.outside_edit:.2f} | {100 * f.part_fraction:.1f}% | {f.pairs} |")
    return "\n".join(lines)


def threshold_sweep(G, catalog: Catalog, labeler, pairs: Sequence[tuple[Face, Face]], rhos: Sequence[float], *,
                    epsilon: float | None = None, parts: Iterable[str] = FACIAL_PARTS,
                    **transfer_options) -> dict[float, dict[str, PartFigure]]:
    """:func:`part_transfer_figures` at every ``rho`` of ``rhos`` (one ``epsilon`` for all): how far each part
    moves towards the reference against how much the rest of the face changes, as the query admits channels
    that put less of their activation inside the part. A generator made for local editing shows a ``rho`` where
    the part moves by half or more while the outside barely changes; one whose channels each act all over the
    face moves the part only when the outside moves as much."""
    wanted = list(parts)
    parts = [p for p in wanted if p in catalog.parts]
    if not parts:
        raise ValueError(f"threshold_sweep: the catalog names none of {wanted} (its parts: {list(catalog.parts)})")
    return {float(rho): part_transfer_figures(G, catalog, labeler, pairs, parts=parts, rho=float(rho), epsilon=epsilon,
                                              **transfer_options) for rho in rhos}


def sweep_table(sweep: dict[float, dict[str, PartFigure]]) -> str:
    """A markdown table of :func:`threshold_sweep`: per rho, each part's fall and out-of-part change."""
    parts = list(next(iter(sweep.values())))
    lines = ["| rho | " + " | ".join(f"{p}: fall | {p}: outside" for p in parts) + " |",
             "|---:|" + "---:|---:|" * len(parts)]
    for rho, figures in sweep.items():
        cells = " | ".join(f"{100 * figures[p].reduction:.0f}% | {figures[p].outside_edit:.1f}" for p in parts)
        lines.append(f"| {rho:g} | {cells} |")
    return "\n".join(lines)


def channel_selectivity(catalog: Catalog, parts: Iterable[str] = FACIAL_PARTS) -> str:
    """A markdown table: for every style layer and part, the largest share of one channel's activation that
    falls inside the part (the catalog's ``M`` summed over the part's clusters), beside the part's share of the
    pixels. A local edit needs channels well above the area share (a channel spread evenly over the face puts
    exactly its area share inside); Collins et al. find such channels in FFHQ's generator."""
    from .edit import part_contribution

    parts = [p for p in parts if p in catalog.parts]
    if not parts:
        raise ValueError(f"channel_selectivity: the catalog names none of the parts (its parts: {list(catalog.parts)})")
    area = {p: float(catalog.cluster_area[list(catalog.parts[p])].sum()) for p in parts}
    lines = ["| layer | channels | " + " | ".join(f"{p} (area {100 * area[p]:.1f}%)" for p in parts) + " |",
             "|---|---:|" + "---:|" * len(parts)]
    for name, m in zip(catalog.layer_names, catalog.M):
        best = [float(part_contribution(m.float(), catalog.parts[p])[0].max()) for p in parts]
        lines.append(f"| {name} | {m.shape[1]} | " + " | ".join(f"{100 * b:.0f}%" for b in best) + " |")
    return "\n".join(lines)


# The settings the shipped generator is measured with (tests/test_editing_assets.py, bench/demo_figures.py).
DEMO_CATALOG = {"n_samples": 200, "k": 18, "seed": 0, "truncation": 0.7, "layer_resolution": 32}
DEMO_NAMING = {"n_samples": 32, "seed": 2, "truncation": 0.7}
DEMO_PAIRS: tuple[tuple[int, int], ...] = tuple((2 * i, 2 * i + 1) for i in range(8))


def demo_editing_figures(G, labeler, *, catalog_options: dict | None = None, pairs=DEMO_PAIRS,
                         progress: bool = False, **transfer_options):
    """Catalog, automatic naming and per-part transfer figures of ``G`` with the demo settings:
    ``(catalog, naming, figures)`` (see :func:`~colab_utils.editing.catalog.build_catalog`,
    :func:`~colab_utils.editing.segmenter.auto_name_clusters` and :func:`part_transfer_figures`; the facial
    parts the namer did not find are left out of ``figures``)."""
    from .catalog import build_catalog
    from .segmenter import auto_name_clusters

    catalog = build_catalog(G, **{**DEMO_CATALOG, **(catalog_options or {})}, progress=progress)
    naming = auto_name_clusters(G, catalog, labeler, **DEMO_NAMING)
    parts = [p for p in FACIAL_PARTS if p in catalog.parts]
    figures = part_transfer_figures(G, catalog, labeler, pairs, parts=parts, **transfer_options) if parts else {}
    return catalog, naming, figures
