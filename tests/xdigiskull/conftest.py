"""Fixtures of the builder tests: DICOM and image files made on the fly, and small raw export folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

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


def skull_like(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A smooth bright-background image with a darker ellipse, a ring and noise, values in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    r2 = ((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - cols / 2) / (cols / 3.4)) ** 2
    image = 0.8 - 0.35 * np.exp(-r2) - 0.15 * ((r2 > 0.8) & (r2 < 1.0))
    image += 0.02 * rng.standard_normal((rows, cols)).astype(np.float32)
    return np.clip(image, 0.1, 0.9).astype(np.float32)


@pytest.fixture(scope="session")
def skull():
    """`skull_like` for test modules (a conftest is not importable under --import-mode=importlib)."""
    return skull_like


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


@pytest.fixture
def write_dicom():
    """Factory: write_dicom(path, image(s) in [0,1], **attributes) -> Path; 12-bit XA, explicit VR LE.

    `image` may be HxW or FxHxW. Keyword `syntax` compresses with pydicom to that transfer syntax;
    `shutter=(top, left, bottom, right)` (0-based, exclusive) darkens outside and writes the tags.
    """

    def factory(path: Path, image: np.ndarray, syntax=None, shutter=None, stored=None, **attributes) -> Path:
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

    return factory


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


@pytest.fixture(scope="session")
def detector_sets():
    """scripts/detector_sets.py (the detectors' evaluation sets), loaded as a module."""
    import importlib.util

    path = Path(__file__).parents[2] / "scripts" / "detector_sets.py"
    spec = importlib.util.spec_from_file_location("detector_sets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
