"""The benchmark's landmark detector: a small heatmap network, one fixed training recipe, soft-argmax read-out.

The network (`LandmarkNet`, about 0.4M parameters) takes a grey image at `input_size` (256 by default), encodes it
to 1/16 and decodes to heatmaps at 1/4 with skip connections; each landmark's position is the expectation of its
softmax-normalised heatmap (soft-argmax), so errors can be below a heatmap cell. The loss is the cross-entropy of
the heatmap against a Gaussian around the true position plus the L1 distance of the soft-argmax, on visible
landmarks only. `train_detector` runs the same recipe for every condition: the seed fixes the initial weights, the
batch order and the augmentation (random affine, gamma, contrast, noise), nothing else varies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DetectorRecipe:
    """The one training recipe every condition gets."""

    input_size: int = 256
    steps: int = 600
    batch_size: int = 12
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 24  # channels of the first stage; later stages 2x, 4x, 4x
    heatmap_sigma: float = 1.5  # Gaussian target, in heatmap cells
    rotation_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.06  # share of the image side
    threads: int = 2


def _conv(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]


def _block(inputs: int, outputs: int, stride: int = 1, depth: int = 2) -> nn.Sequential:
    layers = _conv(inputs, outputs, stride)
    for _ in range(depth - 1):
        layers += _conv(outputs, outputs)
    return nn.Sequential(*layers)


class LandmarkNet(nn.Module):
    """Encoder to 1/16, decoder back to 1/4 with skips, one heatmap per landmark at 1/4 of the input."""

    def __init__(self, landmarks: int, width: int = 24) -> None:
        super().__init__()
        w = width
        # cheap where the maps are large (one conv), deeper where they are small: CPU time goes with pixels
        self.stem = _block(1, w, 2, depth=1)  # 1/2
        self.down1 = _block(w, 2 * w, 2, depth=1)  # 1/4
        self.down2 = _block(2 * w, 4 * w, 2)  # 1/8
        self.down3 = _block(4 * w, 6 * w, 2, depth=3)  # 1/16
        self.up2 = _block(10 * w, 4 * w)  # 1/8: up(down3) + down2
        self.up1 = _block(6 * w, 2 * w, depth=1)  # 1/4: up(up2) + down1
        self.head = nn.Conv2d(2 * w, landmarks, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(self.stem(image))
        s2 = self.down2(s1)
        s3 = self.down3(s2)
        x = self.up2(torch.cat([F.interpolate(s3, size=s2.shape[-2:], mode="bilinear", align_corners=False), s2], 1))
        x = self.up1(torch.cat([F.interpolate(x, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1))
        return self.head(x)


def soft_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) logits -> (N, K, 2) expected (x, y) in heatmap cells (centres at integers), and the
    log-probabilities (N, K, h*w)."""
    n, k, h, w = heatmaps.shape
    log_p = F.log_softmax(heatmaps.reshape(n, k, h * w), dim=-1)
    p = log_p.exp().reshape(n, k, h, w)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    x = (p.sum(2) * xs).sum(-1)
    y = (p.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1), log_p


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """A [0, 1] grey image area-resized to `size` and standardised (zero mean, unit variance): the detector's input."""
    small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (small - small.mean()) / (small.std() + 1e-6)


def scale_points(points: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Pixel coordinates (centres at integers) from one square side to another."""
    return (points + 0.5) * (to_size / from_size) - 0.5


def _augment(images: torch.Tensor, points: torch.Tensor, recipe: DetectorRecipe, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine (rotation, scale, shift) of a batch and its points (input pixels), then gamma, contrast and
    noise; all draws come from `generator`."""
    n, _, size, _ = images.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-recipe.rotation_deg, recipe.rotation_deg) * math.pi / 180
    scale = uniform(1 - recipe.scale, 1 + recipe.scale)
    shift = torch.stack([uniform(-recipe.shift, recipe.shift), uniform(-recipe.shift, recipe.shift)], 1) * 2
    # affine_grid maps output to input (normalised coordinates): input = A @ output + t
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    matrix = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (n, 2, 2)
    theta = torch.cat([matrix, shift[:, :, None]], 2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    normalised = (points + 0.5) / size * 2 - 1  # (n, K, 2)
    moved = torch.linalg.solve(matrix[:, None], (normalised - shift[:, None])[..., None])[..., 0]
    points = (moved + 1) / 2 * size - 0.5
    # intensity: gamma on the min-max range, contrast, noise; then standardise again
    low = warped.amin((1, 2, 3), keepdim=True)
    high = warped.amax((1, 2, 3), keepdim=True)
    unit = (warped - low) / (high - low + 1e-6)
    unit = unit ** uniform(0.7, 1.4).view(n, 1, 1, 1)
    unit = unit * uniform(0.8, 1.2).view(n, 1, 1, 1)
    unit = unit + 0.02 * torch.randn(unit.shape, generator=generator)
    unit = (unit - unit.mean((1, 2, 3), keepdim=True)) / (unit.std((1, 2, 3), keepdim=True) + 1e-6)
    return unit, points


def _gaussian_targets(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(N, K, 2) cell coordinates -> (N, K, h*w) normalised Gaussian distributions."""
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    dx = xs[None, None] - points[..., 0, None, None]
    dy = ys[None, None] - points[..., 1, None, None]
    target = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)).reshape(*points.shape[:2], h * w)
    return target / target.sum(-1, keepdim=True).clamp_min(1e-12)


def train_detector(images: np.ndarray, points: np.ndarray, visible: np.ndarray, recipe: DetectorRecipe, seed: int
                   ) -> LandmarkNet:
    """Train one detector.

    Args:
        images: (N, S, S) prepared inputs (`prepare_image`), S = recipe.input_size.
        points: (N, K, 2) landmark pixels at the input size.
        visible: (N, K) bool; invisible landmarks do not count in the loss.
        recipe: the training recipe.
        seed: fixes the initial weights, the batches and the augmentation.
    """
    if len(images) == 0:
        raise ValueError("no training images")
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LandmarkNet(points.shape[1], recipe.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    warmup = max(1, recipe.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(step, recipe.steps) / recipe.steps)))  # warm-up, then cosine to 0
    all_images = torch.from_numpy(images.astype(np.float32))[:, None]
    all_points = torch.from_numpy(points.astype(np.float32))
    all_visible = torch.from_numpy(visible.astype(bool))
    size = recipe.input_size
    model.train()
    for _ in range(recipe.steps):
        index = torch.randint(len(images), (recipe.batch_size,), generator=generator)
        batch, target = _augment(all_images[index], all_points[index], recipe, generator)
        weight = (all_visible[index] & (target >= -0.5).all(-1) & (target < size - 0.5).all(-1)).float()
        heatmaps = model(batch)
        h, w = heatmaps.shape[-2:]
        cells = scale_points(target, size, w)
        predicted, log_p = soft_argmax(heatmaps)
        entropy = -(_gaussian_targets(cells, h, w, recipe.heatmap_sigma) * log_p).sum(-1)
        distance = (predicted - cells).abs().sum(-1)
        loss = ((entropy + distance) * weight).sum() / weight.sum().clamp_min(1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: LandmarkNet, images: np.ndarray, input_size: int, batch_size: int = 16) -> np.ndarray:
    """(N, S, S) prepared inputs -> (N, K, 2) landmark pixels at the input size."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start:start + batch_size].astype(np.float32))[:, None]
        heatmaps = model(batch)
        cells, _ = soft_argmax(heatmaps)
        out.append(scale_points(cells, heatmaps.shape[-1], input_size).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 2), np.float32)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
