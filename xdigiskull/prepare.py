"""One frame from raw to dataset geometry: checks, exposed field, centred square crop, resize.

`load_prepared` is the entry point for other tools (MedShift translates DICOM inputs with it), so that
their images are prepared exactly as the dataset's were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset

from xdigiskull.field import Field, SquareCrop, crop_and_resize, find_field, square_crop
from xdigiskull.reading import SourceError, read_source

MIN_FIELD_SIDE = 16  # below this there is no image to speak of
MIN_DYNAMIC_RANGE = 1.0 / 1024.0  # a frame (or field) flatter than this is empty


@dataclass
class PreparedFrame:
    """A frame cropped to its exposed field and resized.

    Attributes:
        image: float32 size x size array in [0, 1] (crop size when no resize was asked for).
        field: the exposed field found in the source frame.
        crop: the square cut from the source frame.
    """

    image: np.ndarray
    field: Field
    crop: SquareCrop


def prepare_frame(
    frame: np.ndarray, ds: Dataset | None = None, size: int | None = 780, allow_upscale: bool = False
) -> PreparedFrame:
    """Crop a display frame to the centred square of its exposed field and resize it.

    Args:
        frame: HxW float32 frame in [0, 1], standard display (from `xdigiskull.reading`).
        ds: its DICOM header (for the shutter attributes), or None.
        size: output side in pixels (INTER_AREA); None keeps the crop's size.
        allow_upscale: whether a field smaller than `size` is enlarged (else SourceError).

    Raises:
        SourceError: empty or all-black frame, no exposed field, field too small.
    """
    low, high = cv2.minMaxLoc(frame)[:2]  # one pass, where numpy takes two
    if high < MIN_DYNAMIC_RANGE:
        raise SourceError("all-black-frame", "frame is all black")
    if high - low < MIN_DYNAMIC_RANGE:
        raise SourceError("empty-frame", f"frame has a single value ({low:.4f} of full scale)")
    if min(frame.shape) < MIN_FIELD_SIDE:
        raise SourceError("tiny-image", f"image is {frame.shape[1]}x{frame.shape[0]} pixels (minimum {MIN_FIELD_SIDE})")
    field = find_field(frame, ds)
    crop = square_crop(field)
    if crop.side < MIN_FIELD_SIDE:
        raise SourceError("no-exposed-field", f"no exposed field found (largest square {crop.side} pixels)")
    if size is not None and crop.side < size and not allow_upscale:
        raise SourceError(
            "field-too-small",
            f"exposed field square is {crop.side} pixels, smaller than the target {size} (use --allow-upscale)",
        )
    image = crop_and_resize(frame, crop, size)
    low, high = cv2.minMaxLoc(image)[:2]
    if high - low < MIN_DYNAMIC_RANGE:
        raise SourceError("empty-field", "the exposed field holds a single value")
    return PreparedFrame(image, field, crop)


def load_prepared(path: str | Path, size: int | None = 780, frames: str = "first") -> list[np.ndarray]:
    """Read a DICOM or image file the way the dataset builder does, ready for a model.

    Converts to standard display, crops to the centred square of the exposed field and (when `size` is
    given) resizes with INTER_AREA, enlarging small fields if needed.

    Args:
        path: DICOM (.dcm, .dicom, no suffix) or PNG/TIFF/JPEG/BMP file.
        size: output side in pixels, or None to keep the crop's size.
        frames: ``"first"``, ``"middle"``, ``"all"`` or a 0-based frame index.

    Returns:
        One float32 HxW array in [0, 1] per selected frame.

    Raises:
        ValueError: the file cannot be read or has no usable image; the message names the file and why.
    """
    try:
        source = read_source(path, frames)
        return [prepare_frame(f, source.dataset, size, allow_upscale=True).image for f in source.frames]
    except SourceError as error:
        raise ValueError(f"{path}: {error.message}") from None
