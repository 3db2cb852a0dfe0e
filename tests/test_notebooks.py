"""Every notebook runs top to bottom in smoke mode, and committed notebooks carry no stale outputs."""
import json
from pathlib import Path

import pytest

from colab_utils.run_notebooks import NOTEBOOK_DIR, execute_notebook, list_notebooks

NOTEBOOKS = list_notebooks()
MAX_COMMITTED_OUTPUT_BYTES = 2_000


def test_suite_is_complete():
    names = {p.stem for p in NOTEBOOKS}
    assert "00_setup_check" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_stale_outputs(path):
    nb = json.loads(path.read_text())
    size = sum(len(json.dumps(cell.get("outputs", []))) for cell in nb["cells"] if cell["cell_type"] == "code")
    assert size <= MAX_COMMITTED_OUTPUT_BYTES, f"{path.name} carries {size} bytes of outputs: clear them before committing"
    assert all(cell.get("execution_count") is None for cell in nb["cells"] if cell["cell_type"] == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_in_smoke_mode(path, tmp_path):
    result = execute_notebook(path, tmp_path, smoke=True, timeout=600)
    assert result.ok, f"{path.name} failed:\n{result.error}"
    assert result.images, f"{path.name} wrote no picture to its output folder"
    assert all(p.stat().st_size > 0 for p in result.images)
