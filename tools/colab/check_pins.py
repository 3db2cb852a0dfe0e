"""Fail when an installed package differs from Colab's pinned version.

    python tools/colab/check_pins.py tools/colab/constraints-colab.txt

pip with ``-c constraints`` already refuses to *choose* another version of a pinned package; this check
also catches a package that came in some other way (an earlier install in a reused environment, a
``--no-deps`` install) so that the tests really ran on Colab's versions. Prints the versions that matter
to this project.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata

SHOWN = ("torch", "torchvision", "numpy", "pillow", "imageio", "imageio-ffmpeg", "moviepy", "gdown", "ipywidgets",
         "ipykernel", "ipython", "jupyter-client", "nbclient", "matplotlib", "tqdm", "pytest")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict[str, str]:
    pins = {}
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def main(path: str) -> int:
    pins = read_pins(path)
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    wrong = sorted(f"{name} {installed[name]} (Colab has {pins[name]})" for name in installed
                   if name in pins and installed[name].split("+")[0] != pins[name].split("+")[0])
    print(f"Python {sys.version.split()[0]}; " + ", ".join(f"{n} {installed[n]}" for n in SHOWN if n in installed))
    if wrong:
        print("packages that differ from Colab's pins:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    print(f"{sum(n in pins for n in installed)} installed packages match Colab's pins; "
          f"{len([n for n in installed if n not in pins])} are not in Colab's list")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tools/colab/constraints-colab.txt"))
