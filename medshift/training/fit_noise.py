"""`medshift fit-noise`: measure each class's noise model (`medshift.noise_model.ClassNoiseModel`) from a built
X-DigiSkull and add it to a saved pipeline.

For every class, up to --max-images images of the split are reconstructed by the pipeline's VAE (the pipeline at
tau = 1, at its processing resolution, resized back) and the residuals measured. It uses acquisitions only, no
noise-free ground truth. A few dozen images per class suffice: the statistics are means over millions of pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer
from tqdm.auto import tqdm

from medshift.image_processor import resize_square, to_unit_float
from medshift.noise_model import ClassNoiseModel
from xdigiskull.command_line import config_command, option


@dataclass
class FitNoiseConfig:
    """Options of `medshift fit-noise` (one per field)."""

    model: str = field(metadata=option("Saved MedShiftPipeline folder to fit the noise model of."))
    dataset: str = field(metadata=option("Built X-DigiSkull: local folder or Hub id (its images of every class are measured)."))
    out: str | None = field(default=None, metadata=option("Folder to save the pipeline with its noise model to (default: --model itself)."))
    split: str = field(default="train", metadata=option("Split whose images are measured (the training split: no held-out image)."))
    max_images: int = field(default=48, metadata=option("Images per class at most (the first ones of the split).", min=1))
    resolution: int = field(default=780, metadata=option("Side of the images the statistics are measured at (X-DigiSkull's own).", min=16))
    batch_size: int = field(default=4, metadata=option("Images per VAE call.", min=1))
    show_progress: bool = field(default=True, metadata=option("Show a progress bar."))


def images_by_class(dataset: str, split: str, class_names: list[str], max_images: int, resolution: int) -> dict[str, list[np.ndarray]]:
    """Up to `max_images` grey [0, 1] images of each of the model's classes in the split, resized to `resolution`."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset, split=split)
    except Exception as error:
        raise ValueError(f"could not load split {split!r} of dataset {dataset!r}: {error}") from error
    names = ds.features["label"].names
    rows: dict[str, list[int]] = {name: [] for name in class_names}
    for i, label in enumerate(ds["label"]):
        name = names[label]
        if name in rows and len(rows[name]) < max_images:
            rows[name].append(i)
    return {name: [resize_square(to_unit_float(row["image"]), resolution) for row in ds.select(indices)] for name, indices in rows.items() if indices}


def fit_noise_model(pipe, images: dict[str, list[np.ndarray]], resolution: int, batch_size: int = 4,
                    show_progress: bool = True) -> tuple[ClassNoiseModel, dict[str, dict[str, float]]]:
    """A `ClassNoiseModel` measured on `images` (class name -> images) with the pipeline's VAE; and per-class summaries."""
    model = ClassNoiseModel(class_names=list(pipe.config.class_names), resolution=resolution)
    summaries = {}
    total = sum(len(v) for v in images.values())
    with tqdm(total=total, desc="fit-noise", unit="img", disable=not show_progress) as bar:
        for name, acquisitions in images.items():
            reconstructions = []
            for start in range(0, len(acquisitions), batch_size):
                batch = np.stack(acquisitions[start : start + batch_size])
                out = pipe(batch, target=name, tau=1.0, output_type="np", restore_noise=False).images
                reconstructions.extend(image[..., 0] for image in out)
                bar.update(len(batch))
            summaries[name] = model.fit_class(name, acquisitions, reconstructions)
    return model, summaries


def run_fit_noise(config: FitNoiseConfig) -> dict[str, dict[str, float]]:
    """Fit the noise model and save the pipeline with it; returns the per-class summaries."""
    from medshift import MedShiftPipeline

    try:
        pipe = MedShiftPipeline.from_pretrained(config.model)
    except Exception as error:
        raise ValueError(f"could not load a MedShiftPipeline from {config.model!r}: {error}") from error
    pipe.set_progress_bar_config(disable=True)
    images = images_by_class(config.dataset, config.split, list(pipe.config.class_names), config.max_images, config.resolution)
    if not images:
        raise ValueError(f"split {config.split!r} of {config.dataset!r} has no image of the model's classes")
    with torch.no_grad():
        noise_model, summaries = fit_noise_model(pipe, images, config.resolution, config.batch_size, config.show_progress)
    pipe.register_modules(noise_model=noise_model)
    out = Path(config.out or config.model)
    pipe.save_pretrained(out)
    (out / "noise_model" / "fit.json").write_text(json.dumps({"dataset": config.dataset, "split": config.split, "classes": summaries}, indent=2) + "\n")
    for name, summary in summaries.items():
        typer.echo(f"{name}: {summary['images']} images, residual std {summary['residual_std']:.4f}")
    typer.echo(f"saved {out} with its noise model")
    return summaries


fit_noise = config_command("fit-noise", FitNoiseConfig, run_fit_noise, "Measure each class's noise (what the VAE cannot reconstruct) and add the noise model to a saved pipeline.")
