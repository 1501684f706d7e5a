"""Test objects rendered in every class instead of the head, so that any tool can measure the domains.

`edge`: a slanted tungsten edge (IEC 62220-1 style): a 1 mm tungsten plate lying on the detector, covering the
right half of the exposed field, its edge through the field's centre turned 3 degrees from the columns. Being on
the detector it is not magnified and the focal spot does not blur it, so its exports show the detector's
presampled MTF. The real classes are written "for processing": pixel values linear in the detected quanta
(100 + 3500 * quanta / open-beam quanta, no log, no vendor processing, no window), with the class's noise; the
simulator's captures go through its usual tone curve, blur and noise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import xdigiskull.phantom.appearance as appearance
import xdigiskull.phantom.physics as physics
import xdigiskull.phantom.physics_v2 as physics_v2
from xdigiskull.phantom.export_files import REAL_CLASSES, SYNTHETIC_CLASSES, to_16bit, write_png
from xdigiskull.phantom.dicom_writer import XAHeader, transfer_syntax_for, write_xa
from xdigiskull.phantom.geometry import SOURCE_TO_DETECTOR_MM, SOURCE_TO_ISOCENTER_MM

EDGE_ANGLE_DEG = 3.0
EDGE_THICKNESS_MM = 1.0
EDGE_OFFSET = 100.0  # stored value of no signal
EDGE_SCALE = 3500.0  # stored value of the open beam above the offset
SUPERSAMPLE = 4  # v2's edge: samples per pixel along each side


def edge_thickness_mm(size: int, angle_deg: float = EDGE_ANGLE_DEG, supersample: int = 1) -> np.ndarray:
    """Tungsten thickness (mm) over a `size` x `size` field, sampled `supersample` times per pixel along each
    side (sample centres): the plate covers the side right of a line through the field's centre, turned
    `angle_deg` from the columns."""
    centre = (size - 1) / 2.0
    samples = (np.arange(size * supersample) + 0.5) / supersample - 0.5  # in pixels
    rows, cols = np.meshgrid(samples, samples, indexing="ij")
    angle = np.deg2rad(angle_deg)
    signed = (cols - centre) * np.cos(angle) - (rows - centre) * np.sin(angle)
    return np.where(signed > 0, EDGE_THICKNESS_MM, 0.0).astype(np.float32)


def _tungsten_transmission(name: str) -> float:
    """Detected (energy-weighted) fraction of a class's beam behind the plate."""
    tables = physics.physics_tables()
    weights = tables[f"spectrum_{name}"] * tables["detector_absorption"] * tables["energies_kev"]
    mu = tables["mass_mu_tungsten"] * tables["density_tungsten"] * EDGE_THICKNESS_MM * 0.1
    return float((weights * np.exp(-mu)).sum() / weights.sum())


def _real_edge(name: str, layout, field: tuple[slice, slice], version: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The edge in a real class: the expected quanta the noise is drawn from, the noise-free frame, and the open
    beam's quanta (v1 blurs after the noise, v2 before: each version's own detector).

    v2 renders the edge on a grid SUPERSAMPLE times finer, spreads it by the scintillator there and integrates
    each pixel's area: the exact presampled MTF (scintillator x pixel aperture) at any pitch, beyond the
    Nyquist frequency too."""
    pixel_mm = layout.pixel_mm
    open_beam = physics.open_beam_quanta(physics.ACQUISITIONS[name], pixel_mm, SOURCE_TO_DETECTOR_MM)
    factor = 1 if version == 1 else SUPERSAMPLE
    plate = np.zeros((layout.detector * factor, layout.detector * factor), np.float32)
    start, stop = field[0].start * factor, field[0].stop * factor
    plate[start:stop, start:stop] = edge_thickness_mm(layout.field, supersample=factor)
    transmission = np.where(plate > 0, _tungsten_transmission(name), 1.0).astype(np.float32)
    signal = transmission * physics.heel_profile(plate.shape[0])[:, None] * np.float32(open_beam)
    if version == 1:
        return signal, physics.noise_free_frame(signal), open_beam
    signal = cv2.GaussianBlur(signal, (0, 0), physics_v2.CSI_SIGMA_MM / (pixel_mm / factor))
    n = layout.detector
    pixels = np.ascontiguousarray(signal.reshape(n, factor, n, factor).mean(axis=(1, 3)))
    return pixels, pixels, open_beam


def _for_processing(quanta: np.ndarray, open_beam: float) -> np.ndarray:
    return EDGE_OFFSET + EDGE_SCALE * quanta / np.float32(open_beam)


def render_edge(out: Path, layout, seed: int, frames: int, version: int) -> list[dict[str, object]]:
    """Write the edge's five exports and ground truths (one pose, `p<seed>-edge`) into `out`; returns the
    manifest rows. `layout` is geometry.ExportLayout; the field is centred on the detector."""

    rng = np.random.default_rng([seed, 62220])
    pair_id = f"p{seed}-edge"
    start = (layout.detector - layout.field) // 2
    field = (slice(start, start + layout.field), slice(start, start + layout.field))
    plate = np.zeros((layout.detector, layout.detector), np.float32)
    plate[field] = edge_thickness_mm(layout.field)  # the simulator draws at its pixels
    rows: list[dict[str, object]] = []
    base = {"view": "edge", "primary_angle": 0.0, "secondary_angle": 0.0, "pair_id": pair_id}
    for index, name in enumerate(REAL_CLASSES):
        acquisition = physics.ACQUISITIONS[name]
        expected, noise_free, open_beam = _real_edge(name, layout, field, version)
        stack = np.empty((frames, layout.detector, layout.detector), np.uint16)
        for f in range(frames):
            if version == 1:
                quanta = physics.noisy_frame(expected, acquisition, rng)
            else:
                quanta = physics_v2.noisy_frame(expected, acquisition, rng, layout.pixel_mm)
            stack[f] = np.clip(np.rint(_for_processing(quanta, open_beam)), 0, appearance.PIXEL_MAX_12BIT)
        appearance.apply_shutters(stack, field, rng)
        header = XAHeader(
            seed=seed, series_key=f"{pair_id}/{name}", series_number=900 + index, kvp=acquisition.kvp,
            tube_current_ma=acquisition.tube_current_ma, exposure_time_ms=acquisition.exposure_time_ms,
            frame_time_ms=acquisition.frame_time_ms, primary_angle=0.0, secondary_angle=0.0,
            source_to_detector_mm=SOURCE_TO_DETECTOR_MM, source_to_patient_mm=SOURCE_TO_ISOCENTER_MM,
            pixel_spacing_mm=layout.pixel_mm,
            shutter=(start + 1, start + layout.field, start + 1, start + layout.field),
            fluoroscopy=name != "real_exposure", acquisition_datetime=f"2025061208{index:02d}00",
        )
        relative = f"azurion/{name.split('_', 1)[1]}/edge_{pair_id}.dcm"
        write_xa(out / relative, stack, header, transfer_syntax_for(index))
        rows.append({"file": relative, "class": name, **base, "frames": frames})
        truth = _for_processing(noise_free[field], open_beam) / appearance.PIXEL_MAX_12BIT
        write_png(out / "ground_truth" / f"{pair_id}_{name}.png", to_16bit(truth))
    tables = physics.physics_tables()
    mu = float(np.interp(physics.SYNTHETIC_ENERGY_KEV, tables["energies_kev"], tables["mass_mu_tungsten"]))
    attenuation = plate * np.float32(mu * float(tables["density_tungsten"]) * 0.1)
    for name in SYNTHETIC_CLASSES:
        look = appearance.SIMULATOR[name]
        display = appearance.simulator_display(attenuation, look)[field]
        noisy = appearance.simulator_noise(display, look, rng)
        capture = appearance.screen_capture(np.rint(noisy * 255.0).astype(np.uint8), layout.margins)
        relative = f"simulator/{name.split('_', 1)[1]}/edge_{pair_id}.png"
        write_png(out / relative, capture)
        rows.append({"file": relative, "class": name, **base, "frames": 1})
        write_png(out / "ground_truth" / f"{pair_id}_{name}.png", to_16bit(display))
    return rows
