"""The builder on real phantom exports (small detector, few poses): every frame used, crops aligned with the
phantom's ground truth, and none of the identifiers the phantom plants in its DICOM headers in the output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.prepare import load_prepared

phantom_export = pytest.importorskip("xdigiskull.phantom.export")
phantom_dicom = pytest.importorskip("xdigiskull.phantom.dicom_writer")

SEED = 7
VIEWS = 3


@pytest.fixture(scope="module")
def phantom_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "raw"
    return phantom_export.generate_exports(out, views=VIEWS, seed=SEED, detector=192, frames=2, workers=1, progress=False)


@pytest.fixture(scope="module")
def phantom_built(phantom_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom-built") / "x-digiskull"
    summary = build_dataset(BuildConfig(raw_dir=phantom_raw, out=out, size=128, frames="all", seed=0), progress=False)
    return out, summary


def test_every_phantom_frame_is_written(phantom_raw, phantom_built):
    _, summary = phantom_built
    manifest = list(csv.DictReader(open(phantom_raw / "manifest.csv")))
    assert summary.frames_written == sum(int(row["frames"]) for row in manifest)
    assert summary.frames_skipped == 0 and summary.files_skipped == 0
    report = json.loads(summary.report_path.read_text())
    assert set(report["files"]) == {row["file"] for row in manifest}  # ground_truth/ and the CSV are not inputs
    assert not any(entry.get("warnings") for entry in report["files"].values())


def test_crops_align_with_the_phantom_ground_truth(phantom_raw):
    for row in csv.DictReader(open(phantom_raw / "manifest.csv")):
        image = load_prepared(phantom_raw / row["file"], size=None)[0]
        truth = cv2.imread(str(phantom_raw / "ground_truth" / f"{row['pair_id']}_{row['class']}.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == truth.shape, row["file"]
        if row["class"].startswith("synthetic"):  # same pose: pixel-aligned up to the export's noise
            assert np.corrcoef(image.ravel(), truth.ravel().astype(np.float32))[0, 1] > 0.98, row["file"]


def test_no_planted_identifier_reaches_the_dataset(phantom_raw, phantom_built):
    out, _ = phantom_built
    planted = list(phantom_dicom.planted_identifiers(SEED).values())
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(phantom_raw.rglob("*.dcm"))]
    uids = {str(h.SOPInstanceUID) for h in headers} | {str(h.StudyInstanceUID) for h in headers}
    names = {p.stem for p in phantom_raw.rglob("*") if p.is_file()}
    needles = planted + sorted(uids) + sorted(names) + [str(phantom_raw)]
    for path in sorted(out.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            found = [n for n in needles if n.encode() in blob]
            assert not found, f"{found} in {path.relative_to(out)}"
    for shard in (out / "data").glob("*.parquet"):
        table = pq.read_table(shard)
        pictures = [name for name in ("image", "bone_mask") if name in table.column_names]  # PNG bytes, no text
        text = json.dumps(table.drop(pictures).to_pylist())
        assert not [n for n in needles if n in text]
