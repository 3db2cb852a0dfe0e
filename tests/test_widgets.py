"""colab_utils.widgets: the FaceEditor driven without a browser, its ipywidgets front end, the naming form."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils import widgets
from colab_utils.editing import build_catalog
from colab_utils.stylegan2.model import Generator
from colab_utils.viz import to_uint8
from colab_utils.widgets import FaceEditor, cluster_naming_form, editor_widget

ipywidgets = pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(1)
    G = Generator(32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 8}).eval()
    catalog = build_catalog(G, n_samples=8, layer_resolution=32, k=4, seed=0, batch_size=8, progress=False)
    catalog.set_parts({"eyes": [0], "nose": [1], "mouth": [2, 3]})
    return G, catalog


@pytest.fixture
def counter(setup, monkeypatch):
    """Counts synthesis passes, mapping-network calls and affine style maps of the shared generator."""
    G, _ = setup
    counts = {"synthesis": 0, "mapping": 0, "affine": 0}
    real = G.synthesis

    def synthesis(*args, **kwargs):
        counts["synthesis"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(G, "synthesis", synthesis)

    def bump(name):
        return lambda *args: counts.__setitem__(name, counts[name] + 1)

    handles = [G.style.register_forward_hook(bump("mapping"))]
    handles += [G._modulated(layer.name).modulation.register_forward_hook(bump("affine")) for layer in G.style_layers]
    yield counts
    for h in handles:
        h.remove()


def test_editor_exact_ends(setup):
    G, catalog = setup
    editor = FaceEditor(G, catalog, target=3, reference=4)
    target, reference = editor.sources()[:1], editor.sources()[1:]
    alone = editor.transfer.render(editor.transfer.target_styles)
    assert torch.equal(editor.image, alone)                           # all sliders at 0: the target
    loose = FaceEditor(G, catalog, target=3, reference=4, rho=0.0, epsilon=None, strengths={"mouth": 1.0})
    assert torch.equal(loose.image, loose.transfer.render(loose.transfer.reference_styles))   # q = 1, lambda = 1
    assert torch.allclose(alone, target, atol=1e-5) and not torch.allclose(target, reference, atol=1e-3)


def test_slider_update_is_one_synthesis_pass_and_no_mapping(setup, counter):
    G, catalog = setup
    editor = FaceEditor(G, catalog, target=0, reference=1)
    seen = []
    editor.observe(seen.append)
    for name in counter:
        counter[name] = 0
    before = editor.image.clone()
    image = editor.set_strength("eyes", 1.0)
    assert counter == {"synthesis": 1, "mapping": 0, "affine": 0}
    assert not torch.equal(image, before) and image is editor.image and seen == [image]
    editor.set_rho(0.3)
    editor.set_epsilon(None)
    editor.update(strengths={"nose": 0.5, "mouth": 0.25})
    assert counter == {"synthesis": 4, "mapping": 0, "affine": 0}
    assert editor.strengths == {"eyes": 1.0, "nose": 0.5, "mouth": 0.25} and editor.epsilon is None
    editor.set_target(7)                          # a new face: mapped once, then one synthesis pass
    assert counter["mapping"] == 1 and counter["synthesis"] == 5
    editor.set_reference(torch.zeros(G.style_dim))  # an explicit W
    assert counter["mapping"] == 1 and editor.reference_label == "(latent)"
    with pytest.raises(KeyError, match="no slider for part 'ears'"):
        editor.set_strength("ears", 0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        editor.set_strength("eyes", 1.5)
    with pytest.raises(ValueError, match="epsilon"):
        editor.set_epsilon(-1.0)
    with pytest.raises(ValueError, match="rho"):
        editor.set_rho(2.0)


def test_strengths_move_the_picture_towards_the_reference(setup):
    G, catalog = setup
    editor = FaceEditor(G, catalog, target=0, reference=1, rho=0.0, epsilon=None)
    reference = editor.transfer.render(editor.transfer.reference_styles)
    distances = [float((editor.set_strength("eyes", v) - reference).abs().mean()) for v in (0.0, 0.5, 1.0)]
    assert distances[0] > distances[1] > distances[2] == 0.0


def test_save_png(setup, tmp_path):
    G, catalog = setup
    editor = FaceEditor(G, catalog, target=0, reference=1, strengths={"eyes": 1.0})
    path = editor.save_png(tmp_path / "out" / "edit.png")
    with Image.open(path) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), to_uint8(editor.image)[0])
    wide = Image.open(editor.save_png(tmp_path / "panel.png", with_sources=True))
    assert wide.width > 3 * 32
    big = editor.to_pil(min_side=100)                    # enlarged by a whole factor: 4 x 32 px
    assert big.size == (128, 128) and np.array_equal(np.asarray(big)[::4, ::4], to_uint8(editor.image)[0])
    with pytest.raises(ValueError, match=".png"):
        editor.save_png(tmp_path / "edit.jpg")


def test_widget_front_end_updates_the_image(setup, counter, tmp_path):
    G, catalog = setup
    editor = FaceEditor(G, catalog, target=0, reference=1)
    ui = editor_widget(editor, save_dir=tmp_path)
    assert isinstance(ui.widget, ipywidgets.VBox)
    assert set(ui.sliders) == {"eyes", "nose", "mouth"}
    assert all(s.continuous_update is False for s in [*ui.sliders.values(), ui.rho])
    assert ui.target.value == 0 and ui.reference.value == 1
    first = ui.image.value
    counter["synthesis"] = counter["mapping"] = 0
    ui.sliders["mouth"].value = 1.0                                 # what a slider release does
    assert counter["synthesis"] == 1 and counter["mapping"] == 0
    assert editor.strengths["mouth"] == 1.0 and ui.image.value != first
    assert ui.image.value == editor.png_bytes(with_sources=True, min_side=256)
    ui.rho.value = 0.2
    assert editor.rho == 0.2
    ui.unlimited.value = True
    assert editor.epsilon is None
    ui.unlimited.value = False
    ui.epsilon.value = 2.5
    assert editor.epsilon == 2.5
    ui.target.value = 5
    assert editor.target_label == "seed 5"
    ui.save_button.click()
    assert (tmp_path / "edit.png").is_file() and "saved" in ui.status.value
    ui.path.value = str(tmp_path / "bad.gif")
    ui.save_button.click()
    assert ui.status.value.startswith("could not save")


def test_naming_form_writes_into_the_catalog(setup):
    _, catalog = setup
    saved = dict(catalog.parts)
    try:
        form = cluster_naming_form(catalog, thumbnails=[Image.new("RGB", (8, 8))] * catalog.k)
        assert [d.value for d in form.dropdowns] == ["eyes", "nose", "mouth", "mouth"]   # pre-filled
        form.dropdowns[0].value = "hair"
        form.dropdowns[1].value = ""
        form.apply_button.click()
        assert catalog.parts == {"hair": [0], "mouth": [2, 3]}
        assert "hair [0]" in form.status.value
        for d in form.dropdowns:
            d.value = ""
        assert form.apply() == {} and catalog.parts == {"hair": [0], "mouth": [2, 3]}
        with pytest.raises(ValueError, match="thumbnails"):
            cluster_naming_form(catalog, thumbnails=[b""])
    finally:
        catalog.set_parts(saved)


def test_colab_widget_manager_is_only_enabled_in_colab(monkeypatch):
    monkeypatch.setattr(widgets.runtime, "in_colab", lambda: False)
    assert widgets.enable_colab_widgets() is False
