"""One row of X-DigiSkull: the typed record a build worker produces and `xdigiskull.writer` stores.

The fields are the dataset's columns, in the order of `xdigiskull.writer.dataset_features` (a test keeps
the two the same). Kept apart from the writer so that build workers do not import pyarrow or datasets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetRow:
    """One dataset image and its labels.

    Attributes:
        image: PNG bytes (8- or 16-bit grey).
        label: index into `xdigiskull.classes.CLASS_NAMES`.
        domain, dose: the class split in two (``synthetic``/``real``; ``low``, ``normal``...).
        view, primary_angle, secondary_angle, pair_id: the pose ("" or None when unknown).
        frame_index: index of the frame in its source file.
        source_id: salted hash of the source file (see `xdigiskull.deid.source_id`).
        kvp, tube_current_ma, exposure_time_ms, pixel_spacing_mm, frame_time_ms: technical values, None
            when the source does not have them (pixel spacing is that of the output grid).
        landmarks, bone_mask: optional label columns (`xdigiskull.label_columns`), in output pixels; None
            when the manifest gives none (a dataset has these columns only when some row does).
    """

    image: bytes
    label: int
    domain: str
    dose: str
    view: str
    primary_angle: float | None
    secondary_angle: float | None
    pair_id: str
    frame_index: int
    source_id: str
    kvp: float | None
    tube_current_ma: float | None
    exposure_time_ms: float | None
    pixel_spacing_mm: float | None
    frame_time_ms: float | None
    landmarks: list[dict] | None = None
    bone_mask: bytes | None = None
