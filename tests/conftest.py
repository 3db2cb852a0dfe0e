import os
from pathlib import Path

import pytest

# Keep torch from oversubscribing the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone): fixture tests skipped")
    return SHARED
