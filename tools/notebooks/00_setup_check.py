"""Source of notebooks/00_setup_check.ipynb (run: python tools/notebooks/00_setup_check.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
N_FACES = 16 if SMOKE else 32
FACE_SIZE = 64 if SMOKE else 256
SEED = 0
'''),
    ("md", "## Where are we running?\nIn Colab this mounts Google Drive so runs and downloads survive a disconnect; elsewhere it says so and uses `./checkpoints`."),
    ("code", '''
from colab_utils import runtime
print("in Colab:", runtime.in_colab())
drive = runtime.mount_drive()
print("project folder:", runtime.project_dir())
info = runtime.describe_device(verbose=True)
'''),
    ("md", "## Synthetic faces\nThe project's embedded default data: procedural faces with a label map per part (used by the smoke runs and the tests)."),
    ("code", '''
from colab_utils.data import synthetic
from colab_utils import viz
images, labels = synthetic.make_faces(N_FACES, size=FACE_SIZE, seed=SEED)
pairs = []
for image, label in zip(images[:8], labels[:8]):
    pairs += [image, viz.label_map_to_color(label)]
grid = viz.image_grid(pairs, nrow=8)
path = viz.save_grid(pairs, runtime.output_dir() / "synthetic_faces.png", nrow=8)
print("saved", path, "parts:", ", ".join(synthetic.PARTS))
viz.show(grid)
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "00_setup_check.ipynb"
    write(out, "Setup check", "Checks the runtime (Colab, Drive, GPU, precision) and draws the synthetic faces that the smoke runs use.", CELLS)
    print("wrote", out)
