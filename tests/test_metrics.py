"""colab_utils.metrics: FID/KID against independent float64 computations, real-image statistics cached by
content hash, weights through the hub (a local HTTP server, no internet), LPIPS, the metric history and
StarGAN v2's evaluation protocol. Every metric runs on an injected deterministic extractor."""
from __future__ import annotations

import hashlib
import json
import io
import shutil
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
from torchvision.transforms.functional import gaussian_blur

from colab_utils import hub, metrics
from colab_utils.data.images import ImageFolderDataset
from colab_utils.data.synthetic import make_faces, write_domain_folders, write_image_folder
from colab_utils.loading import CheckpointCorruptError
from colab_utils.metrics import FeatureStats, RandomFeatures, WeightsUnavailableError
from colab_utils.metrics.dataset_stats import CACHE_FOLDER
from tests.test_hub import Server


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces():
    """Two independent sets of 96 synthetic faces (uint8, 64 px)."""
    def load(seed):
        return torch.from_numpy(make_faces(96, 64, seed=seed)[0]).permute(0, 3, 1, 2).contiguous()
    return load(0), load(1)


def correlated(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift + rng.normal(size=d) * 0.1


def streamed(features: np.ndarray, batch: int = 37, **kw) -> FeatureStats:
    stats = FeatureStats(features.shape[1], **kw)
    for start in range(0, len(features), batch):
        stats.add(torch.from_numpy(features[start:start + batch]))
    return stats


def stats_of(extractor, images: torch.Tensor) -> FeatureStats:
    stats = FeatureStats(extractor.dim)
    for batch in images.split(32):
        stats.add(metrics.features_of(extractor, batch))
    return stats


# ---------------------------------------------------------------------------------------------------------
# formulas
# ---------------------------------------------------------------------------------------------------------

def test_fid_matches_an_independent_float64_sqrtm_computation():
    a, b = correlated(700, 24, seed=1), correlated(500, 24, seed=2, shift=0.3)
    sa, sb = streamed(a), streamed(b, batch=64)
    np.testing.assert_allclose(sa.mean, a.mean(0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(sa.cov, np.cov(a, rowvar=False), rtol=0, atol=1e-12)
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    expected = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root.real))
    assert expected > 1.0
    assert metrics.frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet_distance(sb, sa) == pytest.approx(expected, rel=1e-6)


def test_kid_matches_the_unbiased_polynomial_kernel_estimator():
    a, b = correlated(120, 16, seed=3), correlated(120, 16, seed=4, shift=0.2)

    def kernel(x, y):
        return (x @ y.T / x.shape[1] + 1.0) ** 3

    m = len(a)
    kxx, kyy, kxy = kernel(a, a), kernel(b, b), kernel(a, b)
    expected = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / m ** 2
    # one subset as large as the sets: a permutation of all of them, which the estimator does not see
    mean, std = metrics.kernel_inception_distance(a, b, subsets=1, subset_size=1000)
    assert mean == pytest.approx(expected, rel=1e-10) and std == 0.0
    halves, _ = metrics.kernel_inception_distance(a[:60], a[60:], subsets=1)  # one distribution
    assert abs(halves) < 0.1 * expected
    mean_stats, _ = metrics.kernel_inception_distance(streamed(a), streamed(b), subsets=1)
    assert mean_stats == pytest.approx(expected, rel=1e-5)  # via the float32 features FeatureStats keeps
    with pytest.raises(ValueError, match="at least 2 features"):
        metrics.kernel_inception_distance(a[:1], b)


def test_fid_is_zero_for_a_set_against_itself_and_grows_with_blur_and_noise(faces):
    real, other = faces
    extractor = RandomFeatures()
    reference = stats_of(extractor, real)
    scale = np.trace(reference.cov)
    assert abs(metrics.frechet_distance(reference, stats_of(extractor, real))) < 1e-7 * scale  # 96 images, 96 dims
    blurred = [metrics.frechet_distance(reference, stats_of(extractor, other if s == 0 else gaussian_blur(other, 9, s)))
               for s in (0, 0.7, 1.5, 3.0)]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(other.shape, generator=generator)
    noised = [metrics.frechet_distance(reference, stats_of(extractor, (other / 127.5 - 1 + level * noise).clamp(-1, 1)))
              for level in (0.0, 0.1, 0.2, 0.4)]
    assert blurred[0] > 1e-6 * scale  # two different sets are not identical
    assert all(x < y for x, y in zip(blurred, blurred[1:])), blurred
    assert all(x < y for x, y in zip(noised, noised[1:])), noised
    kid = [metrics.kernel_inception_distance(reference, stats_of(extractor, gaussian_blur(other, 9, s)))[0]
           for s in (0.7, 3.0)]
    assert kid[0] < kid[1]


def test_feature_stats_keep_a_seeded_subset_and_round_trip():
    x = correlated(50, 8, seed=5)
    chosen = streamed(x, batch=7, keep=10, total=50, seed=3)
    again = streamed(x, batch=50, keep=10, total=50, seed=3)
    np.testing.assert_array_equal(chosen.kept, again.kept)  # the subset does not depend on the batching
    picks = np.sort(np.random.default_rng(3).choice(50, 10, replace=False))
    np.testing.assert_array_equal(chosen.kept, x[picks].astype(np.float32))
    first = streamed(x, keep=10)
    np.testing.assert_array_equal(first.kept, x[:10].astype(np.float32))
    back = FeatureStats.from_dict(chosen.to_dict())
    assert back.n == 50
    np.testing.assert_array_equal(back.mean, chosen.mean)
    np.testing.assert_allclose(back.cov, chosen.cov, rtol=1e-15)
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats(2).add(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"features must be \[batch, 8\]"):
        FeatureStats(8).add(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats(8).add(np.zeros((1, 8))).cov


def test_to_uint8_and_extractor_checks():
    x = torch.tensor([-1.0, -0.99, 0.0, 0.999, 1.5]).view(1, 1, 1, 5).expand(2, 3, 1, 5)
    assert metrics.to_uint8(x)[0, 0, 0].tolist() == [0, 1, 128, 255, 255]
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        metrics.to_uint8(torch.zeros(2, 1, 4, 4))

    class Wrong(torch.nn.Module):
        name, dim = "wrong", 5

        def forward(self, images):
            return torch.zeros(images.shape[0], 4)

    with pytest.raises(ValueError, match="'wrong' says dim=5 but returned 4"):
        metrics.features_of(Wrong(), torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="str .name and an int .dim"):
        metrics.generated_statistics(lambda s, c: torch.zeros(c, 3, 8, 8), 4, lambda x: x)
    with pytest.raises(ValueError, match="multiple of 12"):
        RandomFeatures(dim=50)


def test_generated_statistics_follow_the_sampler_with_a_progress_bar(capsys):
    extractor = RandomFeatures()

    def sample(start, count):
        generator = torch.Generator().manual_seed(start)
        return torch.rand(count, 3, 32, 32, generator=generator) * 2 - 1

    stats = metrics.generated_statistics(sample, 10, extractor, batch_size=4, desc="sampling")
    assert stats.n == 10 and len(stats.kept) == 10
    assert "sampling" in capsys.readouterr().err
    expected = stats_of(extractor, torch.cat([sample(0, 4), sample(4, 4), sample(8, 2)]))
    np.testing.assert_allclose(stats.cov, expected.cov, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match=r"sample\(0, 4\) returned 3 images"):
        metrics.generated_statistics(lambda s, c: torch.zeros(3, 3, 8, 8), 8, extractor, batch_size=4)


# ---------------------------------------------------------------------------------------------------------
# real-image statistics: streamed, cached beside the dataset, keyed by content hash and resolution
# ---------------------------------------------------------------------------------------------------------

class Counting(RandomFeatures):
    def __init__(self):
        super().__init__(dim=48)
        self.batches: list[int] = []

    def forward(self, images):
        self.batches.append(images.shape[0])
        return super().forward(images)


def test_real_statistics_stream_and_are_cached_by_content_hash_and_resolution(tmp_path):
    folder = write_image_folder(tmp_path / "faces", 20, size=32, seed=0)
    extractor = Counting()
    first = metrics.real_statistics(ImageFolderDataset(folder, 32), extractor, batch_size=8, progress=False)
    assert extractor.batches == [8, 8, 4]  # streamed in batches, never all at once
    fingerprint = metrics.dataset_fingerprint(ImageFolderDataset(folder, 32))
    cached = folder / CACHE_FOLDER / f"fid-stats-{fingerprint[:16]}-32px-{extractor.name}.npz"
    assert cached.is_file()
    extractor.batches.clear()
    again = metrics.real_statistics(ImageFolderDataset(folder, 32), extractor, progress=False)
    assert extractor.batches == []  # read from the cache
    np.testing.assert_array_equal(again.mean, first.mean)
    np.testing.assert_array_equal(again.kept, first.kept)
    assert len(ImageFolderDataset(folder, 32)) == 20  # the cache folder holds no images

    moved = tmp_path / "renamed"
    shutil.copytree(folder, moved)  # same bytes elsewhere: the same statistics
    metrics.real_statistics(ImageFolderDataset(moved, 32), extractor, progress=False)
    assert extractor.batches == []
    metrics.real_statistics(ImageFolderDataset(moved, 16), extractor, progress=False)
    assert sum(extractor.batches) == 20  # another resolution: computed anew
    extractor.batches.clear()
    image = sorted(moved.glob("*.png"))[3]
    image.write_bytes(sorted(folder.glob("*.png"))[4].read_bytes())  # one image changed
    changed = metrics.real_statistics(ImageFolderDataset(moved, 32), extractor, progress=False)
    assert sum(extractor.batches) == 20
    assert not np.array_equal(changed.mean, first.mean)
    assert metrics.dataset_fingerprint(ImageFolderDataset(moved, 32)) != fingerprint


def test_real_statistics_of_in_memory_datasets_and_bad_cache_files(tmp_path):
    class Pixels(torch.utils.data.Dataset):
        def __init__(self, seed):
            self.pixels = torch.randint(0, 256, (12, 3, 16, 16), generator=torch.Generator().manual_seed(seed),
                                        dtype=torch.uint8)

        def __len__(self):
            return len(self.pixels)

        def __getitem__(self, i):
            return self.pixels[i].float() / 127.5 - 1, 0

    extractor = Counting()
    stats = metrics.real_statistics(Pixels(0), extractor, cache_dir=tmp_path, progress=False)
    direct = stats_of(extractor, Pixels(0).pixels)
    np.testing.assert_allclose(stats.mean, direct.mean, rtol=1e-12)
    (cached,) = tmp_path.glob("fid-stats-*-16px-*.npz")
    assert metrics.dataset_fingerprint(Pixels(0)) != metrics.dataset_fingerprint(Pixels(1))
    cached.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable cached statistics"):
        metrics.real_statistics(Pixels(0), extractor, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="at least 2 images"):
        metrics.real_statistics(torch.utils.data.TensorDataset(torch.zeros(1, 3, 8, 8)), extractor)


# ---------------------------------------------------------------------------------------------------------
# weights through the hub (local HTTP server), Inception and LPIPS
# ---------------------------------------------------------------------------------------------------------

def _serve(monkeypatch, server, name, data: bytes, filename: str):
    server.files[f"/{filename}"] = (data, "application/octet-stream")
    entry = hub.REGISTRY[name]
    fake = hub.HubFile(name, (f"{server.url}/{filename}",), filename, hashlib.sha256(data).hexdigest(), None,
                       entry.format, entry.licence, entry.description, entry.source)
    monkeypatch.setitem(hub.REGISTRY, name, fake)


def _random_inception_weights() -> bytes:
    """A state dict with the layout of torch-fidelity's Inception and random values."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None), \
            mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_inception_comes_through_the_hub_and_matches_torch_fidelity(tmp_path, monkeypatch, faces):
    import torch_fidelity

    weights = _random_inception_weights()
    server = Server({})
    try:
        _serve(monkeypatch, server, "inception_v3_fid", weights, "weights-inception-2015-12-05-6726825d.pth")
        extractor = metrics.inception(dest=tmp_path, progress=False)
        assert len(server.requests) == 1
        assert metrics.inception(dest=tmp_path, progress=False).dim == 2048 and len(server.requests) == 1  # cached
    finally:
        server.close()
    assert extractor.name == "inception-v3-tf-2015-12-05-pool3"
    real, other = faces[0][:4], faces[1][:4]
    ours = metrics.frechet_distance(stats_of(extractor, real), stats_of(extractor, other))

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    theirs = torch_fidelity.calculate_metrics(input1=Images(real), input2=Images(other), fid=True, cuda=False,
                                              verbose=False, cache=False, batch_size=4, save_cpu_ram=True,
                                              feature_extractor_weights_path=str(tmp_path / hub.REGISTRY[
                                                  "inception_v3_fid"].filename))
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


def test_missing_or_wrong_weights_say_what_to_do(tmp_path, monkeypatch):
    server = Server({})
    try:
        _serve(monkeypatch, server, "inception_v3_fid", b"weights", "w.pth")
        fake = hub.REGISTRY["inception_v3_fid"]
        monkeypatch.setitem(hub.REGISTRY, "inception_v3_fid", hub.HubFile(
            fake.name, fake.urls, fake.filename, "0" * 64, None, fake.format, fake.licence, fake.description,
            fake.source))
        with pytest.raises(WeightsUnavailableError, match=r"w.pth .*not the expected one.*RandomFeatures"):
            metrics.inception(dest=tmp_path, progress=False)
    finally:
        server.close()
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    entry = hub.REGISTRY["alexnet_imagenet"]
    monkeypatch.setitem(hub.REGISTRY, "alexnet_imagenet", hub.HubFile(
        entry.name, ("http://127.0.0.1:9/alexnet.pth",), entry.filename, entry.sha256, None, entry.format,
        entry.licence, entry.description, entry.source))
    with pytest.raises(WeightsUnavailableError, match="LPIPS needs torchvision's ImageNet alexnet weights"):
        metrics.lpips_model("alex", dest=tmp_path, progress=False)


def test_registry_pins_the_metric_weights():
    for name, prefix in (("inception_v3_fid", "6726825d"), ("alexnet_imagenet", "7be5be79"),
                         ("vgg16_imagenet", "397923af")):
        entry = hub.REGISTRY[name]
        assert entry.sha256.startswith(prefix) and len(entry.sha256) == 64 and prefix in entry.filename


def _features_only(model, seed: int) -> bytes:
    """Random weights in torchvision's layout for ``model``'s backbone, ``features.<index>.*`` only (the
    classifier is not needed)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for stage in model._stages():
        for index, layer in stage.named_children():
            state.update({f"features.{index}.{k}": torch.randn(v.shape, generator=generator) * 0.05
                          for k, v in layer.state_dict().items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_lpips_backbone_comes_through_the_hub(tmp_path, monkeypatch):
    data = _features_only(metrics.LPIPS("alex"), seed=1)
    server = Server({})
    try:
        _serve(monkeypatch, server, "alexnet_imagenet", data, "alexnet-owt-7be5be79.pth")
        model = metrics.lpips_model("alex", dest=tmp_path, progress=False)
    finally:
        server.close()
    state = torch.load(io.BytesIO(data), weights_only=True)
    assert torch.equal(model.net.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(model.net.net.slice5, "10").weight, state["features.10.weight"])
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1 for _ in range(2))
    assert model(x, x).abs().max() < 1e-6
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()
    torch.testing.assert_close(model(y, x), d)
    assert metrics.pairwise_diversity(model, [x, x, x]) < 1e-6
    assert metrics.pairwise_diversity(model, [x, y]) == pytest.approx(float(d.mean()), rel=1e-6)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nothing")
    with pytest.raises(CheckpointCorruptError, match=r"bad\.pth is damaged or not a PyTorch checkpoint"):
        metrics.LPIPS("alex", bad)
    torch.save({"features.0.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="bad.pth: not torchvision alexnet weights .*size mismatch"):
        metrics.LPIPS("alex", bad)


def test_lpips_vgg_backbone_loads(tmp_path):
    model = metrics.LPIPS("vgg")
    path = tmp_path / "vgg16.pth"
    path.write_bytes(_features_only(model, seed=2))
    model._load_backbone(path)
    state = torch.load(path, weights_only=True)
    assert torch.equal(getattr(model.net.net.slice5, "28").weight, state["features.28.weight"])
    with pytest.raises(ValueError, match="net must be one of"):
        metrics.LPIPS("resnet")


# ---------------------------------------------------------------------------------------------------------
# metric history
# ---------------------------------------------------------------------------------------------------------

def test_evaluation_schedule_depends_on_the_step_alone():
    steps = [s for s in range(1, 40) if metrics.due(s, batch=8, every_kimg=0.05)]
    assert steps == [7, 13, 19, 25, 32, 38]  # 56, 104, 152, 200, 256, 304 images: each crosses a multiple of 50
    assert [s for s in range(1, 10) if metrics.due(s, 4, 0.008)] == [2, 4, 6, 8]
    assert not any(metrics.due(s, 8, None) for s in range(1, 100))


def test_metric_history_records_best_resumes_table_and_plot(tmp_path):
    history = metrics.MetricHistory()
    history.add(10, 0.08, {"fid10k": 50.0, "kid10k": 0.05})
    history.add(20, 0.16, {"fid10k": 30.0, "kid10k": 0.03})
    history.mark_resume(0.16)
    history.add(30, 0.24, {"fid10k": 35.0, "kid10k": 0.02})
    history.add(30, 0.24, {"fid10k": 34.0, "kid10k": 0.02})  # measured again after a lost session
    assert history.series("fid10k") == [(0.08, 50.0), (0.16, 30.0), (0.24, 34.0)]
    assert history.best("fid10k")["step"] == 20 and history.best("kid10k")["step"] == 30
    back = metrics.MetricHistory.from_state(history.state())
    assert back.state() == history.state() and back.resumes == [0.16]
    table = history.table().splitlines()
    assert table[0].split() == ["step", "kimg", "fid10k", "kid10k"] and table[2].split()[:3] == ["20", "0.16", "30"]
    history.plot(tmp_path / "fid.png")
    assert (tmp_path / "fid.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no metrics"):
        metrics.MetricHistory().plot()


# ---------------------------------------------------------------------------------------------------------
# StarGAN v2 protocol
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    from colab_utils.stargan.model import StarGANConfig, build_nets

    root = write_domain_folders(tmp_path_factory.mktemp("domains"), n_train=6, n_val=5, size=32, seed=0)
    torch.manual_seed(0)
    config = StarGANConfig(img_size=32, base_dim=8, max_conv_dim=16, hidden_dim=16, style_dim=8, latent_dim=4,
                           num_domains=2, w_hpf=0)
    nets = build_nets(config, discriminator=False, fan=False).eval()
    torch.manual_seed(1)
    lpips = metrics.LPIPS("alex")  # random backbone: offline, deterministic after the seed
    return root, nets, lpips


def test_stargan_v2_protocol_gives_the_full_table_and_is_deterministic(two_domains):
    root, nets, lpips = two_domains
    kw = dict(num_outs=3, batch_size=2, max_sources=3, extractor=RandomFeatures(), lpips=lpips, progress=False)
    result = metrics.evaluate_stargan_v2(nets, root, **kw)
    domains = sorted(p.name for p in (root / "val").iterdir())
    tasks = [f"{s}2{t}" for t in domains for s in domains if s != t]
    assert result.tasks == tasks and result.sources == {t: 3 for t in tasks}
    for mode in ("latent", "reference"):
        assert set(result.fid[mode]) == set(tasks) and all(v > 0 for v in result.fid[mode].values())
        assert all(v > 0 for v in result.lpips[mode].values())
    official = result.as_official()
    assert official["FID_latent/mean"] == pytest.approx(np.mean([result.fid["latent"][t] for t in tasks]))
    assert set(official) >= {f"LPIPS_reference/{t}" for t in tasks + ["mean"]}
    table = result.table()
    assert "latent-guided" in table and "reference-guided" in table and tasks[0] in table
    assert table.splitlines()[-2].startswith("mean")
    assert metrics.evaluate_stargan_v2(nets, root, **kw).as_official() == official


def test_stargan_v2_diversity_is_zero_when_the_style_is_held_fixed(two_domains, tmp_path):
    root, nets, lpips = two_domains
    result = metrics.evaluate_stargan_v2(nets, root, num_outs=3, batch_size=2, max_sources=2,
                                         extractor=RandomFeatures(), lpips=lpips, same_style=True, progress=False)
    for mode in ("latent", "reference"):
        assert all(v == pytest.approx(0.0, abs=1e-7) for v in result.lpips[mode].values()), result.lpips
        assert all(v > 0 for v in result.fid[mode].values())
    saved = result.save(tmp_path / "eval.json")
    assert "FID_reference/mean" in saved.read_text()


def test_references_follow_the_official_loader_order():
    from colab_utils.metrics.stargan_v2 import _References

    images = [torch.full((3, 1, 1), float(i)) for i in range(7)]

    def ids(batch):
        return batch[:, 0, 0, 0].int().tolist()

    refs = _References(images, 3)  # 7 images in batches of 3: [0, 1, 2], [3, 4, 5], again (6 is dropped)
    assert [ids(refs.next(3)) for _ in range(3)] == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    assert ids(refs.next(2)) == [3, 4]  # a batch cut to the two sources left
    few = _References(images[:3], 32)  # fewer references than a batch: a window moving by one
    assert [ids(few.next(3)) for _ in range(3)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]


def test_stargan_v2_protocol_refuses_unknown_domains(two_domains, tmp_path):
    root, nets, lpips = two_domains
    nets.domains = ["cats", "dogs"]
    try:
        with pytest.raises(ValueError, match="not among the model's domains"):
            metrics.evaluate_stargan_v2(nets, root, extractor=RandomFeatures(), lpips=lpips, progress=False)
    finally:
        del nets.domains
    with pytest.raises(FileNotFoundError, match="does not exist"):
        metrics.evaluate_stargan_v2(nets, tmp_path / "nowhere", extractor=RandomFeatures(), lpips=lpips)


def test_stargan_cli_evaluate_prints_the_table(two_domains, tmp_path, capsys):
    from colab_utils.stargan.__main__ import main as cli
    from colab_utils.stargan.formats import export_official

    root, nets, _ = two_domains
    weights = export_official(nets, tmp_path / "000004_nets_ema.ckpt")
    args = ["evaluate", "--checkpoint", str(weights), "--data", str(root), "--num-outs", "2", "--batch", "2",
            "--max-sources", "2", "--extractor", "random", "--lpips", "random", "--device", "cpu",
            "--out", str(tmp_path / "eval.json")]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "not with the paper" in out and "latent-guided" in out and "reference-guided" in out
    saved = json.loads((tmp_path / "eval.json").read_text())["official"]
    assert {"FID_latent/mean", "LPIPS_reference/mean"} <= set(saved)
    mean_row = next(line for line in out.splitlines() if line.startswith("mean"))
    assert f"{saved['FID_latent/mean']:.2f}" in mean_row
    assert cli(args[:-2] + ["--mode", "latent"]) == 0
    assert "reference-guided" not in capsys.readouterr().out
    assert cli(["evaluate", "--checkpoint", str(weights), "--data", str(tmp_path / "nowhere"), "--extractor",
                "random", "--lpips", "random"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_kid_kernels_on_a_device_follow_torch_fidelity_exactly():
    from colab_utils.metrics.fid import _kid_on

    a, b = correlated(300, 32, seed=6), correlated(250, 32, seed=7, shift=0.1)
    expected = metrics.kernel_inception_distance(a, b, subsets=7, subset_size=100, seed=3)
    ours = _kid_on(torch.device("cpu"), a, b, 7, 100, 3)  # the GPU path, run on the CPU here
    assert ours == pytest.approx(expected, rel=1e-12)
