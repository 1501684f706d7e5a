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


# ---------------------------------------------------------------- the input contract, at each boundary


@pytest.mark.parametrize("values", [[0.0, 1.0], [0.0, 0.5], [0.25, 1.0]], ids=["full", "low", "high"])
def test_floats_in_the_unit_range_are_taken_as_they_are(values):
    array = np.array([values], np.float32)
    assert np.array_equal(to_unit_float(array), array)
    assert np.array_equal(to_unit_float(torch.from_numpy(array)), array)
    assert np.array_equal(to_unit_float(PIL.Image.fromarray(array, mode="F")), array)


@pytest.mark.parametrize(
    "values, message",
    [
        ([0.0, 255.0], r"float images must lie in \[0, 1\], got values in \[0, 255\]: divide by the full-scale value"),
        ([0.0, 1.0001], r"got values in \[0, 1\.\d*\]: divide by"),
        ([-1.0, 1.0], r"got values in \[-1, 1\]: for diffusers' \[-1, 1\] convention pass \(x \+ 1\) / 2"),
        ([-0.001, 0.5], r"got values in \[-0\.001, 0\.5\]: for diffusers'"),
        ([0.0, np.inf], "NaN or infinite"),
    ],
    ids=["0..255", "just_above_1", "minus_one_to_one", "just_below_0", "inf"],
)
def test_floats_outside_the_unit_range_are_refused(values, message):
    array = np.array([values], np.float32)
    for image in (array, torch.from_numpy(array), array.astype(np.float64)):
        with pytest.raises(ValueError, match=message):
            to_grey_images(image)


def test_integers_are_read_by_their_dtype_range_or_bits_stored():
    twelve_bit = np.array([[0, 2048, 4095]], np.uint16)
    assert np.allclose(to_unit_float(twelve_bit), twelve_bit / 65535)  # by the dtype: dark
    ((grey, is16),) = to_grey_images(twelve_bit, bits_stored=12)
    assert is16 and np.allclose(grey, [[0.0, 2048 / 4095, 1.0]])  # by the bit depth: full range
    ((grey, _),) = to_grey_images(torch.from_numpy(twelve_bit.astype(np.int32)), bits_stored=12)
    assert np.allclose(grey, [[0.0, 2048 / 4095, 1.0]])
    assert to_grey_images(np.array([[0, 255]], np.uint8))[0][0].tolist() == [[0.0, 1.0]]
    assert to_grey_images(np.array([[0, 65535]], np.int32))[0][0].tolist() == [[0.0, 1.0]]  # PIL's mode I
    with pytest.raises(ValueError, match=r"values 0\.\.4096, outside 0\.\.4095 \(read by bits_stored=12\)"):
        to_grey_images(np.array([[0, 4096]], np.uint16), bits_stored=12)
    with pytest.raises(ValueError, match=r"values -1\.\.3, outside 0\.\.65535 \(read by its dtype int16\)"):
        to_grey_images(torch.tensor([[-1, 3]], dtype=torch.int16))
    with pytest.raises(ValueError, match=r"values 0\.\.70000, outside 0\.\.65535"):
        to_grey_images(np.array([[0, 70000]], np.int32))
    for bad in (0, 17, 12.5, True):
        with pytest.raises(ValueError, match="bits_stored must be an integer from 1 to 16"):
            to_grey_images(twelve_bit, bits_stored=bad)


def test_a_float_file_out_of_range_names_the_file(tmp_path):
    path = tmp_path / "hu.tif"
    PIL.Image.fromarray(np.array([[0.0, 300.0]], np.float32), mode="F").save(path)
    with pytest.raises(ValueError, match=r"hu\.tif: float images must lie in \[0, 1\]"):
        to_grey_images(path)


def test_colour_photographs_get_a_warning_and_grey_rgb_does_not(tmp_path):
    from medshift.image_processor import ColourImageWarning

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey_rgb = np.repeat(photo[..., :1], 3, axis=-1)
    with pytest.warns(ColourImageWarning, match="colour picture, not a grey X-ray"):
        to_grey_images(photo)
    PIL.Image.fromarray(photo).save(tmp_path / "holiday.jpg")
    with pytest.warns(ColourImageWarning, match="holiday.jpg is a colour picture"):
        to_grey_images(tmp_path / "holiday.jpg")
    with pytest.warns(ColourImageWarning):
        to_grey_images(torch.from_numpy(photo).permute(2, 0, 1).float() / 255)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ColourImageWarning)
        to_grey_images(grey_rgb)
        to_grey_images(PIL.Image.fromarray(grey_rgb))
