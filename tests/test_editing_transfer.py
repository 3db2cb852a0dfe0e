"""colab_utils.editing.transfer: faces to styles, exact ends of the blend, progression order, cached styles,
locality against the baselines (on a tiny random StyleGAN2; the trained-generator checks are in
test_editing_segmenter.py)."""
from __future__ import annotations

import math

import pytest
import torch

from colab_utils.editing import (Catalog, EditLocality, PartTransfer, build_catalog, face_styles,
                                 full_face_transfer, locality_report, mean_locality, ordered_parts, progression_grid,
                                 seeded_w_plus)
from colab_utils.stylegan2.model import Generator


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    G = Generator(32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 8}).eval()
    catalog = build_catalog(G, n_samples=8, layer_resolution=32, k=5, seed=0, batch_size=8, progress=False)
    # named out of PART_ORDER on purpose, plus a part that order does not know
    catalog.set_parts({"mouth": [2], "spot": [4], "eyes": [0], "nose": [1]})
    return G, catalog


class Counter:
    """Counts calls of the synthesis network, the mapping network and the affine style maps of a G."""

    def __init__(self, G, monkeypatch):
        self.synthesis = self.mapping = self.affine = 0
        real = G.synthesis

        def synthesis(*args, **kwargs):
            self.synthesis += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(G, "synthesis", synthesis)
        self.handles = [G.style.register_forward_hook(lambda *a: self._bump("mapping"))]
        self.handles += [G._modulated(layer.name).modulation.register_forward_hook(lambda *a: self._bump("affine"))
                         for layer in G.style_layers]

    def _bump(self, name):
        setattr(self, name, getattr(self, name) + 1)

    def close(self):
        for h in self.handles:
            h.remove()


def test_face_styles_from_seed_latent_and_styles(setup):
    G, _ = setup
    w_mean = torch.zeros(1, G.style_dim)
    by_seed = face_styles(G, 3, truncation=0.5, truncation_latent=w_mean)
    w_plus = seeded_w_plus(G, 1, 3, truncation=0.5, truncation_latent=w_mean)
    assert all(torch.equal(a, b) for a, b in zip(by_seed, G.style_vectors(w_plus)))
    assert all(torch.equal(a, b) for a, b in zip(face_styles(G, w_plus), by_seed))          # W+ as given
    assert all(torch.equal(a, b) for a, b in zip(face_styles(G, w_plus[0]), by_seed))       # [n_latent, dim]
    w = torch.randn(G.style_dim)
    assert all(torch.equal(a, b) for a, b in zip(face_styles(G, w), G.style_vectors(w[None])))
    assert all(torch.equal(a, b) for a, b in zip(face_styles(G, by_seed), by_seed))        # styles as given
    with pytest.raises(ValueError, match="W\\+"):
        face_styles(G, torch.randn(2, G.style_dim))
    with pytest.raises(ValueError, match="one per style"):
        face_styles(G, by_seed[:-1])
    with pytest.raises(ValueError, match="must be \\[1, "):
        face_styles(G, [s.repeat(2, 1) for s in by_seed])
    with pytest.raises(TypeError, match="bool"):
        face_styles(G, True)
    with pytest.raises(ValueError, match="non-negative"):
        face_styles(G, -1)


def test_strength_zero_returns_the_target_exactly(setup):
    G, catalog = setup
    transfer = PartTransfer(G, catalog, 0, 1)
    styles = transfer.blend({"eyes": 0.0, "nose": 0.0})
    assert all(torch.equal(s, t) for s, t in zip(styles, transfer.target_styles))
    alone = transfer.render(transfer.target_styles)
    assert torch.equal(transfer.render(styles), alone)
    p = transfer.progression(strength=0.0)
    assert all(torch.equal(image, p.images[0]) for image in p.images)
    assert torch.equal(p.joint, p.target) and not torch.equal(p.target, p.reference)


def test_strength_one_with_q_one_returns_the_reference_exactly(setup):
    G, catalog = setup
    transfer = PartTransfer(G, catalog, 0, 1, rho=0.0, epsilon=None)   # no thresholds: q = 1 everywhere
    assert all(bool((q == 1).all()) for q in transfer.query("eyes"))
    styles = transfer.blend({"eyes": 1.0})
    assert all(torch.equal(s, r) for s, r in zip(styles, transfer.reference_styles))
    assert torch.equal(transfer.render(styles), transfer.render(transfer.reference_styles))
    p = transfer.progression()
    assert torch.equal(p.result, p.reference) and torch.equal(p.joint, p.reference)


def test_progression_order_length_and_sequence(setup):
    G, catalog = setup
    assert ordered_parts(catalog) == ["eyes", "nose", "mouth", "spot"]
    transfer = PartTransfer(G, catalog, 5, 6, rho=0.05, epsilon=1.5)
    p = transfer.progression()
    assert p.parts == ["eyes", "nose", "mouth", "spot"]
    assert p.labels == ["target", "+eyes", "+nose", "+mouth", "+spot"]
    assert p.images.shape == (5, 3, 32, 32) and p.joint.shape == p.target.shape == p.reference.shape == (1, 3, 32, 32)
    assert torch.equal(p.images[0:1], p.target)
    # each step adds one part's channels: it equals the joint blend of the parts so far
    for i in range(1, 5):
        joint_so_far = transfer.render(transfer.blend({part: 1.0 for part in p.parts[:i]}))
        assert torch.allclose(p.images[i:i + 1], joint_so_far, atol=1e-5)
    # binary q at full strength: applying the parts in turn is exactly the joint blend
    steps = transfer.sequence(p.parts)
    joint = transfer.blend({part: 1.0 for part in p.parts})
    assert all(torch.equal(a, b) for a, b in zip(steps[-1], joint))
    assert torch.equal(p.result, p.joint)
    # at half strength the sequence compounds where parts share channels, the joint blend does not
    half = transfer.sequence(["eyes", "eyes"], 0.5)
    q = transfer.query("eyes")
    expected = [t + 0.75 * qi * (r - t) for t, r, qi in zip(transfer.target_styles, transfer.reference_styles, q)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(half[-1], expected))

    mouth_only = full_face_transfer(G, catalog, 5, 6, parts=["mouth"], rho=0.05, epsilon=1.5)
    assert mouth_only.labels == ["target", "+mouth"]
    assert torch.allclose(mouth_only.images[1:], transfer.render(transfer.blend({"mouth": 1.0})), atol=1e-5)
    with pytest.raises(KeyError, match="no part named 'ears'"):
        transfer.progression(["ears"])
    with pytest.raises(ValueError, match="repeat"):
        transfer.progression(["eyes", "eyes"])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        transfer.progression(strength=1.5)


def test_no_named_parts_is_a_clear_error(setup):
    G, catalog = setup
    bare = Catalog(catalog.centers, catalog.M, catalog.layer_names, catalog.settings)
    with pytest.raises(ValueError, match="no named parts"):
        PartTransfer(G, bare).progression()


def test_edits_run_only_the_synthesis_network(setup, monkeypatch):
    G, catalog = setup
    transfer = PartTransfer(G, catalog, 0, 1)
    counter = Counter(G, monkeypatch)
    try:
        transfer.progression()                          # every step and the joint blend: one batch
        assert (counter.synthesis, counter.mapping, counter.affine) == (1, 0, 0)
        transfer.render(transfer.blend({"nose": 0.3}))
        assert (counter.synthesis, counter.mapping, counter.affine) == (2, 0, 0)
        transfer.set_target(9)                          # a new face maps once: mapping + one affine per layer
        assert counter.mapping == 1 and counter.affine == len(G.style_layers) and counter.synthesis == 2
    finally:
        counter.close()


def test_progression_grid_layout(setup):
    G, catalog = setup
    transfer = PartTransfer(G, catalog, 0, 1)
    a = transfer.progression(["eyes", "nose"])
    transfer.set_reference(2)
    b = transfer.progression(["eyes", "nose"])
    plain = progression_grid([a, b], joint=False, reference=False, padding=2)
    assert plain.width >= 3 * 32 + 4 * 2 and plain.height >= 2 * 32 + 3 * 2     # plus the label margins
    full = progression_grid([a, b], padding=2)
    assert full.width - plain.width == 2 * (32 + 2)
    with pytest.raises(ValueError, match="different numbers of parts"):
        progression_grid([a, transfer.progression(["eyes"])])


def test_locality_rows_and_baselines(setup):
    G, catalog = setup
    transfer = PartTransfer(G, catalog, 0, 1, rho=0.05, epsilon=1.0)
    rows = transfer.locality(["eyes", "mouth"], space="rgb")
    assert list(rows) == [f"{p} / {m}" for p in ("eyes", "mouth")
                          for m in ("ours", "global mixing", "pixel blend", "no edit")]
    assert rows["eyes / no edit"].outside_vs_target == 0.0 and rows["eyes / no edit"].inside_vs_reference > 0
    assert all(isinstance(r, EditLocality) and r.space == "rgb" for r in rows.values())
    # cluster maps are at the image's resolution here, so the pasted part changes nothing outside the mask
    assert rows["eyes / pixel blend"].outside_vs_target == 0.0
    assert rows["eyes / ours"].part_fraction == rows["eyes / global mixing"].part_fraction > 0
    # rho = 0 and no epsilon: q is global already, so ours and the global baseline coincide
    loose = PartTransfer(G, catalog, 0, 1, rho=0.0, epsilon=None).locality(["eyes"])
    assert loose["eyes / ours"] == loose["eyes / global mixing"]
    averaged = locality_report(G, catalog, [(0, 1), (0, 1)], parts=["eyes", "mouth"], space="rgb", rho=0.05,
                               epsilon=1.0)
    assert averaged["mouth / ours"].outside_vs_target == pytest.approx(rows["mouth / ours"].outside_vs_target)


def test_mean_locality_skips_missing_values():
    a = {"x": EditLocality(1.0, 2.0, 0.1, "lab")}
    b = {"x": EditLocality(math.nan, 4.0, 0.3, "lab")}
    m = mean_locality([a, b])["x"]
    assert (m.inside_vs_reference, m.outside_vs_target, m.part_fraction) == (1.0, 3.0, pytest.approx(0.2))
    with pytest.raises(ValueError, match="no reports"):
        mean_locality([])


def test_background_is_listed_last_and_kept_out_of_the_default_progression(setup):
    G, catalog = setup
    named = Catalog(catalog.centers, catalog.M, catalog.layer_names, catalog.settings,
                    parts={"background": [3], "mouth": [2], "eyes": [0]})
    assert ordered_parts(named) == ["eyes", "mouth", "background"]
    assert ordered_parts(named, include_global=False) == ["eyes", "mouth"]
    transfer = PartTransfer(G, named, 5, 6, rho=0.05, epsilon=1.5)
    assert transfer.progression().parts == ["eyes", "mouth"]            # it would swap the whole face
    assert transfer.progression(["eyes", "background"]).parts == ["eyes", "background"]   # asked for: applied


# ---------------------------------------------------------------------------------------------------------
# editing.figures: the per-part transfer figures, the threshold sweep and channel selectivity
# ---------------------------------------------------------------------------------------------------------

def _square_labeler(images: torch.Tensor) -> torch.Tensor:
    """Label 1 ("eyes") on a fixed square in the upper half, 0 elsewhere: a stand-in for the segmenter."""
    labels = torch.zeros(images.shape[0], images.shape[2], images.shape[3], dtype=torch.long)
    labels[:, 6:14, 8:24] = 1
    return labels


def test_part_figures_are_one_for_a_whole_swap_and_zero_without_edit(setup):
    from colab_utils.editing import part_transfer_figures

    G, catalog = setup
    whole = Catalog(catalog.centers, catalog.M, catalog.layer_names, catalog.settings, catalog.cluster_area,
                    parts={"eyes": list(range(catalog.k))})     # every cluster: q selects every channel
    names = ["skin", "eyes"]
    swap = part_transfer_figures(G, whole, _square_labeler, [(0, 1), (2, 3)], parts=["eyes"], part_names=names,
                                 rho=0.0, epsilon=None)["eyes"]
    assert swap.pairs == 2 and swap.inside_edit == 0.0 and swap.reduction == 1.0
    assert swap.inside_none > 0 and swap.outside_edit > 0        # the whole reference arrived, outside too
    assert swap.part_fraction == pytest.approx(8 * 16 / 32 ** 2)
    none = part_transfer_figures(G, whole, _square_labeler, [(0, 1)], parts=["eyes"], part_names=names,
                                 strength=0.0)["eyes"]
    assert none.reduction == 0.0 and none.outside_edit == 0.0


def test_part_figures_refuse_bad_requests(setup):
    from colab_utils.editing import part_transfer_figures

    G, catalog = setup
    with pytest.raises(ValueError, match="no pairs"):
        part_transfer_figures(G, catalog, _square_labeler, [], part_names=["skin", "eyes"], parts=["eyes"])
    with pytest.raises(ValueError, match="knows no part"):
        part_transfer_figures(G, catalog, _square_labeler, [(0, 1)], part_names=["skin", "eyes"], parts=["mouth"])
    with pytest.raises(ValueError, match="no pair shows"):
        part_transfer_figures(G, catalog, lambda x: torch.zeros(x.shape[0], 32, 32, dtype=torch.long), [(0, 1)],
                              part_names=["skin", "eyes"], parts=["eyes"])


def test_threshold_sweep_and_selectivity_tables(setup):
    from colab_utils.editing.edit import part_contribution
    from colab_utils.editing.figures import channel_selectivity, sweep_table, threshold_sweep

    G, catalog = setup
    sweep = threshold_sweep(G, catalog, _square_labeler, [(0, 1)], [0.0, 2.0], parts=["eyes", "brows"],
                            part_names=["skin", "eyes"])
    assert list(sweep) == [0.0, 2.0] and list(sweep[0.0]) == ["eyes"]          # brows: not in the catalog
    assert sweep[2.0]["eyes"].reduction == 0.0                                  # rho above 1 selects nothing
    assert sweep[0.0]["eyes"].reduction != 0.0
    table = sweep_table(sweep).splitlines()
    assert table[0] == "| rho | eyes: fall | eyes: outside |" and table[3].startswith("| 2 | 0% | 0.0 |")
    lines = channel_selectivity(catalog, ["eyes", "mouth"]).splitlines()
    assert len(lines) == 2 + len(catalog.layer_names)
    best = float(part_contribution(catalog.M[0].float(), catalog.parts["eyes"])[0].max())
    assert lines[2].startswith(f"| {catalog.layer_names[0]} | {catalog.M[0].shape[1]} | {100 * best:.0f}% |")
    with pytest.raises(ValueError, match="names none"):
        threshold_sweep(G, catalog, _square_labeler, [(0, 1)], [0.1], parts=["hair"], part_names=["skin", "eyes"])


def test_renderer_ceiling_of_part_transfers():
    """The renderer's exact swaps: the eyes and mouth carry colours of their own and fall most of the way; the
    nose is drawn in the skin's colour, so swapping it removes little of the in-part error."""
    from colab_utils.editing.figures import figures_table, renderer_transfer_figures

    figures = renderer_transfer_figures(4, size=64)
    print("\n" + figures_table(figures))
    assert list(figures) == ["eyes", "brows", "nose", "mouth"] and all(f.pairs == 4 for f in figures.values())
    assert figures["eyes"].reduction > 0.6 and figures["mouth"].reduction > 0.4
    assert figures["nose"].reduction < 0.2
    assert all(f.outside_edit < 10 for f in figures.values())
