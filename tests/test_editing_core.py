"""colab_utils.editing core: spherical k-means, ARI, query q, style blend, CIELAB, locality, catalog."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from colab_utils.editing import (Catalog, EditLocality, SphericalKMeans, adjusted_rand_index, blend_styles,
                                 build_catalog, combine_queries, edit_locality, global_query, layer_query,
                                 locality_table, query, rgb_to_lab)


# ---------------------------------------------------------------------------------------------------------
# spherical k-means
# ---------------------------------------------------------------------------------------------------------

def planted(seed: int = 0, k: int = 5, dim: int = 16, n: int = 2000, spread: float = 0.35):
    """Unit-ish vectors around k random directions, with random magnitudes (which must not matter)."""
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(k, dim, generator=g), dim=1)
    labels = torch.randint(k, (n,), generator=g)
    x = centers[labels] + spread * torch.randn(n, dim, generator=g) / math.sqrt(dim)
    x = x * (0.1 + 5 * torch.rand(n, 1, generator=g))
    return x, labels, centers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_recovers_planted_clusters(seed):
    x, labels, centers = planted(seed)
    km = SphericalKMeans(5, batch_size=256, seed=seed).fit(x)
    assert adjusted_rand_index(labels, km.predict(x)) > 0.9
    assert torch.allclose(km.centers.norm(dim=1), torch.ones(5), atol=1e-5)
    # every planted direction has a found centre pointing the same way
    assert (centers @ km.centers.T).max(dim=1).values.min() > 0.95
    assert km.inertia_ is not None and 0 < km.inertia_ < len(x)


def test_kmeans_is_deterministic_by_seed():
    x, _, _ = planted(3)
    a = SphericalKMeans(5, batch_size=128, seed=7).fit(x)
    b = SphericalKMeans(5, batch_size=128, seed=7).fit(x)
    assert torch.equal(a.centers, b.centers)
    assert a.inertia_ == b.inertia_
    assert torch.equal(a.predict(x), b.predict(x))


def test_kmeans_from_chunks_list_function_and_generator():
    x, labels, _ = planted(4, n=3000)
    chunks = list(x.split(400))
    for source in (chunks, lambda: iter(chunks), (c for c in chunks)):
        km = SphericalKMeans(5, batch_size=256, seed=0).fit(source)
        assert adjusted_rand_index(labels, km.predict(x)) > 0.9
        assert torch.allclose(km.centers.norm(dim=1), torch.ones(5), atol=1e-5)
    one_shot = SphericalKMeans(5, batch_size=256, seed=0).fit(c for c in chunks)
    assert one_shot.n_iter_ == 1  # a generator can be read once


def test_kmeans_bad_input():
    with pytest.raises(ValueError, match="cannot make 10 clusters"):
        SphericalKMeans(10).fit(torch.randn(5, 3))
    with pytest.raises(ValueError, match="2-D"):
        SphericalKMeans(2).fit(torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="expected 3"):
        SphericalKMeans(2, init_size=4).fit([torch.randn(4, 3), torch.randn(4, 5)])
    with pytest.raises(ValueError, match="NaN"):
        SphericalKMeans(2).fit(torch.full((4, 3), float("nan")))
    with pytest.raises(RuntimeError, match="fit"):
        SphericalKMeans(2).predict(torch.randn(4, 3))
    with pytest.raises(ValueError, match="positive integer"):
        SphericalKMeans(0)


def test_adjusted_rand_index_known_cases():
    a = [0, 0, 1, 1, 2, 2]
    assert adjusted_rand_index(a, a) == pytest.approx(1.0)
    assert adjusted_rand_index(a, [5, 5, -1, -1, 9, 9]) == pytest.approx(1.0)   # renamed labels
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    g = torch.Generator().manual_seed(0)
    assert abs(adjusted_rand_index(torch.randint(4, (5000,), generator=g),
                                   torch.randint(4, (5000,), generator=g))) < 0.02
    with pytest.raises(ValueError, match="length"):
        adjusted_rand_index([0, 1], [0, 1, 2])


# ---------------------------------------------------------------------------------------------------------
# query q and style blend
# ---------------------------------------------------------------------------------------------------------

def hand_m() -> torch.Tensor:
    """K=3 clusters x C=5 channels, columns summing to 1, channels stored out of rank order.

    Contribution to cluster 0 by channel: c0 .5, c1 .05, c2 .9, c3 .3, c4 .8 -> rank c2, c4, c0, c3, c1 with
    outside shares .1, .2, .5, .7, .95 and running totals .1, .3, .8, 1.5, 2.45.
    """
    inside = torch.tensor([0.5, 0.05, 0.9, 0.3, 0.8])
    rest = 1 - inside
    return torch.stack([inside, 0.75 * rest, 0.25 * rest])


@pytest.mark.parametrize("rho, epsilon, expected", [
    (0.0, 0.85, [1, 0, 1, 0, 1]),     # running outside total .1, .3, .8 within 0.85
    (0.0, 0.25, [0, 0, 1, 0, 0]),     # .1 only
    (0.0, 0.75, [0, 0, 1, 0, 1]),     # .1, .3
    (0.6, 0.85, [0, 0, 1, 0, 1]),     # c0 (0.5) is under rho
    (0.0, None, [1, 1, 1, 1, 1]),     # no budget
    (0.0, 0.0, [0, 0, 0, 0, 0]),      # a zero budget turns the layer off
    (0.31, 1.6, [1, 0, 1, 0, 1]),     # budget admits c3 (1.5) but rho drops it
])
def test_layer_query_thresholds(rho, epsilon, expected):
    q = layer_query(hand_m(), [0], rho, epsilon)
    assert q.tolist() == expected


def test_query_parts_of_several_clusters_and_per_layer_values():
    m = hand_m()
    # part {0, 1}: outside share is row 2 = .25 * (1 - inside): c0 .125, c1 .2375, c2 .025, c3 .175, c4 .05
    q = layer_query(m, [0, 1], 0.0, 0.22)  # rank by .875,.7625,.975,.825,.95 -> c2 .025, c4 .075, c0 .2
    assert q.tolist() == [1, 0, 1, 0, 1]
    qs = query([m, m, m], [0], rho=[0.0, 0.6, 0.0], epsilon=[0.85, 0.85, 0.25])
    assert [x.tolist() for x in qs] == [[1, 0, 1, 0, 1], [0, 0, 1, 0, 1], [0, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match="2 per-layer values for 3 layers"):
        query([m, m, m], [0], epsilon=[0.1, 0.2])
    with pytest.raises(ValueError, match="out of range"):
        query([m], [3])


def test_combine_and_global_queries():
    a = [torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0])]
    b = [torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0])]
    assert [x.tolist() for x in combine_queries([a, b])] == [[1, 1, 0], [0, 0]]
    assert [x.tolist() for x in combine_queries([a, b], [0.5, 0.25])] == [[0.5, 0.25, 0], [0, 0]]
    assert [x.tolist() for x in global_query(combine_queries([a, b], [0.5, 0.25]))] == [[0.5] * 3, [0, 0]]


def test_blend_exact_at_both_ends():
    g = torch.Generator().manual_seed(0)
    target = [torch.randn(2, c, generator=g) * 3 for c in (4, 7, 3)]
    reference = [torch.randn(2, c, generator=g) * 3 for c in (4, 7, 3)]
    q = [torch.rand(c, generator=g) for c in (4, 7, 3)]
    ones = [torch.ones(c) for c in (4, 7, 3)]
    for s, t in zip(blend_styles(target, reference, q, 0.0), target):
        assert torch.equal(s, t)
    for s, r in zip(blend_styles(target, reference, ones, 1.0), reference):
        assert torch.equal(s, r)
    mid = blend_styles(target, reference, q, [0.5, 0.25, 1.0])
    for s, t, r, qi, lam in zip(mid, target, reference, q, [0.5, 0.25, 1.0]):
        assert torch.allclose(s, t + lam * qi * (r - t), atol=1e-6)
    # a single reference broadcast over several targets
    single = blend_styles(target, [r[:1] for r in reference], ones, 1.0)
    assert all(torch.equal(s, r[:1].expand_as(s)) for s, r in zip(single, reference))
    with pytest.raises(ValueError, match="channel counts differ"):
        blend_styles(target, reference, [torch.ones(5), *ones[1:]], 1.0)
    with pytest.raises(ValueError, match="must match"):
        blend_styles(target, reference[:2], ones, 1.0)


# ---------------------------------------------------------------------------------------------------------
# CIELAB and locality
# ---------------------------------------------------------------------------------------------------------

def colour(r, g, b) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float32).view(3, 1, 1)


def test_lab_of_known_colours():
    assert torch.allclose(rgb_to_lab(colour(1, 1, 1)).flatten(), torch.tensor([100.0, 0, 0]), atol=1e-3)
    assert torch.allclose(rgb_to_lab(colour(0, 0, 0)).flatten(), torch.zeros(3), atol=1e-4)
    assert torch.allclose(rgb_to_lab(colour(1, 0, 0)).flatten(), torch.tensor([53.24, 80.09, 67.20]), atol=0.01)
    assert torch.allclose(rgb_to_lab(colour(0, 1, 0)).flatten(), torch.tensor([87.73, -86.18, 83.18]), atol=0.01)
    assert torch.allclose(rgb_to_lab(colour(0, 0, 1)).flatten(), torch.tensor([32.30, 79.19, -107.86]), atol=0.01)
    gray = rgb_to_lab(colour(0.5, 0.5, 0.5)).flatten()
    assert gray[0] == pytest.approx(53.39, abs=0.01) and gray[1:].abs().max() < 1e-3
    batch = torch.rand(2, 3, 5, 4)
    assert torch.allclose(rgb_to_lab(batch * 2 - 1, value_range=(-1, 1)), rgb_to_lab(batch), atol=1e-3)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(torch.rand(2, 4, 5, 5))


def test_masked_errors_on_constructed_images():
    target = torch.zeros(2, 3, 8, 8)
    reference = torch.ones(2, 3, 8, 8)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)   # coarser than the images: resized nearest
    mask[:, :2] = True                               # top half of every image
    inside = F.interpolate(mask[:, None].float(), size=(8, 8), mode="nearest").bool().expand(-1, 3, -1, -1)
    edited = torch.where(inside, reference - 0.2, target + 0.1)
    rgb = edit_locality(edited, target, reference, mask, space="rgb", value_range=(0, 1))
    assert isinstance(rgb, EditLocality) and rgb.space == "rgb"
    assert rgb.inside_vs_reference == pytest.approx(0.04, abs=1e-6)
    assert rgb.outside_vs_target == pytest.approx(0.01, abs=1e-6)
    assert rgb.part_fraction == pytest.approx(0.5)
    # the same images given in [-1, 1]: every error is measured after mapping to [0, 1]
    rgb2 = edit_locality(edited * 2 - 1, target * 2 - 1, reference * 2 - 1, mask, space="rgb")
    assert rgb2.inside_vs_reference == pytest.approx(0.04, abs=1e-6)
    # global change: the outside error in Lab is that of gray 0.1 against black
    lab = edit_locality(edited, target, reference, mask, space="lab", value_range=(0, 1))
    l_gray = float(rgb_to_lab(colour(0.1, 0.1, 0.1))[0])
    assert lab.outside_vs_target == pytest.approx(l_gray ** 2 / 3, rel=1e-3)
    perfect = edit_locality(torch.where(inside, reference, target), target, reference, mask, value_range=(0, 1))
    assert perfect.inside_vs_reference == 0 and perfect.outside_vs_target == 0
    empty = edit_locality(edited, target, reference, torch.zeros(8, 8), space="rgb", value_range=(0, 1))
    assert math.isnan(empty.inside_vs_reference) and empty.part_fraction == 0
    table = locality_table({"eyes / ours": rgb, "eyes / empty": empty})
    lines = table.splitlines()
    assert len(lines) == 4 and "eyes / ours" in lines[2] and "0.04" in lines[2] and "0.01" in lines[2]
    assert "n/a" in lines[3] and "50.0%" in lines[2]
    with pytest.raises(ValueError, match="space"):
        edit_locality(edited, target, reference, mask, space="hsv")
    with pytest.raises(ValueError, match="differ in size"):
        edit_locality(edited, target[..., :4], reference, mask)
    with pytest.raises(TypeError, match="EditLocality"):
        locality_table([("x", 1.0)])


# ---------------------------------------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------------------------------------

def region_map() -> torch.Tensor:
    """16x16 planted parts, on 2-pixel blocks: 0 background, 1 face, 2 eyes."""
    r = torch.zeros(16, 16, dtype=torch.long)
    r[2:14, 2:14] = 1
    r[4:8, 4:8] = 2
    r[4:8, 10:14] = 2
    return r


class FakeGenerator(nn.Module):
    """The editing contract (style_layers, w_plus, style_vectors, synthesis) over planted parts: channels
    0-1 live on the background, 2-3 on the face, 4-5 on the eyes; styles scale them per sample."""

    def __init__(self):
        super().__init__()
        self.style_dim, self.n_latent = 4, 3
        self.mapping = nn.Linear(4, 4)
        self.affine = nn.ModuleList(nn.Linear(4, 6) for _ in range(3))
        Layer = SimpleNamespace
        self.style_layers = [Layer(name="conv_a", resolution=8, in_channels=6, is_rgb=False, latent_index=0),
                             Layer(name="conv_b", resolution=16, in_channels=6, is_rgb=False, latent_index=1),
                             Layer(name="rgb", resolution=16, in_channels=6, is_rgb=True, latent_index=2)]
        proto = torch.zeros(3, 6)
        proto[0, :2], proto[1, 2:4], proto[2, 4:] = 1.0, 1.0, 1.0
        self.register_buffer("features16", proto[region_map()].permute(2, 0, 1)[None])   # [1, 6, 16, 16]

    def get_latent(self, z):
        return self.mapping(z)

    def mean_latent(self, n):
        return self.get_latent(torch.randn(n, self.style_dim)).mean(0, keepdim=True)

    def w_plus(self, styles, *, truncation=1.0, truncation_latent=None, input_is_latent=False):
        w = styles[0] if input_is_latent else self.get_latent(styles[0])
        if truncation < 1:
            w = truncation_latent + truncation * (w - truncation_latent)
        return w[:, None].repeat(1, self.n_latent, 1)

    def style_vectors(self, w_plus):
        return [a(w_plus[:, layer.latent_index]) for a, layer in zip(self.affine, self.style_layers)]

    def synthesis(self, styles, noise=None, randomize_noise=False, return_activations=True):
        scale = [1.5 + torch.tanh(s)[:, :, None, None] for s in styles]
        b16 = self.features16 * scale[0]
        a8 = F.interpolate(b16, size=(8, 8), mode="nearest")
        img = (b16 * scale[2])[:, :3]
        acts = {"conv_a": a8, "conv_b": b16 * scale[1], "rgb": img}
        return (img, acts) if return_activations else img


def test_catalog_recovers_planted_parts_and_their_channels(tmp_path):
    G = FakeGenerator()
    catalog = build_catalog(G, n_samples=6, layer_resolution=16, k=3, seed=0, batch_size=4, progress=False)
    assert catalog.cluster_layer == "conv_b"
    w = G.w_plus([torch.randn(3, 4)])
    labels = catalog.cluster_maps(G, w)
    assert labels.shape == (3, 16, 16)
    truth = region_map().expand(3, -1, -1)
    assert adjusted_rand_index(truth, labels) == pytest.approx(1.0)
    # name clusters after the planted parts by majority
    ids = {name: int(labels[truth == r].mode().values) for r, name in enumerate(["background", "face", "eyes"])}
    catalog.set_parts({name: [i] for name, i in ids.items()})
    for m in catalog.M:
        assert torch.allclose(m.sum(dim=0), torch.ones(6), atol=1e-5)   # columns are shares
        for r, name in enumerate(["background", "face", "eyes"]):
            assert torch.allclose(m[ids[name], 2 * r: 2 * r + 2], torch.ones(2), atol=1e-5)
    q = catalog.query("eyes", rho=0.5, epsilon=0.5)
    assert [x.tolist() for x in q] == [[0, 0, 0, 0, 1, 1]] * 3
    both = catalog.query(["eyes", "face"], rho=0.5, epsilon=0.5)
    assert [x.tolist() for x in both] == [[0, 0, 1, 1, 1, 1]] * 3
    assert torch.equal(catalog.part_mask(labels, "eyes"), truth == 2)

    folder = catalog.save(tmp_path / "cat")
    loaded = Catalog.load(folder)
    assert loaded.parts == catalog.parts and loaded.settings == catalog.settings
    assert torch.equal(loaded.centers, catalog.centers)
    assert all(torch.equal(a, b) for a, b in zip(loaded.M, catalog.M))
    assert torch.equal(loaded.cluster_maps(G, w), labels)


def test_catalog_is_deterministic_and_checks_its_inputs(tmp_path):
    G = FakeGenerator()
    a = build_catalog(G, n_samples=4, layer_resolution=16, k=3, seed=1, batch_size=4, progress=False)
    b = build_catalog(G, n_samples=4, layer_resolution=16, k=3, seed=1, batch_size=4, progress=False)
    assert torch.equal(a.centers, b.centers) and all(torch.equal(x, y) for x, y in zip(a.M, b.M))
    with pytest.raises(ValueError, match="no styled conv at 32x32"):
        build_catalog(G, n_samples=4, layer_resolution=32, k=3, progress=False)
    with pytest.raises(ValueError, match="outside"):
        a.set_parts({"eyes": [7]})
    with pytest.raises(KeyError, match="no part named"):
        a.query("nose")
    with pytest.raises(FileNotFoundError, match="catalog.json"):
        Catalog.load(tmp_path)
    folder = a.save(tmp_path / "c")
    (folder / "catalog.json").write_text("{not json")
    with pytest.raises(ValueError, match="catalog.json"):
        Catalog.load(folder)
    G.style_layers[1].in_channels = 5
    with pytest.raises(ValueError, match="differ"):
        a.check_generator(G)


def test_catalog_on_our_stylegan2():
    model = pytest.importorskip("colab_utils.stylegan2.model")
    torch.manual_seed(0)
    G = model.Generator(32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 8})
    catalog = build_catalog(G, n_samples=8, layer_resolution=32, k=4, seed=0, batch_size=4, progress=False)
    assert catalog.cluster_layer == [layer.name for layer in G.style_layers if not layer.is_rgb][-1]
    assert [m.shape for m in catalog.M] == [(4, layer.in_channels) for layer in G.style_layers]
    assert all(torch.allclose(m.sum(dim=0), torch.ones(m.shape[1]), atol=1e-5) for m in catalog.M)
    w = G.w_plus([torch.randn(2, 16)])
    assert catalog.cluster_maps(G, w).shape == (2, 32, 32)
    # the whole pipeline: q from the catalog, blend, re-synthesis; lambda 0 reproduces the target image
    styles_t, styles_r = G.style_vectors(w[:1]), G.style_vectors(w[1:])
    q = catalog.query([0], rho=0.0, epsilon=2.0)
    with torch.no_grad():
        same = G.synthesis(blend_styles(styles_t, styles_r, q, 0.0))
        assert torch.equal(same, G.synthesis(styles_t))
        full = G.synthesis(blend_styles(styles_t, styles_r, [torch.ones_like(x) for x in q], 1.0))
        assert torch.equal(full, G.synthesis(styles_r))
