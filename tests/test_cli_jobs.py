"""Issue 17: the command lines of the notebook jobs, ``python -m colab_utils.video translate`` and
``python -m colab_utils.editing catalog|name|transfer|locality``, driven end to end on the shipped assets and
the synthetic clip; bad input is one error line, exit 2, no traceback and nothing left behind."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils import cli
from colab_utils.data.synthetic_video import make_synthetic_video
from colab_utils.data.video_io import VideoWriter, iter_frames, probe
from colab_utils.editing import __main__ as editing_cli
from colab_utils.editing.generators import SYNTHETIC_ASSET, load_generator, synthetic_generator_path
from colab_utils.stargan import __main__ as stargan_cli
from colab_utils.stargan.demo import DEMO_ASSET, DEMO_DOMAINS, demo_model_path
from colab_utils.video import __main__ as video_cli

from .helpers_payloads import tiny_stargan_file, tiny_stylegan2_file

REPO = Path(__file__).resolve().parents[1]
FPS, SECONDS = 10, 0.8
FRAMES = round(FPS * SECONDS)
FAST = ["--preset", "ultrafast", "--no-progress", "--device", "cpu"]


def stargan_demo(folder: Path) -> Path:
    """The shipped demo StarGAN v2 (official layout); where it is not in assets/ yet, a small random network
    in the same layout under the demo's file name, so the loaders treat it alike (domains named)."""
    shipped = demo_model_path(download=False)
    if shipped is not None:
        return shipped
    return tiny_stargan_file(folder / DEMO_ASSET)


def synthetic_generator() -> Path:
    path = synthetic_generator_path(download=False)
    if path is None:
        pytest.skip(f"{SYNTHETIC_ASSET} is not in assets/")
    return path


def exit_code(main, argv) -> int:
    """``main(argv)``'s exit code, also where argparse exits by itself (a bad command line)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def one_error_line(err: str, prog: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(prog), err
    return errors[0]


def mediapipe_or_skip():
    from colab_utils.stargan.landmarks import mediapipe_status

    usable, why = mediapipe_status()
    if not usable:
        pytest.skip(f"faces mode needs landmarks: MediaPipe {why}")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    blank = root / "blank.mp4"
    with VideoWriter(blank, FPS, audio_from=make_synthetic_video(root / "voice.mp4", seconds=SECONDS, fps=FPS,
                                                                 size=32)) as writer:
        for _ in range(FRAMES):
            writer.write(np.full((64, 80, 3), 128, np.uint8))
    return {
        "crop": make_synthetic_video(root / "talk.mp4", seconds=SECONDS, fps=FPS, size=64, style="dark_brunette",
                                     preset="portrait"),
        "wide": make_synthetic_video(root / "wide.mp4", seconds=SECONDS, fps=FPS, frame_size=(128, 96),
                                     face_fraction=0.8, seed=1),
        "blank": blank,
        "stargan": stargan_demo(root),
        "stylegan2": tiny_stylegan2_file(root / "faces_stylegan2.pt"),
    }


# ---------------------------------------------------------------------------------------------------------
# python -m colab_utils.video translate
# ---------------------------------------------------------------------------------------------------------

def test_translate_whole_mode_writes_every_output_with_the_sound(media, tmp_path, capsys):
    out = tmp_path / "blond.mp4"
    code = video_cli.main(["translate", str(media["crop"]), "--out", str(out), "--checkpoint", str(media["stargan"]),
                           "--domain", DEMO_DOMAINS[1], "--mode", "whole", "--side-by-side", "--gif",
                           "--temporal-blend", "0.3", "--batch-size", "3", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    side, gif = tmp_path / "blond_side_by_side.mp4", tmp_path / "blond.gif"
    lines = captured.out.strip().splitlines()
    assert lines == [f"wrote {out} (and {side}, {gif}): {FRAMES} frames at 10 fps, {FRAMES} translated whole, "
                     f"{lines[0].split(', ')[-2]}, audio kept"]
    info, pair = probe(out), probe(side)
    assert (info.n_frames, info.fps, info.width, info.height, info.has_audio) == (FRAMES, FPS, 64, 64, True)
    assert (pair.n_frames, pair.width, pair.height, pair.has_audio) == (FRAMES, 128, 64, True)
    assert len(list(iter_frames(gif))) == FRAMES and Image.open(gif).size == (64, 64)
    source, result = next(iter_frames(media["crop"])), next(iter_frames(out))
    assert np.abs(source.astype(int) - result.astype(int)).mean() > 5      # translated, not copied


def test_translate_cuts_a_segment_and_takes_a_domain_by_index(media, tmp_path, capsys):
    out = tmp_path / "cut.mp4"
    code = video_cli.main(["translate", str(media["crop"]), "--out", str(out), "--ckpt", str(media["stargan"]), "--domain", "0",
                           "--seed", "3", "--mode", "whole", "--start", "0.2", "--end", "0.6", "--crf", "28", *FAST])
    assert code == 0, capsys.readouterr().err
    info = probe(out)
    assert (info.n_frames, info.fps, info.has_audio) == (4, FPS, True)
    assert abs(info.audio_duration - 0.4) < 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


def test_translate_faces_mode_finds_every_face(media, tmp_path, capsys):
    mediapipe_or_skip()
    out = tmp_path / "faces.mp4"
    code = video_cli.main(["translate", str(media["wide"]), "--out", str(out), "--checkpoint", str(media["stargan"]),
                           "--domain", DEMO_DOMAINS[0], "--no-smoothing", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{FRAMES} frames at 10 fps, a face found in {FRAMES}, " in captured.out and "audio kept" in captured.out
    info = probe(out)
    assert (info.n_frames, info.width, info.height, info.has_audio) == (FRAMES, 128, 96, True)


def test_translate_says_why_there_is_no_sound(media, tmp_path, capsys):
    silent = make_synthetic_video(tmp_path / "silent.mp4", seconds=0.4, fps=FPS, size=32, audio=False)
    code = video_cli.main(["translate", str(silent), "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(media["stargan"]),
                           "--domain", "1", "--mode", "whole", *FAST])
    captured = capsys.readouterr()
    assert code == 0 and captured.out.rstrip().endswith("no audio (the source has no audio stream)"), captured
    assert "warning: silent.mp4 has no audio stream" in captured.err
    assert not probe(tmp_path / "o.mp4").has_audio


@pytest.mark.parametrize("case", ["missing clip", "missing checkpoint", "faceless clip", "StyleGAN2 checkpoint",
                                  "unknown domain", "seed with a reference"])
def test_translate_bad_input_is_one_line_and_leaves_nothing(media, tmp_path, capsys, case):
    if case == "faceless clip":
        mediapipe_or_skip()
    out = tmp_path / "out" / "o.mp4"
    argv = {
        "missing clip": [str(tmp_path / "nope.mp4"), "--checkpoint", str(media["stargan"]), "--domain", "0"],
        "missing checkpoint": [str(media["crop"]), "--checkpoint", str(tmp_path / "none.ckpt"), "--domain", "0"],
        "faceless clip": [str(media["blank"]), "--checkpoint", str(media["stargan"]), "--domain", "0"],
        "StyleGAN2 checkpoint": [str(media["crop"]), "--checkpoint", str(media["stylegan2"]), "--domain", "0"],
        "unknown domain": [str(media["crop"]), "--checkpoint", str(media["stargan"]), "--domain", "purple"],
        "seed with a reference": [str(media["crop"]), "--checkpoint", str(media["stargan"]), "--domain", "0",
                                  "--ref", str(media["crop"]), "--seed", "2"],
    }[case]
    code = exit_code(video_cli.main, ["translate", *argv, "--out", str(out), "--side-by-side", "--gif", *FAST])
    line = one_error_line(capsys.readouterr().err, "python -m colab_utils.video")
    assert code == 2
    words = {"missing clip": "nope.mp4 does not exist", "missing checkpoint": "none.ckpt does not exist",
             "faceless clip": "no face was found in any of its 8 frames, so nothing was written",
             "StyleGAN2 checkpoint": "is a StyleGAN2 checkpoint (rosinality layout",
             "unknown domain": f"unknown domain 'purple': this model's domains are {DEMO_DOMAINS[0]} (0)",
             "seed with a reference": "with --ref the style is the photo's"}[case]
    assert words in line, line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_python_m_video_runs_in_its_own_process(media, tmp_path):
    """The real entry point: a good run prints one line; a foreign checkpoint one error line, no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    good = subprocess.run([sys.executable, "-m", "colab_utils.video", "translate", str(media["crop"]), "--out",
                           str(tmp_path / "o.mp4"), "--checkpoint", str(media["stargan"]), "--domain", "1", "--mode",
                           "whole", *FAST], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert good.returncode == 0 and good.stdout.count("\n") == 1 and "audio kept" in good.stdout, good.stderr
    bad = subprocess.run([sys.executable, "-m", "colab_utils.video", "translate", str(media["crop"]), "--out",
                          str(tmp_path / "x.mp4"), "--checkpoint", str(media["stylegan2"]), "--mode", "whole"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------------------------------------------------
# python -m colab_utils.editing
# ---------------------------------------------------------------------------------------------------------

K, N = 8, 16


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    """A small catalog of the shipped synthetic generator, built through the CLI (auto-named)."""
    folder = tmp_path_factory.mktemp("editing") / "catalog"
    heatmaps = folder.parent / "heatmaps.png"
    code = editing_cli.main(["catalog", "--generator", str(synthetic_generator()), "--out", str(folder), "--k",
                             str(K), "--n", str(N), "--layer", "32", "--heatmaps", str(heatmaps), "--no-progress",
                             "--device", "cpu"])
    assert code == 0
    return folder


def test_catalog_is_saved_named_and_loadable(catalog_dir):
    from colab_utils.editing import Catalog

    catalog = Catalog.load(catalog_dir)
    assert catalog.k == K and catalog.settings["n_samples"] == N and catalog.settings["layer_resolution"] == 32
    assert catalog.settings["generator"] == str(synthetic_generator()) and catalog.parts
    G, _ = load_generator(synthetic_generator(), device="cpu")
    catalog.check_generator(G)
    heatmaps = Image.open(catalog_dir.parent / "heatmaps.png")
    assert heatmaps.height > K * 64                            # one row of 6 faces per cluster


def test_name_applies_json_and_the_catalog_round_trips(catalog_dir, tmp_path, capsys):
    from colab_utils.editing import Catalog

    names = tmp_path / "parts.json"
    names.write_text('{"eyes": [1, 2], "mouth": 3, "hair": [0]}')
    out = tmp_path / "named"
    assert editing_cli.main(["name", "--catalog", str(catalog_dir), "--parts", str(names), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"named eyes=[1, 2], mouth=[3], hair=[0]; wrote {out}\n"
    original, named = Catalog.load(catalog_dir), Catalog.load(out)
    assert named.parts == {"eyes": [1, 2], "mouth": [3], "hair": [0]}
    assert torch.equal(named.centers, original.centers) and all(torch.equal(a, b) for a, b in zip(named.M, original.M))
    assert named.settings == original.settings
    # inline JSON, in place, and a bad id refused without touching the catalog
    assert editing_cli.main(["name", "--catalog", str(out), "--parts", '{"nose": [4]}']) == 0
    assert Catalog.load(out).parts == {"nose": [4]}
    assert editing_cli.main(["name", "--catalog", str(out), "--parts", '{"nose": [99]}']) == 2
    assert "outside [0, 8)" in one_error_line(capsys.readouterr().err, "python -m colab_utils.editing")
    assert Catalog.load(out).parts == {"nose": [4]}


@pytest.fixture(scope="module")
def named_catalog(catalog_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("named") / "catalog"
    assert editing_cli.main(["name", "--catalog", str(catalog_dir), "--out", str(out), "--parts",
                             '{"eyes": [1, 2], "mouth": [3], "background": [0]}']) == 0
    return out


def grid_size(columns: int, rows: int, tile: int, padding: int = 2) -> tuple[int, int]:
    return columns * tile + (columns + 1) * padding, rows * tile + (rows + 1) * padding


def test_transfer_writes_each_kind_at_its_size(named_catalog, tmp_path, capsys):
    G, _ = load_generator(synthetic_generator(), device="cpu")
    size = G.size
    common = ["--catalog", str(named_catalog), "--target", "3", "--reference", "4", "--device", "cpu"]
    kinds = {"full": ["--kind", "full"], "parts": ["--kind", "parts", "--strengths", "0.25", "0.5", "1"],
             "image": ["--kind", "image", "--parts", "eyes", "mouth"]}
    pictures = {}
    for kind, extra in kinds.items():
        out = tmp_path / f"{kind}.png"
        assert editing_cli.main(["transfer", *common, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        pictures[kind] = Image.open(out)
        assert capsys.readouterr().out.startswith(f"wrote {out} ({pictures[kind].width}x{pictures[kind].height}, ")
    assert pictures["image"].size == (size, size)
    from colab_utils import viz

    # full: target, +eyes, +mouth, joint, reference (the background is left out), labels left and on top
    blank = torch.zeros(1, 3, size, size)
    assert pictures["full"].size == viz.image_grid(
        [blank] * 5, nrow=5, row_labels=["3 <- 4"], col_labels=["target", "+eyes", "+mouth", "joint", "reference"]).size
    assert pictures["full"].width > grid_size(5, 1, size)[0] and pictures["full"].height > grid_size(5, 1, size)[1]
    # parts: one row per part (eyes, mouth, background), columns target, 3 strengths, reference
    assert pictures["parts"].size == viz.image_grid(
        [blank] * 15, nrow=5, row_labels=["eyes", "mouth", "background (global)"],
        col_labels=["target", "0.25", "0.5", "1", "reference"]).size
    # the pictures are the ones the notebooks' functions make
    from colab_utils.editing import Catalog, PartTransfer
    from colab_utils.editing.jobs import edited_image, full_face_grid

    transfer = PartTransfer(G, Catalog.load(named_catalog), 3, 4)
    image = np.asarray(pictures["image"])
    expected = viz.to_uint8(edited_image(transfer, ["eyes", "mouth"]))[0]
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1
    grid, progressions = full_face_grid(transfer, [(3, 4)])
    assert progressions[0].parts == ["eyes", "mouth"] and grid.size == pictures["full"].size


def test_transfer_takes_w_plus_files_as_faces(named_catalog, tmp_path, capsys):
    from colab_utils.editing import seeded_w_plus

    G, _ = load_generator(synthetic_generator(), device="cpu")
    torch.save(seeded_w_plus(G, 1, 3)[0], tmp_path / "target.pt")                      # W+ [n_latent, style_dim]
    np.save(tmp_path / "reference.npy", seeded_w_plus(G, 1, 4).numpy())                 # [1, n_latent, style_dim]
    by_seed, by_file = tmp_path / "seed.png", tmp_path / "file.png"
    common = ["transfer", "--catalog", str(named_catalog), "--kind", "image", "--device", "cpu"]
    assert editing_cli.main([*common, "--target", "3", "--reference", "4", "--out", str(by_seed)]) == 0
    assert editing_cli.main([*common, "--target", str(tmp_path / "target.pt"), "--reference",
                             str(tmp_path / "reference.npy"), "--out", str(by_file)]) == 0
    capsys.readouterr()
    a, b = (np.asarray(Image.open(p)).astype(int) for p in (by_seed, by_file))
    assert np.abs(a - b).max() <= 1


def test_locality_prints_the_table_over_pairs(named_catalog, tmp_path, capsys):
    out = tmp_path / "locality.md"
    assert editing_cli.main(["locality", "--catalog", str(named_catalog), "--pairs", "0:1", "2:3", "--parts", "eyes",
                             "mouth", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ") and " / " in line]
    assert [r.split("|")[1].strip() for r in rows] == [f"{p} / {m}" for p in ("eyes", "mouth")
                                                       for m in ("ours", "global mixing", "pixel blend", "no edit")]
    assert out.read_text() == printed[:printed.index(f"wrote {out}")]


@pytest.mark.parametrize("case", ["missing catalog", "StarGAN as generator", "photo as target",
                                  "missing latent file", "generator of another catalog", "unnamed part"])
def test_editing_bad_input_is_one_line_and_leaves_nothing(named_catalog, media, tmp_path, capsys, case):
    out = tmp_path / "out.png"
    common = ["transfer", "--catalog", str(named_catalog), "--out", str(out), "--device", "cpu"]
    argv = {
        "missing catalog": ["transfer", "--catalog", str(tmp_path / "nope"), "--out", str(out)],
        "StarGAN as generator": [*common, "--generator", str(media["stargan"])],
        "photo as target": [*common, "--target", "me.jpg"],
        "missing latent file": [*common, "--reference", str(tmp_path / "w.pt")],
        "generator of another catalog": [*common, "--generator", str(media["stylegan2"])],
        "unnamed part": [*common, "--parts", "nose"],
    }[case]
    code = exit_code(editing_cli.main, argv)
    line = one_error_line(capsys.readouterr().err, "python -m colab_utils.editing")
    assert code == 2
    words = {"missing catalog": "nope does not exist", "StarGAN as generator": "it is a StarGAN v2 checkpoint",
             "photo as target": "me.jpg: no such photo", "missing latent file": "w.pt is neither a seed nor",
             "generator of another catalog": "build a catalog for this generator",
             "unnamed part": "has no part named 'nose'; its parts: eyes, mouth, background"}[case]
    assert words in line, line
    assert not out.exists()


def test_catalog_of_a_foreign_file_leaves_no_folder(media, tmp_path, capsys):
    out = tmp_path / "catalog"
    code = editing_cli.main(["catalog", "--generator", str(media["stargan"]), "--out", str(out), "--n", "4",
                             "--device", "cpu", "--no-progress"])
    assert code == 2 and "StarGAN v2 checkpoint" in one_error_line(capsys.readouterr().err, "python -m colab_utils")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# The shared layer
# ---------------------------------------------------------------------------------------------------------

def test_align_without_a_landmark_backend_is_one_line(tmp_path, capsys, monkeypatch):
    from colab_utils.stargan import landmarks

    def no_backend(*args, **kwargs):
        raise landmarks.LandmarkBackendError("no landmark backend: MediaPipe has no wheel for this Python; pass "
                                             "--fan wing.ckpt or --download-fan")

    monkeypatch.setattr(landmarks, "make_landmarker", no_backend)
    (tmp_path / "photos").mkdir()
    code = stargan_cli.main(["align", "--src", str(tmp_path / "photos"), "--out", str(tmp_path / "aligned")])
    err = capsys.readouterr().err
    assert code == 2 and err == ("python -m colab_utils.stargan: error: no landmark backend: MediaPipe has no wheel "
                                 "for this Python; pass --fan wing.ckpt or --download-fan\n")


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        video_cli.main(["translate", "x.mp4"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == ("python -m colab_utils.video translate: error: argument IN: x.mp4 does not "
                                       "exist (see python -m colab_utils.video translate --help)\n")


def test_checkpoint_source_takes_paths_and_hub_names(tmp_path):
    import argparse

    assert cli.checkpoint_source(str(tmp_path)) == tmp_path
    assert cli.checkpoint_source("stargan_v2_celeba_hq") == "stargan_v2_celeba_hq"
    with pytest.raises(argparse.ArgumentTypeError, match="runs/me does not exist, and it is not a colab_utils.hub"):
        cli.checkpoint_source("runs/me")


def test_hub_names_of_another_family_are_refused_before_any_download(tmp_path, monkeypatch):
    from colab_utils import hub
    from colab_utils.stargan.synthesize import load_nets
    from colab_utils.stylegan2.formats import StyleGANFormatError

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(hub, "download", no_download)
    with pytest.raises(ValueError, match="stylegan2_ffhq_config_f is a rosinality_stylegan2 file"):
        load_nets("stylegan2_ffhq_config_f")
    with pytest.raises(StyleGANFormatError, match="stargan_v2_afhq is a stargan_v2_nets_ema file"):
        load_generator("stargan_v2_afhq", device="cpu")


def test_console_scripts_run_the_same_mains():
    import importlib

    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"colab-stylegan2": "colab_utils.stylegan2.__main__:main",
                       "colab-stargan": "colab_utils.stargan.__main__:main",
                       "colab-video": "colab_utils.video.__main__:main",
                       "colab-edit": "colab_utils.editing.__main__:main"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


# ---------------------------------------------------------------------------------------------------------
# Every --help ends with an example that works as written
# ---------------------------------------------------------------------------------------------------------

from colab_utils.stylegan2 import __main__ as stylegan2_cli  # noqa: E402

COMMANDS = {   # in the order their examples build on each other
    "colab_utils.video": (video_cli, ["translate"]),
    "colab_utils.editing": (editing_cli, ["catalog", "name", "transfer", "locality"]),
    "colab_utils.stylegan2": (stylegan2_cli, ["train", "generate", "export", "evaluate"]),
    "colab_utils.stargan": (stargan_cli, ["align", "train", "sample", "export", "evaluate"]),
}


def help_examples(main, command: str, capsys) -> list[list[str]]:
    """The command lines under the 'example:' heading of ``<command> --help``, split as a shell would."""
    import shlex

    with pytest.raises(SystemExit) as stop:
        main.main([command, "--help"])
    text = capsys.readouterr().out
    assert stop.value.code == 0
    lines, inside = [], False
    for line in text.splitlines():
        if line in ("example:", "examples:"):
            inside = True
        elif inside and line.startswith("  "):
            lines.append(shlex.split(line))
        else:
            inside = False
    return lines


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder like a clone's, with what the examples name: assets/, talk.mp4, photos/, faces/{train,val}."""
    from colab_utils.data.synthetic import make_faces, write_domain_folders

    assets = tmp_path / "assets"
    assets.mkdir()
    for path in (REPO / "assets").iterdir():
        (assets / path.name).symlink_to(path)
    if not (assets / DEMO_ASSET).exists():
        tiny_stargan_file(assets / DEMO_ASSET)
    make_synthetic_video(tmp_path / "talk.mp4", seconds=0.4, fps=FPS, size=32, style="dark_brunette",
                         preset="portrait")
    (tmp_path / "photos").mkdir()
    for i, image in enumerate(make_faces(2, size=128, seed=5, preset="portrait")[0]):
        Image.fromarray(image).save(tmp_path / "photos" / f"photo{i}.png")
    write_domain_folders(tmp_path / "faces", 4, 2, size=32, domains=DEMO_DOMAINS, preset="portrait")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("module", list(COMMANDS))
def test_every_help_ends_with_an_example_that_runs_as_written(module, workdir, capsys):
    from colab_utils.stargan.landmarks import mediapipe_status

    main, commands = COMMANDS[module]
    for command in commands:
        examples = help_examples(main, command, capsys)
        assert len(examples) == 1, f"{module} {command} --help shows {len(examples)} examples"
        argv = examples[0]
        assert argv[:4] == ["python", "-m", module, command], argv
        if module == "colab_utils.stargan" and command == "align" and not mediapipe_status()[0]:
            shutil.copytree(workdir / "faces" / "val" / DEMO_DOMAINS[0], workdir / "aligned")   # no landmarks here
            continue
        code = exit_code(main.main, argv[3:])
        captured = capsys.readouterr()
        assert code == 0, f"{' '.join(argv)} exited {code}:\n{captured.err[-3000:]}"
        assert "Traceback" not in captured.err
