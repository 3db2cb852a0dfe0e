"""The shared command-line handler (issue 13): every CLI, given an unsafe, damaged or foreign file, prints one
clear line and exits 2, never a traceback; a bug still shows its traceback with a request to report it."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from colab_utils import cli
from colab_utils.stargan import __main__ as stargan_cli
from colab_utils.stylegan2 import __main__ as stylegan2_cli

from .helpers_payloads import (assert_nothing_ran, random_bytes, tiny_stargan_file, tiny_stylegan2_file,
                               write_payloads)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Every bad input: (name, path, words the error must hold), plus the payloads and the folders."""
    root = tmp_path_factory.mktemp("bad")
    payloads = write_payloads(root / "payloads")
    cases = [(str(p), p.path, ["is unsafe", p.global_name, "nothing in it was executed"]) for p in payloads]
    cases.append(("random bytes", random_bytes(root / "random.pt"), ["random.pt is damaged"]))
    src = root / "src"
    (root / "ref" / "a").mkdir(parents=True)
    (root / "ref" / "b").mkdir(parents=True)
    src.mkdir()
    return {"cases": cases, "payloads": payloads, "root": root, "src": src, "ref": root / "ref",
            "stylegan2": tiny_stylegan2_file(root / "faces_stylegan2.pt"),
            "stargan": tiny_stargan_file(root / "100000_nets_ema.ckpt")}


def commands(bad, out):
    """(CLI main, argv with {} for the bad file, the model a foreign file is compared with)."""
    src, ref, good_stargan = str(bad["src"]), str(bad["ref"]), str(bad["stargan"])
    return [
        (stylegan2_cli, ["generate", "--ckpt", "{}", "--out", str(out / "s.png"), "--n", "1", "--device", "cpu"],
         "stargan"),
        (stylegan2_cli, ["export", "--ckpt", "{}", "--out", str(out / "e.pt")], "stargan"),
        (stargan_cli, ["sample", "--checkpoint", "{}", "--src", src, "--ref", ref, "--out", str(out / "o"),
                       "--device", "cpu"], "stylegan2"),
        (stargan_cli, ["export", "--checkpoint", "{}", "--out", str(out / "x_nets_ema.ckpt")], "stylegan2"),
        (stargan_cli, ["sample", "--checkpoint", good_stargan, "--fan", "{}", "--src", src, "--ref", ref,
                       "--out", str(out / "o"), "--device", "cpu"], "stylegan2"),
        (stargan_cli, ["align", "--src", src, "--out", str(out / "aligned"), "--fan", "{}"], "stylegan2"),
    ]


FOREIGN_WORDS = {"stargan": "it is a StarGAN v2 checkpoint (official layout",
                 "stylegan2": "StyleGAN2 checkpoint (rosinality layout"}


def test_every_cli_gives_one_clear_line_for_every_bad_input(bad, tmp_path, capsys):
    checked = 0
    for main, argv, foreign in commands(bad, tmp_path):
        cases = bad["cases"] + [(f"a {foreign} file", bad[foreign], [FOREIGN_WORDS[foreign]])]
        for name, path, words in cases:
            line = [str(path) if a == "{}" else a for a in argv]
            code = main.main(line)
            err = capsys.readouterr().err
            what = f"{main.__name__} {argv[0]} on {name}: rc {code}, stderr:\n{err}"
            assert code == 2 and "Traceback" not in err, what
            errors = [e for e in err.splitlines() if ": error: " in e]
            assert len(errors) == 1 and errors[0].startswith("python -m colab_utils."), what
            assert all(w in errors[0] for w in words), what
            checked += 1
    assert checked == 6 * 8
    assert_nothing_ran(bad["payloads"])


@pytest.mark.parametrize("module", ["colab_utils.stylegan2", "colab_utils.stargan"])
def test_python_m_on_bad_files_prints_no_traceback(bad, tmp_path, module):
    """The real entry points, in their own processes: an attack, random bytes and the other model's file."""
    payload = next(p for p in bad["payloads"] if p.kind == "os.system" and p.format == "zip")
    foreign = bad["stargan"] if module.endswith("stylegan2") else bad["stylegan2"]
    for path, words in ((payload.path, ["is unsafe", payload.global_name]), (bad["cases"][-1][1], ["damaged"]),
                        (foreign, ["StarGAN v2" if module.endswith("stylegan2") else "StyleGAN2"])):
        argv = (["export", "--ckpt", str(path), "--out", str(tmp_path / "e.pt")] if module.endswith("stylegan2")
                else ["export", "--checkpoint", str(path), "--out", str(tmp_path / "x_nets_ema.ckpt")])
        done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and all(w in done.stderr for w in words), done.stderr
    assert_nothing_ran(bad["payloads"])


# ---------------------------------------------------------------------------------------------------------
# The handler itself
# ---------------------------------------------------------------------------------------------------------

def test_project_errors_are_one_line_and_exit_2(capsys):
    def fails():
        raise ValueError("faces.zip holds no images:\n  only notes.txt")

    assert cli.call(fails, prog="tool") == 2
    assert capsys.readouterr().err == "tool: error: faces.zip holds no images: only notes.txt\n"
    assert cli.call(lambda: (_ for _ in ()).throw(FileNotFoundError("x.pt does not exist")), prog="tool") == 2
    assert capsys.readouterr().err == "tool: error: x.pt does not exist\n"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(capsys):
    def buggy():
        return {}["missing"]

    assert cli.call(buggy, prog="tool") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'missing'" in err
    assert err.rstrip().splitlines()[-1] == (f"tool: unexpected error (KeyError). This is a bug in colab_utils: "
                                             f"please report it at {cli.ISSUES_URL} with the command you ran and "
                                             f"the traceback above.")


def test_interrupt_warnings_and_return_codes(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.call(interrupted, prog="tool") == 130 and "tool: interrupted" in capsys.readouterr().err

    def warns():
        warnings.warn("crop.mp4 has no audio stream", UserWarning)
        return 0

    assert cli.call(warns, prog="tool") == 0
    assert capsys.readouterr().err == "tool: warning: crop.mp4 has no audio stream\n"
    assert cli.call(lambda: None, prog="tool") == 0 and cli.call(lambda: 3, prog="tool") == 3


def test_device_and_checkpoint_arguments(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="tool")
    cli.add_checkpoint_argument(parser, "--ckpt", "--checkpoint", help="weights")
    cli.add_device_argument(parser)
    args = parser.parse_args(["--checkpoint", str(tmp_path)])
    assert args.checkpoint == tmp_path and args.device == "auto"
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--ckpt", str(tmp_path / "nope.pt")])
    assert caught.value.code == 2 and f"{tmp_path / 'nope.pt'} does not exist" in capsys.readouterr().err
    assert cli.device_from("auto") == (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    assert cli.device_from("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu0' is not a device"):
        cli.device_from("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible here"):
            cli.device_from("cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            cli.device_from(f"cuda:{torch.cuda.device_count()}")
