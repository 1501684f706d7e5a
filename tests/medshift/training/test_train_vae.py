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


@pytest.mark.parametrize("vae_config", [TINY_VAE_CONFIG, TINY_DC_VAE_CONFIG], ids=["kl", "dc"])
def test_decoder_only_keeps_the_encoder_and_its_latent_scale(tiny_dataset, tmp_path, vae_config):
    # a trained VAE, then its decoder fine-tuned at another resolution (as the shipped one was, for the
    # UNet's 512 px): the latents a UNet was trained on must not move, only their decoding
    run_vae_training(tiny_vae_train_config(tiny_dataset, dict(vae_config), tmp_path / "vae", resolution=64, max_steps=30, num_sample_images=0))
    config = tiny_vae_train_config(
        tiny_dataset, dict(vae_config), tmp_path / "decoder", resolution=48, init_vae=str(tmp_path / "vae"), decoder_only=True, learning_rate=1e-3
    )
    result = run_vae_training(config)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first, (first, last)

    before, after = load_vae(str(tmp_path / "vae")), load_vae(str(tmp_path / "decoder"))
    assert after.config.scaling_factor == before.config.scaling_factor
    old, new = before.state_dict(), after.state_dict()
    changed = {name for name in old if not torch.equal(old[name], new[name])}
    assert changed and all(name.startswith(("decoder.", "post_quant_conv.")) for name in changed), sorted(changed)
    pixels = torch.stack([prepare_example(example, 48)["pixel_values"] for example in load_split(str(tiny_dataset), "validation")])
    assert torch.equal(encode_grey(before, pixels), encode_grey(after, pixels))


def test_decoder_only_needs_a_vae_to_start_from(tiny_dataset, tmp_path, tiny_vae_config):
    with pytest.raises(ValueError, match="--decoder-only .* --init-vae"):
        run_vae_training(tiny_vae_train_config(tiny_dataset, tiny_vae_config, tmp_path, decoder_only=True))
