"""The dataset card (README.md) and the sample grid of an X-DigiSkull build.

The card is `dataset_card/README.template.md` filled with `string.Template`; its YAML header carries
``configs``/``data_files`` per split and ``dataset_info.features`` so that `datasets.load_dataset` finds
the shards and gives ``label`` back as a ClassLabel. Nothing time-dependent goes in: the same build
gives the same bytes.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import cv2
import numpy as np
import yaml

from xdigiskull.classes import CLASS_NAMES, SPLITS, split_class_name
from xdigiskull.writer import dataset_features
from xdigiskull.image_io import atomic_write

if TYPE_CHECKING:
    import datasets

TEMPLATE_NAME = "README.template.md"
LICENSE = "cc-by-4.0"
LICENSE_NAME = "Creative Commons Attribution 4.0 (CC BY 4.0)"
GRID_TILE = 192
GRID_COLUMNS = 4
GRID_LABEL_WIDTH = 170


@dataclass
class CardInputs:
    """Facts about one build that the card reports.

    Attributes:
        counts: {split: {class: rows}}.
        num_bytes: {split: bytes of PNG data}.
        shards: {split: shard file names relative to the dataset folder}.
        options: build options for the provenance table.
        fingerprint: input fingerprint.
        num_input_files: number of input files read.
        label_columns: whether the dataset has the ``landmarks`` and ``bone_mask`` columns.
    """

    counts: dict[str, dict[str, int]]
    num_bytes: dict[str, int]
    shards: dict[str, list[str]]
    options: dict[str, object]
    fingerprint: str
    num_input_files: int
    label_columns: bool = False


def features_yaml(features: datasets.Features) -> list[dict]:
    """`dataset_info.features` in the Hub's YAML form (name + dtype, class labels with their names)."""
    import datasets  # imported late, like in `xdigiskull.writer`
    entries = []
    for name, feature in features.items():
        if isinstance(feature, datasets.ClassLabel):
            dtype: object = {"class_label": {"names": {str(i): n for i, n in enumerate(feature.names)}}}
        elif isinstance(feature, datasets.Image):
            dtype = "image"
        elif isinstance(feature, dict):  # a sequence of records (the landmarks): one list per field
            entries.append({"name": name, "sequence": [{"name": k, "dtype": f.feature.dtype} for k, f in feature.items()]})
            continue
        else:
            dtype = feature.dtype
        entries.append({"name": name, "dtype": dtype})
    return entries


def size_category(rows: int) -> str:
    """The Hub's size category for a number of rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M"


def card_yaml(inputs: CardInputs) -> str:
    """The YAML header (without the ``---`` fences)."""
    total_rows = sum(sum(c.values()) for c in inputs.counts.values())
    splits = [split for split in SPLITS if inputs.shards.get(split)]  # empty splits cannot be loaded
    header = {
        "license": LICENSE,
        "task_categories": ["image-to-image", "image-classification"],
        "tags": ["medical", "x-ray", "domain-adaptation", "sim-to-real", "dicom"],
        "pretty_name": "X-DigiSkull",
        "size_categories": [size_category(total_rows)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in splits],
            }
        ],
        "dataset_info": {
            "features": features_yaml(dataset_features(inputs.label_columns)),
            "splits": [
                {"name": split, "num_bytes": inputs.num_bytes[split], "num_examples": sum(inputs.counts[split].values())}
                for split in splits
            ],
            "dataset_size": sum(inputs.num_bytes.values()),
        },
    }
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=120).rstrip("\n")


def template_path(name: str = TEMPLATE_NAME) -> Path:
    """A card template: ``dataset_card/`` at the root of a checkout (editable installs, source runs);
    a wheel installs the same folder as the data package ``xdigiskull.dataset_card``.

    Args:
        name: the template's file name (the build's card by default).
    """
    checkout = Path(__file__).resolve().parent.parent / "dataset_card" / name
    if checkout.is_file():
        return checkout
    return Path(str(importlib.resources.files("xdigiskull.dataset_card") / name))


def render_card(inputs: CardInputs, template: Path | None = None) -> str:
    """Fill the card template.

    Args:
        inputs: the build's facts.
        template: the template (``$name`` placeholders); default `template_path()`.
    """
    from xdigiskull import __version__

    bit_depth = int(inputs.options.get("bit_depth", 8))  # type: ignore[arg-type]
    size = inputs.options.get("size", 780)
    class_rows = "\n".join(
        f"| {i} | `{name}` | {split_class_name(name)[0]} | {split_class_name(name)[1]} |" for i, name in enumerate(CLASS_NAMES)
    )
    count_rows = [f"| `{name}` | " + " | ".join(str(inputs.counts[s][name]) for s in SPLITS) + " |" for name in CLASS_NAMES]
    count_rows.append("| **total** | " + " | ".join(f"**{sum(inputs.counts[s].values())}**" for s in SPLITS) + " |")
    option_rows = "\n".join(f"| {key.replace('_', ' ')} | `{value}` |" for key, value in inputs.options.items())
    values = {
        "yaml_header": card_yaml(inputs),
        "size": size,
        "bit_depth": bit_depth,
        "pil_mode": "I;16" if bit_depth == 16 else "L",
        "class_rows": class_rows,
        "split_header": " | ".join(SPLITS),
        "split_rule": "|".join("---:" for _ in SPLITS),
        "count_rows": "\n".join(count_rows),
        "burned_in_policy": "masked" if inputs.options.get("mask_burned_in") else "left out",
        "tool": f"xdigiskull {__version__}",
        "num_input_files": inputs.num_input_files,
        "option_rows": option_rows,
        "fingerprint": inputs.fingerprint,
        "license_name": LICENSE_NAME,
    }
    return Template((template or template_path()).read_text(encoding="utf-8")).substitute(values)


def write_card(path: Path, inputs: CardInputs) -> None:
    """Render the card to `path` (written to a temporary name, then renamed)."""
    with atomic_write(path) as temporary:
        temporary.write_text(render_card(inputs), encoding="utf-8")


def make_sample_grid(samples: dict[str, list[bytes | np.ndarray]], path: Path, columns: int = GRID_COLUMNS) -> None:
    """Write a grid PNG: one row per class (name on the left), up to `columns` samples each.

    Args:
        samples: {class name: PNG bytes or [0, 1]/uint arrays}; classes without samples get an empty row.
        path: PNG file to write.
        columns: samples per row.
    """
    rows = []
    for name in CLASS_NAMES:
        row = np.full((GRID_TILE, GRID_LABEL_WIDTH + columns * GRID_TILE), 255, np.uint8)
        cv2.putText(row, name, (8, GRID_TILE // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 0, 1, cv2.LINE_AA)
        for column, sample in enumerate(samples.get(name, [])[:columns]):
            tile = _to_uint8(sample)
            tile = cv2.resize(tile, (GRID_TILE, GRID_TILE), interpolation=cv2.INTER_AREA)
            x = GRID_LABEL_WIDTH + column * GRID_TILE
            row[:, x : x + GRID_TILE] = tile
        rows.append(row)
    grid = np.vstack(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError(f"cannot encode the sample grid {path}")
    with atomic_write(path) as temporary:
        temporary.write_bytes(encoded.tobytes())


def _to_uint8(sample: bytes | np.ndarray) -> np.ndarray:
    if isinstance(sample, (bytes, bytearray)):
        sample = cv2.imdecode(np.frombuffer(sample, np.uint8), cv2.IMREAD_UNCHANGED)
    array = np.asarray(sample)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype.kind == "f":
        return (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    return array.astype(np.uint8)
