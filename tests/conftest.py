import os
from pathlib import Path

import pytest
import torch

# Keep torch from oversubscribing the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone): fixture tests skipped")
    return SHARED


@pytest.fixture
def one_thread():
    """Torch on one thread (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    convolutions run fastest that way, and far faster when other jobs share the two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
