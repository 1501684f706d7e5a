"""Worker side of a build: one raw file in, dataset rows (with PNG bytes) or precise skip reasons out.

Kept apart from `xdigiskull.build` so that the build's worker processes import only what they need
(no `datasets`), which keeps their start-up short.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial

from xdigiskull.classes import CLASS_NAMES, split_class_name
from xdigiskull.deid import DEFAULT_SALT, detect_corner_text, has_burned_in_flag, mask_corners, source_id, technical_values
from xdigiskull.image_io import is_dicom
from xdigiskull.labels import LabelError, LabelInfo, Labeler
from xdigiskull.png import encode_grey_png
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import SelectionTooLarge, SourceError, check_regular_file, describe, read_source
from xdigiskull.row import DatasetRow

PIXEL_DATA_GROUP = 0x7FE00000  # (7FE0,0000): Pixel Data and its float variants come from here on
# a frame is blank (a scanned white page, an unexposed plate) when at least this fraction of its 8-bit
# display pixels lies within BLANK_GREY_LEVELS grey levels of one another; a faint X-ray spreads far wider
BLANK_FRACTION = 0.98
BLANK_GREY_LEVELS = 3


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


@dataclass(frozen=True)
class LabelledFile:
    """A raw file the labelling stage gave a class and pose to.

    Attributes:
        relative: POSIX path relative to the raw folder (the file's key in the report).
        path: the file's path.
        label: its class and pose.
    """

    relative: str
    path: str
    label: LabelInfo


@dataclass(frozen=True)
class FileTask:
    """A labelled file and the split it goes to: what a build worker gets."""

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
    row: DatasetRow | None = None
    field_source: str = ""  # a written frame's Field.source: shutter-tags, detected or full-frame
    pixel_digest: str = ""  # a written frame's image digest: identical images are duplicates
    duplicate_of: str = ""  # a duplicate's source id (set by the writing stage)


@dataclass
class FileOutcome:
    relative: str
    digest: str = ""
    num_frames: int = 0
    frames: list[FrameOutcome] = field(default_factory=list)
    reason: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    instance_uid: str = ""  # a DICOM's SOPInstanceUID: two files with one are two copies of one image


def process_file(task: FileTask, options: BuildOptions) -> FileOutcome:
    """Read one raw file and turn its selected frames into dataset rows (PNG bytes included).

    Never raises for a bad input: whatever goes wrong reading the file, or preparing one of its frames,
    becomes the reason of the file's or that frame's outcome (``internal-error`` for the unexpected).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on every malformed value; the report says what matters
        try:
            return _process_file(task, options)
        except SelectionTooLarge as error:  # a long cine run: one frame in memory at a time
            return _process_frame_by_frame(task, options, error.indices)


def _process_frame_by_frame(task: FileTask, options: BuildOptions, indices: list[int]) -> FileOutcome:
    """`process_file` reading the file once per selected frame (each read checks, hashes and parses it again)."""
    outcome = FileOutcome(task.relative)
    for index in indices:
        try:
            single = _process_file(task, dataclasses.replace(options, frames=str(index)))
        except SelectionTooLarge as error:  # only when the limits are set so that one frame exceeds them
            single = FileOutcome(task.relative, reason=error.reason, message=error.message)
        if single.reason:
            outcome.frames.append(FrameOutcome(index, "skipped", single.reason, single.message))
            continue
        outcome.digest, outcome.num_frames = single.digest, single.num_frames
        outcome.frames += single.frames
        outcome.warnings += [w for w in single.warnings if w not in outcome.warnings]
    if not outcome.digest:  # no frame could be read: the file's reason is its first frame's
        first = outcome.frames[0]
        return FileOutcome(task.relative, reason=first.reason, message=f"frame {first.frame}: {first.message}")
    return outcome


def _process_file(task: FileTask, options: BuildOptions) -> FileOutcome:
    outcome = FileOutcome(task.relative)
    try:
        source = read_source(task.path, options.frames)
        ds = source.dataset
        context = _FileContext(
            task, options, ds, source_id(source.digest, options.salt), technical_values(ds), has_burned_in_flag(ds)
        )
    except SelectionTooLarge:
        raise  # for `process_file`, which reads the frames one at a time
    except SourceError as error:
        outcome.reason, outcome.message = error.reason, error.message
        return outcome
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # containment: one file never stops a build (a Rust panic is a BaseException)
        outcome.reason, outcome.message = "internal-error", f"reading the file raised {describe(error)}"
        return outcome
    outcome.digest = source.digest
    outcome.num_frames = source.num_frames
    outcome.instance_uid = _instance_uid(ds)
    outcome.warnings = list(source.warnings)
    outcome.frames += [FrameOutcome(i, "skipped", e.reason, e.message) for i, e in source.skipped.items()]
    for index, frame in zip(source.frame_indices, source.frames):
        try:
            outcome.frames.append(_process_frame(context, index, frame, outcome.warnings))
        except SourceError as error:
            outcome.frames.append(FrameOutcome(index, "skipped", error.reason, error.message))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:
            message = f"frame {index}: processing raised {describe(error)}"
            outcome.frames.append(FrameOutcome(index, "skipped", "internal-error", message))
    outcome.frames.sort(key=lambda f: f.frame)
    return outcome


def _instance_uid(ds: Dataset | None) -> str:
    """The SOPInstanceUID (or the file meta's copy of it), "" when absent or malformed."""
    if ds is None:
        return ""
    try:
        value = ds.get("SOPInstanceUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPInstanceUID")
        return str(value or "").strip("\x00 ")[:64]
    except Exception:  # a malformed UID is no UID: the pixel digest still catches a copy
        return ""


def blank_fraction(image: np.ndarray) -> float:
    """The largest fraction of a [0, 1] frame's 8-bit display pixels that lies within `BLANK_GREY_LEVELS`
    grey levels of one another (on a subsample of about 128 x 128: blank frames are blank everywhere, and 2 % of
    16,000 pixels still counts 300 of them)."""
    step = max(1, min(image.shape[:2]) // 128)
    sample = cv2.convertScaleAbs(np.ascontiguousarray(image[::step, ::step]), alpha=255.0)
    histogram = np.bincount(sample.ravel(), minlength=256)
    in_window = np.convolve(histogram, np.ones(BLANK_GREY_LEVELS + 1, np.int64), mode="valid")  # levels v..v+3
    return float(in_window.max()) / sample.size


@dataclass(frozen=True)
class _FileContext:
    """What every frame of one file shares."""

    task: FileTask
    options: BuildOptions
    dataset: Dataset | None
    source_id: str
    technical: dict[str, float | None]
    burned_in_flag: bool


def _process_frame(context: _FileContext, index: int, frame: np.ndarray, warnings_out: list[str]) -> FrameOutcome:
    """One display frame -> a written row, or a skip for burned-in text (SourceError for the rest)."""
    options, label, ds = context.options, context.task.label, context.dataset
    prepared = prepare_frame(frame, ds, options.size, options.allow_upscale)
    image = prepared.image
    crop = prepared.crop  # the field at the source's resolution: a resize would blur a white page's specks into grey
    fraction = blank_fraction(frame[crop.top : crop.top + crop.side, crop.left : crop.left + crop.side])
    if fraction >= BLANK_FRACTION:
        return FrameOutcome(
            index, "skipped", "blank", f"{fraction:.1%} of the pixels lie within {BLANK_GREY_LEVELS} grey levels: no image to learn from"
        )
    corners = detect_corner_text(image)
    if context.burned_in_flag or corners:
        where = f"text in the {', '.join(corners)} corner(s)" if corners else "BurnedInAnnotation = YES"
        if not options.mask_burned_in:
            return FrameOutcome(index, "skipped", "burned-in-annotation", f"{where} (use --mask-burned-in to mask)")
        # the flag alone does not say where the text is: mask every corner
        image = mask_corners(image, corners or ["top-left", "top-right", "bottom-left", "bottom-right"])
        warnings_out.append(f"frame {index}: burned-in annotation masked ({where})")
    technical = dict(context.technical)
    spacing = technical.pop("pixel_spacing_mm")
    domain, dose = split_class_name(label.class_name)
    row = DatasetRow(
        image=encode_png(image, options.bit_depth),
        label=CLASS_NAMES.index(label.class_name),
        domain=domain,
        dose=dose,
        view=label.view,
        primary_angle=label.primary_angle,
        secondary_angle=label.secondary_angle,
        pair_id=label.pair_id,
        frame_index=int(index),
        source_id=context.source_id,
        # spacing of the output grid, not of the detector
        pixel_spacing_mm=None if spacing is None else spacing * prepared.crop.side / image.shape[0],
        **technical,
    )
    digest = hashlib.sha256(row.image).hexdigest()[:32]  # SHA-256 has CPU instructions: 5x BLAKE2b's speed here
    return FrameOutcome(index, "written", row=row, field_source=prepared.field.source, pixel_digest=digest)


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


def scan_files(items: list[tuple[str, str]], labeler: Labeler) -> list[LabelInfo | LabelError | SourceError]:
    """A pool task: label files that need their DICOM header read."""
    return [label_file(relative, path, labeler) for relative, path in items]


def label_file(relative: str, path: str, labeler: Labeler) -> LabelInfo | LabelError | SourceError:
    """Label one file, reading its DICOM header only when the labeler needs it.

    Returns the label, a `LabelError` (no class for this file), or a `SourceError` when the header that the
    rules need cannot be read (``unreadable-header``) or labelling fails unexpectedly (``internal-error``).
    """
    ds: Dataset | None = None
    if labeler.needs_header and is_dicom(Path(path)):
        ds, problem = _read_label_header(path, labeler)
        if ds is None and labeler.mode == "rules":
            return SourceError("unreadable-header", f"the header the labelling rules test cannot be read: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a malformed angle is no angle; pydicom need not say so per file
            return labeler.label(relative, ds)
    except LabelError as error:
        return error
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # containment: one file never stops a build
        return SourceError("internal-error", f"labelling raised {describe(error)}")


def _read_label_header(path: str, labeler: Labeler) -> tuple[Dataset | None, str]:
    """The header up to the last attribute the labeler reads, or (None, why not)."""
    # stop after the last attribute the labeler reads (and before any pixel data): elements are
    # parsed one by one, so a vendor's long private groups would cost more than the rest together
    stop_at = min(labeler.header_tags[-1] + 1, PIXEL_DATA_GROUP)
    try:
        check_regular_file(Path(path))  # a pipe would block here; a huge file is refused when read
        with warnings.catch_warnings(), open(path, "rb") as handle:
            warnings.simplefilter("ignore")
            return read_partial(handle, stop_when=lambda tag, vr, length: tag >= stop_at), ""
    except SourceError as error:
        return None, error.message
    except Exception as error:  # without the rules, the read stage reports an unreadable header precisely
        return None, describe(error)


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
    ``xdigiskull build`` command; call it yourself before an in-process ``build_dataset(BuildConfig(..., num_proc=1))``.

    Returns:
        Whether the settings took (False where the C library is not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python runs on
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS) or no C library by that name (Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 4 * threshold))
