"""An offline feature backbone: the encoder of the evaluated pipeline's own VAE.

Inception, CLIP and LPIPS need published weights that may not be on disk. The VAE encoder is
always there, so distribution metrics can always be computed, but on *different* features:
numbers on this backbone are labelled ``vae-latent`` and are not comparable with FID/CFID/CMMD
values anywhere else. Being trained on the same data, it is also sensitive to exactly the
appearance differences the model learned, which favours no method in particular but makes
the scale dataset-specific.

Features: resize to the pipeline's resolution (INTER_AREA), scale to [-1, 1], take the
posterior mean of the latent, average-pool it to `grid` x `grid`, flatten
(latent_channels * grid^2 values, 256 for the 4-channel VAE and grid 8).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch.nn.functional as F

from medshift.metrics.backbones import FeatureBackbone, to_tensor_batch
from medshift.vae_codec import Autoencoder, encode_unscaled


class VAELatentFeatures(FeatureBackbone):
    """Pooled latents (posterior means) of an `AutoencoderKL` or `AutoencoderDC` encoder.

    Args:
        vae: the VAE (e.g. ``pipeline.vae``).
        resolution: images are resized to `resolution` x `resolution` before encoding.
        grid: side of the average-pooled latent grid.
        name: reported with every number computed on these features.
    """

    def __init__(self, vae: Autoencoder, resolution: int, grid: int = 8, name: str = "vae-latent") -> None:
        self.vae = vae.eval()
        self.resolution = int(resolution)
        self.grid = int(grid)
        self.name = f"{name}-{grid}x{grid}"

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        size = (self.resolution, self.resolution)
        resized = [image if image.shape == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images]
        param = next(self.vae.parameters())
        x = to_tensor_batch(resized, param.device).to(param.dtype) * 2.0 - 1.0
        latent = encode_unscaled(self.vae, x)  # RGB VAEs (e.g. Stable Diffusion's) see the grey replicated
        return F.adaptive_avg_pool2d(latent, self.grid).flatten(1).double().cpu().numpy()
