"""colab_utils.editing.segmenter: the part segmenter on synthetic faces, naming clusters by overlap, face-parser
hooks; and, on the generator trained on synthetic faces (assets/stylegan2_synthetic_64.pt), catalog clusters
against the labelled parts and part edits against global style mixing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from colab_utils.data.synthetic import PARTS, make_faces
from colab_utils.editing import (Catalog, ParserLabeler, PartSegmenter, PartTransfer, auto_name_clusters,
                                 build_catalog, cluster_heatmap_grid, face_parser_from_hub, locality_table,
                                 mean_locality, name_clusters, part_iou, synthetic_generator_path, train_segmenter)
from colab_utils.editing.generators import SYNTHETIC_ASSET
from colab_utils.editing.segmenter import CELEBAMASK_HQ_CLASSES
from colab_utils.loading import CheckpointMismatchError

ASSET = synthetic_generator_path(download=False)
EYES, HAIR, BACKGROUND = PARTS.index("eyes"), PARTS.index("hair"), PARTS.index("background")


@pytest.fixture(scope="module")
def segmenter():
    return train_segmenter(256, steps=200, batch_size=8, seed=0, progress=False)


def small_catalog(k: int) -> Catalog:
    return Catalog(torch.eye(k), [torch.full((k, 3), 1.0 / k)], ["a"], {"cluster_layer": "a"})


def test_segmenter_labels_synthetic_faces(segmenter, tmp_path):
    images, labels = make_faces(32, 64, seed=99)              # faces it never saw, at twice its resolution
    pred = segmenter.predict(images)
    assert pred.shape == (32, 64, 64) and pred.dtype == torch.long
    iou = dict(zip(PARTS, part_iou(pred, torch.from_numpy(labels), len(PARTS)).tolist()))
    print("segmenter IoU on held-out synthetic faces:", {k: round(v, 3) for k, v in iou.items()})
    assert min(iou["background"], iou["hair"], iou["skin"]) > 0.75
    assert min(iou["eyes"], iou["nose"], iou["mouth"], iou["brows"]) > 0.2
    assert np.mean([iou[p] for p in PARTS]) > 0.55
    # a float batch in [-1, 1] gives the same labels as the uint8 pictures; weights survive a round trip
    as_float = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(segmenter.predict(as_float), pred[:4])
    loaded = PartSegmenter.load(segmenter.save(tmp_path / "seg.pt"))
    assert torch.equal(loaded.predict(images[:4]), pred[:4])
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="not a file written by"):
        PartSegmenter.load(tmp_path / "bad.pt")
    other = segmenter.state_dict()
    other["head.weight"] = other["head.weight"][:2]
    torch.save({"state_dict": other, "part_names": list(segmenter.part_names), "width": segmenter.width,
                "size": segmenter.size}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match=r"other\.pt: the weights do not fit .*shape mismatches \(1\): "
                                                      r"\['head\.weight: file \(2, "):
        PartSegmenter.load(tmp_path / "other.pt")


def test_part_iou_by_hand():
    pred = torch.tensor([[0, 0, 1], [1, 1, 2]])
    truth = torch.tensor([[0, 1, 1], [1, 1, 1]])
    iou = part_iou(pred, truth, 4)
    assert iou[:3].tolist() == [0.5, 0.6, 0.0] and math.isnan(iou[3])


def test_name_clusters_on_a_hand_made_case():
    labels = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1],
                           [0, 4, 4, 0],
                           [0, 0, 0, 0]])
    clusters = torch.tensor([[0, 0, 1, 1],
                             [0, 0, 1, 2],
                             [0, 2, 2, 0],
                             [0, 0, 0, 3]])
    catalog = small_catalog(4)
    naming = name_clusters(catalog, labels, clusters)
    # cluster 0: 9 background pixels of 10; 1: 3 of the 4 hair pixels; 2: both eye pixels and one hair pixel;
    # 3: one background pixel
    assert naming.iou[0, BACKGROUND] == pytest.approx(0.9) and naming.iou[1, HAIR] == pytest.approx(0.75)
    assert naming.iou[2, EYES] == pytest.approx(2 / 3) and naming.iou[2, HAIR] == pytest.approx(1 / 6)
    assert naming.iou[3, BACKGROUND] == pytest.approx(0.1)
    assert naming.cluster_part == ["background", "hair", "eyes", "background"]
    assert naming.parts == {"background": [0, 3], "hair": [1], "eyes": [2]} == catalog.parts
    assert naming.part_iou == pytest.approx({"background": 1.0, "hair": 0.75, "eyes": 2 / 3})
    assert "| 2 | eyes | 0.67 | hair 0.17 |" in naming.table()

    strict = name_clusters(small_catalog(4), labels, clusters, min_iou=0.2, apply=False)
    assert strict.cluster_part[3] is None and strict.parts["background"] == [0]
    assert strict.part_iou["background"] == pytest.approx(0.9)
    # cluster maps coarser than the label maps are resized (nearest)
    # (the bottom-left block holds 3 background pixels and 1 eye pixel; cluster 3 covers nothing: unnamed)
    coarse = name_clusters(small_catalog(4), labels, torch.tensor([[0, 1], [2, 0]]), apply=False)
    assert coarse.parts == {"background": [0, 2], "hair": [1]} and coarse.cluster_part[3] is None
    assert coarse.iou[2, BACKGROUND] == pytest.approx(3 / 11) and coarse.iou[2, EYES] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="outside the catalog's K=4"):
        name_clusters(small_catalog(4), labels, clusters + 1)
    with pytest.raises(ValueError, match="do not index"):
        name_clusters(small_catalog(4), labels + 10, clusters)
    with pytest.raises(ValueError, match="same B images"):
        name_clusters(small_catalog(4), labels[None].repeat(2, 1, 1), clusters)


def test_parser_labeler_folds_classes_into_parts(tmp_path, monkeypatch):
    n = len(CELEBAMASK_HQ_CLASSES)

    def parser(x):        # logits at half resolution: hair on top, left eye bottom-left, upper lip bottom-right
        b, _, h, w = x.shape
        logits = torch.zeros(b, n, h // 2, w // 2)
        logits[:, CELEBAMASK_HQ_CLASSES.index("hair"), : h // 4] = 1
        logits[:, CELEBAMASK_HQ_CLASSES.index("l_eye"), h // 4:, : w // 4] = 1
        logits[:, CELEBAMASK_HQ_CLASSES.index("u_lip"), h // 4:, w // 4:] = 1
        return logits

    labeler = ParserLabeler(parser)
    out = labeler(torch.zeros(2, 3, 8, 8))
    assert out.shape == (2, 8, 8)
    assert (out[:, :4] == HAIR).all() and (out[:, 4:, :4] == EYES).all() and (out[:, 4:, 4:] == PARTS.index("mouth")).all()
    # a parser that returns labels, with a class the part map leaves out (background)
    labels_out = ParserLabeler(lambda x: torch.full(x.shape[:1] + x.shape[2:], 16), part_map={"hair": "hair"})
    assert (labels_out(np.zeros((8, 8, 3), np.uint8)) == BACKGROUND).all()
    with pytest.raises(ValueError, match="3 class maps for 19"):
        ParserLabeler(lambda x: torch.zeros(1, 3, 8, 8))(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="not in part_names"):
        ParserLabeler(parser, part_map={"hair": "fur"})

    weights = tmp_path / "parser.pth"
    weights.write_bytes(b"weights")
    calls = []
    monkeypatch.setattr("colab_utils.hub.download", lambda name, dest=None, sha256=None: calls.append(name) or weights)
    built = face_parser_from_hub("some_parser", lambda path: (calls.append(path.read_bytes()), parser)[1])
    assert calls == ["some_parser", b"weights"] and torch.equal(built(torch.zeros(1, 3, 8, 8)), out[:1])


def test_cluster_heatmap_grid_size():
    images = torch.zeros(3, 3, 16, 16)
    maps = torch.randint(4, (3, 8, 8))
    grid = cluster_heatmap_grid(images, maps, 4, names=["eyes", None, "hair", None])
    assert grid.height == 4 * 16 + 5 and grid.width > 3 * 16 + 4
    with pytest.raises(ValueError, match="cluster maps"):
        cluster_heatmap_grid(images, maps[:2], 4)


# ---------------------------------------------------------------------------------------------------------
# The generator trained on synthetic faces
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(segmenter):
    if ASSET is None:
        pytest.skip(f"assets/{SYNTHETIC_ASSET} is absent: the StyleGAN2 trained on synthetic faces has not been "
                    f"produced yet")
    from colab_utils.stylegan2 import load_rosinality

    G = load_rosinality(ASSET).g_ema.eval()
    catalog = build_catalog(G, n_samples=48, k=12, seed=0, batch_size=16, progress=False)
    naming = auto_name_clusters(G, catalog, segmenter.predict, n_samples=24, seed=1)
    print(f"\n{catalog}\n{naming.table()}")
    return G, catalog, naming


def test_catalog_clusters_overlap_the_labelled_parts(trained):
    _, catalog, naming = trained
    assert {"background", "hair", "skin"} <= set(naming.parts)
    assert naming.part_iou["background"] > 0.7
    assert naming.part_iou["skin"] > 0.45 and naming.part_iou["hair"] > 0.35
    assert catalog.parts == naming.parts


def test_part_edits_beat_global_mixing_outside_the_part(trained):
    G, catalog, naming = trained
    parts = [p for p in ("eyes", "brows", "nose", "mouth", "hair", "skin") if p in naming.parts]
    transfer = PartTransfer(G, catalog, 0, 1)                     # default rho and epsilon
    reports = []
    for target, reference in [(0, 1), (2, 3), (4, 5), (6, 7)]:
        transfer.set_target(target)
        transfer.set_reference(reference)
        reports.append(transfer.locality(parts))
    rows = mean_locality(reports)
    print("\n" + locality_table(rows))
    moved = {}
    for part in parts:
        ours, mixing, unedited = (rows[f"{part} / {m}"] for m in ("ours", "global mixing", "no edit"))
        assert ours.outside_vs_target < 0.25 * mixing.outside_vs_target, part       # local...
        moved[part] = 1 - ours.inside_vs_reference / unedited.inside_vs_reference
        assert moved[part] > 0.05, part                                              # ...and not a no-op
    assert max(moved.values()) > 0.3, moved
