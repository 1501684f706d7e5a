"""Reading real-world and malformed files: real DICOMs from pydicom's test set, malformed attributes named
in the reason, resource limits checked before anything is allocated, and no blank display."""

from __future__ import annotations

import os
from pathlib import Path
import struct
import zlib

import numpy as np
import pydicom
import pydicom.data
import pytest

from xdigiskull.reading import (
    MAX_FRAME_PIXELS,
    MIN_DISPLAY_SPREAD,
    SelectionTooLarge,
    SourceError,
    displayed_spread,
    read_source,
)

RAMP = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))


def _reason(path, frames: str = "first") -> tuple[str, str]:
    with pytest.raises(SourceError) as info:
        read_source(path, frames)
    return info.value.reason, info.value.message


# ------------------------------------------------------------------------------ real files from pydicom


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # CT, explicit VR little endian, signed with a rescale
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",  # NM, JPEG 2000
        "693_J2KI.dcm",  # CT, JPEG 2000 lossy
        "image_dfl.dcm",  # deflated
        "examples_ybr_color.dcm",  # ultrasound, 30 frames, YBR JPEG
        "SC_ybr_full_422_uncompressed.dcm",  # subsampled chroma: 2 bytes a pixel, not 3
        "examples_palette.dcm",
    ],
)
def test_real_dicoms_from_other_vendors_and_modalities_give_an_image(name):
    source = read_source(pydicom.data.get_testdata_file(name), "all")
    for frame in source.frames:
        assert frame.dtype == np.float32 and np.isfinite(frame).all()
        assert 0.0 <= frame.min() and frame.max() <= 1.0
        assert displayed_spread(frame) >= MIN_DISPLAY_SPREAD  # never a blank display


def test_the_real_file_with_number_of_frames_1a_names_the_attribute():
    reason, message = _reason(pydicom.data.get_testdata_file("badVR.dcm"))
    assert reason == "invalid-attribute" and "NumberOfFrames" in message and "'1A'" in message


def test_real_truncated_file_is_refused_before_decoding():
    reason, message = _reason(pydicom.data.get_testdata_file("MR_truncated.dcm"))
    assert reason == "truncated-pixel-data" and "8,192" in message


# ------------------------------------------------------------------------------ malformed attributes


@pytest.mark.parametrize(
    "attributes, named",
    [
        ({"NumberOfFrames": "1A"}, "NumberOfFrames"),
        ({"NumberOfFrames": "0"}, "NumberOfFrames"),
        ({"Rows": None}, "Rows"),
        ({"BitsStored": 40}, "BitsStored"),
        ({"BitsAllocated": 12}, "BitsAllocated"),
        ({"PixelRepresentation": 7}, "PixelRepresentation"),
        ({"RescaleSlope": "abc", "RescaleIntercept": "0"}, "RescaleSlope"),
        ({"RescaleSlope": "0", "RescaleIntercept": "0"}, "RescaleSlope"),
        ({"RescaleSlope": "1", "RescaleIntercept": "nan"}, "RescaleIntercept"),
        ({"ShutterShape": "RECTANGULAR", "ShutterLeftVerticalEdge": "x", "ShutterRightVerticalEdge": "60",
          "ShutterUpperHorizontalEdge": "1", "ShutterLowerHorizontalEdge": "40"}, "ShutterLeftVerticalEdge"),
        ({"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": "20", "RadiusOfCircularShutter": "10"}, "CenterOfCircularShutter"),
        ({"ShutterShape": "POLYGONAL", "VerticesOfThePolygonalShutter": ["1", "2", "3"]}, "VerticesOfThePolygonalShutter"),
    ],
)
def write_raw_value(path, keyword: str, raw: bytes) -> None:
    """Give `keyword` the bytes `raw` in an explicit VR little endian file (pydicom refuses to write malformed
    values): write a placeholder of the same length, then swap the element's bytes."""
    raw = raw + b" " * (len(raw) % 2)
    ds = pydicom.dcmread(path)
    vr = pydicom.datadict.dictionary_VR(keyword)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    placeholder = b"0" * len(raw)
    ds.add_new(keyword, vr, placeholder.decode())
    ds.save_as(path, enforce_file_format=True)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode() + struct.pack("<H", len(raw))
    data = path.read_bytes()
    assert data.count(head + placeholder) == 1
    path.write_bytes(data.replace(head + placeholder, head + raw))


@pytest.mark.parametrize(
    "attributes, named",
    [
        ({"NumberOfFrames": b"1A"}, "NumberOfFrames"),
        ({"NumberOfFrames": b"0"}, "NumberOfFrames"),
        ({"Rows": None}, "Rows"),
        ({"BitsStored": 40}, "BitsStored"),
        ({"BitsAllocated": 12}, "BitsAllocated"),
        ({"PixelRepresentation": 7}, "PixelRepresentation"),
        ({"RescaleSlope": b"abc", "RescaleIntercept": b"0"}, "RescaleSlope"),
        ({"RescaleSlope": b"0", "RescaleIntercept": b"0"}, "RescaleSlope"),
        ({"RescaleSlope": b"1", "RescaleIntercept": b"nan"}, "RescaleIntercept"),
        ({"ShutterShape": "RECTANGULAR", "ShutterLeftVerticalEdge": b"x", "ShutterRightVerticalEdge": 60,
          "ShutterUpperHorizontalEdge": 1, "ShutterLowerHorizontalEdge": 40}, "ShutterLeftVerticalEdge"),
        ({"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": [20], "RadiusOfCircularShutter": 10}, "CenterOfCircularShutter"),
        ({"ShutterShape": "POLYGONAL", "VerticesOfThePolygonalShutter": [1, 2, 3]}, "VerticesOfThePolygonalShutter"),
    ],
)
def test_malformed_attributes_are_named(tmp_path, write_dicom, attributes, named):
    path = write_dicom(tmp_path / "a.dcm", RAMP)
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        elif not isinstance(value, bytes):
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    for keyword, value in attributes.items():
        if isinstance(value, bytes):
            write_raw_value(path, keyword, value)
    reason, message = _reason(path)
    assert reason == "invalid-attribute" and named in message


def test_a_malformed_window_falls_back_to_the_pixel_values_with_a_note(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter="2048", WindowWidth="-5")
    source = read_source(path)
    assert displayed_spread(source.frames[0]) > 0.9
    assert any("WindowWidth" in w and "percentile window" in w for w in source.warnings)


# ------------------------------------------------------------------------------ no blank display


@pytest.mark.parametrize(
    "window",
    [
        {"WindowCenter": 2048, "WindowWidth": 4_000_000, "VOILUTFunction": "SIGMOID"},  # every pixel about 0.5
        {"WindowCenter": 90_000, "WindowWidth": 10},  # far above the data: all black
        {"WindowCenter": -5_000, "WindowWidth": 10},  # far below: all white
    ],
)
def test_a_window_that_shows_one_grey_level_falls_back_to_percentiles(tmp_path, write_dicom, window):
    source = read_source(write_dicom(tmp_path / "flat.dcm", RAMP, **window))
    np.testing.assert_allclose(source.frames[0][:, 1:-1], RAMP[:, 1:-1], atol=0.03)  # the ramp, not one grey
    assert any("one grey level" in w for w in source.warnings)


def test_pixel_values_without_spread_are_blank_after_windowing(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "flat.dcm", np.full((48, 64), 0.4, np.float32), WindowCenter=2048, WindowWidth=4096)
    assert _reason(path)[0] == "blank-after-windowing"


def test_huge_rescale_slope_stays_finite(tmp_path, write_dicom):
    source = read_source(write_dicom(tmp_path / "huge.dcm", RAMP, RescaleSlope="1e37", RescaleIntercept="-1e38"))
    np.testing.assert_allclose(source.frames[0], RAMP, atol=0.02)  # the percentile window, in float64


def test_signed_pixels_with_a_rescale_and_a_sigmoid_window(tmp_path, write_dicom):
    stored = np.round((RAMP - 0.5) * 4000).astype(np.int16)
    path = write_dicom(
        tmp_path / "signed.dcm", RAMP, stored=stored.view(np.uint16), PixelRepresentation=1, BitsStored=16, HighBit=15,
        BitsAllocated=16, RescaleSlope="2", RescaleIntercept="100", WindowCenter="100", WindowWidth="4000",
        VOILUTFunction="SIGMOID",
    )
    frame = read_source(path).frames[0]
    assert np.all(np.diff(frame, axis=1) >= 0) and frame[0, 0] < 0.1 and frame[0, -1] > 0.9


def test_float_pixel_data_with_nan_and_inf(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "f.dcm", RAMP)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.BitsAllocated = 32
    values = (RAMP * 1000.0 - 200.0).astype(np.float32)
    values[0, 0], values[1, 1], values[2, 2] = np.nan, np.inf, -np.inf
    ds.FloatPixelData = values.tobytes()
    ds.save_as(path, enforce_file_format=True)
    source = read_source(path)
    assert np.isfinite(source.frames[0]).all() and displayed_spread(source.frames[0]) > 0.9
    assert any("non-finite" in w for w in source.warnings)


# ------------------------------------------------------------------------------ resource safety


def _claiming(path: Path, side: int, frames: int) -> Path:
    """Rewrite a small file's header to claim `frames` frames of side x side pixels (data unchanged)."""
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enormous_claimed_image_is_refused_before_decoding(tmp_path, write_dicom):
    path = _claiming(write_dicom(tmp_path / "big.dcm", RAMP), side=65535, frames=1000)
    reason, message = _reason(path)
    assert reason == "image-too-large" and "65535 x 65535" in message


def test_too_many_selected_frames_at_once_are_refused_with_their_indices(tmp_path, write_dicom):
    path = _claiming(write_dicom(tmp_path / "cine.dcm", RAMP), side=2048, frames=100)
    with pytest.raises(SelectionTooLarge) as info:  # the builder then reads them one at a time
        read_source(path, "all")
    assert info.value.reason == "image-too-large" and info.value.indices == list(range(100))
    assert _reason(path, "first")[0] == "truncated-pixel-data"  # one frame fits the budget; its data is not there


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_decompression_bombs_are_refused_from_the_header(tmp_path):
    side = 8192  # 67 million pixels (64 MiB decoded) from a file of about 65 kB
    compressor = zlib.compressobj(9)
    row = bytes(side + 1)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    (tmp_path / "bomb.png").write_bytes(_png(side, side, idat))
    assert side * side > MAX_FRAME_PIXELS and (tmp_path / "bomb.png").stat().st_size < 100_000
    assert _reason(tmp_path / "bomb.png")[0] == "image-too-large"
    (tmp_path / "claim.png").write_bytes(_png(100_000, 100_000, zlib.compress(bytes(100))))
    assert _reason(tmp_path / "claim.png")[0] == "image-too-large"


def test_a_png_chunk_longer_than_the_file_is_refused_before_opencv_allocates_it(tmp_path):
    idat = zlib.compress(bytes(65 * 64))
    data = bytearray(_png(64, 64, idat))
    data[33:37] = struct.pack(">I", 1 << 30)  # the IDAT length: a fuzzed file made OpenCV allocate 1 GiB for it
    (tmp_path / "long.png").write_bytes(bytes(data))
    reason, message = _reason(tmp_path / "long.png")
    assert reason == "corrupt-image" and "'IDAT' claims 1,073,741,824 bytes" in message


def test_things_that_are_not_readable_files(tmp_path):
    (tmp_path / "folder.dcm").mkdir()
    assert _reason(tmp_path / "folder.dcm")[0] == "not-a-file"
    os.symlink(tmp_path / "loop.dcm", tmp_path / "loop.dcm")
    reason, message = _reason(tmp_path / "loop.dcm")
    assert reason == "unreadable" and "symbolic links" in message
    os.symlink(tmp_path / "missing.dcm", tmp_path / "dangling.dcm")
    assert _reason(tmp_path / "dangling.dcm")[0] == "unreadable"
    os.mkfifo(tmp_path / "pipe.dcm")  # reading it would block the build forever
    assert _reason(tmp_path / "pipe.dcm")[0] == "not-a-file"
    (tmp_path / "zero.png").write_bytes(b"")
    assert _reason(tmp_path / "zero.png")[0] == "empty-file"


def test_a_file_without_read_permission(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "locked.dcm", RAMP)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: then the file is simply read
            assert read_source(path).frames[0].shape == RAMP.shape
        else:
            reason, message = _reason(path)
            assert reason == "unreadable" and "ermission" in message
    finally:
        path.chmod(0o644)


def test_a_blank_frame_of_a_cine_run_costs_only_itself(tmp_path, write_dicom):
    frames = np.stack([np.full((48, 64), 0.02, np.float32), RAMP, RAMP[:, ::-1]])  # a dark first frame
    source = read_source(write_dicom(tmp_path / "cine.dcm", frames), "all")
    assert source.frame_indices == [1, 2] and len(source.frames) == 2
    assert source.skipped[0].reason == "blank-after-windowing"
    assert _reason(write_dicom(tmp_path / "one.dcm", frames), "first")[0] == "blank-after-windowing"


@pytest.mark.parametrize(
    "keyword, vr, value",
    [
        ("WindowCenter", "DR", b"1A"),  # VRs pydicom does not know: what the fuzzer found for seeds 1 and 31337
        ("WindowWidth", "DC", b"12"),
        ("RedPaletteColorLookupTableDescriptor", "FS", b"\x00\x01"),
    ],
)
def test_an_unknown_vr_in_a_read_attribute_is_named_with_its_tag(tmp_path, write_dicom, keyword, vr, value):
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    path = write_dicom(tmp_path / "a.dcm", RAMP)
    ds = pydicom.dcmread(path)
    tag = Tag(keyword)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)  # written as read: bytes and all
    ds.save_as(path)
    reason, message = _reason(path)
    assert reason == "invalid-attribute" and keyword in message and str(tag) in message
