"""The two forms of StyleGAN2's modulated convolution side by side, in one run: the synthesis network per
batch size in the grouped form (rosinality's and the paper's Fig. 2d), the input-scaling form, and ``"auto"``
(what :func:`colab_utils.stylegan2.model.modconv_form` picks), forward alone (editing, video, sampling) and
forward + backward (training). The table is the evidence for the ``"auto"`` rule.

    python bench/modconv_forms.py                                   # cuda when present, 256 px config-f
    python bench/modconv_forms.py --device cpu --size 64 --batches 1 4 --repeats 3

Random weights and styles (the cost does not depend on them). Measures alternate run by run; the table shows
medians and the ratio against the grouped form measured in the same run (< 1: faster than grouped).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from colab_utils.runtime import default_device
from colab_utils.stylegan2 import Generator

FORMS = ("grouped", "input_scaling", "auto")


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(G: Generator, batch: int, backward: bool, precision: str, device: torch.device,
            repeats: int) -> dict[str, float]:
    """Median seconds of one synthesis pass (with its backward when ``backward``) per form."""
    torch.manual_seed(batch)
    styles = [torch.randn(batch, layer.in_channels, device=device) for layer in G.style_layers]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def run(form: str):
        G.set_modconv(form)
        if backward:
            G.zero_grad(set_to_none=True)
            with autocast:
                img = G.synthesis(styles, randomize_noise=True)
            img.float().square().mean().backward()
        else:
            with torch.no_grad(), autocast:
                G.synthesis(styles, randomize_noise=True)

    for form in FORMS:   # warm-up (cuDNN picks its algorithms)
        run(form)
    times = {form: [] for form in FORMS}
    for _ in range(repeats):
        for form in FORMS:
            times[form].append(timed(lambda: run(form), device))
    return {form: statistics.median(t) for form, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channel-multiplier", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per form (medians are shown)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC activations (the trainer's GPU path)")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    G = Generator(args.size, channel_multiplier=args.channel_multiplier).to(device)
    G.use_channels_last(args.channels_last)
    precisions = ["fp32", "bf16"] if device.type == "cuda" and torch.cuda.is_bf16_supported() else ["fp32"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"modulated convolution forms: {args.size} px, channel multiplier {args.channel_multiplier}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}; {name}; torch {torch.__version__}; "
          f"medians of {args.repeats} alternating runs")
    print()
    print("| pass | precision | batch | grouped | input scaling | auto (picks) | input scaling / grouped |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for backward in (False, True):
        for precision in precisions:
            for batch in args.batches:
                t = measure(G, batch, backward, precision, device, args.repeats)
                picks = "grouped" if batch == 1 else "input scaling"
                print(f"| {'forward + backward' if backward else 'forward'} | {precision} | {batch} | "
                      f"{t['grouped'] * 1e3:.1f} ms | {t['input_scaling'] * 1e3:.1f} ms | "
                      f"{t['auto'] * 1e3:.1f} ms ({picks}) | {t['input_scaling'] / t['grouped']:.2f}x |")


if __name__ == "__main__":
    main()
