"""Optional per-image label columns from a phantom v2 manifest, mapped into the dataset's output pixels.

A phantom v2 manifest (`xdigiskull phantom`, v2 by default) gives every export two label columns, both in
the pixel frame of the export's exposed field (the ground truth's frame):

- ``landmarks``: JSON ``{name: [x, y, visible]}`` of the 19 ISBI 2015 cephalometric landmarks (pixel centres at
  integers, x to the right, y down);
- ``bone_mask``: the relative path of a PNG mask of the pose (255 where the ray crosses bone).

The builder crops each frame to a square of its exposed field and resizes it (`xdigiskull.prepare`); the
functions here put the labels through the same crop and resize, so that they land on the output image:
`landmarks_to_output` and `mask_to_output` (`label_row_columns` does both for one frame, as the builder's
workers call it). `label_features` are their `datasets` column types. A dataset has these columns only when
its manifest gives some file labels, so builds without labels stay as they were, byte for byte.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from xdigiskull.field import Field, SquareCrop

LANDMARK_COLUMN = "landmarks"
MASK_COLUMN = "bone_mask"


def label_features() -> dict:
    """The two columns' `datasets` feature types (datasets is imported here: build workers never need it)."""
    from datasets import Image, Sequence, Value

    return {
        LANDMARK_COLUMN: Sequence({"name": Value("string"), "x": Value("float32"), "y": Value("float32"),
                                   "visible": Value("bool")}),
        MASK_COLUMN: Image(),
    }


def read_mask(path: str) -> np.ndarray:
    """A bone mask PNG as uint8 (any non-zero pixel is bone).

    Raises:
        ValueError: the file is missing or not an image, naming it.
    """
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"bone mask {path}: missing or not an image")
    return mask


def read_landmarks(text: str, where: str = "manifest") -> dict[str, tuple[float, float, bool]]:
    """Parse a manifest's ``landmarks`` cell.

    Args:
        text: JSON ``{name: [x, y, visible]}``.
        where: what to name in the error (e.g. the manifest path and row).

    Raises:
        ValueError: not that JSON shape, naming `where`.
    """
    try:
        raw = json.loads(text)
        return {str(name): (float(x), float(y), bool(visible)) for name, (x, y, visible) in raw.items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{where}: landmarks must be JSON {{name: [x, y, visible]}} ({error})") from error


def landmarks_to_output(landmarks: dict[str, tuple[float, float, bool]], field: Field, crop: SquareCrop,
                        size: int | None) -> list[dict[str, object]]:
    """Landmarks from the exposed field's frame to the output image's pixels.

    Args:
        landmarks: {name: (x, y, visible)} in the field's pixel frame (pixel centres at integers).
        field: the exposed field the builder found in the frame (its top-left is the landmarks' origin).
        crop: the square the builder cut from the frame.
        size: the output side (None: the crop's side, no resize).

    Returns:
        Rows of the ``landmarks`` column: name, x, y (output pixels, centres at integers) and visible (visible in
        the export and inside the output image).
    """
    scale = 1.0 if size is None else size / crop.side
    side = crop.side if size is None else size
    out = []
    for name, (x, y, visible) in landmarks.items():
        # into the frame, then the crop; resizing maps pixel edges to pixel edges (centre + 0.5)
        ox = (x + field.left - crop.left + 0.5) * scale - 0.5
        oy = (y + field.top - crop.top + 0.5) * scale - 0.5
        inside = -0.5 <= ox < side - 0.5 and -0.5 <= oy < side - 0.5
        out.append({"name": name, "x": float(ox), "y": float(oy), "visible": bool(visible and inside)})
    return out


def label_row_columns(landmarks: str, bone_mask: str, field: Field, crop: SquareCrop, size: int | None,
                      where: str) -> dict[str, object]:
    """The ``landmarks`` and ``bone_mask`` cells of one output image (None where the manifest gives none).

    Args:
        landmarks: the manifest's ``landmarks`` cell ("" when none).
        bone_mask: path of the manifest's mask PNG ("" when none).
        field, crop, size: the builder's exposed field, square crop and output side for the frame.
        where: what to name in an error (the raw file).

    Raises:
        ValueError: malformed landmarks or an unreadable mask, naming `where` and the mask.
    """
    marks = landmarks_to_output(read_landmarks(landmarks, where), field, crop, size) if landmarks else None
    try:
        mask = mask_to_output(read_mask(bone_mask), field, crop, size) if bone_mask else None
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return {LANDMARK_COLUMN: marks, MASK_COLUMN: mask}


def mask_to_output(mask: np.ndarray, field: Field, crop: SquareCrop, size: int | None) -> bytes:
    """A mask in the exposed field's frame, cut and resized like the image (nearest neighbour), as PNG bytes
    (uint8, 255 inside)."""
    canvas = np.zeros((crop.side, crop.side), np.uint8)
    # the crop's window in the mask's (field) frame, clipped to the mask
    top, left = crop.top - field.top, crop.left - field.left
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + crop.side, mask.shape[0]), min(left + crop.side, mask.shape[1])
    if r1 > r0 and c1 > c0:
        canvas[r0 - top:r1 - top, c0 - left:c1 - left] = np.where(mask[r0:r1, c0:c1] > 0, 255, 0)
    if size is not None and size != crop.side:
        canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_NEAREST)
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise RuntimeError("could not encode the mask as PNG")
    return encoded.tobytes()
