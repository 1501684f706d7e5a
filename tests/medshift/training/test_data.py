"""Reading a built X-DigiSkull for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medshift.training.data import XDigiSkullImages, load_split, random_crop
from medshift.image_processor import resize_square, to_unit_float


def test_load_split_reads_images_and_labels(tiny_dataset):
    data = load_split(str(tiny_dataset), "train")
    assert len(data) == 40
    images = XDigiSkullImages(data, resolution=32)
    item = images[3]
    assert item["pixel_values"].shape == (1, 32, 32)
    assert item["pixel_values"].dtype == torch.float32
    assert -1.0 <= float(item["pixel_values"].min()) and float(item["pixel_values"].max()) <= 1.0
    assert int(item["label"]) == 3


def test_unknown_split_names_the_split(tiny_dataset):
    with pytest.raises(ValueError, match="nonexistent"):
        load_split(str(tiny_dataset), "nonexistent")


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read dataset"):
        load_split(str(tmp_path / "no-such-dataset"), "train")


def test_16_bit_and_8_bit_images_read_alike():
    from PIL import Image

    ramp = np.linspace(0, 1, 64 * 64, dtype=np.float64).reshape(64, 64)
    eight = to_unit_float(Image.fromarray(np.round(ramp * 255).astype(np.uint8), mode="L"))
    sixteen = to_unit_float(Image.fromarray(np.round(ramp * 65535).astype(np.uint16)))
    assert eight.dtype == sixteen.dtype == np.float32
    assert np.abs(eight - sixteen).max() <= 0.5 / 255 + 1e-6
    assert sixteen.min() == 0.0 and sixteen.max() == 1.0


def test_resize_keeps_mean_and_crop_has_the_size():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (96, 96)).astype(np.float32)
    small = resize_square(image, 32)
    assert small.shape == (32, 32)
    assert abs(float(small.mean()) - float(image.mean())) < 1e-3  # INTER_AREA averages
    crop = random_crop(torch.from_numpy(image)[None], 40)
    assert crop.shape == (1, 40, 40)
    with pytest.raises(ValueError, match="larger than the image"):
        random_crop(torch.from_numpy(image)[None], 100)
