"""Grey images <-> scaled VAE latents: the one place the pipeline and training cross the VAE.

Two kinds of diffusers autoencoder work here:

- `AutoencoderKL` (Stable Diffusion's VAE, and MedShift's first demo VAE): a posterior per latent cell;
  encoding takes its mode (mean).
- `AutoencoderDC` (deep-compression autoencoder): a deterministic encoder. MedShift's shipped VAE is a
  small one: its RMS norms act on each pixel's channels, so a model trained on random crops behaves the
  same on a whole 780x780 image (AutoencoderKL's GroupNorm normalises over the whole image, and a
  crop-trained one shifts intensities when it meets a full image), and its space-to-channel shortcuts
  make the identity easy to learn.

Grey images and RGB VAEs: our own VAEs (`medshift train-vae`) take one channel. A pretrained RGB VAE
(e.g. stabilityai/sd-vae-ft-mse, the paper's choice) gets the grey image replicated to three channels
on encode, and its three decoded channels are averaged back to one on decode.
Latents are scaled as diffusers does: latent = (encoding - shift_factor) * scaling_factor.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from diffusers import AutoencoderDC, AutoencoderKL

Autoencoder = Union[AutoencoderKL, AutoencoderDC]
AUTOENCODERS = (AutoencoderKL, AutoencoderDC)


def downsampling_factor(vae: Autoencoder) -> int:
    """Pixels per latent side: both autoencoders halve the side once per block but the last."""
    channels = getattr(vae.config, "block_out_channels", None) or vae.config.encoder_block_out_channels
    return 2 ** (len(channels) - 1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right to sides that are multiples of `multiple` (reflect where the
    image is large enough, else replicate); returns the padded tensor and the old (H, W) to crop back to."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / multiple) * multiple - h, math.ceil(w / multiple) * multiple - w
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    return x, (h, w)


def vae_input(vae: Autoencoder, pixels: torch.Tensor) -> torch.Tensor:
    """Grey (B, 1, H, W) pixels -> what the VAE takes: unchanged, or replicated to RGB."""
    if vae.config.in_channels == 3:
        return pixels.expand(-1, 3, -1, -1)
    return pixels


def vae_output(vae: Autoencoder, decoded: torch.Tensor) -> torch.Tensor:
    """What the VAE decodes -> grey (B, 1, H, W): unchanged, or the mean of the RGB channels."""
    if decoded.shape[1] == 3:
        return decoded.mean(dim=1, keepdim=True)
    return decoded


def latent_scale_shift(vae: Autoencoder) -> tuple[float, float]:
    """(scaling_factor, shift_factor) from the VAE config; latent = (encoding - shift) * scale."""
    shift = getattr(vae.config, "shift_factor", None)
    return float(vae.config.scaling_factor), float(shift) if shift is not None else 0.0


def encode_unscaled(vae: Autoencoder, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE's latent of grey pixels (B, 1, H, W) in [-1, 1], before scaling.

    Sides that are not multiples of the VAE's factor are padded first (`pad_to_multiple`): a 780x780
    image gives the latents of 784x784, 98x98 at 8x. An RGB VAE sees the grey replicated (`vae_input`).
    An AutoencoderKL gives its posterior mode (mean), not a sample: encoding is deterministic, a
    training cache equals direct encoding exactly, and the posterior's spread is negligible for a
    KL-light VAE. Gradients flow (train-vae uses it); callers that do not train wrap it in no_grad.
    """
    pixels, _ = pad_to_multiple(pixels, downsampling_factor(vae))
    encoded = vae.encode(vae_input(vae, pixels))
    return encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latent


@torch.no_grad()
def encode_grey(vae: Autoencoder, pixels: torch.Tensor) -> torch.Tensor:
    """Encode grey pixels in [-1, 1] (any size: see `encode_unscaled`) to scaled latents."""
    scale, shift = latent_scale_shift(vae)
    latent = encode_unscaled(vae, pixels.to(device=vae.device, dtype=vae.dtype))
    return (latent - shift) * scale


@torch.no_grad()
def decode_grey(vae: Autoencoder, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> grey pixels (B, 1, H, W) in about [-1, 1], float32 (not clipped)."""
    scale, shift = latent_scale_shift(vae)
    decoded = vae.decode(latents.to(vae.dtype) / scale + shift).sample.float()
    return vae_output(vae, decoded)
