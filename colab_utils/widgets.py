"""Live local editing: a plain :class:`FaceEditor` and its ipywidgets front end, plus a cluster-naming form.

Collins et al., "Editing in Style: Uncovering the Local Semantics of GANs" (CVPR 2020): sliders move each
part of a reference face onto a target face. All the logic lives in :class:`FaceEditor`, a plain class (tests
and scripts drive it without a browser); :func:`editor_widget` only wires ipywidgets controls to it. The two
faces are mapped to style vectors once, so one slider change costs one pass of the synthesis network.

Works with ipywidgets 7.7 (Colab) and 8.x; in Colab the custom widget manager is switched on when available.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image

from colab_utils import runtime
from colab_utils.data.synthetic import PARTS
from colab_utils.editing.catalog import Catalog
from colab_utils.editing.transfer import (DEFAULT_EPSILON, DEFAULT_RHO, DEFAULT_TRUNCATION, Face, PartTransfer,
                                          ordered_parts)
from colab_utils.viz import image_grid, to_uint8


class FaceEditor:
    """Per-part strengths of a reference face applied to a target face, re-rendered on every change.

    ``target``/``reference``: a seed, a W / W+ latent or a list of style vectors (see
    ``editing.transfer.face_styles``), or a photo (path, PIL image, array, upload, or an inverted
    ``editing.photo.PhotoFace``; ``photo_options`` go to ``editing.photo.photo_face``); ``parts``: the sliders (default: every named part of the catalog);
    ``strengths``: initial values in [0, 1] (default 0, i.e. the target); ``rho``/``epsilon``: the query
    thresholds. Every setter renders once and returns the new image [1, 3, H, W] in [-1, 1]; listeners added
    with :meth:`observe` receive it too.
    """

    def __init__(self, G, catalog: Catalog, target: Face = 0, reference: Face = 1, *,
                 parts: Iterable[str] | None = None, strengths: Mapping[str, float] | None = None,
                 rho: float | Sequence[float] = DEFAULT_RHO, epsilon: float | Sequence[float] | None = DEFAULT_EPSILON,
                 truncation: float = DEFAULT_TRUNCATION, truncation_latent: torch.Tensor | None = None,
                 photo_options: Mapping | None = None):
        self.transfer = PartTransfer(G, catalog, target, reference, rho=rho, epsilon=epsilon, truncation=truncation,
                                     truncation_latent=truncation_latent, photo_options=photo_options)
        self.parts = ordered_parts(catalog, parts)
        self.strengths = {p: 0.0 for p in self.parts}
        self._listeners: list[Callable[[torch.Tensor], None]] = []
        self._sources: torch.Tensor | None = None          # target and reference images, rendered on demand
        self.image: torch.Tensor
        self.target_label, self.reference_label = _describe(target), _describe(reference)
        if strengths:
            self._update_strengths(strengths)
        self.render()

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def rho(self):
        return self.transfer.rho

    @property
    def epsilon(self):
        return self.transfer.epsilon

    def _update_strengths(self, strengths: Mapping[str, float]) -> None:
        for part, value in strengths.items():
            if part not in self.strengths:
                raise KeyError(f"FaceEditor: no slider for part {part!r}; sliders: {', '.join(self.parts)}")
            value = float(value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaceEditor: the strength of {part!r} must be in [0, 1], got {value}")
            self.strengths[part] = value

    def set_strength(self, part: str, value: float) -> torch.Tensor:
        """Move one slider."""
        return self.update(strengths={part: value})

    def set_rho(self, rho: float | Sequence[float]) -> torch.Tensor:
        return self.update(rho=rho)

    def set_epsilon(self, epsilon: float | Sequence[float] | None) -> torch.Tensor:
        """``None`` lifts the limit (every channel of a layer may be taken)."""
        return self.update(epsilon=epsilon)

    def set_target(self, face: Face) -> torch.Tensor:
        """A new target face (its style vectors are computed now, once)."""
        return self.update(target=face)

    def set_reference(self, face: Face) -> torch.Tensor:
        return self.update(reference=face)

    _KEEP = object()

    def update(self, *, strengths: Mapping[str, float] | None = None, rho=_KEEP, epsilon=_KEEP, target=_KEEP,
               reference=_KEEP) -> torch.Tensor:
        """Change several things at once and render once."""
        if rho is not self._KEEP:
            _check_rho(rho)
            self.transfer.set_thresholds(rho=rho)
        if epsilon is not self._KEEP:
            _check_epsilon(epsilon)
            self.transfer.set_thresholds(epsilon=epsilon)
        if target is not self._KEEP:
            self.transfer.set_target(target)
            self.target_label, self._sources = _describe(target), None
        if reference is not self._KEEP:
            self.transfer.set_reference(reference)
            self.reference_label, self._sources = _describe(reference), None
        if strengths:
            self._update_strengths(strengths)
        return self.render()

    # -- rendering --------------------------------------------------------------------------------------------
    def styles(self) -> list[torch.Tensor]:
        """The edited style vectors for the current settings."""
        active = {p: v for p, v in self.strengths.items() if v > 0}
        return self.transfer.blend(active)

    def render(self) -> torch.Tensor:
        """One synthesis pass with the current settings; stores and returns the image [1, 3, H, W]."""
        self.image = self.transfer.render(self.styles())
        for listener in list(self._listeners):
            listener(self.image)
        return self.image

    def observe(self, callback: Callable[[torch.Tensor], None]) -> None:
        """Call ``callback(image)`` after every render."""
        self._listeners.append(callback)

    def sources(self) -> torch.Tensor:
        """The target and reference images [2, 3, H, W] (rendered once per face)."""
        if self._sources is None:
            self._sources = self.transfer.render([list(self.transfer.target_styles),
                                                  list(self.transfer.reference_styles)])
        return self._sources

    def to_pil(self, *, with_sources: bool = False, min_side: int | None = None) -> Image.Image:
        """The edited face, or target | edited | reference side by side; ``min_side`` enlarges small faces
        (by a whole factor, nearest neighbour) so that each is at least that many pixels high."""
        images = [self.image] if not with_sources else [self.sources()[:1], self.image, self.sources()[1:]]
        tiles = to_uint8(torch.cat(images))
        if min_side is not None and tiles.shape[1] < min_side:
            factor = -(-min_side // tiles.shape[1])
            tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
        if not with_sources:
            return Image.fromarray(tiles[0])
        return image_grid(list(tiles), nrow=3, padding=2, col_labels=["target", "edited", "reference"])

    def png_bytes(self, *, with_sources: bool = False, min_side: int | None = None) -> bytes:
        buf = io.BytesIO()
        self.to_pil(with_sources=with_sources, min_side=min_side).save(buf, format="PNG")
        return buf.getvalue()

    def save_png(self, path: str | os.PathLike, *, with_sources: bool = False) -> Path:
        """Write the current image as a PNG (folders are created). Returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ValueError(f"save_png: {path} should end in .png")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_pil(with_sources=with_sources).save(path, format="PNG")
        return path

    def __repr__(self) -> str:
        sliders = ", ".join(f"{p}={v:g}" for p, v in self.strengths.items())
        return (f"FaceEditor(target {self.target_label}, reference {self.reference_label}, rho={self.rho}, "
                f"epsilon={self.epsilon}, {sliders})")


def _describe(face: Face) -> str:
    if hasattr(face, "w_plus") and hasattr(face, "generator"):
        return f"photo {getattr(face, 'name', '')}".strip()
    if isinstance(face, (str, os.PathLike)):
        return f"photo {face}"
    if isinstance(face, (list, tuple)) or isinstance(face, torch.Tensor):
        return "(latent)" if isinstance(face, torch.Tensor) else "(styles)"
    return f"seed {face}" if isinstance(face, int) else "(photo)"


def _check_rho(rho) -> None:
    values = [rho] if isinstance(rho, (int, float)) else list(rho)
    if any(not 0.0 <= float(v) <= 1.0 for v in values):
        raise ValueError(f"rho must be in [0, 1] (a share of a channel's activation), got {rho}")


def _check_epsilon(epsilon) -> None:
    if epsilon is None:
        return
    values = [epsilon] if isinstance(epsilon, (int, float)) else list(epsilon)
    if any(v is not None and float(v) < 0 for v in values):
        raise ValueError(f"epsilon must be >= 0 or None (no limit), got {epsilon}")


# ---------------------------------------------------------------------------------------------------------
# ipywidgets front ends
# ---------------------------------------------------------------------------------------------------------

def enable_colab_widgets() -> bool:
    """In Colab, switch on the custom widget manager (needed by ipywidgets 8); elsewhere do nothing.
    Returns whether it was switched on."""
    if not runtime.in_colab():
        return False
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return False
    enable = getattr(output, "enable_custom_widget_manager", None)
    if enable is None:
        return False
    enable()
    return True


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("the sliders need ipywidgets (pip install 'ipywidgets>=7.7')") from err
    return ipywidgets


class _Displayable:
    """Shows ``self.widget`` when the object is the last expression of a notebook cell."""

    widget = None

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class EditorWidget(_Displayable):
    """The controls of :func:`editor_widget`: ``target``/``reference`` seed pickers, one slider per part
    (``sliders``), ``rho`` and ``epsilon`` (``unlimited`` lifts epsilon), the live ``image``, ``path`` and
    ``save_button``, a ``status`` line; ``widget`` is the whole box to display."""

    def __init__(self, editor: FaceEditor, *, save_dir: str | os.PathLike | None = None, with_sources: bool = True,
                 display_size: int = 256, slider_step: float = 0.05):
        w = _ipywidgets()
        enable_colab_widgets()
        self.editor, self.with_sources, self.display_size = editor, with_sources, display_size
        wide = {"description_width": "initial"}
        layout = w.Layout(width="320px")

        def seed_picker(label: str, face_label: str) -> object:
            start = int(face_label.split()[-1]) if face_label.startswith("seed ") else 0
            return w.BoundedIntText(value=start, min=0, max=2**31 - 1, description=label, style=wide,
                                    layout=w.Layout(width="200px"))

        self.target = seed_picker("target seed", editor.target_label)
        self.reference = seed_picker("reference seed", editor.reference_label)
        self.sliders = {p: w.FloatSlider(value=editor.strengths[p], min=0.0, max=1.0, step=slider_step,
                                         description=p, continuous_update=False, readout_format=".2f", style=wide,
                                         layout=layout)
                        for p in editor.parts}
        rho = editor.rho if isinstance(editor.rho, (int, float)) else DEFAULT_RHO
        eps = editor.epsilon if isinstance(editor.epsilon, (int, float)) else DEFAULT_EPSILON
        self.rho = w.FloatSlider(value=rho, min=0.0, max=1.0, step=0.01, description="rho", continuous_update=False,
                                 readout_format=".2f", style=wide, layout=layout)
        self.epsilon = w.BoundedFloatText(value=eps, min=0.0, max=1e6, step=0.25, description="epsilon",
                                          style=wide, layout=w.Layout(width="200px"))
        self.unlimited = w.Checkbox(value=editor.epsilon is None, description="no epsilon limit")
        self.image = w.Image(value=self._png(), format="png")
        folder = Path(save_dir) if save_dir is not None else runtime.output_dir("edits")
        self.path = w.Text(value=str(folder / "edit.png"), description="file", style=wide,
                           layout=w.Layout(width="420px"))
        self.save_button = w.Button(description="save PNG", icon="save")
        self.status = w.Label(value=repr(editor))

        self.target.observe(lambda change: self._run(self.editor.set_target, int(change["new"])), names="value")
        self.reference.observe(lambda change: self._run(self.editor.set_reference, int(change["new"])), names="value")
        for part, slider in self.sliders.items():
            slider.observe(lambda change, part=part: self._run(self.editor.set_strength, part, change["new"]),
                           names="value")
        self.rho.observe(lambda change: self._run(self.editor.set_rho, change["new"]), names="value")
        self.epsilon.observe(lambda change: self._epsilon_changed(), names="value")
        self.unlimited.observe(lambda change: self._epsilon_changed(), names="value")
        self.save_button.on_click(lambda button: self.save())
        editor.observe(lambda image: self._refresh())

        controls = w.VBox([w.HBox([self.target, self.reference]), *self.sliders.values(), self.rho,
                           w.HBox([self.epsilon, self.unlimited]), w.HBox([self.path, self.save_button]), self.status])
        self.widget = w.VBox([self.image, controls])

    def _run(self, fn, *args) -> None:
        try:
            fn(*args)
        except (ValueError, KeyError, TypeError) as err:
            self.status.value = f"error: {err}"

    def _epsilon_changed(self) -> None:
        self._run(self.editor.set_epsilon, None if self.unlimited.value else float(self.epsilon.value))

    def _png(self) -> bytes:
        return self.editor.png_bytes(with_sources=self.with_sources, min_side=self.display_size)

    def _refresh(self) -> None:
        self.image.value = self._png()
        self.status.value = repr(self.editor)

    def save(self) -> Path | None:
        """Save the current picture to the path in the ``path`` box (what the button does)."""
        try:
            path = self.editor.save_png(self.path.value, with_sources=self.with_sources)
        except (OSError, ValueError) as err:
            self.status.value = f"could not save: {err}"
            return None
        self.status.value = f"saved {path}"
        return path


def editor_widget(editor: FaceEditor, *, save_dir: str | os.PathLike | None = None, with_sources: bool = True,
                  display_size: int = 256) -> EditorWidget:
    """ipywidgets sliders for ``editor``: display the result (``display(ui.widget)`` or leave it last in a
    cell). Sliders update on release (``continuous_update=False``): one synthesis pass per change. Small
    faces are shown enlarged to ``display_size`` pixels; "save PNG" writes them at the generator's size."""
    return EditorWidget(editor, save_dir=save_dir, with_sources=with_sources, display_size=display_size)


class NamingForm(_Displayable):
    """A dropdown per cluster (``dropdowns``) choosing its part, an ``apply_button`` that writes the choice
    into the catalog (``Catalog.set_parts``), a ``status`` line; ``widget`` is the box to display."""

    UNNAMED = "(not a part)"

    def __init__(self, catalog: Catalog, *, part_names: Sequence[str] = PARTS,
                 suggested: Mapping[str, Iterable[int]] | None = None,
                 thumbnails: Sequence[Image.Image | bytes] | None = None):
        w = _ipywidgets()
        enable_colab_widgets()
        self.catalog = catalog
        current = {c: name for name, ids in (suggested if suggested is not None else catalog.parts).items()
                   for c in ids}
        names = list(dict.fromkeys([*part_names, *catalog.parts, *current.values()]))
        options = [(self.UNNAMED, "")] + [(n, n) for n in names]
        if thumbnails is not None and len(thumbnails) != catalog.k:
            raise ValueError(f"NamingForm: {len(thumbnails)} thumbnails for {catalog.k} clusters")
        self.dropdowns = [w.Dropdown(options=options, value=current.get(c, ""), description=f"cluster {c}",
                                     layout=w.Layout(width="260px")) for c in range(catalog.k)]
        rows = []
        for c, dropdown in enumerate(self.dropdowns):
            if thumbnails is not None:
                rows.append(w.HBox([w.Image(value=_png(thumbnails[c]), format="png"), dropdown]))
            else:
                rows.append(dropdown)
        self.apply_button = w.Button(description="use these names", button_style="primary")
        self.status = w.Label(value="")
        self.apply_button.on_click(lambda button: self.apply())
        self.widget = w.VBox([*rows, self.apply_button, self.status])

    def parts(self) -> dict[str, list[int]]:
        """Part name -> cluster ids, from the dropdowns."""
        parts: dict[str, list[int]] = {}
        for c, dropdown in enumerate(self.dropdowns):
            if dropdown.value:
                parts.setdefault(dropdown.value, []).append(c)
        return parts

    def apply(self) -> dict[str, list[int]]:
        parts = self.parts()
        if not parts:
            self.status.value = "name at least one cluster"
            return parts
        self.catalog.set_parts(parts)
        self.status.value = "parts: " + "; ".join(f"{p} {ids}" for p, ids in parts.items())
        return parts


def _png(image: Image.Image | bytes) -> bytes:
    if isinstance(image, bytes):
        return image
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def cluster_naming_form(catalog: Catalog, *, part_names: Sequence[str] = PARTS,
                        suggested: Mapping[str, Iterable[int]] | None = None,
                        thumbnails: Sequence[Image.Image | bytes] | None = None) -> NamingForm:
    """A form to name the catalog's clusters: one dropdown per cluster (pre-filled from ``suggested``, e.g. a
    ``segmenter.name_clusters`` result's ``parts``, or the catalog's current names), optional thumbnails (one
    picture per cluster, e.g. rows of ``segmenter.cluster_heatmap_grid``), and a button that calls
    ``catalog.set_parts``."""
    return NamingForm(catalog, part_names=part_names, suggested=suggested, thumbnails=thumbnails)
