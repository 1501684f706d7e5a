"""Phantom v2's pose renderer: the voxel head plus its fine anatomy, projected at the detector's pitch, through
`physics_v2` in the real domain and the v1 simulator in the synthetic domain; landmarks and a bone mask per pose.

It has the interface of `export._PoseRenderer` (v1), so `export._render_pose` writes both versions' files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

import xdigiskull.phantom.appearance as appearance
import xdigiskull.phantom.physics as physics
import xdigiskull.phantom.physics_v2 as physics_v2
from xdigiskull.phantom.anatomy import MATERIALS, HeadPhantom
from xdigiskull.phantom.fine_anatomy import LANDMARKS, FineAnatomy, make_fine_anatomy
from xdigiskull.phantom.fine_projector import project_fine, project_points
from xdigiskull.phantom.geometry import DETECTOR_SIDE_MM, ConeBeam, ExportLayout
from xdigiskull.phantom.projector import project



class RendererV1(Protocol):
    """What v2 takes from v1's renderer (`export._PoseRenderer`) of the same head: the catheter and open beam."""

    catheter_mu_real: float
    catheter_mu_synthetic: float

    def catheter_thickness(self, beam: ConeBeam) -> np.ndarray | None: ...

    def unattenuated(self, name: str) -> float: ...

# a pixel is bone in the mask where its ray crosses at least this much bone or enamel (g/cm^2; ~0.5 mm cortex)
BONE_MASK_THRESHOLD = 0.1
LABEL_FOLDER = "labels"
LABEL_COLUMNS: tuple[str, ...] = ("landmarks", "bone_mask")
_BONE = (MATERIALS.index("bone"), MATERIALS.index("enamel"))


@dataclass
class ProjectionV2:
    """One view's line integrals: the voxel head's on the coarse grid, and the total (voxel head upsampled plus
    fine anatomy) at the detector's pitch, both (rows, cols, materials) g/cm^2."""

    beam: ConeBeam
    coarse: np.ndarray
    total: np.ndarray
    fine: np.ndarray  # the fine anatomy's part of `total` (signed)


def _upsample(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)


class PoseRendererV2:
    """Renders one pose of phantom v2 (see the module docstring).

    Args:
        head: the voxel head (made without teeth: v2 draws them at full resolution); its fine anatomy is made here.
        layout: the run's pixel layout.
        catheter: the catheter's 3D course, or None.
        renderer_v1: v1's renderer of the same head, whose catheter drawing and open-beam quanta v2 shares.
    """

    def __init__(self, head: HeadPhantom, layout: ExportLayout, catheter: np.ndarray | None,
                 renderer_v1: RendererV1) -> None:
        self.head = head
        self.fine: FineAnatomy = make_fine_anatomy(head)
        self.layout = layout
        self.catheter = catheter
        self.v1 = renderer_v1  # the catheter drawing and its attenuation are v1's

    def line_integrals(self, beam: ConeBeam) -> tuple[ProjectionV2, np.ndarray | None]:
        layout = self.layout
        coarse = project(self.head, beam, layout.coarse, DETECTOR_SIDE_MM)
        upsampled = np.stack([_upsample(coarse[..., m], layout.detector) for m in range(coarse.shape[-1])], axis=-1)
        fine = project_fine(self.fine, beam, layout.detector, DETECTOR_SIDE_MM)
        total = np.maximum(upsampled + fine, 0.0)
        return ProjectionV2(beam, coarse, total, total - upsampled), self.v1.catheter_thickness(beam)

    def unattenuated(self, name: str) -> float:
        return self.v1.unattenuated(name)

    def real_expected(self, projection: ProjectionV2, catheter: np.ndarray | None, name: str) -> np.ndarray:
        """Noise-free expected quanta per pixel per frame, blurred by the detector and the focal spot."""
        layout = self.layout
        acquisition = physics.ACQUISITIONS[name]
        transmission, mu_effective = physics_v2.primary_and_slopes(projection.coarse, acquisition)
        scatter, heel = physics_v2.scatter_and_heel(transmission, layout.coarse_pitch_mm, name)
        size = layout.detector
        log_primary = _upsample(np.log(np.maximum(transmission, 1e-9)), size)
        for m in range(projection.fine.shape[-1]):
            log_primary -= _upsample(mu_effective[..., m], size) * projection.fine[..., m]
        signal = np.exp(log_primary) + np.maximum(_upsample(scatter, size), 0.0)
        signal *= _upsample_rows(heel, size)[:, None]
        if catheter is not None:
            signal *= np.exp(-catheter * np.float32(self.v1.catheter_mu_real))
        signal *= np.float32(self.unattenuated(name))
        focal = physics_v2.focal_spot_sigma_mm(name, projection.beam.magnification)
        return physics_v2.detector_transfer(signal, layout.pixel_mm, focal)

    def noisy_frame(self, expected: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
        return physics_v2.noisy_frame(expected, physics.ACQUISITIONS[name], rng, self.layout.pixel_mm)

    def real_noise_free(self, expected: np.ndarray, name: str) -> np.ndarray:
        log_image = appearance.log_signal(expected, self.unattenuated(name))
        return appearance.vendor_process(log_image, appearance.PROCESSING[name])

    def synthetic_display(self, projection: ProjectionV2, catheter: np.ndarray | None, name: str) -> np.ndarray:
        attenuation = physics.synthetic_attenuation(projection.total)
        if catheter is not None:
            attenuation += catheter * np.float32(self.v1.catheter_mu_synthetic)
        return appearance.simulator_display(attenuation, appearance.SIMULATOR[name])

    def landmarks(self, beam: ConeBeam, field: tuple[slice, slice]) -> str:
        """The landmarks of a view as JSON {name: [x, y, visible]}: pixel coordinates in the exposed field
        (pixel centres at integers, x to the right, y down), visible when inside the field."""
        points = np.stack([self.fine.landmarks[name] for name in LANDMARKS])
        pixels = project_points(points, beam, self.layout.detector, DETECTOR_SIDE_MM)
        pixels -= [field[1].start, field[0].start]
        side = self.layout.field
        out = {}
        for name, (x, y) in zip(LANDMARKS, pixels):
            visible = bool(-0.5 <= x < side - 0.5 and -0.5 <= y < side - 0.5)
            out[name] = [round(float(x), 2), round(float(y), 2), int(visible)]
        return json.dumps(out, separators=(",", ":"))

    def bone_mask(self, projection: ProjectionV2, field: tuple[slice, slice]) -> np.ndarray:
        """uint8 mask (255 bone) of the exposed field: rays that cross bone or enamel."""
        bone = projection.total[field][..., list(_BONE)].sum(axis=-1)
        return np.where(bone > BONE_MASK_THRESHOLD, 255, 0).astype(np.uint8)


def _upsample_rows(profile: np.ndarray, size: int) -> np.ndarray:
    """A per-row profile of the coarse grid resampled to `size` rows (pixel centres aligned)."""
    coarse = (np.arange(len(profile)) + 0.5) / len(profile)
    fine = (np.arange(size) + 0.5) / size
    return np.interp(fine, coarse, profile).astype(np.float32)


def bone_mask_path(pair_id: str) -> str:
    """Relative path of a pose's bone mask in a phantom output folder."""
    return str(Path(LABEL_FOLDER) / f"{pair_id}_bone_mask.png")


