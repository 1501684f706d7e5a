"""`train-vae`: the reconstruction loss falls and the latents come out with unit variance."""

from __future__ import annotations

import pytest
import torch
from synthetic import TINY_DC_VAE_CONFIG, TINY_VAE_CONFIG, tiny_vae_train_config

from medshift.training.common import list_checkpoints
from medshift.training.data import load_split, prepare_example
from medshift.training.latents import load_vae
from medshift.training.train_vae import run_vae_training
from medshift.vae_codec import encode_grey


@pytest.mark.parametrize(
    "vae_config,resolution,class_name",
    # the first demo VAE's kind; the shipped VAE's kind (no KL term), at a resolution that is not a multiple of
    # its factor, as 780 is not of 8 (full images are padded for the scaling factor and the grid)
    [(TINY_VAE_CONFIG, 64, "AutoencoderKL"), (TINY_DC_VAE_CONFIG, 60, "AutoencoderDC")],
    ids=["kl", "dc"],
)
def test_vae_learns_and_sets_the_scaling_factor(tiny_dataset, tmp_path, vae_config, resolution, class_name):
    config = tiny_vae_train_config(tiny_dataset, dict(vae_config), tmp_path / "vae", resolution=resolution)
    result = run_vae_training(config)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)

    vae = load_vae(str(tmp_path / "vae"))
    assert type(vae).__name__ == class_name
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "vae" / "samples" / "reconstructions.png").exists()
    # scaling_factor = 1 / std of the training latents, so the scaled latents have unit spread
    data = load_split(str(tiny_dataset), "train")
    pixels = torch.stack([prepare_example(example, resolution)["pixel_values"] for example in data])
    latents = encode_grey(vae, pixels)
    assert latents.shape[-2:] == (8, 8)  # 64 px, or 60 px padded to 64
    assert float(latents.std()) == pytest.approx(1.0, rel=0.05)


def test_crop_larger_than_resolution_is_refused(tiny_dataset, tmp_path, tiny_vae_config):
    with pytest.raises(ValueError, match="crop_size"):
        run_vae_training(tiny_vae_train_config(tiny_dataset, tiny_vae_config, tmp_path, resolution=32, crop_size=64))


def test_a_run_stopped_by_its_time_budget_keeps_a_resumable_checkpoint(tiny_dataset, tmp_path, tiny_vae_config):
    # a budget far below one step's time: training stops after its first step, between checkpoints
    config = tiny_vae_train_config(
        tiny_dataset, tiny_vae_config, tmp_path / "vae", max_steps=1000, max_minutes=1e-9, checkpoint_every=50, num_sample_images=0
    )
    assert run_vae_training(config).global_step == 1
    assert [step for step, _ in list_checkpoints(tmp_path / "vae")] == [1]


def test_a_crop_that_is_not_a_multiple_of_the_factor_is_refused(tiny_dataset, tmp_path, tiny_vae_config):
    with pytest.raises(ValueError, match="crop_size .* multiple of the VAE's downsampling factor 8"):
        run_vae_training(tiny_vae_train_config(tiny_dataset, tiny_vae_config, tmp_path, crop_size=20))
