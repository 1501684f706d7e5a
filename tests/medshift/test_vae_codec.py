"""medshift.vae_codec: grey images <-> scaled latents, for grey and RGB VAEs."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from synthetic import TINY_DC_VAE_CONFIG, TINY_VAE_CONFIG

from medshift.vae_codec import decode_grey, downsampling_factor, encode_grey, pad_to_multiple


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


def _dc_vae(**config):
    from medshift.models import make_autoencoder

    torch.manual_seed(0)
    return make_autoencoder({**TINY_DC_VAE_CONFIG, **config}).eval()


def test_an_autoencoder_dc_encodes_deterministically_and_scales_like_a_kl_vae():
    vae = _dc_vae(scaling_factor=0.5)
    pixels = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        raw = vae.encode(pixels).latent
        torch.testing.assert_close(encode_grey(vae, pixels), raw * 0.5)
        torch.testing.assert_close(decode_grey(vae, encode_grey(vae, pixels)), vae.decode(raw).sample, rtol=1e-5, atol=1e-5)
    assert downsampling_factor(vae) == 8 and downsampling_factor(_vae(1)) == 8


def test_sides_that_are_not_multiples_of_the_factor_are_padded_by_reflection():
    # X-DigiSkull's 780 px is not a multiple of 8: encode_grey sees 784 px, reflected at the bottom/right
    vae = _dc_vae()
    pixels = torch.rand(1, 1, 36, 44) * 2 - 1
    padded, size = pad_to_multiple(pixels, 8)
    assert size == (36, 44) and padded.shape[-2:] == (40, 48)
    torch.testing.assert_close(padded[..., :36, :44], pixels)
    torch.testing.assert_close(padded[..., 36:, :44], pixels[..., 31:35, :].flip(-2))  # reflected rows
    torch.testing.assert_close(encode_grey(vae, pixels), encode_grey(vae, padded))
    assert encode_grey(vae, pixels).shape == (1, 4, 5, 6)


def test_the_autoencoder_dc_encoder_sees_a_crop_as_it_sees_the_whole_image():
    """Why the shipped VAE is an AutoencoderDC: its norms act per pixel, so a crop's latents equal the
    whole image's latents there (away from the crop's border), and crop training carries over to whole
    images. AutoencoderKL's GroupNorm normalises over the whole image: its latents of the crop differ."""
    torch.manual_seed(1)
    image = torch.rand(1, 1, 256, 256) * 2 - 1
    image[..., 128:, :] = image[..., 128:, :] * 0.2 + 0.7  # a bright lower half: crop and image statistics differ
    crop = image[..., 64:192, 64:192]  # latent cells 8..24 of the image
    dc, kl = _dc_vae(), _vae(1)
    for vae, same in ((dc, True), (kl, False)):
        whole = encode_grey(vae, image)[..., 14:18, 14:18]
        inside = encode_grey(vae, crop)[..., 6:10, 6:10]  # the same cells, six cells (past the receptive field) from the crop's border
        assert torch.allclose(whole, inside, atol=1e-4) is same, type(vae).__name__
