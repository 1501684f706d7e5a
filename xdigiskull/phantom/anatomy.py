"""A seeded voxel head phantom: skull, brain, sinuses, face, teeth and upper cervical spine.

The head is built from smooth analytic shapes (ellipsoids, capsules, swept tubes) on a regular voxel grid, with
low-frequency random perturbations so that every seed gives a plausibly different skull. Each voxel stores the
mass density (g/cm^3) of four basis materials, which is all the projector and the X-ray physics need:

    channel 0  soft tissue (scalp, muscle, fat, orbital contents, marrow)
    channel 1  brain (brain and cerebrospinal fluid)
    channel 2  cortical bone (trabecular bone and diploe are partial densities of it)
    channel 3  tooth enamel

`make_head(version=2)` keeps v1's vault and redraws the face, skull base, mandible and neck where v1 put anatomy in
the wrong place (see `PALATE_Z_V2` and `_draw_face_and_neck_v2`); version 1 is unchanged byte for byte.

Patient coordinates, in mm: x towards the patient's left, y anterior, z superior. The origin is the isocenter
of the C-arm, roughly at the centre of the skull and face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

MATERIALS: tuple[str, ...] = ("soft_tissue", "brain", "bone", "enamel")
DENSITY = {"soft_tissue": 1.06, "brain": 1.04, "bone": 1.92, "enamel": 2.9}

# the anatomy is described around this point (mm) and shifted so that it lands on the isocenter
_HEAD_CENTRE = np.array([0.0, 5.0, -30.0], dtype=np.float32)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity (used as a cache key)
class HeadPhantom:
    """A voxel head: `densities[z, y, x, material]` in g/cm^3 on a cube of `voxels` voxels of `voxel_mm` mm,
    centred on the isocenter (patient coordinates, see the module docstring)."""

    densities: np.ndarray
    voxel_mm: float
    seed: int

    @property
    def voxels(self) -> int:
        return self.densities.shape[0]

    @property
    def extent_mm(self) -> float:
        return self.voxels * self.voxel_mm


class _Grid:
    """Voxel-centre coordinates and helpers that evaluate shapes only inside their bounding box."""

    def __init__(self, voxels: int, voxel_mm: float) -> None:
        self.n = voxels
        self.h = voxel_mm
        half = voxels * voxel_mm / 2
        axis = (np.arange(voxels, dtype=np.float32) + 0.5) * voxel_mm - half
        # anatomy coordinates of the voxel centres
        self.x = axis + _HEAD_CENTRE[0]
        self.y = axis + _HEAD_CENTRE[1]
        self.z = axis + _HEAD_CENTRE[2]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, slice, slice], tuple[np.ndarray, ...]]:
        """Index slices (z, y, x) and broadcastable coordinates covering the box lo..hi (mm)."""
        slices = []
        for axis, a, b in zip((self.x, self.y, self.z), lo, hi):
            i0 = int(np.searchsorted(axis, a - 2 * self.h))
            i1 = int(np.searchsorted(axis, b + 2 * self.h))
            slices.append(slice(i0, max(i0, i1)))
        sx, sy, sz = slices
        coords = (self.x[sx][None, None, :], self.y[sy][None, :, None], self.z[sz][:, None, None])
        return (sz, sy, sx), coords


def _edge(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume occupancy of a surface: 1 inside, 0 outside, linear across `width` mm."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


def _segment_distance(coords: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to the segment a-b, and the position t in [0, 1] of the closest point."""
    x, y, z = coords
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    d = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)
    return d, t


class _SmoothField:
    """A seeded smooth random field in [-1, 1] (a sum of a few long-wavelength 3D cosines)."""

    def __init__(self, rng: np.random.Generator, wavelength_mm: tuple[float, float] = (60.0, 180.0), terms: int = 6):
        directions = rng.normal(size=(terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=terms)
        self.k = (2 * np.pi / wavelengths)[:, None] * directions
        self.phase = rng.uniform(0, 2 * np.pi, size=terms)
        self.weight = rng.uniform(0.5, 1.0, size=terms)
        self.weight /= self.weight.sum()

    def __call__(self, coords: tuple[np.ndarray, ...]) -> np.ndarray:
        x, y, z = coords
        if np.ndim(x) == 1 and np.shape(x) == np.shape(y) == np.shape(z):  # scattered points: one cosine per term
            phase = np.outer(x, self.k[:, 0]) + np.outer(y, self.k[:, 1]) + np.outer(z, self.k[:, 2]) + self.phase
            return np.cos(phase) @ self.weight
        out = 0.0
        # cos(a + b + c) = Re(e^ia e^ib e^ic): three 1D exponentials per term instead of a 3D cosine
        for (kx, ky, kz), phase, weight in zip(self.k, self.phase, self.weight):
            ex = (weight * np.exp(1j * (kx * x + phase))).astype(np.complex64)
            ey = np.exp(1j * ky * y).astype(np.complex64)
            ez = np.exp(1j * kz * z).astype(np.complex64)
            out = out + ((ez * ey) * ex).real
        return out


# the vault is an ellipsoid around this point (anatomy coordinates, mm), with axes set per head
VAULT_CENTRE = np.array([0.0, -5.0, 5.0], np.float32)


@dataclass(frozen=True, eq=False)
class HeadProportions:
    """The first draws of a head's random stream: its smooth surface fields and global proportions."""

    bumps: _SmoothField
    thick_field: _SmoothField
    width: float
    length: float
    height: float
    face: float

    @property
    def vault_axes(self) -> np.ndarray:
        return np.array([69.0 * self.width, 91.0 * self.length, 76.0 * self.height], np.float32)


def draw_proportions(rng: np.random.Generator) -> HeadProportions:
    """Draw a head's proportions from its random stream (make_head's first draws, in make_head's order)."""
    bumps = _SmoothField(rng)
    thick_field = _SmoothField(rng, (40.0, 120.0))
    width, length, height = (rng.uniform(0.95, 1.05) for _ in range(3))
    face = rng.uniform(0.94, 1.06)
    return HeadProportions(bumps, thick_field, width, length, height, face)


def vault_depth_and_thickness(coords: tuple[np.ndarray, ...], s: np.ndarray,
                              proportions: HeadProportions) -> tuple[np.ndarray, np.ndarray]:
    """Depth (mm) below the vault's outer surface along the radius, and the vault's local thickness (mm).

    Args:
        coords: anatomy coordinates (x, y, z), broadcastable.
        s: ellipsoidal radius of the points relative to the vault's axes (1 on the mean outer surface).
        proportions: the head's proportions and surface fields.
    """
    x, y, z = coords
    c = VAULT_CENTRE
    radial = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    s_surface = 1.0 + 0.025 * proportions.bumps(coords)
    depth = radial * (s_surface - s) / np.maximum(s, 1e-3)
    # thickness: thicker at the occiput and the frontal crest, thin over the temporal squama
    occipital = 1.0 / (1.0 + np.exp((y + 55.0) / 12.0))
    temporal = np.exp(-(((np.abs(x) - 60.0) / 14.0) ** 2)) * np.exp(-(((z + 5.0) / 22.0) ** 2))
    frontal_crest = np.exp(-((x / 30.0) ** 2) - (((y - 80.0) / 18.0) ** 2) - (((z - 5.0) / 20.0) ** 2))
    thickness = 6.0 + 3.5 * occipital - 3.0 * temporal + 9.0 * frontal_crest + 1.2 * proportions.thick_field(coords)
    return depth, np.maximum(thickness, 2.5)


def skull_base_level(coords: tuple[np.ndarray, ...], bumps: _SmoothField) -> np.ndarray:
    """Height (mm) where the vault stops at the skull base: anterior fossa at about -20 mm, the middle fossa
    deeper at the sides (-38 mm) with the sphenoid body raised in the middle, the posterior fossa lowest (-50 mm)."""
    x, y, _ = coords
    middle_raise = 10.0 * np.exp(-((x / 17.0) ** 2)) * _sigmoid((y + 12.0) / 5.0) * _sigmoid((28.0 - y) / 5.0)
    base_level = -38.0 + 18.0 * _sigmoid((y - 28.0) / 7.0) - 12.0 * _sigmoid((-22.0 - y) / 9.0) + middle_raise
    return base_level + 2.0 * bumps(coords)


def dental_arch(half_width: float, front_y: float, back_y: float, count: int) -> np.ndarray:
    """Points (count, 2) along a parabolic dental arch in the x-y plane (anatomy coordinates, mm)."""
    xs = np.linspace(-half_width, half_width, count, dtype=np.float32)
    ys = front_y - (front_y - back_y) * (xs / half_width) ** 2
    return np.stack([xs, ys], axis=1)


def make_head(seed: int = 0, voxels: int = 176, extent_mm: float = 272.0, version: int = 1) -> HeadPhantom:
    """Build the seeded head phantom.

    Args:
        seed: random seed; the same seed gives the same head, bit for bit.
        voxels: voxels along each side of the cube (176 gives ~1.5 mm voxels; smaller is faster and blurrier).
        extent_mm: side of the cube in mm; it must hold the head and upper neck (about 270 mm).
        version: 1, phantom v1's head (teeth in the voxels; kept byte for byte); 2, phantom v2's: the same vault,
            with the face, skull base, mandible and neck of `FACE_V2` and no teeth (phantom v2 draws them, the
            sinus walls and the other fine structures at the detector's resolution, `fine_anatomy`).

    Returns:
        The `HeadPhantom`, densities as float32 of shape (voxels, voxels, voxels, 4).
    """
    if voxels < 32:
        raise ValueError(f"voxels must be at least 32, got {voxels}")
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version}")
    rng = np.random.default_rng(seed)
    grid = _Grid(voxels, extent_mm / voxels)
    h = grid.h
    shape = (voxels, voxels, voxels)
    body = np.zeros(shape, np.float32)  # inside the skin
    bone = np.zeros(shape, np.float32)  # cortical-bone equivalent fraction (may exceed 1 for dense bone)
    brain = np.zeros(shape, np.float32)
    enamel = np.zeros(shape, np.float32)
    air = np.zeros(shape, np.float32)  # air cavities inside the body (sinuses, nasal cavity, airway)

    proportions = draw_proportions(rng)
    bumps, thick_field = proportions.bumps, proportions.thick_field
    width, length, height, face = proportions.width, proportions.length, proportions.height, proportions.face
    vault_axes = proportions.vault_axes
    vault_centre = VAULT_CENTRE

    def ellipsoid(centre, axes):
        """Slices, coords and the ellipsoidal radius s (1 on the surface) within the bounding box."""
        centre = np.asarray(centre, np.float32)
        axes = np.asarray(axes, np.float32)
        sl, c = grid.box(centre - axes, centre + axes)
        s = np.sqrt(((c[0] - centre[0]) / axes[0]) ** 2 + ((c[1] - centre[1]) / axes[1]) ** 2
                    + ((c[2] - centre[2]) / axes[2]) ** 2)
        return sl, c, s

    def paint(target, sl, occupancy, value, carve):
        """Inside the shape (partial-volume `occupancy`): raise the target to `value`, or with `carve` lower it
        to `value`; outside it, leave the target alone."""
        region = target[sl]
        if carve:
            target[sl] = region - occupancy * np.maximum(region - value, 0.0)
        else:
            target[sl] = np.maximum(region, occupancy * value)

    def fill_ellipsoid(target, centre, axes, value=1.0, carve=False):
        sl, _, s = ellipsoid(centre, axes)
        paint(target, sl, _edge((s - 1.0) * float(np.min(axes)), h), value, carve)

    def capsule(target, a, b, radius_a, radius_b=None, value=1.0, carve=False):
        a = np.asarray(a, np.float32)
        b = np.asarray(b, np.float32)
        radius_b = radius_a if radius_b is None else radius_b
        r = max(radius_a, radius_b)
        sl, c = grid.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
        d, t = _segment_distance(c, a, b)
        paint(target, sl, _edge(d - (radius_a + (radius_b - radius_a) * t), h), value, carve)

    # ---------------------------------------------------------------- skull vault: two tables and the diploe
    sl, c, s = ellipsoid(vault_centre, vault_axes * 1.12)  # a box with room for the bumps and the scalp
    s = s * 1.12  # ellipsoidal radius relative to the vault itself: 1 on its mean outer surface
    x, y, z = c
    depth, thickness = vault_depth_and_thickness(c, s, proportions)
    outer = _edge(-depth, h)  # inside the outer surface
    inner_boundary = _edge(thickness - depth, h)  # inside the inner surface: 1 - inner_boundary is the shell
    shell = outer * (1.0 - inner_boundary)
    table = 0.35 * thickness
    diploe = np.clip(np.minimum(depth - table, thickness - table - depth) / h + 0.5, 0.0, 1.0)
    # the diploe is trabecular: a mottled density, from smoothed white noise at the voxel scale
    mottle = gaussian_filter(rng.standard_normal(shell.shape).astype(np.float32), 0.8)
    mottle *= np.float32(0.35 / max(float(mottle.std()), 1e-6))
    vault_bone = shell * (1.0 - 0.55 * diploe * np.clip(1.0 + mottle, 0.2, 1.8))
    # the vault stops at the skull base: anterior fossa at about -20 mm, the middle fossa deeper at the sides
    # (-38 mm) with the sphenoid body raised in the middle, the posterior fossa lowest (-50 mm)
    base_level = skull_base_level(c, bumps)
    keep = _edge(base_level - z, 2.0 * h)
    bone[sl] = np.maximum(bone[sl], vault_bone * keep)
    brain_region = inner_boundary * keep
    brain[sl] = np.maximum(brain[sl], brain_region)
    scalp = _edge(-(depth + 5.5), h)
    body[sl] = np.maximum(body[sl], scalp)
    # the cranial floor under the brain: a bony plate following base_level
    floor = _edge(z - base_level, h) * _edge(base_level - 4.0 - z, h) * outer
    foramen = np.exp(-((x / 15.0) ** 2) - (((y + 22.0) / 17.0) ** 2))  # foramen magnum
    posterior_thin = 1.0 - 0.4 * _sigmoid((-22.0 - y) / 6.0)  # the occipital floor is thinner than the orbit roofs
    bone[sl] = np.maximum(bone[sl], floor * 0.75 * posterior_thin * (1.0 - np.clip(2.0 * foramen, 0, 1)))
    del x, y, z, depth, thickness, outer, inner_boundary
    del shell, diploe, mottle, vault_bone, base_level, keep, brain_region, scalp, floor, foramen, posterior_thin

    # lateral ventricles: CSF is brain-like for X-rays, drawn at a slightly lower density
    for sign in (-1.0, 1.0):
        fill_ellipsoid(brain, (sign * 11.0, -5.0, 18.0), (6.0, 30.0, 9.0), 0.97, carve=True)

    if version == 1:  # phantom v1, unchanged byte for byte
        # ---------------------------------------------------------------- skull base: petrous ridges, clivus, sella
        for sign in (-1.0, 1.0):
            capsule(bone, (sign * 58.0, -28.0, -36.0), (sign * 16.0, 2.0, -30.0), 11.0 * face, 4.5, 1.25)
            # mastoid process, pneumatised
            fill_ellipsoid(bone, (sign * 55.0, -30.0, -52.0), (9.0, 11.0, 14.0), 0.4)
            # greater wing of the sphenoid: a bony ridge between anterior and middle fossa
            capsule(bone, (sign * 50.0, 35.0, -22.0), (sign * 10.0, 28.0, -26.0), 3.5, 2.5, 1.0)
        capsule(bone, (0.0, 8.0, -28.0), (0.0, -16.0, -60.0), 9.0, 6.0, 0.9)  # clivus
        fill_ellipsoid(bone, (0.0, 18.0, -36.0), (17.0, 16.0, 13.0), 1.0)  # sphenoid body
        fill_ellipsoid(air, (0.0, 19.0, -37.0), (13.0, 12.0, 10.0))  # sphenoid sinus
        fill_ellipsoid(bone, (0.0, 3.0, -27.0), (7.0, 5.0, 4.0), 0.0, carve=True)  # sella turcica

        # ---------------------------------------------------------------- face: maxilla, orbits, sinuses, nose
        def fc(point):
            """A facial landmark scaled by this individual's face width and depth."""
            return np.array(point, np.float32) * np.array([face, face, 1.0], np.float32)

        fill_ellipsoid(body, fc((0.0, 45.0, -60.0)), (58.0 * face, 60.0, 52.0), 1.0)  # facial soft tissue
        fill_ellipsoid(bone, fc((0.0, 50.0, -62.0)), (44.0 * face, 38.0, 30.0), 0.35)  # maxilla, cancellous
        for sign in (-1.0, 1.0):
            # maxillary sinus with a thin bony wall
            centre = fc((sign * 24.0, 55.0, -60.0))
            fill_ellipsoid(bone, centre, (16.5, 20.5, 17.5), 0.6)
            fill_ellipsoid(air, centre, (15.0, 19.0, 16.0))
            # orbit: a cone of orbital fat, apex posterior, with a dense rim at its opening
            apex = fc((sign * 14.0, 22.0, -30.0))
            opening = fc((sign * 33.0, 80.0, -30.0))
            capsule(bone, apex, opening, 6.0, 21.0, 1.0)
            capsule(bone, apex, opening, 3.0, 17.5, 0.0, carve=True)
            capsule(body, apex, opening, 3.0, 17.5, 1.0)
            # zygomatic arch and body
            capsule(bone, fc((sign * 44.0, 62.0, -50.0)), fc((sign * 62.0, 0.0, -40.0)), 4.5, 3.5, 1.0)
            fill_ellipsoid(bone, fc((sign * 45.0, 60.0, -48.0)), (9.0, 10.0, 10.0), 0.9)
            # frontal sinus, inside the thickened frontal bone
            fill_ellipsoid(air, (sign * 11.0 * width, 82.0 * length, 8.0), (11.0, 6.0, 13.0) * np.array(
                [1.0, 1.0, rng.uniform(0.7, 1.3)], np.float32))
            # external ear canal / mastoid air
            fill_ellipsoid(air, (sign * 62.0 * width, -18.0, -38.0), (8.0, 5.0, 5.0))
        # ethmoid air cells between the orbits and the nasal cavity
        fill_ellipsoid(bone, fc((0.0, 50.0, -35.0)), (12.0, 28.0, 14.0), 0.7)
        fill_ellipsoid(air, fc((0.0, 50.0, -35.0)), (11.0, 27.0, 12.0), 0.6)
        fill_ellipsoid(air, fc((0.0, 58.0, -62.0)), (11.0, 30.0, 22.0))  # nasal cavity
        capsule(bone, fc((0.0, 35.0, -40.0)), fc((0.0, 80.0, -70.0)), 1.6, 1.6, 0.8)  # septum
        capsule(body, fc((0.0, 92.0, -45.0)), fc((0.0, 100.0, -72.0)), 7.0, 13.0, 1.0)  # nose
        fill_ellipsoid(air, (0.0, 0.0, -75.0), (12.0, 10.0, 20.0))  # nasopharynx
        capsule(air, (0.0, 5.0, -95.0), (0.0, 12.0, -170.0), 8.0, 8.0, 1.0)  # oropharynx and airway

        # ---------------------------------------------------------------- mandible and teeth
        arch = dental_arch

        # the mandibular body: a swept tube whose lower border descends from the angles to the chin
        mandible_curve = arch(47.0 * face, 82.0 * face, 12.0, 17)
        chin_drop = 12.0 * (1.0 - (mandible_curve[:, 0] / (47.0 * face)) ** 2)
        for i in range(len(mandible_curve) - 1):
            (x0, y0), (x1, y1) = mandible_curve[i], mandible_curve[i + 1]
            d0, d1 = chin_drop[i], chin_drop[i + 1]
            capsule(bone, (x0, y0, -100.0 - 0.3 * d0), (x1, y1, -100.0 - 0.3 * d1), 7.0, 7.0, 1.0)  # alveolar part
            capsule(bone, (x0, y0, -108.0 - d0), (x1, y1, -108.0 - d1), 6.0, 6.0, 1.0)  # basal part, lower border
            capsule(bone, (x0, y0, -104.0 - 0.6 * d0), (x1, y1, -104.0 - 0.6 * d1), 3.5, 3.5, 0.55, carve=True)
            capsule(body, (x0, y0 + 6.0, -104.0 - 0.6 * d0), (x1, y1 + 6.0, -104.0 - 0.6 * d1), 14.0, 14.0, 1.0)
        for sign in (-1.0, 1.0):
            angle = np.array([sign * 47.0 * face, 12.0, -108.0], np.float32)
            condyle = np.array([sign * 52.0 * face, -8.0, -42.0], np.float32)
            capsule(bone, angle, condyle, 6.5, 4.5, 1.0)  # ramus
            capsule(bone, angle + [0, 12.0, 8.0], [sign * 44.0 * face, 25.0, -50.0], 4.0, 3.0, 0.9)  # coronoid
            fill_ellipsoid(bone, condyle, (8.0, 6.0, 5.0), 1.0)
        missing = rng.random(32) < 0.08
        for row, (z_tip, z_root) in enumerate(((-92.0, -74.0), (-94.0, -112.0))):
            for i, (tx, ty) in enumerate(arch(31.0 * face, 76.0 * face, 22.0, 16)):
                if missing[row * 16 + i]:
                    continue
                crown = np.array([tx, ty, z_tip + (z_root - z_tip) * 0.25], np.float32)
                root = np.array([tx, ty - 2.0, z_root], np.float32)
                r = 3.6 if abs(i - 7.5) > 3 else 2.8  # molars are wider than incisors
                capsule(enamel, crown, crown + [0, 0, 0.01], r, r, 1.0)
                capsule(bone, crown, root, r * 0.8, r * 0.45, 1.15)

        # ---------------------------------------------------------------- upper cervical spine and neck
        capsule(body, (0.0, -10.0, -80.0), (0.0, -5.0, -175.0), 52.0, 50.0, 1.0)  # neck
        fill_ellipsoid(body, (0.0, -10.0, -70.0), (58.0, 62.0, 40.0), 1.0)
        atlas_z = -60.0
        for sign in (-1.0, 1.0):  # C1 ring: anterior arch, lateral masses, posterior arch
            capsule(bone, (sign * 2.0, 2.0, atlas_z), (sign * 22.0, -14.0, atlas_z), 4.0, 6.5, 0.9)
            capsule(bone, (sign * 22.0, -14.0, atlas_z), (sign * 4.0, -38.0, atlas_z), 6.5, 3.5, 0.9)
        capsule(bone, (0.0, -8.0, -64.0), (0.0, -8.0, -52.0), 4.5, 4.0, 0.9)  # dens of C2
        level = -70.0
        for vertebra in range(2, 7):
            body_height = 12.0 if vertebra > 2 else 16.0
            top, bottom = level, level - body_height
            capsule(bone, (0.0, -8.0, top - 3.0), (0.0, -8.0, bottom + 3.0), 8.5, 8.5, 0.55)  # vertebral body
            capsule(bone, (0.0, -8.0, top - 1.0), (0.0, -8.0, top - 1.01), 8.0, 8.0, 0.9)  # endplates
            capsule(bone, (0.0, -8.0, bottom + 1.0), (0.0, -8.0, bottom + 1.01), 8.0, 8.0, 0.9)
            for sign in (-1.0, 1.0):
                capsule(bone, (sign * 6.0, -16.0, top - 4.0), (sign * 12.0, -28.0, top - 6.0), 3.5, 3.0, 0.9)  # pedicle
                capsule(bone, (sign * 14.0, -26.0, top - 4.0), (sign * 3.0, -38.0, top - 8.0), 3.0, 2.5, 0.9)  # lamina
            capsule(bone, (0.0, -38.0, top - 8.0), (0.0, -52.0, top - 14.0), 3.0, 2.0, 0.9)  # spinous process
            level = bottom - 4.5  # intervertebral disc
    else:
        _draw_face_and_neck_v2(grid, proportions, seed, ellipsoid, fill_ellipsoid, capsule, body, bone, air)

    # ---------------------------------------------------------------- compose the material densities
    np.clip(bone, 0.0, None, out=bone)
    body = np.maximum(body, np.minimum(bone, 1.0))
    body = np.maximum(body, brain)
    body *= 1.0 - np.clip(air, 0.0, 1.0)
    # fade the neck out towards the bottom of the volume so that its cut leaves no hard edge in projections
    z_fade = np.clip((grid.z - grid.z[0]) / 40.0, 0.0, 1.0)[:, None, None]
    body *= z_fade
    enamel = np.minimum(enamel, body)
    bone_fraction = np.minimum(np.minimum(bone, 1.3), body) * (1.0 - enamel)
    brain_fraction = np.minimum(brain, np.clip(body - np.minimum(bone_fraction, 1.0), 0.0, 1.0))
    soft_fraction = np.clip(body - np.minimum(bone_fraction, 1.0) - brain_fraction - enamel, 0.0, 1.0)

    densities = np.empty(shape + (4,), np.float32)
    densities[..., 0] = soft_fraction * DENSITY["soft_tissue"]
    densities[..., 1] = brain_fraction * DENSITY["brain"]
    densities[..., 2] = bone_fraction * DENSITY["bone"]
    densities[..., 3] = enamel * DENSITY["enamel"]
    return HeadPhantom(densities=densities, voxel_mm=grid.h, seed=seed)


# ------------------------------------------------------------------------------------ phantom v2's face and neck
# phantom v2 redraws v1's face, skull base, mandible and neck (the vault is v1's) where v1 put anatomy in the wrong
# place: the hard palate at the upper molars' root apices (v1's crossed the roots), the sphenoid sinus under the
# sella, the maxillary sinus floor just above the molar roots, the cervical spine lower (the atlas at the palate's
# level, the dens under the basion) with the clivus running from the dorsum sellae down to the foramen magnum
PALATE_Z_V2 = -67.0
MAXILLARY_FLOOR_Z_V2 = -70.5
SPINE_DROP_V2 = 12.0
SPINE_BACK_V2 = 8.0
CLIVUS_V2 = ((0.0, -3.0, -26.0), (0.0, -19.0, -50.0))  # dorsum sellae to basion (capsule axis, mm)


@dataclass(frozen=True)
class SinusLobes:
    """Phantom v2's paranasal sinuses of one head: each sinus a union of ellipsoidal lobes (centre, half-axes) in
    anatomy coordinates, and its seeded size factor. The voxel head carves the union as air; the fine anatomy
    draws a thin cortical wall on every lobe (where lobes overlap, the walls are the septa)."""

    lobes: dict[str, list[tuple[np.ndarray, np.ndarray]]]
    sizes: dict[str, float]


def sinus_lobes(seed: int, proportions: HeadProportions) -> SinusLobes:
    """The seeded sinus lobes of head `seed` (its own random stream, so v1's draws are untouched)."""
    rng = np.random.default_rng([seed, 41])
    sizes = {"frontal": rng.uniform(1.0, 1.35), "sphenoid": rng.uniform(1.0, 1.25), "maxillary": rng.uniform(1.0, 1.2)}
    face, width, length = proportions.face, proportions.width, proportions.length
    f, s, m = sizes["frontal"], sizes["sphenoid"], sizes["maxillary"]
    lobes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"frontal": [], "sphenoid": [], "maxillary": []}
    for sign in (-1.0, 1.0):
        # frontal: a tall medial lobe just above the nasion, a lower lateral one and an upper scallop, each
        # jittered, so the upper border is scalloped and septa cross the cavity
        dx, _, dz = rng.uniform(-1.0, 1.0, (3, 3)).T  # per lobe: sideways and vertical jitter
        lobes["frontal"] += [
            (np.array([sign * (6.0 + dx[0]) * width, 84.0 * length, -6.0 + 9.0 * (f - 1.0) + 2.0 * dz[0]]),
             np.array([6.5, 5.5, 12.0 * f])),
            (np.array([sign * (15.0 + 2.0 * dx[1]) * width * f**0.5, 83.0 * length, -9.0 + 2.0 * dz[1]]),
             np.array([7.5 * f**0.5, 4.5, 8.0 * f])),
            (np.array([sign * (10.0 + 2.0 * dx[2]) * width, 84.0 * length, 5.0 + 10.0 * (f - 1.0) + 3.0 * dz[2]]),
             np.array([5.0, 4.5, 7.0 * f**0.5])),
        ]
        # maxillary: each side its own size (the two outlines never superimpose exactly) and an alveolar recess
        # dipping towards the molar roots, so the outline is a rounded box with its floor just above the roots
        side = m * rng.uniform(0.92, 1.0)
        centre_z = MAXILLARY_FLOOR_Z_V2 + 2.0 + 11.5 * side
        recess_y = 50.0 * face + rng.uniform(-2.0, 2.0)
        lobes["maxillary"] += [
            (np.array([sign * 24.0 * face, 54.0 * face, centre_z]), np.array([14.0, 17.0, 11.5]) * side),
            (np.array([sign * 25.0 * face, recess_y, MAXILLARY_FLOOR_Z_V2 + 6.0]), np.array([11.0, 13.0 * side, 6.0])),
        ]
    # sphenoid: under the sella, in front of the clivus; two lobes of unequal size (the septum off the midline)
    side = rng.choice((-1.0, 1.0))
    lobes["sphenoid"] += [(np.array([side * 3.0, 13.0, -43.0]), np.array([11.0, 12.0, 9.5]) * [s, s, s**0.5]),
                          (np.array([-side * 6.0, 19.0, -45.0]), np.array([7.0, 8.0, 7.0]) * s**0.5)]
    return SinusLobes(lobes, sizes)


def _draw_face_and_neck_v2(grid: _Grid, proportions: HeadProportions, seed: int, ellipsoid, fill_ellipsoid, capsule,
                           body: np.ndarray, bone: np.ndarray, air: np.ndarray) -> None:
    """Phantom v2's skull base, face, mandible and neck into the voxel head (see PALATE_Z_V2 and above)."""
    face, width = proportions.face, proportions.width

    def fc(point):
        return np.array(point, np.float32) * np.array([face, face, 1.0], np.float32)

    # skull base: petrous pyramids, mastoids and greater wings as in v1; the clivus from the dorsum sellae to the
    # basion; the sphenoid body around its sinus, the sella carved into its top
    for sign in (-1.0, 1.0):
        capsule(bone, (sign * 58.0, -28.0, -36.0), (sign * 16.0, 2.0, -30.0), 11.0 * face, 4.5, 1.25)
        fill_ellipsoid(bone, (sign * 55.0, -30.0, -52.0), (9.0, 11.0, 14.0), 0.7)  # mastoid (cells: fine)
        capsule(bone, (sign * 50.0, 35.0, -22.0), (sign * 10.0, 28.0, -26.0), 3.5, 2.5, 1.0)
    capsule(bone, CLIVUS_V2[0], CLIVUS_V2[1], 7.0, 5.0, 0.9)
    fill_ellipsoid(bone, (0.0, 14.0, -40.0), (17.0, 15.0, 12.0), 0.8)  # sphenoid body
    fill_ellipsoid(bone, (0.0, 3.0, -27.0), (7.0, 5.0, 4.0), 0.0, carve=True)  # sella turcica
    # the glabella: the frontal bone thickens and bulges forwards over the nasion (under its scalp), and the
    # frontal sinus is carved into it, in front of where the forehead's curve meets the rays tangentially
    length = proportions.length
    fill_ellipsoid(body, (0.0, 83.0 * length, -8.0), (27.0 * width, 13.0, 22.0), 1.0)
    fill_ellipsoid(bone, (0.0, 83.0 * length, -8.0), (24.0 * width, 8.5, 19.0), 0.9)
    sinuses = sinus_lobes(seed, proportions)
    for lobes in sinuses.lobes.values():
        for centre, axes in lobes:
            fill_ellipsoid(air, centre, axes)

    # face: the maxilla's body above the palate and its alveolar process around the upper roots, thin-walled
    # orbital cones (their walls seen edge-on give the roof and floor; the rims are fine anatomy), the zygoma
    fill_ellipsoid(body, fc((0.0, 45.0, -60.0)), (58.0 * face, 60.0, 52.0), 1.0)  # facial soft tissue
    fill_ellipsoid(bone, fc((0.0, 50.0, -54.0)), (44.0 * face, 36.0, 15.0), 0.3)
    upper = dental_arch(31.0 * face, 74.0 * face, 22.0, 9)
    for (x0, y0), (x1, y1) in zip(upper[:-1], upper[1:]):
        capsule(bone, (x0, y0, -73.0), (x1, y1, -73.0), 6.0, 6.0, 0.45)
        capsule(bone, (x0, y0, -78.5), (x1, y1, -78.5), 4.5, 4.5, 0.45)
    for sign in (-1.0, 1.0):
        apex = fc((sign * 14.0, 22.0, -30.0))
        opening = fc((sign * 33.0, 80.0, -30.0))
        capsule(bone, apex, opening, 4.5, 19.0, 0.55)
        capsule(bone, apex, opening, 3.0, 17.5, 0.0, carve=True)
        # the opening is open: the cone's rounded end is cut away, leaving a short ring (the orbital margin)
        ahead = opening + 25.0 * (opening - apex) / np.linalg.norm(opening - apex)
        capsule(bone, opening, ahead, 17.5, 17.5, 0.0, carve=True)
        capsule(body, apex, opening, 3.0, 17.5, 1.0)
        capsule(bone, fc((sign * 44.0, 62.0, -50.0)), fc((sign * 62.0, 0.0, -40.0)), 4.5, 3.5, 1.0)  # zygomatic arch
        fill_ellipsoid(bone, fc((sign * 45.0, 60.0, -50.0)), (9.0, 10.0, 9.0), 0.8)  # zygoma's body
        fill_ellipsoid(air, (sign * 62.0 * width, -18.0, -38.0), (8.0, 5.0, 5.0))  # external ear canal
    fill_ellipsoid(bone, fc((0.0, 50.0, -35.0)), (12.0, 28.0, 14.0), 0.7)  # ethmoid
    fill_ellipsoid(air, fc((0.0, 50.0, -35.0)), (11.0, 27.0, 12.0), 0.6)
    fill_ellipsoid(air, fc((0.0, 58.0, -49.0)), (11.0, 30.0, 17.5))  # nasal cavity, its floor on the palate
    capsule(body, fc((0.0, 92.0, -45.0)), fc((0.0, 100.0, -67.0)), 7.0, 10.0, 1.0)  # nose, its tip over the lip
    fill_ellipsoid(body, fc((0.0, 92.0, -70.0)), (14.0 * face, 8.0, 7.0), 1.0)  # alae and columella
    # the soft-tissue profile below the nose: upper and lower lips meeting at the stomion, the labiomental fold,
    # the soft-tissue chin (v1's face ends in a rounded tube around the mandible)
    fill_ellipsoid(body, fc((0.0, 72.0, -96.0)), (40.0 * face, 20.0, 20.0), 1.0)  # cheeks and the mouth
    fill_ellipsoid(body, fc((0.0, 89.0, -84.5)), (24.0 * face, 9.5, 10.0), 1.0)  # upper lip
    fill_ellipsoid(body, fc((0.0, 87.5, -100.5)), (22.0 * face, 9.0, 8.5), 1.0)  # lower lip
    fill_ellipsoid(body, fc((0.0, 86.5, -120.0)), (20.0 * face, 10.0, 11.5), 1.0)  # soft-tissue chin
    fill_ellipsoid(air, (0.0, 10.0, -72.0), (10.0, 7.0, 14.0))  # nasopharynx, in front of the atlas
    capsule(air, (0.0, 6.0, -92.0), (0.0, 9.0, -170.0), 6.5, 6.5, 1.0)  # oropharynx and airway

    # mandible: v1's body with its alveolar crest under the lower teeth's necks; the ramus a plate from the angle
    # (gonion) up to the condyle (in front of the ear) and the coronoid, the sigmoid notch between them
    curve = dental_arch(47.0 * face, 82.0 * face, 12.0, 17)
    drop = 12.0 * (1.0 - (curve[:, 0] / (47.0 * face)) ** 2)
    for i in range(len(curve) - 1):
        (x0, y0), (x1, y1) = curve[i], curve[i + 1]
        d0, d1 = drop[i], drop[i + 1]
        capsule(bone, (x0, y0, -105.0 - 0.3 * d0), (x1, y1, -105.0 - 0.3 * d1), 6.0, 6.0, 0.9)  # alveolar part
        capsule(bone, (x0, y0, -108.0 - d0), (x1, y1, -108.0 - d1), 6.0, 6.0, 1.0)  # basal part, lower border
        capsule(bone, (x0, y0, -105.0 - 0.6 * d0), (x1, y1, -105.0 - 0.6 * d1), 3.5, 3.5, 0.55, carve=True)
        capsule(body, (x0, y0 + 6.0, -104.0 - 0.6 * d0), (x1, y1 + 6.0, -104.0 - 0.6 * d1), 14.0, 14.0, 1.0)
    for sign in (-1.0, 1.0):
        for u in np.linspace(0.0, 1.0, 8):
            low = np.array([sign * (47.0 - 2.0 * u) * face, 10.0 + 20.0 * u, -110.0 + 10.0 * u], np.float32)
            high = np.array([sign * (51.0 - 6.0 * u) * face, -6.0 + 30.0 * u, -50.0 - 12.0 * np.sin(np.pi * u)
                             - 2.0 * u], np.float32)
            capsule(bone, low, high, 2.6, 2.2, 0.85)
        fill_ellipsoid(bone, (sign * 52.0 * face, -8.0, -45.0), (8.0, 5.5, 4.5), 1.0)  # condyle

    # cervical spine, SPINE_DROP_V2 lower and SPINE_BACK_V2 further back than v1's (behind the ramus, the airway
    # between them): C1 (anterior arch in front of the dens, lateral masses, a slender posterior arch), the dens,
    # C2-C6 with a cortical rim on each body
    fill_ellipsoid(body, (0.0, -15.0, -70.0), (58.0, 62.0, 40.0), 1.0)
    capsule(body, (0.0, -15.0, -80.0), (0.0, -10.0, -175.0), 52.0, 50.0, 1.0)
    y0 = -8.0 - SPINE_BACK_V2  # the vertebral bodies' axis
    atlas_z = -60.0 - SPINE_DROP_V2
    capsule(bone, (-4.0, y0 + 10.0, atlas_z), (4.0, y0 + 10.0, atlas_z), 3.5, 3.5, 1.0)  # anterior arch
    for sign in (-1.0, 1.0):
        capsule(bone, (sign * 3.0, y0 + 10.0, atlas_z), (sign * 18.0, y0 - 2.0, atlas_z), 3.0, 3.0, 0.6)
        capsule(bone, (sign * 20.0, y0 - 4.0, atlas_z - 6.0), (sign * 20.0, y0 - 4.0, atlas_z + 5.0), 6.0, 6.0, 0.6)
        capsule(bone, (sign * 20.0, y0 - 8.0, atlas_z), (sign * 4.0, y0 - 30.0, atlas_z), 3.0, 2.5, 0.6)
    capsule(bone, (0.0, y0 - 30.0, atlas_z), (0.0, y0 - 34.0, atlas_z), 3.5, 3.5, 0.8)  # posterior tubercle
    capsule(bone, (0.0, y0, atlas_z - 4.0), (0.0, y0, atlas_z + 8.0), 4.5, 4.0, 0.9)  # dens of C2
    level = -70.0 - SPINE_DROP_V2
    for vertebra in range(2, 7):
        body_height = 12.0 if vertebra > 2 else 16.0
        top, bottom = level, level - body_height
        capsule(bone, (0.0, y0, top - 3.0), (0.0, y0, bottom + 3.0), 8.5, 8.5, 1.0)  # cortex
        capsule(bone, (0.0, y0, top - 3.0), (0.0, y0, bottom + 3.0), 7.3, 7.3, 0.6, carve=True)
        capsule(bone, (0.0, y0, top - 1.0), (0.0, y0, top - 1.01), 8.0, 8.0, 1.1)  # endplates
        capsule(bone, (0.0, y0, bottom + 1.0), (0.0, y0, bottom + 1.01), 8.0, 8.0, 1.1)
        for sign in (-1.0, 1.0):
            # pedicle, articular pillar (the facets stack into a column behind the bodies), lamina
            capsule(bone, (sign * 6.0, y0 - 8.0, top - 4.0), (sign * 12.0, y0 - 16.0, top - 6.0), 3.0, 2.5, 0.7)
            capsule(bone, (sign * 20.0, y0 - 15.0, top + 1.0), (sign * 20.0, y0 - 18.0, bottom - 2.0), 4.5, 4.5, 0.6)
            capsule(bone, (sign * 18.0, y0 - 20.0, top - 5.0), (sign * 3.0, y0 - 30.0, top - 9.0), 2.5, 2.0, 0.6)
        capsule(bone, (0.0, y0 - 30.0, top - 9.0), (0.0, y0 - 42.0, top - 16.0), 2.5, 1.8, 0.7)  # spinous process
        level = bottom - 4.5


def catheter_path(seed: int, points: int = 60) -> np.ndarray:
    """A seeded catheter/guidewire course in isocenter coordinates (mm), (points, 3): up the left common and
    internal carotid artery from the neck, through the carotid siphon, into the middle cerebral artery."""
    rng = np.random.default_rng([seed, 7919])
    side = 1.0 if rng.random() < 0.5 else -1.0
    # control points in anatomy coordinates: neck, cervical ICA, petrous, siphon, terminal ICA, M1
    control = np.array([
        [22.0, 10.0, -175.0],
        [24.0, 2.0, -120.0],
        [22.0, -5.0, -75.0],
        [18.0, 0.0, -48.0],
        [16.0, 14.0, -36.0],
        [15.0, 8.0, -20.0],
        [28.0, 6.0, -14.0],
        [45.0, 4.0, -8.0],
    ])
    control[:, 0] *= side
    control += rng.normal(0.0, 2.5, size=control.shape)
    # smooth the course: linear interpolation of the control points followed by a moving average
    t = np.linspace(0.0, 1.0, len(control))
    fine = np.linspace(0.0, 1.0, points * 4)
    path = np.stack([np.interp(fine, t, control[:, i]) for i in range(3)], axis=1)
    kernel = np.ones(9) / 9.0
    padded = np.concatenate([np.repeat(path[:1], 4, 0), path, np.repeat(path[-1:], 4, 0)])
    smooth = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(3)], axis=1)
    return (smooth[::4] - _HEAD_CENTRE).astype(np.float32)
