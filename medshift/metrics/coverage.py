"""Density and coverage (Naeem et al., "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML 2020).

Each real sample i gets a ball of radius r_i = Euclidean distance to its k-th nearest *other*
real sample. With N real and M generated samples:

    density  = 1 / (k M) * sum_j sum_i [ ||fake_j - real_i|| < r_i ]
    coverage = 1 / N     * sum_i [ min_j ||fake_j - real_i|| < r_i ]

Coverage is in [0, 1] (share of real samples whose neighbourhood holds a generated sample);
density can exceed 1 when generated samples crowd dense real regions.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

DEFAULT_K = 5


def density_and_coverage(real_features: np.ndarray, fake_features: np.ndarray, k: int = DEFAULT_K) -> dict[str, float]:
    """Density and coverage of generated features against real features.

    Args:
        real_features: shape (N, d), the reference (real target-domain) features; needs N > k.
        fake_features: shape (M, d), the features of the generated / translated images.
        k: nearest-neighbour count defining each real sample's ball (the paper uses 5).

    Returns:
        ``{"density": ..., "coverage": ...}`` as Python floats.
    """
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (num_samples, dim) with equal dim, got {real.shape} and {fake.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if real.shape[0] <= k:
        raise ValueError(f"coverage with k={k} needs more than {k} real samples, got {real.shape[0]}")
    if fake.shape[0] == 0:
        raise ValueError("no generated samples")
    real_real = cdist(real, real)
    # column 0 of each sorted row is the sample itself (distance 0), so column k is the k-th neighbour
    radii = np.sort(real_real, axis=1)[:, k]
    real_fake = cdist(real, fake)  # (N, M)
    inside = real_fake < radii[:, None]
    density = inside.sum() / (k * fake.shape[0])
    coverage = inside.any(axis=1).mean()
    return {"density": float(density), "coverage": float(coverage)}
