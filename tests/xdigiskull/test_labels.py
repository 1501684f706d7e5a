"""Labelling by folders, by manifest CSV and by DICOM-tag rules."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from xdigiskull.labels import LabelError, LabelInfo, class_from_path, make_labeler
from xdigiskull.processing import label_file
from xdigiskull.reading import SourceError


def test_folder_conventions():
    assert class_from_path("simulator/low/a.png") == "synthetic_low"
    assert class_from_path("site1/Azurion/exposure/run/a.dcm") == "real_exposure"
    assert class_from_path("synthetic/high/x.png") == "synthetic_high"
    assert class_from_path("real/normal/x.dcm") == "real_normal"
    with pytest.raises(LabelError, match="not one of low, high"):
        class_from_path("simulator/normal/a.png")
    with pytest.raises(LabelError, match="not under"):
        class_from_path("misc/a.png")
    with pytest.raises(LabelError):
        class_from_path("real/low")  # 'low' is the file, not a folder


def test_folders_take_poses_from_the_raw_manifest_or_dicom_angles(tmp_path):
    (tmp_path / "manifest.csv").write_text(
        "file,class,view,primary_angle,secondary_angle,pair_id,frames\n"
        "azurion/low/a.dcm,real_low,ap,0,0,p1,2\n"
    )
    labeler = make_labeler("folders", tmp_path)
    assert labeler.label("azurion/low/a.dcm") == LabelInfo("real_low", "ap", 0.0, 0.0, "p1")
    ds = Dataset()
    ds.PositionerPrimaryAngle = -30
    ds.PositionerSecondaryAngle = 15
    info = labeler.label("azurion/normal/b.dcm", ds)
    assert info == LabelInfo("real_normal", "lao-30_cra+15", -30.0, 15.0, "")
    assert info.group == "view:lao-30_cra+15"
    assert LabelInfo("real_low", "", None, None, "").group == ""


def test_manifest_overrides_folders_and_skips_unlisted(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("file,class,pair_id\nanything/x.png,real_low,p9\n")
    labeler = make_labeler(str(manifest), tmp_path)
    assert labeler.label("anything/x.png") == LabelInfo("real_low", "", None, None, "p9")
    with pytest.raises(LabelError, match="not listed"):
        labeler.label("simulator/low/y.png")


def test_manifest_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,real_low\nb.png,fake_class\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: unknown class 'fake_class'"):
        make_labeler(str(bad), tmp_path)
    (tmp_path / "nocol.csv").write_text("path,label\n")
    with pytest.raises(ValueError, match="needs columns"):
        make_labeler(str(tmp_path / "nocol.csv"), tmp_path)
    with pytest.raises(ValueError, match="neither 'folders'"):
        make_labeler("nothing-here.yaml", tmp_path)


def test_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        """
rules:
  - class: real_exposure
    when:
      Manufacturer: philips
      SeriesDescription: {contains: exposure}
  - class: real_low
    when:
      "0018,0060": {max: 70}
  - class: real_normal
    when:
      KVP: {min: 70.5}
      Modality: {in: [XA, RF]}
  - class: synthetic_high
    when:
      path: "sim/**"
"""
    )
    labeler = make_labeler(str(rules), tmp_path)

    def header(**attributes):
        ds = Dataset()
        for key, value in attributes.items():
            setattr(ds, key, value)
        return ds

    assert labeler.label("a.dcm", header(Manufacturer="Philips", SeriesDescription="Skull EXPOSURE", KVP=90)).class_name == "real_exposure"
    assert labeler.label("a.dcm", header(Manufacturer="Siemens", KVP=65)).class_name == "real_low"
    assert labeler.label("a.dcm", header(KVP=80, Modality="XA")).class_name == "real_normal"
    assert labeler.label("sim/x/a.png", None).class_name == "synthetic_high"
    with pytest.raises(LabelError, match="no labelling rule"):
        labeler.label("a.dcm", header(KVP=80, Modality="CT"))


def test_label_file_reads_the_header_up_to_the_last_attribute_needed(tmp_path, write_dicom):
    rules = tmp_path / "rules.yaml"
    # Series Number (0020,0011) comes after the positioner angles (0018,151x): the read must go that far
    rules.write_text("rules:\n  - class: real_low\n    when: {KVP: {max: 75}, \"0008,0070\": philips, SeriesNumber: 7}\n")
    labeler = make_labeler(str(rules), tmp_path)
    tags = [Tag("Manufacturer"), Tag("KVP"), Tag("PositionerPrimaryAngle"), Tag("PositionerSecondaryAngle"), Tag("SeriesNumber")]
    assert labeler.header_tags == tags
    assert make_labeler("folders", tmp_path).header_tags == tags[2:4]
    path = write_dicom(
        tmp_path / "a.dcm", np.full((32, 32), 0.5), KVP=72, Manufacturer="Philips", SeriesNumber=7,
        PositionerPrimaryAngle=-30, PositionerSecondaryAngle=15,
    )
    assert label_file("a.dcm", str(path), labeler) == LabelInfo("real_low", "lao-30_cra+15", -30.0, 15.0, "")
    other = write_dicom(tmp_path / "b.dcm", np.full((32, 32), 0.5), KVP=72, Manufacturer="Philips", SeriesNumber=8)
    assert isinstance(label_file("b.dcm", str(other), labeler), LabelError)
    broken = tmp_path / "c.dcm"
    broken.write_bytes(b"not a dicom file")
    unreadable = label_file("c.dcm", str(broken), labeler)  # the rules cannot be tested: said so, not "no match"
    assert isinstance(unreadable, SourceError) and unreadable.reason == "unreadable-header"


@pytest.mark.parametrize(
    "text, message",
    [
        ("rules: []", "non-empty 'rules'"),
        ("rules:\n  - class: nope\n    when: {KVP: 1}", "unknown class 'nope'"),
        ("rules:\n  - class: real_low\n    when: {NotAKeyword: 1}", "'NotAKeyword' is not a DICOM keyword"),
        ("rules:\n  - class: real_low\n    when: {KVP: {above: 1}}", "unknown operator"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_bad_rules_are_rejected(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        make_labeler(str(path), tmp_path)
