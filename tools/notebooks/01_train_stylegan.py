"""Source of notebooks/01_train_stylegan.ipynb (run: python tools/notebooks/01_train_stylegan.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Train StyleGAN2 (Karras et al. 2020) on your own faces, in as many Colab sessions as it takes: every
checkpoint is copied to Google Drive, and **running the notebook again after a disconnect continues where the
last session stopped**. Or skip training and sample from the public FFHQ weights at the end.

Runtime → Change runtime type → GPU first. On a T4 a 256 px run reaches recognisable faces after roughly a day
of training (two or three sessions); the synthetic default shows the whole loop in minutes."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
RUN_NAME = "stylegan2_faces"   # one folder per run; reuse the name to continue a run
DATA = "synthetic"             # or "/content/drive/MyDrive/faces.zip", or a folder of jpg/png/webp photos
SIZE = 32 if SMOKE else 256    # image side: 32 ... 1024
BATCH = 8 if SMOKE else 16
KIMG = 0.064 if SMOKE else 5000  # training length, in thousands of real images shown to D
AUGMENT = True                 # adaptive augmentation: keep on for datasets below ~30k images
SAMPLE_EVERY = 8 if SMOKE else 500
FID_EVERY_KIMG = 0.016 if SMOKE else 50  # FID/KID of 10k generated images this often; fid50k_full at the end
SESSION_HOURS = 11.5           # stop with a checkpoint before Colab ends the session (ignored outside Colab)
SEED = 0
'''),
    ("md", "## Where are we running?\nThe GPU decides the precision: bf16 on A100/L4, fp16 with a grad scaler on a "
           "T4, fp32 on the CPU."),
    ("code", '''
from colab_utils import runtime
info = runtime.describe_device(verbose=True)
device = info.device
'''),
    ("md", "## Google Drive\nCheckpoints, sample grids, the progress GIF and the final export are written to the fast "
           "local disk and copied to Drive in the background. A full, disconnected or hung Drive never stops "
           "training: it is warned about once, copies are retried, and the end of the run waits at most a minute "
           "for Drive, then names what is only on local disk and the command that copies it."),
    ("code", '''
drive = runtime.mount_drive()
# Colab with Drive: /content/runs/RUN_NAME, copied to MyDrive/colab_utils/runs/RUN_NAME; else ./checkpoints/runs
RUN_DIR, DRIVE_DIR = (runtime.output_dir("run"), None) if SMOKE else runtime.run_folders(RUN_NAME)
OUT = runtime.output_dir(RUN_NAME)
print("checkpoints:", RUN_DIR, "| Drive copy:", DRIVE_DIR, "| pictures:", OUT)
'''),
    ("md", "## Data\nA zip on Drive is copied to local disk and unpacked once; images are resized and centre-cropped "
           "to the training size. Unreadable files are skipped and named in one warning."),
    ("code", '''
from colab_utils import viz
from colab_utils.stylegan2.train import TrainConfig, train, training_images
dataset = training_images(DATA, SIZE, min_images=BATCH, synthetic_images=64 if SMOKE else 5000, seed=SEED)
print(len(dataset), "training images")
viz.show(viz.image_grid([dataset[i] for i in range(min(16, len(dataset)))], nrow=8))
'''),
    ("md", "## Train\nInterrupt at any time (the stop button saves a checkpoint). **Re-run this cell, or the whole "
           "notebook after a disconnect, and training continues** from the newest checkpoint in the run folder or "
           "on Drive. A finished run returns at once."),
    ("code", '''
if SMOKE:
    config = TrainConfig(size=SIZE, batch=BATCH, channels=16, style_dim=16, n_mlp=2, kimg=KIMG, augment=AUGMENT,
                         sample_every=SAMPLE_EVERY, n_samples=8, r1_every=4, pl_every=2, log_every=1,
                         checkpoint_minutes=None,
                         seed=SEED, metrics_every_kimg=FID_EVERY_KIMG, metrics_images=32, metrics_final_images=64,
                         metrics_batch=16)
else:
    config = TrainConfig(size=SIZE, batch=BATCH, kimg=KIMG, augment=AUGMENT, sample_every=SAMPLE_EVERY,
                         checkpoint_minutes=10, seed=SEED, drive_dir=str(DRIVE_DIR) if DRIVE_DIR else None,
                         session_hours=SESSION_HOURS if runtime.in_colab() else None, metrics_every_kimg=FID_EVERY_KIMG)
from colab_utils import metrics
# FID needs the Inception-v3 weights (91 MB, downloaded once to Drive); SMOKE mode stays offline with a small fixed
# random network instead, whose numbers only compare this run's snapshots with each other.
extractor = metrics.RandomFeatures() if SMOKE else None
stats_dir = metrics.default_cache_dir(DATA) if str(DATA).endswith(".zip") else None  # real-image statistics beside the zip
result = train(config, dataset, RUN_DIR, out_dir=OUT, extractor=extractor, stats_dir=stats_dir)
print("step", result.step, "of", result.total, "| ADA p =", result.augment_p)
print(result.drive_status)  # e.g. "last checkpoint on Drive: step 1200, 3 minutes ago"
'''),
    ("md", "## Samples\nThe same latent codes after every `SAMPLE_EVERY` steps: the newest grid, and the GIF of "
           "all of them."),
    ("code", '''
from PIL import Image
print("latest grid:", result.grid)
viz.show(Image.open(result.grid))
print("training progress GIF:", result.gif)
'''),
    ("md", "## A trained generator of the same kind\nThe 64 px StyleGAN2 shipped with the project for the "
           "editing notebooks (`assets/stylegan2_synthetic_64.pt`), beside the samples of the run above; each row "
           "says how far its run went. It is the same architecture and file format, but it was not trained by this "
           "adversarial trainer: `tools/train_synthetic_stylegan.py` teaches it the synthetic faces directly from "
           "their renderer, in an hour of CPU time, so that its style channels act on single face parts (see "
           "`colab_utils/editing/demo_generator.py`). A GAN run on your own photos reaches faces of this kind after "
           "a few thousand kimg on a GPU."),
    ("code", '''
import json
import torch
import torch.nn.functional as F
from colab_utils.editing import synthetic_generator_path
from colab_utils.stylegan2 import generate, load_rosinality

shipped = synthetic_generator_path()
if shipped is None:
    print("the shipped generator is not here (work from a clone of the repository to see it)")
else:
    runs = json.loads(shipped.with_suffix(".json").read_text())["sessions"] if shipped.with_suffix(".json").is_file() else []
    reached = f"step {runs[-1]['step']:,} ({runs[-1]['kimg']} kimg)" if runs else "trained"
    G_shipped = load_rosinality(shipped, device=device).g_ema
    ours = generate(result.g_ema, 8, seed=SEED)
    theirs = generate(G_shipped, 8, seed=SEED)
    ours = F.interpolate(ours, size=theirs.shape[-2:], mode="nearest")   # same tile size, pixels kept visible
    side = viz.image_grid(torch.cat([ours, theirs]), nrow=8,
                          row_labels=[f"this run: step {result.step:,} ({result.step * BATCH / 1000:g} kimg)",
                                      f"shipped: {reached}"])
    side.save(OUT / "this_run_vs_shipped.png")
    viz.show(side)
'''),
    ("md", "## Quality: FID during training\nEvery `FID_EVERY_KIMG` the G average is scored against all training "
           "images (`fid10k_full`, `kid10k_full`; `fid50k_full` when the run completes). The history lives in the "
           "checkpoints, so the curve spans every session (dashed lines: where a session resumed), and the best "
           "snapshot so far is kept as `best-fid.pt` beside the samples."),
    ("code", '''
import json
if SMOKE:
    print("SMOKE mode: these FIDs use a small fixed random network instead of Inception-v3 (nothing downloaded), "
          "so they compare this run's snapshots with each other, not with published FIDs")
print(result.metrics.table())
if result.fid_curve is not None:
    viz.show(Image.open(result.fid_curve))
best = next((p for p in (result.out_dir / "best-fid.json", result.run_dir / "best-fid.json") if p.is_file()), None)
print("best snapshot:", json.loads(best.read_text()) if best else "none yet")
'''),
    ("code", '''
print("loss curves:", result.curves)  # d, g: the two losses; real/fake: mean D logits; r1, pl: penalties; p: ADA
viz.show(Image.open(result.curves))
'''),
    ("md", "## Use the trained generator\nStyle mixing (coarse styles from the top row, the rest from the left "
           "column) and a latent walk. `result.export` is the G average in the rosinality format that the editing "
           "notebook loads."),
    ("code", '''
from colab_utils.stylegan2 import save_interpolation, style_mixing_grid
mixing = style_mixing_grid(result.g_ema, 4, 3, seed=SEED)
mixing.save(OUT / "style_mixing.png")
viz.show(mixing)
walk = save_interpolation(result.g_ema, OUT / "latent_walk.gif", seeds=[0, 1, 2], steps_per_pair=4 if SMOKE else 30)
print("latent walk:", walk, "| rosinality export:", result.export)
'''),
    ("md", "## Or skip training: the public FFHQ weights\nNVIDIA's 1024 px config-f FFHQ generator converted to "
           "PyTorch (rosinality layout, about 360 MB, non-commercial licence), downloaded once to Drive."),
    ("code", '''
from colab_utils import hub
from colab_utils.stylegan2 import generate, load_rosinality
if SMOKE:
    print("SMOKE mode: skipping the 360 MB FFHQ download (run without COLAB_UTILS_SMOKE to sample from FFHQ)")
else:
    try:
        weights = hub.download("stylegan2_ffhq_config_f")
    except (hub.DownloadError, OSError) as err:
        weights = None
        print(f"Could not download the FFHQ weights (offline, or the source moved): {err}")
    if weights is not None:
        ffhq = load_rosinality(weights, device=device)
        faces = generate(ffhq.g_ema, 8, seed=SEED, truncation=0.7, truncation_latent=ffhq.latent_avg, batch_size=4)
        grid = viz.image_grid(faces, nrow=4)
        grid.save(OUT / "ffhq_samples.png")
        viz.show(grid)
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "01_train_stylegan.ipynb"
    write(out, "Train StyleGAN2 on your faces", INTRO, CELLS)
    print("wrote", out)
