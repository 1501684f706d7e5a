"""`train-vae`: the reconstruction loss falls and the latents come out with unit variance."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from medshift.training.common import list_checkpoints
from medshift.training.data import load_split, prepare_example
from medshift.vae_codec import encode_grey
from medshift.training.train_vae import VaeTrainConfig, run_vae_training


def test_vae_learns_and_sets_the_scaling_factor(tiny_dataset, tmp_path, tiny_vae_config):
    result = run_vae_training(
        VaeTrainConfig(
            dataset=str(tiny_dataset),
            output_dir=str(tmp_path / "vae"),
            resolution=64,
            crop_size=32,
            vae_config=tiny_vae_config,
            max_steps=40,
            learning_rate=2e-3,
            warmup_steps=2,
            checkpoint_every=0,
            num_sample_images=2,
            show_progress=False,
        )
    )
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)

    vae = AutoencoderKL.from_pretrained(str(tmp_path / "vae"))
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "vae" / "samples" / "reconstructions.png").exists()
    # scaling_factor = 1 / std of the training latents, so the scaled latents have unit spread
    data = load_split(str(tiny_dataset), "train")
    pixels = torch.stack([prepare_example(example, 64)["pixel_values"] for example in data])
    assert float(encode_grey(vae.eval(), pixels).std()) == pytest.approx(1.0, rel=0.05)


def test_crop_larger_than_resolution_is_refused(tiny_dataset, tmp_path, tiny_vae_config):
    with pytest.raises(ValueError, match="crop_size"):
        run_vae_training(VaeTrainConfig(dataset=str(tiny_dataset), output_dir=str(tmp_path), resolution=32, crop_size=64, vae_config=tiny_vae_config))


def test_a_run_stopped_by_its_time_budget_keeps_a_resumable_checkpoint(tiny_dataset, tmp_path, tiny_vae_config):
    # a budget far below one step's time: training stops after its first step, between checkpoints
    config = VaeTrainConfig(
        dataset=str(tiny_dataset), output_dir=str(tmp_path / "vae"), resolution=64, crop_size=32, vae_config=tiny_vae_config,
        max_steps=1000, max_minutes=1e-9, checkpoint_every=50, num_sample_images=0, show_progress=False,
    )  # fmt: skip
    assert run_vae_training(config).global_step == 1
    assert [step for step, _ in list_checkpoints(tmp_path / "vae")] == [1]


def test_the_autoencoder_dc_trains_on_crops_of_native_size_images_and_loads_back(tiny_dataset, tmp_path):
    """The shipped VAE's kind: no KL term, a resolution that is not a multiple of its factor (as 780 is not
    of 8: full images are padded for the scaling factor and the grid), saved as AutoencoderDC."""
    from synthetic import TINY_DC_VAE_CONFIG

    from medshift.training.latents import load_vae

    result = run_vae_training(
        VaeTrainConfig(
            dataset=str(tiny_dataset), output_dir=str(tmp_path / "vae"), resolution=60, crop_size=32,
            vae_config=dict(TINY_DC_VAE_CONFIG), max_steps=40, learning_rate=2e-3, warmup_steps=2,
            checkpoint_every=0, num_sample_images=2, show_progress=False,
        )
    )  # fmt: skip
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    vae = load_vae(str(tmp_path / "vae"))
    assert type(vae).__name__ == "AutoencoderDC"
    assert (tmp_path / "vae" / "samples" / "reconstructions.png").exists()
    pixels = torch.stack([prepare_example(example, 60)["pixel_values"] for example in load_split(str(tiny_dataset), "train")])
    latents = encode_grey(vae, pixels)
    assert latents.shape[-2:] == (8, 8)  # 60 px padded to 64
    assert float(latents.std()) == pytest.approx(1.0, rel=0.05)


def test_a_crop_that_is_not_a_multiple_of_the_factor_is_refused(tiny_dataset, tmp_path, tiny_vae_config):
    with pytest.raises(ValueError, match="crop_size .* multiple of the VAE's downsampling factor 8"):
        run_vae_training(VaeTrainConfig(dataset=str(tiny_dataset), output_dir=str(tmp_path), resolution=64, crop_size=20, vae_config=tiny_vae_config))
