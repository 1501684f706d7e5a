"""The ISBI 2015 cephalometric protocol's figures and the statistics over training seeds.

- `radial_errors`: the distance of every visible predicted landmark to the truth, in mm (pixel spacing per image);
- `landmark_figures`: mean radial error (MRE) and its standard deviation, and the success detection rate (SDR: the
  share of landmarks within 2, 2.5, 3 and 4 mm);
- `seed_interval`: mean and 95 % Student-t interval of one figure over the training seeds;
- `gap_share`: the share of the (a)->(d) gap a condition closes, (MRE_a - MRE_c) / (MRE_a - MRE_d), per seed (the
  conditions of one seed share initial weights, batches and augmentation), then its mean and interval.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors(predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Errors in mm of the visible landmarks, flattened.

    Args:
        predicted, truth: (N, K, 2) pixels of the same image grid.
        visible: (N, K) bool.
        spacing_mm: (N,) pixel spacing of each image, mm per pixel.
    """
    distance = np.linalg.norm(predicted - truth, axis=-1) * np.asarray(spacing_mm, np.float64)[:, None]
    return distance[np.asarray(visible, bool)]


def landmark_figures(errors_mm: np.ndarray, thresholds: tuple[float, ...] = SDR_THRESHOLDS_MM) -> dict[str, float]:
    """MRE (mm), its standard deviation, and SDR (%) at each threshold, of a flat array of radial errors."""
    if len(errors_mm) == 0:
        raise ValueError("no visible landmarks to score")
    figures = {"mre_mm": float(np.mean(errors_mm)), "sd_mm": float(np.std(errors_mm))}
    for threshold in thresholds:
        figures[f"sdr_{threshold:g}mm"] = float(100.0 * np.mean(errors_mm <= threshold))
    return figures


def seed_interval(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and two-sided Student-t confidence interval of `values` (one per training seed).

    Raises:
        ValueError: fewer than two values (no interval).
    """
    values_array = np.asarray(values, np.float64)
    if len(values_array) < 2:
        raise ValueError(f"a confidence interval needs at least 2 seeds, got {len(values_array)}")
    mean = float(values_array.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values_array) - 1) * values_array.std(ddof=1) / math.sqrt(len(values_array)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(len(values_array))}


def gap_share(identity: float, condition: float, oracle: float) -> float:
    """Share of the gap from the untranslated synthetic condition (a) to the oracle (d) that a condition closes:
    0 = no better than (a), 1 = as good as the oracle (above 1: better). NaN when (a) and (d) are equal."""
    gap = identity - oracle
    return float("nan") if gap == 0 else float((identity - condition) / gap)


def differ(first: dict[str, float], second: dict[str, float]) -> bool:
    """Whether two seed intervals do not overlap (the benchmark's test that (a) and (d) differ)."""
    return first["high"] < second["low"] or second["high"] < first["low"]


def welch_p(first: list[float], second: list[float]) -> float:
    """Two-sided Welch t-test p-value of two sets of per-seed figures."""
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue)
