"""Source of notebooks/05_video_transfer.ipynb (run: python tools/notebooks/05_video_transfer.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_notebook import write  # noqa: E402

INTRO = """Run StarGAN v2 over a video in one call: the face in every frame is found, aligned, translated with
**one style for the whole clip**, and pasted back; the landmarks are smoothed over time so the face does not
jitter, and the **original sound** is muxed back in sync. Frames stream through the model in batches: nothing
is written to disk but the result, and memory stays flat however long the clip.

Pick a clip (your Drive, an upload, or the built-in synthetic talking face), a reference photo or a domain,
then run the cells top to bottom. The same job from a terminal (a batch of clips overnight, a rented GPU box):
`python -m colab_utils.video translate talk.mp4 --out talk_male.mp4 --checkpoint stargan_v2_celeba_hq --domain
male --side-by-side --gif` (`--help` lists every option)."""

CELLS = [
    ("code", '''
# Parameters. SMOKE is a tiny CPU configuration (CI and the README's main command set COLAB_UTILS_SMOKE=1).
from colab_utils.runtime import smoke_mode
SMOKE = smoke_mode()
from colab_utils.stargan.demo import DEMO_BACKGROUND, DEMO_PRESET, demo_model_path
DEMO = SMOKE and demo_model_path() is not None   # smoke runs: the small StarGAN v2 shipped in assets/ (see below)
CLIP = ""              # a video on Drive, e.g. "/content/drive/MyDrive/clips/me.mp4"; empty: see UPLOAD
UPLOAD = False         # in Colab, pick a clip from your computer; otherwise the synthetic talking face is used
REFERENCE = ""         # a face photo whose style to copy (aligned automatically); empty: a random style
DOMAIN = 1             # a name or an index; CelebA-HQ: "female" 0, "male" 1 (with REFERENCE: the reference's
                       # domain); the demo model: "dark_brunette" 0, "fair_blond" 1
SEED = 0               # picks the random style when there is no REFERENCE
MODE = "whole" if DEMO else "faces"   # "faces" for footage; "whole" when the clip is already a face crop
TEMPORAL_BLEND = 0.3   # 0: off; up to ~0.6: steadier faces, a little ghosting on fast motion
START, END = None, None  # trim the clip (seconds)
SPEED = 1.0            # 2.0 plays twice as fast (the sound keeps its pitch)
BATCH_SIZE = 4 if SMOKE else 16
SYNTHETIC_SECONDS = 1.2 if SMOKE else 4.0
'''),
    ("md", "## Where are we running?\nIn Colab this mounts Google Drive (for your clips and the model); elsewhere it says so and uses local folders."),
    ("code", '''
from pathlib import Path
from colab_utils import runtime
drive = runtime.mount_drive()
device = runtime.default_device()
runtime.describe_device(device, verbose=True)
OUT = runtime.output_dir("05_video_transfer")
print("results go to", OUT)
'''),
    ("md", "## The clip\nYour clip from Drive or an upload; otherwise a synthetic face talking, with a sound track in sync with its mouth."),
    ("code", '''
from IPython.display import Video, display
from colab_utils.data.synthetic_video import make_synthetic_video
from colab_utils.data.video_io import probe

if CLIP:
    clip = Path(CLIP)
elif UPLOAD and runtime.in_colab():
    from google.colab import files
    clip = Path(next(iter(files.upload())))
elif DEMO:   # a close-up of a dark-haired face, like the demo model's training images: it turns fair and blond
    clip = make_synthetic_video(OUT / "talking_face.mp4", seconds=SYNTHETIC_SECONDS, fps=15, size=128,
                                style="dark_brunette", preset=DEMO_PRESET, background=DEMO_BACKGROUND)
else:
    # the smoke clip is nearly square: without MediaPipe or any face detector its frames count as face crops
    clip = make_synthetic_video(OUT / "talking_face.mp4", seconds=SYNTHETIC_SECONDS, fps=15 if SMOKE else 25,
                                frame_size=(144, 128) if SMOKE else (512, 384), face_fraction=0.8)
info = probe(clip)
print(f"{clip.name}: {info.width}x{info.height}, {info.n_frames} frames at {info.fps:.3g} fps, "
      f"{info.duration:.1f} s, {'with' if info.has_audio else 'without'} sound")

def play(path, width=480):
    """Show a video inline with its sound (embedded; very large files are only named)."""
    path = Path(path)
    if path.stat().st_size > 50 * 2**20:
        print(f"{path} is too large to embed here: download it or open it from Drive")
    else:
        display(Video(str(path), embed=True, width=width, html_attributes="controls"))

play(clip)
'''),
    ("md", "## A few frames"),
    ("code", '''
from colab_utils import viz
from colab_utils.data.video_io import iter_frames

step = max(1, info.n_frames // 8)
preview = [frame for i, frame in enumerate(iter_frames(clip)) if i % step == 0][:8]
viz.save_grid(preview, OUT / "preview.png", nrow=4)
viz.show(viz.image_grid(preview, nrow=4))
'''),
    ("md", """## The model
The official CelebA-HQ StarGAN v2 (downloaded once to Drive with its FAN for the face masks). The smoke run uses
the demo StarGAN v2 shipped in `assets/` instead unless the official file is already there: a small model trained on
synthetic faces (`tools/train_stargan_demo.py`), loaded like the official files; without it, a randomly initialised
one whose "translation" is noise-like, but every step of the pipeline runs. In faces mode, faces are found with
MediaPipe where it runs, else with the model's FAN (Python 3.13, Colab's, has no MediaPipe wheel with face models)."""),
    ("code", '''
from colab_utils import hub
from colab_utils.stargan import StarGANConfig, build_nets, load_nets
from colab_utils.stargan.demo import DEMO_NOTE, load_demo

official = runtime.project_dir("downloads") / hub.resolve("stargan_v2_celeba_hq").filename
if official.exists() or not SMOKE:
    nets = load_nets("stargan_v2_celeba_hq", device=device)   # with its FAN (stargan_v2_wing), as the CLI loads it
    config = nets.config
elif DEMO:
    nets = load_demo(device=device)   # an official-format file, read by the loader of the CelebA-HQ networks
    config = nets.config
    print("smoke mode:", DEMO_NOTE)
else:
    config = StarGANConfig(img_size=64, style_dim=16, latent_dim=8, num_domains=2, w_hpf=0, max_conv_dim=64,
                           base_dim=16, hidden_dim=64)
    # a FAN with random weights rides along: without MediaPipe the faces are found with nets.fan, as with the
    # official model (here the landmarks mean nothing, but the FAN path runs)
    nets = build_nets(config, discriminator=False, fan=True).to(device).eval()
print(config)
'''),
    ("md", "## The style: a reference photo or a domain\nOne style code serves the whole clip, so the look does not change from frame to frame."),
    ("code", '''
from PIL import Image
from colab_utils.data.synthetic import make_faces
from colab_utils.stargan.synthesize import domain_index
from colab_utils.video import StarGANFrameModel

DOMAIN = domain_index(nets, DOMAIN)   # a name becomes its index

reference = REFERENCE
if not reference and SMOKE and not DEMO:   # exercise the reference path with a synthetic "photo"
    reference = OUT / "reference.png"
    Image.fromarray(make_faces(1, size=128, seed=7)[0][0]).save(reference)
if reference:
    model = StarGANFrameModel.from_reference(nets, reference, DOMAIN, device=device)
    print(f"style of {reference} (domain {DOMAIN}); its aligned crop:")
    viz.show(model.reference_crop)
else:
    model = StarGANFrameModel.from_latent(nets, DOMAIN, SEED, device=device)
    print(f"a random style of domain {DOMAIN} (seed {SEED})")
'''),
    ("md", "## Translate\nProgress shows frames/s and the time left; the summary counts the frames where a face was found."),
    ("code", '''
from colab_utils.video import translate_video

result = translate_video(clip, OUT / "translated.mp4", model, mode=MODE, batch_size=BATCH_SIZE, device=device,
                         start=START, end=END, speed=SPEED, temporal_blend=TEMPORAL_BLEND,
                         side_by_side=OUT / "side_by_side.mp4", gif=OUT / "translated.gif",
                         preset="ultrafast" if SMOKE else "medium")
'''),
    ("md", "## The result, with its sound"),
    ("code", '''
play(result.output)
print("source | result:")
play(result.side_by_side, width=720)
'''),
    ("code", '''
pairs = [frame for i, frame in enumerate(iter_frames(result.side_by_side)) if i % step == 0][:4]
viz.save_grid(pairs, OUT / "side_by_side.png", nrow=1)
viz.show(viz.image_grid(pairs, nrow=1))
print(f"flicker {result.flicker:.3f}: the result changes {result.flicker:.2f}x as much as the source from frame "
      f"to frame (try TEMPORAL_BLEND to lower it)")
if runtime.in_colab() and not CLIP:
    print("to keep it: from google.colab import files; files.download(str(result.output))")
'''),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "05_video_transfer.ipynb"
    write(out, "Video transfer with StarGAN v2 (sound kept)", INTRO, CELLS)
    print("wrote", out)
