"""Source of notebooks/06_edit_your_photo.ipynb (run: python tools/notebooks/06_edit_your_photo.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Edit your own photo: upload a face (or give a path on Drive), align it like FFHQ, invert it into the
generator (projection into W+ as in the StyleGAN2 projector, then pivotal tuning, Roich et al. 2022), and edit it
like a generated face: single parts, the full-face transfer from a reference (a photo or a seed), sliders. Every
edit is pasted back into the photo beside the original.

The inversion is stored on Drive keyed by the photo, so it runs once. The generator must have been trained on
faces like yours: `"ffhq"` for real photos; the smoke run uses the small generator trained on synthetic faces and
a synthetic face."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
WEIGHTS = "ffhq"          # "ffhq" for real photos, "synthetic", or the path of a rosinality .pt
PHOTO = None              # a path (e.g. "/content/drive/MyDrive/me.jpg"); None: upload one below (Colab)
FACE_INDEX = None         # several faces: None takes the largest, 1 the second largest...
REFERENCE = 3             # a seed, or the path of another photo
STEPS, TUNE_STEPS = 1000, 350   # projection and pivotal-tuning steps (the papers' numbers)
SPACE = "w+"              # "w+" (closer) or "w" (more editable)
PERCEPTUAL = "lpips-vgg"  # the projection's loss; "random" is an offline stand-in for tests
STRENGTH = 1.0
RHO, EPSILON = 0.1, 16.0  # query thresholds (see notebook 02)
N_SAMPLES, K = 200, 18    # the catalog (as in notebooks 02 and 03)
PART_NAMES = None         # {"eyes": [...], ...} for generators the shipped segmenter does not know
SEED = 0
if SMOKE:
    WEIGHTS, STEPS, TUNE_STEPS, PERCEPTUAL, N_SAMPLES, K = "synthetic", 16, 6, "random", 24, 12
'''),
    ("code", '''
import torch
from colab_utils import runtime, viz
from colab_utils.editing import load_generator
drive = runtime.mount_drive()
info = runtime.describe_device(verbose=True)
OUT = runtime.output_dir("06_edit_your_photo")
G, description = load_generator(WEIGHTS, device=info.device)
print(f"editing with {description}: {G.size} px")
'''),
    ("md", "## 1. The photo\nIn Colab with `PHOTO = None`, choose a file when asked. Phone photos are turned "
           "upright (EXIF); greyscale, CMYK and very large photos are converted or reduced; a photo without a face, "
           "or with a face too small, is refused with the reason."),
    ("code", '''
from colab_utils.editing import read_photo, label_landmarks
LANDMARKS = None
if SMOKE:                 # a synthetic face, with landmarks read from its part labels
    from colab_utils.data.synthetic import make_face
    PHOTO, labels = make_face(11, 128, preset="portrait")
    LANDMARKS = label_landmarks(labels)
elif PHOTO is None:
    if not runtime.in_colab():
        raise ValueError("set PHOTO to the path of a photo")
    from google.colab import files
    PHOTO = files.upload()          # a dict {name: bytes}; read_photo takes it as it is
photo, name = read_photo(PHOTO)
print(f"{name}: {photo.shape[1]}x{photo.shape[0]}")
viz.show(photo)
'''),
    ("md", "## 2. Align like FFHQ\nThe eyes and the mouth corners fix an oriented square; it is cut out (padding "
           "the photo with a blur where the square leaves it) and resized to the generator's size."),
    ("code", '''
from colab_utils.editing import align_ffhq
from colab_utils.stargan.landmarks import landmark_backend_report
if LANDMARKS is None:
    print("landmarks:", landmark_backend_report())
face = align_ffhq(photo, G.size, landmarks=LANDMARKS, face_index=FACE_INDEX, name=name)
print(f"face {face.index + 1} of {face.n_faces}, {face.side:.0f} photo pixels across")
viz.show(face.image)
'''),
    ("md", "## 3. Invert\nProjection into W+ and the noise maps, then pivotal tuning of a copy of the generator "
           "around that latent. Stored in the project folder (Drive when mounted) by the photo's hash: a second "
           "run reads it back."),
    ("code", '''
from colab_utils.editing import photo_face, preview_strip
me = photo_face(G, photo, landmarks=LANDMARKS, face_index=FACE_INDEX, steps=STEPS, space=SPACE,
                tune_steps=TUNE_STEPS, perceptual=PERCEPTUAL, seed=SEED, name=name)
print(me)
if me.inversion.previews:
    strip = preview_strip(me.inversion)
    strip.save(OUT / "inversion.png")
    viz.show(strip)
viz.show(me.side_by_side(me.reconstruction()))   # the reconstruction pasted back, beside the photo
'''),
    ("md", "## 4. Catalog\nThe generator's catalog (notebook 02) applies to the tuned copy as it is."),
    ("code", '''
from colab_utils.editing import Catalog, auto_name_clusters, build_catalog, load_segmenter
saved = runtime.project_dir("catalogs") / f"catalog_{G.size}px_k{K}"
if not SMOKE and (saved / "catalog.json").is_file():
    catalog = Catalog.load(saved)
    catalog.check_generator(G)
else:
    catalog = build_catalog(G, n_samples=N_SAMPLES, k=K, seed=SEED)
if PART_NAMES:
    catalog.set_parts(PART_NAMES)
elif not catalog.parts and WEIGHTS == "synthetic":
    print(auto_name_clusters(G, catalog, load_segmenter(fallback_steps=100), n_samples=12, seed=SEED + 1).table())
if not catalog.parts:
    raise ValueError("name the catalog's clusters first: set PART_NAMES, or use notebook 02's form")
print(catalog)
'''),
    ("md", "## 5. Single-part edits\nEach named part of the reference on your face, pasted back into the photo."),
    ("code", '''
from colab_utils.editing import PartTransfer, ordered_parts
reference = REFERENCE if isinstance(REFERENCE, int) else photo_face(G, REFERENCE, steps=STEPS, space=SPACE,
                                                                    tune=False, perceptual=PERCEPTUAL, seed=SEED)
transfer = PartTransfer(G, catalog, me, reference, rho=RHO, epsilon=EPSILON)
parts = ordered_parts(catalog, include_global=False)
edited = {part: transfer.render(transfer.blend({part: STRENGTH})) for part in parts}
grid = viz.image_grid([me.paste(image) for image in edited.values()], nrow=len(parts), col_labels=parts)
grid.save(OUT / "single_part_edits.png")
viz.show(grid)
'''),
    ("md", "## 6. Full-face transfer\nEvery part of the reference in turn; the last column wears them all."),
    ("code", '''
from colab_utils.editing import progression_grid
progression = transfer.progression(None, STRENGTH)
viz.show(progression_grid(progression, row_labels=["you"]))
both = me.side_by_side(progression.result)
both.save(OUT / "full_face_transfer.png")
viz.show(both)
'''),
    ("md", "## 7. How local are the edits on your photo?\nAs in notebook 03: the error inside each part against "
           "the reference and outside it against your face (CIELAB), against global mixing and pixel blending."),
    ("code", '''
from colab_utils.editing import locality_table
table = locality_table(transfer.locality(parts, STRENGTH))
(OUT / "locality.md").write_text(table + "\\n")
print(table)
'''),
    ("md", "## 8. Sliders\nOne slider per part of the reference; the result goes back into the photo below."),
    ("code", '''
from colab_utils.widgets import FaceEditor, editor_widget
editor = FaceEditor(G, catalog, target=me, reference=reference, rho=RHO, epsilon=EPSILON)
ui = editor_widget(editor, save_dir=OUT)
ui
'''),
    ("code", '''
editor.set_strength(parts[0], 1.0)            # what a slider does
print(editor)
result = me.side_by_side(editor.image)
result.save(OUT / "edited_photo.png")
viz.show(result)
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "06_edit_your_photo.ipynb"
    write(out, "Edit your own photo", INTRO, CELLS)
    print("wrote", out)
