"""Fixtures shared by the whole suite (the data they build is in tests/synthetic.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import json

import cv2
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from synthetic import TINY_PIPELINE_UNET_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG, _base_dataset, skull_like, write_dataset
from synthetic import load_script
from synthetic import write_dicom as write_dicom_file

from medshift.pipeline_medshift import MedShiftPipeline
from medshift.scheduling_flow_match import FlowMatchODEScheduler
from xdigiskull.classes import CLASS_NAMES

TINY_RESOLUTION = 64  # the resolution of the tiny pipelines


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


# ------------------------------------------------------------------------------- DICOM files and raw exports


@pytest.fixture
def write_dicom():
    """Factory: write_dicom(path, image(s) in [0,1], **attributes) -> Path (see `synthetic.write_dicom`)."""
    return write_dicom_file


@pytest.fixture(scope="session")
def raw_export(tmp_path_factory) -> Path:
    """A small raw export in the phantom's layout: 4 poses x 5 classes + manifest.csv.

    Simulator: 8-bit PNG screen exports, 300x360 with a flat grey margin around a 256x256 field.
    Azurion: 12-bit DICOM XA 288x288 with shutter bands and tags (field 256x256 at (16, 16)), 2 frames.
    """
    root = tmp_path_factory.mktemp("raw")
    lines = ["file,class,view,primary_angle,secondary_angle,pair_id,frames"]
    for pose in range(4):
        primary, secondary = [(0, 0), (30, 0), (-30, 10), (90, 0)][pose]
        field = skull_like(256, 256, seed=pose)
        for dose, gain in (("low", 0.9), ("high", 1.0)):
            canvas = np.full((300, 360), 60, np.uint8)
            canvas[22:278, 52:308] = np.round(field * gain * 255).astype(np.uint8)
            path = root / "simulator" / dose / f"pose{pose}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), canvas)
            lines.append(f"simulator/{dose}/pose{pose}.png,synthetic_{dose},view{pose},{primary},{secondary},p{pose},1")
        for dose, gain in (("low", 0.8), ("normal", 0.9), ("exposure", 1.0)):
            frames = np.zeros((2, 288, 288), np.float32)
            for i in range(2):
                frames[i, 16:272, 16:272] = skull_like(256, 256, seed=10 * pose + i) * gain
            path = root / "azurion" / dose / f"pose{pose}.dcm"
            _write_export_dicom(path, frames, primary, secondary)
            lines.append(f"azurion/{dose}/pose{pose}.dcm,real_{dose},view{pose},{primary},{secondary},p{pose},2")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _write_export_dicom(path: Path, frames: np.ndarray, primary: float, secondary: float) -> None:
    f, rows, cols = frames.shape
    ds = _base_dataset(rows, cols, f)
    ds.PositionerPrimaryAngle = primary
    ds.PositionerSecondaryAngle = secondary
    ds.FrameTime = 66.7
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 17, 272
    ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = 17, 272
    pixels = np.round(frames * 4095).astype(np.uint16)
    pixels[:, :16] = pixels[:, 272:] = 25
    pixels[:, :, :16] = pixels[:, :, 272:] = 25
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# ------------------------------------------------------------------------------- tiny X-DigiSkull datasets


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """40 training and 5 validation 64x64 images, 8-bit."""
    return write_dataset(tmp_path_factory.mktemp("tiny-xdigiskull"), train=40, validation=5)


@pytest.fixture(scope="session")
def tiny_dataset_16bit(tmp_path_factory) -> Path:
    """10 training and 5 validation 64x64 images, 16-bit (mode I;16)."""
    return write_dataset(tmp_path_factory.mktemp("tiny-xdigiskull-16"), train=10, validation=5, bits=16)


# ------------------------------------------------------------------------------- tiny models


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


def tiny_vae_model() -> AutoencoderKL:
    """The tiny VAE (four blocks: the 8x downsampling of the real VAEs), random weights."""
    return AutoencoderKL(**{**TINY_VAE_CONFIG, "norm_num_groups": 4, "scaling_factor": 0.5})


def tiny_unet_model() -> UNet2DModel:
    """The tiny UNet with an attention level, as the demo and paper UNets have, random weights."""
    return UNet2DModel(**TINY_PIPELINE_UNET_CONFIG)


def make_tiny_pipeline(seed: int = 0, **kwargs) -> MedShiftPipeline:
    torch.manual_seed(seed)
    pipe = MedShiftPipeline(
        vae=tiny_vae_model(),
        unet=tiny_unet_model(),
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
    return lambda: (tiny_vae_model(), tiny_unet_model())


@pytest.fixture(scope="session")
def detector_sets():
    """benchmarks/detector_sets.py (the image checks' evaluation sets), loaded as a module."""
    return load_script("detector_sets")
