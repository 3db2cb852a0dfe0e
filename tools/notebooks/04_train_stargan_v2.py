"""Source of notebooks/04_train_stargan_v2.ipynb (run: python tools/notebooks/04_train_stargan_v2.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Train StarGAN v2 (Choi et al., CVPR 2020) on your own domains (e.g. `female/` and `male/`, or your team
and celebrities) over as many Colab sessions as it takes, then put **your own photos** into the style of
reference faces: each photo is aligned like CelebA-HQ first, so a phone selfie works as a source or a reference.
You can also skip training and use the official CelebA-HQ networks.

Runtime → Change runtime type → GPU first. The official CelebA-HQ model trained for 100k iterations at batch 8
(about three days on one V100); **re-running the notebook after a disconnect continues training exactly where the
last checkpoint left off**. The synthetic two-domain default shows the whole loop in minutes."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
RUN_NAME = "stargan_v2_faces"  # one folder per run; reuse the name to continue a run
DATA = "synthetic"             # or "/content/drive/MyDrive/faces.zip" with train/<domain>/ (and val/<domain>/) folders
IMG_SIZE = 32 if SMOKE else 256
BATCH = 4 if SMOKE else 8
TOTAL_ITERS = 4 if SMOKE else 100_000
W_HPF = 0 if SMOKE else 1      # high-pass skip with FAN face masks: 1 for faces, 0 for anything else (animals...)
SAMPLE_EVERY = 2 if SMOKE else 5000
SESSION_HOURS = 11.5           # stop with a checkpoint before Colab ends the session (ignored outside Colab)
EVAL_SOURCES = 4 if SMOKE else None  # evaluation: validation images per domain (None: all of them, the protocol)
EVAL_OUTS = 3 if SMOKE else 10       # outputs per source image (10 in the paper)
USE_OFFICIAL = not SMOKE       # also download the official CelebA-HQ networks (female/male) for the grids
PHOTOS = ""                    # a folder of your photos (on Drive); empty in Colab: upload them below
REFERENCES = ""                # a folder of reference photos in <domain>/ sub-folders; empty: see below
SEED = 777
'''),
    ("md", "## Where are we running?\nThe GPU decides the precision: bf16 on A100/L4, fp16 with a grad scaler on a "
           "T4, fp32 on the CPU (`precision=\"fp32\"` reproduces the official code exactly)."),
    ("code", '''
from colab_utils import runtime
info = runtime.describe_device(verbose=True)
device = info.device
'''),
    ("md", "## Google Drive\nCheckpoints, sample grids, loss curves and the official-format export go to the fast "
           "local disk and are copied to Drive in the background. A full, disconnected or hung Drive never stops "
           "training: it is warned about once, copies are retried, and the end of the run waits at most a minute "
           "for Drive, then names what is only on local disk and the command that copies it."),
    ("code", '''
from pathlib import Path
drive = runtime.mount_drive()
# Colab with Drive: /content/runs/RUN_NAME, copied to MyDrive/colab_utils/runs/RUN_NAME; else ./checkpoints/runs
RUN_DIR, DRIVE_DIR = (runtime.output_dir("run"), None) if SMOKE else runtime.run_folders(RUN_NAME)
OUT = runtime.output_dir(RUN_NAME)
print("checkpoints:", RUN_DIR, "| Drive copy:", DRIVE_DIR, "| pictures:", OUT)
'''),
    ("md", """## Data
One folder per domain: `train/<domain>/` (and optionally `val/<domain>/` for the sample grids). A zip on Drive is
copied to local disk and unpacked once. Every domain is sampled equally often however many images it has;
unreadable files are skipped and named. The default draws two domains of synthetic faces (dark skin and hair, fair
skin and blond hair) in front of one studio backdrop, so that a translation has no background to change."""),
    ("code", '''
from colab_utils import viz
from colab_utils.data.synthetic import write_domain_folders
from colab_utils.stargan.data import domain_counts, fixed_examples, load_domains

if DATA == "synthetic":
    DATA = write_domain_folders(Path("/content/data" if runtime.in_colab() else runtime.output_dir()) / "synthetic_domains",
                                n_train=16 if SMOKE else 2000, n_val=4 if SMOKE else 50, size=IMG_SIZE, seed=0,
                                preset="portrait", background="studio")
train_set = load_domains(DATA, IMG_SIZE)
print(train_set.root, domain_counts(train_set))
examples, labels = fixed_examples(train_set, 4)
viz.show(viz.image_grid(examples, nrow=4, row_labels=train_set.domains))
'''),
    ("md", """## Train
The official objective and schedule: per iteration two discriminator steps and two generator steps (latent- and
reference-guided), moving averages of the networks, the diversity weight decaying to 0. With `W_HPF = 1` the
generator keeps the source's facial details through FAN face masks (its weights are downloaded once).
**Interrupt at any time; re-run this cell, or the whole notebook after a disconnect, to continue.**"""),
    ("code", '''
from colab_utils import hub
from colab_utils.stargan.train import TrainConfig, train

fan_path = str(hub.download("stargan_v2_wing")) if W_HPF > 0 else None
if SMOKE:
    import torch
    torch.set_num_threads(1)  # networks this tiny run fastest on one CPU thread (and CI shares its cores)
    config = TrainConfig(img_size=IMG_SIZE, base_dim=8, max_conv_dim=16, hidden_dim=16, style_dim=8, latent_dim=4,
                         w_hpf=W_HPF, total_iters=TOTAL_ITERS, batch=BATCH, workers=0, sample_every=SAMPLE_EVERY,
                         sample_per_domain=2, log_every=1, checkpoint_minutes=0, seed=SEED)
else:
    config = TrainConfig(img_size=IMG_SIZE, w_hpf=W_HPF, total_iters=TOTAL_ITERS, batch=BATCH, sample_every=SAMPLE_EVERY,
                         seed=SEED, fan_path=fan_path, drive_dir=str(DRIVE_DIR) if DRIVE_DIR else None,
                         session_hours=SESSION_HOURS if runtime.in_colab() else None)
result = train(config, DATA, RUN_DIR, device=device)
print(f"iteration {result.step} of {config.total_iters}; diversity weight now {result.lambda_ds:.3f}; "
      f"official-format export: {result.exported}")
print(result.drive_status)  # e.g. "last checkpoint on Drive: step 1200, 3 minutes ago"
'''),
    ("md", "## Samples and losses\nEvery `SAMPLE_EVERY` iterations: the reference-guided grid (first row references, "
           "first column sources) and latent-guided samples, drawn with the moving-average networks."),
    ("code", '''
from PIL import Image
samples = sorted((Path(RUN_DIR) / "samples").glob("*_reference.png"))  # local disk: there even when Drive is not
if samples:
    print(samples[-1])
    viz.show(Image.open(samples[-1]))
curves = Path(RUN_DIR) / "losses.png"
if curves.exists():
    viz.show(Image.open(curves))  # D/real, D/fake, D/reg (R1); G/adv, G/sty, G/ds, G/cyc; the diversity weight
'''),
    ("md", """## Evaluation: the paper's FID and LPIPS
StarGAN v2's protocol for the trained networks: every validation image of each domain is translated into every
other domain `EVAL_OUTS` times, with random latent codes (latent-guided) and with the target domain's validation
images as references (reference-guided). FID compares the outputs with the target domain's training images; LPIPS
measures how different the outputs of one source are (diversity). The paper's CelebA-HQ model reaches FID 13.73 /
23.84 and LPIPS 0.452 / 0.388 (latent / reference). Inception-v3 and AlexNet weights are downloaded once to Drive."""),
    ("code", '''
from colab_utils import metrics

if SMOKE:
    print("SMOKE mode: FID from a small fixed random network and LPIPS on a random AlexNet (nothing downloaded), "
          "so the table shows the protocol and its layout, not numbers comparable with the paper")
    extractor, lpips = metrics.RandomFeatures(), metrics.LPIPS("alex")
else:
    extractor, lpips = None, None  # Inception-v3 (torch-fidelity's TensorFlow port) and AlexNet-LPIPS via the hub
evaluation = metrics.evaluate_stargan_v2(result.nets, DATA, num_outs=EVAL_OUTS, max_sources=EVAL_SOURCES,
                                         extractor=extractor, lpips=lpips, device=device, seed=SEED)
print(evaluation.table())
print("saved:", evaluation.save(OUT / "stargan_v2_eval.json"))
'''),
    ("md", """## The official CelebA-HQ networks
The released 256 px model (domains female and male, w_hpf=1) and its FAN, downloaded once to Drive
(CC BY-NC 4.0: non-commercial use). Skipped in smoke mode and when offline. Smoke mode uses the demo model
shipped with the project instead (`assets/stargan_v2_demo_32_nets_ema.ckpt`, loaded like the official files), so
the grids show a real translation; without either, the model trained above."""),
    ("code", '''
from colab_utils.stargan import load_official
from colab_utils.stargan.demo import DEMO_NOTE, demo_faces, demo_model_path, load_demo

official = demo = None
if SMOKE or not USE_OFFICIAL:
    print("skipping the official CelebA-HQ download (SMOKE mode or USE_OFFICIAL = False): the grids use the model "
          "trained above")
else:
    try:
        official, official_config = load_official(hub.download("stargan_v2_celeba_hq"), device=device,
                                                  fan_path=hub.download("stargan_v2_wing"))
        official.domains = ["female", "male"]
        print(official_config)
    except (hub.DownloadError, OSError) as err:
        print(f"Could not download the official weights (offline, or the source moved): {err}; using the trained model")
if official is None and SMOKE and demo_model_path() is not None:
    demo = load_demo(device=device)   # an official-format file: the loader of the CelebA-HQ networks reads it
    print("smoke mode:", DEMO_NOTE)
model = official if official is not None else demo if demo is not None else result.nets
size = model.generator.img_size
'''),
    ("md", """## Your photos, aligned like CelebA-HQ
The face is found, five landmarks (eyes, nose, mouth corners) are located, and a similarity transform puts them
where CelebA-HQ has them. Photos without a face are named and skipped. Landmarks come from MediaPipe Face Mesh where
it runs (offline; it has no wheel with its face models for Python 3.13, Colab's), else from the FAN of the StarGAN v2
release: the official networks' own, or `wing.ckpt` downloaded once to Drive."""),
    ("code", '''
import shutil
from colab_utils.data.synthetic import write_image_folder
from colab_utils.stargan.align import align_folder
from colab_utils.stargan.fan import FAN
from colab_utils.stargan.landmarks import make_landmarker, mediapipe_status

shared_celeba = Path("..").resolve() / "shared" / "data" / "celeba_hq_256"
photos = Path(PHOTOS) if PHOTOS else OUT / "photos"
if not PHOTOS:
    photos.mkdir(parents=True, exist_ok=True)
    if runtime.in_colab() and not SMOKE:
        from google.colab import files
        for name, data in files.upload().items():   # choose a few face photos
            (photos / name).write_bytes(data)
    elif (shared_celeba / "src").is_dir():          # the CelebA-HQ samples next to the repository
        for domain in ("female", "male"):
            for path in sorted((shared_celeba / "src" / domain).glob("*.jpg"))[:2]:
                shutil.copy(path, photos / path.name)
    else:                                            # synthetic "photos"
        write_image_folder(photos, 4, size=256, seed=5)
fan = official.fan if official is not None else None
if fan is None and SMOKE and not mediapipe_status()[0]:
    fan = FAN()  # smoke run without MediaPipe: random weights stand in for wing.ckpt (the path runs, the crops mean nothing)
landmarker = make_landmarker("auto", fan=fan, device=device, download=not SMOKE)
print("landmarks:", landmarker.description)
report = align_folder(photos, OUT / "aligned", size=256, landmarker=landmarker)
print(f"{len(report.aligned)} aligned ({len(report.whole_image)} taken whole as face crops), no face in "
      f"{len(report.no_face)}, unreadable {len(report.unreadable)}")
aligned_dir = OUT / "aligned" if report.aligned else photos  # nothing aligned: use them as they are
'''),
    ("md", """## Your photos in the style of references
Each row is one of your photos, each column takes the style of the reference at its top. References: the
`REFERENCES` folder (aligned here), else CelebA-HQ celebrities (the samples next to the repository, or the
CelebA-HQ validation split, a large one-time download) for the official model, else the validation images of
your dataset."""),
    ("code", '''
import torch
from colab_utils.data.images import DomainFolderDataset, ImageFolderDataset
from colab_utils.stargan.synthesize import latent_grid, reference_grid, style_interpolation_gif

if REFERENCES:
    for domain in sorted(d for d in Path(REFERENCES).iterdir() if d.is_dir()):
        align_folder(domain, OUT / "references" / domain.name, size=256, landmarker=landmarker)
    ref_root = OUT / "references"
elif official is not None:
    ref_root = shared_celeba / "ref" if (shared_celeba / "ref").is_dir() else hub.fetch_dataset("celeba_hq_dataset") / "celeba_hq" / "val"
else:
    ref_root = load_domains(DATA, size, split="val", min_images=1).root
refs = DomainFolderDataset(ref_root, size)
refs_x, refs_y = fixed_examples(refs, 3)
ref_domains = torch.tensor([model.domains.index(refs.domains[int(d)]) for d in refs_y])
sources = ImageFolderDataset(aligned_dir, size)
src = torch.stack([sources[i] for i in range(min(len(sources), 6))])
if demo is not None:   # the demo knows synthetic faces only: translate faces of its two domains, never seen in training
    src = torch.cat([demo_faces(3, d, size, seed=1)[0] for d in range(2)])
    refs_x = torch.cat([demo_faces(2, d, size, seed=2)[0] for d in range(2)])
    ref_domains = torch.tensor([0, 0, 1, 1])
    print("sources and references: synthetic faces of the demo's domains", model.domains)
grid = reference_grid(model, src, refs_x, ref_domains, path=OUT / "reference_grid.png")
viz.show(grid)
'''),
    ("md", "## Latent-guided samples and the style interpolation\nRandom styles of every domain; then the style "
           "glides from one reference to the next (the official release's `ref_vid`)."),
    ("code", '''
names = list(model.domains)
latent = latent_grid(model, src, per_domain=2, seed=SEED, domain_names=names, path=OUT / "latent_samples.png")
viz.show(latent)
gif = style_interpolation_gif(model, src[:3], refs_x, ref_domains, OUT / "ref_vid.gif", steps=3 if SMOKE else 20)
print("style interpolation:", gif)
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "04_train_stargan_v2.ipynb"
    write(out, "Train StarGAN v2 and translate your own photos", INTRO, CELLS)
    print("wrote", out)
