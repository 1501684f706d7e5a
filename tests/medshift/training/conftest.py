"""Tiny models for the training tests (the tiny datasets are in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

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
