"""Full-reference similarity of grey images: SSIM and PSNR.

SSIM follows Wang et al. 2004: an 11 x 11 Gaussian window with sigma 1.5 (normalised to sum 1),
K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2 with L the data range, local statistics
from the window with population (not sample) covariance, evaluated only where the window fits
inside the image ("valid"), and averaged over those positions. This equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _gaussian_taps(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _valid_filter(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    # separable Gaussian, then keep only positions whose whole window lies inside the image
    filtered = ndimage.correlate1d(image, taps, axis=0, mode="reflect")
    filtered = ndimage.correlate1d(filtered, taps, axis=1, mode="reflect")
    r = len(taps) // 2
    return filtered[r:-r, r:-r]


def _as_pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(image, dtype=np.float64).squeeze()
    b = np.asarray(reference, dtype=np.float64).squeeze()
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two grey images of equal HxW, got shapes {a.shape} and {b.shape}")
    return a, b


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity between two grey images.

    Args:
        image: HxW array (e.g. a translation).
        reference: HxW array it is compared with (e.g. the source image).
        data_range: L, the value span of the images (1.0 for float images in [0, 1]).

    Returns:
        Mean SSIM over all window positions, in [-1, 1].
    """
    a, b = _as_pair(image, reference)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape}")
    taps = _gaussian_taps()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _valid_filter(a, taps), _valid_filter(b, taps)
    var_a = _valid_filter(a * a, taps) - mu_a**2
    var_b = _valid_filter(b * b, taps) - mu_b**2
    cov = _valid_filter(a * b, taps) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(L^2 / MSE)``; ``inf`` for identical images.

    Args:
        image: HxW array.
        reference: HxW array it is compared with.
        data_range: L, the value span of the images (1.0 for float images in [0, 1]).
    """
    a, b = _as_pair(image, reference)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))
