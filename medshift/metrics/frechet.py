"""Fréchet distance between two sets of features (the "F" of FID).

What is computed, written down exactly (the conventions of Clean-FID, Parmar et al. 2022,
which are also those of pytorch-fid):

    mu_a, mu_b          feature means
    sigma_a, sigma_b    feature covariances, ``np.cov(features, rowvar=False)`` (divides by N - 1)
    FD = ||mu_a - mu_b||^2 + Tr(sigma_a) + Tr(sigma_b) - 2 Tr(sqrtm(sigma_a @ sigma_b))

in float64. Clean-FID evaluates the last trace with ``scipy.linalg.sqrtm``; here it is evaluated
as the sum of the square roots of the eigenvalues of the symmetric matrix
``sigma_a^1/2 @ sigma_b @ sigma_a^1/2``, which is similar to ``sigma_a @ sigma_b`` and so has the
same eigenvalues (real and non-negative; rounding noise below zero is clipped). The value is the
same up to float64 rounding (checked against ``sqrtm`` in the tests), but symmetric eigensolvers
take about a second for 2048-d Inception features where ``sqrtm`` takes minutes on a CPU, and
singular covariances (fewer samples than dimensions) need no diagonal offset.

Which features go in (Inception pool3 with Clean-FID's resizing = "CFID", or another backbone)
is the caller's choice and must be reported with the number.
"""

from __future__ import annotations

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature matrix.

    Args:
        features: array of shape (num_samples, feature_dim); needs at least two samples.

    Returns:
        ``(mu, sigma)`` in float64: the mean, shape (feature_dim,), and the unbiased covariance,
        shape (feature_dim, feature_dim).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (num_samples, feature_dim), got shape {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {features.shape[0]}")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b).

    Args:
        mu_a: mean of the first set, shape (d,).
        sigma_a: covariance of the first set, shape (d, d).
        mu_b: mean of the second set, shape (d,).
        sigma_b: covariance of the second set, shape (d, d).

    Returns:
        The squared Fréchet (2-Wasserstein) distance as a Python float.
    """
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(
            f"mismatched statistics: mu {mu_a.shape} vs {mu_b.shape}, sigma {sigma_a.shape} vs {sigma_b.shape}"
        )
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sigma_a, sigma_b))


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``Tr(sqrtm(sigma_a @ sigma_b))`` for symmetric positive semi-definite matrices, via symmetric
    eigendecompositions: the eigenvalues of ``sigma_a @ sigma_b`` are those of
    ``sigma_a^1/2 @ sigma_b @ sigma_a^1/2``."""
    values, vectors = np.linalg.eigh(sigma_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    inner = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)  # symmetrise away rounding
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between two feature sets, each of shape (num_samples, feature_dim).

    With fewer samples than dimensions (e.g. 32 images, 2048-d Inception features) the same value is
    computed without d x d matrices: with centred features X_a, X_b and c = (n_a - 1)(n_b - 1), the
    non-zero eigenvalues of sigma_a @ sigma_b are the squared singular values of X_a X_b^T / sqrt(c),
    so Tr(sqrtm(sigma_a @ sigma_b)) is the sum of those singular values (milliseconds instead of seconds).
    """
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    (n_a, dim), n_b = np.shape(features_a), np.shape(features_b)[0]
    if max(n_a, n_b) >= dim:
        return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    centred_a = np.asarray(features_a, np.float64) - mu_a
    centred_b = np.asarray(features_b, np.float64) - mu_b
    cross = centred_a @ centred_b.T / np.sqrt((n_a - 1) * (n_b - 1))
    diff = mu_a - mu_b
    trace_sqrt = np.linalg.svd(cross, compute_uv=False).sum()
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)
