"""Fixtures and helpers shared by the whole suite."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from medshift.scheduling_flow_match import FlowMatchODEScheduler
from xdigiskull.classes import CLASS_NAMES
from xdigiskull.writer import TECHNICAL_COLUMNS, dataset_features

SIDE = 64  # the side of the tiny datasets' images


def _integrate(
    scheduler: FlowMatchODEScheduler,
    velocity_fn: Callable[[torch.Tensor, float], torch.Tensor],
    sample: torch.Tensor,
    t_from: float,
    t_to: float,
    num_inference_steps: int,
) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from `t_from` to `t_to` with the scheduler's loop, as the pipeline does."""
    scheduler.set_timesteps(num_inference_steps, t_from=t_from, t_to=t_to)
    for timestep in scheduler.timesteps:
        t = float(timestep) / scheduler.config.num_train_timesteps
        sample = scheduler.step(velocity_fn(sample, t), timestep, sample).prev_sample
    return sample


@pytest.fixture
def integrate() -> Callable[..., torch.Tensor]:
    """`integrate(scheduler, velocity_fn, sample, t_from, t_to, num_inference_steps)`: the ODE solved with the scheduler."""
    return _integrate


# ------------------------------------------------------------------------------- tiny X-DigiSkull datasets


def skull_image(rng: np.random.Generator, label: int, bits: int = 8) -> Image.Image:
    """A bright ring ("skull") on a dark field; real classes are noisier and more contrasted."""
    y, x = np.mgrid[:SIDE, :SIDE] / SIDE - 0.5
    cx, cy = rng.uniform(-0.05, 0.05, 2)
    radius = np.hypot(x - cx, y - cy)
    image = 0.15 + 0.6 * np.exp(-(((radius - 0.3) / 0.05) ** 2))
    if CLASS_NAMES[label].startswith("real"):
        image = np.clip(1.3 * image - 0.1, 0, 1) + rng.normal(0, 0.06, image.shape)
    image = np.clip(image, 0, 1)
    if bits == 16:
        return Image.fromarray(np.round(image * 65535).astype(np.uint16))  # mode I;16
    return Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L")


def make_split(count: int, seed: int, bits: int = 8) -> datasets.Dataset:
    """`count` rows with the builder's schema (`dataset_features()`), cycling through the classes."""
    rng = np.random.default_rng(seed)
    labels = [index % len(CLASS_NAMES) for index in range(count)]
    rows = {
        "image": [skull_image(rng, label, bits) for label in labels],
        "label": labels,
        "domain": [CLASS_NAMES[label].split("_")[0] for label in labels],
        "dose": [CLASS_NAMES[label].split("_")[1] for label in labels],
        "view": ["view0"] * count,
        "primary_angle": [0.0] * count,
        "secondary_angle": [0.0] * count,
        "pair_id": [f"pose{index // len(CLASS_NAMES):03d}" for index in range(count)],
        "frame_index": [0] * count,
        "source_id": [f"source{index:04d}" for index in range(count)],
    }
    rows.update({name: [None] * count for name in TECHNICAL_COLUMNS})
    return datasets.Dataset.from_dict(rows, features=dataset_features())


def write_dataset(root: Path, train: int, validation: int, bits: int = 8) -> Path:
    """Parquet shards under root/data/, the layout `datasets.load_dataset(root)` reads."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    make_split(train, seed=0, bits=bits).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    make_split(validation, seed=1, bits=bits).to_parquet(str(root / "data" / "validation-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """40 training and 5 validation 64x64 images, 8-bit."""
    return write_dataset(tmp_path_factory.mktemp("tiny-xdigiskull"), train=40, validation=5)


@pytest.fixture(scope="session")
def tiny_dataset_16bit(tmp_path_factory) -> Path:
    """10 training and 5 validation 64x64 images, 16-bit (mode I;16)."""
    return write_dataset(tmp_path_factory.mktemp("tiny-xdigiskull-16"), train=10, validation=5, bits=16)
