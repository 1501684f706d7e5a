"""How each domain turns detected signal into the pixels a site exports.

Real (Azurion-like): log conversion, multi-scale (Laplacian pyramid) contrast and edge enhancement with a dynamic
range compression of the coarsest band, stronger for the exposure class, an automatic window from the noise-free
image, 12-bit output, collimator shutters written as dark bands.

Synthetic (simulator-like): a smooth tone curve of the monoenergetic line integral, a little noise, 8-bit, placed
in a screen capture with a uniform non-image margin.

All images here are in standard display: bone bright, air dark.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# ------------------------------------------------------------------------------------------- real domain


@dataclass(frozen=True)
class VendorProcessing:
    """Multi-scale processing of one real class.

    Attributes:
        band_gains: gain of each Laplacian band, finest first (edge enhancement is the first ones).
        base_gain: gain of the coarsest residual (below 1 compresses the dynamic range).
        gamma: tone curve exponent after windowing.
    """

    band_gains: tuple[float, ...]
    base_gain: float
    gamma: float


PROCESSING: dict[str, VendorProcessing] = {
    # fluoroscopy: mild enhancement, the finest band kept near 1 so that noise is not amplified
    "real_low": VendorProcessing((0.9, 1.2, 1.35, 1.3, 1.15), 0.55, 0.95),
    "real_normal": VendorProcessing((1.1, 1.35, 1.45, 1.35, 1.15), 0.55, 0.95),
    # exposure: crisp, strong edge and detail enhancement
    "real_exposure": VendorProcessing((1.9, 1.9, 1.7, 1.4, 1.2), 0.5, 0.9),
}

PIXEL_MAX_12BIT = 4095


def _pyramid_enhance(image: np.ndarray, processing: VendorProcessing) -> np.ndarray:
    """Rebuild `image` from its Laplacian pyramid with each band scaled by its gain."""
    levels = len(processing.band_gains)
    gaussians = [image]
    for _ in range(levels):
        gaussians.append(cv2.pyrDown(gaussians[-1]))
    out = gaussians[-1] * np.float32(processing.base_gain)
    # the residual's mean is kept, only its variations are compressed
    out += np.float32((1.0 - processing.base_gain) * float(gaussians[-1].mean()))
    for level in range(levels - 1, -1, -1):
        finer = gaussians[level]
        size = (finer.shape[1], finer.shape[0])
        band = finer - cv2.pyrUp(gaussians[level + 1], dstsize=size)
        out = cv2.pyrUp(out, dstsize=size) + band * np.float32(processing.band_gains[level])
    return out


def log_signal(quanta: np.ndarray, unattenuated: float) -> np.ndarray:
    """-log(I / I0): large behind bone, near 0 in air (standard display before windowing)."""
    return -np.log(np.maximum(quanta, 0.5) / np.float32(unattenuated))


def vendor_process(log_image: np.ndarray, processing: VendorProcessing) -> np.ndarray:
    """Multi-scale enhancement of a log image (float32, unwindowed)."""
    return _pyramid_enhance(log_image.astype(np.float32), processing)


def auto_window(processed_noise_free: np.ndarray, field: tuple[slice, slice],
                open_beam: np.ndarray | None = None) -> tuple[float, float]:
    """Window (low, high) from the noise-free processed image inside the exposed field.

    Args:
        processed_noise_free: noise-free processed image (detector grid).
        field: the exposed field (row and column slices).
        open_beam: optional mask of pixels that see the unattenuated beam; the window starts just below their
            level, so that air is displayed (nearly) black, as vendors do.
    """
    # every 4th pixel both ways is plenty for percentiles of a noise-free image, and 16x cheaper
    values = processed_noise_free[field][::4, ::4]
    low, high = np.percentile(values, (0.5, 99.8))
    if open_beam is not None:
        air = values[open_beam[field][::4, ::4]]
        if air.size > 0.01 * values.size:
            low = float(np.median(air)) - 0.06 * (high - float(np.median(air)))
    return float(low), float(high + 0.03 * (high - low))


def to_display(processed: np.ndarray, window: tuple[float, float], gamma: float) -> np.ndarray:
    """Window and tone curve to [0, 1] (float32)."""
    low, high = window
    scaled = np.clip((processed - np.float32(low)) / np.float32(high - low), 0.0, 1.0)
    return scaled ** np.float32(gamma)


def to_12bit(display: np.ndarray) -> np.ndarray:
    """[0, 1] display values to 12-bit stored pixels."""
    return np.rint(display * PIXEL_MAX_12BIT).astype(np.uint16)


def apply_shutters(pixels: np.ndarray, field: tuple[slice, slice], rng: np.random.Generator) -> np.ndarray:
    """Blank everything outside the exposed field to a dark, slightly noisy level (the collimator blades let a
    little radiation through and the vendor blacks them out), in place; returns `pixels` (frames, rows, cols)."""
    rows, cols = field
    height, width = pixels.shape[-2:]
    bands = [(slice(0, rows.start), slice(0, width)), (slice(rows.stop, height), slice(0, width)),
             (rows, slice(0, cols.start)), (rows, slice(cols.stop, width))]
    for band_rows, band_cols in bands:
        region = pixels[:, band_rows, band_cols]
        if region.size == 0:
            continue
        dark = 24.0 + 0.02 * region.astype(np.float32)
        dark += rng.standard_normal(region.shape, dtype=np.float32) * np.float32(3.0)
        pixels[:, band_rows, band_cols] = np.clip(np.rint(dark), 0, PIXEL_MAX_12BIT).astype(pixels.dtype)
    return pixels


# ------------------------------------------------------------------------------------------- synthetic domain


@dataclass(frozen=True)
class SimulatorLook:
    """Tone mapping and noise of one synthetic class.

    Attributes:
        scale: attenuation at which the tone curve reaches 1 - 1/e.
        floor: display value of air (the simulator's background is not pure black).
        noise: standard deviation of the (slightly correlated) display noise.
        blur_sigma_px: softening of the render.
    """

    scale: float
    floor: float
    noise: float
    blur_sigma_px: float


SIMULATOR: dict[str, SimulatorLook] = {
    "synthetic_low": SimulatorLook(scale=7.5, floor=0.10, noise=0.016, blur_sigma_px=1.2),
    "synthetic_high": SimulatorLook(scale=6.5, floor=0.06, noise=0.005, blur_sigma_px=0.6),
}

# the simulator's user interface colour around the image (RGB); not grey, so never confused with the field
SCREEN_MARGIN_RGB = (28, 31, 40)


def simulator_display(attenuation: np.ndarray, look: SimulatorLook) -> np.ndarray:
    """Noise-free simulator render in [0, 1] from the monoenergetic line integral."""
    tone = 1.0 - np.exp(-attenuation / np.float32(look.scale))
    display = np.float32(look.floor) + np.float32(1.0 - look.floor) * tone
    if look.blur_sigma_px > 0:
        display = cv2.GaussianBlur(display, (0, 0), look.blur_sigma_px)
    return np.clip(display, 0.0, 1.0)


def simulator_noise(display: np.ndarray, look: SimulatorLook, rng: np.random.Generator) -> np.ndarray:
    """The render with the simulator's mild, slightly correlated noise, in [0, 1]."""
    noise = rng.standard_normal(display.shape, dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.8) * np.float32(look.noise / 0.33)  # keep the std after the blur
    return np.clip(display + noise, 0.0, 1.0)


def screen_capture(field_8bit: np.ndarray, margins: tuple[int, int, int, int]) -> np.ndarray:
    """Place the grey field in an RGB screen capture with uniform margins (top, bottom, left, right)."""
    top, bottom, left, right = margins
    rows, cols = field_8bit.shape
    canvas = np.empty((rows + top + bottom, cols + left + right, 3), np.uint8)
    canvas[:] = SCREEN_MARGIN_RGB
    canvas[top:top + rows, left:left + cols] = field_8bit[:, :, None]
    return canvas
