"""Phantom v2's fine anatomy: the structures finer than a voxel of the head, as analytic 3D primitives.

The voxel head (`anatomy.make_head`, 1.5 mm voxels) carries the coarse anatomy. Everything finer is described
here as 3D primitives in the same patient space, which `fine_projector` integrates along each ray at the
detector's own pitch, so every view, pose and class sees the same 3D object:

- blobs: clouds of small 3D Gaussians of signed density. Trabecular (cancellous) texture of the diploe, the
  vertebral bodies, the mandible and the maxilla is a zero-mean cloud whose blob sizes span octaves, each
  octave's power set so that the projected texture, through the detector's MTF, falls as about 1/f^3 over
  0.2-1 cycles/mm (the anatomical-noise exponent of radiographs; scripts/measure_phantom_texture.py);
  mastoid and ethmoid air cells are clouds of negative bone density.
- tubes: thin tubes around 3D polylines. Sutures (coronal, sagittal, lambdoid, squamosal) are fractal curves on
  the vault (midpoint displacement, each excursion bounded by its segment so the course interlocks without
  tangling: a trace dimension near 1.5 at 1-20 mm) through the whole thickness of the bone; middle meningeal
  grooves on the inner table; the mandibular canals.
- ellipsoids: teeth (enamel cap, dentin, pulp chamber, roots and root canals), the sella floor (a curved plate
  of overlapping ellipsoids) and the anterior clinoid processes.

Each primitive has a material (index into `anatomy.MATERIALS`) and a signed density (g/cm^3) that is added to
the voxel head's densities. Coordinates are isocenter coordinates (mm), like the voxel head's.

The 19 cephalometric landmarks of the ISBI 2015 challenge are 3D points of the same head (`landmarks_3d`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xdigiskull.phantom.anatomy import (
    DENSITY,
    MATERIALS,
    VAULT_CENTRE,
    HeadPhantom,
    HeadProportions,
    dental_arch,
    draw_proportions,
    skull_base_level,
    vault_depth_and_thickness,
)
from xdigiskull.phantom.anatomy import _HEAD_CENTRE as HEAD_CENTRE

SOFT, BRAIN, BONE, ENAMEL = (MATERIALS.index(m) for m in ("soft_tissue", "brain", "bone", "enamel"))
DENTIN_DENSITY = 2.1  # g/cm^3, drawn in the bone channel (dentin is a bone-like apatite-collagen composite)

# trabecular texture: blob widths (sigma, mm) one octave apart, and the peak density contrast (g/cm^3)
TEXTURE_SIGMAS_MM: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
# most blobs drawn for one octave: a sparser octave keeps its power (count x peak^2) with denser blobs
TEXTURE_MAX_BLOBS = 400_000
TEXTURE_FILL = 0.12  # volume filled by the blobs of one octave (in units of a blob's (2 pi)^1.5 sigma^3)
TEXTURE_CONTRAST = 0.55  # g/cm^3 of bone, peak of a blob of TEXTURE_REFERENCE_MM
TEXTURE_REFERENCE_MM = 0.8
# exponent of the texture's power spectrum in the object (each octave's power goes as sigma^exponent); below 3 so
# that after the detector's MTF the projected texture falls as about f^-3 over 0.2-1 cycles/mm
TEXTURE_EXPONENT = 1.0


def _texture_peak(sigma_mm: float, contrast: float) -> float:
    """Peak density of a texture blob: finer blobs are denser, so each octave's power goes as
    sigma^TEXTURE_EXPONENT (equal filling alone gives sigma^3)."""
    return contrast * (sigma_mm / TEXTURE_REFERENCE_MM) ** (-(3.0 - TEXTURE_EXPONENT) / 2.0)


# sutures: decay of the midpoint excursions per halving (Hurst exponent), the first excursion (mm), the tube
SUTURE_HURST = 0.2
SUTURE_AMPLITUDE_MM = 6.0
SUTURE_RADIUS_MM = 0.35
# fraction of the bone missing in the gap: the squamosal suture is a bevelled overlap, faint in radiographs
SUTURE_OPENNESS = {"coronal": 0.5, "sagittal": 0.5, "lambdoid": 0.5, "squamosal": 0.2}
SUTURE_BEND = 0.75  # largest sideways excursion of a midpoint (standard deviation) per length of its segment

# the 19 landmarks of the ISBI 2015 cephalometric challenge, in its order
LANDMARKS: tuple[str, ...] = (
    "sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion", "menton", "gnathion",
    "gonion", "incision_inferius", "incision_superius", "upper_lip", "lower_lip", "subnasale",
    "soft_tissue_pogonion", "posterior_nasal_spine", "anterior_nasal_spine", "articulare",
)


@dataclass
class BlobCloud:
    """Gaussian blobs of one width: centres (n, 3) mm, peak densities (n,) g/cm^3 (signed), one material."""

    sigma_mm: float
    material: int
    centres: np.ndarray
    peaks: np.ndarray


@dataclass
class TubeSet:
    """Thin tubes of one radius around polylines (each (n, 3) mm), one material and signed density."""

    radius_mm: float
    material: int
    density: float
    paths: list[np.ndarray]
    name: str = ""


@dataclass
class Ellipsoids:
    """Solid ellipsoids: centres (n, 3), quadric matrices Q (n, 3, 3) with (x - c)^T Q (x - c) <= 1 inside,
    materials (n,) and signed densities (n,)."""

    centres: np.ndarray
    quadrics: np.ndarray
    materials: np.ndarray
    densities: np.ndarray


@dataclass
class FineAnatomy:
    """The fine structures of one head (isocenter coordinates), and its landmarks."""

    seed: int
    blobs: list[BlobCloud] = field(default_factory=list)
    tubes: list[TubeSet] = field(default_factory=list)
    ellipsoids: Ellipsoids | None = None
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    # each suture's course on the outer surface of the vault (isocenter mm), for measuring its trace
    suture_courses: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _iso(points: np.ndarray) -> np.ndarray:
    """Anatomy coordinates to isocenter coordinates."""
    return (np.asarray(points, np.float64) - HEAD_CENTRE).astype(np.float32)


# ------------------------------------------------------------------------------------------- vault sampling


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _vault_points(directions: np.ndarray, depth_fraction: np.ndarray | float, proportions: HeadProportions,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Points of the vault along unit `directions` from its centre, at `depth_fraction` of the local bone
    thickness below the outer surface (0 outer surface, 1 inner surface); also the local thickness (mm)."""
    axes = proportions.vault_axes.astype(np.float64)
    q = np.linalg.norm(directions / axes, axis=-1)  # ellipsoidal radius per mm along each direction
    r0 = 1.0 / q  # distance to the mean outer surface
    surface = VAULT_CENTRE + directions * r0[:, None]
    coords = (surface[:, 0], surface[:, 1], surface[:, 2])
    depth0, thickness = vault_depth_and_thickness(coords, np.ones_like(r0), proportions)
    # depth = s_surface / q - r (see vault_depth_and_thickness), so the outer surface lies at r0 + depth0
    radius = r0 + depth0 - np.asarray(depth_fraction) * thickness
    return VAULT_CENTRE + directions * radius[:, None], thickness


def _random_directions(rng: np.random.Generator, count: int) -> np.ndarray:
    return _unit(rng.normal(size=(count, 3)))


def _diploe_texture(rng: np.random.Generator, proportions: HeadProportions) -> list[BlobCloud]:
    """Zero-mean trabecular texture between the tables of the vault (above the skull base)."""
    # the diploe's volume: the mean outer surface area times the mean diploe thickness (30 % of the bone)
    axes = proportions.vault_axes.astype(np.float64)
    p = 1.6075
    area = 4 * np.pi * (((axes[0] * axes[1]) ** p + (axes[0] * axes[2]) ** p + (axes[1] * axes[2]) ** p) / 3) ** (1 / p)
    volume = 0.65 * area * 0.3 * 6.5  # 65 %: the vault above the skull base
    clouds = []
    for sigma in TEXTURE_SIGMAS_MM:
        wanted = TEXTURE_FILL * volume / ((2 * np.pi) ** 1.5 * sigma**3)
        drawn = int(min(wanted, TEXTURE_MAX_BLOBS))
        directions = _random_directions(rng, int(drawn / 0.65) + 16)
        points, _ = _vault_points(directions, rng.uniform(0.36, 0.64, len(directions)), proportions)
        coords = (points[:, 0], points[:, 1], points[:, 2])
        points = points[points[:, 2] > skull_base_level(coords, proportions.bumps) + 3.0]
        peak = _texture_peak(sigma, TEXTURE_CONTRAST) * np.sqrt(wanted / drawn)
        peaks = peak * rng.choice((-1.0, 1.0), len(points))
        clouds.append(BlobCloud(sigma, BONE, _iso(points), peaks.astype(np.float32)))
    return clouds


def _capsule_points(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, radius: float, count: int) -> np.ndarray:
    """`count` points uniformly inside the capsule (cylinder part) of the segment a-b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    axis = b - a
    t = rng.random(count)
    disc = rng.normal(size=(count, 3))
    disc -= np.outer(disc @ axis / (axis @ axis), axis)  # perpendicular to the axis
    disc = _unit(disc) * (radius * np.sqrt(rng.random(count)))[:, None]
    return a + np.outer(t, axis) + disc


def _cancellous_texture(rng: np.random.Generator, segments: list[tuple[np.ndarray, np.ndarray, float]],
                        contrast: float) -> list[BlobCloud]:
    """Zero-mean trabecular texture inside capsules (a, b, radius) of cancellous bone."""
    volumes = np.array([np.pi * r**2 * np.linalg.norm(np.subtract(b, a)) for a, b, r in segments])
    clouds = []
    for sigma in TEXTURE_SIGMAS_MM[1:-1]:  # the largest octave is wider than these bones' marrow
        wanted = TEXTURE_FILL * volumes / ((2 * np.pi) ** 1.5 * sigma**3)
        sparse = max(1.0, wanted.sum() / TEXTURE_MAX_BLOBS)
        points = np.concatenate([_capsule_points(rng, a, b, r, int(n / sparse))
                                 for (a, b, r), n in zip(segments, wanted)])
        peaks = _texture_peak(sigma, contrast) * np.sqrt(sparse) * rng.choice((-1.0, 1.0), len(points))
        clouds.append(BlobCloud(sigma, BONE, _iso(points), peaks.astype(np.float32)))
    return clouds


def _air_cells(rng: np.random.Generator, centre: tuple[float, float, float], axes: tuple[float, float, float],
               count: int, sigmas: tuple[float, ...] = (0.8, 1.3, 2.0)) -> list[BlobCloud]:
    """Air cells (negative bone) packed in an ellipsoid (mastoid, ethmoid)."""
    clouds = []
    for sigma in sigmas:
        unit_ball = _random_directions(rng, count) * rng.random(count)[:, None] ** (1 / 3)
        points = np.asarray(centre) + unit_ball * np.asarray(axes)
        clouds.append(BlobCloud(sigma, BONE, _iso(points), np.full(count, -0.45, np.float32)))
    return clouds


# ------------------------------------------------------------------------------------------- sutures and grooves


def _fractal_course(rng: np.random.Generator, anchors: np.ndarray, hurst: float, amplitude: float,
                    levels: int) -> np.ndarray:
    """A fractal curve through unit `anchors` (directions from the vault centre) by midpoint displacement on
    the sphere of directions: each level halves the segments and moves the new midpoints sideways by a normal
    draw of `amplitude` (mm, converted at 80 mm radius) times 2^(-level * hurst), at most SUTURE_BEND times the
    segment's length."""
    points = _unit(anchors)
    scale = amplitude / 80.0
    for level in range(levels):
        mid = _unit(points[:-1] + points[1:])
        tangent = points[1:] - points[:-1]
        side = _unit(np.cross(tangent, mid) + 1e-12)
        # no excursion beyond a fraction of the segment it bends: the course interlocks but never tangles
        step = np.minimum(scale * 2.0 ** (-level * hurst), SUTURE_BEND * np.linalg.norm(tangent, axis=1))
        mid = _unit(mid + side * (step * np.clip(rng.standard_normal(len(mid)), -2.0, 2.0))[:, None])
        merged = np.empty((len(points) + len(mid), 3))
        merged[0::2], merged[1::2] = points, mid
        points = merged
    return points


def _sutures(rng: np.random.Generator, proportions: HeadProportions) -> tuple[list[TubeSet], dict[str, list]]:
    """Coronal, sagittal, lambdoid and squamosal sutures: fractal courses through the whole vault thickness;
    also each suture's course on the outer surface, by name."""
    bregma = (0.0, 0.22 + 0.06 * rng.standard_normal(), 1.0)
    lambda_ = (0.0, -0.78, 0.62 + 0.05 * rng.standard_normal())
    courses = []
    for sign in (-1.0, 1.0):
        pterion = (sign * 0.82, 0.5, -0.28)
        asterion = (sign * 0.7, -0.62, -0.42)
        courses.append(("coronal", [bregma, (sign * 0.6, 0.36, 0.55), pterion]))
        courses.append(("lambdoid", [lambda_, (sign * 0.5, -0.75, 0.15), asterion]))
        courses.append(("squamosal", [pterion, (sign * 0.95, 0.1, -0.08), (sign * 0.9, -0.35, -0.2), asterion]))
    courses.append(("sagittal", [bregma, (0.0, -0.3, 1.0), lambda_]))
    depths = (0.15, 0.5, 0.85)  # outer table, diploe, inner table
    layers: dict[tuple[float, float], list[np.ndarray]] = {}
    traces: dict[str, list[np.ndarray]] = {}
    for name, anchors in courses:
        course = _fractal_course(rng, np.array(anchors, np.float64), SUTURE_HURST, SUTURE_AMPLITUDE_MM, levels=9)
        for fraction in depths:
            points, _ = _vault_points(course, fraction, proportions)
            layers.setdefault((fraction, SUTURE_OPENNESS[name]), []).append(_iso(points))
        traces.setdefault(name, []).append(_iso(_vault_points(course, depths[0], proportions)[0]))
    # the gap: bone replaced by fibrous tissue through the whole thickness, a ribbon; each depth's tube stands for
    # a third of it, so its density is scaled by the ribbon's cross-section over the tube's (one set per depth, so
    # that the three add up in projection)
    ribbon = (6.5 / len(depths)) * (2 * SUTURE_RADIUS_MM) / (np.pi * SUTURE_RADIUS_MM**2)
    return [TubeSet(SUTURE_RADIUS_MM, BONE, -openness * DENSITY["bone"] * ribbon, paths, "sutures")
            for (_, openness), paths in layers.items()], traces


def _meningeal_grooves(rng: np.random.Generator, proportions: HeadProportions) -> list[TubeSet]:
    """Middle meningeal artery grooves on the inner table: an anterior and a posterior branch per side, each
    with side branches, as smooth fractal courses (Hurst 0.8) from the pterion region upwards."""
    trunks, twigs = [], []
    for sign in (-1.0, 1.0):
        start = (sign * 0.85, 0.32, -0.3)
        for end in ((sign * 0.55, 0.2, 0.8), (sign * 0.75, -0.55, 0.45)):
            course = _fractal_course(rng, np.array([start, end], np.float64), 0.8, 6.0, levels=8)
            points, _ = _vault_points(course, 0.97, proportions)
            trunks.append(_iso(points))
            for _ in range(3):  # side branches from random points of the trunk
                origin = course[rng.integers(len(course) // 4, 3 * len(course) // 4)]
                tip = _unit(origin + 0.35 * _unit(rng.normal(size=3)) * np.array([0.3, 1.0, 1.0]))
                branch = _fractal_course(rng, np.array([origin, tip], np.float64), 0.8, 3.0, levels=7)
                points, _ = _vault_points(branch, 0.97, proportions)
                twigs.append(_iso(points))
    groove = -0.6 * DENSITY["bone"]
    return [TubeSet(0.7, BONE, groove, trunks, "meningeal_grooves"),
            TubeSet(0.4, BONE, groove, twigs, "meningeal_grooves")]


def _sella(parts: _EllipsoidList) -> None:
    """The cortical floor of the sella turcica (tuberculum, floor, dorsum up to the posterior clinoid) as a
    curved plate 12 mm wide, built from overlapping ellipsoids along its outline, and the anterior clinoid
    processes: in a lateral view the plate is seen edge-on, the familiar white cup."""
    theta = np.linspace(0.0, np.pi, 15)
    floor_yz = np.stack([3.0 + 6.5 * np.cos(theta), -27.5 - 4.5 * np.sin(theta)], axis=1)
    dorsum_yz = np.array([[-4.0, -25.5], [-4.0, -23.5], [-3.5, -21.5], [-2.5, -19.5], [-1.0, -18.5]])
    for y, z in np.concatenate([floor_yz, dorsum_yz]):
        parts.add((0.0, y, z), (6.0, 1.1, 1.1), 0.0, (BONE, 0.6 * DENSITY["bone"]))
    for sign in (-1.0, 1.0):  # anterior clinoid processes, pointing back over the fossa
        parts.add((sign * 7.0, 8.5, -21.5), (1.5, 4.5, 1.3), 0.0, (BONE, 0.8 * DENSITY["bone"]))


def _mandible_curve(face: float) -> tuple[np.ndarray, np.ndarray]:
    """The mandibular body's arch (17, 2) and its chin drop (mm), as in the voxel head."""
    curve = dental_arch(47.0 * face, 82.0 * face, 12.0, 17)
    return curve, 12.0 * (1.0 - (curve[:, 0] / (47.0 * face)) ** 2)


def _mandibular_canals(face: float) -> list[TubeSet]:
    """The canal of the inferior alveolar nerve, from the mandibular foramen on the ramus to the mental
    foramen, on each side."""
    curve, drop = _mandible_curve(face)
    paths = []
    for side in (slice(0, 7), slice(10, 17)):  # left and right halves, behind the canine
        body = np.column_stack([curve[side], -106.0 - 0.6 * drop[side]])
        if side.start == 0:
            body = body[::-1]
        foramen = np.array([[np.sign(body[0, 0]) * 46.0 * face, 18.0, -92.0]])
        paths.append(_iso(np.concatenate([foramen, body])))
    return [TubeSet(1.3, BONE, -0.75 * DENSITY["bone"], paths, "mandibular_canals")]


def _cancellous_segments(face: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Capsules (a, b, radius) of cancellous bone: vertebral bodies C2-C6 and the dens, the mandibular body and
    rami, the maxillary alveolar process (anatomy coordinates, as in the voxel head)."""
    segments = [(np.array([0.0, -8.0, -64.0]), np.array([0.0, -8.0, -52.0]), 3.5)]
    level = -70.0
    for vertebra in range(2, 7):
        height = 12.0 if vertebra > 2 else 16.0
        segments.append((np.array([0.0, -8.0, level - 2.0]), np.array([0.0, -8.0, level - height + 2.0]), 7.5))
        level -= height + 4.5
    curve, drop = _mandible_curve(face)
    for i in range(len(curve) - 1):
        a = np.array([*curve[i], -104.0 - 0.6 * drop[i]])
        b = np.array([*curve[i + 1], -104.0 - 0.6 * drop[i + 1]])
        segments.append((a, b, 6.0))
    for sign in (-1.0, 1.0):
        ramus = (np.array([sign * 47.0 * face, 12.0, -106.0]), np.array([sign * 51.0 * face, -6.0, -48.0]), 4.5)
        segments.append(ramus)
    upper = dental_arch(31.0 * face, 74.0 * face, 22.0, 9)
    for i in range(len(upper) - 1):
        segments.append((np.array([*upper[i], -76.0]), np.array([*upper[i + 1], -76.0]), 5.0))
    return segments


def _quadric(axes, angle: float = 0.0) -> np.ndarray:
    """Q of an ellipsoid with half-axes `axes` (x', y', z') turned by `angle` about z."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rotation @ np.diag(1.0 / np.asarray(axes, np.float64) ** 2) @ rotation.T


class _EllipsoidList:
    """Collects signed ellipsoids (anatomy coordinates) into `Ellipsoids`."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray, int, float]] = []

    def add(self, centre: np.ndarray | tuple, axes: np.ndarray | tuple, angle: float, *parts: tuple[int, float]) -> None:
        for material, density in parts:
            self.items.append((np.asarray(centre, np.float64), _quadric(axes, angle), material, density))

    def build(self) -> Ellipsoids:
        return Ellipsoids(
            centres=_iso(np.array([c for c, _, _, _ in self.items])),
            quadrics=np.array([q for _, q, _, _ in self.items], np.float64),
            materials=np.array([m for _, _, m, _ in self.items], np.int64),
            densities=np.array([d for _, _, _, d in self.items], np.float32),
        )


# tooth kinds by distance from the midline (0 central incisor ... 7 third molar): crown half-axes (mesio-distal
# fraction of the spacing, labio-lingual mm, height mm), root length (mm) and number of roots
_TOOTH_KINDS = {
    "incisor": ((0.46, 3.2, 5.5), 13.0, 1),
    "canine": ((0.46, 4.0, 6.0), 17.0, 1),
    "premolar": ((0.46, 4.5, 4.5), 14.0, 1),
    "molar": ((0.48, 5.2, 4.0), 12.0, 2),
}
_KIND_BY_POSITION = ("incisor", "incisor", "canine", "premolar", "premolar", "molar", "molar", "molar")
ENAMEL_MM = 1.2


def _tooth(parts: _EllipsoidList, centre: np.ndarray, angle: float, spacing: float, kind: str, up: float) -> None:
    """One tooth: enamel cap over a dentin core with its pulp chamber, root(s) with canals and a periodontal
    gap; `up` is +1 for a lower tooth (crown above the root), -1 for an upper one."""
    (md_fraction, ll, height), root_length, roots = _TOOTH_KINDS[kind]
    crown = np.array([md_fraction * spacing, ll, height])
    parts.add(centre, crown, angle, (ENAMEL, DENSITY["enamel"]), (SOFT, -DENSITY["soft_tissue"]))
    core = np.maximum(crown - ENAMEL_MM, 0.4 * crown)
    parts.add(centre, core, angle, (ENAMEL, -DENSITY["enamel"]), (BONE, DENTIN_DENSITY))
    parts.add(centre - [0, 0, up * 0.3 * height], core * [0.4, 0.4, 0.45], angle,
              (BONE, -DENTIN_DENSITY), (SOFT, DENSITY["soft_tissue"]))
    cervical = centre - [0.0, 0.0, up * 0.75 * height]
    offsets = (0.0,) if roots == 1 else (-0.45, 0.45)
    for offset in offsets:
        shift = offset * crown[0] * np.array([np.cos(angle), np.sin(angle), 0.0])
        middle = cervical + shift - [0.0, 0.0, up * root_length / 2]
        axes = np.array([crown[0] * (0.55 if roots == 1 else 0.38), 0.6 * ll, root_length / 2])
        parts.add(middle, axes + 0.35, angle, (BONE, -0.5))  # periodontal ligament space
        parts.add(middle, axes, angle, (BONE, 0.5 + DENTIN_DENSITY))
        parts.add(middle, [0.45, 0.45, 0.9 * root_length / 2], angle, (BONE, -DENTIN_DENSITY),
                  (SOFT, DENSITY["soft_tissue"]))


def _teeth(rng: np.random.Generator, face: float) -> tuple[_EllipsoidList, dict[str, np.ndarray]]:
    """Both dental arches (16 teeth each, a few missing by seed) and the incisal tips of the central incisors."""
    parts = _EllipsoidList()
    tips = {}
    missing = rng.random(32) < 0.06
    missing[[7, 8, 23, 24]] = False  # keep the central incisors: the incision landmarks sit on them
    for row, (front, occlusal, incisal, up) in enumerate(((77.0, -92.5, -93.5, -1.0), (74.5, -92.0, -91.0, 1.0))):
        arch = dental_arch((31.0 if row == 0 else 29.5) * face, front * face, 22.0, 16)
        spacing = np.linalg.norm(np.diff(arch, axis=0), axis=1)
        for i, (tx, ty) in enumerate(arch):
            position = int(abs(i - 7.5))
            kind = _KIND_BY_POSITION[position]
            step = spacing[min(i, len(spacing) - 1)]
            tangent = arch[min(i + 1, 15)] - arch[max(i - 1, 0)]
            tip_z = incisal if position < 2 else occlusal
            height = _TOOTH_KINDS[kind][0][2]
            centre = np.array([tx, ty, tip_z - up * height])
            if i == 8:  # a central incisor
                tips["incision_superius" if row == 0 else "incision_inferius"] = np.array([tx, ty, tip_z])
            if missing[row * 16 + i]:
                continue
            _tooth(parts, centre, float(np.arctan2(tangent[1], tangent[0])), step, kind, up)
    return parts, tips


def _skin_profile(head: HeadPhantom) -> tuple[np.ndarray, np.ndarray]:
    """The midline facial profile of the voxel head: for each height z (anatomy mm), the most anterior y (mm)
    inside the skin (nan where the midline holds no tissue)."""
    n, h = head.voxels, head.voxel_mm
    axis = (np.arange(n) + 0.5) * h - n * h / 2
    middle = n // 2
    tissue = head.densities[:, :, middle - 1:middle + 1].sum(axis=-1).max(axis=2) > 0.5  # [z, y]
    last = np.where(tissue.any(axis=1), n - 1 - np.argmax(tissue[:, ::-1], axis=1), -1)
    y = np.where(last >= 0, axis[np.maximum(last, 0)] + h / 2, np.nan) + HEAD_CENTRE[1]
    return axis + HEAD_CENTRE[2], y


def _profile_point(z: np.ndarray, y: np.ndarray, low: float, high: float, deepest: bool = False) -> np.ndarray:
    """The most anterior (or, with `deepest`, the least anterior) profile point with z in [low, high]."""
    inside = np.flatnonzero((z >= low) & (z <= high) & np.isfinite(y))
    pick = inside[np.argmin(y[inside])] if deepest else inside[np.argmax(y[inside])]
    return np.array([0.0, y[pick], z[pick]])


def landmarks_3d(proportions: HeadProportions, head: HeadPhantom, tips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 19 ISBI 2015 cephalometric landmarks of this head (isocenter coordinates, mm). Bilateral landmarks
    (orbitale, porion, gonion, articulare) are the midpoint of the left and right structures, as a lateral
    cephalogram superimposes them."""
    f = proportions.face
    nasion, _ = _vault_points(_unit(np.array([[0.0, 1.0, -0.36]])), 0.0, proportions)
    z, y = _skin_profile(head)
    nose_tip = _profile_point(z, y, -75.0, -45.0)
    upper_lip = _profile_point(z, y, -92.0, -82.0)
    points = {
        "sella": np.array([0.0, 3.0, -29.0]),
        "nasion": nasion[0],
        "orbitale": np.array([0.0, 78.0 * f, -49.0]),
        "porion": np.array([0.0, -18.0, -33.0]),
        "subspinale": np.array([0.0, 50.0 * f + 35.0, -89.0]),
        "supramentale": np.array([0.0, 82.0 * f + 5.0, -108.0]),
        "pogonion": np.array([0.0, 82.0 * f + 6.5, -118.0]),
        "menton": np.array([0.0, 82.0 * f, -126.5]),
        "gnathion": np.array([0.0, 82.0 * f + 4.5, -124.0]),
        "gonion": np.array([0.0, 7.0, -113.0]),
        "incision_inferius": tips["incision_inferius"],
        "incision_superius": tips["incision_superius"],
        "upper_lip": upper_lip,
        "lower_lip": _profile_point(z, y, -108.0, -95.0),
        "subnasale": _profile_point(z, y, nose_tip[2] - 12.0 if nose_tip[2] - 12.0 > upper_lip[2] else upper_lip[2],
                                    nose_tip[2], deepest=True),
        "soft_tissue_pogonion": _profile_point(z, y, -132.0, -112.0),
        "posterior_nasal_spine": np.array([0.0, 50.0 * f - 20.0, -82.0]),
        "anterior_nasal_spine": np.array([0.0, 50.0 * f + 40.0, -82.0]),
        "articulare": np.array([0.0, -13.0, -48.0]),
    }
    return {name: _iso(points[name]) for name in LANDMARKS}


def make_fine_anatomy(head: HeadPhantom) -> FineAnatomy:
    """The fine structures and landmarks of the voxel head `head` (made by make_head with its seed).

    Args:
        head: the coarse voxel head; its seed fixes the proportions the fine anatomy follows.

    Returns:
        The `FineAnatomy`; the same head gives the same fine anatomy, bit for bit.
    """
    proportions = draw_proportions(np.random.default_rng(head.seed))
    rng = np.random.default_rng([head.seed, 40])
    face = proportions.face
    fine = FineAnatomy(seed=head.seed)
    fine.blobs += _diploe_texture(rng, proportions)
    fine.blobs += _cancellous_texture(rng, _cancellous_segments(face), 0.45)
    for sign in (-1.0, 1.0):
        fine.blobs += _air_cells(rng, (sign * 55.0, -30.0, -52.0), (8.0, 10.0, 12.0), 160)  # mastoid
    fine.blobs += _air_cells(rng, (0.0, 50.0 * face, -35.0), (10.0, 26.0, 11.0), 220, sigmas=(1.0, 1.6))  # ethmoid
    sutures, fine.suture_courses = _sutures(rng, proportions)
    fine.tubes += sutures
    fine.tubes += _meningeal_grooves(rng, proportions)
    fine.tubes += _mandibular_canals(face)
    parts, tips = _teeth(rng, face)
    _sella(parts)
    fine.ellipsoids = parts.build()
    fine.landmarks = landmarks_3d(proportions, head, tips)
    return fine
