"""The builder's file helpers, shared with MedShift's tools: which files are DICOM or images, and atomic writes.

(MedShift's own image conversions, for its pipeline, training and evaluation, live in `medshift.image_processor`.)

- DICOM detection: `is_dicom`, by suffix or by the 'DICM' marker.
- Atomic writes: `atomic_write` (temporary file next to the target, then `os.replace`), so a crash never
  leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom", ".dic"})
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"})


# ------------------------------------------------------------------------------------------ detection


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether `path` is a DICOM file: by suffix (.dcm, .dicom, .dic), or, for a file without a known image
    suffix, by the 'DICM' marker at byte 128 (files from PACS often have no suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ writing


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only when the block succeeds, and is removed
    otherwise, so no half-written file is ever left under the final name.

        with atomic_write(out / "card.md") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name, left for the writer to create: mkstemp's file would keep its owner-only permissions
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
