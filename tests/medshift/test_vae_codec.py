"""medshift.vae_codec: grey images <-> scaled latents, for grey and RGB VAEs."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from synthetic import TINY_VAE_CONFIG

from medshift.vae_codec import decode_grey, encode_grey


def _vae(channels: int, **config) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(**{**TINY_VAE_CONFIG, "in_channels": channels, "out_channels": channels, **config}).eval()


def test_latents_are_the_scaled_and_shifted_posterior_mode():
    vae = _vae(1, scaling_factor=0.5, shift_factor=0.25)
    pixels = torch.rand(2, 1, 32, 32) * 2 - 1
    mode = vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(encode_grey(vae, pixels), (mode - 0.25) * 0.5)
    expected = vae.decode(mode).sample
    torch.testing.assert_close(decode_grey(vae, encode_grey(vae, pixels)), expected, rtol=1e-5, atol=1e-5)


def test_an_rgb_vae_sees_the_grey_image_replicated_and_decodes_to_grey():
    vae = _vae(3)
    pixels = torch.rand(2, 1, 32, 32) * 2 - 1
    latents = encode_grey(vae, pixels)
    torch.testing.assert_close(latents, vae.encode(pixels.repeat(1, 3, 1, 1)).latent_dist.mode() * vae.config.scaling_factor)
    decoded = decode_grey(vae, latents)
    assert decoded.shape == (2, 1, 32, 32) and decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, vae.decode(latents / vae.config.scaling_factor).sample.mean(dim=1, keepdim=True))
