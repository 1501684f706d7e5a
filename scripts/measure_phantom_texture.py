"""Measure phantom v2's texture against published image statistics (issue 40, goal 2).

1. Anatomical noise: inside bone (the pose's bone mask eroded by a few pixels) of the real domain's noise-free
   renders (the ground-truth PNGs), the radially averaged power spectrum of 64-pixel patches (plane removed,
   Hann window) is fitted with 1/f^beta over 0.2-1 cycles/mm of the detector plane. Published anatomical-noise
   exponents of radiographs: beta 2.5-3 (Burgess 2001; Bochud 1999; Samei 2005: chest ~3).
2. Sutures: the box-counting dimension of each suture's trace projected onto the detector (its course on the
   outer table, drawn at the detector pitch; boxes of 2-64 pixels). Published: 1.48 coronal, 1.56 sagittal
   (Yu et al. 2003, fractal dimension of human cranial sutures), range 1.35-1.65.

By default it renders heads that no tuning used (seeds 101-103, AP and lateral, 1024^2 detector) in v2 and, for
comparison, in v1 (measured inside v2's bone mask of the same pose); --raw measures an existing phantom v2 run.

    python scripts/measure_phantom_texture.py [--seeds 101 102 103] [--raw RAW_DIR] [--no-v1]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from xdigiskull.phantom import generate_exports
from xdigiskull.phantom.anatomy import make_head
from xdigiskull.phantom.fine_anatomy import make_fine_anatomy
from xdigiskull.phantom.fine_projector import project_points
from xdigiskull.phantom.geometry import DETECTOR_SIDE_MM, cone_beam

PATCH = 64
BAND = (0.2, 1.0)  # cycles/mm at the detector
REAL_CLASSES = ("real_low", "real_normal", "real_exposure")
PUBLISHED_BETA = "2.5-3.0 (anatomical noise of radiographs)"
PUBLISHED_SUTURE = {"coronal": 1.48, "sagittal": 1.56, "lambdoid": None}


def radial_spectrum(image: np.ndarray, mask: np.ndarray, pitch_mm: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean radially averaged power spectrum of the PATCH x PATCH patches (stride PATCH/2) that lie wholly
    inside `mask`; returns (frequencies in cycles/mm, power, number of patches)."""
    window = np.outer(np.hanning(PATCH), np.hanning(PATCH))
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    design = np.stack([np.ones(PATCH * PATCH), xx.ravel(), yy.ravel()], axis=1)
    f = np.fft.fftfreq(PATCH, pitch_mm)
    radius = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
    bins = np.round(radius / (1.0 / (PATCH * pitch_mm))).astype(int)
    total = np.zeros(bins.max() + 1)
    count = 0
    for r in range(0, image.shape[0] - PATCH + 1, PATCH // 2):
        for c in range(0, image.shape[1] - PATCH + 1, PATCH // 2):
            if not mask[r:r + PATCH, c:c + PATCH].all():
                continue
            patch = image[r:r + PATCH, c:c + PATCH].astype(np.float64)
            coefficients, *_ = np.linalg.lstsq(design, patch.ravel(), rcond=None)
            patch = patch - (design @ coefficients).reshape(PATCH, PATCH)
            power = np.abs(np.fft.fft2(patch * window)) ** 2
            total += np.bincount(bins.ravel(), power.ravel(), minlength=len(total))
            count += 1
    norm = np.bincount(bins.ravel(), minlength=len(total))
    freqs = np.arange(len(total)) / (PATCH * pitch_mm)
    return freqs, total / np.maximum(norm, 1) / max(count, 1), count


def fit_beta(freqs: np.ndarray, power: np.ndarray) -> float:
    """-slope of log power against log frequency over BAND."""
    keep = (freqs >= BAND[0]) & (freqs <= BAND[1]) & (power > 0)
    slope, _ = np.polyfit(np.log(freqs[keep]), np.log(power[keep]), 1)
    return float(-slope)


def box_counting_dimension(polylines: list[np.ndarray], size: int) -> float:
    """Box-counting dimension of polylines (pixel coordinates) drawn one pixel wide, boxes of 2-64 pixels."""
    canvas = np.zeros((size, size), np.uint8)
    shift = 4
    cv2.polylines(canvas, [np.rint(p * (1 << shift)).astype(np.int32) for p in polylines], False, 1, 1,
                  cv2.LINE_8, shift)
    ys, xs = np.nonzero(canvas)
    sizes = np.array([2, 4, 8, 16, 32, 64])
    counts = [len(set(zip((ys // s).tolist(), (xs // s).tolist()))) for s in sizes]
    slope, _ = np.polyfit(np.log(1.0 / sizes), np.log(counts), 1)
    return float(slope)


def measure_texture(raw: Path, masks: Path | None = None) -> dict[str, list[float]]:
    """beta per real class over every pose of a phantom run; the bone masks come from `masks` (a phantom v2 run
    of the same seed and poses, e.g. to measure v1) or from the run itself."""
    with open((masks or raw) / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    betas: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["class"] not in REAL_CLASSES:
            continue
        image = cv2.imread(str(raw / "ground_truth" / f"{row['pair_id']}_{row['class']}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str((masks or raw) / row["bone_mask"]), cv2.IMREAD_GRAYSCALE) > 0
        mask = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # 4 pixels in from the bone's edge
        pitch = DETECTOR_SIDE_MM / int(round(image.shape[0] / 0.86))  # the field is 86 % of the detector
        freqs, power, patches = radial_spectrum(image.astype(np.float64) / 65535.0, mask, pitch)
        if patches:
            betas[row["class"]].append(fit_beta(freqs, power))
    return betas


def measure_sutures(seeds: list[int], detector: int = 1024) -> dict[str, list[float]]:
    """Box-counting dimension of each suture's trace in the views where it is seen face-on: coronal and
    lambdoid in the lateral view, sagittal from above."""
    dims: dict[str, list[float]] = defaultdict(list)
    views = {"coronal": (90.0, 0.0), "lambdoid": (90.0, 0.0), "sagittal": (0.0, 90.0)}
    for seed in seeds:
        fine = make_fine_anatomy(make_head(seed, version=2))
        for name, (primary, secondary) in views.items():
            beam = cone_beam(primary, secondary)
            traces = [project_points(path, beam, detector, DETECTOR_SIDE_MM) for path in fine.suture_courses[name]]
            dims[name].append(box_counting_dimension(traces, detector))
    return dims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="heads to render and measure")
    parser.add_argument("--views", type=int, default=2, help="poses per head (AP and lateral first)")
    parser.add_argument("--raw", type=Path, default=None, help="measure an existing phantom v2 run instead")
    parser.add_argument("--no-v1", action="store_true", help="skip measuring phantom v1 on the same heads and poses")
    args = parser.parse_args()

    betas: dict[int, dict[str, list[float]]] = {1: defaultdict(list), 2: defaultdict(list)}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [] if args.raw else args.seeds:
            runs = {version: generate_exports(Path(tmp) / f"v{version}-{seed}", views=args.views, seed=seed,
                                              detector=1024, frames=1, version=version, progress=False)
                    for version in ((2,) if args.no_v1 else (2, 1))}
            for version, raw in runs.items():  # v1 has no bone mask: measured inside v2's (same pose)
                for name, values in measure_texture(raw, masks=runs[2]).items():
                    betas[version][name].extend(values)
        if args.raw:
            for name, values in measure_texture(args.raw).items():
                betas[2][name].extend(values)
    print(f"anatomical noise: 1/f^beta fit over {BAND[0]}-{BAND[1]} cycles/mm inside bone "
          f"(published beta {PUBLISHED_BETA}; goal [2.5, 3.2])")
    for version in (2, 1):
        for name in REAL_CLASSES:
            values = np.array(betas[version][name])
            if len(values):
                print(f"  v{version} {name:14s} beta {values.mean():.2f} (min {values.min():.2f}, "
                      f"max {values.max():.2f}, {len(values)} images)")
    print("suture traces: box-counting dimension, boxes 2-64 px (goal [1.35, 1.65])")
    for name, values in measure_sutures(args.seeds).items():
        published = PUBLISHED_SUTURE[name]
        reference = f"published {published}" if published else "published range 1.35-1.65"
        print(f"  {name:9s} D {np.mean(values):.2f} (min {np.min(values):.2f}, max {np.max(values):.2f}; {reference})")


if __name__ == "__main__":
    main()
