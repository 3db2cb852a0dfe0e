"""Source of notebooks/03_full_face_transfer.ipynb (run: python tools/notebooks/03_full_face_transfer.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Full-face feature transfer: every named part of a reference face applied to a target face in turn,
target → +eyes → +nose → +mouth → … → a target wearing all of the reference's features, for several pairs;
then how local each part edit is, against global style mixing and pixel-space pasting (after Collins et al.,
*Editing in Style*, CVPR 2020).

Uses the catalog notebook 02 saved on Drive when there is one, else builds it (and, for the generator trained on
synthetic faces, names its clusters with the small segmenter).

The same jobs from a terminal: `python -m colab_utils.editing transfer --catalog catalog --target 0 --reference 1
--out full.png` and `python -m colab_utils.editing locality --catalog catalog --pairs 0:1 2:3 4:5`."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
WEIGHTS = "synthetic"     # "synthetic", "ffhq", or the path of a rosinality .pt (as in notebook 02)
PAIRS = [(4, 5), (0, 13), (2, 7)] if SMOKE else [(4, 5), (0, 13), (2, 7), (8, 3), (14, 1)]   # (target, reference)
PARTS = None              # the order to apply parts in; None: eyes, brows, nose, mouth, then skin and hair (never
                          # the background, whose channels carry the global style: it would swap the whole face)
STRENGTH = 1.0
RHO, EPSILON = 0.1, 16.0  # query thresholds (see notebook 02)
TRUNCATION = 0.7
N_SAMPLES = 200           # the catalog's faces (seconds on a CPU for the 64 px generator)
K = 18
SEGMENTER_STEPS = 120 if SMOKE else 400   # only when the shipped part segmenter is missing
PART_NAMES = None         # a dict {"eyes": [...], ...} for generators the segmenter does not know
REUSE_CATALOG = not SMOKE # load the catalog notebook 02 saved, when it exists
SEED = 0
if SMOKE:
    WEIGHTS = "synthetic"
'''),
    ("code", '''
import torch
from colab_utils import runtime, viz
from colab_utils.editing import load_generator
drive = runtime.mount_drive()
info = runtime.describe_device(verbose=True)
OUT = runtime.output_dir("03_full_face_transfer")
G, description = load_generator(WEIGHTS, device=info.device, fallback_to_random=SMOKE)
print(f"editing {description}: {G.size} px")
'''),
    ("md", "## Catalog and part names"),
    ("code", '''
from colab_utils.editing import Catalog
from colab_utils.editing.jobs import is_synthetic, make_catalog, name_catalog
saved = runtime.project_dir("catalogs") / f"catalog_{G.size}px_k{K}" if REUSE_CATALOG else None
if saved is not None and (saved / "catalog.json").is_file():
    catalog = Catalog.load(saved)
    catalog.check_generator(G)
    naming = name_catalog(G, catalog, part_names=PART_NAMES, auto_name=not catalog.parts and is_synthetic(WEIGHTS),
                          segmenter_steps=SEGMENTER_STEPS, seed=SEED, truncation=TRUNCATION)
else:
    catalog, naming = make_catalog(G, n_samples=N_SAMPLES, k=K, seed=SEED, truncation=TRUNCATION,
                                   part_names=PART_NAMES, auto_name=is_synthetic(WEIGHTS),
                                   segmenter_steps=SEGMENTER_STEPS)
if naming is not None:
    print(naming.table())
if not catalog.parts:
    raise ValueError("name the catalog's clusters first: set PART_NAMES, or use notebook 02's form")
print(catalog)
'''),
    ("md", "## Progressions\nOne row per pair: the target, each part added in turn, all parts in one blend "
           "(*joint*), and the reference. Every image of a row comes from one synthesis pass over cached styles. "
           "The background is left out: its channels carry the picture's global style."),
    ("code", '''
from colab_utils.editing import PartTransfer
from colab_utils.editing.jobs import full_face_grid
transfer = PartTransfer(G, catalog, *PAIRS[0], rho=RHO, epsilon=EPSILON, truncation=TRUNCATION)
grid, progressions = full_face_grid(transfer, PAIRS, PARTS, STRENGTH)
grid.save(OUT / "full_face_transfer.png")
viz.show(grid)
'''),
    ("md", "## Locality\nFor every part: the error inside the part against the reference (lower: the part was "
           "transferred) and outside it against the target (lower: nothing else moved), in CIELAB, averaged over the "
           "pairs. Baselines: *global mixing* takes every channel of the layers the part's query touches; *pixel "
           "blend* pastes the reference's part into the target, which matches this measure by construction but "
           "ignores whether the part fits the face."),
    ("code", '''
from colab_utils.editing import locality_table
from colab_utils.editing.jobs import locality_rows
table = locality_table(locality_rows(transfer, PAIRS, PARTS, STRENGTH))
(OUT / "locality.md").write_text(table + "\\n")
print(table)
'''),
    ("md", "The same question asked of an independent judge: for the generator trained on synthetic faces, the "
           "segmenter locates each part (in the target or the reference) instead of the catalog's own clusters. "
           "*fall*: the share of the in-part error to the reference that the edit removed."),
    ("code", '''
from colab_utils.editing import FACIAL_PARTS, figures_table, load_segmenter, part_transfer_figures
if WEIGHTS == "synthetic" and not PART_NAMES:
    facial = [p for p in FACIAL_PARTS if p in catalog.parts]
    figures = part_transfer_figures(G, catalog, load_segmenter(fallback_steps=SEGMENTER_STEPS), PAIRS, parts=facial,
                                    rho=RHO, epsilon=EPSILON, truncation=TRUNCATION)
    print(figures_table(figures))
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "03_full_face_transfer.ipynb"
    write(out, "Full-face feature transfer", INTRO, CELLS)
    print("wrote", out)
