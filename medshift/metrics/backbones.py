"""The one small interface every feature backbone implements.

A backbone turns grey images (float HxW arrays in [0, 1]) into one feature vector per image.
Its `name` goes into every number computed from its features, so a Fréchet distance on the
offline VAE features can never be mistaken for an Inception-based FID.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np
import torch


class FeatureBackbone(abc.ABC):
    """Maps grey images to feature vectors.

    Subclasses set `name` (reported with every number) and implement `_features` on a batch.
    """

    name: str = "unnamed"

    @abc.abstractmethod
    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        """Features of one batch of float32 HxW images in [0, 1], shape (len(images), dim)."""

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Features of all `images` (each a grey HxW array in [0, 1]), computed in batches.

        Args:
            images: the images; a (N, H, W) array works too.
            batch_size: images per forward pass.

        Returns:
            float64 array of shape (N, dim).
        """
        prepared = [np.clip(np.asarray(image, dtype=np.float32).squeeze(), 0.0, 1.0) for image in images]
        if not prepared:
            raise ValueError(f"{self.name}: no images to embed")
        chunks = [self._features(prepared[i : i + batch_size]) for i in range(0, len(prepared), batch_size)]
        return np.concatenate(chunks, axis=0).astype(np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def to_tensor_batch(images: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stack grey HxW arrays into a float32 (N, 1, H, W) tensor."""
    return torch.from_numpy(np.stack(images).astype(np.float32))[:, None].to(device)
