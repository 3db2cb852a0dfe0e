"""StarGAN v2 (Choi et al., CVPR 2020): networks that load the official clovaai/stargan-v2 checkpoints,
and the FAN face-landmark network that makes its face masks.

    from colab_utils.stargan import load_official, compute_masks
    nets, config = load_official(["100000_nets_ema.ckpt"], device="cuda")
    s = nets.style_encoder(reference, y)
    out = nets.generator(source, s, masks=compute_masks(nets.fan, source))
"""
from .fan import FAN, FANFormatError, face_masks, heatmap_peaks, load_fan
from .formats import StarGANFormatError, compute_masks, export_official, infer_config, load_official, read_official
from .model import (AdaIN, AdainResBlk, Discriminator, Generator, HighPass, MappingNetwork, Nets, ResBlk,
                    StarGANConfig, StyleEncoder, build_nets)

__all__ = [
    "Generator", "MappingNetwork", "StyleEncoder", "Discriminator", "ResBlk", "AdaIN", "AdainResBlk", "HighPass",
    "StarGANConfig", "Nets", "build_nets",
    "FAN", "FANFormatError", "load_fan", "face_masks", "heatmap_peaks", "compute_masks",
    "StarGANFormatError", "load_official", "export_official", "infer_config", "read_official",
]
