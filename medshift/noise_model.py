"""ClassNoiseModel: the texture an acquisition of each class carries beyond what the VAE can reconstruct.

A latent autoencoder is deterministic and compresses 64 pixels into a few numbers, so its decoder returns the
conditional mean of an image: quantum and electronic noise, and the finest trabecular texture, cannot come back
out of it. The noise model puts them back. For each class it holds

- `variance[c, k]`: the residual's variance (image minus its VAE reconstruction) where the reconstruction's local
  mean falls in intensity bin k (quantum noise after the log and the vendor's processing depends on the signal);
- `spectrum[c, j]`: the residual's radially averaged power spectrum after whitening by that variance, at
  `frequency_bins` radial frequencies from 0 to 0.5 * sqrt(2) cycles per pixel of an image `resolution` pixels
  across, normalised to mean 1 over the 2D frequency grid (so it shapes the noise without changing its power).

`sample` draws Gaussian noise with that spectrum and that local variance for a batch of clean images; `fit` measures
both from pairs of (acquisition, reconstruction) of each class: it needs no noise-free ground truth, only the
acquisitions and the pipeline's VAE, so it applies to real X-DigiSkull images as it does to the phantom's.
What it does not model: noise that is not Gaussian, that is anisotropic, or whose spectrum depends on the signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from medshift.metrics.texture import lowpass

LOCAL_MEAN_SIGMA = 4.0  # pixels (at `resolution`): the neighbourhood whose mean sets the local noise variance
MIN_PIXELS_PER_BIN = 500  # intensity bins with fewer residual pixels are interpolated from their neighbours


def _radial_frequency(rows: int, cols: int) -> np.ndarray:
    """|f| in cycles per pixel on the FFT grid of a rows x cols image."""
    return np.hypot(*np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij"))


class ClassNoiseModel(ModelMixin, ConfigMixin):
    r"""Per-class Gaussian noise with a measured power spectrum and intensity-dependent variance (see the module
    docstring); a `MedShiftPipeline` component that adds it to its decoded images.

    Args:
        class_names: the classes, in the pipeline's order.
        resolution: side (pixels) of the images the statistics were measured on; frequencies and the local-mean
            window are in its pixels (other sizes get noise drawn at this scale and resized).
        intensity_bins: bins of the local mean over [0, 1] for the variance.
        frequency_bins: radial frequency bins of the spectrum.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, class_names: Sequence[str], resolution: int = 780, intensity_bins: int = 32, frequency_bins: int = 64):
        super().__init__()
        n = len(class_names)
        self.register_buffer("variance", torch.zeros(n, intensity_bins))
        self.register_buffer("spectrum", torch.ones(n, frequency_bins))
        self.register_buffer("fitted", torch.zeros(n))  # 1 where the class has statistics; others get no noise

    # ------------------------------------------------------------------ fitting

    def fit_class(self, name: str, acquisitions: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray]) -> dict[str, float]:
        """Measure one class's statistics from its acquisitions and their VAE reconstructions (grey [0, 1] arrays
        of side `resolution`). Returns a summary: images, and the residual's robust standard deviation.

        The variance per intensity bin is robust (1.4826 x the median absolute residual, squared): where the VAE
        misplaces an edge the residual is anatomy, not noise, and a mean of squares would count it as noise."""
        index = list(self.config.class_names).index(name)
        k, j = self.config.intensity_bins, self.config.frequency_bins
        samples_bins, samples_values, residuals = [], [], []
        for image, clean in zip(acquisitions, reconstructions, strict=True):
            self._check_size(image)
            residual = np.asarray(image, np.float64) - np.asarray(clean, np.float64)
            bins = self._intensity_bins(clean)
            samples_bins.append(bins[::3, ::3].ravel())  # every 9th pixel: plenty for a median per bin
            samples_values.append(np.abs(residual[::3, ::3]).ravel())
            residuals.append((residual, bins))
        variance = self._robust_variance(np.concatenate(samples_bins), np.concatenate(samples_values), name)
        power, hits = np.zeros(j), np.zeros(j)
        for residual, bins in residuals:  # the spectrum of the residual whitened by its local variance
            white = residual / np.sqrt(np.maximum(variance[bins], 1e-12))
            spectrum2d = np.abs(np.fft.fft2(white)) ** 2 / white.size
            radius = self._radius_bins(*white.shape)
            power += np.bincount(radius.ravel(), spectrum2d.ravel(), minlength=j)[:j]
            hits += np.bincount(radius.ravel(), minlength=j)[:j]
        spectrum = power / np.maximum(hits, 1)
        spectrum /= spectrum[self._radius_bins(*residuals[0][0].shape)].mean()  # mean 1 over the 2D grid: the shape only
        self.variance[index] = torch.as_tensor(variance, dtype=self.variance.dtype)
        self.spectrum[index] = torch.as_tensor(spectrum, dtype=self.spectrum.dtype)
        self.fitted[index] = 1.0
        all_values = np.concatenate(samples_values)
        return {"images": len(residuals), "residual_std": float(1.4826 * np.median(all_values))}

    def _robust_variance(self, bins: np.ndarray, absolute: np.ndarray, name: str) -> np.ndarray:
        """(1.4826 median |residual|)^2 per intensity bin; bins with too few samples interpolated."""
        k = self.config.intensity_bins
        order = np.argsort(bins, kind="stable")
        bins, absolute = bins[order], absolute[order]
        edges = np.searchsorted(bins, np.arange(k + 1))
        counts = np.diff(edges)
        filled = counts >= MIN_PIXELS_PER_BIN // 9
        if not filled.any():
            raise ValueError(f"class {name!r}: too few pixels to measure its noise ({len(bins)} samples)")
        sigma = np.array([1.4826 * np.median(absolute[edges[b] : edges[b + 1]]) if filled[b] else 0.0 for b in range(k)])
        centres = (np.arange(k) + 0.5) / k
        return np.interp(centres, centres[filled], sigma[filled] ** 2)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, images: torch.Tensor, labels: Sequence[int] | torch.Tensor,
               generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """Noise (N, 1, H, W) for clean grey images (N, 1, H, W) in [0, 1] of classes `labels`: Gaussian with the
        class's spectrum, scaled by the variance at each pixel's local mean; zero for classes without statistics."""
        labels = [int(label) for label in labels]
        out = torch.zeros_like(images, dtype=torch.float32, device="cpu")
        for i, label in enumerate(labels):
            if label >= len(self.fitted) or self.fitted[label] == 0:
                continue
            rng = generator[i] if isinstance(generator, list) else generator
            out[i, 0] = torch.from_numpy(self._sample_one(images[i, 0].float().cpu().numpy(), label, rng))
        return out.to(images.device)

    def _sample_one(self, clean: np.ndarray, label: int, generator: torch.Generator | None) -> np.ndarray:
        rows, cols = clean.shape
        scale = self.config.resolution / max(rows, cols)
        shape = (max(1, round(rows * scale)), max(1, round(cols * scale)))  # drawn at the fitted pixel scale
        white = torch.randn(shape, generator=generator, dtype=torch.float64).numpy()
        gain = np.sqrt(self.spectrum[label].double().cpu().numpy()[self._radius_bins(*shape)])
        coloured = np.fft.ifft2(np.fft.fft2(white) * gain).real
        if shape != (rows, cols):
            coloured = cv2.resize(coloured, (cols, rows), interpolation=cv2.INTER_LINEAR)
        variance = self.variance[label].double().cpu().numpy()
        return (coloured * np.sqrt(variance[self._intensity_bins(clean, scale)])).astype(np.float32)

    # ------------------------------------------------------------------ helpers

    def _check_size(self, image: np.ndarray) -> None:
        if max(image.shape) != self.config.resolution:
            raise ValueError(f"the noise model is fitted on images of side {self.config.resolution}, got {image.shape}")

    def _intensity_bins(self, clean: np.ndarray, scale: float = 1.0) -> np.ndarray:
        mean = lowpass(clean, LOCAL_MEAN_SIGMA / scale)  # the local mean
        return np.clip((mean * self.config.intensity_bins).astype(np.int64), 0, self.config.intensity_bins - 1)

    def _radius_bins(self, rows: int, cols: int) -> np.ndarray:
        j = self.config.frequency_bins
        return np.minimum((_radial_frequency(rows, cols) / (0.5 * np.sqrt(2)) * j).astype(np.int64), j - 1)
