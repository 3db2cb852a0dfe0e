"""The trainers' fast path on the CPU: torch.compile agrees with eager, checkpoints cross between the two, and
a training step never waits for the device (tiny configurations).

The compiled tests use dynamo's ``aot_eager`` backend: the same graph capture, guards and AOTAutograd
forward/backward graphs as the inductor, without generating kernels (the inductor's C++ compile of even the
tiny StyleGAN2 takes minutes on two cores). One inductor test runs when ``COLAB_UTILS_INDUCTOR_TESTS=1``.
"""
from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

from colab_utils import compile as fastpath
from colab_utils import runtime
from colab_utils.stargan import data as sdata
from colab_utils.stargan.train import TrainConfig as StarConfig
from colab_utils.stargan.train import build_state, train_step
from colab_utils.stylegan2.train import SyntheticFaces, TrainConfig, build_nets, plain_fp32, real_batch, training_step
from colab_utils.stylegan2.train import train as train_stylegan2
from colab_utils.training import ProgressLog

pytestmark = pytest.mark.usefixtures("one_thread")

UNAVAILABLE = fastpath.unavailable_reason()
needs_compile = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"torch.compile unavailable: {UNAVAILABLE}")
SG_TINY = dict(size=32, channels=16, style_dim=16, n_mlp=1, batch=8, checkpoint_minutes=None, n_samples=8,
               metrics_every_kimg=None, device="cpu")
SG_REG = dict(augment=False, r1_every=4, pl_every=4, mixing=0.5)   # R1 and path length at step 4
STAR_TINY = dict(img_size=32, base_dim=8, max_conv_dim=16, hidden_dim=16, style_dim=8, latent_dim=4, w_hpf=0,
                 batch=4, workers=0, sample_every=0, checkpoint_minutes=0, log_every=1)


@pytest.fixture
def aot_eager(monkeypatch):
    """Compile with dynamo's aot_eager backend, from a clean dynamo cache."""
    torch._dynamo.reset()
    monkeypatch.setattr(fastpath, "DEFAULT_BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


# ---------------------------------------------------------------------------------------------------------
# The switch
# ---------------------------------------------------------------------------------------------------------

def test_compile_setting_auto_is_on_for_cuda_only_and_bad_values_are_named():
    assert fastpath.wanted("auto", "cuda") and not fastpath.wanted("auto", "cpu")
    assert fastpath.wanted("on", "cpu") and fastpath.wanted(True, "cpu") and not fastpath.wanted("off", "cuda")
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="sometimes").check()
    with pytest.raises(ValueError, match="compile must be one of"):
        StarConfig(compile="sometimes")
    assert plain_fp32(TrainConfig(compile="on")).compile == "off"
    assert not fastpath.Compiler.for_setting("auto", "cpu").enabled
    assert "compile" not in TrainConfig().identity() and "compile" not in StarConfig().recipe()


@needs_compile
def test_cached_compiles_once_per_module_and_passes_through_when_off(aot_eager):
    net, other, owner = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    off = fastpath.Compiler(False)
    assert off.cached(net) is net
    on = fastpath.Compiler(True)
    first = on.cached(net)
    assert first is not net and on.cached(net) is first and on.cached(other) is not first
    method = on.cached(owner.forward, key=owner)           # a bound method: a new object at every access
    assert method is not first and on.cached(owner.forward, key=owner) is method
    x = torch.randn(3, 2)
    assert torch.equal(first(x), net(x))


def test_inductor_cache_goes_to_drive_in_colab_only(tmp_path, monkeypatch):
    assert runtime.compile_cache_dir(drive_path=str(tmp_path)) is None          # not Colab here
    monkeypatch.setattr(runtime, "in_colab", lambda: True)
    assert runtime.compile_cache_dir(drive_path=str(tmp_path)) is None          # Colab, Drive not mounted
    (tmp_path / "MyDrive").mkdir()
    folder = runtime.compile_cache_dir(drive_path=str(tmp_path))
    assert folder.parent == (tmp_path / "MyDrive" / "colab_utils" / "compile_cache").resolve()
    assert folder.name.startswith("torch-") and not folder.exists()            # created when first used
    monkeypatch.setattr(runtime, "compile_cache_dir", lambda: folder)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert fastpath.configure_cache() == str(folder) == os.environ["TORCHINDUCTOR_CACHE_DIR"] and folder.is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))     # the user's choice wins
    assert fastpath.configure_cache() == str(tmp_path / "mine")


# ---------------------------------------------------------------------------------------------------------
# Compiled equals eager
# ---------------------------------------------------------------------------------------------------------

def _stylegan2_steps(compile_setting: str, steps: int = 5):
    config = TrainConfig(**SG_TINY, **SG_REG, compile=compile_setting)
    torch.manual_seed(0)
    nets = build_nets(config, "cpu")
    real = torch.rand(config.batch, 3, 32, 32) * 2 - 1
    losses, graphs, before = [], [], _graphs()    # graphs compiled by these steps (dynamo counts per process)
    for step in range(1, steps + 1):
        torch.manual_seed(100 + step)
        losses.append({k: v.item() for k, v in training_step(nets, config, real, step).items()})
        graphs.append(_graphs() - before)
    return nets, losses, graphs


@needs_compile
def test_stylegan2_compiled_steps_equal_eager_and_the_lazy_regularisers_compile_nothing(aot_eager):
    sg_train = importlib.import_module("colab_utils.stylegan2.train")  # the package's `train` is the function
    mixed, draw = set(), sg_train.mixing_latents

    def recording(*args, **kwargs):
        z = draw(*args, **kwargs)
        mixed.add(z.inject_index is not None)
        return z

    eager, eager_losses, _ = _stylegan2_steps("off")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sg_train, "mixing_latents", recording)
        fast, fast_losses, graphs = _stylegan2_steps("on")
    assert fast.compiled and not eager.compiled
    for a, b in zip(eager_losses, fast_losses):
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6) for k in a)
    assert "r1" in fast_losses[3] and "pl" in fast_losses[3]
    assert _max_diff(eager.G, fast.G) < 1e-5 and _max_diff(eager.D, fast.D) < 1e-5
    assert _max_diff(eager.ema.module, fast.ema.module) < 1e-5
    # step 1 compiles G and D for the D pass and for the G pass; then no step recompiles: not a new crossover
    # layer, not a batch without mixing, not R1 and path length at step 4 (they run the plain modules)
    assert mixed == {True, False}, "the seeds should draw batches with and without style mixing"
    assert graphs[0] == 4 and graphs[-1] == graphs[0], graphs
    assert not any("_orig_mod" in key for key in [*fast.G.state_dict(), *fast.D.state_dict()])


NETS = ("generator", "mapping_network", "style_encoder", "discriminator")


def _star_batch(faces):
    return sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=0).next()


class _MaskFAN(torch.nn.Module):
    """Stands in for FAN (too slow here): two face masks [B, 1, 256, 256] that depend on the images."""

    def get_heatmap(self, x):
        mask = torch.sigmoid(4 * torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=256, mode="bilinear"))
        return mask, 1 - mask


@needs_compile
def test_stargan_compiled_step_equals_eager(aot_eager, tmp_path):
    """With the high-pass skip (w_hpf 1), so the FAN's masks go through their compiled callable too."""
    from colab_utils.data.synthetic import write_domain_folders

    faces = write_domain_folders(tmp_path / "faces", n_train=8, n_val=2, size=32, seed=0)
    batch = _star_batch(faces)
    results, before = {}, _graphs()
    for setting in ("off", "on"):
        torch.manual_seed(0)
        state = build_state(StarConfig(**{**STAR_TINY, "w_hpf": 1.0}, compile=setting), 2, "cpu", fan=_MaskFAN())
        losses = [train_step(state, batch, lambda_ds=1.0)]
        # each network's gradients of its last backward pass in the first iteration
        grads = {name: [p.grad for p in state.nets[name].parameters()] for name in NETS}   # the next
        # iteration's zero_grad(set_to_none=True) leaves these tensors alone
        losses.append(train_step(state, batch, lambda_ds=1.0))
        results[setting] = state, [{k: v.item() for k, v in s.items()} for s in losses], grads, _graphs() - before
    (eager, eager_losses, eager_grads, _), (fast, fast_losses, fast_grads, graphs) = results["off"], results["on"]
    assert fast.compiler.enabled and graphs > 0 and fast.fast(fast.nets.fan) is not fast.nets.fan
    assert eager.fast(eager.nets.fan) is eager.nets.fan
    for a, b in zip(eager_losses, fast_losses):
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6) for k in a)
    # gradients, not weights: Adam's first steps move a weight by about lr * sign(gradient), so a gradient of
    # nearly 0 gives weights that differ by lr whatever the rounding (and the reference-guided pass's gradients
    # come from weights the latent-guided pass moved: agreement to 1e-3 of the network's largest gradient, against
    # O(1) for a lost gradient path)
    for name in NETS:
        scale = max(g.abs().max() for g in eager_grads[name] if g is not None)  # (biases before an instance
        for g, h in zip(eager_grads[name], fast_grads[name]):                 # norm have a gradient of 0 + noise)
            assert (g is None) == (h is None) and (g is None or (g - h).abs().max() <= 1e-3 * scale), name
        assert not any("_orig_mod" in key for key in fast.nets[name].state_dict())


@needs_compile
def test_stylegan2_checkpoints_cross_between_compiled_and_eager(aot_eager, tmp_path, capsys):
    """2 steps compiled + 2 eager (resumed from the compiled run's checkpoint), and 2 eager + 2 compiled, both
    end where 4 eager steps end. The compiled run logs its compile time."""
    data = SyntheticFaces(16, 32, seed=0)
    base = dict(**SG_TINY, **SG_REG, steps=4, sample_every=1000, log_every=2)
    run = lambda folder, steps, setting, verbose=False: train_stylegan2(  # noqa: E731
        TrainConfig(**{**base, "steps": steps}, compile=setting), data, tmp_path / folder, progress=False,
        verbose=verbose)
    straight = run("straight", 4, "off")
    for first, second in (("on", "off"), ("off", "on")):
        capsys.readouterr()
        run(first + second, 2, first, verbose=True)
        logged = capsys.readouterr()
        assert ("StyleGAN2: torch.compile: 4 graphs compiled during steps that took" in logged.out + logged.err) \
            == (first == "on")
        resumed = run(first + second, 4, second)
        assert resumed.step == 4 and resumed.stopped is None
        assert _max_diff(straight.G, resumed.G) < 1e-5 and _max_diff(straight.D, resumed.D) < 1e-5
        saved = torch.load(resumed.checkpoint, weights_only=False)["objects"]
        assert not any("_orig_mod" in key for name in ("g", "d", "g_ema") for key in saved[name])


@pytest.mark.skipif(os.environ.get("COLAB_UTILS_INDUCTOR_TESTS") != "1",
                    reason="inductor C++ compile of the tiny StyleGAN2 takes ~3 minutes on 2 cores: set "
                           "COLAB_UTILS_INDUCTOR_TESTS=1 to run it")
@needs_compile
def test_stylegan2_inductor_steps_equal_eager(monkeypatch):
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)   # eager's RNG inside the graphs
    torch._dynamo.reset()
    eager, eager_losses, _ = _stylegan2_steps("off", steps=4)
    fast, fast_losses, _ = _stylegan2_steps("on", steps=4)
    for a, b in zip(eager_losses, fast_losses):
        assert all(b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5) for k in a)
    assert _max_diff(eager.G, fast.G) < 1e-4 and _max_diff(eager.D, fast.D) < 1e-4


# ---------------------------------------------------------------------------------------------------------
# No host sync per step
# ---------------------------------------------------------------------------------------------------------

_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# Reads of tensors that live on the host whatever the training device, so never a wait for the GPU: style
# mixing's coin and crossover layer (drawn on the CPU generator), ADA's sign sum of the interval before
# (copied to pinned host memory when that interval ended), and Adam's step counters (torch keeps them on the
# CPU unless the optimizer is fused or capturable; fused Adam on CUDA reads nothing).
_HOST_DRAWS = {("colab_utils.stylegan2.model", "mixing_latents"), ("colab_utils.stylegan2.augment", "_adjust"),
               ("torch.optim.optimizer", "_get_value")}


@pytest.fixture
def device_reads(monkeypatch):
    """Every call of a Tensor method that reads values back to Python, as (caller module, caller function)."""
    calls: list[tuple[str, str]] = []

    def counting(name, original):
        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            calls.append((frame.f_globals.get("__name__", "?"), frame.f_code.co_name))
            return original(self, *args, **kwargs)
        return read

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return calls


def _outside_host_draws(calls):
    return [c for c in calls if c not in _HOST_DRAWS]


def test_stylegan2_steps_read_the_device_only_when_the_log_records(device_reads):
    steps, every = 12, 4
    config = TrainConfig(**SG_TINY, augment=True, ada_p=0.3, ada_interval=2, r1_every=4, pl_every=2,
                         log_every=every)   # ADA adapts p from the discriminator every 2 steps
    torch.manual_seed(0)
    nets = build_nets(config, "cpu")
    log = ProgressLog(steps, record_every=every, disable=True)
    loader = torch.rand(config.batch, 3, 32, 32) * 2 - 1
    device_reads.clear()
    for step in range(1, steps + 1):
        log.update(step, training_step(nets, config, real_batch(loader, nets, config), step))
    reads = _outside_host_draws(device_reads)
    assert reads == [("colab_utils.training", "_record")] * (steps // every), sorted(set(reads))
    assert [s for s, _ in log.history["r1"]] == [4, 8, 12] and len(log.history["d"]) == 3
    assert nets.augment.p != 0.3 and nets.augment.last_rt is not None   # p did adapt


def test_stargan_steps_read_the_device_only_when_the_log_records(device_reads, tmp_path):
    from colab_utils.data.synthetic import write_domain_folders

    faces = write_domain_folders(tmp_path / "faces", n_train=8, n_val=2, size=32, seed=0)
    data = sdata.TrainingData(faces, 32, batch_size=4, latent_dim=4, seed=0)
    state = build_state(StarConfig(**STAR_TINY), 2, "cpu")
    steps, every = 6, 3
    log = ProgressLog(steps, record_every=every, disable=True)
    batches = [data.next() for _ in range(steps)]   # the loader's host work is not the step's
    device_reads.clear()
    for step, batch in enumerate(batches, 1):
        log.update(step, train_step(state, batch, lambda_ds=1.0))
    reads = _outside_host_draws(device_reads)
    assert reads == [("colab_utils.training", "_record")] * (steps // every), sorted(set(reads))


def test_progress_log_means_resume_mid_interval():
    """The pending sums are part of the log's state: a resume between two records records the same means."""
    straight = ProgressLog(10, record_every=4, disable=True)
    values = [torch.tensor(float(v)) for v in (1, 2, 3, 4, 5, 6, 7, 8)]
    for step, v in enumerate(values, 1):
        straight.update(step, {"d": v, "lr": 0.5 * step})
    first = ProgressLog(10, record_every=4, disable=True)
    for step, v in enumerate(values[:6], 1):
        first.update(step, {"d": v, "lr": 0.5 * step})
    resumed = ProgressLog(10, record_every=4, disable=True)
    resumed.load_state_dict(first.state_dict())
    for step, v in enumerate(values[6:], 7):
        resumed.update(step, {"d": v, "lr": 0.5 * step})
    assert straight.history == resumed.history == {"d": [(4, 2.5), (8, 6.5)], "lr": [(4, 1.25), (8, 3.25)]}
