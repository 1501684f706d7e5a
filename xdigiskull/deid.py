"""De-identification: what may leave the site, and what stops a frame from leaving.

Only the technical attributes in `TECHNICAL_TAGS` are carried into the dataset; everything else in
the DICOM header (names, ids, dates, institution, UIDs, free text) is dropped. Sources are named by a
salted hash of the file's contents, never by name or path. Frames flagged with burned-in annotation
(the DICOM attribute, or text found in the corners of the field) are skipped or masked.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# dataset column -> DICOM keywords to try, in order of preference (units in the column name)
TECHNICAL_TAGS: dict[str, tuple[str, ...]] = {
    "kvp": ("KVP",),
    "tube_current_ma": ("XRayTubeCurrentInmA", "XRayTubeCurrent"),
    "exposure_time_ms": ("ExposureTimeInms", "ExposureTime"),
    "pixel_spacing_mm": ("ImagerPixelSpacing", "PixelSpacing"),
    "frame_time_ms": ("FrameTime",),
}

DEFAULT_SALT = "x-digiskull"

# corner text detection: corner patch = this share of the field side; strokes thinner than the kernel
CORNER_SHARE = 0.15
TEXT_KERNEL = 9
TEXT_CONTRAST = 0.25
TEXT_MIN_GLYPHS = 1
# strokes are judged on this scale (the dataset's size): patches of other sizes are resampled to it
TEXT_REFERENCE_SIDE = 780
TEXT_MIN_STROKE_PIXELS = 12


def technical_values(ds: Dataset | None) -> dict[str, float | None]:
    """The whitelisted technical attributes of `ds` as floats (None when absent or unreadable).

    Pixel spacing is that of the stored pixels (row spacing); the builder rescales it to the output grid.

    Args:
        ds: DICOM header, or None for plain images (all values None).
    """
    values: dict[str, float | None] = dict.fromkeys(TECHNICAL_TAGS)
    if ds is None:
        return values
    for column, keywords in TECHNICAL_TAGS.items():
        for keyword in keywords:
            element = ds.get(keyword)
            if element is None or element == "":
                continue
            try:
                first = element[0] if isinstance(element, (list, tuple, MultiValue)) else element
                values[column] = float(first)
            except (TypeError, ValueError, IndexError):
                continue
            break
    return values


def source_id(digest: str, salt: str = DEFAULT_SALT) -> str:
    """Salted hash naming a source file: 16 hex characters of keyed BLAKE2b over the file's content digest.

    Args:
        digest: content digest of the file (see `xdigiskull.reading.SourceImage.digest`).
        salt: site secret; with the default, anyone holding the original file can recompute the id.
    """
    key = hashlib.sha256(salt.encode("utf-8")).digest()
    return hashlib.blake2b(digest.encode("ascii"), key=key, digest_size=8).hexdigest()


def has_burned_in_flag(ds: Dataset | None) -> bool:
    """Whether the DICOM header declares Burned In Annotation = YES."""
    return ds is not None and str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"


def corner_boxes(side: int) -> dict[str, tuple[int, int, int, int]]:
    """Corner patches of a square image of `side` pixels as (top, left, bottom, right)."""
    patch = max(8, int(round(side * CORNER_SHARE)))
    far = side - patch
    return {
        "top-left": (0, 0, patch, patch),
        "top-right": (0, far, patch, side),
        "bottom-left": (far, 0, side, patch),
        "bottom-right": (far, far, side, side),
    }


def detect_corner_text(image: np.ndarray) -> list[str]:
    """Corners of a square frame in [0, 1] that look like they carry burned-in text.

    Text is thin, high-contrast strokes: the morphological top-hats (bright and dark) pick out features
    thinner than `TEXT_KERNEL` pixels; a corner with at least `TEXT_MIN_GLYPHS` such stroke groups of
    glyph size is flagged. X-ray anatomy and quantum noise do not reach that contrast at that scale.

    Args:
        image: HxW float32 frame in [0, 1] (the cropped, resized field).
    """
    side = image.shape[0]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TEXT_KERNEL, TEXT_KERNEL))
    reference = int(round(TEXT_REFERENCE_SIDE * CORNER_SHARE))
    flagged = []
    for name, (top, left, bottom, right) in corner_boxes(side).items():
        patch = image[top:bottom, left:right]
        if patch.shape[0] != reference:  # judge glyph size on the 780-pixel scale, whatever the output size
            interpolation = cv2.INTER_AREA if patch.shape[0] > reference else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (reference, reference), interpolation=interpolation)
        # each polarity on its own: the gaps inside bright glyphs show up in the dark top-hat and vice versa
        for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
            strokes = (cv2.morphologyEx(patch, operation, kernel) > TEXT_CONTRAST).astype(np.uint8)
            if int(strokes.sum()) < TEXT_MIN_STROKE_PIXELS:
                continue
            # join the strokes of one glyph, then count glyph-sized groups
            joined = cv2.dilate(strokes, np.ones((3, 3), np.uint8))
            _, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
            areas = stats[1:, cv2.CC_STAT_AREA]
            if int(((areas >= TEXT_MIN_STROKE_PIXELS) & (areas <= patch.size // 4)).sum()) >= TEXT_MIN_GLYPHS:
                flagged.append(name)
                break
    return flagged


def mask_corners(image: np.ndarray, corners: list[str]) -> np.ndarray:
    """Fill the named corner patches with the median of the frame (a neutral value); returns a copy."""
    masked = image.copy()
    fill = np.float32(np.median(image[::4, ::4]))
    boxes = corner_boxes(image.shape[0])
    for name in corners:
        top, left, bottom, right = boxes[name]
        masked[top:bottom, left:right] = fill
    return masked
