"""Find the exposed field of an X-ray frame, take a centred square of it and resize it.

The field comes from the DICOM display-shutter attributes when the file has them; otherwise it is
detected in the image: uniform non-image margins (screen exports), dark collimator bands and circular
fields (image intensifiers); when the evidence for them is weak, the full frame is the field
(`source="full-frame"`). The crop is the largest square centred in the field: for a rectangle
of h x w it is min(h, w) wide, offset by (h - s) // 2 and (w - s) // 2; for a circle it is the
inscribed square. The phantom's ground truth is cut with the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset

# a line of a non-image margin: (nearly) all pixels within this of the margin's value
FLAT_NOISE = 0.004
# collimator bands are darker than (almost) everything in the centre of the image
BAND_MAX_VALUE = 0.25
# share of a line's pixels that must look like the band for the line to belong to it
BAND_LINE_SHARE = 0.98
# a noisy dark band is a collimator only if it ends in a step up to the field: along (nearly) all of the edge
# the field side is brighter than the band side by this much; smooth dark anatomy at the border has no such step
EDGE_STEP = 0.04
EDGE_SHARE = 0.8
# an image-intensifier circle fills most of the frame; a small round bright blob is anatomy, not a field
CIRCLE_MIN_RADIUS_SHARE = 0.3


@dataclass(frozen=True)
class Field:
    """Exposed field as a pixel rectangle (`top`/`left` inclusive, `bottom`/`right` exclusive).

    Attributes:
        top, left, bottom, right: the rectangle bounds.
        shape: ``"rectangle"`` or ``"circle"`` (then the rectangle bounds the circle).
        source: ``"shutter-tags"``, ``"detected"`` or ``"full-frame"``.
    """

    top: int
    left: int
    bottom: int
    right: int
    shape: str = "rectangle"
    source: str = "detected"

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


@dataclass(frozen=True)
class SquareCrop:
    """A square region of a frame: rows `top:top+side`, columns `left:left+side`."""

    top: int
    left: int
    side: int


# ------------------------------------------------------------------------------------- shutter tags


def field_from_shutter(ds: Dataset | None, shape: tuple[int, int]) -> Field | None:
    """Exposed field from the DICOM display-shutter attributes (PS3.3 C.7.6.11), or None without them.

    Rectangular edges are 1-based pixel positions of the first and last exposed column/row; circular
    and polygonal shutters are bounded by their enclosing rectangle (a circle keeps ``shape="circle"``).
    Several shapes in one file are intersected.

    Args:
        ds: DICOM header, or None for plain images.
        shape: (rows, columns) of the frame.
    """
    if ds is None or "ShutterShape" not in ds:
        return None
    value = ds.ShutterShape  # a str for one shape, a MultiValue for several
    shapes = [str(s).upper() for s in ([value] if isinstance(value, str) else value)]
    rows, cols = shape
    top, left, bottom, right = 0, 0, rows, cols
    kind = "rectangle"
    found = False
    if "RECTANGULAR" in shapes and all(
        k in ds
        for k in ("ShutterLeftVerticalEdge", "ShutterRightVerticalEdge", "ShutterUpperHorizontalEdge", "ShutterLowerHorizontalEdge")
    ):
        left = max(left, int(ds.ShutterLeftVerticalEdge) - 1)
        right = min(right, int(ds.ShutterRightVerticalEdge))
        top = max(top, int(ds.ShutterUpperHorizontalEdge) - 1)
        bottom = min(bottom, int(ds.ShutterLowerHorizontalEdge))
        found = True
    if "CIRCULAR" in shapes and "CenterOfCircularShutter" in ds and "RadiusOfCircularShutter" in ds:
        center_row, center_col = (float(v) for v in ds.CenterOfCircularShutter)
        radius = float(ds.RadiusOfCircularShutter)
        top = max(top, int(math.floor(center_row - 1 - radius)))
        bottom = min(bottom, int(math.ceil(center_row - 1 + radius)) + 1)
        left = max(left, int(math.floor(center_col - 1 - radius)))
        right = min(right, int(math.ceil(center_col - 1 + radius)) + 1)
        kind = "circle" if not found else "rectangle"
        found = True
    if "POLYGONAL" in shapes and "VerticesOfThePolygonalShutter" in ds:
        vertices = np.asarray([float(v) for v in ds.VerticesOfThePolygonalShutter]).reshape(-1, 2)  # (row, col)
        top = max(top, int(vertices[:, 0].min()) - 1)
        bottom = min(bottom, int(vertices[:, 0].max()))
        left = max(left, int(vertices[:, 1].min()) - 1)
        right = min(right, int(vertices[:, 1].max()))
        found = True
    if not found or bottom <= top or right <= left:
        return None
    return Field(top, left, bottom, right, kind, "shutter-tags")


# --------------------------------------------------------------------------------- image detection


def detect_field(image: np.ndarray) -> Field:
    """Detect the exposed field of a frame in [0, 1] (standard display).

    Peels, from each side, the lines that belong to a non-image margin (one flat value) or to a dark
    collimator band (noisy but darker than nearly all of the image centre), then checks whether what
    is left is a circle (dark corners, round bright region).

    Args:
        image: HxW float32 frame in [0, 1].

    Returns:
        The field; ``source="full-frame"`` when nothing was peeled and no circle was found.
    """
    rows, cols = image.shape
    center = image[rows // 4 : rows - rows // 4, cols // 4 : cols - cols // 4]
    # a band is clearly darker than the middle of the frame (which a small or off-centre field may not fill)
    ceiling = min(BAND_MAX_VALUE, float(np.median(center[::2, ::2])) - EDGE_STEP) if center.size else 0.0

    top = _peel(image, ceiling)
    bottom = rows - _peel(image[::-1, :], ceiling)
    left = _peel(image.T, ceiling)
    right = cols - _peel(image.T[::-1, :], ceiling)
    # weak evidence keeps the side: a peeled noisy band must end in a step up to the field along its edge
    if top and not _is_edge(image[:, left:right], top):
        top = 0
    if bottom < rows and not _is_edge(image[::-1, left:right], rows - bottom):
        bottom = rows
    if left and not _is_edge(image.T[:, top:bottom], left):
        left = 0
    if right < cols and not _is_edge(image.T[::-1, top:bottom], cols - right):
        right = cols
    if bottom - top < 2 or right - left < 2:
        return Field(0, 0, 0, 0, "rectangle", "detected")
    peeled = (top, left, bottom, right) != (0, 0, rows, cols)

    circle = _detect_circle(image[top:bottom, left:right], ceiling)
    if circle is not None:
        c_row, c_col, radius = circle
        c_row += top
        c_col += left
        return Field(
            max(top, int(round(c_row - radius))),
            max(left, int(round(c_col - radius))),
            min(bottom, int(round(c_row + radius))),
            min(right, int(round(c_col + radius))),
            "circle",
            "detected",
        )
    return Field(top, left, bottom, right, "rectangle", "detected" if peeled else "full-frame")


def _is_edge(image: np.ndarray, count: int) -> bool:
    """Whether the first `count` rows of `image` end in a screen margin's or a collimator's straight edge.

    A flat margin must give way to the image within two lines. For a noisy band, compares, column block
    by column block, its last rows with the rows a little past its end (past a blurred edge's penumbra):
    the field must be brighter by `EDGE_STEP` along `EDGE_SHARE` of the edge, and the band one level.
    """
    band = image[max(0, count - 8) : count]
    field = image[count + 3 : count + 11]
    if band.size == 0 or field.size == 0:
        return True  # the band reaches the middle of the frame: nothing to compare, keep the old verdict
    value = float(np.median(band[-1]))
    if 1.4826 * float(np.median(np.abs(band[-1] - value))) <= FLAT_NOISE:
        # a flat (screen) margin ends in a straight line: the image starts at once along all of it, whereas
        # saturated air around a body gives way to the body's curved outline a bit more each line
        beyond = image[count + 1 : count + 3]
        return bool(np.all((np.abs(beyond - np.float32(value)) <= 2.0 / 255.0).mean(axis=1) < 0.5))
    cols = band.shape[1] - band.shape[1] % 8 or band.shape[1]
    steps = field[:, :cols].mean(axis=0) - band[:, :cols].mean(axis=0)
    if steps.size >= 8:
        steps = steps[: steps.size - steps.size % 8].reshape(-1, 8).mean(axis=1)  # average out the noise
    if float(np.mean(steps >= EDGE_STEP)) < EDGE_SHARE:
        return False
    # a band is one level from the frame's edge to its own: dark anatomy fading in towards the middle is not
    outer, inner = image[: max(1, count // 3)], image[max(0, count - 3 - count // 3) : max(1, count - 3)]
    return abs(float(inner.mean()) - float(outer.mean())) < EDGE_STEP / 2


def _band_reference(line: np.ndarray, ceiling: float) -> tuple[float, float] | None:
    """(value, tolerance) of a margin or band whose outermost line is `line`, or None if it is image."""
    value = float(np.median(line))
    deviation = np.abs(line - value)
    noise = 1.4826 * float(np.median(deviation))
    # the tolerance also covers the few outliers of a dark level clipped at zero (median and MAD are 0 there)
    outliers = 1.25 * float(np.percentile(deviation, 99))
    if noise <= FLAT_NOISE:
        return value, max(4.0 * noise, 2.0 / 255.0, outliers)
    # a band's line is noise about one level; a line of anatomy also varies along its length
    pixel_noise = 1.4826 * float(np.median(np.abs(np.diff(line)))) / math.sqrt(2.0)
    if value <= ceiling and noise <= 2.0 * pixel_noise + 0.01:
        return value, max(4.0 * noise + 0.01, outliers)
    return None


def _peel(image: np.ndarray, ceiling: float) -> int:
    """Number of leading rows of `image` that belong to a margin or band."""
    reference = _band_reference(image[0], ceiling)
    if reference is None:
        return 0
    value, tolerance = reference
    limit = image.shape[0] // 2
    count = 0
    block = 64
    while count < limit:
        strip = image[count : min(limit, count + block)]
        share = (np.abs(strip - np.float32(value)) <= tolerance).mean(axis=1)
        outside = np.flatnonzero(share < BAND_LINE_SHARE)
        if outside.size:
            return count + int(outside[0])
        count += strip.shape[0]
    return count


def _detect_circle(region: np.ndarray, ceiling: float) -> tuple[float, float, float] | None:
    """(row, col, radius) of a circular field filling `region`, or None when the corners are exposed."""
    rows, cols = region.shape
    if min(rows, cols) < 16:
        return None
    patch = max(2, min(rows, cols) // 16)
    corners = [region[:patch, :patch], region[:patch, -patch:], region[-patch:, :patch], region[-patch:, -patch:]]
    references = [_band_reference(c.ravel(), ceiling) for c in corners]
    if any(r is None for r in references):
        return None
    value = float(np.median([r[0] for r in references]))
    tolerance = max(r[1] for r in references)
    mask = (np.abs(region - np.float32(value)) > tolerance).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(largest)
    (c_col, c_row), radius = cv2.minEnclosingCircle(hull)
    if radius < max(8.0, CIRCLE_MIN_RADIUS_SHARE * min(rows, cols)):
        return None  # a small bright blob is anatomy, not an image-intensifier field
    if cv2.contourArea(hull) < 0.85 * math.pi * radius * radius:
        return None  # not round: a rectangle with a dark corner, say
    return c_row, c_col, radius


# ------------------------------------------------------------------------------------ crop + resize


def square_crop(field: Field) -> SquareCrop:
    """Largest square centred in the field (the inscribed square for a circle)."""
    if field.shape == "circle":
        diameter = min(field.height, field.width)
        side = int(math.floor(diameter / math.sqrt(2.0)))
        center_row = field.top + field.height / 2.0
        center_col = field.left + field.width / 2.0
        return SquareCrop(int(round(center_row - side / 2.0)), int(round(center_col - side / 2.0)), side)
    side = min(field.height, field.width)
    return SquareCrop(field.top + (field.height - side) // 2, field.left + (field.width - side) // 2, side)


def crop_and_resize(image: np.ndarray, crop: SquareCrop, size: int | None) -> np.ndarray:
    """Cut `crop` from `image` and resize it to size x size with INTER_AREA (no resize when size is None)."""
    square = image[crop.top : crop.top + crop.side, crop.left : crop.left + crop.side]
    if size is None or square.shape[0] == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_CUBIC
    resized = cv2.resize(square, (size, size), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0, out=resized) if interpolation == cv2.INTER_CUBIC else resized


def find_field(image: np.ndarray, ds: Dataset | None = None) -> Field:
    """Field from shutter tags when `ds` has them, else detected in `image`."""
    return field_from_shutter(ds, image.shape) or detect_field(image)
