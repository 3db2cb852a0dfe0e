"""StyleGAN2 training speed: the official-equivalent configuration vs ours, side by side on one device.

    python bench/stylegan2_train.py --device cuda     # 256 px config-f, batch 16 (H100: well under 5 minutes)
    python bench/stylegan2_train.py --device cpu      # a tiny model, about a minute: proves the script works

Both variants run our trainer's ``training_step`` (D, lazy R1 every 16 steps, G, lazy path length every 4 on
half batches, G average) with rosinality's schedule and no augmentation, on the same fixed batch of random
images (the data loader is not timed):

- "official-equivalent": ``plain_fp32(config)``: fp32, eager, no torch.compile, contiguous (NCHW) tensors,
  PyTorch's default Adam, no cuDNN autotuning: how rosinality/stylegan2-pytorch runs with PyTorch defaults
  (it is our implementation of the same networks and losses, not the official code itself);
- "ours": ``TrainConfig`` as the trainer runs it: torch.compile (``--compile auto``: on CUDA), bf16 autocast
  on Ampere and newer (fp16 + grad scaler on T4/V100, fp32 on the CPU), channels_last and fused Adam on CUDA
  (foreach on the CPU), cuDNN autotuning.

Each variant runs in a fresh process: ``--warmup`` iterations (compilation happens there: "warm-up (s)"), then
``--windows`` windows of ``--steps`` iterations (a multiple of 16 holds whole R1 / path-length cycles); the
table shows the median window, img/s, s/kimg, peak memory, achieved TFLOP/s (FLOPs of one eager cycle from
``torch.utils.flop_counter``) and the speed-up. See bench/_compare.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _compare  # noqa: E402

BASELINE = "official-equivalent"


def measure(name: str, config_dict: dict, opts: dict, queue) -> None:
    """One variant in this (fresh) process; puts a :class:`_compare.Measured` (or the exception) on ``queue``."""
    try:
        import torch

        from colab_utils.stylegan2.train import TrainConfig, build_nets, resolve_device, training_step

        if opts["threads"]:
            torch.set_num_threads(opts["threads"])
        config = TrainConfig(**config_dict)
        device = resolve_device(config)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        torch.manual_seed(0)
        base_mb = _compare.rss_mb()
        nets = build_nets(config, device)
        real = torch.rand(config.batch, 3, config.size, config.size, device=device) * 2 - 1
        if nets.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        step = lambda i: training_step(nets, config, real, i)  # noqa: E731
        warmup_s, seconds, peak, graphs = _compare.time_iterations(
            step, device=device, warmup=opts["warmup"], steps=opts["steps"], windows=opts["windows"], base_mb=base_mb)
        flops = None
        if name == BASELINE:
            cycle = max(config.r1_every, config.pl_every)  # 16: one R1 and four path-length steps
            first = opts["warmup"] + opts["steps"] * opts["windows"] + 1
            first += (-first + 1) % cycle  # start the cycle at a step index = 1 (mod cycle)
            flops = _compare.count_flops(step, first, cycle)
        settings = (f"{nets.precision.precision}, {'channels_last' if nets.channels_last else 'NCHW'}, "
                    f"{'fused/foreach' if config.fast_optim else 'default'} Adam, "
                    f"{'compiled' if nets.compiled else 'eager'}")
        queue.put(_compare.Measured(name, settings, seconds, warmup_s, peak, flops, graphs))
    except BaseException as exc:  # the parent re-raises it
        queue.put(exc)


def main(argv=None) -> None:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    args, _ = parser.parse_known_args(argv)
    gpu = args.device.startswith("cuda")
    parser.add_argument("--size", type=int, default=256 if gpu else 32, help="image side")
    parser.add_argument("--batch", type=int, default=16 if gpu else 8)
    parser.add_argument("--channel-multiplier", type=int, default=2, help="2: config-f")
    parser.add_argument("--channels", type=int, default=0 if gpu else 32,
                        help="cap on feature maps per resolution (0: the paper's full table)")
    parser.add_argument("--style-dim", type=int, default=512 if gpu else 32)
    parser.add_argument("--n-mlp", type=int, default=8 if gpu else 2)
    parser.add_argument("--ada-p", type=float, default=0.0,
                        help="fixed augmentation probability for both (0: none, as rosinality's defaults)")
    parser.add_argument("--precision", default="auto", help="our precision (auto, bf16, fp16, fp32)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="our torch.compile")
    parser.add_argument("--steps", type=int, default=16, help="iterations per timing window (a multiple of 16)")
    parser.add_argument("--windows", type=int, default=3 if gpu else 2, help="timing windows; the median counts")
    parser.add_argument("--warmup", type=int, default=16 if gpu else 2,
                        help="untimed iterations first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    from colab_utils.stylegan2.train import TrainConfig, plain_fp32

    ours = TrainConfig(size=args.size, batch=args.batch, channel_multiplier=args.channel_multiplier,
                       channels=args.channels or None, style_dim=args.style_dim, n_mlp=args.n_mlp,
                       augment=args.ada_p > 0, ada_p=args.ada_p, ada_target=None, precision=args.precision,
                       compile=args.compile, device=args.device)
    variants = {BASELINE: plain_fp32(ours), "ours": ours}
    opts = {"threads": args.threads, "warmup": args.warmup, "steps": args.steps, "windows": args.windows}
    rows = [_compare.in_fresh_process(measure, name, dataclasses.asdict(config), opts)
            for name, config in variants.items()]
    table = ours.channel_table()
    _compare.print_table(
        f"StyleGAN2 training iteration on {_compare.device_name(args.device, args.threads)}: {args.size} px, "
        f"batch {args.batch}, channels {table[4]}..{table[args.size]}, style_dim {args.style_dim}, n_mlp "
        f"{args.n_mlp}, R1 every {ours.r1_every}, path length every {ours.pl_every}, ADA p {args.ada_p}; median of "
        f"{args.windows} windows x {args.steps} iterations after {args.warmup} warm-up", rows, args.batch,
        baseline=BASELINE)


if __name__ == "__main__":
    main()
