"""StarGAN v2 on several processes (torchrun + DDP, gloo on CPU): the ranks hold the same weights, equal to
one process with the same global batch and data order; a 2-process resume is bit-exact; checkpoints move
between 1 and 2 processes."""
from __future__ import annotations

import pytest
import torch

from colab_utils import distributed
from colab_utils.checkpoint import CheckpointManager
from colab_utils.data.synthetic import write_domain_folders
from colab_utils.stargan import data as sdata
from tests.helpers_stargan_dist import stargan_train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

STEPS = 4


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_domain_folders(tmp_path_factory.mktemp("faces"), n_train=4, n_val=0, size=32, seed=0)  # 8 images


def run(world_size, faces, tmp_path, run_name, out_name, stop_at=None):
    out = tmp_path / out_name
    distributed.launch_local(stargan_train, world_size, str(faces), str(tmp_path / run_name), str(out), STEPS,
                             stop_at)
    return [torch.load(out / f"rank{r}.pt") for r in range(world_size)]


def same(a, b):
    return a["weights"].keys() == b["weights"].keys() and all(
        torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


def normalized_away(name):
    """Generator convolution biases that an instance norm (or AdaIN) right after removes: the outputs do not
    depend on them, their gradients are zero but for rounding, and Adam, which divides by the gradient's
    size, turns that rounding into real steps. Every other weight must agree."""
    return name.split(".")[0] in ("generator", "generator_ema") and name.endswith(".bias") and "to_rgb" not in name


def close(a, b, rtol=1e-5, atol=1e-8):
    """Equal to float tolerance (the workers train in float64, see tests/helpers_stargan_dist.py)."""
    assert a["weights"].keys() == b["weights"].keys()
    return all(torch.allclose(a["weights"][k], b["weights"][k], rtol=rtol, atol=atol)
               for k in a["weights"] if not normalized_away(k))


@pytest.fixture(scope="module")
def runs(faces, tmp_path_factory):
    """One uninterrupted run in 1 process and one in 2, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("reference")
    return {"one": run(1, faces, tmp, "run1", "one"), "two": run(2, faces, tmp, "run2", "two")}


def test_ranks_share_the_one_process_batch(faces):
    """The union of the ranks' rows (r, r + W, ...) is the one-process batch: images, domains, references,
    latent codes and augmentation."""
    options = dict(img_size=32, batch_size=4, latent_dim=4, seed=5)
    whole = sdata.TrainingData(faces, **options)
    ranks = [sdata.TrainingData(faces, **options, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):  # 12 draws of 8 images: crosses an epoch
        want = whole.next()
        got = [data.next() for data in ranks]
        for field, full in zip(want._fields, want):
            merged = torch.stack([got[0]._asdict()[field], got[1]._asdict()[field]], 1).flatten(0, 1)
            assert torch.equal(merged, full), field
    assert ranks[1].state_dict()["source"] == whole.state_dict()["source"]  # the one-process position
    with pytest.raises(ValueError, match="global batch of 4 does not split over 3 processes"):
        sdata.TrainingData(faces, **{**options, "seed": 0}, rank=0, world_size=3)


def test_two_processes_match_each_other_and_one_process(runs):
    one, two = runs["one"][0], runs["two"]
    assert one["step"] == two[0]["step"] == two[1]["step"] == STEPS
    assert same(two[0], two[1])
    assert close(two[0], one)
    assert two[0]["history"].keys() == one["history"].keys()  # losses of the global batch, not rank 0's share
    for name, values in one["history"].items():
        assert torch.allclose(torch.tensor(two[0]["history"][name]), torch.tensor(values), rtol=1e-5, atol=1e-7)
    assert not close(one, initial_weights(one))  # training moved the weights
    assert sum(normalized_away(k) for k in one["weights"]) < len(one["weights"]) // 4


def initial_weights(trained):
    """The weights a run starts from (the trainer seeds and builds them the same way)."""
    from colab_utils.runtime import seed_everything
    from colab_utils.stargan.train import TrainConfig, build_state
    from tests.helpers_stargan_dist import TINY

    seed_everything(TINY.get("seed", 777))
    torch.set_default_dtype(torch.float64)
    try:
        state = build_state(TrainConfig(**TINY), 2, "cpu")
    finally:
        torch.set_default_dtype(torch.float32)
    weights = {f"{n}.{k}": v for n in state.nets for k, v in state.nets[n].state_dict().items()}
    weights.update({f"{n}_ema.{k}": v for n, e in state.ema.items() for k, v in e.module.state_dict().items()})
    assert weights.keys() == trained["weights"].keys()
    return {"weights": weights}


def test_two_process_resume_is_bit_exact(faces, tmp_path, runs):
    stopped = run(2, faces, tmp_path, "b", "stopped", stop_at=2)
    assert stopped[0]["step"] == stopped[1]["step"] == 2
    manager = CheckpointManager(tmp_path / "b", handle_signals=False, verbose=False, every_minutes=None)
    assert [c["step"] for c in manager.checkpoints()] == [2]
    manager.close()
    resumed = run(2, faces, tmp_path, "b", "resumed")
    assert resumed[0]["step"] == STEPS
    assert same(resumed[0], runs["two"][0]) and same(resumed[1], runs["two"][1])


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_process_counts(faces, tmp_path, runs, first, second):
    run(first, faces, tmp_path, "x", "first", stop_at=2)
    resumed = run(second, faces, tmp_path, "x", "second")
    assert resumed[0]["step"] == STEPS
    assert close(resumed[0], runs["one"][0])
    if second == 1:
        assert close(resumed[0], runs["two"][0])
