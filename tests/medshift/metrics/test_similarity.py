import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medshift.metrics import psnr, ssim


def _skimage_ssim(a, b, data_range):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
    )


@pytest.mark.parametrize("shape", [(64, 64), (40, 57)])
def test_ssim_matches_skimage(shape):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    smooth = 0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    noisy = np.clip(smooth + 0.05 * rng.standard_normal(shape), 0, 1)
    assert ssim(noisy, smooth) == pytest.approx(_skimage_ssim(noisy, smooth, 1.0), abs=1e-10)
    other = rng.random(shape)
    assert ssim(other, smooth) == pytest.approx(_skimage_ssim(other, smooth, 1.0), abs=1e-10)


def test_ssim_data_range_and_identity():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32)).astype(float)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim(a, b, data_range=255) == pytest.approx(_skimage_ssim(a, b, 255), abs=1e-10)
    assert ssim(a, a, data_range=255) == pytest.approx(1.0)


def test_psnr_by_hand():
    a = np.zeros((16, 16))
    b = np.full((16, 16), 0.1)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(b, a) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")
    c = np.random.default_rng(2).random((16, 16))
    assert psnr(c, a) == pytest.approx(peak_signal_noise_ratio(a, c, data_range=1.0))


def test_mismatched_images_are_named():
    with pytest.raises(ValueError, match="equal HxW"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
