"""ClassNoiseModel: fitted statistics recover known noise, samples carry them, and the pipeline adds them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from medshift import MedShiftPipeline
from medshift.noise_model import ClassNoiseModel
from xdigiskull.classes import CLASS_NAMES

SIDE = 128


def coloured_noise(rng: np.random.Generator, sigma_blur: float) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed by a Gaussian of `sigma_blur` pixels (a known spectrum)."""
    noise = cv2.GaussianBlur(rng.standard_normal((SIDE, SIDE)).astype(np.float32), (0, 0), sigma_blur, borderType=cv2.BORDER_REFLECT)
    return noise / noise.std()


def clean_image(seed: int) -> np.ndarray:
    """A clean image: dark left half (0.25), bright right half (0.75)."""
    image = np.full((SIDE, SIDE), 0.25, np.float32)
    image[:, SIDE // 2 :] = 0.75
    return image


def acquisition(clean: np.ndarray, rng: np.random.Generator, sigma_blur: float = 1.0) -> np.ndarray:
    """Noise whose standard deviation is 0.01 where the image is dark and 0.03 where it is bright."""
    std = np.where(clean < 0.5, 0.01, 0.03)
    return clean + std * coloured_noise(rng, sigma_blur)


@pytest.fixture(scope="module")
def fitted() -> ClassNoiseModel:
    rng = np.random.default_rng(0)
    model = ClassNoiseModel(class_names=list(CLASS_NAMES), resolution=SIDE, intensity_bins=16, frequency_bins=32)
    cleans = [clean_image(i) for i in range(6)]
    model.fit_class("real_normal", [acquisition(c, rng) for c in cleans], cleans)
    return model


def test_fit_recovers_the_variance_per_intensity(fitted):
    variance = fitted.variance[CLASS_NAMES.index("real_normal")].numpy()
    dark, bright = variance[int(0.25 * 16)], variance[int(0.75 * 16)]
    assert np.sqrt(dark) == pytest.approx(0.01, rel=0.1)
    assert np.sqrt(bright) == pytest.approx(0.03, rel=0.1)


def test_samples_have_the_fitted_power_and_spectrum(fitted):
    clean = torch.from_numpy(clean_image(0))[None, None]
    label = CLASS_NAMES.index("real_normal")
    noise = fitted.sample(clean, [label], torch.Generator().manual_seed(1))[0, 0].numpy()
    inner = slice(8, SIDE // 2 - 8)  # away from the edge, where the local mean is mixed
    assert noise[:, inner].std() == pytest.approx(0.01, rel=0.15)
    assert noise[:, SIDE // 2 + 8 : -8].std() == pytest.approx(0.03, rel=0.15)
    # the spectrum: blurred noise has little power at high frequency; white noise has as much as at low
    reference = acquisition(clean_image(0), np.random.default_rng(5)) - clean_image(0)
    def high_share(x: np.ndarray) -> float:
        power = np.abs(np.fft.fft2(x / x.std())) ** 2
        radius = np.hypot(*np.meshgrid(np.fft.fftfreq(SIDE), np.fft.fftfreq(SIDE), indexing="ij"))
        return float(power[radius > 0.25].sum() / power.sum())
    assert high_share(noise) == pytest.approx(high_share(reference), abs=0.03)
    assert high_share(noise) < 0.2 * high_share(np.random.default_rng(2).standard_normal((SIDE, SIDE)))


def test_classes_without_statistics_get_no_noise_and_a_generator_fixes_the_draw(fitted):
    clean = torch.full((2, 1, SIDE, SIDE), 0.5)
    labels = [CLASS_NAMES.index("synthetic_low"), CLASS_NAMES.index("real_normal")]
    first = fitted.sample(clean, labels, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    again = fitted.sample(clean, labels, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    assert torch.equal(first, again)
    assert first[0].abs().max() == 0 and first[1].std() > 0.005


def test_other_sizes_get_noise_at_the_fitted_scale(fitted):
    clean = torch.full((1, 1, 2 * SIDE, 2 * SIDE), 0.25)
    noise = fitted.sample(clean, [CLASS_NAMES.index("real_normal")], torch.Generator().manual_seed(0))
    assert noise.shape == clean.shape
    assert noise.std().item() == pytest.approx(0.01, rel=0.25)


def test_fit_refuses_images_of_another_size(fitted):
    with pytest.raises(ValueError, match="fitted on images of side 128"):
        fitted.fit_class("real_low", [np.zeros((64, 64))], [np.zeros((64, 64))])


def test_pipeline_restores_the_noise_and_round_trips_it(make_pipeline, fitted, tmp_path):
    plain = make_pipeline()
    with pytest.raises(ValueError, match="needs a noise_model"):
        plain(np.full((64, 64), 0.5, np.float32), target="real_normal", tau=1.0, restore_noise=True)
    noise_model = ClassNoiseModel(class_names=list(CLASS_NAMES), resolution=64, intensity_bins=16, frequency_bins=32)
    rng = np.random.default_rng(0)
    cleans = [cv2.resize(clean_image(i), (64, 64)) for i in range(4)]
    noise_model.fit_class("real_normal", [acquisition(cv2.resize(c, (SIDE, SIDE)), rng)[::2, ::2] for c in cleans], cleans)
    pipe = make_pipeline(noise_model=noise_model)
    image = np.full((64, 64), 0.5, np.float32)
    call = dict(target="real_normal", tau=1.0, output_type="np")
    quiet = pipe(image, restore_noise=False, **call).images[0]
    assert np.array_equal(quiet, plain(image, **call).images[0])  # same weights: only the noise differs
    noisy = pipe(image, generator=torch.Generator().manual_seed(7), **call).images[0]
    assert (noisy - quiet).std() > 0.005
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = MedShiftPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.noise_model, ClassNoiseModel)
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(loaded(image, generator=torch.Generator().manual_seed(7), **call).images[0], noisy)


def test_a_pipeline_saved_without_a_noise_model_loads_without_one(saved_tiny_pipeline):
    assert MedShiftPipeline.from_pretrained(saved_tiny_pipeline).noise_model is None


def test_noise_model_classes_must_match_the_pipeline(make_pipeline):
    with pytest.raises(ValueError, match="noise_model's classes"):
        make_pipeline(noise_model=ClassNoiseModel(class_names=["a", "b"], resolution=64))
