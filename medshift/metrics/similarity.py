"""Full-reference similarity of grey images: SSIM and PSNR, computed by scikit-image.

SSIM follows Wang et al. 2004: an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
C1 = (K1 L)^2, C2 = (K2 L)^2 with L the data range, local statistics with population (not sample)
covariance, averaged over the positions where the window fits inside the image. In scikit-image that is
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: its Gaussian
window spans 2 * round(3.5 sigma) + 1 = 11 pixels.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


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
    return float(
        structural_similarity(a, b, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, data_range=data_range)
    )


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(L^2 / MSE)``; ``inf`` for identical images.

    Args:
        image: HxW array.
        reference: HxW array it is compared with.
        data_range: L, the value span of the images (1.0 for float images in [0, 1]).
    """
    a, b = _as_pair(image, reference)
    if np.array_equal(a, b):
        return float("inf")  # scikit-image divides by a zero MSE here
    return float(peak_signal_noise_ratio(b, a, data_range=data_range))
