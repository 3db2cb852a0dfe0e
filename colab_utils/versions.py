"""What this platform runs: the versions a notebook's first cell prints, and what stands in where Colab lacks
something.

Colab ships older majors than a fresh install (Python 3.13 without a mediapipe wheel, ffmpeg 7 through
imageio-ffmpeg 0.6, moviepy 1.0.3, ipywidgets 7.7); the code works on both sides, and this report says which
side a session is on, so that a user never reads "install X" where X cannot be installed.

    from colab_utils.versions import platform_report
    print(platform_report())
"""
from __future__ import annotations

import sys
from importlib import metadata


def package_version(name: str) -> str | None:
    """The installed distribution's version, or ``None`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _torch_line() -> str:
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        where = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU: {', '.join(names)}"
    else:
        built = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        where = f"CPU only ({built}, no GPU visible)"
    return f"torch {torch.__version__}, {where}"


def _ffmpeg_line() -> str:
    try:
        import imageio_ffmpeg

        return f"ffmpeg {imageio_ffmpeg.get_ffmpeg_version()} (imageio-ffmpeg {package_version('imageio-ffmpeg')})"
    except (ImportError, RuntimeError, OSError) as exc:  # no binary for this platform
        return f"ffmpeg: not found ({exc}); video needs it: pip install imageio-ffmpeg"


def _landmark_line() -> str:
    # The capability package owns the landmark choice; this report only repeats its one line (mediapipe is
    # not imported, so the report stays cheap).
    from colab_utils.stargan.landmarks import landmark_backend_report

    return f"face landmarks: {landmark_backend_report()}"


def platform_report() -> str:
    """Python, torch and its device, ffmpeg, the landmark backend, and the versions that differ between
    Colab and a fresh install, one line each."""
    lines = [f"Python {sys.version.split()[0]}", _torch_line(), _ffmpeg_line(), _landmark_line()]
    others = []
    for name in ("moviepy", "ipywidgets", "gdown", "pillow", "numpy"):
        version = package_version(name)
        others.append(f"{name} {version}" if version else f"{name}: not installed")
    lines.append(", ".join(others))
    return "\n".join(lines)
