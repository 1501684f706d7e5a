"""Read raw exports (DICOM or plain images) into grey frames in standard display, values in [0, 1].

Standard display here means the convention of MONOCHROME2 after the modality and VOI transforms:
a higher value is shown brighter. MONOCHROME1 data is inverted to reach it.

DICOM decoding goes through pydicom and its pixel-data plugins (pylibjpeg-libjpeg, -openjpeg, -rle and
pyjpegls), so every transfer syntax those support is read: uncompressed little/big endian, deflated,
JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 and RLE. Plain images go through OpenCV.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from xdigiskull.image_io import DICOM_SUFFIXES, IMAGE_SUFFIXES, is_dicom

# files without a suffix are read as DICOM (exports from PACS often have none)
READ_AS_DICOM: frozenset[str] = DICOM_SUFFIXES | {""}

# percentiles of the robust window used when a DICOM carries neither a VOI LUT nor a window
ROBUST_WINDOW_PERCENTILES: tuple[float, float] = (0.5, 99.5)


class SourceError(Exception):
    """A file or frame that cannot be turned into a dataset image; `reason` is a short, stable code.

    Args:
        reason: machine-friendly code (e.g. ``"not-dicom"``, ``"unsupported-transfer-syntax"``).
        message: a precise, human-readable explanation.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class SourceImage:
    """What a reader hands to the builder.

    Attributes:
        frames: selected frames, float32 HxW arrays in [0, 1], standard display.
        frame_indices: index of each selected frame in the source file.
        num_frames: number of frames in the source file.
        dataset: the DICOM header (pixel data dropped), or None for plain images.
        digest: SHA-256 hex digest of the file's bytes (used for fingerprints and source ids).
        warnings: things the builder should report (e.g. colour converted to grey).
    """

    frames: list[np.ndarray]
    frame_indices: list[int]
    num_frames: int
    dataset: Dataset | None
    digest: str
    warnings: list[str] = field(default_factory=list)


is_dicom_path = is_dicom  # the name the builder's processing imports


def is_supported_path(path: Path) -> bool:
    """Whether `path` has a suffix the builder reads."""
    return path.suffix.lower() in READ_AS_DICOM | IMAGE_SUFFIXES


def select_frames(spec: str, num_frames: int) -> list[int]:
    """Turn a ``--frames`` value into frame indices.

    Args:
        spec: ``"first"``, ``"middle"``, ``"all"`` or a 0-based frame index such as ``"3"``.
        num_frames: number of frames the file holds.

    Raises:
        ValueError: `spec` is not one of the accepted forms.
        SourceError: the requested frame index is past the end of the file.
    """
    if spec == "first":
        return [0]
    if spec == "middle":
        return [num_frames // 2]
    if spec == "all":
        return list(range(num_frames))
    try:
        index = int(spec)
    except ValueError:
        raise ValueError(f"--frames must be first, middle, all or a frame index, got {spec!r}") from None
    if index < 0:
        raise ValueError(f"--frames index must be >= 0, got {index}")
    if index >= num_frames:
        raise SourceError("frame-out-of-range", f"frame {index} requested but the file has {num_frames} frame(s)")
    return [index]


def read_source(path: str | Path, frames: str = "first") -> SourceImage:
    """Read a DICOM or image file and return the selected frames in standard display.

    Args:
        path: file to read; DICOM by suffix (.dcm, .dicom, .dic or none), else PNG/TIFF/JPEG/BMP.
        frames: which frames to return, see `select_frames`.

    Raises:
        SourceError: the file cannot be read; `reason` says why.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READ_AS_DICOM | IMAGE_SUFFIXES:
        raise SourceError("unsupported-file-type", f"unsupported file type {suffix!r}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError("unreadable", f"cannot read file: {error.strerror or error}") from None
    if not data:
        raise SourceError("empty-file", "file is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()  # SHA-256 is hardware-accelerated on current CPUs
    if suffix in READ_AS_DICOM:
        return _read_dicom_bytes(data, frames, digest)
    return _read_image_bytes(data, frames, digest)


# --------------------------------------------------------------------------------------------- DICOM


def _read_dicom_bytes(data: bytes, frames: str, digest: str) -> SourceImage:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise SourceError("not-dicom", "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except Exception as error:  # pydicom raises many types on damaged headers
        raise SourceError("corrupt-dicom", f"DICOM header cannot be parsed: {error}") from None
    if "PixelData" not in ds:
        raise SourceError("no-pixel-data", "DICOM file has no Pixel Data element")
    num_frames = int(ds.get("NumberOfFrames", 1) or 1)
    indices = select_frames(frames, num_frames)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    syntax_name = getattr(syntax, "name", str(syntax))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    notes: list[str] = []

    out: list[np.ndarray] = []
    for index in indices:
        try:
            raw = decode_frame(ds, index if num_frames > 1 else None)
        except NotImplementedError as error:
            raise SourceError(
                "unsupported-transfer-syntax", f"no installed decoder for transfer syntax {syntax_name}: {error}"
            ) from None
        except (RuntimeError, ValueError, EOFError, KeyError, AttributeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SourceError("corrupt-pixel-data", f"frame {index} cannot be decoded ({syntax_name}): {message}") from None
        out.append(dicom_to_display(raw, ds, photometric, notes))

    del ds.PixelData  # the header travels back to the builder; the pixels already did
    return SourceImage(out, indices, num_frames, ds, digest, sorted(set(notes)))


def decode_frame(ds: Dataset, index: int | None = None) -> np.ndarray:
    """Stored values of one frame (or of the only frame when `index` is None), through pydicom.

    Unsigned pixels come back as a read-only view of the Pixel Data where the transfer syntax allows,
    and their unused high bits are cleared only when some pixel sets them: pydicom's own correction
    copies and shifts every frame. Signed pixels keep pydicom's correction, which extends the sign.

    Raises:
        whatever pydicom raises for the frame (the reader turns it into a `SourceError`).
    """
    unsigned = int(ds.get("PixelRepresentation", 0) or 0) == 0
    options = {"view_only": True, "correct_unused_bits": False} if unsigned else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about things we report ourselves
        raw = pydicom.pixels.pixel_array(ds, index=index, **options)
    bits_stored = int(ds.get("BitsStored", 0) or 0)
    if not unsigned or raw.dtype.kind != "u" or not 0 < bits_stored < 8 * raw.dtype.itemsize:
        return raw
    limit = (1 << bits_stored) - 1
    if raw.max(initial=0) <= limit:  # the usual case: nothing to clear, no copy (PS3.5 8.1.1)
        return raw
    return np.bitwise_and(raw, raw.dtype.type(limit))


def dicom_to_display(raw: np.ndarray, ds: Dataset, photometric: str, notes: list[str]) -> np.ndarray:
    """Stored pixel values of one frame -> float32 standard display in [0, 1].

    Applies, in the order DICOM defines: colour to grey (with a note), modality LUT or rescale,
    VOI LUT or window (a robust percentile window when there is neither), MONOCHROME1 inversion.

    Args:
        raw: one frame as returned by pydicom (HxW, or HxWx3 for colour).
        ds: the frame's dataset (for the LUT and window attributes).
        photometric: the dataset's Photometric Interpretation, upper case.
        notes: list that collects warnings for the report.
    """
    if raw.ndim == 3 or photometric in ("RGB", "PALETTE COLOR") or photometric.startswith("YBR"):
        if photometric == "PALETTE COLOR":
            raw = pydicom.pixels.apply_color_lut(raw, ds)
            scale = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else 1.0
        else:
            scale = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        notes.append(f"colour ({photometric}) converted to grey")
        rgb = raw.astype(np.float32) / scale
        return np.clip(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 0.0, 1.0)

    if "ModalityLUTSequence" in ds:
        values = pydicom.pixels.apply_modality_lut(raw, ds).astype(np.float32, copy=False)
    else:
        values = raw  # stays integer when there is no rescale: the window converts it in one pass
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        if slope != 1.0 or intercept != 0.0:
            values = raw * np.float32(slope)
            values += np.float32(intercept)

    if "VOILUTSequence" in ds:
        # a LUT is indexed by integer modality values
        lut_in = np.rint(values).astype(np.int32)
        lut_out = pydicom.pixels.apply_voi_lut(lut_in, ds, prefer_lut=True).astype(np.float32, copy=False)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        display = np.clip(lut_out / np.float32(2**bits - 1), 0.0, 1.0)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center = _first_value(ds.WindowCenter)
        width = _first_value(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        display = window(values, center, width, function)
    else:
        display = robust_window(values)

    if photometric == "MONOCHROME1":
        display = np.float32(1.0) - display
    return display  # every branch above clips to [0, 1]


def _first_value(value) -> float:
    return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1] in float32.

    Args:
        values: modality values.
        center: Window Center.
        width: Window Width (> 0; >= 1 for LINEAR).
        function: VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID.
    """
    if function == "SIGMOID":
        values = values.astype(np.float32, copy=False)
        return (1.0 / (1.0 + np.exp(-4.0 * (values - np.float32(center)) / np.float32(width)))).astype(np.float32)
    if function == "LINEAR_EXACT":
        low, span = center - width / 2.0, width
    else:  # LINEAR: the standard's half-pixel offsets
        width = max(width, 1.0)
        low, span = center - 0.5 - (width - 1.0) / 2.0, width - 1.0
    return _linear_to_unit(values, low, max(span, 1e-6))


def robust_window(values: np.ndarray) -> np.ndarray:
    """Window [p0.5, p99.5] of the frame to [0, 1]; used when the file carries no VOI information.

    Percentiles are taken on a 1-in-16 pixel subsample: the same figures to well under a grey level, and
    fast enough for 1024x1024 frames.
    """
    sample = values[::4, ::4] if values.ndim == 2 and min(values.shape) >= 64 else values
    low, high = np.percentile(sample, ROBUST_WINDOW_PERCENTILES)
    if high <= low:
        high = low + 1.0
    return _linear_to_unit(values, low, high - low)


def _linear_to_unit(values: np.ndarray, low: float, span: float) -> np.ndarray:
    """(values - low) / span clipped to [0, 1], in float32; integer input converts in the first pass."""
    display = np.subtract(values, np.float32(low), dtype=np.float32)
    display *= np.float32(1.0 / span)
    return np.clip(display, 0.0, 1.0, out=display)


# --------------------------------------------------------------------------------------------- images


def _read_image_bytes(data: bytes, frames: str, digest: str) -> SourceImage:
    buffer = np.frombuffer(data, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError("corrupt-image", "image cannot be decoded (truncated, corrupt or not an image)")
    indices = select_frames(frames, 1)  # still images have one frame
    notes: list[str] = []
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif image.dtype.kind == "f":
        scale = 1.0
    else:
        raise SourceError("unsupported-pixel-type", f"unsupported image pixel type {image.dtype}")
    grey = image.astype(np.float32) * np.float32(1.0 / scale)
    if grey.ndim == 3:
        channels = grey.shape[2]
        if channels == 4:
            grey = grey[:, :, :3]
        if channels >= 3:
            # OpenCV decodes colour as BGR. A grey image saved as RGB has equal channels and loses nothing;
            # nor does a screen capture whose only colour is one flat user-interface colour around the image
            coloured = (grey[:, :, 0] != grey[:, :, 1]) | (grey[:, :, 1] != grey[:, :, 2])
            if coloured.any():
                tint = grey[coloured]
                if np.any(tint.max(axis=0) != tint.min(axis=0)):
                    notes.append("colour image converted to grey")
            grey = cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_BGR2GRAY)
        else:
            grey = grey[:, :, 0]
    return SourceImage([np.clip(grey, 0.0, 1.0)], indices, 1, None, digest, notes)
