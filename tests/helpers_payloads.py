"""Real attack payloads and bad files for the safe-loading tests (issue 13).

Each payload is an object whose ``__reduce__`` makes unpickling call ``os.system``, ``subprocess.Popen`` or
``builtins.eval``, and each call would create a marker file, so a test can prove that nothing ran. They are
written in torch's zip format and its legacy pickle format (``_use_new_zipfile_serialization=False``), as a
model file someone could hand a user. Besides them: random bytes, and small but genuine files of each model
to hand to the other model's loader.
"""
from __future__ import annotations

import builtins
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

KINDS = ("os.system", "subprocess.Popen", "builtins.eval")
FORMATS = ("zip", "legacy")
# How the pickle spells each global (os.system lives in posix on Linux and macOS, nt on Windows).
GLOBALS = {"os.system": f"{os.system.__module__}.system", "subprocess.Popen": "subprocess.Popen",
           "builtins.eval": "builtins.eval"}


class Attack:
    """Unpickling this calls ``kind`` with arguments that create ``marker``."""

    def __init__(self, kind: str, marker: Path):
        self.kind, self.marker = kind, str(marker)

    def __reduce__(self):
        write = f"open({self.marker!r}, 'w').close()"
        if self.kind == "os.system":
            return os.system, (f'"{sys.executable}" -c "{write}"',)
        if self.kind == "subprocess.Popen":
            return subprocess.Popen, ([sys.executable, "-c", write],)
        return builtins.eval, (write,)


@dataclass(frozen=True)
class Payload:
    path: Path
    kind: str
    format: str
    marker: Path

    @property
    def global_name(self) -> str:
        return GLOBALS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}/{self.format}"


def write_payloads(folder: Path, *, name: str = "model", wrap=lambda attack: {"weights": attack}) -> list[Payload]:
    """One file per kind and format in ``folder``; ``wrap`` puts the attack inside what the file seems to be."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for kind in KINDS:
        for fmt in FORMATS:
            tag = f"{kind.replace('.', '_')}_{fmt}"
            marker, path = folder / f"ran_{tag}", folder / f"{name}_{tag}.pt"
            torch.save(wrap(Attack(kind, marker)), path, _use_new_zipfile_serialization=fmt == "zip")
            out.append(Payload(path, kind, fmt, marker))
    return out


def random_bytes(path: Path, size: int = 4096, seed: int = 0) -> Path:
    path.write_bytes(torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(seed),
                                   dtype=torch.uint8).numpy().tobytes())
    return path


def assert_nothing_ran(payloads) -> None:
    """No payload's marker exists. A Popen child would write its marker a moment after the call returned, so
    this waits for any such child first (a process spawned by a payload is a child of this one)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not any(p.marker.exists() for p in payloads):
        if _no_children():
            break
        time.sleep(0.05)
    ran = [str(p) for p in payloads if p.marker.exists()]
    assert not ran, f"payloads executed: {ran}"


def _no_children() -> bool:
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if children.exists():
        return not children.read_text().split()
    time.sleep(0.5)  # no /proc: give a spawned child time to show itself
    return True


def tiny_stylegan2_file(path: Path) -> Path:
    """A genuine rosinality StyleGAN2 file (32 px, 16 channels)."""
    from colab_utils.stylegan2 import Generator, export_rosinality

    torch.manual_seed(0)
    G = Generator(32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 16})
    return export_rosinality(path, G, latent_avg=torch.zeros(16))


def tiny_stargan_file(path: Path) -> Path:
    """A genuine official-layout StarGAN v2 *_nets_ema.ckpt (32 px, w_hpf=0)."""
    from colab_utils.stargan import StarGANConfig, build_nets, export_official

    torch.manual_seed(0)
    config = StarGANConfig(img_size=32, style_dim=8, latent_dim=4, num_domains=2, w_hpf=0, max_conv_dim=16,
                           base_dim=8, hidden_dim=16)
    return export_official(build_nets(config, discriminator=False), path)
