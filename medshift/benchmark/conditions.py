"""The benchmark's data: labelled images of a built phantom dataset, and the training conditions.

`load_landmark_images` reads one class of a dataset with a ``landmarks`` column (a phantom v2 build, or the
``x-digiskull-phantom`` benchmark dataset, by folder or Hub id). `translated_condition` translates the
synthetic training images with the evaluated pipeline (`medshift.evaluate.translate_images`, SDEdit's step count
from `medshift.evaluate.run_steps`, as ``medshift evaluate --match-evaluations`` does) and caches each
translation on disk, keyed by model revision, method, tau, steps, guidance and image id, so a rerun translates
nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from medshift.image_processor import to_unit_float


@dataclass
class LandmarkImages:
    """Images of one class with their landmarks, in the dataset's output pixels."""

    images: list[np.ndarray]  # float32 [0, 1], (size, size)
    points: np.ndarray  # (N, K, 2)
    visible: np.ndarray  # (N, K) bool
    spacing_mm: np.ndarray  # (N,) mm per output pixel (NaN where the row has none)
    image_ids: list[str]  # source_id of each row
    pair_ids: list[str]
    names: list[str]  # landmark names, in column order

    def __len__(self) -> int:
        return len(self.images)

    def replace_images(self, images: list[np.ndarray]) -> "LandmarkImages":
        return LandmarkImages(images, self.points, self.visible, self.spacing_mm, self.image_ids, self.pair_ids, self.names)


def load_landmark_images(dataset: str, split: str, class_name: str, pair_ids: set[str] | None = None) -> LandmarkImages:
    """The rows of class `class_name` in `split` of a dataset with landmarks, first frame of each pose, in pair_id
    order (optionally only `pair_ids`).

    Raises:
        ValueError: the dataset cannot be loaded, has no ``landmarks`` column or no such rows, naming it.
    """
    import datasets

    try:
        ds = datasets.load_dataset(dataset, split=split)
    except Exception as error:  # not found, offline, unknown split
        raise ValueError(f"could not load split {split!r} of dataset {dataset!r}: {error}") from error
    if "landmarks" not in ds.column_names:
        raise ValueError(f"dataset {dataset!r} has no 'landmarks' column: build a phantom v2 run "
                         "(`xdigiskull phantom-benchmark`, or `xdigiskull phantom --phantom-version 2` then build)")
    names = ds.features["label"].names
    if class_name not in names:
        raise ValueError(f"class {class_name!r} is not in dataset {dataset!r}; its classes: {', '.join(names)}")
    label = names.index(class_name)
    chosen: dict[str, int] = {}
    frames = ds["frame_index"]
    for index, (row_label, pair) in enumerate(zip(ds["label"], ds["pair_id"])):
        if row_label == label and (pair_ids is None or pair in pair_ids):
            if pair not in chosen or frames[index] < frames[chosen[pair]]:
                chosen[pair] = index
    if not chosen:
        raise ValueError(f"split {split!r} of {dataset!r} has no {class_name!r} rows with landmarks")
    rows = ds.select([chosen[pair] for pair in sorted(chosen)])
    landmark_names: list[str] | None = None
    images, points, visible, spacing, ids, pairs = [], [], [], [], [], []
    for row in rows:
        marks = row["landmarks"]
        if landmark_names is None:
            landmark_names = list(marks["name"])
        if list(marks["name"]) != landmark_names:
            raise ValueError(f"dataset {dataset!r}: row {row['source_id']} lists other landmarks than the first row")
        images.append(to_unit_float(row["image"]).astype(np.float32))
        points.append(np.stack([marks["x"], marks["y"]], -1))
        visible.append(np.asarray(marks["visible"], bool))
        value = row.get("pixel_spacing_mm")
        spacing.append(np.nan if value is None else float(value))
        ids.append(row["source_id"])
        pairs.append(row["pair_id"])
    return LandmarkImages(images, np.asarray(points, np.float32), np.asarray(visible, bool), np.asarray(spacing),
                          ids, pairs, landmark_names or [])


# ---------------------------------------------------------------------------------------------- translations


@dataclass(frozen=True)
class Condition:
    """One training condition: its key, label, method (identity, medshift, sdedit, oracle) and tau."""

    key: str
    label: str
    method: str
    tau: float | None = None


def plan_conditions(taus: list[float]) -> list[Condition]:
    """(a) synthetic as is, (b) MedShift at each tau, (c) SDEdit at each tau, (d) the oracle; taus high to low."""
    ordered = sorted(taus, reverse=True)
    return [
        Condition("identity", "(a) synthetic_low as is", "identity"),
        *[Condition(f"medshift_{tau:g}", f"(b) MedShift τ={tau:g}", "medshift", tau) for tau in ordered],
        *[Condition(f"sdedit_{tau:g}", f"(c) SDEdit τ={tau:g}", "sdedit", tau) for tau in ordered],
        Condition("oracle", "(d) real_normal (oracle)", "oracle"),
    ]


def cache_folder(cache: Path, revision: str, method: str, tau: float, settings: dict[str, Any]) -> Path:
    """``cache/<revision>/<method>_tau<tau>_<settings hash>``: one folder of PNGs per way of translating."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return cache / revision.replace(":", "-") / f"{method}_tau{tau:g}_{digest}"


def _read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535.0


def _write_png(path: Path, image: np.ndarray) -> None:
    temporary = path.with_suffix(".tmp.png")
    cv2.imwrite(str(temporary), np.clip(np.rint(image * 65535.0), 0, 65535).astype(np.uint16))
    temporary.replace(path)  # a killed run never leaves a half-written translation


def translated_condition(pipe: Any, revision: str, data: LandmarkImages, method: str, tau: float, source: str,
                         target: str, cache: Path, evaluate_config: Any, processing_resolution: int | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The translations of `data`'s images by `method` (medshift or sdedit) at `tau`, from the cache where there.

    Returns:
        (translated images, {"num_inference_steps", "network_evaluations", "translated", "cached"}).
    """
    from medshift.evaluate import Run, run_steps, translate_images

    run = Run(method, tau)
    steps, evaluations = run_steps(pipe, run, evaluate_config)
    guidance, inversion = pipe.guidance_scales(evaluate_config.guidance_scale, evaluate_config.inversion_guidance_scale)
    settings = {"source": source, "target": target, "steps": steps, "evaluations": evaluations, "guidance": guidance,
                "inversion_guidance": inversion, "seed": evaluate_config.seed, "processing": processing_resolution,
                "size": data.images[0].shape[0]}
    folder = cache_folder(cache, revision, method, tau, settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    paths = [folder / f"{image_id}.png" for image_id in data.image_ids]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    # one image per call: each image's noise comes from its own id, so a cached image never depends on what else
    # was translated
    for i in missing:
        image_seed = evaluate_config.seed + int(hashlib.sha256(data.image_ids[i].encode()).hexdigest()[:7], 16)
        out = translate_images(pipe, [data.images[i]], run, source, target, image_seed, 1, steps,
                               evaluate_config.guidance_scale, processing_resolution=processing_resolution,
                               inversion_guidance_scale=evaluate_config.inversion_guidance_scale)[0]
        _write_png(paths[i], out)
    images = [_read_png(path) for path in paths]
    return images, {"num_inference_steps": steps, "network_evaluations": evaluations, "translated": len(missing),
                    "cached": len(paths) - len(missing)}
