"""Worker side of a build: one raw file in, dataset rows (with PNG bytes) or precise skip reasons out.

Kept apart from `xdigiskull.build` so that the build's worker processes import only what they need
(no `datasets`), which keeps their start-up short.
"""

from __future__ import annotations

import ctypes
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial

from xdigiskull.classes import CLASS_NAMES, split_class_name
from xdigiskull.deid import DEFAULT_SALT, detect_corner_text, has_burned_in_flag, mask_corners, source_id, technical_values
from xdigiskull.labels import LabelError, LabelInfo, Labeler
from xdigiskull.png import encode_grey_png
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import SourceError, is_dicom_path, read_source

PIXEL_DATA_GROUP = 0x7FE00000  # (7FE0,0000): Pixel Data and its float variants come from here on


@dataclass(frozen=True)
class BuildOptions:
    """Options that shape every image; all recorded in the card's provenance.

    Attributes:
        frames: ``first``, ``middle``, ``all`` or a 0-based frame index.
        bit_depth: 8 (PNG mode L) or 16 (PNG mode I;16).
        size: output side in pixels.
        allow_upscale: enlarge fields smaller than `size` instead of skipping them.
        mask_burned_in: mask corners with burned-in annotation instead of skipping the frame.
        salt: salt of the source ids.
    """

    frames: str = "first"
    bit_depth: int = 8
    size: int = 780
    allow_upscale: bool = False
    mask_burned_in: bool = False
    salt: str = DEFAULT_SALT


@dataclass
class FileTask:
    relative: str
    path: str
    split: str
    label: LabelInfo


@dataclass
class FrameOutcome:
    frame: int
    status: str  # "written" or "skipped"
    reason: str = ""
    message: str = ""
    row: dict | None = None


@dataclass
class FileOutcome:
    relative: str
    digest: str = ""
    num_frames: int = 0
    frames: list[FrameOutcome] = field(default_factory=list)
    reason: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def process_file(task: FileTask, options: BuildOptions) -> FileOutcome:
    """Read one raw file and turn its selected frames into dataset rows (PNG bytes included)."""
    outcome = FileOutcome(task.relative)
    try:
        source = read_source(task.path, options.frames)
    except SourceError as error:
        outcome.reason, outcome.message = error.reason, error.message
        return outcome
    outcome.digest = source.digest
    outcome.num_frames = source.num_frames
    outcome.warnings = list(source.warnings)
    ds = source.dataset
    technical = technical_values(ds)
    burned_in_flag = has_burned_in_flag(ds)
    domain, dose = split_class_name(task.label.class_name)
    sid = source_id(source.digest, options.salt)

    for index, frame in zip(source.frame_indices, source.frames):
        try:
            prepared = prepare_frame(frame, ds, options.size, options.allow_upscale)
        except SourceError as error:
            outcome.frames.append(FrameOutcome(index, "skipped", error.reason, error.message))
            continue
        image = prepared.image
        corners = detect_corner_text(image)
        if burned_in_flag or corners:
            where = f"text in the {', '.join(corners)} corner(s)" if corners else "BurnedInAnnotation = YES"
            if not options.mask_burned_in:
                outcome.frames.append(
                    FrameOutcome(index, "skipped", "burned-in-annotation", f"{where} (use --mask-burned-in to mask)")
                )
                continue
            # the flag alone does not say where the text is: mask every corner
            image = mask_corners(image, corners or ["top-left", "top-right", "bottom-left", "bottom-right"])
            outcome.warnings.append(f"frame {index}: burned-in annotation masked ({where})")
        spacing = technical["pixel_spacing_mm"]
        row = {
            "image": encode_png(image, options.bit_depth),
            "label": CLASS_NAMES.index(task.label.class_name),
            "domain": domain,
            "dose": dose,
            "view": task.label.view,
            "primary_angle": task.label.primary_angle,
            "secondary_angle": task.label.secondary_angle,
            "pair_id": task.label.pair_id,
            "frame_index": int(index),
            "source_id": sid,
            **technical,
            # spacing of the output grid, not of the detector
            "pixel_spacing_mm": None if spacing is None else spacing * prepared.crop.side / image.shape[0],
        }
        outcome.frames.append(FrameOutcome(index, "written", row=row))
    return outcome


def encode_png(image: np.ndarray, bit_depth: int) -> bytes:
    """Encode a [0, 1] float frame as an 8-bit or 16-bit grey PNG (see `xdigiskull.png`)."""
    if bit_depth == 16:
        pixels = image * np.float32(65535.0)
        pixels += np.float32(0.5)  # rounds to nearest on the cast below (values are >= 0)
        return encode_grey_png(pixels.astype(np.uint16))
    return encode_grey_png(cv2.convertScaleAbs(image, alpha=255.0))  # scale, round and saturate in one pass


def process_files(tasks: list[FileTask], options: BuildOptions) -> list[FileOutcome]:
    """A pool task: several files, to keep the inter-process traffic per file small."""
    return [process_file(task, options) for task in tasks]


def scan_files(items: list[tuple[str, str]], labeler: Labeler) -> list[LabelInfo | LabelError]:
    """A pool task: label files that need their DICOM header read."""
    return [label_file(relative, path, labeler) for relative, path in items]


def label_file(relative: str, path: str, labeler: Labeler) -> LabelInfo | LabelError:
    """Label one file, reading its DICOM header only when the labeler needs it."""
    ds: Dataset | None = None
    if labeler.needs_header and is_dicom_path(Path(path)):
        # stop after the last attribute the labeler reads (and before any pixel data): elements are
        # parsed one by one, so a vendor's long private groups would cost more than the rest together
        stop_at = min(labeler.header_tags[-1] + 1, PIXEL_DATA_GROUP)
        try:
            with warnings.catch_warnings(), open(path, "rb") as handle:
                warnings.simplefilter("ignore")
                ds = read_partial(handle, stop_when=lambda tag, vr, length: tag >= stop_at)
        except Exception:  # unreadable headers are reported precisely when the file is read for its pixels
            ds = None
    try:
        return labeler.label(relative, ds)
    except LabelError as error:
        return error


def worker_init() -> None:
    """Set up a build worker process: one OpenCV thread, and freed memory kept for the next file."""
    cv2.setNumThreads(1)  # parallelism comes from the processes
    keep_freed_memory()


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold: int = 32 << 20) -> bool:
    """Make glibc's malloc reuse freed blocks up to `threshold` bytes instead of returning them to the OS.

    Every file allocates the same few buffers of megabytes (file bytes, pixels, float frames). By default
    glibc maps each one freshly from the kernel and unmaps it when freed, so the next file page-faults
    and zero-fills them all again: for a 1024x1024 DICOM, about 2,200 page faults and 6 ms of system
    time on top of 13 ms of work. Kept, the buffers are reused, and the process holds on to its peak
    (tens of MB) until it exits.

    The setting is process-wide: the builder applies it in its worker processes and in the
    ``xdigiskull build`` command; call it yourself before an in-process ``build_dataset(num_proc=1)``.

    Returns:
        Whether the settings took (False where the C library is not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python runs on
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS) or no C library by that name (Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 4 * threshold))
