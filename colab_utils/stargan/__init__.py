"""StarGAN v2 (Choi et al., CVPR 2020): networks that load the official clovaai/stargan-v2 checkpoints,
the FAN face-landmark network that makes its face masks, a resumable trainer and synthesis.

    from colab_utils.stargan import load_official, translate
    nets, config = load_official(["100000_nets_ema.ckpt"], device="cuda", fan_path="wing.ckpt")  # w_hpf=1: FAN
    out = translate(nets, sources, ref=reference, domain=1)     # aligned faces in [-1, 1]

    from colab_utils.stargan.train import TrainConfig, train
    result = train(TrainConfig(fan_path="wing.ckpt"), "faces.zip", "runs/me")   # re-run to continue
"""
from .fan import FAN, FANFormatError, FANRequiredError, face_masks, heatmap_peaks, load_fan
from .formats import StarGANFormatError, compute_masks, export_official, infer_config, load_official, read_official
from .model import (AdaIN, AdainResBlk, Discriminator, Generator, HighPass, MappingNetwork, Nets, ResBlk,
                    StarGANConfig, StyleEncoder, build_nets)
from .synthesize import (latent_grid, load_nets, reference_grid, style_codes, style_interpolation_gif,
                         translate)
from .train import TrainConfig, TrainResult  # the function stays colab_utils.stargan.train.train (no shadowing)

__all__ = [
    "Generator", "MappingNetwork", "StyleEncoder", "Discriminator", "ResBlk", "AdaIN", "AdainResBlk", "HighPass",
    "StarGANConfig", "Nets", "build_nets",
    "FAN", "FANFormatError", "FANRequiredError", "load_fan", "face_masks", "heatmap_peaks", "compute_masks",
    "StarGANFormatError", "load_official", "export_official", "infer_config", "read_official",
    "translate", "style_codes", "reference_grid", "latent_grid", "style_interpolation_gif", "load_nets",
    "TrainConfig", "TrainResult",
]
