"""colab_utils.training: precision, EMA, Adam, requires_grad, progress log."""
from __future__ import annotations

import pytest
import torch

from colab_utils.training import EMA, Precision, ProgressLog, make_adam, requires_grad


def test_precision_auto_on_cpu_is_fp32_without_scaler():
    p = Precision("cpu")
    assert p.precision == "fp32" and p.dtype is None and p.scaler is None
    with p.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    assert p.state_dict() == {"precision": "fp32", "scaler": None}
    with pytest.raises(ValueError, match="'auto', 'bf16', 'fp16' or 'fp32'"):
        Precision("cpu", "fp8")


def test_fp16_precision_scales_steps_and_saves_the_scaler():
    p = Precision("cpu", "fp16", init_scale=8.0, growth_interval=2)
    assert p.scaler is not None
    with p.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float16
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    x = torch.randn(4, 3)
    for _ in range(2):
        with p.autocast():
            loss = model(x).float().pow(2).mean()
        p.backward_step(loss, opt)
    assert not torch.equal(model.weight, before)
    assert p.state_dict()["scaler"]["scale"] == 16.0  # grew after growth_interval finite steps
    fresh = Precision("cpu", "fp16")
    fresh.load_state_dict(p.state_dict())
    assert fresh.scaler.get_scale() == 16.0
    Precision("cpu", "fp32").load_state_dict(p.state_dict())  # resumed where fp16 is not used: ignored


def test_backward_step_matches_manual_sgd_and_steps_every_optimizer():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    x = torch.randn(5, 2)
    expected = {}
    ref_a, ref_b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    ref_a.load_state_dict(a.state_dict()), ref_b.load_state_dict(b.state_dict())
    ref_b(ref_a(x)).sum().backward()
    for name, param in [*ref_a.named_parameters(prefix="a"), *ref_b.named_parameters(prefix="b")]:
        expected[name] = param.detach() - 0.5 * param.grad
    opts = [torch.optim.SGD(a.parameters(), lr=0.5), torch.optim.SGD(b.parameters(), lr=0.5)]
    for param in [*a.parameters(), *b.parameters()]:
        param.grad = torch.full_like(param, 100.0)  # stale gradients must be cleared first
    norm = Precision("cpu", "fp32").backward_step(b(a(x)).sum(), opts)
    assert norm is None
    for name, param in [*a.named_parameters(prefix="a"), *b.named_parameters(prefix="b")]:
        assert torch.allclose(param, expected[name]), name
    clipped = Precision("cpu", "fp32").backward_step(b(a(x)).sum() * 1000, opts, max_grad_norm=1.0)
    assert clipped > 1.0


def test_ema_averages_parameters_and_copies_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, beta=0.75)
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(4.0)
    model.train()(torch.randn(8, 2))  # moves BatchNorm's running statistics
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, start + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    assert ema.module[1].num_batches_tracked.item() == 1
    ema.update(model, beta=0.0)
    assert torch.equal(ema.module[0].weight, model[0].weight)
    other = EMA(model)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module[0].weight, model[0].weight)
    with pytest.raises(ValueError, match="not the same architecture"):
        ema.update(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="beta"):
        ema.update(model, beta=1.5)


def test_make_adam_and_requires_grad():
    model = torch.nn.Linear(2, 2)
    opt = make_adam(model.parameters(), lr=2e-3, betas=(0.0, 0.99), device="cpu")
    group = opt.param_groups[0]
    assert group["lr"] == 2e-3 and group["betas"] == (0.0, 0.99) and group["foreach"] is True
    requires_grad(model, False)
    assert not any(p.requires_grad for p in model.parameters())
    requires_grad(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_progress_log_records_history_kimg_and_resumes(capsys):
    log = ProgressLog(100, batch_size=16, record_every=2, refresh_s=0.0, desc="stylegan2")
    for step in range(1, 5):
        log.update(step, {"d": torch.tensor(step * 0.5), "g": float(step)})
    # the means since the previous record: d is 0.5, 1.0 | 1.5, 2.0 and g 1, 2 | 3, 4
    assert log.history == {"d": [(2, 0.75), (4, 1.75)], "g": [(2, 1.5), (4, 3.5)]}
    assert log.kimg == pytest.approx(0.064) and log.bar.n == 4
    state = log.state_dict()
    log.close()
    assert "stylegan2" in capsys.readouterr().err
    resumed = ProgressLog(100, batch_size=16, disable=True)
    resumed.load_state_dict(state)
    assert resumed.history == log.history and resumed.step == 4 and resumed.images_seen == 64
    resumed.update(6, {"d": 0.0}, images=10)
    assert resumed.images_seen == 74
    with pytest.raises(ValueError, match="before the current step"):
        resumed.update(5)
