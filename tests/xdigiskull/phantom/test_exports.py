"""The raw-export layout, the DICOM headers and pixels, the simulator captures and the ground truth."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from xdigiskull.classes import CLASS_NAMES
from xdigiskull.phantom import MANIFEST_COLUMNS, generate_exports, planted_identifiers
from xdigiskull.phantom.appearance import SCREEN_MARGIN_RGB

VIEWS = 3
FRAMES = 3
DETECTOR = 256


@pytest.fixture(scope="module")
def phantom_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small phantom run shared by these tests (3 poses: AP, lateral, Towne; with a catheter)."""
    out = tmp_path_factory.mktemp("phantom") / "raw"
    # phantom v1: the export format is the same in both versions, v2's own checks are in test_phantom_v2.py
    return generate_exports(out, views=VIEWS, seed=3, detector=DETECTOR, frames=FRAMES, catheter=True,
                            progress=False, version=1)


def read_manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
        return list(reader)


def shutter_field(ds: pydicom.Dataset) -> tuple[slice, slice]:
    return (slice(ds.ShutterUpperHorizontalEdge - 1, ds.ShutterLowerHorizontalEdge),
            slice(ds.ShutterLeftVerticalEdge - 1, ds.ShutterRightVerticalEdge))


def simulator_field(path: Path) -> np.ndarray:
    """The grey field of a simulator capture (RGB, uniform margin), as uint8."""
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    inside = np.any(rgb != np.array(SCREEN_MARGIN_RGB, np.uint8), axis=2)
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    field = rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # the margin is uniform and the field is grey
    margin = rgb[~np.pad(np.ones(field.shape[:2], bool), ((rows[0], rgb.shape[0] - rows[-1] - 1),
                                                         (cols[0], rgb.shape[1] - cols[-1] - 1)))]
    assert margin.size > 0 and np.all(margin == np.array(SCREEN_MARGIN_RGB, np.uint8))
    assert np.array_equal(field[..., 0], field[..., 1]) and np.array_equal(field[..., 0], field[..., 2])
    return field[..., 0]


def test_layout_and_manifest(phantom_out: Path) -> None:
    rows = read_manifest(phantom_out)
    assert len(rows) == 5 * VIEWS
    by_pair: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        path = phantom_out / row["file"]
        assert path.is_file(), row["file"]
        assert "\\" not in row["file"] and not Path(row["file"]).is_absolute()
        domain, dose = row["class"].split("_", 1)
        folder = {"synthetic": "simulator", "real": "azurion"}[domain]
        assert Path(row["file"]).parts[:2] == (folder, dose)
        assert path.suffix == (".png" if domain == "synthetic" else ".dcm")
        assert int(row["frames"]) == (1 if domain == "synthetic" else FRAMES)
        float(row["primary_angle"]), float(row["secondary_angle"])
        by_pair[row["pair_id"]].add(row["class"])
    assert len(by_pair) == VIEWS
    assert all(classes == set(CLASS_NAMES) for classes in by_pair.values())
    assert [row["view"] for row in rows[::5]] == ["ap", "lateral", "towne"]
    for pair_id in by_pair:
        for name in CLASS_NAMES:
            truth = cv2.imread(str(phantom_out / "ground_truth" / f"{pair_id}_{name}.png"), cv2.IMREAD_UNCHANGED)
            assert truth is not None and truth.dtype == np.uint16 and truth.ndim == 2
            assert truth.shape[0] == truth.shape[1]
    assert not list(phantom_out.rglob("*.tmp"))


def test_dicom_headers_and_pixels(phantom_out: Path) -> None:
    rows = [row for row in read_manifest(phantom_out) if row["class"].startswith("real")]
    planted = planted_identifiers(3)
    syntaxes = set()
    kvps = {}
    for row in rows:
        ds = pydicom.dcmread(phantom_out / row["file"])
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        assert ds.Modality == "XA"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.12.1"
        assert ds.Manufacturer and ds.ManufacturerModelName
        assert float(ds.PositionerPrimaryAngle) == pytest.approx(float(row["primary_angle"]))
        assert float(ds.PositionerSecondaryAngle) == pytest.approx(float(row["secondary_angle"]))
        assert float(ds.DistanceSourceToDetector) == pytest.approx(1200.0)
        assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(400.0 / DETECTOR, rel=1e-4)
        assert ds.XRayTubeCurrent > 0 and ds.ExposureTime > 0 and float(ds.FrameTime) > 0
        assert ds.ExposureInuAs == ds.XRayTubeCurrent * ds.ExposureTime
        assert ds.BurnedInAnnotation == "NO"
        for keyword, value in planted.items():
            assert str(ds.data_element(keyword).value) == value
        assert ds.NumberOfFrames == FRAMES
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PhotometricInterpretation) == (16, 12, 11,
                                                                                               "MONOCHROME2")
        pixels = ds.pixel_array
        assert pixels.shape == (FRAMES, DETECTOR, DETECTOR) and pixels.max() <= 4095
        # frames carry independent noise
        assert not np.array_equal(pixels[0], pixels[1])
        kvps[row["class"]] = float(ds.KVP)
    assert ExplicitVRLittleEndian in syntaxes and len(syntaxes) >= 2, syntaxes
    assert kvps["real_low"] < kvps["real_exposure"]


def test_shutter_tags_match_dark_bands(phantom_out: Path) -> None:
    for row in read_manifest(phantom_out):
        if not row["class"].startswith("real"):
            continue
        ds = pydicom.dcmread(phantom_out / row["file"])
        frame = ds.pixel_array[0].astype(np.float32)
        rows, cols = shutter_field(ds)
        assert ds.ShutterShape == "RECTANGULAR"
        assert rows.stop - rows.start == cols.stop - cols.start  # square exposed field
        outside = np.ones(frame.shape, bool)
        outside[rows, cols] = False
        assert outside.any()
        assert frame[outside].mean() < 60
        # the first and last rows/columns inside the field are exposed, those just outside are dark
        for edge in (frame[rows.start, cols], frame[rows.stop - 1, cols], frame[rows, cols.start],
                     frame[rows, cols.stop - 1]):
            assert edge.mean() > 150
        if rows.start > 0:
            assert frame[rows.start - 1, cols].mean() < 60


def test_noise_is_ordered_by_dose(phantom_out: Path) -> None:
    """Temporal noise (frame difference) in the brain: low > normal > exposure."""
    spread = {}
    for row in read_manifest(phantom_out):
        if row["class"].startswith("real") and row["view"] == "lateral":
            ds = pydicom.dcmread(phantom_out / row["file"])
            frames = ds.pixel_array.astype(np.float32)
            rows, cols = shutter_field(ds)
            size = rows.stop - rows.start
            # a patch in the parietal brain, away from the skull's edges
            patch = (slice(rows.start + size * 3 // 10, rows.start + size * 4 // 10),
                     slice(cols.start + size * 5 // 10, cols.start + size * 6 // 10))
            spread[row["class"]] = float(np.var(frames[0][patch] - frames[1][patch]))
    assert spread["real_low"] > spread["real_normal"] > spread["real_exposure"], spread


def test_simulator_captures_and_ground_truth_are_aligned(phantom_out: Path) -> None:
    rows = read_manifest(phantom_out)
    dicom_field = {}
    for row in rows:
        if row["class"] == "real_normal":
            ds = pydicom.dcmread(phantom_out / row["file"])
            dicom_field[row["pair_id"]] = (shutter_field(ds), ds.pixel_array[0])
    for row in rows:
        truth = cv2.imread(str(phantom_out / "ground_truth" / f"{row['pair_id']}_{row['class']}.png"),
                           cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535.0
        (field_rows, field_cols), _ = dicom_field[row["pair_id"]]
        assert truth.shape == (field_rows.stop - field_rows.start, field_cols.stop - field_cols.start)
        if row["class"].startswith("synthetic"):
            field = simulator_field(phantom_out / row["file"]).astype(np.float32) / 255.0
            assert field.shape == truth.shape
            # same render up to the simulator's mild noise and 8-bit rounding
            assert np.abs(field - truth).mean() < 0.03
            assert np.corrcoef(field.ravel(), truth.ravel())[0, 1] > 0.97
    # the real ground truth is the real appearance at the simulator's (slightly jittered) pose: close to the
    # real export of the same pose, far from another pose
    pairs = sorted(dicom_field)
    for i, pair_id in enumerate(pairs):
        truth = cv2.imread(str(phantom_out / "ground_truth" / f"{pair_id}_real_normal.png"),
                           cv2.IMREAD_UNCHANGED).astype(np.float32)
        (field_rows, field_cols), frame = dicom_field[pair_id]
        same = np.corrcoef(truth.ravel(), frame[field_rows, field_cols].astype(np.float32).ravel())[0, 1]
        (other_rows, other_cols), other = dicom_field[pairs[(i + 1) % len(pairs)]]
        crop = other[other_rows, other_cols].astype(np.float32)
        if crop.shape == truth.shape:
            different = np.corrcoef(truth.ravel(), crop.ravel())[0, 1]
            assert same > different
        assert same > 0.85, (pair_id, same)
