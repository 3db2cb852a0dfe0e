"""Write a notebook from a list of (kind, source) cells: the one place that knows our standard first cells.

    python tools/make_notebook.py  (imported by the per-notebook scripts in tools/notebooks/)
"""
from __future__ import annotations

from pathlib import Path

import nbformat

REPO = "colab-utils/colab_utils"
INSTALL_CELL = f'''# Setup. In Colab this installs colab_utils from GitHub (torch and the rest are already there);
# elsewhere install it once with `pip install -e .` from a clone.
import subprocess, sys
IN_COLAB = "google.colab" in sys.modules  # Colab's kernel imports it at start; no `google` package elsewhere
if IN_COLAB:
    try:
        import colab_utils
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{REPO}"], check=True)
from colab_utils.versions import platform_report
print(platform_report())  # what this runtime has, and what stands in where Colab lacks something'''


def badge(name: str) -> str:
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def write(path: Path, title: str, intro: str, cells: list[tuple[str, str]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["accelerator"] = "GPU"
    nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\n{badge(path.name)}\n\n{intro}"))
    nb.cells.append(nbformat.v4.new_code_cell(INSTALL_CELL))
    for kind, source in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(make(source.strip("\n")))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
