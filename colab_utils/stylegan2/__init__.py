"""StyleGAN2 (Karras et al. 2020) in plain PyTorch: the networks, rosinality-format checkpoints, sampling.

    from colab_utils.stylegan2 import load_rosinality, generate
    net = load_rosinality("stylegan2-ffhq-config-f.pt", device="cuda")
    images = generate(net.g_ema, 8, seed=0, truncation=0.7)   # toward the file's latent_avg

    from colab_utils.stylegan2 import TrainConfig, train
    result = train(TrainConfig(size=256, kimg=5000), "faces.zip", "runs/faces")   # resumes when re-run
"""
from .formats import (LoadedStyleGAN, StyleGANFormatError, export_rosinality, infer_config,
                      infer_discriminator_config, load_rosinality)
from .generate import (generate, interpolation_frames, mean_w, save_interpolation, slerp, style_mixing_grid,
                       to_uint8, truncation_center)
from .model import (Discriminator, Generator, MixingLatents, StyleLayer, check_size, default_channels,
                    mixing_latents)
from .augment import AdaptiveAugment
from .train import TrainConfig, TrainResult, load_checkpoint, plain_fp32, train

__all__ = [
    "Generator", "Discriminator", "StyleLayer", "MixingLatents", "mixing_latents", "default_channels", "check_size",
    "LoadedStyleGAN", "StyleGANFormatError", "load_rosinality", "export_rosinality", "infer_config",
    "infer_discriminator_config",
    "generate", "style_mixing_grid", "interpolation_frames", "save_interpolation", "mean_w", "slerp", "to_uint8",
    "truncation_center",
    "AdaptiveAugment", "TrainConfig", "TrainResult", "train", "plain_fp32", "load_checkpoint",
]
