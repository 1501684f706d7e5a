import numpy as np
import pytest

from medshift.metrics import psnr, ssim


def _ssim_of_one_window(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004 by hand for an 11x11 image: one window position, Gaussian weights (sigma 1.5,
    summing to 1), population statistics."""
    x = np.arange(11) - 5.0
    taps = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(taps, taps) / np.outer(taps, taps).sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a, var_b = (w * a * a).sum() - mu_a**2, (w * b * b).sum() - mu_b**2
    cov = (w * a * b).sum() - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_is_wang_et_al_with_an_11_pixel_gaussian_window(data_range):
    rng = np.random.default_rng(0)
    a = rng.random((11, 11)) * data_range
    b = np.clip(a + 0.1 * data_range * rng.standard_normal(a.shape), 0, data_range)
    assert ssim(a, b, data_range=data_range) == pytest.approx(_ssim_of_one_window(a, b, data_range), abs=1e-10)
    assert ssim(a, a, data_range=data_range) == pytest.approx(1.0)


def test_ssim_falls_with_noise_and_is_symmetric():
    yy, xx = np.mgrid[:64, :57]
    smooth = 0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    rng = np.random.default_rng(1)
    light, heavy = (np.clip(smooth + s * rng.standard_normal(smooth.shape), 0, 1) for s in (0.02, 0.2))
    assert 1.0 > ssim(light, smooth) > ssim(heavy, smooth) > 0.0
    assert ssim(light, smooth) == pytest.approx(ssim(smooth, light))


def test_psnr_by_hand():
    a = np.zeros((16, 16))
    b = np.full((16, 16), 0.1)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(b, a) == pytest.approx(20.0)
    assert psnr(b * 255, a, data_range=255) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_mismatched_images_are_named():
    with pytest.raises(ValueError, match="equal HxW"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
