"""The platform report every notebook prints first: right versions, and never "install X" where X has no wheel."""
import sys

import pytest

from colab_utils import versions


def test_report_names_python_torch_ffmpeg_and_landmarks():
    import imageio_ffmpeg
    import torch

    lines = versions.platform_report().splitlines()
    assert lines[0] == f"Python {sys.version.split()[0]}"
    assert lines[1].startswith(f"torch {torch.__version__}, ")
    assert ("CPU only" in lines[1]) == (not torch.cuda.is_available())
    assert lines[2].startswith(f"ffmpeg {imageio_ffmpeg.get_ffmpeg_version()} ")
    assert lines[3].startswith("face landmarks: ")


@pytest.mark.parametrize("python", [(3, 13, 5), (3, 14, 0)])
def test_report_gives_no_install_advice_where_mediapipe_has_no_wheel(monkeypatch, python):
    from colab_utils.stargan import landmarks
    monkeypatch.setattr(landmarks.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(landmarks, "_python_version", lambda: python[:2])
    line = versions.platform_report().splitlines()[3]
    assert line.startswith("face landmarks: FAN (")
    assert "install" not in line
