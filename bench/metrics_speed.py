"""Cost of the quality metrics: images per second for StyleGAN2 generation + Inception features, the FID and KID
arithmetic, and one periodic evaluation as a share of training time at the default schedule.

    python bench/metrics_speed.py                   # config-f 256 px (the trainer's defaults), a few minutes on CPU
    python bench/metrics_speed.py --size 64 --channels 128 --style-dim 128 --n-mlp 4   # a small model

Measured on this device: generation of ``--images`` images in the training precision (the trainer's sampler),
their 2048 Inception-v3 features in fp32 (torch-fidelity's network; random weights unless the real ones are in
the hub cache, which changes nothing in the arithmetic), training steps of ``training_step`` at ``--batch``
(a plain step, a path-length step and an R1 step, combined as the lazy schedule runs them), and the FID
(eigenvalues of a 2048 x 2048 product) and KID (100 subsets of 1000) arithmetic, which run on the CPU in every
setting except KID's kernels and the running covariance, which go to the GPU when there is one. The T4 / A100 /
H100 columns are **estimates, not measurements**: each network's FLOPs per image (counted here with PyTorch's
FLOP formulas) divided by ``--utilization`` times the card's peak rate in the precision it runs in (training and
generation: fp16 on a T4, bf16 on A100/H100; Inception: fp32 on a T4, TF32 on A100/H100, PyTorch's default for
convolutions; statistics and KID kernels: float64), plus FID's eigenvalues as measured on this CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Peak dense rates (TFLOP/s) from the vendors' data sheets: training precision (fp16 / bf16 tensor cores),
# Inception's (fp32 on a T4, TF32 on A100 / H100), float64 (the statistics and KID's kernels; tensor-core FP64 on
# A100 / H100).
GPUS = {"T4": (65.0, 8.1, 0.25), "A100": (312.0, 156.0, 19.5), "H100": (989.0, 495.0, 67.0)}
KID_FLOPS = 100 * 3 * 2 * 1000 * 1000 * 2048      # 100 subsets: three 1000 x 1000 kernel matrices of 2048-d features
STATS_FLOPS = 2 * 2048 * 2048                     # per image: its share of the covariance update


def inception_network(device):
    """torch-fidelity's Inception-v3: the real weights when the hub has them cached, else random ones."""
    from colab_utils import hub
    from colab_utils.metrics.features import INCEPTION_HUB_NAME, InceptionFeatures

    cached = hub.cached(INCEPTION_HUB_NAME)
    if cached is not None:
        return InceptionFeatures(cached).to(device), "real weights"
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None), \
            mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    wrapper = InceptionFeatures.__new__(InceptionFeatures)
    torch.nn.Module.__init__(wrapper)
    wrapper.net = net.requires_grad_(False).eval()
    return wrapper.to(device), "random weights (same arithmetic)"


def flops(fn) -> float:
    """FLOPs of ``fn`` (matrix multiplications and convolutions, forward and backward), counted with PyTorch's
    FLOP formulas under a dispatch mode; unlike ``FlopCounterMode`` it installs no module hooks, which
    ``autograd.grad`` (the R1 and path-length penalties) does not support."""
    from torch.utils import flop_counter
    from torch.utils._python_dispatch import TorchDispatchMode

    registry = getattr(flop_counter, "flop_registry", None) or flop_counter.FLOP_REGISTRY

    total = [0]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            packet = func._overloadpacket
            if packet in registry:
                total[0] += registry[packet](*args, **kwargs, out_val=out)
            return out

    with Count():
        fn()
    return float(total[0])


def timed(fn, device, repeats: int = 1) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def phase(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channel-multiplier", type=int, default=2)
    parser.add_argument("--channels", type=int, default=0, help="cap on feature maps (0: the paper's table)")
    parser.add_argument("--style-dim", type=int, default=512)
    parser.add_argument("--n-mlp", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="training batch (the trainer's default)")
    parser.add_argument("--train-batch", type=int, default=None,
                        help="batch actually run for the training timings (default: --batch; smaller on a CPU)")
    parser.add_argument("--images", type=int, default=32, help="images generated and featurised for the timing")
    parser.add_argument("--metric-batch", type=int, default=32)
    parser.add_argument("--every-kimg", type=float, default=50.0, help="evaluation interval (the default)")
    parser.add_argument("--eval-images", type=int, default=10_000, help="images per periodic evaluation")
    parser.add_argument("--utilization", type=float, default=0.4, help="share of peak assumed by the estimates")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from colab_utils import runtime
    from colab_utils.metrics import FeatureStats, frechet_distance, kernel_inception_distance
    from colab_utils.metrics.features import features_of
    from colab_utils.stylegan2.evaluate import sampler
    from colab_utils.stylegan2.train import TrainConfig, build_nets, training_step

    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.default_device() if args.device == "auto" else torch.device(args.device)
    train_batch = args.train_batch or args.batch
    config = TrainConfig(size=args.size, batch=train_batch, channel_multiplier=args.channel_multiplier,
                         channels=args.channels or None, style_dim=args.style_dim, n_mlp=args.n_mlp, device=str(device),
                         augment=False)
    torch.manual_seed(0)
    nets = build_nets(config, device)
    G = nets.ema.module
    inception, weights = inception_network(device)
    sample = sampler(G, seed=0, autocast=nets.precision.autocast)
    mb = args.metric_batch

    phase("generation and Inception features")
    images = []
    sample(0, min(mb, 2))  # warm-up
    gen_s = timed(lambda: images.extend(sample(i, min(mb, args.images - i)) for i in range(0, args.images, mb)),
                  device)
    features_of(inception, images[0][:2])
    feat_s = timed(lambda: [features_of(inception, x) for x in images], device)
    gen_rate, feat_rate = args.images / gen_s, args.images / feat_s

    phase("statistics, FID and KID arithmetic")
    # Statistics, FID and KID arithmetic on random features of the real size: the running mean and covariance
    # (CPU, float64, per metric batch; 20 batches timed), FID's eigenvalues (CPU), KID's kernels (this device in
    # float64; 10 of the 100 subsets timed)
    rng = np.random.default_rng(0)
    batch_features = rng.random((mb, 2048))
    accumulate = FeatureStats(2048, keep=0, device=device)
    stats_s = timed(lambda: [accumulate.add(batch_features) for _ in range(20)], device) / (20 * mb)
    fake = FeatureStats(2048, keep=10_000).add(rng.random((10_000, 2048)))
    real = FeatureStats(2048, keep=10_000).add(rng.random((10_000, 2048)) + 0.01)
    fid_s = timed(lambda: frechet_distance(real, fake), torch.device("cpu"))
    kid_s = 10 * timed(lambda: kernel_inception_distance(real, fake, subsets=10, device=device), device)

    phase("training steps")
    # training: a plain step (1), a path-length step (4) and an R1 + path-length step (16), measured and counted
    real_images = torch.rand(train_batch, 3, args.size, args.size, device=device) * 2 - 1
    if nets.channels_last:
        real_images = real_images.contiguous(memory_format=torch.channels_last)
    training_step(nets, config, real_images, 1)  # warm-up
    step_s = {k: timed(lambda k=k: training_step(nets, config, real_images, k), device) for k in (1, 4, 16)}
    step_f = {k: flops(lambda k=k: training_step(nets, config, real_images, k)) for k in (1, 4, 16)}

    def lazy(d):  # per step of the lazy schedule: path length every 4, R1 every 16
        pl = d[4] - d[1]
        r1 = d[16] - d[4]
        return d[1] + pl / config.pl_every + r1 / config.r1_every

    phase("done")
    train_rate = train_batch / lazy(step_s)
    train_flops = lazy(step_f) / train_batch
    gen_flops = flops(lambda: sample(0, 2)) / 2
    feat_flops = flops(lambda: features_of(inception, images[0][:2])) / 2

    def eval_seconds(gen, feat, train, stats, kid, n=args.eval_images):
        return n * (1 / gen + 1 / feat + stats) + fid_s + kid

    def share(gen, feat, train, stats, kid):
        every = args.every_kimg * 1000 / train
        cost = eval_seconds(gen, feat, train, stats, kid)
        return 100 * cost / (every + cost)

    columns = {f"this {device.type} (measured)": (gen_rate, feat_rate, train_rate, stats_s, kid_s)}
    for name, (train_peak, fp32_peak, fp64_peak) in GPUS.items():
        u = args.utilization * 1e12
        columns[f"{name} (estimate)"] = (train_peak * u / gen_flops, fp32_peak * u / feat_flops,
                                         train_peak * u / train_flops, STATS_FLOPS / (fp64_peak * u),
                                         KID_FLOPS / (fp64_peak * u))

    table = config.channel_table()
    what = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"Quality metrics on {what} ({torch.get_num_threads()} threads), StyleGAN2 {args.size} px, channels "
          f"{table[4]}..{table[args.size]}, style_dim {args.style_dim}, n_mlp {args.n_mlp}; precision "
          f"{nets.precision.precision}; Inception {weights}; {args.images} images timed, training at batch "
          f"{train_batch}")
    print(f"FLOPs per image: generation {gen_flops / 1e9:.1f} G, Inception {feat_flops / 1e9:.1f} G, training "
          f"{train_flops / 1e9:.1f} G (lazy R1/16, path length/4). FID's eigenvalues (CPU, in every column): "
          f"{fid_s:.1f} s. "
          f"Estimates assume {args.utilization:.0%} of peak.")
    print()
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    rows = [
        ("generation, img/s", lambda g, f, t, st, k: f"{g:,.0f}" if g >= 10 else f"{g:.2f}"),
        ("Inception features, img/s", lambda g, f, t, st, k: f"{f:,.0f}" if f >= 10 else f"{f:.2f}"),
        ("generation + features + statistics, img/s", lambda g, f, t, st, k: f"{1 / (1 / g + 1 / f + st):,.1f}"),
        ("KID kernels (100 x 1000), s", lambda g, f, t, st, k: f"{k:,.1f}"),
        ("training, img/s", lambda g, f, t, st, k: f"{t:,.1f}" if t >= 10 else f"{t:.3f}"),
        (f"one fid{args.eval_images // 1000}k + kid (min)",
         lambda g, f, t, st, k: f"{eval_seconds(g, f, t, st, k) / 60:,.1f}"),
        ("fid50k_full + kid (min)", lambda g, f, t, st, k: f"{eval_seconds(g, f, t, st, k, 50_000) / 60:,.1f}"),
        (f"training between evaluations ({args.every_kimg:g} kimg, h)",
         lambda g, f, t, st, k: f"{args.every_kimg * 1000 / t / 3600:,.2f}"),
        ("evaluation share of training time", lambda g, f, t, st, k: f"{share(g, f, t, st, k):.1f} %"),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(*values) for values in columns.values()) + " |")


if __name__ == "__main__":
    main()
