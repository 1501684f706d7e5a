"""Reading DICOM (every transfer syntax we can write here) and plain images into standard display."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from xdigiskull.reading import SourceError, read_source, robust_window, select_frames, window

RAMP = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))


def test_select_frames():
    assert select_frames("first", 5) == [0]
    assert select_frames("middle", 5) == [2]
    assert select_frames("all", 3) == [0, 1, 2]
    assert select_frames("4", 5) == [4]
    with pytest.raises(SourceError) as info:
        select_frames("5", 5)
    assert info.value.reason == "frame-out-of-range"
    with pytest.raises(ValueError, match="--frames"):
        select_frames("last", 5)


def test_window_follows_the_dicom_linear_formula():
    values = np.array([0, 1023.5, 2048, 3072.5, 4095], np.float32)
    out = window(values, center=2048, width=4096)
    # LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
    expected = np.clip((values - 2047.5) / 4095 + 0.5, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    exact = window(values, center=2048, width=4096, function="LINEAR_EXACT")
    np.testing.assert_allclose(exact, np.clip((values - 2048) / 4096 + 0.5, 0, 1), atol=1e-6)
    sigmoid = window(np.array([2048.0], np.float32), 2048, 100, "SIGMOID")
    assert sigmoid[0] == pytest.approx(0.5)


def test_robust_window_ignores_outliers():
    rng = np.random.default_rng(0)
    values = rng.uniform(1000, 2000, (128, 128)).astype(np.float32)
    values[0, 0] = 60000  # a hot pixel must not squash the window
    out = robust_window(values)
    assert out.dtype == np.float32
    assert 0.45 < float(np.median(out)) < 0.55
    assert out.max() == 1.0 and out.min() == 0.0


@pytest.mark.parametrize(
    "syntax",
    [None, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless],
    ids=["explicit-le", "implicit-le", "deflated", "rle", "jpeg-ls", "jpeg2000"],
)
def test_dicom_transfer_syntaxes_read_losslessly(tmp_path, write_dicom, syntax):
    path = tmp_path / "image.dcm"
    if syntax in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        write_dicom(path, RAMP)
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
    else:
        write_dicom(path, RAMP, syntax=syntax, WindowCenter=2048, WindowWidth=4096)
    if syntax is not None:
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    source = read_source(path)
    assert source.num_frames == 1 and source.frame_indices == [0]
    frame = source.frames[0]
    assert frame.shape == RAMP.shape and frame.dtype == np.float32
    # without a window the robust window maps the ramp's 0.5/99.5 percentiles to 0/1
    np.testing.assert_allclose(frame[:, 32], frame[0, 32])
    assert np.all(np.diff(frame[0]) >= 0) and frame[0, 0] == 0.0 and frame[0, -1] == 1.0


def test_dicom_big_endian(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "le.dcm", RAMP, WindowCenter=2048, WindowWidth=4096)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    stored = np.round(RAMP * 4095).astype(np.uint16)
    ds.PixelData = stored.astype(">u2").tobytes()
    out = tmp_path / "be.dcm"
    pydicom.dcmwrite(out, ds, little_endian=False, implicit_vr=False, force_encoding=True)
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    frame = read_source(out).frames[0]
    np.testing.assert_allclose(frame, window(stored.astype(np.float32), 2048, 4096), atol=1e-6)


def test_dicom_jpeg_baseline(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "raw.dcm", RAMP)
    ds = pydicom.dcmread(path)
    pixels = np.round(RAMP * 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    frame = read_source(tmp_path / "jpeg.dcm").frames[0]
    np.testing.assert_allclose(frame, RAMP, atol=0.03)


def test_multiframe_selection_and_frame_out_of_range(tmp_path, write_dicom):
    gradient = np.linspace(-0.05, 0.05, 32, dtype=np.float32)[None, :]  # an image, not one grey level
    frames = np.stack([np.full((32, 32), v, np.float32) + gradient for v in (0.1, 0.5, 0.9)])
    path = write_dicom(tmp_path / "multi.dcm", frames, WindowCenter=2048, WindowWidth=4096)
    source = read_source(path, "all")
    assert source.num_frames == 3 and source.frame_indices == [0, 1, 2]
    means = [float(np.median(f)) for f in source.frames]
    assert means == pytest.approx([0.1, 0.5, 0.9], abs=0.01)
    assert read_source(path, "middle").frame_indices == [1]
    assert float(np.median(read_source(path, "2").frames[0])) == pytest.approx(0.9, abs=0.01)
    with pytest.raises(SourceError, match="frame 7 requested"):
        read_source(path, "7")


def test_monochrome1_is_inverted(tmp_path, write_dicom):
    mono2 = read_source(write_dicom(tmp_path / "m2.dcm", RAMP, WindowCenter=2048, WindowWidth=4096)).frames[0]
    mono1 = read_source(
        write_dicom(tmp_path / "m1.dcm", RAMP, WindowCenter=2048, WindowWidth=4096, PhotometricInterpretation="MONOCHROME1")
    ).frames[0]
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_rescale_then_window(tmp_path, write_dicom):
    stored = np.tile(np.arange(0, 64, dtype=np.uint16) * 10, (8, 1))
    path = write_dicom(
        tmp_path / "r.dcm", stored / 4095.0, stored=stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=300, WindowWidth=401
    )
    frame = read_source(path).frames[0]
    modality = stored.astype(np.float32) * 2 - 100
    np.testing.assert_allclose(frame, window(modality, 300, 401), atol=1e-6)


def test_voi_lut_sequence(tmp_path, write_dicom):
    from pydicom.dataset import Dataset

    stored = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (8, 1))
    path = write_dicom(tmp_path / "lut.dcm", stored / 4095.0, stored=stored)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.LUTData = np.arange(255, -1, -1, dtype=np.uint16).tobytes()  # an inverting LUT: makes the effect unmistakable
    ds.VOILUTSequence = [item]
    ds.save_as(path, enforce_file_format=True)
    frame = read_source(path).frames[0]
    np.testing.assert_allclose(frame[0], (255 - stored[0]) / 255.0, atol=1e-6)


def test_signed_pixels(tmp_path, write_dicom):
    stored = np.tile(np.linspace(-1000, 1000, 64).astype(np.int16), (8, 1))
    path = write_dicom(tmp_path / "signed.dcm", stored, stored=stored.view(np.uint16), PixelRepresentation=1, WindowCenter=0, WindowWidth=2001)
    frame = read_source(path).frames[0]
    np.testing.assert_allclose(frame, window(stored.astype(np.float32), 0, 2001), atol=1e-6)
    assert frame[0, 0] < 0.001 and frame[0, -1] == 1.0  # -1000 is the bottom of the window


@pytest.mark.parametrize("syntax", [None, DeflatedExplicitVRLittleEndian], ids=["explicit-le", "deflated"])
def test_unused_high_bits_are_ignored(tmp_path, write_dicom, syntax):
    # 12 bits stored in 16: some writers leave overlay or garbage bits above the high bit
    stored = np.round(RAMP * 4095).astype(np.uint16)
    dirty = stored | np.uint16(0xA000)
    dirty[::2] = stored[::2]  # some pixels clean, so a check on one pixel would not do
    path = write_dicom(tmp_path / "dirty.dcm", RAMP, stored=dirty, WindowCenter=2048, WindowWidth=4096)
    clean = write_dicom(tmp_path / "clean.dcm", RAMP, stored=stored, WindowCenter=2048, WindowWidth=4096)
    if syntax is not None:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
    frame = read_source(path).frames[0]
    np.testing.assert_array_equal(frame, read_source(clean).frames[0])
    np.testing.assert_allclose(frame, window(stored.astype(np.float32), 2048, 4096), atol=1e-6)


def test_rgb_dicom_becomes_grey_with_a_warning(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "grey.dcm", RAMP)
    ds = pydicom.dcmread(path)
    rgb = np.repeat(np.round(RAMP * 255).astype(np.uint8)[..., None], 3, axis=2)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = rgb.tobytes()
    ds.save_as(path, enforce_file_format=True)
    source = read_source(path)
    assert source.frames[0].ndim == 2
    np.testing.assert_allclose(source.frames[0], np.round(RAMP * 255) / 255, atol=1e-5)
    assert any("colour" in w for w in source.warnings)


def test_damaged_dicoms_get_precise_reasons(tmp_path, write_dicom):
    (tmp_path / "text.dcm").write_text("this is not a DICOM file")
    (tmp_path / "empty.dcm").write_bytes(b"")
    good = write_dicom(tmp_path / "good.dcm", RAMP).read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(good[: len(good) - 2000])
    (tmp_path / "header-only.dcm").write_bytes(good[:300])
    reasons = {}
    for name in ("text.dcm", "empty.dcm", "truncated.dcm", "header-only.dcm"):
        with pytest.raises(SourceError) as info:
            read_source(tmp_path / name)
        reasons[name] = info.value.reason
    assert reasons["text.dcm"] == "not-dicom"
    assert reasons["empty.dcm"] == "empty-file"
    assert reasons["truncated.dcm"] == "truncated-pixel-data"
    assert reasons["header-only.dcm"] in ("corrupt-dicom", "no-pixel-data", "corrupt-pixel-data")


def test_unsupported_transfer_syntax_is_reported(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "odd.dcm", RAMP)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder for it
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(SourceError) as info:
        read_source(path)
    assert info.value.reason == "unsupported-transfer-syntax"
    assert "MPEG2" in info.value.message


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".jpg"])
def test_images_8bit(tmp_path, suffix):
    pixels = np.round(RAMP * 255).astype(np.uint8)
    path = tmp_path / f"image{suffix}"
    assert cv2.imwrite(str(path), pixels)
    frame = read_source(path).frames[0]
    atol = 0.03 if suffix == ".jpg" else 1e-6
    np.testing.assert_allclose(frame, pixels / 255.0, atol=atol)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_images_16bit_and_colour(tmp_path, suffix):
    pixels = np.round(RAMP * 65535).astype(np.uint16)
    path = tmp_path / f"image16{suffix}"
    cv2.imwrite(str(path), pixels)
    np.testing.assert_allclose(read_source(path).frames[0], pixels / 65535.0, atol=1e-6)

    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 2] = 255  # pure red in OpenCV's BGR order ...
    colour[8:, :, 1] = 255  # ... and yellow below
    cv2.imwrite(str(tmp_path / f"red{suffix}"), colour)
    source = read_source(tmp_path / f"red{suffix}")
    assert source.frames[0][0, 0] == pytest.approx(0.299, abs=0.01)  # ITU-R BT.601 luma of red
    assert source.warnings == ["colour image converted to grey"]


def test_screen_capture_with_a_flat_coloured_margin_is_not_a_colour_image(tmp_path):
    capture = np.empty((40, 50, 3), np.uint8)
    capture[:] = (40, 31, 28)  # one user-interface colour (BGR)
    capture[5:35, 10:40] = np.round(RAMP[:30, :30, None] * 255).astype(np.uint8)  # grey image inside
    cv2.imwrite(str(tmp_path / "capture.png"), capture)
    source = read_source(tmp_path / "capture.png")
    assert source.warnings == []
    np.testing.assert_allclose(source.frames[0][5:35, 10:40], np.round(RAMP[:30, :30] * 255) / 255, atol=1e-5)


def test_corrupt_image_and_unknown_suffix(tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((32, 32), np.uint8))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:20])
    with pytest.raises(SourceError) as info:
        read_source(tmp_path / "cut.png")
    assert info.value.reason == "corrupt-image"
    (tmp_path / "notes.xyz").write_text("x")
    with pytest.raises(SourceError) as info:
        read_source(tmp_path / "notes.xyz")
    assert info.value.reason == "unsupported-file-type"


def test_digest_depends_on_content_only(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    assert read_source(tmp_path / "a.png").digest == read_source(tmp_path / "b.png").digest
