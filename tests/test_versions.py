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


def fake_versions(monkeypatch, installed: dict):
    monkeypatch.setattr(versions, "package_version", lambda name: installed.get(name))
    monkeypatch.setattr(versions.importlib.util, "find_spec",
                        lambda name: object() if name in installed else None)


@pytest.mark.parametrize("python", [(3, 13, 5), (3, 14, 0)])
def test_no_install_advice_where_mediapipe_has_no_wheel(monkeypatch, python):
    fake_versions(monkeypatch, {})
    monkeypatch.setattr(versions.sys, "version_info", python)
    usable, why = versions.mediapipe_status()
    assert not usable
    assert why == f"mediapipe has no wheel for Python {python[0]}.{python[1]}"
    assert "install" not in why


def test_mediapipe_status_on_older_pythons(monkeypatch):
    monkeypatch.setattr(versions.sys, "version_info", (3, 11, 7))
    fake_versions(monkeypatch, {})
    assert versions.mediapipe_status() == (False, "mediapipe is not installed (pip install 'colab_utils[faces]' adds it on this Python)")
    fake_versions(monkeypatch, {"mediapipe": "0.10.21"})
    assert versions.mediapipe_status() == (True, "mediapipe 0.10.21")
    fake_versions(monkeypatch, {"mediapipe": "0.10.31"})
    usable, why = versions.mediapipe_status()
    assert not usable and "no longer bundles" in why
