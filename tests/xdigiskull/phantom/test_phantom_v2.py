"""Phantom v2: fine anatomy as one 3D object, its labels (landmarks, bone mask), the detector model and the edge
test object. Spectral slopes and MTF50 at full size are measured by scripts (measure_phantom_texture.py,
measure_mtf.py), not here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from xdigiskull.cli import app
from xdigiskull.phantom import generate_exports
from xdigiskull.phantom.anatomy import _HEAD_CENTRE as HEAD_CENTRE
from xdigiskull.phantom.anatomy import draw_proportions, make_head, sinus_lobes
from xdigiskull.phantom.export import MANIFEST_COLUMNS, MANIFEST_COLUMNS_V2
from xdigiskull.phantom.fine_anatomy import LANDMARKS, TABLE_LAYERS, make_fine_anatomy
from xdigiskull.phantom.fine_projector import project_fine, project_points
from xdigiskull.phantom.geometry import DETECTOR_SIDE_MM, cone_beam
from xdigiskull.phantom.physics_v2 import detector_transfer, predicted_mtf, predicted_mtf50

DETECTOR = 256


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AP and lateral of phantom v2, simulator at the real angles (no jitter)."""
    out = tmp_path_factory.mktemp("v2") / "raw"
    return generate_exports(out, views=2, seed=4, detector=DETECTOR, frames=1, jitter_deg=0.0, version=2,
                            progress=False)


def test_manifest_carries_landmarks_and_bone_mask(v2_run: Path) -> None:
    with open(v2_run / "manifest.csv", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == MANIFEST_COLUMNS_V2
    rows = _rows(v2_run)
    assert len(rows) == 10
    for row in rows:
        marks = json.loads(row["landmarks"])
        assert list(marks) == list(LANDMARKS)
        assert all(len(value) == 3 and value[2] in (0, 1) for value in marks.values())
        mask = cv2.imread(str(v2_run / row["bone_mask"]), cv2.IMREAD_GRAYSCALE)
        truth = cv2.imread(str(v2_run / "ground_truth" / f"{row['pair_id']}_{row['class']}.png"),
                           cv2.IMREAD_UNCHANGED)
        assert mask.shape == truth.shape  # the mask is drawn in the ground truth's frame
        assert set(np.unique(mask)) == {0, 255}
        assert 0.2 < (mask > 0).mean() < 0.9  # bone covers part of the field, not all of it


def test_landmarks_are_the_same_anatomy_in_every_class(v2_run: Path) -> None:
    rows = _rows(v2_run)
    for pair_id in {row["pair_id"] for row in rows}:
        pose = [row for row in rows if row["pair_id"] == pair_id]
        assert len({row["landmarks"] for row in pose}) == 1  # same pose, same coordinates in all five classes
        marks = json.loads(pose[0]["landmarks"])
        assert all(visible for _, _, visible in marks.values())  # the head is in the field
        if pose[0]["view"] != "lateral":
            continue
        for row in pose:
            truth = cv2.imread(str(v2_run / "ground_truth" / f"{pair_id}_{row['class']}.png"),
                               cv2.IMREAD_UNCHANGED).astype(np.float64)

            def value(name: str) -> float:
                x, y, _ = (int(round(v)) for v in marks[name])
                return float(truth[y - 1:y + 2, x - 1:x + 2].mean())

            # in every class the incisor's tip (enamel) is far brighter than the upper lip in front of it
            assert value("incision_superius") > value("upper_lip") + 0.1 * 65535, row["class"]


def test_lateral_landmarks_are_in_anatomical_order(v2_run: Path) -> None:
    lateral = next(row for row in _rows(v2_run) if row["view"] == "lateral")
    marks = {name: np.array(value[:2]) for name, value in json.loads(lateral["landmarks"]).items()}
    # image rows grow downwards: sella above the incisors above menton; nasion in front of (left of) sella
    assert marks["sella"][1] < marks["incision_superius"][1] < marks["menton"][1]
    assert marks["nasion"][0] < marks["sella"][0]
    assert marks["porion"][0] > marks["sella"][0]  # the ear is behind the sella
    assert marks["upper_lip"][0] < marks["incision_superius"][0]  # the lip is in front of the teeth


def test_fine_anatomy_is_one_object_per_seed() -> None:
    head = make_head(2, voxels=64, version=2)
    first, second = make_fine_anatomy(head), make_fine_anatomy(head)
    assert np.array_equal(first.blobs[0].centres, second.blobs[0].centres)
    assert all(np.array_equal(a, b) for a, b in zip(first.suture_courses["coronal"], second.suture_courses["coronal"]))
    other = make_fine_anatomy(make_head(3, voxels=64, version=2))
    assert not np.allclose(first.suture_courses["coronal"][0][:50], other.suture_courses["coronal"][0][:50])
    # two views of the same head see the same enamel mass (a projection keeps mass, up to magnification)
    pitch = DETECTOR_SIDE_MM / DETECTOR
    masses = []
    for primary in (0.0, 90.0):
        beam = cone_beam(primary, 0.0)
        bone = project_fine(first, beam, DETECTOR, DETECTOR_SIDE_MM)[..., 3]  # enamel: the teeth only
        depth = (first.ellipsoids.centres.mean(axis=0) - beam.source) @ beam.direction
        masses.append(bone.sum() * (pitch * depth / beam.source_to_detector_mm) ** 2)  # back to the teeth's plane
    assert masses[0] > 0
    assert masses[1] == pytest.approx(masses[0], rel=0.05)


def test_detector_transfer_is_the_predicted_mtf() -> None:
    pitch = 0.39
    edge = np.zeros((64, 256), np.float32)
    edge[:, 128:] = 1.0
    blurred = detector_transfer(edge, pitch, 0.0)[32]
    lsf = np.diff(blurred)[64:192]
    mtf = np.abs(np.fft.rfft(lsf))
    mtf /= mtf[0]
    freqs = np.fft.rfftfreq(len(lsf), pitch)
    band = (freqs > 0.1) & (freqs < 1.2)
    # a point-sampled step differentiates to a single pixel, so the line spread is the detector's own kernel
    assert np.allclose(mtf[band], predicted_mtf(freqs[band], pitch), atol=0.02)
    assert predicted_mtf50(0.15) == pytest.approx(1.29, abs=0.01)  # the published CsI figure it is built on
    assert predicted_mtf50(400 / 1024) == pytest.approx(1.0, rel=0.05)


def test_edge_test_object_in_every_class(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "edge"), "--detector", str(DETECTOR), "--frames",
                                      "2", "--test-object", "edge", "--phantom-version", "2"])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "edge")
    assert [row["class"] for row in rows] == ["real_low", "real_normal", "real_exposure", "synthetic_low",
                                                "synthetic_high"]
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    ds = pydicom.dcmread(tmp_path / "edge" / rows[0]["file"])
    field = ds.pixel_array.mean(axis=0)[ds.ShutterUpperHorizontalEdge - 1:ds.ShutterLowerHorizontalEdge,
                                        ds.ShutterLeftVerticalEdge - 1:ds.ShutterRightVerticalEdge]
    side = field.shape[1]
    open_beam, plate = field[:, : side // 3].mean(), field[:, -side // 3:].mean()
    assert 3000 < open_beam < 4095  # "for processing": linear, the open beam near 100 + 3500
    assert plate < 150  # 1 mm of tungsten stops nearly everything
    # the edge is slanted: its column moves along the rows
    columns = [np.argmax(np.abs(np.diff(field[r]))) for r in (10, field.shape[0] - 10)]
    assert columns[0] != columns[1]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_v2_same_seed_same_bytes_and_reruns_replace_it(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    generate_exports(out, views=2, seed=1, detector=128, frames=1, version=2, workers=2, progress=False)
    again = generate_exports(tmp_path / "again", views=2, seed=1, detector=128, frames=1, version=2, workers=1,
                             progress=False)
    assert _tree(out) == _tree(again)
    masks = sorted((out / "labels").iterdir())
    assert len(masks) == 2
    generate_exports(out, views=2, seed=1, detector=128, frames=1, version=1, progress=False)  # v1 over v2: replaced
    assert not any((out / "labels").iterdir())
    with open(out / "manifest.csv", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == MANIFEST_COLUMNS
    with pytest.raises(ValueError, match="version"):
        generate_exports(tmp_path / "bad", views=1, detector=128, version=3, progress=False)


def _vault_only(fine, kind: str):
    """A copy of the fine anatomy with only its clouds of blobs of one width (tables) or its ellipsoids."""
    from dataclasses import replace

    if kind == "tables":
        widths = {sigma for _, _, sigma in TABLE_LAYERS}  # the tables' and the diploe's layers (no texture)
        return replace(fine, blobs=[b for b in fine.blobs if b.sigma_mm in widths], tubes=[], ellipsoids=None)
    return replace(fine, blobs=[], tubes=[])


def test_vault_tables_are_crisp_shells_on_the_vault() -> None:
    head = make_head(5, voxels=64, version=2)
    tables = _vault_only(make_fine_anatomy(head), "tables")
    grid = 1024  # 0.39 mm, the export pitch
    image = project_fine(tables, cone_beam(0.0, 0.0), grid, DETECTOR_SIDE_MM)[..., 2]  # AP: the sides tangential
    row = image[grid // 2 - 60]  # through the parietal vault, above the skull base
    left = int(np.flatnonzero(row > 0.02 * row.max())[0])
    outer = left + int(np.flatnonzero(np.diff(row[left:left + 40]) < 0)[0])  # the first peak: the outer table
    # the tangent rays through the outer table: it rises from 10 % to 90 % of its peak within 1.2 mm (3 pixels)
    rise = np.flatnonzero(row[left:outer + 1] > 0.1 * row[outer])[0], np.flatnonzero(row[left:outer + 1] > 0.9 * row[outer])[0]
    assert (rise[1] - rise[0]) * DETECTOR_SIDE_MM / grid <= 1.2
    # then the inner table's peak, past the diploe (where the tables' mass was taken out), a dip between them
    inner = outer + 6 + int(np.argmax(row[outer + 6:outer + 60]))
    assert row[inner] > 0.5 * row[outer]
    assert row[outer + 1:inner].min() < 0.5 * min(row[outer], row[inner])
    thickness_mm = (inner - outer) * DETECTOR_SIDE_MM / grid / cone_beam(0.0, 0.0).magnification
    assert 3.0 < thickness_mm < 12.0  # the vault's thickness, about 6 mm over the parietal bone


def test_sinus_size_varies_by_seed_and_is_air_in_the_head() -> None:
    sizes, volumes = [], []
    grid = np.stack(np.meshgrid(*[np.linspace(-40.0, 40.0, 81)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    for seed in (0, 1, 2, 3):
        head = make_head(seed, voxels=96, version=2)
        sinuses = sinus_lobes(seed, draw_proportions(np.random.default_rng(seed)))
        if seed == 0:  # the fine anatomy (seconds per head) draws the walls on the same lobes
            assert make_fine_anatomy(head).sinus_sizes == sinuses.sizes
        assert all(1.0 <= s <= 1.45 for s in sinuses.sizes.values())
        # the voxel head holds air (no tissue) in the middle of every lobe
        for lobes in sinuses.lobes.values():
            for centre, _ in lobes:
                index = np.floor((centre - HEAD_CENTRE) / head.voxel_mm + head.voxels / 2).astype(int)
                assert head.densities[index[2], index[1], index[0]].sum() < 0.35, (seed, centre)
        # the frontal sinus's volume (the union of its lobes, mm^3 on a 1 mm grid)
        frontal = sinuses.lobes["frontal"]
        middle = np.mean([c for c, _ in frontal], axis=0)
        inside = np.zeros(len(grid), bool)
        for centre, axes in frontal:
            inside |= (((grid + middle - centre) / axes) ** 2).sum(axis=1) <= 1.0
        sizes.append(sinuses.sizes["frontal"])
        volumes.append(int(inside.sum()))
    assert len(set(np.round(sizes, 3))) == 4
    # the lobes' seeded jitter changes their overlap, so only the extremes are ordered for sure
    assert volumes[int(np.argmax(sizes))] > 1.05 * volumes[int(np.argmin(sizes))]
