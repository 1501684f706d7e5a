"""Tiny random MedShift pipelines (a few thousand parameters) for fast, real end-to-end tests."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel

from medshift.pipeline_medshift import MedShiftPipeline
from medshift.scheduling_flow_match import FlowMatchODEScheduler
from xdigiskull.classes import CLASS_NAMES

TINY_RESOLUTION = 64


def tiny_vae() -> AutoencoderKL:
    # four blocks: the 8x downsampling of the real VAEs
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        scaling_factor=0.5,
    )


def tiny_unet() -> UNet2DModel:
    return UNet2DModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=8,
        num_class_embeds=len(CLASS_NAMES) + 1,
    )


def make_tiny_pipeline(seed: int = 0, **kwargs) -> MedShiftPipeline:
    torch.manual_seed(seed)
    pipe = MedShiftPipeline(
        vae=tiny_vae(),
        unet=tiny_unet(),
        scheduler=FlowMatchODEScheduler(num_inference_steps=8),
        class_names=list(CLASS_NAMES),
        resolution=TINY_RESOLUTION,
        **kwargs,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_pipeline() -> MedShiftPipeline:
    return make_tiny_pipeline()


@pytest.fixture(scope="session")
def saved_tiny_pipeline(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-medshift") / "pipe"
    make_tiny_pipeline().save_pretrained(folder)
    return str(folder)


@pytest.fixture
def make_pipeline():
    """Factory: `make_pipeline(seed=0, **pipeline_kwargs)` builds a fresh tiny pipeline (same seed, same weights)."""
    return make_tiny_pipeline


@pytest.fixture
def tiny_models():
    """Factory for a fresh (vae, unet) pair of the tiny architecture."""
    return lambda: (tiny_vae(), tiny_unet())
