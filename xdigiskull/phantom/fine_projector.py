"""Line integrals of phantom v2's fine anatomy at the detector's own pitch.

Every primitive of `fine_anatomy` has a closed-form line integral, so each is drawn straight onto the detector
grid for the view's cone-beam geometry, without a voxel grid in between:

- a 3D Gaussian blob of width s projects to a 2D Gaussian of width M s (M: its magnification); a cloud of blobs of
  one width is splatted (to the nearest pixel) and blurred once;
- a thin tube gives the chord 2 sqrt(r^2 - d^2) at distance d from its projected centreline;
- an ellipsoid gives the exact chord of each ray (a quadratic per pixel, in the ellipsoid's projected box).
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.ndimage

from xdigiskull.phantom.anatomy import MATERIALS
from xdigiskull.phantom.fine_anatomy import BlobCloud, Ellipsoids, FineAnatomy, TubeSet
from xdigiskull.phantom.geometry import ConeBeam


class DetectorGrid:
    """The detector's pixel grid for one view: pixel (column, row) <-> 3D points and rays."""

    def __init__(self, beam: ConeBeam, grid: int, side_mm: float) -> None:
        self.beam = beam
        self.grid = grid
        self.pitch = side_mm / grid
        self.half = (grid - 1) / 2.0

    def to_pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(columns, rows) of 3D points (n, 3), and their magnifications (n,), in the points' float precision."""
        beam = self.beam
        points = np.asarray(points)
        scalar = np.float32 if points.dtype == np.float32 else np.float64
        basis = np.stack([beam.u, beam.v, beam.direction], axis=1)
        # einsum, not matmul: several times faster for millions of 3-vectors (the texture blobs)
        uvw = np.einsum("ij,jk->ik", points.astype(scalar, copy=False), basis.astype(scalar))
        uvw -= (beam.source @ basis).astype(scalar)
        magnification = scalar(beam.source_to_detector_mm) / uvw[:, 2]
        pixels = uvw[:, :2] * (magnification / scalar(self.pitch))[:, None] + scalar(self.half)
        return pixels, magnification

    def rays(self, rows: slice, cols: slice) -> np.ndarray:
        """Vectors from the source to the detector pixels of a window, (rows, cols, 3) mm."""
        beam = self.beam
        j = (np.arange(cols.start, cols.stop) - self.half) * self.pitch
        i = (np.arange(rows.start, rows.stop) - self.half) * self.pitch
        centre = beam.source_to_detector_mm * beam.direction
        return centre + j[None, :, None] * beam.u + i[:, None, None] * beam.v


def _mean(values: np.ndarray) -> float:
    """Mean in a fixed order (a sequential float64 sum): numpy's pairwise float32 sum can change in its last bits
    with the array's memory alignment, which made a run's bytes differ from the next run's in one process."""
    return float(np.cumsum(values, dtype=np.float64)[-1] / len(values))


def _splat(grid: DetectorGrid, clouds: list[BlobCloud]) -> np.ndarray:
    """Mass thickness (g/cm^2) of clouds of Gaussian blobs of one width (blurred once together)."""
    n = grid.grid
    image = np.zeros(n * n, np.float64)
    sigmas = []
    for cloud in clouds:
        splat, sigma_px = _splat_points(grid, cloud)
        image += splat
        sigmas.append(sigma_px)
    image = image.reshape(n, n).astype(np.float32)
    return cv2.GaussianBlur(image, (0, 0), _mean(np.asarray(sigmas)), borderType=cv2.BORDER_CONSTANT)


def _splat_points(grid: DetectorGrid, cloud: BlobCloud) -> tuple[np.ndarray, float]:
    """The blobs' integrals put on their nearest pixels (flat image), and their mean width in pixels."""
    n = grid.grid
    pixels, magnification = grid.to_pixels(cloud.centres)
    # each blob's line integral peaks at rho sqrt(2 pi) s (g/cm^3 mm); over the detector it integrates to that
    # times 2 pi (M s)^2 (mm^2), i.e. this many pixel units:
    sigma_px = cloud.sigma_mm * magnification / grid.pitch
    weight = cloud.peaks * (np.sqrt(2 * np.pi) * cloud.sigma_mm * 0.1) * (2 * np.pi * sigma_px**2)
    # nearest-pixel splatting: the blobs are placed at random, so rounding their positions keeps the texture's
    # spectrum (a bilinear splat would low-pass it like an extra pixel aperture)
    cx, cy = np.rint(pixels[:, 0]).astype(np.int64), np.rint(pixels[:, 1]).astype(np.int64)
    inside = (cx >= 0) & (cx < n) & (cy >= 0) & (cy < n)
    image = np.bincount(cy[inside] * n + cx[inside], weights=weight[inside], minlength=n * n)
    return image, _mean(sigma_px)


def _tube_chords(grid: DetectorGrid, tubes: TubeSet) -> np.ndarray:
    """Mass thickness (g/cm^2) of a set of thin tubes, drawn in the box around their projected centrelines."""
    n = grid.grid
    out = np.zeros((n, n), np.float32)
    projected = [grid.to_pixels(path) for path in tubes.paths]
    if not projected:
        return out
    magnification = _mean(np.concatenate([m for _, m in projected]))
    radius_px = tubes.radius_mm * magnification / grid.pitch
    all_pixels = np.concatenate([p for p, _ in projected])
    margin = int(np.ceil(radius_px)) + 2
    c0, r0 = np.maximum(np.floor(all_pixels.min(axis=0)).astype(int) - margin, 0)
    c1, r1 = np.minimum(np.ceil(all_pixels.max(axis=0)).astype(int) + margin + 1, n)
    if c1 <= c0 or r1 <= r0:
        return out
    centreline = np.full((r1 - r0, c1 - c0), 255, np.uint8)
    shift = 4  # sub-pixel precision of the drawing
    polylines = [np.rint((p - [c0, r0]) * (1 << shift)).astype(np.int32) for p, _ in projected]
    cv2.polylines(centreline, polylines, False, 0, 1, cv2.LINE_8, shift)
    # scipy's exact transform: OpenCV's precise one gave different bytes for the same input from run to run
    distance = scipy.ndimage.distance_transform_edt(centreline != 0).astype(np.float32)
    chord_px = 2.0 * np.sqrt(np.clip(radius_px**2 - distance**2, 0.0, None))
    out[r0:r1, c0:c1] = chord_px * np.float32(grid.pitch / magnification * 0.1 * tubes.density)
    return out


def _ellipsoid_chords(grid: DetectorGrid, ellipsoids: Ellipsoids, materials: int) -> np.ndarray:
    """Mass thickness (g/cm^2) per material of signed ellipsoids: the exact chord of every ray."""
    n = grid.grid
    out = np.zeros((n, n, materials), np.float32)
    source = grid.beam.source
    for centre, q, material, density in zip(ellipsoids.centres, ellipsoids.quadrics, ellipsoids.materials,
                                            ellipsoids.densities):
        extent = np.sqrt(np.diag(np.linalg.inv(q)))  # half-sides of the axis-aligned bounding box
        corners = centre + extent * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        pixels, _ = grid.to_pixels(corners)
        c0, r0 = np.maximum(np.floor(pixels.min(axis=0)).astype(int), 0)
        c1, r1 = np.minimum(np.ceil(pixels.max(axis=0)).astype(int) + 1, n)
        if c1 <= c0 or r1 <= r0:
            continue
        d = grid.rays(slice(r0, r1), slice(c0, c1))  # x = S + t d, t in [0, 1]
        e = source - centre
        a = np.einsum("...i,ij,...j->...", d, q, d)
        b = np.einsum("...i,ij->...j", d, q) @ e
        c = e @ q @ e - 1.0
        disc = np.clip(b * b - a * c, 0.0, None)
        chord_mm = 2.0 * np.sqrt(disc) / a * np.linalg.norm(d, axis=-1)
        out[r0:r1, c0:c1, material] += (chord_mm * 0.1 * density).astype(np.float32)
    return out


def project_fine(fine: FineAnatomy, beam: ConeBeam, grid: int, detector_side_mm: float) -> np.ndarray:
    """Mass thickness (g/cm^2, signed) of the fine anatomy per material, on a `grid` x `grid` detector.

    Args:
        fine: the head's fine anatomy.
        beam: the C-arm geometry of the view.
        grid: detector pixels along each side.
        detector_side_mm: physical side of the detector (mm).

    Returns:
        float32 (grid, grid, materials), to be added to the voxel head's line integrals.
    """
    detector = DetectorGrid(beam, grid, detector_side_mm)
    out = np.zeros((grid, grid, len(MATERIALS)), np.float32)
    groups: dict[tuple[float, int], list[BlobCloud]] = {}
    for cloud in fine.blobs:
        groups.setdefault((cloud.sigma_mm, cloud.material), []).append(cloud)
    for (_, material), clouds in groups.items():
        out[..., material] += _splat(detector, clouds)
    for tubes in fine.tubes:
        out[..., tubes.material] += _tube_chords(detector, tubes)
    if fine.ellipsoids is not None:
        out += _ellipsoid_chords(detector, fine.ellipsoids, len(MATERIALS))
    return out


def project_points(points: np.ndarray, beam: ConeBeam, grid: int, detector_side_mm: float) -> np.ndarray:
    """Detector pixel (column, row) of 3D points (n, 3), pixel centres at integers."""
    pixels, _ = DetectorGrid(beam, grid, detector_side_mm).to_pixels(points)
    return pixels
