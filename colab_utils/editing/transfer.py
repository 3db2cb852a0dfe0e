"""Part transfer and full-face transfer between two generated faces, with cached style vectors.

Collins, Bala, Price, Süsstrunk, "Editing in Style: Uncovering the Local Semantics of GANs", CVPR 2020: the
eyes (nose, mouth...) of a reference face move onto a target face by mixing their style vectors only in the
channels that act on that part (``edit.query``, ``edit.blend_styles``). The seed's extension, the full-face
transfer, applies every named part in turn: target -> +eyes -> +nose -> +mouth -> ... -> a target that wears
all of the reference's features.

:class:`PartTransfer` maps the two faces to style vectors once; every edit after that only runs the synthesis
network (the mapping network and the per-layer affine maps never run again), and the queries q are cached per
part and thresholds. :func:`full_face_transfer` returns the progression, :func:`progression_grid` draws it for
several pairs, and :meth:`PartTransfer.locality` measures each part edit against the two baselines of the
paper's evaluation: global style mixing of the same layers, and pasting the part in pixel space.

Either face may also be a photo (a path, PIL image, array or upload, or a :class:`~colab_utils.editing.photo.
PhotoFace` already inverted): it is aligned and inverted once (:func:`~colab_utils.editing.photo.photo_face`,
options in ``photo_options``), and a photo target is drawn by its pivotally tuned copy of G, through which the
reference is drawn too.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from colab_utils.stylegan2.generate import seeded_z, truncation_center
from colab_utils.viz import image_grid

from .catalog import Catalog
from .edit import blend_styles, combine_queries, global_query
from .metrics import EditLocality, edit_locality

# Default thresholds of the query (edit.query): a channel must put at least RHO of its activation inside the
# part, and the selected channels of a layer may together put at most EPSILON (in channel units) outside it.
# Chosen on the shipped 64 px demo generator (layers of 32-64 channels, bench/demo_figures.py --sweep): rho 0.1
# moves the eyes, brows, nose and mouth furthest towards the reference while the rest of the face changes by a
# few CIELAB units; higher rho keeps the outside closer still but moves the small parts less. Layers of FFHQ's
# generator are 512 channels wide; a larger epsilon may suit it.
DEFAULT_RHO = 0.1
DEFAULT_EPSILON = 16.0
DEFAULT_TRUNCATION = 0.7
# The order in which a full-face transfer applies parts it knows; other named parts follow in catalog order.
PART_ORDER = ("eyes", "brows", "nose", "mouth", "skin", "hair", "background")
# Parts whose edit changes the whole picture rather than one region (the background's channels also carry the
# global colour and light of the face): left out of the default full-face progression, listed last elsewhere.
GLOBAL_PARTS = ("background",)

Face = int | torch.Tensor | Sequence[torch.Tensor]   # or a photo (see the module docstring)


# ---------------------------------------------------------------------------------------------------------
# Faces -> style vectors (the only place the mapping network runs)
# ---------------------------------------------------------------------------------------------------------

def _device_of(G) -> torch.device:
    try:
        return next(G.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def seeded_w_plus(G, n: int, seed: int, *, truncation: float = DEFAULT_TRUNCATION,
                  truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
    """W+ [n, n_latent, style_dim] of ``n`` faces drawn from one seed (z from a seeded CPU generator, so the
    faces are the same on every device)."""
    z = seeded_z(G, n, seed)
    if truncation < 1:
        truncation_latent = truncation_center(G, truncation_latent)
    return G.w_plus([z.to(_device_of(G))], truncation=truncation, truncation_latent=truncation_latent)


@torch.no_grad()
def face_styles(G, face: Face, *, truncation: float = DEFAULT_TRUNCATION,
                truncation_latent: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The style vectors (one [1, C_i] tensor per style layer) of one face.

    ``face`` is a seed (int: z drawn from it, mapped, truncated towards ``truncation_latent``), an explicit
    latent W ([style_dim] or [1, style_dim]) or W+ ([n_latent, style_dim] or [1, n_latent, style_dim]) used
    as it is, or a list of style vectors (one per style layer) used as they are.
    """
    device = _device_of(G)
    if hasattr(face, "w_plus") and hasattr(face, "generator"):     # an inverted photo (editing.photo.PhotoFace)
        face = face.w_plus
    if isinstance(face, bool):
        raise TypeError("a face is a seed (int), a W / W+ latent tensor or a list of style vectors, not a bool")
    if isinstance(face, int):
        if face < 0:
            raise ValueError(f"a face seed must be a non-negative int, got {face}")
        return G.style_vectors(seeded_w_plus(G, 1, face, truncation=truncation, truncation_latent=truncation_latent))
    if isinstance(face, torch.Tensor):
        w = face.to(device)
        if w.dim() in (1, 2) and w.shape[-1] == G.style_dim and (w.dim() == 1 or w.shape[0] == 1):
            w = w.reshape(1, G.style_dim)
        elif w.dim() == 2 and w.shape == (G.n_latent, G.style_dim):
            w = w[None]
        elif not (w.dim() == 3 and w.shape == (1, G.n_latent, G.style_dim)):
            raise ValueError(f"a face latent must be one W [{G.style_dim}] / [1, {G.style_dim}] or one W+ "
                             f"[{G.n_latent}, {G.style_dim}] / [1, {G.n_latent}, {G.style_dim}], got "
                             f"{tuple(face.shape)}")
        return G.style_vectors(G.w_plus([w], input_is_latent=True))
    if isinstance(face, (list, tuple)):
        styles = [torch.as_tensor(s).to(device) for s in face]
        if len(styles) != len(G.style_layers):
            raise ValueError(f"a face given as style vectors needs {len(G.style_layers)} of them (one per style "
                             f"layer), got {len(styles)}")
        out = []
        for s, layer in zip(styles, G.style_layers):
            s = s.reshape(1, -1) if s.dim() == 1 else s
            if s.shape != (1, layer.in_channels):
                raise ValueError(f"the style vector of {layer.name} must be [1, {layer.in_channels}], "
                                 f"got {tuple(s.shape)}")
            out.append(s)
        return out
    raise TypeError(f"a face is a seed (int), a W / W+ latent tensor or a list of style vectors, "
                    f"got {type(face).__name__}")


def ordered_parts(catalog: Catalog, parts: Iterable[str] | None = None, *, include_global: bool = True) -> list[str]:
    """The parts to apply: ``parts`` as given, or every named part of the catalog in ``PART_ORDER`` (parts
    it does not know follow in the order they were named, and ``GLOBAL_PARTS`` come last, or not at all
    without ``include_global``)."""
    if parts is not None:
        parts = list(parts)
        for p in parts:
            catalog.part_ids(p)                    # a clear KeyError for a part that was never named
        if len(set(parts)) != len(parts):
            raise ValueError(f"parts must not repeat, got {parts}")
        return parts
    if not catalog.parts:
        raise ValueError("the catalog has no named parts: name clusters first (catalog.set_parts or "
                         "segmenter.name_clusters)")
    known = [p for p in PART_ORDER if p in catalog.parts and p not in GLOBAL_PARTS]
    order = known + [p for p in catalog.parts if p not in known and p not in GLOBAL_PARTS]
    if include_global:
        order += [p for p in GLOBAL_PARTS if p in catalog.parts]
    return order


def _key(value) -> float | tuple | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return tuple(float(v) for v in value)


def _check_strength(part: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the strength of {part!r} must be in [0, 1], got {value}")
    return value


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Progression:
    """A full-face transfer. ``images`` [n_parts + 1, 3, H, W]: the target, then the target with the first
    part of the reference applied, the first two, ... (the last is the reference-featured target);
    ``joint``: every part applied in one blend; ``target``/``reference`` [1, 3, H, W]. Images in [-1, 1]."""

    parts: list[str]
    images: torch.Tensor
    joint: torch.Tensor
    target: torch.Tensor
    reference: torch.Tensor

    @property
    def labels(self) -> list[str]:
        return ["target"] + [f"+{p}" for p in self.parts]

    @property
    def result(self) -> torch.Tensor:
        """The reference-featured target [1, 3, H, W] (every part applied in sequence)."""
        return self.images[-1:]

    def row(self, *, joint: bool = True, reference: bool = True) -> tuple[torch.Tensor, list[str]]:
        """The images of one grid row and their column labels."""
        images, labels = [self.images], list(self.labels)
        if joint:
            images.append(self.joint)
            labels.append("joint")
        if reference:
            images.append(self.reference)
            labels.append("reference")
        return torch.cat(images), labels


def progression_grid(progressions: Progression | Sequence[Progression], *, joint: bool = True,
                     reference: bool = True, row_labels: Sequence[str] | None = None, padding: int = 2):
    """One row per pair: target, +part, ..., (joint), (reference), with column labels. A PIL image."""
    if isinstance(progressions, Progression):
        progressions = [progressions]
    if not progressions:
        raise ValueError("progression_grid: no progressions given")
    rows = [p.row(joint=joint, reference=reference) for p in progressions]
    widths = {len(labels) for _, labels in rows}
    if len(widths) != 1:
        raise ValueError("progression_grid: the progressions apply different numbers of parts; pass the same "
                         "parts to each")
    labels = rows[0][1]
    return image_grid([images for images, _ in rows], nrow=len(labels), padding=padding, col_labels=labels,
                      row_labels=row_labels)


# ---------------------------------------------------------------------------------------------------------
# The transfer itself
# ---------------------------------------------------------------------------------------------------------

class PartTransfer:
    """Move parts of a reference face onto a target face, re-running only the synthesis network.

    ``target``/``reference``: faces as :func:`face_styles` takes them (a seed, a W / W+ latent, or style
    vectors), or photos (see the module docstring; ``photo_options`` go to
    :func:`~colab_utils.editing.photo.photo_face`); ``rho``/``epsilon``: the query thresholds (one value, or one
    per style layer; ``epsilon=None`` for no limit); ``truncation`` applies to faces given by seed. The style
    vectors of both faces are computed here and when a face changes (:meth:`set_target`, :meth:`set_reference`),
    never during an edit. ``G`` is the generator the edits are drawn with: the one passed in, or the tuned copy
    of a photo target.
    """

    def __init__(self, G, catalog: Catalog, target: Face = 0, reference: Face = 1, *,
                 rho: float | Sequence[float] = DEFAULT_RHO, epsilon: float | Sequence[float] | None = DEFAULT_EPSILON,
                 truncation: float = DEFAULT_TRUNCATION, truncation_latent: torch.Tensor | None = None,
                 photo_options: Mapping | None = None):
        catalog.check_generator(G)
        self.G, self.catalog = G, catalog
        self.base_G = G
        self.photo_options = dict(photo_options or {})
        self.reference_face: Face | None = None
        self.truncation = float(truncation)
        self.truncation_latent = truncation_latent
        if self.truncation < 1:  # the loaded file's latent_avg by default
            self.truncation_latent = truncation_center(G, truncation_latent)
        self._queries: dict[tuple, list[torch.Tensor]] = {}
        self.set_thresholds(rho, epsilon)
        self.set_target(target)
        self.set_reference(reference)

    # -- inputs ----------------------------------------------------------------------------------------------
    def styles_of(self, face: Face) -> list[torch.Tensor]:
        return face_styles(self.G, face, truncation=self.truncation, truncation_latent=self.truncation_latent)

    def as_face(self, face):
        """A photo source (path, PIL image, array, upload) aligned and inverted into a ``PhotoFace`` (once: the
        inversion is cached); any other face as it is."""
        from .photo import is_photo_source, photo_face

        if is_photo_source(face):
            return photo_face(self.base_G, face, **self.photo_options)
        return face

    def set_target(self, face: Face) -> None:
        face = self.as_face(face)
        G = getattr(face, "generator", None) if hasattr(face, "w_plus") else None
        G = self.base_G if G is None else G
        if G is not self.G:
            self.catalog.check_generator(G)
            self.G = G
            if self.reference_face is not None:      # the reference is drawn through the same generator
                self.reference_styles = self.styles_of(self.reference_face)
        self.target_face = face
        self.target_styles = self.styles_of(face)

    def set_reference(self, face: Face) -> None:
        face = self.as_face(face)
        self.reference_face = face
        self.reference_styles = self.styles_of(face)

    def set_thresholds(self, rho: float | Sequence[float] | None = None,
                       epsilon: float | Sequence[float] | None | str = "keep") -> None:
        """Change rho and/or epsilon (``epsilon=None`` means no limit; leave it out to keep it)."""
        if rho is not None:
            self.rho = rho
        if epsilon != "keep":
            self.epsilon = epsilon

    # -- queries and blends -----------------------------------------------------------------------------------
    def query(self, part: str) -> list[torch.Tensor]:
        """q for ``part`` at the current thresholds (cached), on the generator's device."""
        key = (part, _key(self.rho), _key(self.epsilon))
        if key not in self._queries:
            device = self.target_styles[0].device
            q = self.catalog.query(part, rho=self.rho, epsilon=self.epsilon)
            self._queries[key] = [x.to(device) for x in q]
        return self._queries[key]

    def blend(self, strengths: Mapping[str, float]) -> list[torch.Tensor]:
        """Styles with every part of ``strengths`` (part -> lambda in [0, 1]) applied jointly: per channel the
        largest ``lambda_p * q_p`` over the parts (``edit.combine_queries``). All zero returns the target."""
        if not strengths:
            return list(self.target_styles)
        parts = list(strengths)
        values = [_check_strength(p, strengths[p]) for p in parts]
        q = combine_queries([self.query(p) for p in parts], values)
        return blend_styles(self.target_styles, self.reference_styles, q, 1.0)

    def sequence(self, parts: Sequence[str], strength: float = 1.0) -> list[list[torch.Tensor]]:
        """Styles after each step of applying ``parts`` one after another (cumulative): ``[target, +p1,
        +p1+p2, ...]``. Each step blends the previous step's styles towards the reference with that part's q."""
        strength = _check_strength("every part", strength)
        steps = [list(self.target_styles)]
        for part in parts:
            steps.append(blend_styles(steps[-1], self.reference_styles, self.query(part), strength))
        return steps

    # -- rendering: the synthesis network only ----------------------------------------------------------------
    @torch.no_grad()
    def render(self, styles: Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]], *,
               batch_size: int = 8) -> torch.Tensor:
        """Images [B, 3, H, W] of one style list or of several (rendered together, ``batch_size`` at a time)
        with the generator's fixed noise."""
        many = [styles] if isinstance(styles[0], torch.Tensor) else list(styles)
        out = []
        for start in range(0, len(many), batch_size):
            chunk = many[start:start + batch_size]
            stacked = [torch.cat(layer) for layer in zip(*chunk)]
            out.append(self.G.synthesis(stacked, randomize_noise=False).float())
        return torch.cat(out)

    def progression(self, parts: Iterable[str] | None = None, strength: float = 1.0) -> Progression:
        """The full-face transfer: every part in turn (cumulative) and all parts jointly, in one batch. By
        default every named part except ``GLOBAL_PARTS`` (the background), which would swap the whole face."""
        parts = ordered_parts(self.catalog, parts, include_global=False)
        steps = self.sequence(parts, strength)
        joint = self.blend({p: strength for p in parts})
        images = self.render(steps + [joint, self.reference_styles])
        n = len(steps)
        return Progression(parts, images[:n], images[n:n + 1], images[:1], images[n + 1:n + 2])

    @torch.no_grad()
    def cluster_maps(self) -> torch.Tensor:
        """The catalog's cluster maps [2, h, w] of the target and the reference."""
        styles = [torch.cat(pair) for pair in zip(self.target_styles, self.reference_styles)]
        _, acts = self.G.synthesis(styles, randomize_noise=False, return_activations=True)
        return self.catalog.assign(acts[self.catalog.cluster_layer])

    @torch.no_grad()
    def locality(self, parts: Iterable[str] | None = None, strength: float = 1.0, *, space: str = "lab",
                 batch_size: int = 8) -> dict[str, EditLocality]:
        """How local each single-part edit is, against the paper's two baselines, as rows for
        ``metrics.locality_table``: ``"<part> / ours"``, ``"<part> / global mixing"`` (every channel of the
        layers the part's q touches: ``edit.global_query``), ``"<part> / pixel blend"`` (the reference's part
        pasted into the target with a soft mask) and ``"<part> / no edit"`` (the target itself: how far apart
        the two faces are to begin with).

        The part's mask is where the catalog's cluster maps put the part in the target *or* the reference, so
        the error inside it is against the reference and outside it against the target for every method.
        Pixel blending matches this measure by construction (it is a lower bound, blind to how the pasted
        part fits the face); the question is how close the style edits come to it.
        """
        parts = ordered_parts(self.catalog, parts)
        strength = _check_strength("every part", strength)
        edits = []
        for part in parts:
            q = self.query(part)
            edits.append(blend_styles(self.target_styles, self.reference_styles, q, strength))
            edits.append(blend_styles(self.target_styles, self.reference_styles, global_query(q), strength))
        images = self.render([list(self.target_styles), list(self.reference_styles)] + edits, batch_size=batch_size)
        target, reference, edited = images[:1], images[1:2], images[2:]
        labels = self.cluster_maps()
        rows: dict[str, EditLocality] = {}
        for i, part in enumerate(parts):
            masks = self.catalog.part_mask(labels, part)                     # [2, h, w]: target, reference
            union = (masks[0] | masks[1])[None]
            soft = F.interpolate(masks[1:2, None].float(), size=target.shape[-2:], mode="bilinear",
                                 align_corners=False)
            pasted = torch.lerp(target, reference, soft * strength)
            for label, image in (("ours", edited[2 * i:2 * i + 1]), ("global mixing", edited[2 * i + 1:2 * i + 2]),
                                 ("pixel blend", pasted), ("no edit", target)):
                rows[f"{part} / {label}"] = edit_locality(image, target, reference, union, space=space)
        return rows


# ---------------------------------------------------------------------------------------------------------
# One-call helpers
# ---------------------------------------------------------------------------------------------------------

def full_face_transfer(G, catalog: Catalog, target: Face, reference: Face, *, parts: Iterable[str] | None = None,
                       strength: float = 1.0, **transfer_options) -> Progression:
    """Apply every named part of ``reference`` onto ``target`` in turn; see :meth:`PartTransfer.progression`.
    ``transfer_options`` go to :class:`PartTransfer` (``rho``, ``epsilon``, ``truncation``...)."""
    return PartTransfer(G, catalog, target, reference, **transfer_options).progression(parts, strength)


def locality_report(G, catalog: Catalog, pairs: Sequence[tuple[Face, Face]], *, parts: Iterable[str] | None = None,
                    strength: float = 1.0, space: str = "lab", **transfer_options) -> dict[str, EditLocality]:
    """Locality rows (:meth:`PartTransfer.locality`) averaged over several (target, reference) pairs: each
    error is the mean over the pairs of that pair's error (pairs where a part is absent are skipped)."""
    if not pairs:
        raise ValueError("locality_report: no pairs given")
    reports = [transfer.locality(parts, strength, space=space)
               for transfer in each_pair(G, catalog, pairs, **transfer_options)]
    return mean_locality(reports)


def each_pair(G, catalog: Catalog, pairs: Iterable[tuple[Face, Face]], **transfer_options) -> Iterator[PartTransfer]:
    """One :class:`PartTransfer` set in turn to each (target, reference) pair: built once, then re-pointed,
    so the generator and catalog are prepared a single time."""
    transfer = None
    for target, reference in pairs:
        if transfer is None:
            transfer = PartTransfer(G, catalog, target, reference, **transfer_options)
        else:
            transfer.set_target(target)
            transfer.set_reference(reference)
        yield transfer


def mean_locality(reports: Sequence[Mapping[str, EditLocality]]) -> dict[str, EditLocality]:
    """Average locality rows over reports with the same row labels (NaN entries are left out)."""
    if not reports:
        raise ValueError("mean_locality: no reports given")
    out = {}
    for label in reports[0]:
        rows = [r[label] for r in reports if label in r]

        def mean(values: list[float]) -> float:
            finite = [v for v in values if v == v]
            return sum(finite) / len(finite) if finite else float("nan")

        out[label] = EditLocality(mean([r.inside_vs_reference for r in rows]), mean([r.outside_vs_target for r in rows]),
                                  mean([r.part_fraction for r in rows]), rows[0].space)
    return out
