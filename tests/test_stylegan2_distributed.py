"""StyleGAN2 on several processes (torchrun + DDP, gloo on CPU): the ranks hold the same weights, equal to one
process with the same global batch; a 2-process resume is bit-exact; checkpoints move between 1 and 2
processes."""
from __future__ import annotations

import pytest
import torch

from colab_utils import distributed
from tests.helpers_stylegan2_dist import stylegan2_train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

# step 1: D (with ADA at p = 0.3) and G; step 2 adds R1 and path length. Longer runs drift apart by more than
# rounding: the losses are summed in float32 (for mixed precision), and Adam turns the float32 rounding of
# near-zero gradients (a to_rgb bias at step 3) into lr-sized steps, as in tests/test_stargan_distributed.py.
STEPS = 2


def run(world_size, tmp_path, run_name, out_name, steps=STEPS):
    out = tmp_path / out_name
    distributed.launch_local(stylegan2_train, world_size, str(tmp_path / run_name), str(out), steps)
    return [torch.load(out / f"rank{r}.pt") for r in range(world_size)]


def same(a, b):
    return a["weights"].keys() == b["weights"].keys() and all(
        torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]) and a["p"] == b["p"]


def close(a, b, rtol=1e-6, atol=1e-9):
    """Equal to float64 rounding (see tests/helpers_stylegan2_dist.py)."""
    assert a["weights"].keys() == b["weights"].keys()
    return all(torch.allclose(a["weights"][k], b["weights"][k], rtol=rtol, atol=atol) for k in a["weights"]) \
        and a["p"] == pytest.approx(b["p"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run in 1 process and one in 2, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("reference")
    return {"one": run(1, tmp, "run1", "one"), "two": run(2, tmp, "run2", "two")}


def test_two_processes_match_each_other_and_one_process(runs):
    one, two = runs["one"][0], runs["two"]
    assert one["step"] == two[0]["step"] == two[1]["step"] == STEPS
    assert same(two[0], two[1])
    assert close(two[0], one)
    assert one["p"] != pytest.approx(0.3)  # ADA moved p, by the sign of D(real) over the global batch
    assert two[0]["history"].keys() == one["history"].keys() >= {"d", "g", "r1", "pl"}
    for name, values in one["history"].items():  # losses of the global batch, not rank 0's share
        assert torch.allclose(torch.tensor(two[0]["history"][name]), torch.tensor(values), rtol=1e-6, atol=1e-9)


def test_two_process_resume_is_bit_exact(tmp_path, runs):
    stopped = run(2, tmp_path, "b", "stopped", steps=1)
    assert stopped[0]["step"] == stopped[1]["step"] == 1
    resumed = run(2, tmp_path, "b", "resumed")
    assert resumed[0]["step"] == STEPS
    assert same(resumed[0], runs["two"][0]) and same(resumed[1], runs["two"][1])


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_process_counts(tmp_path, runs, first, second):
    run(first, tmp_path, "x", "first", steps=1)
    resumed = run(second, tmp_path, "x", "second")
    assert resumed[0]["step"] == STEPS
    assert close(resumed[0], runs["one"][0])
    if second == 2:
        assert same(resumed[0], resumed[1])
