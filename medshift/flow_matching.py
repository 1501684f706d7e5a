"""Conditional flow matching, the few lines MedShift trains and samples with.

Convention (as in torchcfm): time runs from t = 0 (Gaussian noise) to t = 1 (data latent).

    x_t = (1 - (1 - sigma_min) * t) * eps + t * x1          (probability path)
    u_t = x1 - (1 - sigma_min) * eps                        (its velocity, the regression target)

The network predicts the velocity. Classifier-free guidance mixes the conditional and the
unconditional (null-class) predictions: v = v_u + w * (v_c - v_u).
"""

from __future__ import annotations

import torch

SIGMA_MIN = 1e-4


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
