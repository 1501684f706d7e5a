"""Tiny X-DigiSkull-shaped datasets and tiny models for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from xdigiskull.classes import CLASS_NAMES

SIDE = 64

TINY_VAE_CONFIG = {
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 4,
    "block_out_channels": (8, 8, 16, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": SIDE,
}

TINY_UNET_CONFIG = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (16, 32),
    "down_block_types": ("DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "num_class_embeds": len(CLASS_NAMES) + 1,
}


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
    rng = np.random.default_rng(seed)
    labels = [index % len(CLASS_NAMES) for index in range(count)]
    rows = {
        "image": [skull_image(rng, label, bits) for label in labels],
        "label": labels,
        "domain": [CLASS_NAMES[label].split("_")[0] for label in labels],
        "dose": [CLASS_NAMES[label].split("_")[1] for label in labels],
        "pair_id": [f"pose{index // len(CLASS_NAMES):03d}" for index in range(count)],
    }
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "domain": datasets.Value("string"),
            "dose": datasets.Value("string"),
            "pair_id": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


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
def tiny_vae(tmp_path_factory) -> Path:
    """A random-weight tiny one-channel VAE saved in diffusers format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-vae")
    AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_unet_config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("unet-config") / "unet.json"
    path.write_text(json.dumps(TINY_UNET_CONFIG))
    return path


@pytest.fixture
def tiny_unet_config() -> dict:
    return dict(TINY_UNET_CONFIG)


@pytest.fixture
def tiny_vae_config() -> dict:
    return dict(TINY_VAE_CONFIG)


@pytest.fixture(scope="session")
def tiny_config_files(tmp_path_factory) -> tuple[Path, Path]:
    """(VAE config JSON, UNet config JSON) for the CLI."""
    root = tmp_path_factory.mktemp("configs")
    (root / "vae.json").write_text(json.dumps(TINY_VAE_CONFIG))
    (root / "unet.json").write_text(json.dumps(TINY_UNET_CONFIG))
    return root / "vae.json", root / "unet.json"
