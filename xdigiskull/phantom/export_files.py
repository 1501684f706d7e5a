"""What the phantom's export writers share (`export` for heads, `test_objects` for the edge): the classes of each
domain and how a PNG is written."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xdigiskull.image_io import atomic_write

SYNTHETIC_CLASSES: tuple[str, ...] = ("synthetic_low", "synthetic_high")
REAL_CLASSES: tuple[str, ...] = ("real_low", "real_normal", "real_exposure")


# fast zlib level, and the "up" filter where OpenCV has the option (>= 4.11): on these smooth images it is as small
# as the adaptive filters and a third faster
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    _PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]


def write_png(path: Path, image: np.ndarray) -> None:
    """PNG via OpenCV (RGB input is given in RGB order), written atomically."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image, _PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    with atomic_write(path) as temporary:
        temporary.write_bytes(encoded.tobytes())


def to_16bit(display: np.ndarray) -> np.ndarray:
    """A display image in [0, 1] as 16-bit grey (the ground truth's format)."""
    return np.rint(np.clip(display, 0.0, 1.0) * 65535.0).astype(np.uint16)
