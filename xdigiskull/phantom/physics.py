"""X-ray physics of the two domains: from per-material mass thickness to detected signal.

Real domain (Azurion-like): a polyenergetic tungsten spectrum hardened by the head (beam hardening is implicit in
the energy sum), an energy-integrating CsI detector, scatter through an anti-scatter grid (a broad kernel applied
to the interactions), the anode heel effect, Poisson quantum noise from a photon budget set by the tube current
and exposure time, detector blur applied after the noise (the scintillator spreads each quantum), and electronic
noise.

Synthetic domain (simulator-like): monoenergetic attenuation with exaggerated soft-tissue contrast and no scatter.

The spectra and attenuation curves come from `data/physics_tables.npz` (made by scripts/make_physics_tables.py
with spekpy and xraydb), so nothing here needs those packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from xdigiskull.phantom.anatomy import MATERIALS

_TABLES = Path(__file__).parent / "data" / "physics_tables.npz"


@lru_cache(maxsize=1)
def physics_tables() -> dict[str, np.ndarray]:
    """The precomputed spectra and attenuation curves (see scripts/make_physics_tables.py)."""
    with np.load(_TABLES) as data:
        return {key: data[key] for key in data.files}


@dataclass(frozen=True)
class Acquisition:
    """Technique of one real-domain class.

    Attributes:
        beam: name of the spectrum in the tables (`spectrum_<beam>`), also the class name.
        kvp: tube voltage (kV).
        tube_current_ma: tube current (mA).
        exposure_time_ms: pulse width per frame (ms).
        frame_time_ms: time between frames (ms).
        electronic_noise: detector read noise, in quanta per pixel.
    """

    beam: str
    kvp: float
    tube_current_ma: int
    exposure_time_ms: int
    frame_time_ms: float
    electronic_noise: float = 4.0

    @property
    def mas(self) -> float:
        return self.tube_current_ma * self.exposure_time_ms / 1000.0


# per-frame techniques: low-dose fluoroscopy, normal fluoroscopy, and an exposure (acquisition) run
ACQUISITIONS: dict[str, Acquisition] = {
    "real_low": Acquisition("real_low", 70.0, 10, 6, 1000.0 / 7.5),
    "real_normal": Acquisition("real_normal", 75.0, 25, 7, 1000.0 / 15.0),
    "real_exposure": Acquisition("real_exposure", 80.0, 200, 30, 500.0),
}

# scatter: amplitude of the convolution model (through the anti-scatter grid) and the kernel width (mm); gives a
# scatter-to-primary ratio of about 0.5 to 1.5 behind the skull
SCATTER_FRACTION = 0.15
SCATTER_SIGMA_MM = 45.0
# anode heel effect: relative intensity change from the cathode to the anode side of the field (along v)
HEEL_EFFECT = 0.12


def _mass_mu_matrix(tables: dict[str, np.ndarray]) -> np.ndarray:
    """(energies, materials) mass attenuation coefficients in the order of anatomy.MATERIALS."""
    return np.stack([tables[f"mass_mu_{m}"] for m in MATERIALS], axis=1).astype(np.float64)


@lru_cache(maxsize=8)
def _spectral_weights(beam: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Energy-integrating weights and attenuation of 2 keV groups of the spectrum, and the detected quanta per mm^2
    per mAs at 1 m of the open beam."""
    tables = physics_tables()
    fluence = tables[f"spectrum_{beam}"].astype(np.float64)  # 1/cm^2/mAs at 1 m, per 1 keV bin
    detected = fluence * tables["detector_absorption"]
    energy_weight = detected * tables["energies_kev"]
    mu = _mass_mu_matrix(tables)
    # merge pairs of 1 keV bins (weighted mean attenuation): half the exponentials, same curves within 0.5 %
    usable = len(energy_weight) // 2 * 2
    w = energy_weight[:usable].reshape(-1, 2)
    group_weight = w.sum(axis=1)
    group_mu = (mu[:usable].reshape(-1, 2, mu.shape[1]) * w[:, :, None]).sum(axis=1) / np.maximum(
        group_weight[:, None], 1e-30)
    keep = group_weight > group_weight.max() * 1e-4  # drop empty groups
    weights = group_weight[keep] / group_weight[keep].sum()
    return weights.astype(np.float32), group_mu[keep].T.astype(np.float32), float(detected.sum()) * 0.01


def real_transmission(mass_thickness: np.ndarray, acquisition: Acquisition) -> tuple[np.ndarray, float]:
    """Polyenergetic primary transmission through the head.

    Args:
        mass_thickness: (H, W, materials) g/cm^2 from the projector.
        acquisition: the class's technique (selects the spectrum).

    Returns:
        (transmission, quanta_per_mm2): the detected fraction of the unattenuated beam (H, W) for an
        energy-integrating detector, and the detected quanta per mm^2 of the unattenuated beam per mAs at 1 m.
    """
    weights, mu, quanta_per_mm2 = _spectral_weights(acquisition.beam)
    flat = mass_thickness.reshape(-1, mass_thickness.shape[-1]).astype(np.float32)
    transmission = np.exp(-(flat @ mu)) @ weights
    return transmission.reshape(mass_thickness.shape[:2]), quanta_per_mm2


def add_scatter_and_heel(transmission: np.ndarray, pitch_mm: float) -> np.ndarray:
    """Primary plus grid-filtered scatter, times the heel effect, relative to the unattenuated beam.

    Scatter follows a convolution model: each ray emits scatter in proportion to its primary times its
    attenuation length (T * -ln T: scatter made along the path that still escapes), spread by a broad Gaussian.
    """
    scatter = scatter_field(transmission, pitch_mm, SCATTER_FRACTION)
    return (transmission + scatter) * heel_profile(transmission.shape[0])[:, None]


def scatter_field(transmission: np.ndarray, pitch_mm: float, fraction: float) -> np.ndarray:
    """Grid-filtered scatter relative to the unattenuated beam: each ray emits scatter in proportion to its
    primary times its attenuation length (T * -ln T), spread by a broad Gaussian and scaled by `fraction`."""
    emitted = transmission * -np.log(np.clip(transmission, 1e-6, 1.0))
    # the kernel is broad: blur a 4x smaller copy, then bring it back
    rows, cols = transmission.shape
    small = cv2.resize(emitted, (cols // 4, rows // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), SCATTER_SIGMA_MM / (4 * pitch_mm), borderType=cv2.BORDER_REFLECT)
    return fraction * cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)


def heel_profile(rows: int) -> np.ndarray:
    """Relative intensity of the anode heel effect down the image rows (cathode side at the top)."""
    return 1.0 + HEEL_EFFECT * (0.5 - (np.arange(rows, dtype=np.float32) + 0.5) / rows)


def open_beam_quanta(acquisition: Acquisition, pixel_mm: float, source_to_detector_mm: float) -> float:
    """Detected quanta per detector pixel per frame of the unattenuated beam (no heel effect)."""
    _, _, quanta_per_mm2_at_1m = _spectral_weights(acquisition.beam)
    return quanta_per_mm2_at_1m * acquisition.mas * pixel_mm**2 * (1000.0 / source_to_detector_mm) ** 2


def detected_quanta(mass_thickness: np.ndarray, acquisition: Acquisition, pixel_mm: float, coarse_pitch_mm: float,
                    source_to_detector_mm: float) -> np.ndarray:
    """Expected quanta per detector pixel per frame (noise-free), on the grid of `mass_thickness`.

    Args:
        mass_thickness: (H, W, materials) g/cm^2.
        acquisition: technique of the class.
        pixel_mm: pixel pitch of the final detector (sets quanta per pixel).
        coarse_pitch_mm: pitch of the `mass_thickness` grid (sets the scatter kernel).
        source_to_detector_mm: SID, for the inverse-square law (the tables are at 1 m).
    """
    transmission, _ = real_transmission(mass_thickness, acquisition)
    signal = add_scatter_and_heel(transmission, coarse_pitch_mm)
    return signal * np.float32(open_beam_quanta(acquisition, pixel_mm, source_to_detector_mm))


def noisy_frame(expected: np.ndarray, acquisition: Acquisition, rng: np.random.Generator,
                blur_sigma_px: float = 0.7) -> np.ndarray:
    """One frame of detected quanta: Poisson noise, scintillator blur, electronic noise (float32).

    Poisson draws are exact where fewer than 30 quanta are expected and use the normal approximation (same mean
    and variance) elsewhere, which is several times faster on a megapixel frame.
    """
    expected = expected.astype(np.float32, copy=False)
    quanta = expected + np.sqrt(expected) * rng.standard_normal(expected.shape, dtype=np.float32)
    sparse = expected < 30.0
    if sparse.any():
        quanta[sparse] = rng.poisson(expected[sparse]).astype(np.float32)
    quanta = cv2.GaussianBlur(quanta, (0, 0), blur_sigma_px)
    quanta += rng.standard_normal(expected.shape, dtype=np.float32) * np.float32(acquisition.electronic_noise)
    return quanta


def noise_free_frame(expected: np.ndarray, blur_sigma_px: float = 0.7) -> np.ndarray:
    """The frame without noise, blurred like `noisy_frame`, for the ground truth."""
    return cv2.GaussianBlur(expected.astype(np.float32), (0, 0), blur_sigma_px)


# simulator: one energy, soft tissue drawn with more contrast than physics gives, bone a bit less
SYNTHETIC_ENERGY_KEV = 60.0
SYNTHETIC_CONTRAST = {"soft_tissue": 1.5, "brain": 1.35, "bone": 0.9, "enamel": 0.8}


def synthetic_attenuation(mass_thickness: np.ndarray) -> np.ndarray:
    """Monoenergetic line integral sum_m mu_m * t_m (dimensionless) with the simulator's contrast weights."""
    tables = physics_tables()
    energy_index = int(np.argmin(np.abs(tables["energies_kev"] - SYNTHETIC_ENERGY_KEV)))
    mu = np.array([tables[f"mass_mu_{m}"][energy_index] * SYNTHETIC_CONTRAST[m] for m in MATERIALS], np.float32)
    return mass_thickness @ mu
