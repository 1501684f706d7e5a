"""Phantom v2's fine anatomy: the structures finer than a voxel of the head, as analytic 3D primitives.

The voxel head (`anatomy.make_head`, 1.5 mm voxels) carries the coarse anatomy. Everything finer is described
here as 3D primitives in the same patient space, which `fine_projector` integrates along each ray at the
detector's own pitch, so every view, pose and class sees the same 3D object:

- blobs: clouds of small 3D Gaussians of signed density. Trabecular (cancellous) texture of the diploe, the
  vertebral bodies, the mandible and the maxilla is a zero-mean cloud whose blob sizes span octaves, each
  octave's power set so that the projected texture, through the detector's MTF, falls as about 1/f^3 over
  0.2-1 cycles/mm (the anatomical-noise exponent of radiographs; scripts/measure_phantom_texture.py);
  mastoid and ethmoid air cells are clouds of negative bone density. The vault's outer and inner tables are
  sheets of small blobs on the vault's own surfaces (an even Fibonacci lattice, each blob weighted by its area):
  a thin dense layer at each surface, the same mass taken from the diploe's middle, so the tables are crisp
  cortical shells over the voxel head's soft 1.5 mm vault.
- tubes: thin tubes around 3D polylines. Sutures (coronal, sagittal, lambdoid, squamosal) are fractal curves on
  the vault (midpoint displacement, each excursion bounded by its segment so the course interlocks without
  tangling: a trace dimension near 1.5 at 1-20 mm) through the whole thickness of the bone; middle meningeal
  grooves on the inner table; the mandibular canals; the cortical edges a lateral radiograph shows as lines: the
  lateral orbital rims, orbital roofs and floors, the sella floor, the petrous crests, the ramus borders (gonial
  angle, condylar neck, sigmoid notch, coronoid), the symphysis, the mandible's lower border, the vertebral
  bodies and the dens; the nasal bones and the conchae. A set draws the union of its tubes, so plates (parallel
  courses) and the two sides of the head are separate sets that add up.
- ellipsoids: teeth in two occluding arches (enamel cap and cusps, dentin, pulp chamber, roots and root canals,
  the incisors proclined), the anterior clinoid processes, the otic capsules, the clivus, the nasal septum and the
  hard palate over the upper roots, and a thin cortical wall on every lobe of the frontal, sphenoid and maxillary
  sinuses (`anatomy.sinus_lobes`: the voxel head carves the lobes' union as air; where lobes overlap, their walls
  are the septa; sinus size varies by seed).

Each primitive has a material (index into `anatomy.MATERIALS`) and a signed density (g/cm^3) that is added to
the voxel head's densities. Coordinates are isocenter coordinates (mm), like the voxel head's.

The 19 cephalometric landmarks of the ISBI 2015 challenge are 3D points of the same head (`landmarks_3d`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xdigiskull.phantom.anatomy import (
    CLIVUS_V2,
    DENSITY,
    MATERIALS,
    VAULT_CENTRE,
    HeadPhantom,
    MAXILLARY_FLOOR_Z_V2,
    PALATE_Z_V2,
    SPINE_BACK_V2,
    SPINE_DROP_V2,
    HeadProportions,
    dental_arch,
    draw_proportions,
    sinus_lobes,
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
TEXTURE_CONTRAST = 0.75  # g/cm^3 of bone, peak of a blob of TEXTURE_REFERENCE_MM
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
    # each sinus's enlargement over the voxel head's (a seeded factor, 1 = the voxel head's cavity)
    sinus_sizes: dict[str, float] = field(default_factory=dict)


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



# cortical tables: the voxel vault's tables are 1.5 mm voxels (soft); the fine anatomy adds a thin dense layer at
# each surface and takes the same mass out of the diploe's middle, so the tables are crisp and the mean is unchanged
TABLE_SPACING_MM = 0.5  # mean distance between a layer's blobs: under 2 blob widths, so the sheet ripples < 1 %
# (depth fraction of the bone, mm of cortical bone added (taken, if negative), Gaussian half-thickness mm): the
# tables a thin dense layer each, the diploe's share spread over its middle
TABLE_LAYERS: tuple[tuple[float, float, float], ...] = ((0.04, 0.35, 0.3), (0.96, 0.35, 0.3), (0.5, -0.5, 1.0))


def _fibonacci_directions(count: int) -> np.ndarray:
    """`count` unit vectors spread evenly over the sphere (a Fibonacci lattice: no random clumping)."""
    k = np.arange(count) + 0.5
    z = 1.0 - 2.0 * k / count
    phi = np.pi * (1.0 + 5.0**0.5) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _vault_tables(proportions: HeadProportions) -> list[BlobCloud]:
    """Outer and inner tables as sheets of small blobs on the vault's own surfaces (bumps, thickness and the
    skull base included), each blob weighted by the surface area it stands for."""
    axes = proportions.vault_axes.astype(np.float64)
    p = 1.6075
    area = 4 * np.pi * (((axes[0] * axes[1]) ** p + (axes[0] * axes[2]) ** p + (axes[1] * axes[2]) ** p) / 3) ** (1 / p)
    count = int(area / TABLE_SPACING_MM**2)
    directions = _fibonacci_directions(count)
    # surface area per unit solid angle of the ellipsoid along each direction: r^2 / cos(normal, direction)
    radius = 1.0 / np.linalg.norm(directions / axes, axis=-1)
    normal = _unit(directions * radius[:, None] / axes**2)
    area_per_blob = (4 * np.pi / count) * radius**2 / np.abs(np.sum(normal * directions, axis=1))
    # a point's radius is linear in its depth fraction: two evaluations of the surface fields serve every layer
    outer, thickness = _vault_points(directions, 0.0, proportions)
    inner, _ = _vault_points(directions, 1.0, proportions)
    base = skull_base_level((outer[:, 0], outer[:, 1], outer[:, 2]), proportions.bumps) + 1.0
    clouds = []
    for fraction, surface_density, sigma in TABLE_LAYERS:
        blob_mass = (2 * np.pi) ** 1.5 * sigma**3  # mm^3 of a unit-peak blob
        points = outer + fraction * (inner - outer)
        keep = points[:, 2] > base
        # the diploe's share is spread over its thickness: thin bone has little diploe to take it from
        scale = np.clip((thickness - 3.0) / 4.0, 0.0, 1.0) if surface_density < 0 else 1.0
        peaks = surface_density * DENSITY["bone"] * area_per_blob * scale / blob_mass
        clouds.append(BlobCloud(sigma, BONE, _iso(points[keep]), np.broadcast_to(peaks, count)[keep]
                                .astype(np.float32)))
    return clouds


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
               count: int, sigmas: tuple[float, ...] = (0.8, 1.3, 2.0), density: float = -0.45) -> list[BlobCloud]:
    """Air cells (negative bone) packed in an ellipsoid (mastoid, ethmoid)."""
    clouds = []
    for sigma in sigmas:
        unit_ball = _random_directions(rng, count) * rng.random(count)[:, None] ** (1 / 3)
        points = np.asarray(centre) + unit_ball * np.asarray(axes)
        clouds.append(BlobCloud(sigma, BONE, _iso(points), np.full(count, density, np.float32)))
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


def _sella(parts: _EllipsoidList) -> list[TubeSet]:
    """The cortical floor of the sella turcica (tuberculum, floor, dorsum up to the posterior clinoid) as a
    curved plate 12 mm wide, drawn as parallel tube courses along its outline (a lateral view sees the plate
    edge-on: the familiar white cup), and the anterior clinoid processes."""
    theta = np.linspace(0.0, np.pi, 15)
    floor_yz = np.stack([3.0 + 6.5 * np.cos(theta), -27.5 - 4.5 * np.sin(theta)], axis=1)
    tuberculum_yz = np.array([[12.5, -24.5], [10.5, -25.5]])
    dorsum_yz = np.array([[-4.0, -25.5], [-4.0, -23.5], [-3.5, -21.5], [-2.5, -19.5], [-1.0, -18.5]])
    outline = np.concatenate([tuberculum_yz, floor_yz, dorsum_yz])
    paths = [_iso(np.column_stack([np.full(len(outline), x), outline])) for x in (-6.0, -3.0, 0.0, 3.0, 6.0)]
    for sign in (-1.0, 1.0):  # anterior clinoid processes, pointing back over the fossa
        parts.add((sign * 7.0, 8.5, -21.5), (1.5, 4.5, 1.3), 0.0, (BONE, 0.8 * DENSITY["bone"]))
    return _each(1.0, 0.9 * DENSITY["bone"], paths, "sella_floor")


# ------------------------------------------------------------------------------------------- face and skull base


def _each(radius_mm: float, density: float, paths: list[np.ndarray], name: str) -> list[TubeSet]:
    """One bone TubeSet per path: a set draws the union of its tubes, so courses that superimpose in a view (the
    two sides of the head, the parallel courses that stand for a plate) must be separate sets to add up."""
    return [TubeSet(radius_mm, BONE, density, [path], name) for path in paths]


def _curve(points: list[tuple[float, float, float]], samples: int = 24) -> np.ndarray:
    """A smooth polyline through control points (a quadratic B-spline: corners cut, ends kept)."""
    path = np.asarray(points, np.float64)
    for _ in range(3):  # Chaikin corner cutting
        q = 0.75 * path[:-1] + 0.25 * path[1:]
        r = 0.25 * path[:-1] + 0.75 * path[1:]
        path = np.concatenate([path[:1], np.stack([q, r], axis=1).reshape(-1, 3), path[-1:]])
    return path


def _orbits(face: float) -> list[TubeSet]:
    """The orbits as a lateral radiograph shows them: each lateral orbital rim (the zygoma's frontal process) a
    curved dense edge, concave forwards, from the frontozygomatic suture down to the orbital floor; each orbital
    roof a thin plate seen edge-on, a line arching up and back from the supraorbital margin towards the anterior
    clinoid (a few parallel courses across the roof's width, at slightly different heights, as the two roofs and
    their domes never superimpose exactly)."""
    rims, roofs, floors = [], [], []
    for sign in (-1.0, 1.0):
        x = sign * 40.0 * face
        for dx, dy in ((0.0, 0.0), (-sign * 3.0, -2.0)):
            rims.append(_iso(_curve([(x + dx, 76.0 * face + dy, -12.0), (x + dx, 70.0 * face + dy, -24.0),
                                     (x + dx, 70.0 * face + dy, -38.0), (x + dx, 75.0 * face + dy, -48.0)])))
        for k, lateral in enumerate((12.0, 19.0, 26.0, 33.0)):
            lift = 3.0 - 0.12 * lateral + 0.8 * sign
            roofs.append(_iso(_curve([(sign * lateral * face, 82.0 * face, -18.0 - 0.1 * lateral),
                                      (sign * lateral * face, 62.0 * face, -12.5 + lift),
                                      (sign * lateral * face, 40.0 * face, -14.0 + lift),
                                      (sign * max(lateral - 4.0, 9.0) * face, 22.0, -20.0 + 0.5 * lift)])))
        floors.append(_iso(_curve([(sign * 30.0 * face, 78.0 * face, -48.0), (sign * 28.0 * face, 60.0 * face, -46.0),
                                   (sign * 20.0 * face, 36.0 * face, -40.0)])))
    bone = DENSITY["bone"]
    return (_each(1.5, 0.6 * bone, rims, "orbital_rims") + _each(0.8, 0.4 * bone, roofs, "orbital_roofs")
            + _each(1.0, 0.3 * bone, floors, "orbital_floors"))


def _petrous_ridges(parts: "_EllipsoidList") -> list[TubeSet]:
    """The petrous crests (the superior border of each temporal bone's petrous part), dense lines from the
    mastoid towards the clivus, and the otic capsule (the densest bone of the skull) under each."""
    crests = []
    for sign in (-1.0, 1.0):
        crests.append(_iso(_curve([(sign * 58.0, -28.0, -28.0), (sign * 42.0, -16.0, -24.0),
                                   (sign * 28.0, -6.0, -25.0), (sign * 17.0, 1.0, -27.5)])))
        parts.add((sign * 38.0, -14.0, -31.0), (6.0, 4.5, 3.5), 0.6, (BONE, 0.6 * DENSITY["bone"]))  # otic capsule
    return _each(1.5, 0.8 * DENSITY["bone"], crests, "petrous_ridges") + _each(3.0, 0.25 * DENSITY["bone"], crests,
                                                                           "petrous_ridges")


def _clivus(parts: "_EllipsoidList") -> None:
    """The clivus: a broad slab of dense bone in the midline from the dorsum sellae down to the basion, seen
    edge-on as a band sloping down and back (over the voxel head's soft 1.5 mm clivus)."""
    top, bottom = np.array(CLIVUS_V2[0]), np.array(CLIVUS_V2[1])
    axis = bottom - top
    tilt = float(np.arctan2(axis[2], axis[1]))
    parts.add_tilted((top + bottom) / 2, (10.0, np.linalg.norm(axis) / 2 + 2.0, 4.0), tilt,
                     (BONE, 0.35 * DENSITY["bone"]))


def _shell(parts: _EllipsoidList, centre: np.ndarray, axes: np.ndarray, wall_mm: float, density: float) -> None:
    """A thin bony shell (a positive ellipsoid minus one `wall_mm` smaller): exact, crisp walls in projection."""
    parts.add(centre, axes, 0.0, (BONE, density))
    parts.add(centre, np.maximum(np.asarray(axes) - wall_mm, 0.5), 0.0, (BONE, -density))


def _sinuses(parts: _EllipsoidList, lobes: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> None:
    """A thin cortical wall on every lobe of the frontal, sphenoid and maxillary sinuses (the voxel head carves
    their union as air): crisp outlines, and where lobes overlap the walls cross the cavity as septa."""
    for name, sinus in lobes.items():
        wall = {"frontal": 0.35, "maxillary": 0.3, "sphenoid": 0.22}[name] * DENSITY["bone"]
        thickness = 0.7 if name == "frontal" else 0.9
        for centre, axes in sinus:
            _shell(parts, centre, axes + thickness, thickness, wall)


def _nasal_skeleton(parts: _EllipsoidList, face: float) -> list[TubeSet]:
    """The nasal cavity's skeleton: the septum (a thin midline plate), the hard palate (its floor, a plate seen
    edge-on in a lateral view, from posterior to anterior nasal spine), the nasal bones and the conchae."""
    scale = np.array([face, face, 1.0])
    parts.add(np.array([0.0, 57.0, -47.0]) * scale, (0.9, 24.0 * face, 18.0), 0.0, (BONE, 0.6 * DENSITY["bone"]))
    # the palate: a dense plate over the upper roots from PNS to ANS, thicker at the front (the premaxilla)
    parts.add((0.0, 50.0 * face + 9.0, PALATE_Z_V2), (14.0 * face, 27.0, 1.6), 0.0, (BONE, 0.5 * DENSITY["bone"]))
    parts.add((0.0, 50.0 * face + 24.0, PALATE_Z_V2 - 2.5), (9.0 * face, 11.0, 3.5), 0.0, (BONE, 0.3 * DENSITY["bone"]))
    conchae = []
    for sign in (-1.0, 1.0):
        for height, length in ((PALATE_Z_V2 + 5.0, 22.0), (-54.0, 18.0), (-44.0, 12.0)):
            conchae.append(_iso(np.array([[sign * 9.0 * face, (62.0 - length) * face, height],
                                          [sign * 8.0 * face, (62.0 + length) * face, height + 3.0]])))
    nasal_bones = [_iso(np.array([[sign * 4.0, 84.0 * face, -33.0], [sign * 6.0, 92.0 * face, -48.0]]))
                   for sign in (-1.0, 1.0)]
    return [TubeSet(2.2, BONE, 0.22 * DENSITY["bone"], conchae, "conchae"),
            TubeSet(1.3, BONE, 0.7 * DENSITY["bone"], nasal_bones, "nasal_bones")]


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
        body = np.column_stack([curve[side], -107.0 - 0.6 * drop[side]])
        if side.start == 0:
            body = body[::-1]
        foramen = np.array([[np.sign(body[0, 0]) * 46.0 * face, 18.0, -92.0]])
        paths.append(_iso(np.concatenate([foramen, body])))
    # the lower border's thick cortex, a dense line along the base of the mandible
    border = [_iso(np.column_stack([curve[side], -112.0 - drop[side]])) for side in (slice(0, 9), slice(8, 17))]
    return [TubeSet(1.3, BONE, -0.75 * DENSITY["bone"], paths, "mandibular_canals"),
            TubeSet(1.6, BONE, 0.45 * DENSITY["bone"], border, "mandible_lower_border")]


def _ramus_outline(face: float) -> list[TubeSet]:
    """The cortical borders of each ramus, as the voxel head's ramus plate: the posterior border from the angle
    (gonion) up the condylar neck, the sigmoid notch to the coronoid's tip, and the anterior border down to the
    body (the external oblique ridge)."""
    paths = []
    for sign in (-1.0, 1.0):
        x = sign * 49.0 * face
        u = np.linspace(0.0, 1.0, 9)
        notch = np.column_stack([np.full(9, x), -6.0 + 30.0 * u, -50.0 - 12.0 * np.sin(np.pi * u) - 2.0 * u])
        # the lower border at the angle, round the gonion and up the posterior border to the condylar neck
        paths.append(_iso(_curve([(x, 24.0, -115.5), (x, 11.0, -114.0), (x, 6.0, -109.0), (x, 4.7, -100.0),
                                  (x, -1.9, -75.0), (x, -7.5, -54.0)])))
        paths.append(_iso(_curve([tuple(p) for p in notch])))
        paths.append(_iso(_curve([(x, 26.5, -52.0), (x, 29.0, -70.0), (x, 31.5, -90.0), (x, 40.0, -100.0)])))
    # the symphysis in the midline: a teardrop of cortex (labial plate, chin, lingual plate) around the incisor roots
    # (a plate across the midline, drawn as parallel courses, set back a little off the midline as the arch curves)
    chin = np.array([(0.0, 2.5, -100.0), (0.0, 6.5, -116.0), (0.0, 2.0, -126.0), (0.0, -8.0, -124.0),
                     (0.0, -13.0, -114.0), (0.0, -9.0, -102.0)]) + [0.0, 82.0 * face, 0.0]
    plate = [_iso(_curve(chin + [x, -0.04 * x * x, 0.0])) for x in (-7.0, -3.5, 0.0, 3.5, 7.0)]
    bone = DENSITY["bone"]
    return _each(1.3, 0.5 * bone, paths, "ramus_borders") + _each(1.2, 0.3 * bone, plate, "symphysis")


def _vertebral_outlines() -> list[TubeSet]:
    """The cortical outline of the dens and of each vertebral body C2-C6 (as the voxel head draws them): anterior
    and posterior cortices seen tangentially and the endplates seen edge-on, a rounded box per body (a few
    parallel courses across the body's width, as a lateral view sees a plate)."""
    y0, level = -8.0 - SPINE_BACK_V2, -70.0 - SPINE_DROP_V2
    boxes = []
    for vertebra in range(2, 7):
        height = 12.0 if vertebra > 2 else 16.0
        top, bottom = level - 0.5, level - height + 0.5
        box = [(0.0, y0 + 8.0, top + 0.5), (0.0, y0 - 8.0, top), (0.0, y0 - 8.5, bottom + 1.0),
               (0.0, y0 + 8.5, bottom), (0.0, y0 + 8.0, top + 0.5)]
        if vertebra == 2:  # the dens rises from C2's body
            atlas = -60.0 - SPINE_DROP_V2
            box = [(0.0, y0 + 8.0, top + 0.5), (0.0, y0 + 4.0, top + 2.0), (0.0, y0 + 4.0, atlas + 9.0),
                   (0.0, y0, atlas + 12.0), (0.0, y0 - 4.0, atlas + 9.0), (0.0, y0 - 4.0, top + 2.0),
                   (0.0, y0 - 8.0, top), (0.0, y0 - 8.5, bottom + 1.0), (0.0, y0 + 8.5, bottom),
                   (0.0, y0 + 8.0, top + 0.5)]
        outline = _curve(box)
        boxes += [_iso(outline * [0.0, 1.0, 1.0] + [x, 0.0, 0.0]) for x in (-4.0, 0.0, 4.0)]
        level -= height + 4.5
    return _each(0.9, 0.3 * DENSITY["bone"], boxes, "vertebral_cortices")


def _cancellous_segments(face: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Capsules (a, b, radius) of cancellous bone: vertebral bodies C2-C6 and the dens, the mandibular body and
    rami, the maxillary alveolar process (anatomy coordinates, as in the voxel head)."""
    drop, y0 = SPINE_DROP_V2, -8.0 - SPINE_BACK_V2
    segments = [(np.array([0.0, y0, -64.0 - drop]), np.array([0.0, y0, -52.0 - drop]), 3.5)]
    level = -70.0 - drop
    for vertebra in range(2, 7):
        height = 12.0 if vertebra > 2 else 16.0
        segments.append((np.array([0.0, y0, level - 2.0]), np.array([0.0, y0, level - height + 2.0]), 7.0))
        level -= height + 4.5
    curve, chin = _mandible_curve(face)
    for i in range(len(curve) - 1):
        a = np.array([*curve[i], -106.0 - 0.6 * chin[i]])
        b = np.array([*curve[i + 1], -106.0 - 0.6 * chin[i + 1]])
        segments.append((a, b, 5.5))
    for sign in (-1.0, 1.0):
        ramus = (np.array([sign * 46.0 * face, 18.0, -104.0]), np.array([sign * 49.0 * face, 8.0, -60.0]), 4.5)
        segments.append(ramus)
    upper = dental_arch(31.0 * face, 74.0 * face, 22.0, 9)
    for i in range(len(upper) - 1):
        segments.append((np.array([*upper[i], -75.0]), np.array([*upper[i + 1], -75.0]), 5.0))
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

    def add_frame(self, centre: np.ndarray | tuple, axes: np.ndarray | tuple, rotation: np.ndarray,
                  *parts: tuple[int, float]) -> None:
        """An ellipsoid with half-axes `axes` along the columns of `rotation`."""
        q = rotation @ np.diag(1.0 / np.asarray(axes, np.float64) ** 2) @ rotation.T
        for material, density in parts:
            self.items.append((np.asarray(centre, np.float64), q, material, density))

    def add_tilted(self, centre: np.ndarray | tuple, axes: np.ndarray | tuple, tilt: float,
                   *parts: tuple[int, float]) -> None:
        """An ellipsoid whose y' axis is turned by `tilt` about x (towards +z): a plate in the midsagittal plane."""
        c, s = np.cos(tilt), np.sin(tilt)
        self.add_frame(centre, axes, np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]), *parts)

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
    "incisor": ((0.46, 3.2, 5.5), 12.0, 1),
    "canine": ((0.46, 4.0, 6.0), 15.0, 1),
    "premolar": ((0.46, 4.5, 4.5), 14.0, 1),
    "molar": ((0.48, 5.2, 4.0), 12.0, 2),
}
_KIND_BY_POSITION = ("incisor", "incisor", "canine", "premolar", "premolar", "molar", "molar", "molar")
ENAMEL_MM = 1.2


def _tooth_frame(angle: float, tilt: float) -> np.ndarray:
    """Rotation of a tooth's frame (x' along the arch, y' labial, z' up): turned by `angle` about z to the arch's
    tangent, then by `tilt` about the tangent (positive: the +z' end leans labially)."""
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    c, s = np.cos(tilt), np.sin(tilt)
    lean = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    return turn @ lean


def _tooth(parts: _EllipsoidList, tip: np.ndarray, angle: float, spacing: float, kind: str, up: float,
           tilt: float = 0.0) -> None:
    """One tooth whose incisal edge or cusps touch `tip`: enamel cap over a dentin core with its pulp chamber,
    root(s) with canals and a periodontal gap; `up` is +1 for a lower tooth (crown above the root), -1 for an
    upper one; `tilt` (rad) leans the crown labially (the incisors' proclination)."""
    (md_fraction, ll, height), root_length, roots = _TOOTH_KINDS[kind]
    frame = _tooth_frame(angle, -up * tilt)
    axis = frame[:, 2]  # the tooth's long axis (z' of its frame), from root to crown for a lower tooth
    tangent = frame[:, 0]
    crown = np.array([md_fraction * spacing, ll, height])
    centre = np.asarray(tip, np.float64) - up * height * axis
    parts.add_frame(centre, crown, frame, (ENAMEL, DENSITY["enamel"]), (SOFT, -DENSITY["soft_tissue"]))
    if kind in ("premolar", "molar"):  # cusps square the occlusal table off (an ellipsoid alone reads as a pill)
        for offset in (-0.5, 0.5):
            cusp = centre + offset * crown[0] * tangent + up * 0.45 * height * axis
            parts.add_frame(cusp, crown * [0.42, 0.8, 0.45], frame, (ENAMEL, DENSITY["enamel"]))
    # the dentin core sits towards the root and leaves the crown at its neck, so the enamel is a cap (thickest
    # over the cusps, thinning to the cemento-enamel junction), not a closed ring
    core = np.maximum(crown - [0.6 * ENAMEL_MM, 0.6 * ENAMEL_MM, 0.0], 0.4 * crown)
    parts.add_frame(centre - up * ENAMEL_MM * axis, core, frame, (ENAMEL, -DENSITY["enamel"]),
                    (BONE, DENTIN_DENSITY))
    parts.add_frame(centre - up * 0.3 * height * axis, core * [0.4, 0.4, 0.45], frame,
                    (BONE, -DENTIN_DENSITY), (SOFT, DENSITY["soft_tissue"]))
    cervical = centre - up * 0.75 * height * axis
    offsets = (0.0,) if roots == 1 else (-0.45, 0.45)
    for offset in offsets:
        middle = cervical + offset * crown[0] * tangent - up * root_length / 2 * axis
        axes = np.array([crown[0] * (0.55 if roots == 1 else 0.38), 0.6 * ll, root_length / 2])
        parts.add_frame(middle, axes + 0.35, frame, (BONE, -0.5))  # periodontal ligament space
        parts.add_frame(middle, axes, frame, (BONE, 0.5 + DENTIN_DENSITY))
        parts.add_frame(middle, [0.45, 0.45, 0.9 * root_length / 2], frame, (BONE, -DENTIN_DENSITY),
                        (SOFT, DENSITY["soft_tissue"]))


# labial tilt of the front teeth (rad): incisors proclined about 17 degrees, canines less
_TILT_BY_POSITION = (0.3, 0.28, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0)


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
            if i == 8:  # a central incisor
                tips["incision_superius" if row == 0 else "incision_inferius"] = np.array([tx, ty, tip_z])
            if missing[row * 16 + i]:
                continue
            _tooth(parts, np.array([tx, ty, tip_z]), float(np.arctan2(tangent[1], tangent[0])), step, kind, up,
                   _TILT_BY_POSITION[position])
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
        "subspinale": np.array([0.0, 50.0 * f + 29.0, -75.0]),
        "supramentale": np.array([0.0, 82.0 * f + 5.0, -108.0]),
        "pogonion": np.array([0.0, 82.0 * f + 6.5, -118.0]),
        "menton": np.array([0.0, 82.0 * f, -126.5]),
        "gnathion": np.array([0.0, 82.0 * f + 4.5, -124.0]),
        "gonion": np.array([0.0, 9.0, -112.0]),
        "incision_inferius": tips["incision_inferius"],
        "incision_superius": tips["incision_superius"],
        "upper_lip": upper_lip,
        "lower_lip": _profile_point(z, y, -108.0, -95.0),
        "subnasale": _profile_point(z, y, nose_tip[2] - 12.0 if nose_tip[2] - 12.0 > upper_lip[2] else upper_lip[2],
                                    nose_tip[2], deepest=True),
        "soft_tissue_pogonion": _profile_point(z, y, -132.0, -112.0),
        "posterior_nasal_spine": np.array([0.0, 50.0 * f - 18.0, PALATE_Z_V2]),
        "anterior_nasal_spine": np.array([0.0, 50.0 * f + 36.0, PALATE_Z_V2]),
        "articulare": np.array([0.0, -11.0, -50.0]),
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
    fine.blobs += _vault_tables(proportions)
    fine.blobs += _diploe_texture(rng, proportions)
    fine.blobs += _cancellous_texture(rng, _cancellous_segments(face), 0.45)
    for sign in (-1.0, 1.0):  # mastoid cells behind the ear, largest near the antrum
        # about half the mastoid's bone (the voxel head's) taken out: cells, not a hole
        fine.blobs += _air_cells(rng, (sign * 55.0, -30.0, -50.0), (8.0, 10.0, 13.0), 160, sigmas=(0.5, 0.8, 1.2),
                                 density=-0.6)
    fine.blobs += _air_cells(rng, (0.0, 50.0 * face, -35.0), (10.0, 26.0, 11.0), 220, sigmas=(1.0, 1.6))  # ethmoid
    sutures, fine.suture_courses = _sutures(rng, proportions)
    fine.tubes += sutures
    fine.tubes += _meningeal_grooves(rng, proportions)
    fine.tubes += _mandibular_canals(face)
    fine.tubes += _ramus_outline(face)
    fine.tubes += _vertebral_outlines()
    fine.tubes += _orbits(face)
    parts, tips = _teeth(rng, face)
    fine.tubes += _petrous_ridges(parts)
    fine.tubes += _sella(parts)
    _clivus(parts)
    fine.tubes += _nasal_skeleton(parts, face)
    sinuses = sinus_lobes(head.seed, proportions)
    _sinuses(parts, sinuses.lobes)
    fine.sinus_sizes = sinuses.sizes
    fine.ellipsoids = parts.build()
    fine.landmarks = landmarks_3d(proportions, head, tips)
    return fine
