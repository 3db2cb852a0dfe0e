"""Peak memory of :func:`colab_utils.video.translate_video` for two clip lengths: it must not grow with the clip.

    python bench/video_memory.py                      # 2 s and 8 s clips, whole mode, CPU
    python bench/video_memory.py --mode faces --seconds 2,16

Each run is a fresh Python process (so one run's peak cannot hide another's). It reports the resident memory
after imports and model set-up (``VmRSS``), the peak during the whole process (``VmHWM``, Linux), and the
growth between the two; the last column compares each growth with the shortest clip's. The clip sits on disk,
made beforehand by the parent process. A pipeline holding the clip would grow by its decoded size (shown).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} (this bench needs Linux)")


def child(src: str, mode: str, size: int) -> None:
    warnings.filterwarnings("ignore")
    from bench.video_throughput import ConvModel
    from colab_utils.video import translate_video

    model = ConvModel(size)
    baseline = status_kib("VmRSS")
    summary = translate_video(src, Path(src).with_name("out.mp4"), model, mode=mode, progress=False, verbose=False)
    print(json.dumps({"baseline": baseline, "peak": status_kib("VmHWM"), "frames": summary.frames}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("whole", "faces"), default="whole")
    parser.add_argument("--seconds", default="2,8", help="comma-separated clip lengths")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.mode, args.size)

    from colab_utils.data.synthetic_video import make_synthetic_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (float(s) for s in args.seconds.split(",")):
            folder = Path(tmp) / f"{seconds:g}s"
            folder.mkdir()
            shape = {"size": args.size} if args.mode == "whole" else {"frame_size": (2 * args.size, args.size * 3 // 2),
                                                                      "face_fraction": 0.8}
            src = make_synthetic_video(folder / "clip.mp4", seconds=seconds, fps=args.fps, **shape)
            proc = subprocess.run([sys.executable, __file__, "--child", str(src), "--mode", args.mode,
                                   "--size", str(args.size)], capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            width, height = (args.size, args.size) if args.mode == "whole" else shape["frame_size"]
            decoded_mib = result["frames"] * width * height * 3 / 2**20
            rows.append((seconds, result["frames"], decoded_mib, result["baseline"] / 1024, result["peak"] / 1024))

    print(f"mode={args.mode} size={args.size} fps={args.fps:g}\n")
    print(f"{'clip':>6} {'frames':>7} {'decoded clip':>13} {'RSS after setup':>16} {'peak RSS':>9} "
          f"{'growth':>8} {'vs shortest':>12}")
    first_growth = None
    for seconds, frames, decoded, baseline, peak in rows:
        growth = peak - baseline
        first_growth = growth if first_growth is None else first_growth
        print(f"{seconds:>5g}s {frames:>7} {decoded:>10.1f} MiB {baseline:>12.1f} MiB {peak:>5.0f} MiB "
              f"{growth:>4.0f} MiB {growth / max(first_growth, 1e-9):>11.2f}x")


if __name__ == "__main__":
    main()
