"""End-to-end video transfer speed: our streaming pipeline against the seed's frames-on-disk approach, measured
in the same run, and the flicker of the result with and without temporal smoothing.

    python bench/video_throughput.py                          # CPU: a small conv net as the model
    python bench/video_throughput.py --model stargan --device cuda --size 256 --seconds 4   # Colab GPU

Both pipelines go from the source MP4 (with sound) to a finished MP4 with the sound muxed back, with the same
model, the same H.264 settings and the same per-frame work:

- ours: :func:`colab_utils.video.translate_video` (ffmpeg pipe in, batches through the model, pipe out,
  audio muxed by the writer);
- seed: ffmpeg writes every frame as a PNG file, each file is loaded, run through the model alone and saved as a
  PNG, ffmpeg re-assembles the PNGs into a video, and a last ffmpeg call adds the source's audio back.

``whole``: the clip is a face crop at the model's size. ``faces``: a wider shot; ours tracks, smooths and pastes
back; the seed's loop aligns each PNG on its own (no smoothing) and pastes back the same way. Rows show the
median of ``--runs`` runs (ours and seed alternate); ``speed-up`` is seed time / our time.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colab_utils.data.synthetic_video import make_synthetic_video  # noqa: E402
from colab_utils.data.video_io import ffmpeg_exe, probe  # noqa: E402
from colab_utils.stargan import StarGANConfig, build_nets  # noqa: E402
from colab_utils.stargan.align import align_face, face_mask, make_landmarker, paste_back  # noqa: E402
from colab_utils.video import StarGANFrameModel, to_tensor, to_uint8, translate_video  # noqa: E402


class ConvModel(torch.nn.Module):
    """A small fixed random conv net standing in for a generator (cheap enough to expose pipeline costs)."""

    def __init__(self, size: int, width: int = 32):
        super().__init__()
        torch.manual_seed(0)
        self.size = size
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width, 3, 3, padding=1))

    @torch.inference_mode()
    def forward(self, x):
        return torch.tanh(x + 0.5 * self.net(x))


def make_model(kind: str, size: int, device: str):
    if kind == "conv":
        return ConvModel(size).to(device).eval()
    small = dict(max_conv_dim=128, base_dim=16, hidden_dim=128) if device == "cpu" else {}
    config = StarGANConfig(img_size=size, num_domains=2, w_hpf=0, **small)
    torch.manual_seed(0)
    return StarGANFrameModel.from_latent(build_nets(config, discriminator=False), domain=1, seed=0, device=device)


def ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-nostdin", *args], check=True)


def seed_pipeline(src: Path, out: Path, model, mode: str, device: str, work: Path, preset: str) -> None:
    """Frames to PNG files, one frame at a time through the model, PNGs to video, audio added back."""
    frames_in, frames_out = work / "frames", work / "translated"
    frames_in.mkdir()
    frames_out.mkdir()
    ffmpeg("-i", str(src), str(frames_in / "%05d.png"))
    landmarker = make_landmarker("auto") if mode == "faces" else None
    mask = face_mask(model.size)
    for path in sorted(frames_in.glob("*.png")):
        frame = np.asarray(Image.open(path).convert("RGB"))
        if mode == "whole":
            result = to_uint8(model(to_tensor([frame], device)))[0]
        else:
            face = align_face(frame, model.size, landmarker=landmarker)
            crop = to_uint8(model(to_tensor([face.image], device)))[0]
            result = paste_back(frame, crop, face.matrix, mask=mask)
        Image.fromarray(result).save(frames_out / path.name)
    if landmarker is not None:
        landmarker.close()
    silent = work / "silent.mp4"
    fps = probe(src).fps
    ffmpeg("-framerate", f"{fps}", "-i", str(frames_out / "%05d.png"), "-c:v", "libx264", "-preset", preset,
           "-crf", "18", "-pix_fmt", "yuv420p", str(silent))
    ffmpeg("-i", str(silent), "-i", str(src), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
           "-shortest", str(out))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("conv", "stargan"), default="conv")
    parser.add_argument("--size", type=int, default=128, help="model input size (and the whole-mode clip size)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="medium", help="x264 preset, the same for both pipelines")
    parser.add_argument("--modes", default="whole,faces")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = make_model(args.model, args.size, args.device)
    n_frames = round(args.seconds * args.fps)
    print(f"model={args.model} size={args.size} device={args.device} clip={args.seconds:g}s@{args.fps:g}fps "
          f"({n_frames} frames) runs={args.runs} batch={args.batch_size} preset={args.preset}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wide = (2 * args.size, round(1.5 * args.size) // 2 * 2)
        clips = {"whole": make_synthetic_video(tmp / "crop.mp4", seconds=args.seconds, fps=args.fps, size=args.size),
                 "faces": make_synthetic_video(tmp / "wide.mp4", seconds=args.seconds, fps=args.fps, frame_size=wide,
                                               face_fraction=0.8)}
        rows = []
        for mode in args.modes.split(","):
            src = clips[mode]
            ours, seed = [], []
            for run in range(args.runs):
                ours.append(timed(lambda: translate_video(
                    src, tmp / f"ours_{mode}.mp4", model, mode=mode, batch_size=args.batch_size, device=args.device,
                    preset=args.preset, progress=False, verbose=False)))
                work = tmp / f"seed_{mode}_{run}"
                work.mkdir()
                seed.append(timed(lambda: seed_pipeline(src, tmp / f"seed_{mode}.mp4", model, mode, args.device,
                                                        work, args.preset)))
            for name in ("ours", "seed"):
                assert probe(tmp / f"{name}_{mode}.mp4").has_audio
            t_ours, t_seed = statistics.median(ours), statistics.median(seed)
            rows.append((mode, n_frames / t_ours, n_frames / t_seed, t_seed / t_ours))

        print(f"\n{'mode':<7} {'ours frames/s':>14} {'seed frames/s':>14} {'speed-up':>9}")
        for mode, f_ours, f_seed, ratio in rows:
            print(f"{mode:<7} {f_ours:>14.2f} {f_seed:>14.2f} {ratio:>8.2f}x")

        if "faces" in args.modes:
            print(f"\n{'faces mode, temporal smoothing':<44} {'flicker':>8}")
            settings = [("none (raw landmarks, no blending)", dict(smooth=False)),
                        ("landmarks smoothed (One Euro, default)", dict()),
                        ("landmarks smoothed + temporal_blend=0.5", dict(temporal_blend=0.5))]
            for label, options in settings:
                summary = translate_video(clips["faces"], tmp / "flicker.mp4", model, mode="faces",
                                          batch_size=args.batch_size, device=args.device, preset=args.preset,
                                          progress=False, verbose=False, **options)
                print(f"{label:<44} {summary.flicker:>8.3f}")


if __name__ == "__main__":
    main()
