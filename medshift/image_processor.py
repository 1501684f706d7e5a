"""MedShift's image processor: what happens to an image on its way into the pipeline and back out.

It has the role diffusers gives `VaeImageProcessor`: `preprocess` turns every supported input into grey float32
images in [0, 1] (checked, grouped by size), `to_model_size` / `to_input_size` resize a batch to the processing
resolution (padded for the VAE) and back, and `postprocess` returns the output type asked for. It calls the
X-DigiSkull builder only to read a DICOM file, so that DICOM inputs are prepared as the dataset's were.

The input contract (`to_grey_images`):

- float arrays and tensors (and PIL mode F) must lie in [0, 1]; anything else is refused with the range found
  (a 0..255 float image or diffusers' [-1, 1] convention would otherwise be clipped into a wrong picture);
- integer arrays are read by their dtype's range: uint8 / PIL L by 255, uint16, int16, int32 / PIL I;16 and I
  (how PIL opens 16-bit PNGs) by 65535; `bits_stored=b` reads them by 2**b - 1 instead (e.g. 12 for detector
  data in 16-bit containers), and values above that are refused;
- whether an image is 16-bit (and so gets a 16-bit PIL output) is known from its dtype or mode, never guessed
  from its values.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import cv2
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from medshift.vae_codec import pad_to_multiple
from xdigiskull.image_io import is_dicom

SIXTEEN_BIT_MODES: frozenset[str] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})  # PIL opens most 16-bit PNGs as I
COLOUR_MODES: frozenset[str] = frozenset({"RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"})
# integer dtypes read as 16-bit containers (PIL's mode I is int32; torch had no uint16 before 2.3)
SIXTEEN_BIT_DTYPES = ("uint16", "int16", "int32")
# mean difference between an image's colour channels (of full scale) above which it is a colour picture:
# an X-ray saved as RGB has equal channels, a tinted one differs by a few levels of 255
COLOUR_THRESHOLD = 0.03
OUTPUT_TYPES = ("pil", "np", "pt")

ImageInput = Union[PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike]
PipelineImageInput = Union[ImageInput, Sequence[ImageInput]]
GreyImage = tuple[np.ndarray, bool]  # (float32 HxW in [0, 1], was 16-bit)


class ColourImageWarning(UserWarning):
    """An input looks like a colour photograph, not an X-ray: it is translated through its luminance."""


# ----------------------------------------------------------------------------------- reading and scaling


def integer_scale(dtype: str, bits_stored: int | None) -> tuple[float, bool]:
    """(full-scale value, is 16-bit) of an integer image of `dtype` (a name such as "uint16")."""
    if dtype not in ("uint8", *SIXTEEN_BIT_DTYPES):
        raise ValueError(f"integer images must be uint8, uint16, int16 or int32, got dtype {dtype}")
    if bits_stored is not None:
        return float(2 ** int(bits_stored) - 1), dtype != "uint8"
    return (255.0, False) if dtype == "uint8" else (65535.0, True)


def check_bits_stored(bits_stored: int | None) -> None:
    """Raise a ValueError unless `bits_stored` is None or an integer from 1 to 16."""
    if bits_stored is not None and (isinstance(bits_stored, bool) or not 1 <= int(bits_stored) <= 16 or int(bits_stored) != bits_stored):
        raise ValueError(f"bits_stored must be an integer from 1 to 16, got {bits_stored!r}")


def scale_integers(values: np.ndarray, dtype: str, bits_stored: int | None) -> tuple[np.ndarray, bool]:
    """Integer pixels -> float32 in [0, 1] by the dtype's range (or `bits_stored`), refusing values outside it."""
    full_scale, is16 = integer_scale(dtype, bits_stored)
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > full_scale:
            reading = f"bits_stored={bits_stored}" if bits_stored is not None else f"its dtype {dtype}"
            raise ValueError(
                f"integer image holds values {low}..{high}, outside 0..{full_scale:g} (read by {reading}); "
                "pass bits_stored= with the detector's bit depth, or convert it to float in [0, 1]"
            )
    return values.astype(np.float32) / np.float32(full_scale), is16


def check_unit_range(values: np.ndarray) -> np.ndarray:
    """Float pixels must lie in [0, 1]; NaN and infinity are refused as well. Returns float32 values."""
    values = values.astype(np.float32, copy=False)
    if values.size == 0:
        return values
    if not np.isfinite(values).all():
        raise ValueError("image contains NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        if low >= -1.0 and high <= 1.0:
            advice = "for diffusers' [-1, 1] convention pass (x + 1) / 2; clip values that only overshoot [0, 1]"
        else:
            advice = "divide by the full-scale value (255 for 8-bit, 65535 for 16-bit data) or pass the integer array"
        raise ValueError(f"float images must lie in [0, 1], got values in [{low:.6g}, {high:.6g}]: {advice}")
    return values


def is_colour(rgb: np.ndarray) -> bool:
    """Whether an HxWxC (C >= 3) image's colour channels differ: a colour picture, not a grey X-ray saved as RGB."""
    channels = rgb[..., :3].astype(np.float32)
    spread = float(np.abs(channels - channels.mean(axis=-1, keepdims=True)).mean())
    full_scale = 255.0 if rgb.dtype == np.uint8 else 65535.0 if rgb.dtype == np.uint16 else 1.0
    return spread / full_scale > COLOUR_THRESHOLD


def warn_if_colour(rgb: np.ndarray, name: str = "image") -> None:
    """Warn (`ColourImageWarning`) when an HxWx3 image's channels differ: a colour photograph, not an X-ray."""
    if is_colour(rgb):
        warnings.warn(
            f"{name} is a colour picture, not a grey X-ray: it is translated through its luminance, and the result "
            "means little", ColourImageWarning, stacklevel=3,
        )


def pil_to_grey(image: PIL.Image.Image, bits_stored: int | None = None) -> GreyImage:
    """PIL image -> (grey float32 HxW, is_16_bit). 16-bit modes and L are integers (see `scale_integers`), mode F
    must lie in [0, 1], colour modes go through luminance (with a warning when the channels differ)."""
    if image.mode in SIXTEEN_BIT_MODES:
        return scale_integers(np.asarray(image), "int32" if image.mode == "I" else "uint16", bits_stored)
    if image.mode == "F":
        return check_unit_range(np.asarray(image)), False
    if image.mode in COLOUR_MODES:
        warn_if_colour(np.asarray(image.convert("RGB")))
    if image.mode != "L":
        image = image.convert("L")  # RGB, RGBA, P, 1: luminance
    return scale_integers(np.asarray(image), "uint8", bits_stored)


def numpy_to_grey(array: np.ndarray, bits_stored: int | None = None) -> list[GreyImage]:
    """numpy HxW, HxWxC (C in 1, 3, 4), NxHxW or NxHxWxC (integers or float in [0, 1]) -> grey images."""
    if np.issubdtype(array.dtype, np.floating):
        scaled, is16 = check_unit_range(array), False
    elif np.issubdtype(array.dtype, np.integer):
        scaled, is16 = scale_integers(array, array.dtype.name, bits_stored)
    else:
        raise ValueError(f"numpy images must be integers or float (values in [0, 1]), got dtype {array.dtype}")
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
    warn_if_colour(image)
    return image[..., :3].mean(axis=-1)  # RGB(A) -> grey; alpha ignored


def tensor_to_grey(tensor: torch.Tensor, bits_stored: int | None = None) -> list[GreyImage]:
    """torch HxW, CxHxW (C in 1, 3) or NxCxHxW; integers scaled by their dtype's range, float in [0, 1]."""
    t = tensor.detach().cpu()
    if t.is_floating_point():
        scaled, is16 = check_unit_range(t.float().numpy()), False
    elif t.dtype in (torch.uint8, torch.int16, torch.uint16, torch.int32):
        scaled, is16 = scale_integers(t.numpy(), str(t.dtype).removeprefix("torch."), bits_stored)
    else:
        raise ValueError(f"torch images must be uint8, 16-bit or 32-bit integer or float (values in [0, 1]), got {t.dtype}")
    t = torch.from_numpy(scaled)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(
            f"cannot interpret a tensor of shape {tuple(tensor.shape)} as grey image(s): use HxW, CxHxW or NxCxHxW with C = 1 or 3"
        )
    if t.shape[1] == 3:
        warn_if_colour(t.permute(0, 2, 3, 1).numpy())
    return [(frame.numpy(), is16) for frame in t.mean(dim=1)]


def load_grey(path: str | os.PathLike, bits_stored: int | None = None) -> GreyImage:
    """Read a file as a grey image: DICOM through the builder's reader and field crop (first frame, so the image
    is prepared as the dataset's were; its own BitsStored applies), anything else through PIL."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input image {str(path)!r} does not exist or is not a file")
    if is_dicom(path):
        from xdigiskull.prepare import load_prepared  # the builder's reader loads only for DICOM inputs

        frames = load_prepared(path, size=None, frames="first")
        if len(frames) == 0:
            raise ValueError(f"DICOM file {str(path)!r} has no frames")
        return np.asarray(frames[0], dtype=np.float32), True
    try:
        with PIL.Image.open(path) as image:
            image.load()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ColourImageWarning)  # re-raised below, naming the file
                grey = pil_to_grey(image, bits_stored)
            if image.mode in COLOUR_MODES:
                warn_if_colour(np.asarray(image.convert("RGB")), name=str(path))
            return grey
    except PIL.UnidentifiedImageError as err:
        raise ValueError(f"cannot read {str(path)!r} as an image or DICOM file") from err
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def to_grey_images(image: PipelineImageInput, bits_stored: int | None = None) -> list[GreyImage]:
    """Every supported input (or a list mixing them) -> list of (grey float32 HxW array in [0, 1], was_16_bit).

    Args:
        image: PIL image, numpy array, torch tensor, image or DICOM path, or a list of them (see the module's
            docstring for the value ranges accepted).
        bits_stored: bit depth of integer inputs (1-16); None reads them by their dtype's range.
    """
    check_bits_stored(bits_stored)
    if isinstance(image, (list, tuple)):
        return [item for element in image for item in to_grey_images(element, bits_stored)]
    if isinstance(image, (str, os.PathLike)):
        return [load_grey(image, bits_stored)]
    if isinstance(image, PIL.Image.Image):
        return [pil_to_grey(image, bits_stored)]
    if isinstance(image, np.ndarray):
        return numpy_to_grey(image, bits_stored)
    if isinstance(image, torch.Tensor):
        return tensor_to_grey(image, bits_stored)
    raise ValueError(
        f"unsupported image type {type(image).__name__}: pass PIL images, numpy arrays, torch tensors, file paths or lists of them"
    )


def to_unit_float(image: Any) -> np.ndarray:
    """One image -> float32 HxW in [0, 1]. Also takes a dataset's undecoded {"bytes", "path"} dict."""
    if isinstance(image, dict):
        image = PIL.Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"])
    images = to_grey_images(image)
    if len(images) != 1:
        raise ValueError(f"expected one image, got {len(images)}")
    return images[0][0]


def is_sixteen_bit_file(path: str | os.PathLike) -> bool:
    """Whether the file at `path` holds 16-bit pixels (DICOM files, 16-bit PNG / TIFF), read from its header only."""
    if is_dicom(path):
        return True
    with PIL.Image.open(path) as image:
        return image.mode in SIXTEEN_BIT_MODES


def unit_to_pil(image: np.ndarray, sixteen_bit: bool) -> PIL.Image.Image:
    """Grey float HxW in [0, 1] (clipped) -> a PIL image, 16-bit (I;16) or 8-bit (L), rounded to nearest."""
    grey = np.clip(image, 0.0, 1.0)
    if sixteen_bit:
        return PIL.Image.fromarray(np.round(grey * 65535).astype(np.uint16))
    return PIL.Image.fromarray(np.round(grey * 255).astype(np.uint8))


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
    if isinstance(image, torch.Tensor):
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


# ------------------------------------------------------------------------------------- the processor


class MedShiftImageProcessor:
    """The pipeline's image conversions (diffusers' `VaeImageProcessor` role), for grey X-rays.

    Args:
        vae_scale_factor: pixels per latent cell; images are padded to a multiple of it for the VAE.
    """

    def __init__(self, vae_scale_factor: int = 8):
        self.vae_scale_factor = int(vae_scale_factor)

    def preprocess(
        self, image: PipelineImageInput, bits_stored: int | None = None
    ) -> tuple[list[GreyImage], dict[tuple[int, int], list[int]]]:
        """Every input as a grey float32 [0, 1] image (`to_grey_images`), checked to be non-empty, and the
        indices of the images of each size (they share a batch).

        Args:
            image: the pipeline's `image` argument.
            bits_stored: bit depth of integer inputs; None reads them by their dtype's range.
        """
        images = to_grey_images(image, bits_stored)
        if not images:
            raise ValueError("image is an empty batch: pass at least one image")
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (array, _) in enumerate(images):
            if array.size == 0:
                raise ValueError(f"image {i} is empty (shape {array.shape})")
            groups.setdefault(array.shape, []).append(i)
        return images, groups

    def to_model_size(self, arrays: list[np.ndarray], processing_resolution: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Same-size [0, 1] images -> an (N, 1, h, w) batch whose longer side is `processing_resolution` (aspect
        kept), padded to the VAE's factor, and the size to crop the decoded batch back to."""
        height, width = arrays[0].shape
        pixels = torch.from_numpy(np.stack(arrays))[:, None]
        scale = processing_resolution / max(height, width)
        pixels = resize(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))
        # padded to the VAE's own factor only (780 -> 784, not 832): the VAE is the costly part, and the UNet's
        # larger multiple is met by padding the latents instead
        return pad_to_multiple(pixels, self.vae_scale_factor)

    @staticmethod
    def to_input_size(pixels: torch.Tensor, crop: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """A decoded (N, 1, h, w) batch -> cropped to `crop`, resized back to the input `size`, in [0, 1], on the CPU."""
        return resize(pixels[..., : crop[0], : crop[1]], size).clamp(0, 1).cpu()

    @staticmethod
    def postprocess(
        outputs: list[torch.Tensor], is16: list[bool], output_type: str = "pil"
    ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
        """(1, H, W) results in [0, 1] -> "pil" (I;16 for 16-bit inputs, L otherwise), "np" ((N, H, W, 1) float32)
        or "pt" ((N, 1, H, W) float32); a list of arrays / tensors when sizes differ."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        same_size = len({tuple(o.shape) for o in outputs}) == 1
        if output_type == "pt":
            return torch.stack(outputs) if same_size else list(outputs)
        arrays = [o.permute(1, 2, 0).numpy().astype(np.float32) for o in outputs]  # (H, W, 1)
        if output_type == "np":
            return np.stack(arrays) if same_size else arrays
        return [unit_to_pil(array[..., 0], sixteen) for array, sixteen in zip(arrays, is16)]
