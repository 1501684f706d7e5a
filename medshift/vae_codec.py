"""Grey images <-> scaled VAE latents: the one place the pipeline and training cross the VAE.

Grey images and RGB VAEs: our own VAE (`medshift train-vae`) takes one channel. A pretrained RGB
AutoencoderKL (e.g. stabilityai/sd-vae-ft-mse, the paper's choice) gets the grey image replicated to
three channels on encode, and its three decoded channels are averaged back to one on decode.
Latents are scaled as diffusers does: latent = (posterior mode - shift_factor) * scaling_factor.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL


def vae_input(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """Grey (B, 1, H, W) pixels -> what the VAE takes: unchanged, or replicated to RGB."""
    if vae.config.in_channels == 3:
        return pixels.expand(-1, 3, -1, -1)
    return pixels


def vae_output(vae: AutoencoderKL, decoded: torch.Tensor) -> torch.Tensor:
    """What the VAE decodes -> grey (B, 1, H, W): unchanged, or the mean of the RGB channels."""
    if decoded.shape[1] == 3:
        return decoded.mean(dim=1, keepdim=True)
    return decoded


def latent_scale_shift(vae: AutoencoderKL) -> tuple[float, float]:
    """(scaling_factor, shift_factor) from the VAE config; latent = (mode - shift) * scale."""
    shift = getattr(vae.config, "shift_factor", None)
    return float(vae.config.scaling_factor), float(shift) if shift is not None else 0.0


@torch.no_grad()
def encode_grey(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """Encode grey pixels in [-1, 1] to scaled latents.

    Uses the posterior mode (mean), not a sample: encoding is deterministic, a training cache equals
    direct encoding exactly, and the posterior's spread is negligible for a KL-light VAE.
    """
    scale, shift = latent_scale_shift(vae)
    dist = vae.encode(vae_input(vae, pixels.to(device=vae.device, dtype=vae.dtype))).latent_dist
    return (dist.mode() - shift) * scale


@torch.no_grad()
def decode_grey(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> grey pixels (B, 1, H, W) in about [-1, 1], float32 (not clipped)."""
    scale, shift = latent_scale_shift(vae)
    decoded = vae.decode(latents.to(vae.dtype) / scale + shift).sample.float()
    return vae_output(vae, decoded)
