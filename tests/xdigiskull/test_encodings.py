"""One image, one result, whatever its encoding: pydicom's test files hold families of one image stored in
several transfer syntaxes (byte orders, RLE, JPEG-LS, JPEG 2000, palettes). Every lossless member of a family
must give the same output pixels (or the same skip reason); lossy members must stay within LOSSY_TOLERANCE.

The files come from pydicom and the pydicom-data package (a test dependency)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pydicom.data
import pytest

from xdigiskull.labels import LabelInfo
from xdigiskull.processing import BuildOptions, FileTask, process_file

# lossless encodings of one image: the first is the reference
LOSSLESS_FAMILIES: dict[str, tuple[str, ...]] = {
    "OBXXXX1A": ("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm", "OBXXXX1A_rle.dcm"),  # palette colour, big endian included
    "OBXXXX1A_2frame": ("OBXXXX1A_2frame.dcm", "OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_rle_2frame.dcm"),
    "MR_small": (
        "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
        "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
    ),
    "US1_R": ("US1_UNCR.dcm", "US1_J2KR.dcm"),
    "US1_I": ("US1_UNCI.dcm", "US1_J2KI.dcm"),  # the irreversible one, decoded, against its decoded copy
    "SC_rgb": (
        "SC_rgb.dcm", "SC_rgb_expb.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_16bit.dcm", "SC_rgb_expb_16bit.dcm", "SC_rgb_rle_16bit.dcm",
        "SC_rgb_32bit.dcm", "SC_rgb_expb_32bit.dcm", "SC_rgb_rle_32bit.dcm",
        "SC_rgb_2frame.dcm", "SC_rgb_expb_2frame.dcm", "SC_rgb_rle_2frame.dcm",
    ),
}
# lossy encodings of SC_rgb.dcm
LOSSY_MEMBERS: tuple[str, ...] = (
    "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm", "SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm",
)
# a lossy copy's 8-bit output against the lossless one: mean and largest absolute difference in grey levels
LOSSY_TOLERANCE = (1.0, 8)
OPTION_SETS = {
    "upscaled-64": BuildOptions(size=64, allow_upscale=True),
    "default-780": BuildOptions(),  # most of these files are smaller than 780: the same skip reason for all
}


def _result(name: str, options: BuildOptions) -> tuple[str, np.ndarray | None]:
    """("written", 8-bit pixels) or (skip reason, None) of a test file's first frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = pydicom.data.get_testdata_file(name)
    assert path is not None, f"{name} is missing: install the test dependency pydicom-data"
    outcome = process_file(FileTask(name, path, "train", LabelInfo("real_low", "", None, None, "")), options)
    if outcome.reason:
        return outcome.reason, None
    frame = outcome.frames[0]
    if frame.row is None:
        return frame.reason, None
    return "written", cv2.imdecode(np.frombuffer(frame.row.image, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("options_name", OPTION_SETS)
@pytest.mark.parametrize("family", LOSSLESS_FAMILIES)
def test_lossless_encodings_of_one_image_end_alike(family, options_name):
    options = OPTION_SETS[options_name]
    reference_name, *others = LOSSLESS_FAMILIES[family]
    status, reference = _result(reference_name, options)
    for name in others:
        other_status, pixels = _result(name, options)
        assert other_status == status, f"{name}: {other_status}, {reference_name}: {status}"
        if reference is not None:
            assert np.array_equal(pixels, reference), f"{name} differs from {reference_name}"


def test_lossy_encodings_stay_within_the_tolerance():
    status, reference = _result("SC_rgb.dcm", OPTION_SETS["upscaled-64"])
    assert status == "written"
    for name in LOSSY_MEMBERS:
        other_status, pixels = _result(name, OPTION_SETS["upscaled-64"])
        assert other_status == "written", f"{name}: {other_status}"
        difference = np.abs(pixels.astype(int) - reference.astype(int))
        assert difference.mean() <= LOSSY_TOLERANCE[0] and difference.max() <= LOSSY_TOLERANCE[1], name
