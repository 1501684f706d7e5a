"""Conditional flow matching, the few lines MedShift trains and samples with.

Convention (as in torchcfm): time runs from t = 0 (Gaussian noise) to t = 1 (data latent).

    x_t = (1 - (1 - sigma_min) * t) * eps + t * x1          (probability path)
    u_t = x1 - (1 - sigma_min) * eps                        (its velocity, the regression target)

The network predicts the velocity. Classifier-free guidance mixes the conditional and the
unconditional (null-class) predictions: v = v_u + w * (v_c - v_u).

The noise eps may carry an offset and coarse levels (`prior_noise`): each latent channel of each sample is
shifted by one Gaussian constant (`offset_noise`), and Gaussian noise drawn on grids 2, 4, 8, ... times coarser
than the latent is upsampled and added (`coarse_noise`, "pyramid noise"). Plain per-cell noise barely touches
the coarse scales of a 64x64 latent (it averages out over them), so a flow trained on it cannot move an
image's global brightness or its large-scale shading; see `prior_noise`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
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


def check_coarse_noise(coarse_noise: Sequence[float] | None) -> tuple[float, ...]:
    """`coarse_noise` as a tuple of finite weights >= 0; a ValueError naming the bad entry otherwise."""
    weights = tuple(float(weight) for weight in (coarse_noise or ()))
    for level, weight in enumerate(weights, start=1):
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"coarse_noise weights must be finite and >= 0, got {weight} for level {level} (1/{2**level} of the latent)")
    return weights


def prior_noise(
    shape: tuple[int, ...],
    noise_offset: float = 0.0,
    coarse_noise: Sequence[float] | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The prior a MedShift model is trained and noised with: `offset_noise`, plus coarse noise levels.

    `coarse_noise[k - 1]` is the standard deviation of Gaussian noise drawn on a grid 2**k times coarser than
    the latent (at least 1x1) and upsampled bilinearly to it ("pyramid noise").

    Why: MedShift translates by inverting to tau and generating from there, so whatever the prior leaves
    hidden at tau the target class re-draws, and whatever shows through is kept. Latents of X-ray images carry
    most of their power at coarse scales, where per-cell noise averages out: with per-cell and offset noise,
    at tau = 0.45 the signal-to-noise ratio of the X-DigiSkull latents' bands 8 and 16 cells across is 5 and 80
    (measured on the latents), so the source's large-scale shading (the real domain's dynamic-range compression
    undoes it) comes through untouched. Coarse levels bring those ratios down to 1-3 (0, 0, 0.25, 0.5, 0.5:
    1.5 and 2.7) while fine scales, where the anatomy's edges are, keep their per-cell noise. Empty or all
    zeros: exactly `offset_noise` (no extra draws).
    """
    noise = offset_noise(shape, noise_offset, generator=generator, device=device, dtype=dtype)
    height, width = shape[-2:]
    for level, weight in enumerate(check_coarse_noise(coarse_noise), start=1):
        if weight == 0:
            continue
        # drawn after the fine and offset noise, level by level, so each level's draws are reproducible
        coarse = randn_tensor((*shape[:2], max(height >> level, 1), max(width >> level, 1)), generator=generator, device=noise.device, dtype=noise.dtype)
        noise = noise + weight * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return noise


def sample_times(
    batch_size: int,
    focus_min: float = 0.0,
    focus_fraction: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times of shape (batch_size,): each uniform on [focus_min, 1] with probability
    `focus_fraction`, else uniform on [0, 1].

    Why: a translation at tau only ever evaluates the network on [tau, 1] (inversion down to tau, generation
    back up), so times below the smallest tau used are spent on pure generation from noise. Putting most of
    the training there where translations run gives that range more of a small network's capacity and of a
    short run's steps; the uniform remainder keeps the whole path (SDEdit from any tau, generation from noise)
    trained. With `focus_fraction = 0` this is exactly `torch.rand` (no extra draws).
    """
    if not 0.0 <= focus_min < 1.0:
        raise ValueError(f"focus_min must be in [0, 1), got {focus_min}")
    if not 0.0 <= focus_fraction <= 1.0:
        raise ValueError(f"focus_fraction must be in [0, 1], got {focus_fraction}")
    t = torch.rand(batch_size, generator=generator, device="cpu")
    if focus_fraction > 0:
        focused = torch.rand(batch_size, generator=generator, device="cpu") < focus_fraction
        t = torch.where(focused, focus_min + (1.0 - focus_min) * t, t)
    return t.to(device) if device is not None else t


def flow_path(x1: torch.Tensor, eps: torch.Tensor, t: float | torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """The probability path x_t = (1 - (1 - sigma_min) t) eps + t x1: data at t = 1, noise at t = 0.

    The one place the path is written: the training loss (`sample_path`) and the scheduler's `add_noise`
    (SDEdit's starting point) both call it.

    Args:
        x1: data latents, (batch, ...).
        eps: noise of the same shape.
        t: one time for the whole batch (a float) or one per sample (a tensor of shape (batch,)).
        sigma_min: the path's noise floor at t = 1.
    """
    if isinstance(t, torch.Tensor):
        t = t.view(-1, *([1] * (x1.ndim - 1)))
    return (1 - (1 - sigma_min) * t) * eps + t * x1


def sample_path(
    x1: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, sigma_min: float = SIGMA_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_t, u_t) for data `x1`, noise `eps` and times `t` of shape (batch,): the path's point
    (`flow_path`) and its velocity."""
    x_t = flow_path(x1, eps, t, sigma_min)
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
