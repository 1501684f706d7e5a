"""C-arm cone-beam geometry and the standard neuro views.

Angles follow the DICOM C-arm convention (PositionerPrimaryAngle, PositionerSecondaryAngle): the primary angle is
the rotation about the patient's cranio-caudal axis, positive towards LAO (detector on the patient's left), the
secondary angle the tilt towards the head, positive CRAN. At 0/0 the source is under the table (posterior) and the
detector above the face, the image shows the patient's right on its left and the vertex at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOURCE_TO_DETECTOR_MM = 1200.0
SOURCE_TO_ISOCENTER_MM = 800.0
# the flat detector's active area (mm); its pixel pitch is this over the number of pixels
DETECTOR_SIDE_MM = 400.0
# the exposed (unshuttered) square field, as a fraction of the detector side
EXPOSED_FIELD_FRACTION = 0.86


@dataclass(frozen=True)
class View:
    """A named C-arm position: `primary` (deg, + LAO / - RAO) and `secondary` (deg, + CRAN / - CAUD)."""

    name: str
    primary: float
    secondary: float


# the standard views, in the order generate_exports cycles through them
STANDARD_VIEWS: tuple[View, ...] = (
    View("ap", 0.0, 0.0),
    View("lateral", 90.0, 0.0),
    View("towne", 0.0, 35.0),  # dorsum sellae projected into the foramen magnum
    View("waters", 0.0, -45.0),  # petrous ridges projected below the maxillary sinuses
    View("lao30", 30.0, 0.0),
    View("rao30", -30.0, 0.0),
    View("lao45_cran15", 45.0, 15.0),
    View("rao20_caud10", -20.0, -10.0),
    View("lateral_right", -90.0, 0.0),
    View("ap_cran15", 0.0, 15.0),
)


@dataclass(frozen=True)
class ConeBeam:
    """Where the source and the detector are for one view.

    Attributes:
        source: source position (mm, patient coordinates).
        direction: unit vector from the source through the isocenter (the central ray).
        u: unit vector along the detector rows (image columns, left to right).
        v: unit vector along the detector columns (image rows, top to bottom).
        source_to_detector_mm: SID.
        source_to_isocenter_mm: SOD.
    """

    source: np.ndarray
    direction: np.ndarray
    u: np.ndarray
    v: np.ndarray
    source_to_detector_mm: float = SOURCE_TO_DETECTOR_MM
    source_to_isocenter_mm: float = SOURCE_TO_ISOCENTER_MM

    @property
    def magnification(self) -> float:
        return self.source_to_detector_mm / self.source_to_isocenter_mm

    def project(self, points: np.ndarray) -> np.ndarray:
        """Detector coordinates (u, v) in mm, relative to the detector centre, of 3D points (..., 3)."""
        rel = np.asarray(points, np.float64) - self.source
        depth = rel @ self.direction
        scale = self.source_to_detector_mm / depth
        return np.stack([(rel @ self.u) * scale, (rel @ self.v) * scale], axis=-1)


def cone_beam(primary: float, secondary: float) -> ConeBeam:
    """The C-arm geometry for `primary` (deg, + LAO) and `secondary` (deg, + CRAN) angles."""
    a = np.deg2rad(primary)
    b = np.deg2rad(secondary)
    to_detector = np.array([np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    u = np.array([np.cos(a), -np.sin(a), 0.0])
    v = np.cross(to_detector, u)
    return ConeBeam(source=-SOURCE_TO_ISOCENTER_MM * to_detector, direction=to_detector, u=u, v=v)


def pose_views(count: int, rng: np.random.Generator) -> list[View]:
    """`count` views: the standard views first, then seeded variations of them (+-12 deg primary, +-8 secondary)."""
    views = []
    for i in range(count):
        base = STANDARD_VIEWS[i % len(STANDARD_VIEWS)]
        if i < len(STANDARD_VIEWS):
            views.append(base)
            continue
        primary = float(np.round(base.primary + rng.uniform(-12.0, 12.0), 1))
        secondary = float(np.round(base.secondary + rng.uniform(-8.0, 8.0), 1))
        views.append(View(base.name, primary, secondary))
    return views


@dataclass(frozen=True)
class ExportLayout:
    """Pixel layout shared by every pose of a run.

    Attributes:
        detector: detector pixels along each side (DICOM rows and columns).
        field: side of the square exposed field, in pixels (also the simulator's field and the ground truth).
        coarse: side of the grid the line integrals are computed on.
        margins: (top, bottom, left, right) of the simulator's screen capture around its field.
    """

    detector: int
    field: int
    coarse: int
    margins: tuple[int, int, int, int]

    @property
    def pixel_mm(self) -> float:
        return DETECTOR_SIDE_MM / self.detector

    @property
    def coarse_pitch_mm(self) -> float:
        return DETECTOR_SIDE_MM / self.coarse
