"""The builder's PNG encoder: every encoding decodes back to the same pixels with Pillow and OpenCV."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from xdigiskull.png import encode_grey_png


def _decode_pillow(data: bytes) -> tuple[np.ndarray, str]:
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image), image.mode


@pytest.mark.parametrize("dtype, mode", [(np.uint8, "L"), (np.uint16, "I;16")])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 13), (780, 780)])
def test_round_trip_pillow_and_opencv(dtype, mode, shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    pixels.flat[0], pixels.flat[-1] = 0, np.iinfo(dtype).max  # both ends of the range
    data = encode_grey_png(pixels)
    decoded, decoded_mode = _decode_pillow(data)
    assert decoded_mode == mode
    np.testing.assert_array_equal(decoded.astype(dtype), pixels)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), pixels)


def test_chunks_and_crcs_are_valid():
    data = encode_grey_png(np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (4, 3, 8, 0)


def test_same_pixels_same_bytes_and_noisy_images_compress():
    pixels = (np.random.default_rng(0).normal(128, 4, (256, 256)).clip(0, 255)).astype(np.uint8)
    assert encode_grey_png(pixels) == encode_grey_png(pixels.copy())
    assert len(encode_grey_png(pixels)) < 0.7 * pixels.nbytes


def test_non_contiguous_input():
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)[::2, 1::3]
    np.testing.assert_array_equal(_decode_pillow(encode_grey_png(pixels))[0].astype(np.uint16), pixels)


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4), np.uint8), np.zeros(4, np.uint8)]
)
def test_rejects_what_it_cannot_encode(pixels):
    with pytest.raises(ValueError, match="2-D uint8 or uint16"):
        encode_grey_png(pixels)
