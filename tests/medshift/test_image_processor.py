from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from medshift.image_processor import resize, resize_square, to_grey_images, to_unit_float, unit_to_pil
from xdigiskull.image_io import atomic_write, is_dicom


def test_is_dicom_by_suffix_or_marker(tmp_path, write_dicom):
    no_suffix = write_dicom(tmp_path / "IM0001", np.full((8, 8), 0.5))
    assert is_dicom(no_suffix)  # PACS exports often have no suffix: the 'DICM' marker decides
    assert is_dicom(tmp_path / "missing.DCM")  # suffix alone, even before the file exists
    (tmp_path / "notes").write_bytes(b"x" * 200)
    assert not is_dicom(tmp_path / "notes")
    assert not is_dicom(tmp_path / "absent")
    PIL.Image.new("L", (4, 4)).save(tmp_path / "a.png")
    assert not is_dicom(tmp_path / "a.png")


def test_sixteen_bit_is_known_from_the_type_never_from_the_values():
    dark16 = np.full((4, 5), 200, np.uint16)  # a 16-bit image whose values would fit in 8 bits
    expected = np.full((4, 5), 200 / 65535, np.float32)
    assert np.array_equal(to_unit_float(dark16), expected)
    assert np.array_equal(to_unit_float(PIL.Image.fromarray(dark16)), expected)  # mode I;16
    assert np.array_equal(to_unit_float(PIL.Image.fromarray(dark16.astype(np.int32))), expected)  # mode I
    assert np.array_equal(to_unit_float(np.full((4, 5), 200, np.uint8)), np.full((4, 5), 200 / 255, np.float32))
    ((grey, is16),) = to_grey_images(torch.full((1, 4, 5), 200, dtype=torch.int16))
    assert is16 and np.array_equal(grey, expected)
    with pytest.raises(ValueError, match="uint8, uint16, int16 or int32, got dtype int64"):
        to_unit_float(np.zeros((3, 3), np.int64))


def test_undecoded_dataset_image(tmp_path):
    PIL.Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "a.png")
    assert to_unit_float({"bytes": None, "path": str(tmp_path / "a.png")}).tolist() == [[0.0, 1.0]]


def test_resize_shrinks_by_area_and_enlarges_bicubically():
    image = np.zeros((4, 6), np.float32)
    image[:, :3] = 1.0
    assert np.allclose(resize(image, (2, 3)), [[1, 0.5, 0], [1, 0.5, 0]])  # area averages neighbours
    assert resize(image, (4, 6)) is image
    square = resize_square(image, 8)  # centre 4x4 crop, enlarged; bicubic overshoot clipped
    assert square.shape == (8, 8) and square.min() >= 0 and square.max() <= 1
    batch = torch.from_numpy(image)[None, None]
    assert torch.allclose(resize(batch, (2, 3))[0, 0], torch.tensor([[1, 0.5, 0], [1, 0.5, 0]]))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "sub" / "card.md"
    with atomic_write(path) as temporary:
        temporary.write_text("first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_write(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["card.md"]  # no temporary left behind


def test_unit_to_pil_rounds_to_8_or_16_bit_and_clips():
    grey = np.array([[-0.5, 0.0, 0.5, 1.0, 1.5]], dtype=np.float32)
    sixteen = unit_to_pil(grey, sixteen_bit=True)
    assert sixteen.mode == "I;16" and np.asarray(sixteen).tolist() == [[0, 0, 32768, 65535, 65535]]
    eight = unit_to_pil(grey, sixteen_bit=False)
    assert eight.mode == "L" and np.asarray(eight).tolist() == [[0, 0, 128, 255, 255]]
    assert to_grey_images(sixteen)[0][1] and not to_grey_images(eight)[0][1]  # the bit depth reads back
