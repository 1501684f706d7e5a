"""`xdigiskull inspect`: counts per split and class of a built dataset, and a sample grid."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import typer
from tqdm.auto import tqdm

from xdigiskull.card import GRID_COLUMNS, make_sample_grid
from xdigiskull.classes import CLASS_NAMES, SPLITS
from xdigiskull.report import report_reasons


def dataset_counts(folder: str | Path) -> dict[str, dict[str, int]]:
    """{split: {class: rows}} read from the parquet shards of a built dataset (labels only, no images).

    Raises:
        ValueError: `folder` has no ``data/<split>-*.parquet`` shards.
    """
    folder = Path(folder)
    counts = {split: dict.fromkeys(CLASS_NAMES, 0) for split in SPLITS}
    shards = sorted((folder / "data").glob("*.parquet"))
    if not shards:
        raise ValueError(f"{folder} has no data/*.parquet shards; is it a dataset built by `xdigiskull build`?")
    for shard in tqdm(shards, desc="Counting", unit="shard", leave=False):
        split = shard.name.split("-", 1)[0]
        labels = pq.read_table(shard, columns=["label"]).column("label").to_pylist()
        for label in labels:
            counts.setdefault(split, dict.fromkeys(CLASS_NAMES, 0))[CLASS_NAMES[label]] += 1
    return counts


def sample_images(folder: str | Path, per_class: int = GRID_COLUMNS, split: str = "train") -> dict[str, list[bytes]]:
    """Up to `per_class` PNG images per class from the first rows of `split` (then other splits)."""
    folder = Path(folder)
    samples: dict[str, list[bytes]] = {name: [] for name in CLASS_NAMES}
    order = [split] + [s for s in SPLITS if s != split]
    for name in order:
        for shard in sorted((folder / "data").glob(f"{name}-*.parquet")):
            parquet = pq.ParquetFile(shard)
            for batch in parquet.iter_batches(batch_size=64, columns=["image", "label"]):
                for image, label in zip(batch.column("image").to_pylist(), batch.column("label").to_pylist()):
                    if len(samples[CLASS_NAMES[label]]) < per_class:
                        samples[CLASS_NAMES[label]].append(image["bytes"])
                if all(len(v) >= per_class for v in samples.values()):
                    return samples
    return samples


def inspect(
    folder: Path = typer.Argument(Path("x-digiskull"), help="Dataset folder written by `xdigiskull build`."),
    grid: Path = typer.Option(None, help="Sample grid PNG to write [default: <FOLDER>-samples.png beside FOLDER]."),
) -> None:
    """Print the number of images per split and class (and the skips per reason, from the build's report
    beside FOLDER), and write a grid of samples of every class."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    try:
        counts = dataset_counts(folder)
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    splits = [s for s in counts if s in SPLITS] + [s for s in counts if s not in SPLITS]
    table = Table(title=str(folder))
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for name in CLASS_NAMES:
        table.add_row(name, *(str(counts[s][name]) for s in splits), str(sum(counts[s][name] for s in splits)))
    table.add_row("total", *(str(sum(counts[s].values())) for s in splits), str(sum(sum(c.values()) for c in counts.values())))
    console.print(table)
    reasons = report_reasons(folder.resolve().parent / f"{folder.resolve().name}.report.json")
    if reasons:  # the build's report beside the folder says what was left out, and why
        console.print(
            f"{sum(reasons.values())} file(s) or frame(s) skipped by the build: "
            + ", ".join(f"{reason}: {count}" for reason, count in reasons.items())
        )
    grid_path = grid or folder.resolve().parent / f"{folder.resolve().name}-samples.png"
    make_sample_grid(sample_images(folder), grid_path)
    console.print(f"Sample grid: {grid_path}")
