"""CMMD (Jayasumana et al., "Rethinking FID: Towards a Better Evaluation Metric for Image
Generation", CVPR 2024): maximum mean discrepancy with a Gaussian RBF kernel.

With k(x, y) = exp(-||x - y||^2 / (2 sigma^2)), sigma = 10, and the biased (V-statistic)
estimator that keeps the diagonal terms, exactly as the CMMD reference code:

    MMD^2 = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)
    CMMD  = 1000 * MMD^2          (on L2-normalised CLIP image embeddings)

The 1000 scale only makes the small values readable.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Scale each row to unit Euclidean norm (CLIP embeddings are compared on the unit sphere)."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def mmd_rbf(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """Scaled squared MMD between two sample sets with a Gaussian RBF kernel (biased estimator).

    Args:
        x: shape (N, d), first sample set (e.g. real-image embeddings).
        y: shape (M, d), second sample set (e.g. translated-image embeddings).
        sigma: kernel bandwidth; CMMD uses 10.
        scale: factor the result is multiplied by; CMMD reports x1000.

    Returns:
        ``scale * MMD^2`` as a Python float. The inputs are used as given (normalise them first
        for CMMD, see `cmmd`).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) == 0 or len(y) == 0:
        raise ValueError(f"need non-empty (num_samples, dim) arrays of equal dim, got {x.shape} and {y.shape}")
    gamma = 1.0 / (2.0 * sigma**2)
    k_xx = np.exp(-gamma * cdist(x, x, "sqeuclidean")).mean()
    k_yy = np.exp(-gamma * cdist(y, y, "sqeuclidean")).mean()
    k_xy = np.exp(-gamma * cdist(x, y, "sqeuclidean")).mean()
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))


def cmmd(real_embeddings: np.ndarray, fake_embeddings: np.ndarray) -> float:
    """CMMD between two sets of image embeddings: L2-normalise, then `mmd_rbf` (sigma 10, x1000)."""
    return mmd_rbf(l2_normalize(real_embeddings), l2_normalize(fake_embeddings))
