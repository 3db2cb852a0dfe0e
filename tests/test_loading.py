"""One safe loading path (issue 13): real attack payloads are named as unsafe and never run, damaged files are
called damaged, another model's file says what it is, and every loader of the package goes through it."""
from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch

from colab_utils import loading
from colab_utils.checkpoint import FORMAT, CheckpointManager, CheckpointWarning, sha256_file
from colab_utils.loading import (CheckpointCorruptError, CheckpointMismatchError, UnsafeCheckpointError,
                                 compare_state_dicts, convert_trusted, global_named_in, identify, refused_globals,
                                 safe_load)

from .helpers_payloads import (GLOBALS, KINDS, Attack, assert_nothing_ran, random_bytes, tiny_stargan_file,
                               tiny_stylegan2_file, write_payloads)


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    return write_payloads(tmp_path_factory.mktemp("payloads"))


def check_unsafe(err: BaseException, payload, path=None) -> None:
    message = str(err)
    assert isinstance(err, UnsafeCheckpointError), f"{payload}: {type(err).__name__}: {message}"
    assert "unsafe" in message and payload.global_name in message and str(path or payload.path) in message
    assert "nothing in it was executed" in message and "convert_trusted" in message


# ---------------------------------------------------------------------------------------------------------
# The payloads are real, and safe_load refuses them without running them
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_the_payloads_really_run_code_when_unpickled_plainly(tmp_path, kind):
    for fmt, save_zip in (("zip", True), ("legacy", False)):
        marker = tmp_path / f"ran_{fmt}"
        torch.save({"weights": Attack(kind, marker)}, tmp_path / f"{fmt}.pt", _use_new_zipfile_serialization=save_zip)
        loaded = torch.load(tmp_path / f"{fmt}.pt", weights_only=False)  # what an unsafe loader would do
        if hasattr(loaded["weights"], "wait"):
            loaded["weights"].wait()  # the Popen child
        assert marker.exists(), f"{kind} in the {fmt} format did not run: the test would prove nothing"


def test_safe_load_names_every_payload_as_unsafe_and_runs_none(payloads):
    assert len(payloads) == 6
    for payload in payloads:
        with pytest.raises(UnsafeCheckpointError) as caught:
            safe_load(payload.path)
        check_unsafe(caught.value, payload)
        assert caught.value.globals == [payload.global_name] and caught.value.path == payload.path
    assert_nothing_ran(payloads)


def test_a_protocol_4_pickle_is_named_too(tmp_path):
    """pickle.dumps' own protocol uses STACK_GLOBAL, which torch only calls an 'Unsupported operand'."""
    marker = tmp_path / "ran"
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"x": Attack("os.system", marker)}, protocol=4))
    with pytest.raises(UnsafeCheckpointError, match=r"raw\.pt is unsafe: loading it would call "
                                                    + GLOBALS["os.system"].replace(".", r"\.")):
        safe_load(path)
    assert refused_globals(path) == [GLOBALS["os.system"]] and not marker.exists()


def test_damaged_files_are_called_damaged(tmp_path):
    good = tiny_stylegan2_file(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pt"
    text.write_text("my weights are in another file")
    for path in (random_bytes(tmp_path / "random.pt"), truncated, empty, text):
        with pytest.raises(CheckpointCorruptError, match=rf"{path.name} is damaged or not a PyTorch checkpoint"):
            safe_load(path)
        assert refused_globals(path) == []
    assert refused_globals(good) == [] and set(safe_load(good)) == {"g_ema", "latent_avg"}
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        safe_load(tmp_path / "nowhere.pt")


def test_the_one_allowed_extra_global_still_loads(tmp_path):
    torch.save({"args": argparse.Namespace(size=256)}, tmp_path / "train.pt")
    assert safe_load(tmp_path / "train.pt")["args"].size == 256 and refused_globals(tmp_path / "train.pt") == []


# ---------------------------------------------------------------------------------------------------------
# The fallback on torch's words, for the torch versions in use
# ---------------------------------------------------------------------------------------------------------

# torch.load's messages as torch 2.11 (Colab) and 2.14 word them; both versions share these two wordings.
TORCH_BLOCKED = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
                 "succeed, but it can result in arbitrary code execution. Do it only if you got the file from a "
                 "trusted source.\n\nTrying to load unsupported GLOBAL posix.system whose module posix is blocked."
                 "\n\nCheck the documentation of torch.load to learn more about types accepted by default with "
                 "weights_only https://pytorch.org/docs/stable/generated/torch.load.html.")
TORCH_NOT_ALLOWED = ("Weights only load failed. This file can still be loaded, to do so you have two options, "
                     "\x1b[1mdo those steps only if you trust the source of the checkpoint\x1b[0m. \n\t(1) ...\n\t"
                     "(2) Alternatively, to load with `weights_only=True` please check the recommended steps in the "
                     "following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL eval was not an "
                     "allowed global by default. Please use `torch.serialization.add_safe_globals([eval])` or the "
                     "`torch.serialization.safe_globals([eval])` context manager to allowlist this global if you "
                     "trust this class/function.")


def test_global_named_in_reads_both_wordings():
    assert global_named_in(TORCH_BLOCKED) == "posix.system"
    assert global_named_in(TORCH_NOT_ALLOWED) == "eval"
    assert global_named_in("Weights only load failed. ... Unsupported class numpy.core.multiarray._reconstruct") \
        == "numpy.core.multiarray._reconstruct"          # torch before 2.4
    assert global_named_in("Weights only load failed.\n\nUnsupported operand 149") is None


def test_without_the_pickle_reading_the_message_still_says_unsafe(payloads, monkeypatch):
    """The fallback path, with this torch's real messages: the structural reading is switched off."""
    monkeypatch.setattr(loading, "refused_globals", lambda path: [])
    expected = {"os.system": GLOBALS["os.system"], "subprocess.Popen": "commands.Popen", "builtins.eval": "eval"}
    for payload in payloads:
        with pytest.raises(UnsafeCheckpointError, match=rf"is unsafe: loading it would call {expected[payload.kind]}"):
            safe_load(payload.path)
    assert_nothing_ran(payloads)


# ---------------------------------------------------------------------------------------------------------
# Converting a trusted file; reports; what a file is
# ---------------------------------------------------------------------------------------------------------

def test_convert_trusted_turns_a_whole_module_into_a_state_dict(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    torch.save({"model": net, "step": 7}, tmp_path / "whole.pt")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        safe_load(tmp_path / "whole.pt")
    out = convert_trusted(tmp_path / "whole.pt", tmp_path / "converted.pt")
    loaded = safe_load(out)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["weight"], net.weight.detach())
    torch.save({"when": __import__("datetime").date(2020, 1, 1)}, tmp_path / "date.pt")
    with pytest.raises(TypeError, match=r"date\.pt\['when'\] \(a datetime\.date\)"):
        convert_trusted(tmp_path / "date.pt", tmp_path / "date2.pt")


def test_compare_state_dicts_reports_keys_and_shapes():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1), "opt": torch.zeros(1)}
    found = {"a": torch.zeros(2), "b": torch.zeros(4, 4), "x": torch.zeros(1), "skip.me": torch.zeros(1)}
    report = compare_state_dicts(expected, found, optional={"opt"}, ignore=lambda k: k.startswith("skip."))
    assert report.missing == ["c"] and report.unexpected == ["x"] and report.mismatched == [("b", (4, 4), (3, 4))]
    assert report.describe() == ("missing keys (1): ['c']; unexpected keys (1): ['x']; "
                                 "shape mismatches (1): ['b: file (4, 4) vs model (3, 4)']")
    assert not compare_state_dicts(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).state_dict())
    assert compare_state_dicts(torch.nn.Linear(2, 2), {"weight": 1, "bias": torch.zeros(2)}).mismatched == \
        [("weight", "int", (2, 2))]


def test_identify_names_the_files_of_this_package(tmp_path):
    assert "StyleGAN2 checkpoint (rosinality" in identify(safe_load(tiny_stylegan2_file(tmp_path / "g.pt")))
    assert "StarGAN v2 checkpoint (official" in identify(safe_load(tiny_stargan_file(tmp_path / "s.ckpt")))
    assert "optimizer states" in identify({"generator": {"state": {}, "param_groups": []}})
    assert "FAN" in identify({"state_dict": {"m0.b1_4.bn1.weight": torch.zeros(1)}})
    assert "PartSegmenter" in identify({"state_dict": {}, "part_names": [], "width": 8, "size": 32})
    assert "Catalog" in identify({"centers": 0, "M": 0, "cluster_area": 0})
    ckpt = {"format": FORMAT, "step": 3, "objects": {"g_ema": {}}}
    assert identify(ckpt).startswith("a colab_utils StyleGAN2 training checkpoint (step 3)")
    ckpt["objects"] = {"generator": {}, "generator_ema": {}}
    assert identify(ckpt).startswith("a colab_utils StarGAN v2 training checkpoint (step 3)")
    assert identify({"weights": torch.zeros(1)}) is None and identify([1, 2]) is None


# ---------------------------------------------------------------------------------------------------------
# Training checkpoints: an unsafe newest file in a run folder is skipped and called unsafe
# ---------------------------------------------------------------------------------------------------------

def test_an_unsafe_newest_checkpoint_is_skipped_with_a_warning_that_says_unsafe(tmp_path):
    run = tmp_path / "run"
    net = torch.nn.Linear(2, 2)
    CheckpointManager(run, handle_signals=False, verbose=False).save(1, {"net": net})
    attack = run / "ckpt-000000002.pt"
    marker = tmp_path / "ran"
    torch.save({"format": FORMAT, "step": 2, "objects": {"net": Attack("os.system", marker)}}, attack)
    (run / "ckpt-000000002.json").write_text(json.dumps(
        {"format": FORMAT, "file": attack.name, "step": 2, "time": 0.0, "size": attack.stat().st_size,
         "sha256": sha256_file(attack), "elapsed": 0.0}))
    manager = CheckpointManager(run, handle_signals=False, verbose=False)
    with pytest.warns(CheckpointWarning, match=rf"ckpt-000000002\.pt.*is unsafe.*{GLOBALS['os.system']}"):
        info = manager.restore({"net": torch.nn.Linear(2, 2)})
    manager.close()
    assert info["step"] == 1 and not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="is unsafe"):
        CheckpointManager(run, handle_signals=False, verbose=False).restore({"net": net}, path=attack)
    with pytest.raises(CheckpointMismatchError, match=r"g\.pt is not a colab_utils training checkpoint .*: it is a "
                                                      r"StyleGAN2 checkpoint \(rosinality"):
        CheckpointManager(run, handle_signals=False, verbose=False).restore(
            {"net": net}, path=tiny_stylegan2_file(tmp_path / "g.pt"))


# ---------------------------------------------------------------------------------------------------------
# Every loader of the package goes through safe_load
# ---------------------------------------------------------------------------------------------------------

def _catalog_folder(pt):
    """A catalog folder whose settings are fine and whose tensors file is ``pt``."""
    from colab_utils.editing.catalog import FORMAT_VERSION, SETTINGS_FILE, TENSORS_FILE

    folder = pt.parent / f"catalog_{pt.stem}"
    folder.mkdir(exist_ok=True)
    (folder / TENSORS_FILE).write_bytes(pt.read_bytes())
    (folder / SETTINGS_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, "settings": {},
                                                    "layer_names": [], "layer_channels": [], "parts": {}}))
    return folder


def _loaders():
    from colab_utils.editing import Catalog
    from colab_utils.editing.generators import load_generator
    from colab_utils.editing.segmenter import PartSegmenter
    from colab_utils.metrics import LPIPS
    from colab_utils.stargan import load_fan, load_nets, load_official
    from colab_utils.stargan.train import export_checkpoint, nets_from_checkpoint
    from colab_utils.stylegan2 import load_rosinality
    from colab_utils.stylegan2.train import load_checkpoint

    def restore(path):
        manager = CheckpointManager(path.parent / "run", handle_signals=False, verbose=False)
        try:
            return manager.restore({"net": torch.nn.Linear(2, 2)}, path=path)
        finally:
            manager.close()

    return {
        "stylegan2.load_rosinality": load_rosinality,
        "stylegan2.train.load_checkpoint": load_checkpoint,
        "editing.load_generator": lambda p: load_generator(p, device="cpu"),
        "stargan.load_official": load_official,
        "stargan.load_nets": load_nets,
        "stargan.load_fan": load_fan,
        "stargan.train.nets_from_checkpoint": nets_from_checkpoint,
        "stargan.train.export_checkpoint": lambda p: export_checkpoint(p, p.parent / "out_nets_ema.ckpt"),
        "editing.PartSegmenter.load": PartSegmenter.load,
        "editing.Catalog.load": lambda p: Catalog.load(_catalog_folder(p)),
        "CheckpointManager.restore": restore,
        "metrics.LPIPS backbone": lambda p: LPIPS("alex", p),
    }


@pytest.mark.parametrize("name", list(_loaders()))
def test_every_loader_refuses_the_payloads_and_random_bytes(name, payloads, tmp_path):
    load = _loaders()[name]
    for payload in payloads:
        with pytest.raises(UnsafeCheckpointError) as caught:
            load(payload.path)
        named = _catalog_folder(payload.path) / "catalog.pt" if name == "editing.Catalog.load" else payload.path
        check_unsafe(caught.value, payload, named)
    with pytest.raises(CheckpointCorruptError, match=r"(random\.pt|random/catalog\.pt) is damaged or not a "
                                                     r"PyTorch checkpoint"):
        load(random_bytes(tmp_path / "random.pt"))
    assert_nothing_ran(payloads)


def test_a_file_of_the_other_model_says_which_model_it_is(tmp_path):
    from colab_utils.checkpoint import CheckpointManager as Manager

    loaders = _loaders()
    stylegan = tiny_stylegan2_file(tmp_path / "faces_stylegan2.pt")
    stargan = tiny_stargan_file(tmp_path / "100000_nets_ema.ckpt")
    for name in ("stylegan2.load_rosinality", "stylegan2.train.load_checkpoint", "editing.load_generator"):
        with pytest.raises(CheckpointMismatchError, match=r"100000_nets_ema\.ckpt.*it is a StarGAN v2 checkpoint "
                                                          r"\(official layout"):
            loaders[name](stargan)
    for name in ("stargan.load_official", "stargan.load_nets", "stargan.train.nets_from_checkpoint",
                 "stargan.train.export_checkpoint", "stargan.load_fan"):
        with pytest.raises(CheckpointMismatchError, match=r"faces_stylegan2\.pt.*StyleGAN2 checkpoint \(rosinality"):
            loaders[name](stylegan)
    with pytest.raises(CheckpointMismatchError, match=r"PartSegmenter.save: it is a StarGAN v2 checkpoint"):
        loaders["editing.PartSegmenter.load"](stargan)
    with pytest.raises(CheckpointMismatchError, match=r"cluster_area: it is a StyleGAN2 checkpoint"):
        loaders["editing.Catalog.load"](stylegan)

    # training checkpoints of one trainer given to the other's loaders
    G = safe_load(stylegan)["g_ema"]
    run = tmp_path / "stylegan2_run"
    Manager(run, handle_signals=False, verbose=False).save(5, {"g_ema": _Holder(G)})
    with pytest.raises(CheckpointMismatchError, match=r"it is a colab_utils StyleGAN2 training checkpoint \(step 5\)"):
        loaders["stargan.load_nets"](run)
    nets = safe_load(stargan)
    run = tmp_path / "stargan_run"
    Manager(run, handle_signals=False, verbose=False).save(7, {k: _Holder(v) for k, v in nets.items()})
    with pytest.raises(CheckpointMismatchError, match=r"it is a colab_utils StarGAN v2 training checkpoint \(step 7\)"):
        loaders["stylegan2.train.load_checkpoint"](run)


class _Holder:
    """Anything with a state_dict, for writing a training checkpoint by hand."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state
