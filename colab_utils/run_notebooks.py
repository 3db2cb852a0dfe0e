"""Execute the notebook suite top to bottom, the way CI and the README's main command do.

    python -m colab_utils.run_notebooks --smoke --out outputs

Each notebook runs in a fresh kernel with ``COLAB_UTILS_SMOKE=1`` (tiny CPU configuration) and
``COLAB_UTILS_OUTPUT=<out>/<notebook name>`` (where it writes its PNG grids); the executed copy, with its
outputs, is written to ``<out>/<notebook name>.ipynb``. Any cell error stops that notebook and is reported
with the cell that failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass
class NotebookResult:
    name: str
    ok: bool
    seconds: float
    executed_path: Path | None
    images: list[Path]
    error: str | None = None


def list_notebooks(folder: str | os.PathLike = NOTEBOOK_DIR) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist")
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def execute_notebook(path: str | os.PathLike, out_dir: str | os.PathLike, *, smoke: bool = True,
                     timeout: int = 600, kernel_name: str = "python3") -> NotebookResult:
    """Run one notebook in a fresh kernel; write the executed copy and its images under ``out_dir``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    out_dir = Path(out_dir).resolve()
    image_dir = out_dir / path.stem
    image_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    env_backup = {k: os.environ.get(k) for k in ("COLAB_UTILS_SMOKE", "COLAB_UTILS_OUTPUT", "MPLBACKEND")}
    os.environ["COLAB_UTILS_SMOKE"] = "1" if smoke else "0"
    os.environ["COLAB_UTILS_OUTPUT"] = str(image_dir)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)
    finally:
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - start
    executed = out_dir / path.name
    nbformat.write(nb, executed)
    images = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in {".png", ".gif", ".mp4"})
    return NotebookResult(path.stem, error is None, seconds, executed, images, error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the colab_utils notebooks top to bottom.")
    parser.add_argument("--out", default="outputs", help="folder for executed notebooks and their images (default: outputs)")
    parser.add_argument("--smoke", action=argparse.BooleanOptionalAction, default=True,
                        help="tiny CPU configuration (default on); --no-smoke runs the full configuration")
    parser.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run; default: all")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    args = parser.parse_args(argv)

    notebooks = list_notebooks()
    if args.only:
        wanted = set(args.only)
        notebooks = [p for p in notebooks if p.stem in wanted or p.name in wanted]
        if not notebooks:
            parser.error(f"no notebook matches {sorted(wanted)} in {NOTEBOOK_DIR}")
    results = []
    for nb in notebooks:
        print(f"running {nb.name} ...", flush=True)
        result = execute_notebook(nb, args.out, smoke=args.smoke, timeout=args.timeout)
        results.append(result)
        status = "ok" if result.ok else "FAILED"
        print(f"  {status} in {result.seconds:.1f} s, {len(result.images)} image(s) in {Path(args.out) / nb.stem}", flush=True)
        if result.error:
            print(result.error[-3000:], file=sys.stderr)
    failed = [r.name for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} of {len(results)} notebooks ran; executed copies in {Path(args.out).resolve()}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
