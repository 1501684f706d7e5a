"""Texture figures that say whether an image looks like an acquisition rather than a smooth render: fidelity after
a low-pass (so that realistic noise is not penalised and lost anatomy is), the noise power in flat regions, and the
high-frequency share of the whole image.

All functions take grey float images in [0, 1] of one size (X-DigiSkull's 780 x 780).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from medshift.metrics.similarity import psnr, ssim

LOWPASS_SIGMA = 2.0  # output pixels: the Gaussian both images pass before the low-passed SSIM / PSNR
PATCH = 64  # side of the flat-region patches the noise power is measured on (IEC 62220-1 uses 256 at 0.15 mm)
# a patch is flat when its noise-free reference, plane removed, varies by less than this (grey levels of [0, 1])
FLAT_STD = 0.02
# ... and lies inside the head: its reference mean between these (the open beam and the densest bone are out)
FLAT_MEAN = (0.08, 0.92)


def lowpass(image: np.ndarray, sigma: float = LOWPASS_SIGMA) -> np.ndarray:
    """The image blurred by a Gaussian of `sigma` pixels (reflected borders)."""
    return cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def lowpass_similarity(image: np.ndarray, reference: np.ndarray, sigma: float = LOWPASS_SIGMA) -> tuple[float, float]:
    """(SSIM, PSNR in dB) of `image` against `reference`, both low-passed by the same Gaussian."""
    a, b = lowpass(image, sigma), lowpass(reference, sigma)
    return ssim(a, b), psnr(a, b)


def _detrend(patch: np.ndarray) -> np.ndarray:
    """The patch minus its least-squares plane (the slow anatomy and heel-effect gradient)."""
    n = patch.shape[0]
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    design = np.stack([np.ones(n * n), x.ravel(), y.ravel()], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, patch.ravel().astype(np.float64), rcond=None)
    return patch - (design @ coefficients).reshape(n, n)


@dataclass(frozen=True)
class FlatRegions:
    """Top-left corners of the non-overlapping `PATCH`-pixel patches of one pose that are flat in its noise-free
    reference (brain, soft tissue): where an image's variation is its noise."""

    corners: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, reference: np.ndarray, patch: int = PATCH, max_std: float = FLAT_STD,
           mean_range: tuple[float, float] = FLAT_MEAN) -> "FlatRegions":
        corners = []
        rows, cols = reference.shape
        for r in range(0, rows - patch + 1, patch):
            for c in range(0, cols - patch + 1, patch):
                block = reference[r : r + patch, c : c + patch]
                if mean_range[0] < block.mean() < mean_range[1] and _detrend(block).std() < max_std:
                    corners.append((r, c))
        return cls(tuple(corners))


def noise_power_spectrum(image: np.ndarray, regions: FlatRegions, patch: int = PATCH) -> np.ndarray:
    """The 2D noise power spectrum (grey level^2 x pixel^2, DC at [0, 0]) of `image` averaged over the flat
    patches: |FFT(detrended patch)|^2 / patch^2. Its mean over frequencies is the patches' variance (Parseval)."""
    if not regions.corners:
        raise ValueError("no flat patches: the reference has no region flat enough to measure noise on")
    spectra = [np.abs(np.fft.fft2(_detrend(image[r : r + patch, c : c + patch]))) ** 2 / patch**2 for r, c in regions.corners]
    return np.mean(spectra, axis=0)


def noise_power(image: np.ndarray, regions: FlatRegions, patch: int = PATCH) -> float:
    """The noise power spectrum of `image` in the flat regions, integrated over frequency: the variance of its
    detrended flat patches (grey levels^2)."""
    return float(noise_power_spectrum(image, regions, patch).mean())


def high_frequency_share(image: np.ndarray) -> float:
    """Standard deviation of the image's Laplacian over the image's own standard deviation: how much of its
    contrast sits at the pixel scale (noise, edges, trabeculae)."""
    image = np.asarray(image, np.float32)
    return float(cv2.Laplacian(image, cv2.CV_32F, ksize=1).std() / max(float(image.std()), 1e-8))
