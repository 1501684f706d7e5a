"""One home for image I/O shared by the builder, MedShift's pipeline, training, evaluation and scripts.

- Grey conversion: PIL images, numpy arrays, torch tensors and file paths (DICOM or image) become float32
  HxW arrays in [0, 1]. Whether an image is 16-bit is known from its dtype or PIL mode, never guessed from
  its values: uint16 / I;16 / I divide by 65535, uint8 / L by 255, float is taken as already in [0, 1].
- Resizing: `resize` (area-averaged when shrinking, as the builder does; bicubic when enlarging) and
  `resize_square` (centre square crop, then `resize`).
- DICOM detection: `is_dicom`.
- Atomic writes: `atomic_write` (temporary file next to the target, then `os.replace`), so a crash never
  leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import cv2
import numpy as np
import PIL.Image

if TYPE_CHECKING:
    import torch

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom", ".dic"})
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"})
SIXTEEN_BIT_MODES: frozenset[str] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})  # PIL opens most 16-bit PNGs as I

ImageInput = Union[PIL.Image.Image, np.ndarray, "torch.Tensor", str, os.PathLike]
GreyImage = tuple[np.ndarray, bool]  # (float32 HxW in [0, 1], was 16-bit)


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


# ------------------------------------------------------------------------------------- to grey [0, 1]


def pil_to_grey(image: PIL.Image.Image) -> GreyImage:
    """PIL image -> (grey float32 HxW, is_16_bit). Mode F is taken as [0, 1]; colour modes go through luminance."""
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / 65535.0, True
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32), False
    if image.mode != "L":
        image = image.convert("L")  # RGB, RGBA, P, 1: luminance
    return np.asarray(image, dtype=np.float32) / 255.0, False


def numpy_to_grey(array: np.ndarray) -> list[GreyImage]:
    """numpy HxW, HxWxC (C in 1, 3, 4), NxHxW or NxHxWxC (uint8, uint16 or float in [0, 1]) -> grey images."""
    if array.dtype == np.uint8:
        scaled, is16 = array.astype(np.float32) / 255.0, False
    elif array.dtype == np.uint16:
        scaled, is16 = array.astype(np.float32) / 65535.0, True
    elif np.issubdtype(array.dtype, np.floating):
        scaled, is16 = array.astype(np.float32), False
    else:
        raise ValueError(f"numpy images must be uint8, uint16 or float (values in [0, 1]), got dtype {array.dtype}")
    if scaled.ndim == 2:
        return [(scaled, is16)]
    if scaled.ndim == 3 and scaled.shape[-1] in (1, 3, 4):
        return [(_grey_channels_last(scaled), is16)]
    if scaled.ndim == 3:
        return [(frame, is16) for frame in scaled]
    if scaled.ndim == 4 and scaled.shape[-1] in (1, 3, 4):
        return [(_grey_channels_last(frame), is16) for frame in scaled]
    raise ValueError(f"cannot interpret a numpy array of shape {array.shape} as grey image(s): use HxW, HxWxC, NxHxW or NxHxWxC")


def _grey_channels_last(image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return image[..., 0]
    return image[..., :3].mean(axis=-1)  # RGB(A) -> grey; alpha ignored


def is_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor, without importing torch: the builder's worker processes use this
    module, and importing torch there would cost each of them about a second and 300 MB. A tensor can only
    exist once some code has imported torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def tensor_to_grey(tensor: torch.Tensor) -> list[GreyImage]:
    """torch HxW, CxHxW (C in 1, 3) or NxCxHxW; uint8 / 16-bit integers scaled, float taken as [0, 1]."""
    import torch

    t = tensor.detach().cpu()
    if t.dtype == torch.uint8:
        t, is16 = t.float() / 255.0, False
    elif t.dtype in (torch.int16, torch.uint16, torch.int32):
        t, is16 = t.float() / 65535.0, True
    elif t.is_floating_point():
        t, is16 = t.float(), False
    else:
        raise ValueError(f"torch images must be uint8, 16-bit integer or float (values in [0, 1]), got {t.dtype}")
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(
            f"cannot interpret a tensor of shape {tuple(tensor.shape)} as grey image(s): use HxW, CxHxW or NxCxHxW with C = 1 or 3"
        )
    return [(frame.numpy(), is16) for frame in t.mean(dim=1)]


def load_grey(path: str | os.PathLike) -> GreyImage:
    """Read a file as a grey image: DICOM through the builder's reader and field crop (first frame, so the
    image is prepared as the dataset's were), anything else through PIL."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input image {str(path)!r} does not exist or is not a file")
    if is_dicom(path):
        from xdigiskull.prepare import load_prepared  # imported here: prepare imports the whole reader

        frames = load_prepared(path, size=None, frames="first")
        if len(frames) == 0:
            raise ValueError(f"DICOM file {str(path)!r} has no frames")
        return np.asarray(frames[0], dtype=np.float32), True
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return pil_to_grey(image)
    except PIL.UnidentifiedImageError as err:
        raise ValueError(f"cannot read {str(path)!r} as an image or DICOM file") from err


def to_grey_images(image: ImageInput | Sequence[ImageInput]) -> list[GreyImage]:
    """Every supported input (or a list mixing them) -> list of (grey float32 HxW array, was_16_bit)."""
    if isinstance(image, (list, tuple)):
        return [item for element in image for item in to_grey_images(element)]
    if isinstance(image, (str, os.PathLike)):
        return [load_grey(image)]
    if isinstance(image, PIL.Image.Image):
        return [pil_to_grey(image)]
    if isinstance(image, np.ndarray):
        return numpy_to_grey(image)
    if is_tensor(image):
        return tensor_to_grey(image)
    raise ValueError(
        f"unsupported image type {type(image).__name__}: pass PIL images, numpy arrays, torch tensors, file paths or lists of them"
    )


def unit_to_pil(image: np.ndarray, sixteen_bit: bool) -> PIL.Image.Image:
    """Grey float HxW in [0, 1] (clipped) -> a PIL image, 16-bit (I;16) or 8-bit (L), rounded to nearest."""
    grey = np.clip(image, 0.0, 1.0)
    if sixteen_bit:
        return PIL.Image.fromarray(np.round(grey * 65535).astype(np.uint16))
    return PIL.Image.fromarray(np.round(grey * 255).astype(np.uint8))


def to_unit_float(image: Any) -> np.ndarray:
    """One image -> float32 HxW in [0, 1] (clipped). Also takes a dataset's undecoded {"bytes", "path"} dict."""
    if isinstance(image, dict):
        image = PIL.Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"])
    images = to_grey_images(image)
    if len(images) != 1:
        raise ValueError(f"expected one image, got {len(images)}")
    return np.clip(images[0][0], 0.0, 1.0)


# -------------------------------------------------------------------------------------------- resizing


def resize(image: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Resize to `size` = (height, width): area-averaged when shrinking (fewer pixels: the builder's
    convention), bicubic when enlarging (area is not meant for it).

    Args:
        image: a float HxW numpy array (resized with OpenCV) or an (N, C, H, W) tensor (resized with torch,
            on its device: the pipeline's batches).
        size: (height, width) to resize to.
    """
    height, width = image.shape[-2:]
    if (height, width) == tuple(size):
        return image
    shrinking = size[0] * size[1] < height * width
    if is_tensor(image):
        import torch.nn.functional as F

        return F.interpolate(image, size=tuple(size), mode="area" if shrinking else "bicubic")
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(np.asarray(image, dtype=np.float32), (size[1], size[0]), interpolation=interpolation)


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """Centre-crop a [0, 1] HxW array to a square (X-DigiSkull images already are), resize it to `side`²
    and clip back to [0, 1] (bicubic overshoots)."""
    height, width = image.shape
    crop = min(height, width)
    top, left = (height - crop) // 2, (width - crop) // 2
    square = np.asarray(image[top : top + crop, left : left + crop], dtype=np.float32)
    return np.ascontiguousarray(np.clip(resize(square, (side, side)), 0.0, 1.0))


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
