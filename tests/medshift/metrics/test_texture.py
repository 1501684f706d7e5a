"""Texture figures: low-passed fidelity forgives noise and not lost anatomy; noise power and high-frequency share
measure what they say on images of known noise."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medshift.metrics.texture import FlatRegions, high_frequency_share, lowpass_similarity, noise_power, noise_power_spectrum

SIDE = 256


def render() -> np.ndarray:
    """A noise-free 'render': a flat soft-tissue field (0.4) with a bright ring and fine bars on the right."""
    image = np.full((SIDE, SIDE), 0.4, np.float32)
    cv2.circle(image, (64, 64), 40, 0.8, 3)
    image[128:, 160:] += 0.2 * (np.arange(96)[None, :] % 16 < 8)
    return image


def test_lowpassed_fidelity_forgives_noise_but_not_blur():
    truth = render()
    noisy = truth + np.random.default_rng(0).normal(0, 0.02, truth.shape).astype(np.float32)
    blurred = cv2.GaussianBlur(truth, (0, 0), 4)
    noisy_ssim, noisy_psnr = lowpass_similarity(noisy, truth)
    blurred_ssim, blurred_psnr = lowpass_similarity(blurred, truth)
    assert noisy_psnr > 35 and noisy_ssim > 0.9
    assert blurred_psnr < noisy_psnr - 5 and blurred_ssim < noisy_ssim


def test_flat_regions_avoid_the_anatomy():
    regions = FlatRegions.of(render())
    assert regions.corners and (0, 192) in regions.corners
    for r, c in regions.corners:  # neither the ring (rows/cols 20-108) nor the bars (rows 128+, cols 160+)
        assert not (r < 108 and c < 108) and not (r + 64 > 128 and c + 64 > 160)


def test_noise_power_is_the_noise_variance_and_its_spectrum_its_colour():
    truth = render()
    regions = FlatRegions.of(truth)
    rng = np.random.default_rng(1)
    white = truth + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    assert noise_power(white, regions) == pytest.approx(0.02**2, rel=0.1)
    assert noise_power(truth, regions) < 1e-8
    spectrum = noise_power_spectrum(white, regions)
    assert spectrum.mean() == pytest.approx(noise_power(white, regions))
    with pytest.raises(ValueError, match="no flat patches"):
        noise_power(white, FlatRegions(()))


def test_high_frequency_share_grows_with_noise_and_falls_with_blur():
    truth = render()
    noisy = truth + np.random.default_rng(2).normal(0, 0.02, truth.shape).astype(np.float32)
    assert high_frequency_share(noisy) > 1.3 * high_frequency_share(truth)
    assert high_frequency_share(cv2.GaussianBlur(truth, (0, 0), 2)) < 0.5 * high_frequency_share(truth)
