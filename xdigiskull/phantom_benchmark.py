"""`xdigiskull phantom-benchmark`: the phantom benchmark as a dataset of its own (``x-digiskull-phantom``).

Held-out phantom v2 heads only, rendered and built into the Hub layout in one command: the five classes of every
pose in one ``test`` split, each row with its ``landmarks`` (19 ISBI 2015 cephalometric landmarks, output pixels)
and ``bone_mask`` (`xdigiskull.label_columns`), and a ``ground_truth`` column: the phantom's noise-free render of
the row's class at the same pose (16-bit PNG, the row's size), the paired reference no real dataset has. The card
states the protocol, the heads that must not be used for training (any MedShift training head, from a model's
``lineage.json``, and the benchmark detector's training heads) and, when given, a results table.

`build_phantom_heads` (render heads, one combined manifest, build) is also what `medshift benchmark` renders its
detector-training heads with.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import cv2
import numpy as np

from xdigiskull.command_line import config_command, option
from xdigiskull.image_io import atomic_write

PHANTOM_VERSION = 2  # landmarks and masks exist only from phantom v2 on
GROUND_TRUTH_COLUMN = "ground_truth"
CARD_TEMPLATE = "PHANTOM_BENCHMARK.template.md"
DEFAULT_TEST_HEADS = "301-306"
DEFAULT_DETECTOR_TRAINING_HEADS = "201-206"  # `medshift benchmark`'s defaults; keep the two in step
RESULTS_MARKER = "<!-- results table -->"


def parse_heads(text: str | list, name: str = "heads") -> list[int]:
    """Heads (phantom seeds) from "301-306", "1,3,5" or a list.

    Raises:
        ValueError: not numbers or ranges, naming the option `name`.
    """
    if isinstance(text, list):
        return sorted({int(seed) for seed in text})
    seeds: set[int] = set()
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                if int(high) < int(low):
                    raise ValueError(part)
                seeds.update(range(int(low), int(high) + 1))
            else:
                seeds.add(int(part))
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: expected seeds such as 301-306 or 1,3,5, got {text!r}") from None
    return sorted(seeds)


def lineage_training_heads(path: str | Path | None) -> list[int]:
    """Every head a training stage of a model's ``lineage.json`` used (none for no file).

    Raises:
        ValueError: the file is missing or not a lineage, naming it.
    """
    if path is None:
        return []
    path = Path(path)
    try:
        lineage = json.loads(path.read_text(encoding="utf-8"))
        return sorted({int(seed) for stage in lineage["stages"] for seed in stage["heads"]})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--lineage {path}: not a readable lineage.json ({error})") from error


def default_lineage() -> str | None:
    """The shipped demo model's lineage.json in a checkout (None where it is not there)."""
    path = Path(__file__).resolve().parent.parent / "checkpoints" / "medshift-xdigiskull-demo" / "lineage.json"
    return str(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------------- rendering


def render_head(raw_root: Path, seed: int, views: int, detector: int, progress: bool = False) -> Path:
    """Phantom v2 exports of head `seed` in ``raw_root/head_<seed>`` (one frame per run), reused when a finished
    render with the same settings is there."""
    from xdigiskull.phantom.export import generate_exports

    folder = raw_root / f"head_{seed}"
    done = folder / ".done"
    settings = f"version={PHANTOM_VERSION} views={views} detector={detector} frames=1"
    if done.is_file() and done.read_text() == settings:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    generate_exports(folder, views=views, seed=seed, detector=detector, frames=1, version=PHANTOM_VERSION, progress=progress)
    done.write_text(settings)
    return folder


def combined_manifest(raw_root: Path, seeds: list[int]) -> Path:
    """One manifest.csv at `raw_root` for the heads' folders (file and mask paths prefixed by the head folder)."""
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for seed in seeds:
        with open(raw_root / f"head_{seed}" / "manifest.csv", newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            for row in reader:
                row["file"] = f"head_{seed}/{row['file']}"
                if row.get("bone_mask"):
                    row["bone_mask"] = f"head_{seed}/{row['bone_mask']}"
                rows.append(row)
    path = raw_root / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_phantom_heads(raw_root: Path, out: Path, seeds: list[int], views: int, detector: int, size: int,
                        split: str, progress: bool = False) -> Path:
    """Render phantom v2 heads `seeds` (`views` poses each) under `raw_root` and build them into `out` (every
    pose in the one split `split` says, e.g. "0,0,1" for test) with landmarks and bone masks. Returns `out`."""
    from xdigiskull.build import BuildConfig, build_dataset

    raw_root.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        render_head(raw_root, seed, views, detector, progress)
    manifest = combined_manifest(raw_root, seeds)
    # only the heads asked for: the manifest lists them, and the build reads the raw folder's files
    for folder in raw_root.glob("head_*"):
        if folder.is_dir() and int(folder.name.split("_", 1)[1]) not in seeds:
            shutil.rmtree(folder)
    if out.exists():
        shutil.rmtree(out)
    build_dataset(BuildConfig(raw_dir=raw_root, out=out, labels=str(manifest), size=size, split=split, frames="first",
                              seed=0, num_proc=1), progress=progress)
    return out


def ground_truth_png(raw_root: Path, pair_id: str, class_name: str, size: int) -> bytes:
    """The noise-free render of one pose and class, resized (INTER_AREA) to the dataset's side, as 16-bit PNG."""
    head = pair_id.split("-", 1)[0].lstrip("p")
    path = raw_root / f"head_{int(head)}" / "ground_truth" / f"{pair_id}_{class_name}.png"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"ground truth {path}: missing or not an image")
    scale = 65535.0 / (65535.0 if image.dtype == np.uint16 else 255.0)
    image = cv2.resize(image.astype(np.float32) * scale, (size, size), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", np.clip(np.rint(image), 0, 65535).astype(np.uint16))
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    return encoded.tobytes()


def add_ground_truth(out: Path, raw_root: Path, size: int) -> "object":
    """Rewrite the built test split with a ``ground_truth`` image column (one shard); returns the dataset."""
    import datasets

    ds = datasets.load_dataset(str(out), split="test")
    names = ds.features["label"].names
    features = ds.features.copy()
    features[GROUND_TRUTH_COLUMN] = datasets.Image()

    def with_truth(row: dict) -> dict:
        png = ground_truth_png(raw_root, row["pair_id"], names[row["label"]], size)
        return {GROUND_TRUTH_COLUMN: {"bytes": png, "path": None}}

    ds = ds.map(with_truth, features=features, desc="ground truth")
    for shard in (out / "data").glob("*.parquet"):
        shard.unlink()
    ds.to_parquet(str(out / "data" / "test-00000-of-00001.parquet"))
    return ds


# ---------------------------------------------------------------------------------------------- card


def _seed_ranges(seeds: list[int]) -> str:
    parts: list[list[int]] = []
    for seed in sorted(seeds):
        if parts and parts[-1][-1] == seed - 1:
            parts[-1].append(seed)
        else:
            parts.append([seed])
    return ", ".join(str(p[0]) if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in parts)


def render_phantom_card(ds: "object", heads: list[int], views: int, size: int, excluded: list[int],
                        detector_heads: list[int], results_table: str | None, num_bytes: int) -> str:
    """Fill ``dataset_card/PHANTOM_BENCHMARK.template.md`` for the built dataset `ds`, whose shards hold `num_bytes`.

    The YAML's split sizes are not decoration: `datasets` names its cache of a local folder after the card's YAML,
    not after the data files, so two folders whose cards are equal (same heads count, views and size) would share
    one cache and `load_dataset` would return the first one's rows for the second."""
    import yaml

    from xdigiskull.card import features_yaml, size_category, template_path

    names = ds.features["label"].names
    counts = {name: 0 for name in names}
    for label in ds["label"]:
        counts[names[label]] += 1
    header = {
        "license": "cc-by-4.0",
        "task_categories": ["image-to-image", "keypoint-detection", "image-segmentation"],
        "tags": ["medical", "x-ray", "domain-adaptation", "sim-to-real", "benchmark", "cephalometric-landmarks"],
        "pretty_name": "X-DigiSkull phantom benchmark",
        "size_categories": [size_category(len(ds))],
        "configs": [{"config_name": "default", "data_files": [{"split": "test", "path": "data/test-*"}]}],
        "dataset_info": {
            "features": features_yaml(ds.features),
            "splits": [{"name": "test", "num_bytes": num_bytes, "num_examples": len(ds)}],
            "dataset_size": num_bytes,
        },
    }
    values = {
        "yaml_header": yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=120).rstrip("\n"),
        "heads": _seed_ranges(heads),
        "views": views,
        "size": size,
        "rows": len(ds),
        "class_rows": "\n".join(f"| {i} | `{name}` | {counts[name]} |" for i, name in enumerate(names)),
        "excluded": _seed_ranges(excluded) if excluded else "none given",
        "detector_heads": _seed_ranges(detector_heads),
        "results": results_table or "No results yet: run `medshift benchmark --dataset <this folder>` and pass its "
                                    "`results.json` to `xdigiskull phantom-benchmark --results`.",
        "command": f"xdigiskull phantom-benchmark --out x-digiskull-phantom --heads {_seed_ranges(heads).replace(', ', ',')} "
                   f"--views {views}",
    }
    return Template(template_path(CARD_TEMPLATE).read_text(encoding="utf-8")).substitute(values)


# ---------------------------------------------------------------------------------------------- command


@dataclass
class PhantomBenchmarkConfig:
    """Options of `xdigiskull phantom-benchmark` (one field per command-line option)."""

    out: str = field(default="x-digiskull-phantom", metadata=option("Dataset folder to write (replaced)."))
    heads: str | list = field(default=DEFAULT_TEST_HEADS, metadata=option(
        "Held-out phantom heads (seeds), e.g. 301-306 or 301,305."))
    views: int = field(default=8, metadata=option("Poses per head.", min=1))
    size: int = field(default=780, metadata=option("Image side of the dataset (X-DigiSkull's 780).", min=64))
    detector: int = field(default=1024, metadata=option("Flat-detector pixels of the renders.", min=128))
    lineage: str | None = field(default=default_lineage(), metadata=option(
        "A model's lineage.json: its training heads are refused and named in the card as not to be used. "
        "Default: the shipped demo model's."))
    detector_training_heads: str | list = field(default=DEFAULT_DETECTOR_TRAINING_HEADS, metadata=option(
        "Heads `medshift benchmark` trains its landmark detectors on: refused here, named in the card."))
    results: str | None = field(default=None, metadata=option(
        "A `medshift benchmark` results.json: its table goes into the card."))
    raw_dir: str | None = field(default=None, metadata=option(
        "Keep the raw renders here (default: <out>.raw beside the dataset; reused when the settings match)."))

    def __post_init__(self) -> None:
        self.heads = parse_heads(self.heads, "heads")
        self.detector_training_heads = parse_heads(self.detector_training_heads, "detector_training_heads")
        if not self.heads:
            raise ValueError("--heads: give at least one head")
        excluded = set(lineage_training_heads(self.lineage)) | set(self.detector_training_heads)
        clash = sorted(set(self.heads) & excluded)
        if clash:
            raise ValueError(f"--heads {_seed_ranges(clash)}: training heads (of {self.lineage or 'no lineage'} or "
                             f"--detector-training-heads) cannot be benchmark heads")
        if self.results is not None and not Path(self.results).is_file():
            raise ValueError(f"--results {self.results} is not a file")

    @property
    def excluded_heads(self) -> list[int]:
        return sorted(set(lineage_training_heads(self.lineage)) | set(self.detector_training_heads))


def build_phantom_benchmark(config: PhantomBenchmarkConfig, progress: bool = False) -> Path:
    """Render, build and card the phantom benchmark dataset; returns its folder."""
    out = Path(config.out)
    raw_root = Path(config.raw_dir) if config.raw_dir else out.parent / f"{out.name}.raw"
    build_phantom_heads(raw_root, out, config.heads, config.views, config.detector, config.size, "0,0,1", progress)
    ds = add_ground_truth(out, raw_root, config.size)
    table = None
    if config.results is not None:
        table = json.loads(Path(config.results).read_text(encoding="utf-8")).get("table_markdown")
    num_bytes = sum(shard.stat().st_size for shard in (out / "data").glob("*.parquet"))
    card = render_phantom_card(ds, config.heads, config.views, config.size, config.excluded_heads,
                               config.detector_training_heads, table, num_bytes)
    with atomic_write(out / "README.md") as temporary:
        Path(temporary).write_text(card, encoding="utf-8")
    return out


def _run_and_report(config: PhantomBenchmarkConfig) -> None:
    import typer

    start = time.perf_counter()
    out = build_phantom_benchmark(config, progress=True)
    typer.echo(f"wrote {out} (heads {_seed_ranges(config.heads)}, {config.views} poses each) in "
               f"{time.perf_counter() - start:.0f} s; load it with datasets.load_dataset({str(out)!r}, split='test')")


phantom_benchmark = config_command(
    "phantom-benchmark", PhantomBenchmarkConfig, _run_and_report,
    "Render held-out phantom v2 heads and build the phantom benchmark dataset (landmarks, masks, ground truth, card).")
