"""Read a built X-DigiSkull (local folder or Hub id) as grey float images for training.

Images are stored as 8-bit (mode L) or 16-bit (mode I;16) grey PNGs. Training sees them as
float32 tensors of shape (1, H, W) scaled to [-1, 1] (the range diffusers' VAEs expect),
downscaled with cv2.INTER_AREA to `resolution` x `resolution` and optionally randomly cropped. The conversion
and resizing are `medshift.image_processor`'s, shared with the pipeline and the evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
import torch

from xdigiskull.classes import CLASS_NAMES
from medshift.image_processor import resize_square, to_unit_float



def load_split(
    dataset: str,
    split: str,
    streaming: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of a built X-DigiSkull.

    Args:
        dataset: a local folder written by `xdigiskull build` (or by `Dataset.save_to_disk`),
            or a Hugging Face Hub dataset id.
        split: the split to read, e.g. "train" or "validation".
        streaming: read lazily without downloading / materialising the whole split (for
            datasets larger than the disk).

    Returns:
        A `datasets.Dataset` (or `datasets.IterableDataset` when streaming) with at least the
        `image` and `label` columns.
    """
    path = Path(dataset)
    if path.is_dir() and (path / "dataset_dict.json").exists():
        # written by DatasetDict.save_to_disk: load_dataset cannot read that layout
        splits = datasets.load_from_disk(str(path))
        if split not in splits:
            raise ValueError(f"dataset {dataset!r} has no split {split!r}; available: {', '.join(splits)}")
        data = splits[split]
        return data.to_iterable_dataset() if streaming else data
    try:
        data = datasets.load_dataset(dataset, split=split, streaming=streaming)
    except ValueError as error:
        if "split" in str(error).lower():
            raise ValueError(f"dataset {dataset!r} has no split {split!r}: {error}") from error
        raise
    except FileNotFoundError as error:
        raise ValueError(
            f"cannot read dataset {dataset!r}: not a built X-DigiSkull folder, and not reachable on the Hub ({error})"
        ) from error
    missing = {"image", "label"} - set(data.column_names or ["image", "label"])
    if missing:
        raise ValueError(f"dataset {dataset!r} split {split!r} lacks the column(s) {sorted(missing)}")
    return data


def has_split(dataset: str, split: str) -> bool:
    """Whether `dataset` has a split called `split` (False rather than an error when it has not)."""
    try:
        load_split(dataset, split, streaming=True)
    except ValueError:
        return False
    return True


def to_model_range(array: np.ndarray) -> torch.Tensor:
    """[0, 1] HxW array -> (1, H, W) float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).mul(2.0).sub(1.0).unsqueeze(0)


def random_crop(pixels: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random `size` x `size` crop of a (C, H, W) tensor."""
    _, height, width = pixels.shape
    if size > height or size > width:
        raise ValueError(f"crop size {size} is larger than the image ({height}x{width})")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return pixels[:, top : top + size, left : left + size]


def prepare_example(example: dict, resolution: int) -> dict[str, torch.Tensor]:
    """One dataset row -> {"pixel_values": (1, R, R) in [-1, 1], "label": int64 scalar}."""
    label = int(example["label"])
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label {label} outside the X-DigiSkull classes 0..{len(CLASS_NAMES) - 1}")
    array = resize_square(to_unit_float(example["image"]), resolution)
    return {"pixel_values": to_model_range(array), "label": torch.tensor(label, dtype=torch.long)}


class XDigiSkullImages(torch.utils.data.Dataset):
    """Map-style view of a split: downscaled grey images, optional random crop and horizontal flip.

    Args:
        data: a `datasets.Dataset` with `image` and `label` columns.
        resolution: side the full image is resized to.
        crop_size: if set, a random crop of this side is taken after resizing (VAE training).
        flip: randomly flip left-right with probability 0.5.
    """

    def __init__(self, data: datasets.Dataset, resolution: int, crop_size: int | None = None, flip: bool = False):
        self.data = data
        self.resolution = resolution
        self.crop_size = crop_size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = prepare_example(self.data[int(index)], self.resolution)
        return augment(item, self.crop_size, self.flip)


class StreamingXDigiSkullImages(torch.utils.data.IterableDataset):
    """Iterable view of a streamed split (same transforms as `XDigiSkullImages`), repeated forever.

    Shuffling uses the `datasets` shuffle buffer; each pass reshuffles with a new seed.
    """

    def __init__(
        self,
        data: datasets.IterableDataset,
        resolution: int,
        crop_size: int | None = None,
        flip: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 256,
    ):
        self.data = data
        self.resolution = resolution
        self.crop_size = crop_size
        self.flip = flip
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = 0
        while True:
            shuffled = self.data.shuffle(seed=self.seed + epoch, buffer_size=self.shuffle_buffer)
            for example in shuffled:
                yield augment(prepare_example(example, self.resolution), self.crop_size, self.flip)
            epoch += 1


def augment(item: dict[str, torch.Tensor], crop_size: int | None, flip: bool) -> dict[str, torch.Tensor]:
    """Apply the optional random crop and left-right flip (global torch RNG, restored on resume)."""
    pixels = item["pixel_values"]
    if crop_size is not None:
        pixels = random_crop(pixels, crop_size)
    if flip and bool(torch.rand(()) < 0.5):
        pixels = pixels.flip(-1)
    return {"pixel_values": pixels, "label": item["label"]}


def pick_examples(
    data: datasets.Dataset | datasets.IterableDataset,
    count: int,
    labels: tuple[int, ...] = (0, 1),
) -> list[dict]:
    """First `count` rows whose label is in `labels` (e.g. synthetic ones for sample grids),
    falling back to any rows when there are too few."""
    chosen, others = [], []
    for example in data:
        (chosen if int(example["label"]) in labels else others).append(example)
        if len(chosen) >= count:
            break
        if len(chosen) + len(others) >= 50 * count:
            break
    return (chosen + others)[:count]
