"""Write dataset rows to Hub-style parquet shards: ``data/<split>-NNNNN-of-MMMMM.parquet``.

Images arrive already PNG-encoded and go into the ``image`` struct column (``bytes``, ``path=None``)
the way `datasets.Image` stores them, so no image is decoded or re-encoded here. The schema carries
the `datasets.Features` in its ``huggingface`` metadata, so even a bare shard loads with a ClassLabel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from xdigiskull.classes import CLASS_NAMES
from xdigiskull.row import DatasetRow

if TYPE_CHECKING:
    import datasets

TECHNICAL_COLUMNS: tuple[str, ...] = ("kvp", "tube_current_ma", "exposure_time_ms", "pixel_spacing_mm", "frame_time_ms")
# datasets' own choice for image data: small row groups keep streaming memory low
ROW_GROUP_SIZE = 100
DEFAULT_MAX_SHARD_BYTES = 500 * 1000 * 1000


def dataset_features(label_columns: bool = False) -> datasets.Features:
    """The X-DigiSkull features (column order is the order of the parquet columns); with `label_columns`, the
    optional ``landmarks`` and ``bone_mask`` columns last (`xdigiskull.label_columns`)."""
    import datasets  # here, not at the top: a second of start-up that the build's worker processes do not need
    features = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        "domain": datasets.Value("string"),
        "dose": datasets.Value("string"),
        "view": datasets.Value("string"),
        "primary_angle": datasets.Value("float32"),
        "secondary_angle": datasets.Value("float32"),
        "pair_id": datasets.Value("string"),
        "frame_index": datasets.Value("int32"),
        "source_id": datasets.Value("string"),
    }
    features.update({name: datasets.Value("float32") for name in TECHNICAL_COLUMNS})
    if label_columns:
        from xdigiskull.label_columns import label_features

        features.update(label_features())
    return datasets.Features(features)


def _cell(row: Any, name: str) -> object:
    """A row's value for one column in its arrow form: a mask is an image cell (its PNG bytes, no path), the
    landmarks a `datasets.Sequence` of dicts, stored as a dict of lists."""
    value = getattr(row, name)
    if value is None:
        return None
    if name == "bone_mask":
        return {"bytes": value, "path": None}
    if name == "landmarks":
        return {key: [mark[key] for mark in value] for key in ("name", "x", "y", "visible")}
    return value


def shard_name(split: str, index: int, total: int) -> str:
    """``data/<split>-NNNNN-of-MMMMM.parquet`` (POSIX, relative to the dataset folder)."""
    return f"data/{split}-{index:05d}-of-{total:05d}.parquet"


def parquet_writer(path: str | os.PathLike, schema: pa.Schema) -> pq.ParquetWriter:
    """A parquet writer with the dataset's settings: no compression, statistics or dictionary for the image bytes
    (useless for PNGs, and hashing them costs more than writing them) and no timestamps: shards are reproducible."""
    other_columns = [name for name in schema.names if name != "image"]
    return pq.ParquetWriter(
        path,
        schema,
        compression="none",  # PNG bytes do not compress; plain pages keep the de-identification auditable
        write_statistics=other_columns,
        use_dictionary=other_columns,
    )


def rows_table(rows: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Rows (objects with one attribute per column, ``image`` holding PNG bytes) -> an arrow table of `schema`."""
    # column by column: three times faster than Table.from_pydict, which walks an image dict per row
    image_type = schema.field("image").type
    images = pa.StructArray.from_arrays(
        [pa.array([row.image for row in rows], pa.binary()), pa.nulls(len(rows), pa.string())], fields=list(image_type)
    )
    columns = [
        images if name == "image" else pa.array([_cell(row, name) for row in rows], schema.field(name).type)
        for name in schema.names
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_shard(path: str | os.PathLike, rows: Sequence[Any], schema: pa.Schema) -> None:
    """Write `rows` as one complete parquet shard at `path` (under a temporary name, then renamed: never half-written)."""
    from xdigiskull.image_io import atomic_write

    with atomic_write(Path(path)) as temporary:
        writer = parquet_writer(temporary, schema)
        writer.write_table(rows_table(rows, schema), row_group_size=ROW_GROUP_SIZE)
        writer.close()


class SplitWriter:
    """Appends rows of one split to parquet shards of at most `max_shard_bytes` (of image bytes).

    Shards are written under temporary names and get their final ``-of-MMMMM`` names in `close`,
    once the shard count is known.

    Args:
        root: dataset folder (shards go to ``root/data``).
        split: split name.
        max_shard_bytes: start a new shard once a shard holds this many bytes.
        label_columns: add the ``landmarks`` and ``bone_mask`` columns (see `dataset_features`).
    """

    def __init__(self, root: Path, split: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, label_columns: bool = False):
        self.root = Path(root)
        self.split = split
        self.max_shard_bytes = max_shard_bytes
        self.features = dataset_features(label_columns)
        self.schema = self.features.arrow_schema
        self.num_rows = 0
        self.num_bytes = 0
        self._shard_paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0
        self._pending: list[DatasetRow] = []
        (self.root / "data").mkdir(parents=True, exist_ok=True)

    def add(self, row: DatasetRow) -> None:
        """Add one row (its ``image`` is the PNG bytes)."""
        self._pending.append(row)
        self._shard_bytes += len(row.image)
        self.num_bytes += len(row.image)
        self.num_rows += 1
        if len(self._pending) >= ROW_GROUP_SIZE:
            self._flush()
        if self._shard_bytes >= self.max_shard_bytes:
            self._flush()
            self._close_shard()

    def _open_shard(self) -> None:
        path = self.root / "data" / f"{self.split}-{len(self._shard_paths):05d}.parquet.partial"
        self._shard_paths.append(path)
        self._writer = parquet_writer(path, self.schema)
        self._shard_bytes = sum(len(r.image) for r in self._pending)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._open_shard()
        table = rows_table(self._pending, self.schema)
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        self._pending = []

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._shard_bytes = 0

    def close(self) -> list[str]:
        """Flush, close and rename the shards; returns their final relative names.

        A split without rows gets no shard (and is left out of the card: `datasets` rejects empty splits).
        """
        self._flush()
        self._close_shard()
        total = len(self._shard_paths)
        names = []
        for index, partial in enumerate(self._shard_paths):
            name = shard_name(self.split, index, total)
            os.replace(partial, self.root / name)
            names.append(name)
        return names
