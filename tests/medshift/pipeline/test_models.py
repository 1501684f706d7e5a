from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel

from medshift.models import demo_unet_config, demo_vae_config, paper_unet_config, sd_vae_config
from xdigiskull.classes import CLASS_NAMES


def millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_demo_models_sizes_and_shapes():
    vae = AutoencoderKL(**demo_vae_config())
    unet = UNet2DModel(**demo_unet_config())
    assert 4.0 < millions(vae) < 6.5
    assert 2.0 < millions(unet) < 3.5
    assert unet.config.num_class_embeds == len(CLASS_NAMES) + 1
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 1, 64, 96)).latent_dist.mean
        assert latents.shape == (1, 4, 8, 12)  # 8x downsampling, 4 channels
        velocity = unet(latents, torch.tensor([500.0]), class_labels=torch.tensor([len(CLASS_NAMES)])).sample
        assert velocity.shape == latents.shape
        assert vae.decode(latents).sample.shape == (1, 1, 64, 96)


@pytest.mark.parametrize(
    "make,expected_millions",
    [(lambda: UNet2DModel(**paper_unet_config()), 72.7), (lambda: AutoencoderKL(**sd_vae_config()), 83.7)],
    ids=["paper_unet", "sd_vae"],
)
def test_paper_sized_architectures(make, expected_millions):
    assert millions(make()) == pytest.approx(expected_millions, abs=0.2)


def test_paper_unet_is_class_conditional():
    config = paper_unet_config()
    assert config["num_class_embeds"] == len(CLASS_NAMES) + 1
    assert config["in_channels"] == config["out_channels"] == sd_vae_config()["latent_channels"]
