"""Translate one class of one split of a built X-DigiSkull into another class: a new dataset in the same Hub layout.

The source split is streamed (only the rows of one shard are in memory at a time), so memory does not grow with
the dataset. Output shards of `rows_per_shard` rows are the unit of work: each is written whole under a
temporary name in ``OUT/.medshift-translate/`` and counts as done once it is there, so a run that was killed
resumes where it stopped and ends byte-identical to an uninterrupted one. With several processes
(`accelerate launch`), `PartialState.split_between_processes` hands each its share of the shards; the main
process then gives the shards their ``data/<split>-NNNNN-of-MMMMM.parquet`` names and writes the card.

A row's output depends only on the row, the model and the settings (each row has its own generator,
``seed + row index``, and a batch never crosses a shard), so 1 process and N processes write the same bytes.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import PIL.Image
import torch

from xdigiskull.classes import CLASS_NAMES, split_class_name
from xdigiskull.processing import encode_png
from medshift.translated_schema import (
    NOT_KEPT,
    TranslatedRow,
    TranslationSettings,
    sampling_arguments,
    translated_features,
)
from xdigiskull.row import DatasetRow
from xdigiskull.writer import shard_name, write_shard

if TYPE_CHECKING:
    import datasets

    from medshift.pipeline_medshift import MedShiftPipeline

WORK_FOLDER = ".medshift-translate"  # hidden: never pushed with the dataset
SETTINGS_FILE = "settings.json"


def resolve_model(model: str, revision: str | None = None) -> tuple[Path, str | None]:
    """Where to load a pipeline from, and its Hub commit: a Hub id is downloaded (safetensors only) and named by
    its commit; a local path is returned as it is with None (`medshift.model_location.folder_revision` names it
    once it has loaded)."""
    from medshift.model_location import looks_local

    if looks_local(model):
        return Path(model), None
    from huggingface_hub import snapshot_download

    from medshift.pipeline_medshift import PICKLE_SUFFIXES

    folder = Path(snapshot_download(model, revision=revision, ignore_patterns=[f"*{s}" for s in PICKLE_SUFFIXES]))
    return folder, folder.name  # the snapshot folder is named by the commit


def class_rows(dataset: str, split: str, class_name: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Stream the rows of one class of a split, in order, with undecoded images (``{"bytes", "path"}``)."""
    from datasets import Image

    from medshift.training.data import load_split

    data = load_split(dataset, split, streaming=True)
    names = data.features["label"].names if data.features is not None else list(CLASS_NAMES)
    if class_name not in names:
        raise ValueError(f"--source: the dataset's classes are {', '.join(names)}, not {class_name!r}")
    label = names.index(class_name)
    data = data.select_columns(columns) if columns else data.cast_column("image", Image(decode=False))
    for row in data:
        if row["label"] == label:
            yield row


def translate_rows(pipe: MedShiftPipeline, rows: list[tuple[int, dict]], settings: TranslationSettings) -> list[TranslatedRow]:
    """Translate (row index, source row) pairs, `settings.batch_size` images per pipeline call."""
    out: list[TranslatedRow] = []
    target_label = CLASS_NAMES.index(settings.target_class)
    domain, dose = split_class_name(settings.target_class)
    for start in range(0, len(rows), settings.batch_size):
        batch = rows[start : start + settings.batch_size]
        images = [PIL.Image.open(io.BytesIO(row["image"]["bytes"])) for _, row in batch]
        translated = pipe(
            images,
            target=settings.target_class,
            source=settings.source_class,
            num_inference_steps=settings.num_inference_steps,
            generator=[torch.Generator(device="cpu").manual_seed(settings.seed + index) for index, _ in batch],
            output_type="np",
            **sampling_arguments(settings),
        ).images
        for (index, row), image, array in zip(batch, images, translated):
            kept = {name: row[name] for name in DatasetRow.__dataclass_fields__ if name not in NOT_KEPT}
            out.append(TranslatedRow(
                image=encode_png(np.ascontiguousarray(array[..., 0], dtype=np.float32), 16 if image.mode.startswith("I") else 8),
                label=target_label, domain=domain, dose=dose, **kept,
                source_label=settings.source_class, model_id=settings.model_id, model_revision=settings.model_revision,
                tau=settings.tau, guidance_scale=settings.guidance_scale,
                num_inference_steps=settings.num_inference_steps, seed=settings.seed + index,
            ))  # fmt: skip
    return out


class TranslationRun:
    """The shards of one translation: which are done, where each goes, and the settings they were made with.

    Args:
        out: output folder.
        settings: the translation's settings; a folder holding work of other settings is refused.
        num_rows: rows of the source class in the split.
    """

    def __init__(self, out: str | os.PathLike, settings: TranslationSettings, num_rows: int):
        self.out, self.settings, self.num_rows = Path(out), settings, num_rows
        self.work = self.out / WORK_FOLDER
        self.num_shards = max(1, -(-num_rows // settings.rows_per_shard))

    def claim(self) -> None:
        """Record the settings in the work folder, or check they are those of the work already there."""
        recorded = self.work / SETTINGS_FILE
        mine = json.dumps(asdict(self.settings), indent=1, sort_keys=True)
        if recorded.is_file() and recorded.read_text() != mine:
            raise ValueError(
                f"--out {self.out} holds a translation with other settings ({recorded}); use another folder or delete it"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        if not recorded.is_file():
            recorded.write_text(mine)

    def part(self, shard: int) -> Path:
        return self.work / f"{self.settings.split}-{shard:05d}.parquet"

    def final(self, shard: int) -> Path:
        return self.out / shard_name(self.settings.split, shard, self.num_shards)

    def pending(self) -> list[int]:
        return [k for k in range(self.num_shards) if not self.part(k).is_file() and not self.final(k).is_file()]

    def finish(self) -> list[Path]:
        """Give every shard its final name (idempotent: a rerun after a kill here completes it)."""
        for shard in range(self.num_shards):
            if self.part(shard).is_file():
                self.final(shard).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.part(shard), self.final(shard))
        return [self.final(shard) for shard in range(self.num_shards)]


def translate_shards(pipe: MedShiftPipeline, run: TranslationRun, shards: list[int], progress: Any = None) -> None:
    """Translate and write `shards` of `run`, streaming the source once."""
    settings, wanted = run.settings, set(shards)
    schema = translated_features().arrow_schema
    buffer: list[tuple[int, dict]] = []
    rows = class_rows(settings.source_dataset, settings.split, settings.source_class)
    for index, row in enumerate(rows):
        shard = index // settings.rows_per_shard
        if shard not in wanted:
            continue
        buffer.append((index, row))
        last_of_shard = (index + 1) % settings.rows_per_shard == 0 or index + 1 == run.num_rows
        if last_of_shard:
            write_shard(run.part(shard), translate_rows(pipe, buffer, settings), schema)
            if progress is not None:
                progress.update(len(buffer))
            buffer = []
    if buffer:
        raise ValueError(f"{settings.source_dataset} changed while it was read: fewer rows than the {run.num_rows} counted")


def translate_dataset(pipe: MedShiftPipeline, settings: TranslationSettings, out: str | os.PathLike, progress: bool = True) -> Path | None:
    """Translate the `settings.source_class` rows of a split into a dataset folder at `out`, spread over the
    processes of `accelerate launch` (one process when not launched).

    Args:
        pipe: the loaded pipeline, on this process's device.
        settings: what to translate and how.
        out: output folder (resumed when it holds unfinished work of the same settings).
        progress: show a progress bar (images/s) on the main process.

    Returns:
        The output folder on the main process (after every process finished), None on the others.

    Raises:
        ValueError: no row of the source class, unknown class, or `out` holds work of other settings.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from medshift.translated_card import write_translated_card

    state = PartialState()
    num_rows = sum(1 for _ in class_rows(settings.source_dataset, settings.split, settings.source_class, columns=["label"]))
    if num_rows == 0:
        raise ValueError(f"--source: split {settings.split!r} of {settings.source_dataset} has no {settings.source_class} rows")
    run = TranslationRun(out, settings, num_rows)
    if state.is_main_process:
        run.claim()
    state.wait_for_everyone()
    pending = run.pending()
    with state.split_between_processes(pending) as mine:
        todo = sum(min(settings.rows_per_shard, num_rows - k * settings.rows_per_shard) for k in mine)
        bar = tqdm(total=todo, unit="image", desc=f"translating to {settings.target_class}", disable=not (progress and state.is_main_process))
        with bar:
            translate_shards(pipe, run, list(mine), bar)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    write_translated_card(run.out, settings, run.finish())
    return run.out
