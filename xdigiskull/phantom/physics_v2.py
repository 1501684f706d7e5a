"""Phantom v2's real-domain physics at the detector's pitch: what v1's physics does on its coarse grid, plus the
fine anatomy, the focal spot and the flat detector's measured MTF.

- Primary: the polyenergetic transmission of the tube's spectrum (shipped tables) through the voxel head is exact
  on the coarse grid; the fine anatomy's mass thickness (per material) attenuates it with the local
  beam-hardened effective attenuation -d ln T / d t_m (first order in the fine detail, so beam hardening
  carries over to it).
- Scatter: v1's low-frequency convolution model, with a scatter fraction per class (`SCATTER_FRACTION`);
  `scatter_to_primary` reports the ratio it gives.
- Heel effect as in v1.
- Blur: a CsI:Tl scintillator whose MTF (with its native 0.15 mm pixel) is 50 % at 1.29 cycles/mm, seen through
  the export's own pixel aperture (sinc), and the focal spot's penumbra at the isocenter's magnification, applied
  as one transfer function in the Fourier domain (`detector_transfer`, `predicted_mtf`).
- Noise: Poisson quanta (spread by the scintillator) plus electronic noise, as v1.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft

from xdigiskull.phantom.physics import Acquisition, _spectral_weights, heel_profile, scatter_field

# CsI:Tl scintillator: a Gaussian spread whose MTF times the native 0.15 mm pixel's sinc is 0.5 at 1.29 cycles/mm
NATIVE_PIXEL_MM = 0.15
NATIVE_MTF50_CYCLES_PER_MM = 1.29


def _csi_sigma_mm() -> float:
    aperture = np.sinc(NATIVE_PIXEL_MM * NATIVE_MTF50_CYCLES_PER_MM)  # np.sinc(x) = sin(pi x) / (pi x)
    return float(np.sqrt(-np.log(0.5 / aperture) / (2 * np.pi**2 * NATIVE_MTF50_CYCLES_PER_MM**2)))


CSI_SIGMA_MM = _csi_sigma_mm()  # about 0.139 mm
# focal spot (nominal size, mm) per class: fluoroscopy on the small focus, exposures on the large one
FOCAL_SPOT_MM = {"real_low": 0.4, "real_normal": 0.4, "real_exposure": 0.7}
# scatter through the anti-scatter grid: amplitude of the convolution model per class (harder beams scatter more
# forward); behind the skull it gives a scatter-to-primary ratio of 0.4-0.5 laterally and 0.6-0.8 AP
# (scripts/measure_scatter.py)
SCATTER_FRACTION = {"real_low": 0.10, "real_normal": 0.11, "real_exposure": 0.13}


def primary_and_slopes(mass_thickness: np.ndarray, acquisition: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Polyenergetic primary transmission and its beam-hardened effective attenuation per material.

    Args:
        mass_thickness: (H, W, materials) g/cm^2 of the voxel head.
        acquisition: the class's technique (selects the spectrum).

    Returns:
        (transmission (H, W), mu_effective (H, W, materials) in cm^2/g): -d ln T / d t_m at each pixel.
    """
    weights, mu, _ = _spectral_weights(acquisition.beam)
    flat = mass_thickness.reshape(-1, mass_thickness.shape[-1]).astype(np.float32)
    per_energy = np.exp(-(flat @ mu)) * weights  # (pixels, energies)
    transmission = per_energy.sum(axis=1)
    mu_effective = (per_energy @ mu.T) / np.maximum(transmission, 1e-30)[:, None]
    rows, cols = mass_thickness.shape[:2]
    return transmission.reshape(rows, cols), mu_effective.reshape(rows, cols, -1).astype(np.float32)


def focal_spot_sigma_mm(name: str, magnification: float) -> float:
    """Penumbra of the focal spot at the detector (Gaussian sigma, mm) for an object at `magnification`."""
    return FOCAL_SPOT_MM[name] / 2.355 * (magnification - 1.0)


def predicted_mtf(frequency: np.ndarray, pitch_mm: float, focal_sigma_mm: float = 0.0) -> np.ndarray:
    """Presampled MTF of the model along one axis: scintillator x pixel aperture (x focal spot)."""
    sigma2 = CSI_SIGMA_MM**2 + focal_sigma_mm**2
    return np.exp(-2 * np.pi**2 * sigma2 * frequency**2) * np.abs(np.sinc(pitch_mm * frequency))


def predicted_mtf50(pitch_mm: float, focal_sigma_mm: float = 0.0) -> float:
    """Frequency (cycles/mm) where `predicted_mtf` falls to 0.5."""
    f = np.linspace(0.0, 0.5 / pitch_mm * 2, 20001)
    return float(f[np.argmax(predicted_mtf(f, pitch_mm, focal_sigma_mm) < 0.5)])


def detector_transfer(image: np.ndarray, pitch_mm: float, focal_sigma_mm: float) -> np.ndarray:
    """Apply the presampled MTF (`predicted_mtf` along both axes) to a point-sampled image, in the Fourier
    domain (edges reflected so the borders do not wrap)."""
    rows, cols = image.shape
    pad = 16
    padded = cv2.copyMakeBorder(image.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    fy = np.fft.fftfreq(padded.shape[0], pitch_mm)[:, None]
    fx = np.fft.rfftfreq(padded.shape[1], pitch_mm)[None, :]
    sigma2 = CSI_SIGMA_MM**2 + focal_sigma_mm**2
    transfer = (np.exp(-2 * np.pi**2 * sigma2 * (fx**2 + fy**2)) * np.sinc(pitch_mm * fx) * np.sinc(pitch_mm * fy))
    # single precision (scipy keeps float32; numpy's FFT would compute in float64)
    filtered = scipy.fft.irfft2(scipy.fft.rfft2(padded) * transfer.astype(np.float32), s=padded.shape)
    return np.ascontiguousarray(filtered[pad:pad + rows, pad:pad + cols], dtype=np.float32)


def scatter_and_heel(transmission: np.ndarray, pitch_mm: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Scatter field (relative to the open beam) of a class, and the heel profile down the rows."""
    return scatter_field(transmission, pitch_mm, SCATTER_FRACTION[name]), heel_profile(transmission.shape[0])


def scatter_to_primary(transmission: np.ndarray, pitch_mm: float, name: str, where: np.ndarray) -> float:
    """Median scatter-to-primary ratio of a class over the pixels `where` (e.g. behind the skull)."""
    scatter, _ = scatter_and_heel(transmission, pitch_mm, name)
    return float(np.median(scatter[where] / np.maximum(transmission[where], 1e-9)))


def noisy_frame(expected: np.ndarray, acquisition: Acquisition, rng: np.random.Generator,
                pitch_mm: float) -> np.ndarray:
    """One frame of detected quanta from the (already blurred) expected quanta: Poisson noise spread by the
    scintillator, plus electronic noise (float32). Exact Poisson draws below 30 quanta, normal above."""
    expected = expected.astype(np.float32, copy=False)
    noise = np.sqrt(np.maximum(expected, 0.0)) * rng.standard_normal(expected.shape, dtype=np.float32)
    sparse = expected < 30.0
    if sparse.any():
        noise[sparse] = rng.poisson(np.maximum(expected[sparse], 0.0)).astype(np.float32) - expected[sparse]
    noise = cv2.GaussianBlur(noise, (0, 0), max(CSI_SIGMA_MM / pitch_mm, 0.3))
    noise += rng.standard_normal(expected.shape, dtype=np.float32) * np.float32(acquisition.electronic_noise)
    return expected + noise
