"""FID / KID during StyleGAN2 training: the history in the checkpoints across a kill and a resume, the schedule by
kimg, the best-FID snapshot, evaluating any checkpoint, and a clear error when the Inception weights are out of
reach (tiny CPU configurations, an injected deterministic extractor)."""
from __future__ import annotations

import importlib
import json
from unittest import mock

import pytest
import torch

from colab_utils import hub
from colab_utils.checkpoint import safe_load
from colab_utils.metrics import RandomFeatures, WeightsUnavailableError
from colab_utils.stylegan2 import load_rosinality
from colab_utils.stylegan2.evaluate import evaluate_checkpoint, metric_names, sampler
from colab_utils.stylegan2.train import SyntheticFaces, TrainConfig, build_nets, train

train_module = importlib.import_module("colab_utils.stylegan2.train")  # the package exports the function

TINY = dict(size=32, channels=16, style_dim=16, n_mlp=1, batch=8, checkpoint_minutes=None, n_samples=8,
            synthetic_images=64, augment=False, sample_every=100, log_every=1)
# every 16 images = every 2 steps of 8; 16 generated images per periodic evaluation, 24 at the end
METRICS = dict(metrics_every_kimg=0.016, metrics_images=16, metrics_final_images=24, metrics_batch=8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces32():
    return SyntheticFaces(48, 32, seed=0)


class Killed(Exception):
    """Stands in for a runtime that vanishes: no checkpoint is written on the way out."""


def _records(history):
    return [(r["step"], r["kimg"], r["metric"], r["value"]) for r in history.records]


def test_history_survives_a_kill_and_the_resumed_run_evaluates_at_the_same_kimg(faces32, tmp_path):
    config = TrainConfig(**TINY, **METRICS, steps=6, checkpoint_every=3)
    straight = train(config, faces32, tmp_path / "a", progress=False, verbose=False, extractor=RandomFeatures())
    assert [(s, m) for s, _, m, _ in _records(straight.metrics)] == [
        (2, "fid16_full"), (2, "kid16_full"), (4, "fid16_full"), (4, "kid16_full"), (6, "fid16_full"),
        (6, "kid16_full"), (6, "fid24_full"), (6, "kid24_full")]
    assert [k for k, _ in straight.metrics.series("fid16_full")] == [0.016, 0.032, 0.048]

    real_step = train_module.training_step

    def dies_at_step_5(nets, cfg, real, step):
        if step == 5:
            raise Killed  # after the evaluation at step 4, which no checkpoint holds yet
        return real_step(nets, cfg, real, step)

    with mock.patch.object(train_module, "training_step", dies_at_step_5), pytest.raises(Killed):
        train(config, faces32, tmp_path / "b", progress=False, verbose=False, extractor=RandomFeatures())
    assert sorted(p.name for p in (tmp_path / "b").glob("ckpt-*.pt")) == ["ckpt-000000003.pt"]
    saved = safe_load(tmp_path / "b" / "ckpt-000000003.pt")["extra"]["metrics"]
    assert [r["step"] for r in saved["records"]] == [2, 2]

    resumed = train(config, faces32, tmp_path / "b", progress=False, verbose=False, extractor=RandomFeatures())
    assert _records(resumed.metrics) == _records(straight.metrics)  # same kimg, same numbers
    assert resumed.metrics.resumes == [0.024]
    final = safe_load(tmp_path / "b" / "ckpt-000000006.pt")["extra"]["metrics"]
    assert len(final["records"]) == 8 and final["resumes"] == [0.024]

    best = straight.metrics.best("fid16_full")
    record = json.loads((tmp_path / "a" / "best-fid.json").read_text())
    assert (record["step"], record["metric"]) == (best["step"], "fid16_full")
    assert record["value"] == pytest.approx(best["value"]) and record["extractor"] == RandomFeatures().name
    snapshot = load_rosinality(tmp_path / "a" / "best-fid.pt", which="all")
    assert snapshot.d is not None and snapshot.latent_avg is not None
    assert straight.fid_curve == tmp_path / "a" / "fid_curve.png" and straight.fid_curve.stat().st_size > 1000
    assert not (tmp_path / "a" / "best-fid.pt").name.startswith("ckpt-")  # outside checkpoint retention

    # The final G scored again from the checkpoint (or its rosinality export) gives the recorded number.
    again = evaluate_checkpoint(tmp_path / "a", faces32, n=24, extractor=RandomFeatures(), batch_size=8,
                                progress=False)
    recorded = {m: v for s, _, m, v in _records(straight.metrics) if s == 6}
    assert again == pytest.approx({"fid24_full": recorded["fid24_full"], "kid24_full": recorded["kid24_full"]},
                                  rel=1e-6)


def test_short_runs_and_metrics_off_measure_nothing(faces32, tmp_path):
    def never(images):
        raise AssertionError("the extractor must not be called")

    never.name, never.dim = "never", 12
    short = train(TrainConfig(**TINY, steps=2), faces32, tmp_path / "a", progress=False, verbose=False,
                  extractor=never)  # default schedule: 50 kimg, far beyond 16 images
    assert short.metrics.records == [] and short.fid_curve is None
    off = train(TrainConfig(**TINY, **{**METRICS, "metrics_every_kimg": None}, steps=2), faces32, tmp_path / "b",
                progress=False, verbose=False, extractor=never)
    assert off.metrics.records == []
    with pytest.raises(ValueError, match="metrics_images must be >= 2"):
        TrainConfig(**TINY, metrics_images=1).check()


def test_missing_inception_weights_fail_before_training(faces32, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    entry = hub.REGISTRY["inception_v3_fid"]
    monkeypatch.setitem(hub.REGISTRY, "inception_v3_fid", hub.HubFile(
        entry.name, ("http://127.0.0.1:9/inception.pth",), entry.filename, entry.sha256, None, entry.format,
        entry.licence, entry.description, entry.source))
    with pytest.raises(WeightsUnavailableError, match="(?s)Inception-v3 weights .*could not be downloaded.*--metrics-every-kimg 0"):
        train(TrainConfig(**TINY, **METRICS, steps=4), faces32, tmp_path / "run", progress=False, verbose=False)
    assert not list((tmp_path / "run").glob("ckpt-*.pt"))  # failed at once, not hours in


def test_generated_images_depend_on_the_index_only():
    G = build_nets(TrainConfig(**TINY), "cpu").ema.module
    sample = sampler(G, seed=3)
    torch.manual_seed(0)
    first = sample(8, 4)
    torch.manual_seed(1)  # the global random state plays no part
    assert torch.equal(sample(8, 4), first)
    assert not torch.equal(sample(0, 4), first)
    assert metric_names(50_000) == ("fid50k_full", "kid50k_full") and metric_names(24)[0] == "fid24_full"


def test_cli_evaluate_scores_checkpoints_and_prints_the_history(tmp_path, capsys):
    from colab_utils.data.synthetic import write_image_folder
    from colab_utils.stylegan2.__main__ import main as cli

    folder = write_image_folder(tmp_path / "faces", 16, size=32, seed=0)
    config = TrainConfig(**{**TINY, "synthetic_images": 16}, **METRICS, steps=2)
    result = train(config, folder, tmp_path / "run", progress=False, verbose=False, extractor=RandomFeatures())
    assert (folder / ".colab_utils_stats").is_dir()  # the real statistics were cached beside the images
    recorded = {r["metric"]: r["value"] for r in result.metrics.records if r["metric"].endswith("24_full")}

    args = ["evaluate", "--ckpt", str(tmp_path / "run"), "--data", str(folder), "--n", "24", "--batch", "8",
            "--extractor", "random", "--device", "cpu", "--json", str(tmp_path / "fid.json")]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "metric history of" in out and "fid16_full" in out and "not comparable with published FIDs" in out
    written = json.loads((tmp_path / "fid.json").read_text())
    assert written["fid24_full"] == pytest.approx(recorded["fid24_full"], rel=1e-6)
    assert f"fid24_full: {written['fid24_full']:.6g}" in out

    assert cli(["evaluate", "--ckpt", str(tmp_path / "run" / "best-fid.pt"), "--data", str(folder), "--n", "16",
                "--batch", "8", "--extractor", "random", "--no-kid"]) == 0  # a rosinality file: no history
    out = capsys.readouterr().out
    assert "metric history" not in out and "fid16_full: " in out and "kid16_full" not in out
    assert cli(["evaluate", "--ckpt", str(tmp_path / "run"), "--history"]) == 0
    assert "fid24_full" in capsys.readouterr().out
    assert cli(["evaluate", "--ckpt", str(tmp_path / "run" / "best-fid.pt"), "--history"]) == 2
    assert "has no metric history" in capsys.readouterr().err
    assert cli(["evaluate", "--ckpt", str(tmp_path / "run"), "--data", str(tmp_path / "nowhere"),
                "--extractor", "random"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert cli(["evaluate", "--ckpt", str(tmp_path / "run"), "--data", str(folder), "--n", "1",
                "--extractor", "random"]) == 2
    assert "n must be an int >= 2" in capsys.readouterr().err


def test_cli_train_takes_the_metric_options():
    from colab_utils.stylegan2.__main__ import _config, build_parser

    args = build_parser().parse_args(["train", "--metrics-every-kimg", "none", "--metrics-final-images", "none",
                                      "--no-metrics-kid", "--metrics-images", "5000", "--stats-dir", "stats"])
    config = _config(args)
    assert (config.metrics_every_kimg, config.metrics_final_images, config.metrics_kid, config.metrics_images) == \
        (None, None, False, 5000)
    defaults = _config(build_parser().parse_args(["train"]))
    assert (defaults.metrics_every_kimg, defaults.metrics_images, defaults.metrics_final_images) == \
        (50.0, 10_000, 50_000)
