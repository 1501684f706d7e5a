"""Synthetic test data shared by the whole suite: skull-like images, DICOM files, tiny model configs and
tiny X-DigiSkull datasets with the builder's schema. Fixtures wrapping them are in tests/conftest.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import datasets
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

from xdigiskull.classes import CLASS_NAMES
from xdigiskull.writer import TECHNICAL_COLUMNS, dataset_features

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """benchmarks/<name>.py or scripts/<name>.py (recipes and benchmarks are not packages) loaded as a module,
    registered in sys.modules, where dataclasses look their module up."""
    path = next((REPO / folder / f"{name}.py" for folder in ("benchmarks", "scripts") if (REPO / folder / f"{name}.py").is_file()), None)
    if path is None:
        raise FileNotFoundError(f"no benchmarks/{name}.py or scripts/{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# identifiers planted in every test DICOM header; none may reach a built dataset
PLANTED_IDENTIFIERS = {
    "PatientName": "Planted^Patient^Name",
    "PatientID": "PLANTED-PID-4711",
    "PatientBirthDate": "19450508",
    "InstitutionName": "Planted General Hospital",
    "ReferringPhysicianName": "Planted^Doctor",
    "AccessionNumber": "PLANTACC99",
    "StudyDescription": "PLANTED STUDY DESCRIPTION",
    "OperatorsName": "Planted^Operator",
    "DeviceSerialNumber": "PLANTSN-31337",
}


def skull_like(rows: int = 64, cols: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth bright-background image with a darker ellipse, a ring and noise, values in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    r2 = ((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - cols / 2) / (cols / 3.4)) ** 2
    image = 0.8 - 0.35 * np.exp(-r2) - 0.15 * ((r2 > 0.8) & (r2 < 1.0))
    image += 0.02 * rng.standard_normal((rows, cols)).astype(np.float32)
    return np.clip(image, 0.1, 0.9).astype(np.float32)


def _base_dataset(rows: int, cols: int, frames: int = 1) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "XA"
    for keyword, value in PLANTED_IDENTIFIERS.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.KVP = 72
    ds.XRayTubeCurrent = 12
    ds.ExposureTime = 8
    ds.ImagerPixelSpacing = [0.2, 0.2]
    return ds


def write_dicom(path: Path, image: np.ndarray, syntax=None, shutter=None, stored=None, **attributes) -> Path:
    """Write a 12-bit XA DICOM (explicit VR LE) of `image` (HxW or FxHxW in [0, 1]) with the planted identifiers.

    Keyword `syntax` compresses with pydicom to that transfer syntax; `shutter=(top, left, bottom, right)`
    (0-based, exclusive) darkens outside and writes the tags; other keywords set header attributes.
    """
    image = np.asarray(image, dtype=np.float32)
    frames = image[None] if image.ndim == 2 else image
    f, rows, cols = frames.shape
    ds = _base_dataset(rows, cols, f)
    pixels = np.round(frames * 4095).astype(np.uint16) if stored is None else np.asarray(stored).reshape(frames.shape)
    if shutter is not None:
        top, left, bottom, right = shutter
        mask = np.ones((rows, cols), bool)
        mask[top:bottom, left:right] = False
        pixels = pixels.copy()
        pixels[:, mask] = 30
        ds.ShutterShape = "RECTANGULAR"
        ds.ShutterLeftVerticalEdge = left + 1
        ds.ShutterRightVerticalEdge = right
        ds.ShutterUpperHorizontalEdge = top + 1
        ds.ShutterLowerHorizontalEdge = bottom
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    data = pixels if f > 1 else pixels[0]
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    if syntax is not None:
        ds.compress(syntax, data, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------- tiny models and datasets

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

# the shipped VAE's kind (medshift.models.demo_vae_config): AutoencoderDC, four levels (8x), no attention
TINY_DC_VAE_CONFIG = {
    "_class_name": "AutoencoderDC",
    "in_channels": 1,
    "latent_channels": 4,
    "encoder_block_types": "ResBlock",
    "decoder_block_types": "ResBlock",
    "encoder_block_out_channels": (8, 8, 16, 16),
    "decoder_block_out_channels": (8, 8, 16, 16),
    "encoder_layers_per_block": (1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "encoder_qkv_multiscales": ((), (), (), ()),
    "decoder_qkv_multiscales": ((), (), (), ()),
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

# the pipelines' UNet adds an attention level (as the demo and paper UNets have)
TINY_PIPELINE_UNET_CONFIG = {
    **TINY_UNET_CONFIG,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "norm_num_groups": 4,
    "attention_head_dim": 8,
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


def full_field_xa(side: int = 1024, seed: int = 0) -> np.ndarray:
    """Smooth anatomy-like 12-bit content that fills the frame, darker towards the edges, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    low = cv2.resize(rng.standard_normal((6, 6)).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    r2 = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2) / (side / 2.3) ** 2
    image = 300 + 2500 * np.exp(-r2) + 150 * low + 60 * rng.standard_normal((side, side)).astype(np.float32)
    return np.clip(image, 0, 4095).astype(np.uint16)


def tiny_train_config(tiny_dataset, tiny_vae, unet_config, output_dir, **overrides) -> "TrainConfig":
    """A short, quiet `medshift train` run on the tiny dataset and VAE (`overrides` change any field)."""
    from medshift.training.train import TrainConfig

    settings = dict(
        dataset=str(tiny_dataset),
        output_dir=str(output_dir),
        vae=str(tiny_vae),
        resolution=64,
        unet_config=unet_config,
        batch_size=8,
        max_steps=50,
        learning_rate=1e-3,
        warmup_steps=5,
        checkpoint_every=0,
        num_sample_images=0,
        show_progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def tiny_vae_train_config(tiny_dataset, vae_config, output_dir, **overrides) -> "VaeTrainConfig":
    """A short, quiet `medshift train-vae` run on 32 px crops of the tiny dataset (`overrides` change any field)."""
    from medshift.training.train_vae import VaeTrainConfig

    settings = dict(
        dataset=str(tiny_dataset),
        output_dir=str(output_dir),
        resolution=64,
        crop_size=32,
        vae_config=vae_config,
        max_steps=40,
        learning_rate=2e-3,
        warmup_steps=2,
        checkpoint_every=0,
        num_sample_images=2,
        show_progress=False,
    )
    settings.update(overrides)
    return VaeTrainConfig(**settings)
