"""Read raw exports (DICOM or plain images) into grey frames in standard display, values in [0, 1].

Standard display here means the convention of MONOCHROME2 after the modality and VOI transforms:
a higher value is shown brighter. MONOCHROME1 data is inverted to reach it.

DICOM decoding goes through pydicom and its pixel-data plugins (pylibjpeg-libjpeg, -openjpeg, -rle and
pyjpegls), so every transfer syntax those support is read: uncompressed little/big endian, deflated,
JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 and RLE. Plain images go through OpenCV.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag

from xdigiskull.png import PNG_SIGNATURE

from xdigiskull.image_io import DICOM_SUFFIXES, IMAGE_SUFFIXES

# files without a suffix are read as DICOM (exports from PACS often have none)
READ_AS_DICOM: frozenset[str] = DICOM_SUFFIXES | {""}

# percentiles of the robust window used when a DICOM carries neither a VOI LUT nor a window
ROBUST_WINDOW_PERCENTILES: tuple[float, float] = (0.5, 99.5)
# Pixel Data and its float variants (PS3.3 C.7.6.3)
PIXEL_KEYWORDS: tuple[str, ...] = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# a displayed frame whose middle 98 % of pixels span less than this is blank (about 3 grey levels in 8 bits)
MIN_DISPLAY_SPREAD = 3.0 / 255.0

# Resource limits, checked on the header before anything is allocated. A worker holds one file's bytes and
# about 16 bytes per decoded pixel (stored values, float32 modality values, display, crop), so its peak
# memory stays under MAX_FILE_BYTES + 16 * MAX_DECODED_PIXELS (about 2 GiB) whatever the input claims.
MAX_FILE_BYTES = 1 << 30
MAX_FRAME_PIXELS = 1 << 25  # 33.5 million: a 5792 x 5792 frame, larger than any radiography detector
MAX_DECODED_PIXELS = 1 << 26  # selected frames read at once (64 of 1024 x 1024); more are read one by one


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


class SelectionTooLarge(SourceError):
    """The selected frames of a file hold more than `MAX_DECODED_PIXELS` together: read them one at a time
    (``frames=str(index)`` for each of `indices`), as the builder does.
    """

    def __init__(self, message: str, indices: list[int]):
        super().__init__("image-too-large", message)
        self.indices = indices


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
        skipped: selected frames of a multi-frame file that hold no image, as {index: SourceError}; they
            are not in `frames` (a file whose every selected frame is blank raises instead).
    """

    frames: list[np.ndarray]
    frame_indices: list[int]
    num_frames: int
    dataset: Dataset | None
    digest: str
    warnings: list[str] = field(default_factory=list)
    skipped: dict[int, SourceError] = field(default_factory=dict)


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
    data = read_file_bytes(path)
    digest = hashlib.sha256(data).hexdigest()  # SHA-256 is hardware-accelerated on current CPUs
    if suffix in READ_AS_DICOM:
        return _read_dicom_bytes(data, frames, digest)
    return _read_image_bytes(data, frames, digest)


def check_regular_file(path: Path) -> int:
    """Refuse, from its metadata alone, what is not a regular file of at most `MAX_FILE_BYTES`; returns
    its size.

    Raises:
        SourceError: ``unreadable`` (a link that loops or dangles, no permission on the folder),
            ``not-a-file`` (a folder, a pipe or a device: a pipe would block the build forever),
            ``file-too-large``.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        raise SourceError("unreadable", f"cannot read file: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (pipe, socket or device)"
        raise SourceError("not-a-file", f"{path.name} is {kind}")
    if info.st_size > MAX_FILE_BYTES:
        raise SourceError("file-too-large", f"file is {info.st_size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}")
    return info.st_size


def read_file_bytes(path: Path) -> bytes:
    """The bytes of a regular, non-empty file of at most `MAX_FILE_BYTES`, checked before reading.

    Raises:
        SourceError: see `check_regular_file`; ``unreadable`` (permissions), ``empty-file``.
    """
    size = check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(size + 1)  # a buffer of the file's size (a file growing meanwhile is caught below)
    except OSError as error:
        raise SourceError("unreadable", f"cannot read file: {error.strerror or error}") from None
    if not data:
        raise SourceError("empty-file", "file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise SourceError("file-too-large", f"file is more than the limit of {MAX_FILE_BYTES:,} bytes")
    return data


# --------------------------------------------------------------------------------------------- DICOM


def _read_dicom_bytes(data: bytes, frames: str, digest: str) -> SourceImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # malformed values are checked and reported below
            ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise SourceError("not-dicom", "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except Exception as error:  # pydicom raises many types on damaged headers
        raise SourceError("corrupt-dicom", f"DICOM header cannot be parsed: {error}") from None
    keyword = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise SourceError("no-pixel-data", "DICOM file has no Pixel Data element")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on each malformed value; check_header names it
        geometry = check_header(ds)
    indices = select_frames(frames, geometry.frames)
    check_pixel_budget(ds, geometry, indices, keyword)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    syntax_name = getattr(syntax, "name", str(syntax))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    notes: list[str] = []

    out: list[np.ndarray] = []
    kept: list[int] = []
    skipped: dict[int, SourceError] = {}
    for index in indices:
        try:
            raw = decode_frame(ds, index if geometry.frames > 1 else None)
        except NotImplementedError as error:
            raise SourceError(
                "unsupported-transfer-syntax", f"no installed decoder for transfer syntax {syntax_name}: {error}"
            ) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # decoders raise anything, a Rust panic (a BaseException) included
            raise SourceError("corrupt-pixel-data", f"frame {index} cannot be decoded ({syntax_name}): {describe(error)}") from None
        expected = (geometry.rows, geometry.columns) + ((geometry.samples,) if geometry.samples > 1 else ())
        if raw.shape != expected:
            raise SourceError("corrupt-pixel-data", f"frame {index} decodes to {raw.shape}, the header says {expected}")
        try:
            out.append(dicom_to_display(raw, ds, photometric, notes))
            kept.append(index)
        except SourceError as error:  # a blank frame (a cine run's dark first frames) costs only itself
            if error.reason != "blank-after-windowing" or len(indices) == 1:
                raise
            skipped[index] = error
    if not out:
        raise next(iter(skipped.values()))
    delattr(ds, keyword)  # the header travels back to the builder; the pixels already did
    return SourceImage(out, kept, geometry.frames, ds, digest, sorted(set(notes)), skipped)


@functools.cache
def _tag(keyword: str) -> BaseTag:
    return Tag(keyword)


def describe(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception, at most 300 characters, for a report."""
    text = str(error).splitlines()[0] if str(error) else ""
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:300]


@dataclass(frozen=True)
class PixelGeometry:
    """The image attributes of a DICOM header, validated."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    frames: int


def whole_attribute(ds: Dataset, keyword: str, default: int | None, low: int, high: int) -> int:
    """An integer attribute of `ds` within [low, high]; `default` when absent or empty.

    Raises:
        SourceError: ``invalid-attribute`` naming the attribute and its value (also when it is missing
            and there is no default).
    """
    try:
        element = ds.get(_tag(keyword))  # by tag: a keyword costs pydicom a dictionary walk on every access
        value = None if element is None else element.value
    except Exception as error:  # a value pydicom cannot even convert
        raise SourceError("invalid-attribute", f"{keyword} cannot be read: {describe(error)}") from None
    if value is None or value == "" or (isinstance(value, bytes) and not value.strip()):
        if default is None:
            raise SourceError("invalid-attribute", f"{keyword} is missing")
        return default
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise SourceError("invalid-attribute", f"{keyword} {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise SourceError("invalid-attribute", f"{keyword} {number} is outside {low}..{high}")
    return number


def number_attribute(ds: Dataset, keyword: str, default: float | None = None, count: int | None = 1) -> list[float] | None:
    """The first `count` values (all when None) of a numeric attribute as finite floats; `default` (or None)
    when absent.

    Raises:
        SourceError: ``invalid-attribute`` naming the attribute: not numbers, too few, or not finite.
    """
    try:
        element = ds.get(_tag(keyword))  # by tag: a keyword costs pydicom a dictionary walk on every access
        value = None if element is None else element.value
    except Exception as error:
        raise SourceError("invalid-attribute", f"{keyword} cannot be read: {describe(error)}") from None
    if value is None or value == "":
        return None if default is None else [default] * (count or 1)
    items = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    try:
        numbers = [float(str(item).strip()) for item in items[:count]]
    except (TypeError, ValueError):
        raise SourceError("invalid-attribute", f"{keyword} {value!r} is not a number") from None
    if len(numbers) < (count or 1) or not all(math.isfinite(n) for n in numbers):
        raise SourceError("invalid-attribute", f"{keyword} {value!r} is not {count or 'one or more'} finite number(s)")
    return numbers


SHUTTER_ATTRIBUTES: dict[str, int] = {  # keyword -> values the field finder reads
    "ShutterLeftVerticalEdge": 1,
    "ShutterRightVerticalEdge": 1,
    "ShutterUpperHorizontalEdge": 1,
    "ShutterLowerHorizontalEdge": 1,
    "CenterOfCircularShutter": 2,
    "RadiusOfCircularShutter": 1,
}


# attributes the builder reads besides those `check_header` parses as numbers: each must at least convert
READ_KEYWORDS: tuple[str, ...] = (
    "PhotometricInterpretation", "VOILUTFunction", "BurnedInAnnotation", "ShutterShape", "ModalityLUTSequence",
    "VOILUTSequence", "KVP", "XRayTubeCurrentInmA", "XRayTubeCurrent", "ExposureTimeInms", "ExposureTime",
    "ImagerPixelSpacing", "PixelSpacing", "FrameTime", "PositionerPrimaryAngle", "PositionerSecondaryAngle",
    "WindowCenter", "WindowWidth", "PlanarConfiguration", "SOPInstanceUID",
    *(f"{c}PaletteColorLookupTable{part}" for c in ("Red", "Green", "Blue", "Alpha") for part in ("Descriptor", "Data")),
    *(f"Segmented{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue", "Alpha")),
)
COLOUR_PHOTOMETRICS: tuple[str, ...] = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")


def check_header(ds: Dataset) -> PixelGeometry:
    """Validate every header attribute the builder reads, before any pixel is decoded.

    Raises:
        SourceError: ``invalid-attribute`` naming the first malformed attribute.
    """
    for keyword in READ_KEYWORDS:
        try:
            ds.get(_tag(keyword))  # pydicom converts a value on first access: an unknown VR or bad bytes raise here
        except Exception as error:
            raise SourceError("invalid-attribute", f"{keyword} {_tag(keyword)} cannot be read: {describe(error)}") from None
    bits_allocated = whole_attribute(ds, "BitsAllocated", None, 1, 64)
    if bits_allocated not in (1, 8, 16, 32, 64):
        raise SourceError("invalid-attribute", f"BitsAllocated {bits_allocated} is not 1, 8, 16, 32 or 64")
    whole_attribute(ds, "BitsStored", bits_allocated, 1, bits_allocated)
    whole_attribute(ds, "PixelRepresentation", 0, 0, 1)
    geometry = PixelGeometry(
        rows=whole_attribute(ds, "Rows", None, 1, 65535),
        columns=whole_attribute(ds, "Columns", None, 1, 65535),
        samples=whole_attribute(ds, "SamplesPerPixel", 1, 1, 4),
        bits_allocated=bits_allocated,
        frames=whole_attribute(ds, "NumberOfFrames", 1, 1, 2**31 - 1),
    )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if (photometric in COLOUR_PHOTOMETRICS) != (geometry.samples == 3):
        raise SourceError(
            "invalid-attribute",
            f"PhotometricInterpretation {photometric} does not match SamplesPerPixel {geometry.samples}",
        )
    slope = number_attribute(ds, "RescaleSlope", 1.0)
    number_attribute(ds, "RescaleIntercept", 0.0)
    if slope is not None and slope[0] == 0.0:
        raise SourceError("invalid-attribute", "RescaleSlope is 0: every pixel would have the same value")
    for keyword, count in SHUTTER_ATTRIBUTES.items():  # the field finder takes a present one as it is
        if _tag(keyword) in ds and len(number_attribute(ds, keyword, None, None) or []) != count:
            raise SourceError("invalid-attribute", f"{keyword} {ds[keyword].value!r} is not {count} number(s)")
    vertices = number_attribute(ds, "VerticesOfThePolygonalShutter", None, None)
    if vertices is not None and (len(vertices) < 2 or len(vertices) % 2):
        raise SourceError("invalid-attribute", f"VerticesOfThePolygonalShutter holds {len(vertices)} value(s), not (row, column) pairs")
    return geometry


def check_pixel_budget(ds: Dataset, geometry: PixelGeometry, indices: list[int], keyword: str = "PixelData") -> None:
    """Refuse, before decoding, a frame or selection too large for the memory bound, and native pixel data
    shorter than the header says.

    Raises:
        SourceError: ``image-too-large`` (`SelectionTooLarge` when only the selection is) or
            ``truncated-pixel-data``.
    """
    frame_pixels = geometry.rows * geometry.columns * geometry.samples
    if frame_pixels > MAX_FRAME_PIXELS:
        raise SourceError(
            "image-too-large",
            f"header claims {geometry.columns} x {geometry.rows} x {geometry.samples} sample(s) per frame, "
            f"more than the limit of {MAX_FRAME_PIXELS:,} pixels",
        )
    if frame_pixels * len(indices) > MAX_DECODED_PIXELS:
        raise SelectionTooLarge(
            f"{len(indices)} selected frames of {geometry.columns} x {geometry.rows} exceed the limit of "
            f"{MAX_DECODED_PIXELS:,} decoded pixels read at once (read them one at a time)",
            indices,
        )
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        encapsulated = syntax is not None and syntax.is_encapsulated
    except (ValueError, AttributeError):
        return  # an unknown transfer syntax: the decoder reports it
    if encapsulated or syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        frame_pixels = geometry.rows * geometry.columns * 2  # two chroma samples shared by each pixel pair
    needed = (frame_pixels * geometry.frames * geometry.bits_allocated + 7) // 8
    stored = len(ds[keyword].value or b"")
    if stored < needed:
        raise SourceError("truncated-pixel-data", f"Pixel Data holds {stored:,} bytes; the header needs {needed:,}")


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
            raw = pydicom.pixels.apply_color_lut(raw, _palette_in_native_order(ds))
            scale = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else 1.0
        else:
            scale = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        notes.append(f"colour ({photometric}) converted to grey")
        rgb = raw.astype(np.float32) / scale
        return np.clip(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 0.0, 1.0)

    values = modality_values(raw, ds)
    if raw.dtype.kind == "f" and not np.isfinite(values).all():  # float pixel data may hold NaN or inf
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise SourceError("blank-after-windowing", "no pixel holds a finite value")
        values = np.nan_to_num(values, nan=finite.min(), posinf=finite.max(), neginf=finite.min())
        notes.append("non-finite pixel values set to the frame's finite minimum or maximum")
    display = voi_display(values, ds, notes)
    if display is None or displayed_spread(display) < MIN_DISPLAY_SPREAD:
        if display is not None:
            notes.append("the file's VOI window shows (almost) one grey level; a percentile window of the pixel values was used")
        low, high = robust_limits(values)
        if high <= low:
            raise SourceError("blank-after-windowing", f"the pixel values hold (almost) a single value ({low:g})")
        display = _linear_to_unit(values, low, high - low)
    if photometric == "MONOCHROME1":
        display = np.float32(1.0) - display
    return display  # every branch above clips to [0, 1]


PALETTE_DATA_KEYWORDS: tuple[str, ...] = tuple(f"{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue", "Alpha"))


def _palette_in_native_order(ds: Dataset) -> Dataset:
    """`ds`, or a shallow copy whose 16-bit palette tables are in little-endian order.

    pydicom 3.0 reads (non-segmented) palette table data in the machine's byte order whatever the transfer
    syntax, so a big-endian file's palette comes out byte-swapped (255 where 65280 is meant: a black image).
    """
    encoding = getattr(ds, "original_encoding", (None, None))
    if encoding[1] is not False or "RedPaletteColorLookupTableData" not in ds:
        return ds
    try:
        entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 1 << 16
    except Exception:  # pydicom names a malformed descriptor when it applies the table
        return ds
    fixed = Dataset(ds)  # a new element dict: the caller's dataset is left as read
    for keyword in PALETTE_DATA_KEYWORDS:
        data = ds.get(keyword)
        if isinstance(data, bytes) and len(data) == 2 * entries:  # 16-bit entries (8-bit ones have no order)
            setattr(fixed, keyword, np.frombuffer(data, ">u2").astype("<u2").tobytes())
    return fixed


def modality_values(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values: the Modality LUT, else Rescale Slope and Intercept.

    Integer input without a rescale stays integer (the window converts it in one pass). A rescale that
    would overflow float32 is computed in float64.

    Raises:
        SourceError: ``invalid-attribute`` for a Modality LUT that cannot be applied.
    """
    if "ModalityLUTSequence" in ds:
        try:
            return pydicom.pixels.apply_modality_lut(raw, ds).astype(np.float32, copy=False)
        except Exception as error:
            raise SourceError("invalid-attribute", f"ModalityLUTSequence cannot be applied: {error}") from None
    slope = number_attribute(ds, "RescaleSlope", 1.0)[0]  # type: ignore[index]
    intercept = number_attribute(ds, "RescaleIntercept", 0.0)[0]  # type: ignore[index]
    if slope == 1.0 and intercept == 0.0:
        return raw
    largest = float(np.abs(raw).max(initial=0)) if raw.dtype.kind == "f" else float(2 ** (8 * raw.dtype.itemsize))
    dtype = np.float32 if abs(slope) * largest + abs(intercept) < 1e30 else np.float64
    values = raw * dtype(slope)
    values += dtype(intercept)
    return values


def voi_display(values: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray | None:
    """Modality values -> display in [0, 1] through the file's VOI LUT or window; None when the file has
    neither, or when they cannot be applied (with a note naming the attribute)."""
    if "VOILUTSequence" in ds:
        try:
            # a LUT is indexed by integer modality values
            lut_in = np.rint(np.clip(values, -(2**31), 2**31 - 1)).astype(np.int32)
            lut_out = pydicom.pixels.apply_voi_lut(lut_in, ds, prefer_lut=True).astype(np.float32, copy=False)
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            return np.clip(lut_out / np.float32(2**bits - 1), 0.0, 1.0)
        except Exception as error:
            notes.append(f"VOILUTSequence cannot be applied ({type(error).__name__}); a percentile window was used")
            return None
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    try:
        center = number_attribute(ds, "WindowCenter")[0]  # type: ignore[index]
        width = number_attribute(ds, "WindowWidth")[0]  # type: ignore[index]
        if width <= 0:
            raise SourceError("invalid-attribute", f"WindowWidth {width:g} is not positive")
    except SourceError as error:
        notes.append(f"{error.message}; a percentile window was used")
        return None
    return window(values, center, width, str(ds.get("VOILUTFunction", "LINEAR")).upper())


def displayed_spread(display: np.ndarray) -> float:
    """Spread of the middle 98 % of a display frame's values (on a subsample of about 64 x 64: cheap, and
    blank frames are blank everywhere)."""
    step = max(1, min(display.shape) // 64) if display.ndim == 2 else 1  # about 64 x 64 values
    sample = display[::step, ::step].ravel()
    low, high = (sample.size - 1) // 100, sample.size - 1 - (sample.size - 1) // 100  # the 1st and 99th percentiles
    ranked = np.partition(sample, (low, high))  # what np.percentile does, without its overhead on small arrays
    return float(ranked[high] - ranked[low])


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
        with np.errstate(over="ignore"):  # exp overflows to inf far below the centre: 1 / inf is the right 0
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
    low, high = robust_limits(values)
    if high <= low:
        high = low + 1.0
    return _linear_to_unit(values, low, high - low)


def robust_limits(values: np.ndarray) -> tuple[float, float]:
    """The [p0.5, p99.5] percentiles of a frame's values (see `robust_window`)."""
    sample = values[::4, ::4] if values.ndim == 2 and min(values.shape) >= 64 else values
    low, high = np.percentile(sample, ROBUST_WINDOW_PERCENTILES)
    return float(low), float(high)


def _linear_to_unit(values: np.ndarray, low: float, span: float) -> np.ndarray:
    """(values - low) / span clipped to [0, 1], in float32; integer input converts in the first pass
    (float64 input, from a huge rescale, is scaled in float64 first)."""
    if values.dtype == np.float64:
        return np.clip((values - low) / span, 0.0, 1.0).astype(np.float32)
    display = np.subtract(values, np.float32(low), dtype=np.float32)
    display *= np.float32(1.0 / span)
    return np.clip(display, 0.0, 1.0, out=display)


# --------------------------------------------------------------------------------------------- images


def check_image_size(data: bytes) -> None:
    """Refuse a plain image whose header claims more than `MAX_FRAME_PIXELS` (a decompression bomb), from
    the header alone: Pillow reads the size without decoding. A header Pillow cannot read does not go to
    OpenCV either: a damaged PNG header once made OpenCV take a second and a gigabyte to give up on it.

    Raises:
        SourceError: ``image-too-large``, or ``corrupt-image`` for a header that cannot be read.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the check below decides
            with PIL.Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                bands = len(image.getbands())
    except PIL.Image.DecompressionBombError as error:
        raise SourceError("image-too-large", f"image header claims a decompression bomb: {error}") from None
    except PIL.UnidentifiedImageError:
        # Pillow's message names only its in-memory buffer; say what it means for the file
        raise SourceError("corrupt-image", "image cannot be decoded (truncated, corrupt or not an image)") from None
    except Exception as error:
        raise SourceError("corrupt-image", f"image header cannot be read ({describe(error)})") from None
    if width * height > MAX_FRAME_PIXELS:
        raise SourceError(
            "image-too-large",
            f"image header claims {width} x {height} x {bands} band(s), more than the limit of {MAX_FRAME_PIXELS:,} pixels",
        )


def check_png_chunks(data: bytes) -> None:
    """Refuse a PNG whose chunks run past the end of the file, from their lengths alone: OpenCV allocates
    a chunk's claimed length (up to 2 GiB) before it finds the file too short.

    Raises:
        SourceError: ``corrupt-image``.
    """
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if position + 12 + length > len(data):
            name = kind.decode("latin-1")
            raise SourceError("corrupt-image", f"PNG chunk {name!r} claims {length:,} bytes, past the end of the file")
        if kind == b"IEND":
            return
        position += 12 + length


def _read_image_bytes(data: bytes, frames: str, digest: str) -> SourceImage:
    check_image_size(data)
    if data.startswith(PNG_SIGNATURE):
        check_png_chunks(data)
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
