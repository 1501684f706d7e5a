"""Conditional flow matching, the few lines MedShift trains and samples with.

Convention (as in torchcfm): time runs from t = 0 (Gaussian noise) to t = 1 (data latent).

    x_t = (1 - (1 - sigma_min) * t) * eps + t * x1          (probability path)
    u_t = x1 - (1 - sigma_min) * eps                        (its velocity, the regression target)

The network predicts the velocity. Classifier-free guidance mixes the conditional and the
unconditional (null-class) predictions: v = v_u + w * (v_c - v_u).

The noise eps may carry an offset (`offset_noise`): each latent channel of each sample is shifted by one
Gaussian constant. Plain per-cell noise barely touches a channel's mean over a 64x64 latent (its noise
averages out), so the flow could never move an image's global brightness; see `offset_noise`.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

SIGMA_MIN = 1e-4


def offset_noise(
    shape: tuple[int, ...],
    noise_offset: float = 0.0,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Gaussian noise of `shape` (batch, channels, height, width), plus `noise_offset` times one standard
    Gaussian per sample and channel, constant over the image ("offset noise").

    Why: MedShift's domains differ in global brightness and contrast. Over 64x64 latent cells per-cell noise
    leaves a channel's mean almost untouched even at t = 0.3 (its noise on the mean is 1/64 of its own), so
    the inverted latent z_tau keeps the source's global brightness, a value the target class never showed
    the network, which then keeps it. With an offset about as large as the domains' difference in channel
    means (in units of the scaled latents) the prior covers those values, and the target class sets the
    brightness. With `noise_offset = 0` this is exactly `randn` (no extra draws).
    """
    device = torch.device(device) if device is not None else None
    noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    if noise_offset:
        # drawn after the per-cell noise, so that noise_offset = 0 leaves the generators as plain randn does
        offsets = randn_tensor((*shape[:2], 1, 1), generator=generator, device=device, dtype=dtype)
        noise = noise + noise_offset * offsets
    return noise


def sample_path(
    x1: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, sigma_min: float = SIGMA_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_t, u_t) for data `x1`, noise `eps` and times `t` of shape (batch,)."""
    t_ = t.view(-1, *([1] * (x1.ndim - 1)))
    x_t = (1 - (1 - sigma_min) * t_) * eps + t_ * x1
    u_t = x1 - (1 - sigma_min) * eps
    return x_t, u_t


def drop_labels(labels: torch.Tensor, null_label: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by `null_label` with probability `p` (label dropout for CFG)."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device="cpu").to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def guided_velocity(
    v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free guidance: v_u + w * (v_c - v_u); w = 1 is plain conditional sampling."""
    return v_uncond + guidance_scale * (v_cond - v_uncond)
