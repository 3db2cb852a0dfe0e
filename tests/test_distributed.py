"""Multi-process training on the gloo backend (CPU): same weights on every rank, equal to one process with the
same global batch and data order, bit-exact resume, and checkpoints that move between 1 and 2 processes."""
from __future__ import annotations

import itertools

import pytest
import torch

from colab_utils import distributed
from colab_utils.checkpoint import CheckpointManager
from tests.helpers_dist import toy_train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def run(world_size, tmp_path, name, run_name, steps, **kwargs):
    out = tmp_path / name
    distributed.launch_local(toy_train, world_size, str(tmp_path / run_name), str(out), steps,
                             kwargs.get("every_steps"), kwargs.get("stop_at"), kwargs.get("stop_rank", 0))
    return [torch.load(out / f"rank{r}.pt") for r in range(world_size)]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))


def close(a, b, tol=1e-6):
    return all(torch.allclose(x, y, atol=tol, rtol=0) for x, y in zip(a["params"], b["params"]))


def test_single_process_is_untouched():
    dist = distributed.init()
    assert not dist.enabled and dist.is_main and dist.world_size == 1
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, dist) is model
    x = torch.arange(6.0).reshape(6, 1)
    assert distributed.rank_share(x, dist) is x
    assert distributed.per_rank_batch(6, dist) == 6


def test_rank_share_lines_up_with_the_sampler():
    from colab_utils.checkpoint import ResumableSampler
    n, world = 12, 3
    full = ResumableSampler(n, seed=3)
    global_batch = list(itertools.islice(full.stream(), 6))
    for rank in range(world):
        dist = distributed.Dist(rank=rank, world_size=world)
        mine = list(itertools.islice(ResumableSampler(n, seed=3, rank=rank, world_size=world).stream(), 2))
        assert mine == distributed.rank_share(torch.tensor(global_batch), dist).tolist()


def test_bad_batch_split_is_refused():
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        distributed.per_rank_batch(8, distributed.Dist(rank=0, world_size=3))


STEPS = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run in 1 process and one in 2, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("reference")
    return {"one": run(1, tmp, "one", "run1", STEPS), "two": run(2, tmp, "two", "run2", STEPS)}


def test_two_ranks_match_each_other_and_one_process(runs):
    two, one = runs["two"], runs["one"]
    assert two[0]["step"] == one[0]["step"] == STEPS
    assert same(two[0], two[1])
    assert close(two[0], one[0])
    initial = run_initial_params()
    assert not close(one[0], initial, tol=1e-3)  # training moved the weights


def run_initial_params():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return {"params": [p.detach() for p in model.parameters()]}


def test_two_rank_resume_is_bit_exact_and_stop_reaches_every_rank(tmp_path, runs):
    # rank 1 is told to stop at step 4: both ranks leave at step 4 with a checkpoint written by rank 0
    stopped = run(2, tmp_path, "stopped", "b", STEPS, stop_at=4, stop_rank=1)
    assert stopped[0]["step"] == stopped[1]["step"] == 4
    assert [c["step"] for c in CheckpointManager(tmp_path / "b", handle_signals=False).checkpoints()] == [4]
    resumed = run(2, tmp_path, "resumed", "b", STEPS)
    assert resumed[0]["step"] == STEPS
    assert same(resumed[0], runs["two"][0]) and same(resumed[1], runs["two"][1])


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_process_counts(tmp_path, runs, first, second):
    run(first, tmp_path, "first", "x", STEPS, stop_at=4)
    resumed = run(second, tmp_path, "second", "x", STEPS)
    assert resumed[0]["step"] == STEPS
    assert close(resumed[0], runs["one"][0], tol=1e-5)
