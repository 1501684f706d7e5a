"""DICOM in, DICOM out: `medshift translate --format dicom` and `output_type="dicom"` write a derived Secondary
Capture that references its source, keeps its geometry and carries none of its identifiers."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.dataset import validate_file_meta
from pydicom.uid import SecondaryCaptureImageStorage
from synthetic import PLANTED_IDENTIFIERS, skull_like
from typer.testing import CliRunner

from medshift.cli import app
from medshift.model_location import folder_revision
from medshift.pipeline_medshift import MedShiftPipeline

# 120 x 120 detector, 0.2 mm pixels, a shutter leaving a 96 x 96 field: the translation covers the 96 px square
SHUTTER = (12, 12, 108, 108)


@pytest.fixture
def source_dicom(write_dicom, tmp_path):
    image = np.zeros((120, 120), np.float32)
    image[12:108, 12:108] = skull_like(96, 96)
    return write_dicom(tmp_path / "in" / "skull.dcm", image, shutter=SHUTTER, Manufacturer="Planted Vendor", StudyDate="20240101")


def read_validated(path) -> pydicom.Dataset:
    """Read with pydicom raising on any invalid value, and check the file meta and the IOD with highdicom."""
    with pydicom_config.strict_reading():
        ds = pydicom.dcmread(path)
        ds.decode()
        validate_file_meta(ds.file_meta, enforce_standard=True)
        assert hd.Image.from_dataset(ds).SOPClassUID == SecondaryCaptureImageStorage  # highdicom parses it back
    return ds


def all_text(ds: pydicom.Dataset) -> str:
    return "\n".join(str(element.value) for element in ds.iterall() if element.keyword != "PixelData")


def check_derived(derived: pydicom.Dataset, source: pydicom.Dataset, model: str, tau: float, side: int = 96) -> None:
    assert derived.SOPClassUID == SecondaryCaptureImageStorage
    assert list(derived.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert model in derived.DerivationDescription and folder_revision(model) in derived.DerivationDescription
    assert f"tau {tau:g}" in derived.DerivationDescription
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert derived[uid].value != source.get(uid), uid
    [reference] = derived.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID and reference.ReferencedSOPClassUID == source.SOPClassUID
    assert (derived.BitsAllocated, derived.BitsStored, derived.PhotometricInterpretation) == (16, 16, "MONOCHROME2")
    assert (derived.Rows, derived.Columns) == (side, side)
    # the 96 px field of 0.2 mm detector pixels, on `side` pixels
    assert [float(v) for v in derived.PixelSpacing] == pytest.approx([0.2 * 96 / side] * 2)
    assert derived.pixel_array.dtype == np.uint16 and derived.pixel_array.std() > 0
    # whitelisted technique kept; identifiers, dates and free text of the source gone
    assert float(derived.KVP) == 72 and float(derived.ExposureTime) == 8
    text = all_text(derived)
    for value in [*PLANTED_IDENTIFIERS.values(), "Planted Vendor", "20240101", source.StudyInstanceUID]:
        assert str(value) not in text, value


def test_translate_format_dicom_writes_a_derived_secondary_capture(source_dicom, saved_tiny_pipeline, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "translate", str(source_dicom.parent), "--target", "real_normal", "--tau", "0.6", "--steps", "2",
        "--model", saved_tiny_pipeline, "--out", str(out), "--format", "dicom",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["skull.dcm"]
    # prepared like the builder's rows (the default): the field crop resized to 780 x 780
    check_derived(read_validated(out / "skull.dcm"), pydicom.dcmread(source_dicom), saved_tiny_pipeline, 0.6, side=780)


def test_pixel_spacing_follows_the_resize(source_dicom, saved_tiny_pipeline):
    from medshift.dicom_output import derived_secondary_capture

    derived = derived_secondary_capture(source_dicom, np.full((48, 48), 0.5), model_id=saved_tiny_pipeline, model_revision="r", tau=0.5)
    assert [float(v) for v in derived.PixelSpacing] == pytest.approx([0.4, 0.4])  # 96 detector px of 0.2 mm on 48 px


def test_pipeline_output_type_dicom(source_dicom, saved_tiny_pipeline, tmp_path):
    pipe = MedShiftPipeline.from_pretrained(saved_tiny_pipeline)
    [derived] = pipe(str(source_dicom), target="real_normal", tau=0.5, num_inference_steps=2, output_type="dicom").images
    derived.save_as(tmp_path / "derived.dcm", enforce_file_format=True)
    check_derived(read_validated(tmp_path / "derived.dcm"), pydicom.dcmread(source_dicom), saved_tiny_pipeline, 0.5)
    expected = pipe(str(source_dicom), target="real_normal", tau=0.5, num_inference_steps=2, output_type="np").images[0, ..., 0]
    assert np.abs(derived.pixel_array / 65535.0 - expected).max() <= 0.5 / 65535 + 1e-6
    with pytest.raises(ValueError, match="DICOM file paths"):
        pipe(np.zeros((32, 32), np.float32), target="real_normal", output_type="dicom")
