"""Training and evaluation prepare the same dataset image identically (8- and 16-bit)."""

from __future__ import annotations

import pytest
import torch

from medshift.evaluate import load_evaluation_data
from medshift.training.data import XDigiSkullImages, load_split, to_model_range


@pytest.mark.parametrize("dataset_fixture", ["tiny_dataset", "tiny_dataset_16bit"])
@pytest.mark.parametrize("size", [32, 80])  # shrinking and enlarging
def test_training_and_evaluation_prepare_identical_tensors(request, dataset_fixture, size):
    dataset = str(request.getfixturevalue(dataset_fixture))
    split = load_split(dataset, "validation")
    training = XDigiSkullImages(split, resolution=size)
    synthetic_low = [i for i, label in enumerate(split["label"]) if label == 0]
    evaluation = load_evaluation_data(dataset, "validation", "synthetic_low", "real_normal", size)
    assert len(evaluation.source_images) == len(synthetic_low) > 0
    for row, array in zip(synthetic_low, evaluation.source_images):
        assert torch.equal(training[row]["pixel_values"], to_model_range(array))
    assert split.features["image"].decode and split[0]["image"].mode == ("I;16" if "16" in dataset_fixture else "L")
