"""StarGAN v2 training speed: the official-equivalent configuration vs ours, side by side on one device.

    python bench/stargan_train.py --device cuda       # CelebA-HQ model: 256 px, batch 8, w_hpf 1 with FAN masks
                                                      # (H100: well under 5 minutes)
    python bench/stargan_train.py --device cpu        # a tiny model, about a minute: proves the script works

Both variants run our trainer's ``train_step`` (two D steps with R1, latent- and reference-guided G steps,
three moving averages: the official iteration) on the same fixed batch of random images and codes (the data
loader is not timed); with ``--w-hpf 1`` a FAN with random weights makes the masks (the same cost as the
real one):

- "official-equivalent": fp32, eager, no torch.compile, contiguous (NCHW) tensors, PyTorch's default Adam,
  cuDNN autotuning (clovaai/stargan-v2's main.py turns it on): how the official code runs (it is our
  implementation of the same networks and losses, not the official code itself);
- "ours": ``TrainConfig`` as the trainer runs it: torch.compile (``--compile auto``: on CUDA; the R1 pass
  stays eager), bf16 autocast on Ampere and newer (fp16 + grad scaler on T4/V100, fp32 on the CPU),
  channels_last and fused Adam on CUDA (foreach on the CPU).

Each variant runs in a fresh process: ``--warmup`` iterations (compilation happens there: "warm-up (s)"), then
``--windows`` windows of ``--steps`` iterations; the table shows the median window, img/s, s/kimg, peak
memory, achieved TFLOP/s (FLOPs of one eager iteration from ``torch.utils.flop_counter``) and the speed-up.
See bench/_compare.py. On a small or shared CPU pass ``--threads 1``.
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


def measure(name: str, config_dict: dict, device: str, opts: dict, queue) -> None:
    """One variant in this (fresh) process; puts a :class:`_compare.Measured` (or the exception) on ``queue``."""
    try:
        import torch

        from colab_utils.stargan.data import Batch
        from colab_utils.stargan.fan import FAN
        from colab_utils.stargan.train import TrainConfig, build_state, train_step

        if opts["threads"]:
            torch.set_num_threads(opts["threads"])
        config = TrainConfig(**config_dict)
        device = torch.device(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as train() and the official main.py do
        torch.manual_seed(0)
        base_mb = _compare.rss_mb()
        state = build_state(config, 2, device, fan=FAN() if config.w_hpf > 0 else None)
        b, s = config.batch, config.img_size
        images = [torch.rand(b, 3, s, s) * 2 - 1 for _ in range(3)]
        domains = [torch.randint(0, 2, (b,)) for _ in range(2)]
        batch = Batch(images[0], domains[0], images[1], images[2], domains[1], torch.randn(b, config.latent_dim),
                      torch.randn(b, config.latent_dim)).to(device, state.memory_format)
        step = lambda i: train_step(state, batch, 1.0)  # noqa: E731
        warmup_s, seconds, peak, graphs = _compare.time_iterations(
            step, device=device, warmup=opts["warmup"], steps=opts["steps"], windows=opts["windows"], base_mb=base_mb)
        flops = _compare.count_flops(step, 0, 1) if name == BASELINE else None
        settings = (f"{state.precision_g.precision}, "
                    f"{'channels_last' if state.memory_format == torch.channels_last else 'NCHW'}, "
                    f"{'fused/foreach' if config.fast_optim else 'default'} Adam, "
                    f"{'compiled' if state.compiler.enabled else 'eager'}")
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
    parser.add_argument("--batch", type=int, default=8 if gpu else 4)
    parser.add_argument("--w-hpf", type=float, default=1.0 if gpu else 0.0,
                        help="1: high-pass skip with FAN masks (CelebA-HQ); 0: none (AFHQ)")
    parser.add_argument("--base-dim", type=int, default=0 if gpu else 16,
                        help="channels after the first conv (0: the paper's 2**14 // size)")
    parser.add_argument("--max-conv-dim", type=int, default=512 if gpu else 64)
    parser.add_argument("--hidden-dim", type=int, default=512 if gpu else 64, help="mapping network width")
    parser.add_argument("--precision", default="auto", help="our precision (auto, bf16, fp16, fp32)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="our torch.compile")
    parser.add_argument("--steps", type=int, default=10 if gpu else 3, help="iterations per timing window")
    parser.add_argument("--windows", type=int, default=3 if gpu else 2, help="timing windows; the median counts")
    parser.add_argument("--warmup", type=int, default=3 if gpu else 1,
                        help="untimed iterations first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    from colab_utils.stargan.train import TrainConfig

    ours = TrainConfig(img_size=args.size, batch=args.batch, w_hpf=args.w_hpf, base_dim=args.base_dim or None,
                       max_conv_dim=args.max_conv_dim, hidden_dim=args.hidden_dim, precision=args.precision,
                       compile=args.compile)
    official = dataclasses.replace(ours, precision="fp32", channels_last=False, fast_optim=False, compile="off")
    opts = {"threads": args.threads, "warmup": args.warmup, "steps": args.steps, "windows": args.windows}
    rows = [_compare.in_fresh_process(measure, name, dataclasses.asdict(config), args.device, opts)
            for name, config in ((BASELINE, official), ("ours", ours))]
    _compare.print_table(
        f"StarGAN v2 training iteration on {_compare.device_name(args.device, args.threads)}: {args.size} px, "
        f"batch {args.batch}, w_hpf {args.w_hpf}, base_dim {args.base_dim or 2 ** 14 // args.size}, max_conv_dim "
        f"{args.max_conv_dim}, hidden_dim {args.hidden_dim}; median of {args.windows} windows x {args.steps} "
        f"iterations after {args.warmup} warm-up", rows, args.batch, baseline=BASELINE)


if __name__ == "__main__":
    main()
