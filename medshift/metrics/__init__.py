"""Image-translation metrics: the MedShift paper's Table 1 protocol plus paired full-reference scores.

Math (numpy / scipy, backbone-agnostic):
    `frechet_distance`, `frechet_distance_from_features`, `feature_statistics` (frechet.py),
    `density_and_coverage` (coverage.py), `cmmd`, `mmd_rbf` (mmd.py),
    `ssim`, `psnr` (similarity.py), `table1_ranks`, `competition_rank` (ranking.py).

Backbones (one interface, `FeatureBackbone`, whose `name` is reported with every number):
    `medshift.metrics.inception.InceptionFeatures`  FID Inception-v3, Clean-FID preprocessing -> CFID
    `medshift.metrics.clip.CLIPFeatures`            CLIP ViT-L/14-336 embeddings -> CMMD
    `medshift.metrics.lpips.LPIPS`                  LPIPS v0.1, AlexNet trunk
    `medshift.metrics.vae_features.VAELatentFeatures`  the pipeline's own VAE encoder (fallback)
Those modules are imported on demand: CLIP pulls in transformers, the VAE diffusers.
`medshift.metrics.fetch` (``medshift weights fetch``) caches the Inception and LPIPS weights.
"""

from medshift.metrics.backbones import FeatureBackbone
from medshift.metrics.coverage import density_and_coverage
from medshift.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
from medshift.metrics.mmd import cmmd, l2_normalize, mmd_rbf
from medshift.metrics.ranking import competition_rank, table1_ranks
from medshift.metrics.similarity import psnr, ssim

__all__ = [
    "FeatureBackbone",
    "cmmd",
    "competition_rank",
    "density_and_coverage",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "l2_normalize",
    "mmd_rbf",
    "psnr",
    "ssim",
    "table1_ranks",
]
