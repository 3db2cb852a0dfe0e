"""Quality metrics: FID and KID through torch-fidelity, LPIPS through lpips, real-image statistics cached
beside the dataset, a metric history that lives in training checkpoints, and StarGAN v2's evaluation
protocol. Trainers and command lines call this package; it imports neither trainer.

    from colab_utils import metrics
    extractor = metrics.inception("cuda")                       # weights through colab_utils.hub
    real = metrics.real_statistics(dataset, extractor)          # cached beside the images
    fake = metrics.generated_statistics(sample, 10_000, extractor)
    print(metrics.frechet_distance(real, fake), metrics.kernel_inception_distance(real, fake))

Offline (tests, smoke runs) pass ``extractor=metrics.RandomFeatures()``: deterministic, but its distances
are only comparable with each other.
"""
from .dataset_stats import dataset_fingerprint, default_cache_dir, real_statistics
from .features import (InceptionFeatures, RandomFeatures, WeightsUnavailableError, features_of, inception,
                       to_uint8)
from .fid import FeatureStats, frechet_distance, generated_statistics, kernel_inception_distance
from .history import MetricHistory, due
from .perceptual import LPIPS, lpips_model, pairwise_diversity
from .stargan_v2 import StarGANEvaluation, evaluate_stargan_v2

__all__ = [
    "FeatureStats", "frechet_distance", "kernel_inception_distance", "generated_statistics",
    "InceptionFeatures", "RandomFeatures", "WeightsUnavailableError", "inception", "features_of", "to_uint8",
    "dataset_fingerprint", "default_cache_dir", "real_statistics",
    "MetricHistory", "due",
    "LPIPS", "lpips_model", "pairwise_diversity",
    "StarGANEvaluation", "evaluate_stargan_v2",
]
