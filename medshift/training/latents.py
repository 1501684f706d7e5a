"""VAE encoding for training, and the latent cache.

The flow-matching UNet never sees pixels: it trains on VAE latents. Encoding a batch through
the VAE costs far more than a UNet step on its latents, so we encode the dataset once, keep
the latents (about 48x smaller than the images) in a safetensors file and train on those.

Encoding itself (grey or RGB VAEs, latent scaling) is `medshift.vae_codec.encode_grey`, shared with
the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from diffusers import AutoModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from medshift.training.data import prepare_example
from medshift.vae_codec import AUTOENCODERS, Autoencoder, encode_grey
from xdigiskull.image_io import atomic_write


def load_vae(vae: str, device: torch.device | str = "cpu") -> Autoencoder:
    """Load an AutoencoderKL or AutoencoderDC (the class its config.json names) from a local folder (e.g.
    `medshift train-vae` output, or a saved MedShiftPipeline, whose `vae` subfolder is used) or a Hub id;
    safetensors weights only."""
    path = Path(vae)
    subfolder = "vae" if (path / "vae" / "config.json").exists() else None
    try:
        model = AutoModel.from_pretrained(vae, subfolder=subfolder, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load an AutoencoderKL or AutoencoderDC from {vae!r}: {error}") from error
    if not isinstance(model, AUTOENCODERS):
        raise ValueError(f"{vae!r} holds a {type(model).__name__}, not an AutoencoderKL or AutoencoderDC")
    if model.config.in_channels not in (1, 3) or getattr(model.config, "out_channels", model.config.in_channels) not in (1, 3):
        raise ValueError(f"VAE {vae!r} has {model.config.in_channels} input channels; expected 1 (grey) or 3 (RGB)")
    return model.to(device).eval().requires_grad_(False)


def vae_fingerprint(vae: Autoencoder) -> str:
    """Short hash of a VAE's config and weights: a cache built with other weights is never reused."""
    digest = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class LatentCache:
    """Encoded split: `latents` (N, V, C, h, w) with V = 1, or 2 when the left-right flipped image
    was encoded too; `labels` (N,) int64."""

    latents: torch.Tensor
    labels: torch.Tensor

    def save(self, path: str | Path, metadata: dict[str, str]) -> None:
        """Write atomically (temporary file, then rename) as safetensors."""
        with atomic_write(path) as temporary:
            save_file({"latents": self.latents.contiguous(), "labels": self.labels}, str(temporary), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "LatentCache":
        tensors = load_file(str(path))
        return cls(latents=tensors["latents"], labels=tensors["labels"])


class LatentDataset(torch.utils.data.Dataset):
    """Training view of a `LatentCache`: picks one of the encoded orientations at random."""

    def __init__(self, cache: LatentCache):
        self.latents = cache.latents
        self.labels = cache.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        views = self.latents.shape[1]
        view = int(torch.randint(0, views, ())) if views > 1 else 0
        return {"latents": self.latents[index, view], "label": self.labels[index]}


@torch.no_grad()
def encode_dataset(
    vae: Autoencoder,
    data: datasets.Dataset | datasets.IterableDataset,
    resolution: int,
    flip: bool = False,
    batch_size: int = 8,
    show_progress: bool = True,
) -> LatentCache:
    """Encode every image of `data` (resized to `resolution`²) with `encode_grey`.

    Args:
        vae: the (eval-mode) VAE.
        data: split with `image` and `label` columns; streamed splits work too.
        resolution: side images are resized to before encoding.
        flip: also encode each image flipped left-right (exact flip augmentation; flipping a
            latent is not the same as encoding the flipped image).
        batch_size: images per VAE call.
        show_progress: show a progress bar.
    """
    latents, labels, batch = [], [], []

    def flush() -> None:
        pixels = torch.stack([item["pixel_values"] for item in batch])
        views = [encode_grey(vae, pixels)]
        if flip:
            views.append(encode_grey(vae, pixels.flip(-1)))
        latents.append(torch.stack(views, dim=1).float().cpu())
        labels.extend(int(item["label"]) for item in batch)
        batch.clear()

    total = len(data) if isinstance(data, datasets.Dataset) else None
    for example in tqdm(data, total=total, desc="encoding latents", disable=not show_progress):
        batch.append(prepare_example(example, resolution))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not labels:
        raise ValueError("cannot build a latent cache from an empty dataset split")
    return LatentCache(latents=torch.cat(latents), labels=torch.tensor(labels, dtype=torch.long))


def cache_path(cache_dir: str | Path, dataset: str, split: str, resolution: int, flip: bool, vae_hash: str) -> Path:
    """File name that changes whenever anything the latents depend on changes."""
    key = json.dumps([str(dataset), split, resolution, flip, vae_hash])
    return Path(cache_dir) / f"latents-{split}-{resolution}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"


def load_or_build_cache(
    vae: Autoencoder,
    data: datasets.Dataset | datasets.IterableDataset,
    dataset: str,
    split: str,
    resolution: int,
    cache_dir: str | Path,
    flip: bool = False,
    batch_size: int = 8,
    show_progress: bool = True,
) -> tuple[LatentCache, Path]:
    """Return the cached latents of `data`, encoding and saving them first if needed.

    Args:
        vae, data, resolution, flip, batch_size, show_progress: as for `encode_dataset`.
        dataset: the dataset folder or Hub id (part of the cache key).
        split: the split name (part of the cache key).
        cache_dir: folder holding cache files.
    """
    vae_hash = vae_fingerprint(vae)
    path = cache_path(cache_dir, dataset, split, resolution, flip, vae_hash)
    if path.exists():
        return LatentCache.load(path), path
    cache = encode_dataset(vae, data, resolution, flip=flip, batch_size=batch_size, show_progress=show_progress)
    metadata = {
        "dataset": str(dataset),
        "split": split,
        "resolution": str(resolution),
        "flip": str(flip),
        "vae": vae_hash,
        "scaling_factor": str(vae.config.scaling_factor),
    }
    cache.save(path, metadata)
    return cache, path
