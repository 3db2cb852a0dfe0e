"""Source of notebooks/02_local_editing.ipynb (run: python tools/notebooks/02_local_editing.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Local semantic editing after Collins, Bala, Price and Süsstrunk, *Editing in Style: Uncovering the Local
Semantics of GANs* (CVPR 2020): take the eyes, the nose or the mouth of one generated face and put it on another
by mixing their style vectors only in the channels that act on that part.

1. **Catalog**: cluster the generator's 32x32 features over many samples (spherical k-means) and measure how
   much each style channel acts inside each cluster.
2. **Naming**: say which clusters are which part. For the generator trained on the synthetic faces a small
   segmenter does it automatically; for other generators look at the heatmaps and name them with a form or a dict.
3. **Edit**: single-part transfers, then live sliders.

Works on any StyleGAN2 in the rosinality format: the one notebook 01 trains, or NVIDIA's FFHQ weights
(set `WEIGHTS = "ffhq"`, GPU runtime recommended).

The same jobs from a terminal: `python -m colab_utils.editing catalog --generator ffhq --out catalog --heatmaps
heatmaps.png`, then `name --catalog catalog --parts parts.json` and `transfer --catalog catalog --kind parts
--out edits.png` (`--help` for the options)."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
WEIGHTS = "synthetic"     # "synthetic": our StyleGAN2 trained on synthetic faces (assets/stylegan2_synthetic_64.pt)
                          # "ffhq": NVIDIA's FFHQ config-f through colab_utils.hub (1024 px, ~380 MB download)
                          # or the path of a rosinality .pt, e.g. the export of notebook 01 on Drive
N_SAMPLES = 200                    # faces the catalog is built from (seconds on a CPU for the 64 px generator)
K = 18                             # clusters
TRUNCATION = 0.7
SEGMENTER_STEPS = 120 if SMOKE else 400   # only when the shipped part segmenter is missing: train one this long
PART_NAMES = None   # for FFHQ or your own generator: after looking at the heatmaps, e.g.
                    # {"eyes": [3, 11], "nose": [7], "mouth": [5], "hair": [0, 9], "skin": [2], "background": [4]}
TARGET, REFERENCE = 4, 5           # seeds of the two faces (of the synthetic generator: far apart)
SEED = 0
if SMOKE:
    WEIGHTS = "synthetic"
'''),
    ("md", "## Setup\nMounts Drive in Colab (the catalog is saved there) and loads the generator."),
    ("code", '''
import torch
from colab_utils import runtime, viz
from colab_utils.editing import load_generator
drive = runtime.mount_drive()
info = runtime.describe_device(verbose=True)
OUT = runtime.output_dir("02_local_editing")
G, description = load_generator(WEIGHTS, device=info.device, fallback_to_random=SMOKE)
print(f"editing {description}: {G.size} px, {len(G.style_layers)} style layers")
'''),
    ("md", "## 1. Catalog\nRenders `N_SAMPLES` faces twice (features, then channel contributions) and clusters "
           "every pixel of the 32x32 block. A few seconds on CPU for the synthetic generator, about a minute on a "
           "GPU for FFHQ at the full settings."),
    ("code", '''
from colab_utils.editing import Catalog, build_catalog
catalog = build_catalog(G, n_samples=N_SAMPLES, k=K, seed=SEED, truncation=TRUNCATION)
print(catalog)
'''),
    ("md", "## 2. Naming the clusters\nEach row is one cluster, tinted over a few sample faces."),
    ("code", '''
from colab_utils.editing import cluster_heatmap_grid, cluster_heatmap_rows, sample_cluster_maps
faces, cluster_maps = sample_cluster_maps(G, catalog, n_samples=6, seed=SEED + 1, truncation=TRUNCATION)
heatmaps = cluster_heatmap_grid(faces, cluster_maps, catalog.k)
heatmaps.save(OUT / "cluster_heatmaps.png")
viz.show(heatmaps)
'''),
    ("md", "For the synthetic generator a small segmenter, trained on the synthetic faces and their exact label maps "
           "(`assets/part_segmenter_portrait_64.pt`, `tools/train_part_segmenter.py`), labels the generator's samples; "
           "each cluster is named after the part it overlaps best (IoU). Otherwise use `PART_NAMES`, or the form below: "
           "pick a part per cluster, press the button, then run the following cells."),
    ("code", '''
from colab_utils.editing.jobs import is_synthetic, name_catalog
from colab_utils.widgets import cluster_naming_form
naming = name_catalog(G, catalog, part_names=PART_NAMES, auto_name=is_synthetic(WEIGHTS),
                      segmenter_steps=SEGMENTER_STEPS, seed=SEED, truncation=TRUNCATION)
if naming is not None:
    print(naming.table())
form = cluster_naming_form(catalog, thumbnails=cluster_heatmap_rows(faces, cluster_maps, catalog.k))
form
'''),
    ("code", '''
names = [next((p for p, ids in catalog.parts.items() if c in ids), None) for c in range(catalog.k)]
named = cluster_heatmap_grid(faces, cluster_maps, catalog.k, names=names)
named.save(OUT / "cluster_names.png")
viz.show(named)
# on Drive (notebook 03 reuses it); smoke runs keep it with their pictures
folder = catalog.save((OUT if SMOKE else runtime.project_dir("catalogs")) / f"catalog_{G.size}px_k{catalog.k}")
print("parts:", catalog.parts, "| saved to", folder)
'''),
    ("md", "## 3. Single-part edits\nEach row moves one part of the reference onto the target at strengths 0.5 and 1: "
           "facial features first, then skin and hair, and last the background, whose channels also carry the "
           "picture's global colour (labelled *global*). `rho` is the least share of a channel's activation that "
           "must fall inside the part; `epsilon` the total share outside the part the chosen channels of a layer "
           "may have."),
    ("code", '''
from colab_utils.editing import PartTransfer, ordered_parts
from colab_utils.editing.jobs import part_edits_grid
transfer = PartTransfer(G, catalog, TARGET, REFERENCE, truncation=TRUNCATION)
parts = ordered_parts(catalog)   # facial features first, then the others, the background last
edits = part_edits_grid(transfer, parts, strengths=(0.5, 1.0))
edits.save(OUT / "single_part_edits.png")
viz.show(edits)
'''),
    ("md", "## 4. Sliders\nOne slider per part, plus rho and epsilon. A change re-runs only the synthesis network: "
           "the two faces' style vectors are computed once."),
    ("code", '''
from colab_utils.widgets import FaceEditor, editor_widget
editor = FaceEditor(G, catalog, target=TARGET, reference=REFERENCE, truncation=TRUNCATION)
ui = editor_widget(editor, save_dir=OUT)
ui
'''),
    ("md", "The same editor without the widgets (what the sliders call):"),
    ("code", '''
editor.set_strength(parts[0], 1.0)
print(editor)
viz.show(editor.to_pil(with_sources=True, min_side=256))
print("saved", editor.save_png(OUT / "editor.png", with_sources=True))
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "02_local_editing.ipynb"
    write(out, "Local editing in style", INTRO, CELLS)
    print("wrote", out)
