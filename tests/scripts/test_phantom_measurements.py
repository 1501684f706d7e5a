"""scripts/measure_mtf.py and scripts/measure_phantom_texture.py: the measurements recover known answers on
synthetic inputs (a blurred slanted edge, a 1/f^beta field, a straight line and a space-filling scribble)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import load_script

from xdigiskull.phantom.physics_v2 import detector_transfer, predicted_mtf50
from xdigiskull.phantom.test_objects import edge_thickness_mm


def test_slanted_edge_recovers_the_detector_mtf50() -> None:
    measure_mtf = load_script("measure_mtf")
    pitch = 0.39
    edge = 100.0 + 3000.0 * (edge_thickness_mm(300) == 0)  # bright open beam left of a 3-degree slanted plate
    image = detector_transfer(edge.astype(np.float32), pitch, 0.0)
    freqs, mtf = measure_mtf.slanted_edge_mtf(image, pitch)
    assert measure_mtf.mtf50(freqs, mtf) == pytest.approx(predicted_mtf50(pitch), rel=0.05)
    # a blurrier detector measures lower
    blurred = detector_transfer(edge.astype(np.float32), pitch, 0.3)
    assert measure_mtf.mtf50(*measure_mtf.slanted_edge_mtf(blurred, pitch)) < 0.85 * predicted_mtf50(pitch)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_spectral_slope_of_a_power_law_field(beta: float) -> None:
    texture = load_script("measure_phantom_texture")
    rng = np.random.default_rng(0)
    size, pitch = 256, 0.39
    f = np.fft.fftfreq(size, pitch)
    radius = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) * radius ** (-beta / 2)
    field = np.fft.ifft2(spectrum).real
    freqs, power, patches = texture.radial_spectrum(field, np.ones((size, size), bool), pitch)
    assert patches == 49
    assert texture.fit_beta(freqs, power) == pytest.approx(beta, abs=0.25)


def test_box_counting_dimension_of_a_line_and_a_scribble() -> None:
    texture = load_script("measure_phantom_texture")
    line = np.array([[10.0, 10.0], [900.0, 700.0]])
    # a straight line measures a little under 1 (the finite line's ends count at the large boxes)
    assert texture.box_counting_dimension([line], 1024) == pytest.approx(1.0, abs=0.1)
    rng = np.random.default_rng(1)
    scribble = np.cumsum(rng.normal(0.0, 3.0, size=(200_000, 2)), axis=0) % 1000  # a Brownian trace fills the plane
    assert texture.box_counting_dimension([scribble], 1024) > 1.7
