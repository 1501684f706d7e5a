"""Cone-beam line integrals of the voxel head, per material.

The projector marches through the volume slice by slice along the volume axis closest to the central ray. Under
a central projection a plane maps onto the detector by a homography, so each slice is resampled onto the detector
grid with one `cv2.warpPerspective` and added up; the length of a ray inside one slice depends only on the ray's
direction, so a single per-pixel factor turns the sum into line integrals. Only 2D resampling with OpenCV, fast on
a CPU and deterministic.

The result is the mass thickness (g/cm^2) of every material along every ray, on a detector grid that is coarser
than the real detector: the volume carries no detail finer than a voxel, so the physics upsamples it smoothly.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from xdigiskull.phantom.anatomy import HeadPhantom
from xdigiskull.phantom.geometry import ConeBeam

_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


@lru_cache(maxsize=3)
def _slices_along(head: HeadPhantom, axis: int) -> np.ndarray:
    """The volume as contiguous slices perpendicular to patient axis 0=x, 1=y, 2=z: [k, rows, cols, m] with
    (rows, cols) = (y, x) for z, (z, x) for y, (z, y) for x."""
    vol = head.densities  # [z, y, x, m]
    if axis == 2:
        return vol
    if axis == 1:
        return np.ascontiguousarray(vol.transpose(1, 0, 2, 3))
    return np.ascontiguousarray(vol.transpose(2, 0, 1, 3))


def project(head: HeadPhantom, beam: ConeBeam, grid: int, detector_side_mm: float) -> np.ndarray:
    """Mass thickness (g/cm^2) of each material along the rays to a `grid` x `grid` detector.

    Args:
        head: the voxel head, centred on the isocenter.
        beam: the C-arm geometry of the view.
        grid: detector samples along each side.
        detector_side_mm: physical side of the detector (mm).

    Returns:
        float32 array (grid, grid, materials); row 0 is the top of the image, column 0 its left.
    """
    n = head.voxels
    h = head.voxel_mm
    first_centre = -(n - 1) / 2.0 * h  # patient coordinate of voxel 0's centre, on every axis
    pitch = detector_side_mm / grid
    half = (grid - 1) / 2.0
    # rays: P(j, i) - S = A @ [j, i, 1] (column j, row i of the detector)
    a_matrix = np.stack([pitch * beam.u, pitch * beam.v,
                         beam.source_to_detector_mm * beam.direction - half * pitch * (beam.u + beam.v)], axis=1)
    march = int(np.argmax(np.abs(beam.direction)))
    plane_axes = {2: (0, 1), 1: (0, 2), 0: (1, 2)}[march]  # (column axis, row axis) of a slice
    slices = _slices_along(head, march)
    source = beam.source
    total = np.zeros((grid, grid, slices.shape[-1]), np.float32)
    occupied = slices.reshape(n, -1).max(axis=1) > 0
    for k in np.flatnonzero(occupied):
        plane = first_centre + k * h
        rows = []
        for b in plane_axes:
            numerator = source[b] * a_matrix[march] + (plane - source[march]) * a_matrix[b]
            rows.append((numerator - first_centre * a_matrix[march]) / h)
        rows.append(a_matrix[march])
        homography = np.stack(rows)
        total += cv2.warpPerspective(slices[k], homography, (grid, grid), flags=_WARP_FLAGS,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # a ray crosses each slice over h * |ray| / |ray along the marching axis| mm
    j, i = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    rays = a_matrix @ np.stack([j.ravel(), i.ravel(), np.ones(grid * grid)])
    step_mm = h * np.linalg.norm(rays, axis=0) / np.abs(rays[march])
    return total * (step_mm.reshape(grid, grid, 1) * 0.1).astype(np.float32)  # g/cm^3 * cm


def tube_chord_mm(path: np.ndarray, beam: ConeBeam, grid: int, detector_side_mm: float,
                  diameter_mm: float) -> np.ndarray:
    """Length (mm) of each ray's chord through a thin tube of `diameter_mm` around a 3D polyline (a catheter or
    guidewire), on a `grid` x `grid` detector: drawn analytically at full resolution, since it is far thinner than a
    voxel."""
    pitch = detector_side_mm / grid
    uv = beam.project(path) / pitch + (grid - 1) / 2.0  # detector (column, row) in pixels
    centreline = np.full((grid, grid), 255, np.uint8)
    shift = 4  # sub-pixel precision of the drawing
    cv2.polylines(centreline, [np.rint(uv * (1 << shift)).astype(np.int32)], False, 0, 1, cv2.LINE_8, shift)
    distance_px = cv2.distanceTransform(centreline, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    radius_px = diameter_mm / 2.0 * beam.magnification / pitch
    inside = np.clip(radius_px**2 - distance_px**2, 0.0, None)
    return (2.0 * np.sqrt(inside) * pitch / beam.magnification).astype(np.float32)
