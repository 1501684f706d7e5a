"""Projector geometry and X-ray physics sanity."""

from __future__ import annotations

import numpy as np
import pytest

from xdigiskull.phantom import STANDARD_VIEWS, HeadPhantom, cone_beam, make_head
from xdigiskull.phantom.geometry import pose_views
from xdigiskull.phantom.physics import ACQUISITIONS, real_transmission, synthetic_attenuation
from xdigiskull.phantom.projector import project, tube_chord_mm

VOXELS = 64
EXTENT = 256.0


def _cube_head() -> HeadPhantom:
    return HeadPhantom(np.zeros((VOXELS, VOXELS, VOXELS, 4), np.float32), EXTENT / VOXELS, seed=0)


def _axis() -> np.ndarray:
    h = EXTENT / VOXELS
    return (np.arange(VOXELS) + 0.5) * h - EXTENT / 2


@pytest.mark.parametrize("primary,secondary", [(0, 0), (90, 0), (30, 0), (0, 30), (45, 15), (-20, -35)])
def test_projector_puts_a_point_where_the_geometry_says(primary: float, secondary: float) -> None:
    head = _cube_head()
    axis = _axis()
    point = np.array([40.0, 20.0, 60.0])
    ix, iy, iz = (int(np.argmin(np.abs(axis - c))) for c in point)
    head.densities[iz - 1:iz + 2, iy - 1:iy + 2, ix - 1:ix + 2, 2] = 1.0
    beam = cone_beam(primary, secondary)
    grid, side = 200, 400.0
    thickness = project(head, beam, grid, side)
    weights = thickness[..., 2] / thickness[..., 2].sum()
    rows, cols = np.mgrid[0:grid, 0:grid]
    row, col = (weights * rows).sum(), (weights * cols).sum()  # centroid of the marker's shadow
    expected = beam.project(np.array([axis[ix], axis[iy], axis[iz]])) / (side / grid) + (grid - 1) / 2
    assert abs(col - expected[0]) <= 1.0 and abs(row - expected[1]) <= 1.0


def test_projector_line_integral_of_a_water_slab() -> None:
    """A ~100 mm block of density 1 g/cm^3: its thickness in cm, in g/cm^2, along the central ray."""
    head = _cube_head()
    axis = _axis()
    inside = np.abs(axis) < 50.0
    head.densities[np.ix_(inside, inside, inside)] = 0.0
    head.densities[np.ix_(inside, inside, inside, [0])] = 1.0
    for primary in (0.0, 90.0):
        thickness = project(head, cone_beam(primary, 0.0), 101, 400.0)
        assert thickness[50, 50, 0] == pytest.approx(inside.sum() * EXTENT / VOXELS / 10.0, rel=0.01)
        assert thickness[0, 0, 0] == 0.0
        assert np.all(thickness[..., 1:] == 0.0)


def test_more_bone_transmits_less_and_hardens_the_beam() -> None:
    bone = np.linspace(0.0, 6.0, 13, dtype=np.float32)
    thickness = np.zeros((1, bone.size, 4), np.float32)
    thickness[..., 0] = 15.0  # soft tissue under all of them
    thickness[0, :, 2] = bone
    for acquisition in ACQUISITIONS.values():
        transmission, quanta = real_transmission(thickness, acquisition)
        assert quanta > 0
        assert np.all(np.diff(transmission[0]) < 0)
        # beam hardening: each further cm of bone removes a smaller fraction than the previous one
        log_t = -np.log(transmission[0])
        assert np.all(np.diff(log_t, 2) < 1e-6)
        assert np.diff(log_t)[-1] < 0.9 * np.diff(log_t)[0]
    synthetic = synthetic_attenuation(thickness)[0]
    assert np.all(np.diff(synthetic) > 0)
    # monoenergetic: exactly linear in the bone thickness
    assert np.allclose(np.diff(synthetic, 2), 0.0, atol=1e-4)


def test_head_phantom_is_seeded_and_plausible() -> None:
    a = make_head(seed=1, voxels=64)
    b = make_head(seed=1, voxels=64)
    c = make_head(seed=2, voxels=64)
    assert np.array_equal(a.densities, b.densities)
    assert not np.array_equal(a.densities, c.densities)
    soft, brain, bone, enamel = (a.densities[..., i] for i in range(4))
    assert bone.max() > 1.5 and brain.max() > 0.9 and enamel.max() > 0.5
    voxel_cm3 = (a.voxel_mm / 10.0) ** 3
    brain_cm3 = (brain / 1.04).sum() * voxel_cm3
    assert 900 < brain_cm3 < 2000  # an adult brain and CSF: about 1.2-1.6 litres
    with pytest.raises(ValueError, match="voxels"):
        make_head(voxels=8)


def test_views_cover_the_standard_set() -> None:
    names = {view.name for view in STANDARD_VIEWS}
    assert {"ap", "lateral", "towne", "waters"} <= names
    assert any(view.primary not in (0.0, 90.0, -90.0) for view in STANDARD_VIEWS)  # obliques
    poses = pose_views(25, np.random.default_rng(0))
    assert len(poses) == 25 and poses[: len(STANDARD_VIEWS)] == list(STANDARD_VIEWS)
    assert len({(p.primary, p.secondary) for p in poses}) == 25


def test_catheter_chord_is_thin_and_on_its_path() -> None:
    path = np.array([[0.0, 0.0, -100.0], [0.0, 0.0, 100.0]], np.float32)
    beam = cone_beam(0.0, 0.0)
    chord = tube_chord_mm(path, beam, 512, 400.0, diameter_mm=2.0)
    assert chord.max() == pytest.approx(2.0, rel=0.15)
    column = chord[256]
    assert np.count_nonzero(column) <= 12  # 2 mm x 1.5 magnification over 0.78 mm pixels, both sides
    assert chord[:, :200].max() == 0.0
