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

# corner text detection, on corner patches of this share of the field side, judged on the dataset's scale
# (patches of other sizes are resampled to it); the values were tuned on samples 0-2399 of the evaluation set
# in benchmarks/detector_sets.py and are measured on samples from 100000 on (benchmarks/eval_detectors.py)
CORNER_SHARE = 0.15
TEXT_REFERENCE_SIDE = 780
# strokes: thinner than the top-hat kernel and this much brighter (darker) than their surroundings
TEXT_KERNEL = 9
TEXT_CONTRAST = 0.2
# a glyph: this many stroke pixels at least, this high (smaller is noise, taller a lead marker or anatomy),
# filling this share of its box (more is a solid block, less a sparse comb of ruler ticks)
TEXT_MIN_STROKE_PIXELS = 12
TEXT_MIN_HEIGHT = 4
TEXT_MAX_HEIGHT = 32
TEXT_FILL = (0.2, 0.75)
# a long group whose outer row (column) is filled this much, and its other rows this little, is a ruler's comb
TEXT_EDGE_LINE = 0.95
TEXT_COMB_FILL = 0.35
# a word (glyphs that touch): this much wider than tall, with this many stroke pixels
TEXT_WORD_ASPECT = 1.4
TEXT_WORD_MIN_INK = 30
# two glyphs are on one line when no further apart than this many times their height
TEXT_GAP = 1.5
# the strokes of a line of text differ from the median of the ground around them by this much; the gaps
# between a ruler's ticks, which the other top-hat sees, are that ground
TEXT_GROUND_CONTRAST = 0.19
# a line of strokes that a top-hat twice as wide sees this many times larger belongs to thicker strokes
TEXT_THICK_RATIO = 2.5


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

    Text is a line of thin, high-contrast strokes: the morphological top-hats (bright and dark) pick out
    features thinner than `TEXT_KERNEL` pixels, and a corner is flagged when they form two glyph-sized
    groups side by side on one baseline, or one word-shaped group (glyphs that touch). A lone letter (a
    lead marker), a ruler's ticks on their baseline, bone edges, body outlines and collimator edges are not
    text; X-ray anatomy and quantum noise do not reach that contrast at that scale.

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
            if int(strokes.sum()) >= TEXT_MIN_STROKE_PIXELS and _has_text_line(strokes, patch, operation):
                flagged.append(name)
                break
    return flagged


def _has_text_line(strokes: np.ndarray, patch: np.ndarray, operation: int) -> bool:
    """Whether a stroke mask holds a line of text: two glyphs side by side on one baseline, or a word.

    `patch` and `operation` (the top-hat that gave `strokes`) serve to check a candidate line against its
    ground and against thick strokes (a lead marker's letter, of which `strokes` holds only the edges).
    """
    joined = cv2.dilate(strokes, np.ones((3, 3), np.uint8))  # the strokes of one glyph make one group
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    # group boxes without the pixel the dilation added on each side
    left, top, width, height = stats[1:, 0] + 1, stats[1:, 1] + 1, stats[1:, 2] - 2, stats[1:, 3] - 2
    ink = np.bincount(labels.ravel(), weights=strokes.ravel(), minlength=count)[1:]  # stroke pixels of each group
    glyph = (height >= TEXT_MIN_HEIGHT) & (height <= TEXT_MAX_HEIGHT) & (width >= 2) & (ink >= TEXT_MIN_STROKE_PIXELS)
    glyph &= (ink >= TEXT_FILL[0] * width * height) & (ink <= TEXT_FILL[1] * width * height)
    if not glyph.any():
        return False
    elongated = (width >= 2 * height) | (height >= 2 * width)  # only those can be combs
    index = np.array(
        [
            i
            for i in np.flatnonzero(glyph)
            if not (elongated[i] and _has_edge_line(strokes[top[i] : top[i] + height[i], left[i] : left[i] + width[i]]))
        ],
        dtype=int,
    )
    # a letter inside a frame taller than any glyph (a lead marker's box) is a marker
    frames = np.flatnonzero(height > TEXT_MAX_HEIGHT)
    if frames.size and index.size:
        inside = (left[index, None] > left[frames]) & (top[index, None] > top[frames])
        inside &= (left[index, None] + width[index, None] < left[frames] + width[frames])
        inside &= (top[index, None] + height[index, None] < top[frames] + height[frames])
        index = index[~inside.any(axis=1)]
    thick = None

    def stands_out(rows: slice, cols: slice, stroke_pixels: float, glyph_height: int) -> bool:
        """Strokes that stand out from their ground and are not the edges of thicker strokes."""
        nonlocal thick
        margin = glyph_height // 2
        ground = float(np.median(patch[max(0, rows.start - margin) : rows.stop + margin, max(0, cols.start - margin) : cols.stop + margin]))
        ink_mean = float(patch[rows, cols][strokes[rows, cols] > 0].mean())
        if (ink_mean - ground) * (1 if operation == cv2.MORPH_TOPHAT else -1) < TEXT_GROUND_CONTRAST:
            return False
        if thick is None:  # the same top-hat with a kernel twice as wide also sees strokes up to twice as thick
            wide = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * TEXT_KERNEL, 2 * TEXT_KERNEL))
            thick = cv2.morphologyEx(patch, operation, wide) > TEXT_CONTRAST
        return int(thick[rows, cols].sum()) <= TEXT_THICK_RATIO * stroke_pixels

    # a word: glyphs that touch, wider than tall
    word = (width[index] >= TEXT_WORD_ASPECT * height[index]) & (height[index] >= 6) & (ink[index] >= TEXT_WORD_MIN_INK)
    for i in index[word]:
        if stands_out(slice(top[i], top[i] + height[i]), slice(left[i], left[i] + width[i]), ink[i], height[i]):
            return True
    # two glyphs on one line: similar height, centres level, close together; one of them more than a stroke
    center = top + height / 2.0
    for a in index[(width[index] >= 4) & (width[index] >= 0.3 * height[index])]:
        tall = np.maximum(height[index], height[a])
        level = np.abs(center[index] - center[a]) <= 0.35 * tall
        level &= (height[index] <= 2 * height[a]) & (2 * height[index] >= height[a])
        gap = np.maximum(left[index] - (left[a] + width[a]), left[a] - (left[index] + width[index]))
        near = index[level & (gap <= TEXT_GAP * tall)]
        if near.size < 2:
            continue
        rows = slice(int(top[near].min()), int((top[near] + height[near]).max()))
        cols = slice(int(left[near].min()), int((left[near] + width[near]).max()))
        if stands_out(rows, cols, float(ink[near].sum()), int(np.median(height[near]))):
            return True
    return False


def _has_edge_line(box: np.ndarray) -> bool:
    """Whether a long group is a comb: one outer row (column, when it is tall) a line, the others sparse ticks."""
    rows, cols = box.shape
    if cols >= 2 * rows:
        profile = cv2.morphologyEx(box, cv2.MORPH_CLOSE, np.ones((1, 3), np.uint8)).mean(axis=1)
    elif rows >= 2 * cols:
        profile = cv2.morphologyEx(box, cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8)).mean(axis=0)
    else:
        return False
    if profile.size < 5:
        return False
    edge = max(profile[:2].max(), profile[-2:].max())
    return edge >= TEXT_EDGE_LINE and float(np.median(profile[2:-2])) <= TEXT_COMB_FILL


def mask_corners(image: np.ndarray, corners: list[str]) -> np.ndarray:
    """Fill the named corner patches with the median of the frame (a neutral value); returns a copy."""
    masked = image.copy()
    fill = np.float32(np.median(image[::4, ::4]))
    boxes = corner_boxes(image.shape[0])
    for name in corners:
        top, left, bottom, right = boxes[name]
        masked[top:bottom, left:right] = fill
    return masked
