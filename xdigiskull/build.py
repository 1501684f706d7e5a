"""`xdigiskull build`: raw simulator and C-arm exports -> the X-DigiSkull dataset on disk.

Stages, each a function testable on its own: list the raw files and label them (class, view, pose:
`list_and_label`); split the poses into train/validation/test (grouped by pair id, else view, so no pose
is in two splits; deterministic from the seed: `split_files`); read, crop and encode every selected frame
in a process pool (`xdigiskull.processing.process_file`); stream the rows into parquet shards
(`write_outcomes`); write the card (`finish_dataset`) and the report (`xdigiskull.report`). A file that
cannot be used, for whatever reason, becomes its entry in the report and the build goes on.

Everything is written into a temporary folder beside the target and renamed at the end, so a killed
build leaves no half dataset and never damages an existing one.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from tqdm.auto import tqdm

from xdigiskull.card import CardInputs, make_sample_grid, write_card
from xdigiskull.classes import CLASS_NAMES, SPLITS
from xdigiskull.deid import DEFAULT_SALT
from xdigiskull.labels import LabelError, LabelInfo, Labeler, make_labeler
from xdigiskull.processing import (
    BuildOptions,
    FileOutcome,
    FileTask,
    LabelledFile,
    keep_freed_memory,
    label_file,
    process_file,
    process_files,
    scan_files,
    worker_init,
)
from xdigiskull.reading import SourceError, is_supported_path, select_frames
from xdigiskull.report import BuildSummary, skip_entry, skipped_frame, summarise, write_report
from xdigiskull.writer import DEFAULT_MAX_SHARD_BYTES, SplitWriter

__all__ = ["BuildError", "BuildOptions", "BuildSummary", "assign_splits", "build_dataset"]

# files in a raw folder that are notes, not images: not listed in the report at all
IGNORED_SUFFIXES: frozenset[str] = frozenset({".csv", ".yaml", ".yml", ".json", ".txt", ".md", ".log"})
# folders of a raw export that are not inputs (the phantom's noise-free references)
IGNORED_FOLDERS: frozenset[str] = frozenset({"ground_truth"})
FILES_PER_TASK = 8
GRID_SAMPLES = 4  # samples per class in the card's grid


class BuildError(Exception):
    """The build cannot go on (bad options, no usable input, or a skip under --strict)."""


# ------------------------------------------------------------------------------------- main side


def list_raw_files(raw_dir: Path) -> list[Path]:
    """Every candidate input under `raw_dir`, sorted by relative POSIX path (hidden files, notes and
    the phantom's ``ground_truth/`` excluded)."""
    files = []
    for root, dirs, names in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in IGNORED_FOLDERS)
        for name in names:
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() in IGNORED_SUFFIXES:
                continue
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(raw_dir).as_posix())


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> fractions of train, validation, test (must be >= 0 and sum to 1)."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"--split must be three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"--split must be three non-negative fractions summing to 1, got {text!r}")
    return parts  # type: ignore[return-value]


def assign_splits(groups: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Deal groups to splits: shuffle the sorted groups with `seed`, then cut by the fractions.

    Counts are rounded by largest remainder; every split with a non-zero fraction gets at least one
    group when there are enough groups.
    """
    unique = sorted(set(groups))
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    n = len(unique)
    exact = [f * n for f in fractions]
    counts = [int(np.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):  # a requested split should not come out empty when it can be avoided
        if fractions[i] > 0 and counts[i] == 0 and n >= sum(1 for f in fractions if f > 0):
            donor = max(range(3), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] += 1
    assignment = {}
    start = 0
    for split, count in zip(SPLITS, counts):
        for group in order[start : start + count]:
            assignment[group] = split
        start += count
    return assignment


def build_dataset(
    raw_dir: str | Path,
    out: str | Path = "x-digiskull",
    *,
    labels: str = "folders",
    options: BuildOptions | None = None,
    split: str = "0.8,0.1,0.1",
    seed: int = 0,
    num_proc: int = 1,
    strict: bool = False,
    report: str | Path | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    progress: bool = True,
) -> BuildSummary:
    """Build X-DigiSkull from a raw export folder. The Python side of `xdigiskull build`.

    The stages, each a function of its own: `list_and_label`, `split_files`, `process_files` (in a pool),
    `write_outcomes` and `finish_dataset`; the report is written whatever happens.

    Args:
        raw_dir: folder of raw exports (``simulator|azurion/<dose>/`` or ``synthetic|real/<dose>/``).
        out: dataset folder to create (replaced atomically if it exists).
        labels: ``folders``, a manifest ``.csv`` or a rules ``.yaml`` (see `xdigiskull.labels`).
        options: per-image options (frames, bit depth, size, upscale, burned-in masking, salt).
        split: train,validation,test fractions.
        seed: seed of the split assignment and of the row order within splits.
        num_proc: worker processes (1 works in this process, for which
            `xdigiskull.processing.keep_freed_memory` saves a third of the time per image).
        strict: stop at the first skipped file or frame, naming it.
        report: JSON report path (default ``<out>.report.json`` beside the dataset folder).
        max_shard_bytes: image bytes per parquet shard.
        progress: show progress bars.

    Raises:
        BuildError: nothing usable, or a skip under `strict`.
        ValueError: bad arguments.
    """
    options = options or BuildOptions()
    raw_dir, out_resolved = Path(raw_dir), Path(out).resolve()
    fractions = check_arguments(raw_dir, Path(out), options, num_proc, split)
    report_path = Path(report) if report is not None else out_resolved.parent / f"{out_resolved.name}.report.json"
    labeler = make_labeler(labels, raw_dir)
    files = list_raw_files(raw_dir)
    entries: dict[str, dict] = {}
    pool = _make_pool(min(num_proc, max(1, len(files) // FILES_PER_TASK)))  # no pool start-up for a handful
    temp_dir = out_resolved.parent / f".{out_resolved.name}.tmp-{os.getpid()}"
    try:
        labelled = list_and_label(raw_dir, files, labeler, entries, pool=pool, progress=progress)
        _check_strict(strict, entries)
        if not labelled:
            raise BuildError(f"no labelled image files under {raw_dir} (see {report_path})")
        ordered = split_files(labelled, fractions, seed)
        if temp_dir.exists():
            shutil.rmtree(temp_dir)
        temp_dir.mkdir(parents=True)
        outcomes = _run_process(ordered, options, pool)
        written = write_outcomes(
            outcomes, temp_dir, entries, grid_pairs=grid_pairs(ordered), max_shard_bytes=max_shard_bytes, strict=strict, progress=progress
        )
        if written.frames == 0:
            raise BuildError(f"no frame of {len(ordered)} labelled file(s) could be used (see {report_path})")
        provenance = _provenance(options, labeler, fractions, seed)
        fingerprint = finish_dataset(temp_dir, written, provenance)
        _replace_folder(temp_dir, out_resolved)  # swap in atomically
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        write_report(report_path, entries, None, labeler.mode)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary = summarise(Path(out), report_path, written.counts, entries, fingerprint)
    write_report(report_path, entries, summary, labeler.mode)
    return summary


def check_arguments(raw_dir: Path, out: Path, options: BuildOptions, num_proc: int, split: str) -> tuple[float, float, float]:
    """Validate the build's arguments before anything is read or written; returns the split fractions.

    Raises:
        ValueError: the first bad argument, named as on the command line.
    """
    if not raw_dir.is_dir():
        raise ValueError(f"RAW_DIR {raw_dir} is not a folder")
    if options.bit_depth not in (8, 16):
        raise ValueError(f"--bit-depth must be 8 or 16, got {options.bit_depth}")
    if options.size < 16:
        raise ValueError(f"--size must be at least 16, got {options.size}")
    if num_proc < 1:
        raise ValueError(f"--num-proc must be >= 1, got {num_proc}")
    if options.frames not in ("first", "middle", "all"):
        select_frames(options.frames, 1 << 30)  # validates an index's spelling early
    fractions = parse_split(split)
    out_resolved = out.resolve()
    if out_resolved == raw_dir.resolve() or raw_dir.resolve() in out_resolved.parents:
        raise ValueError(f"--out {out} must not be inside RAW_DIR {raw_dir}")
    if out_resolved.exists() and not out_resolved.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    return fractions


def list_and_label(
    raw_dir: Path, files: list[Path], labeler: Labeler, entries: dict[str, dict], *, pool=None, progress: bool = False
) -> list[LabelledFile]:
    """Stage 1: label every listed file; files that get no label are added to `entries` with their reason.

    Args:
        raw_dir: the raw folder (report keys are paths relative to it).
        files: the files to label (see `list_raw_files`).
        labeler: see `xdigiskull.labels.make_labeler`.
        entries: the report's file entries, added to.
        pool: process pool for header reads, or None.
        progress: show a progress bar.
    """
    candidates = []
    for path in files:
        relative = path.relative_to(raw_dir).as_posix()
        if not is_supported_path(path):
            entries[relative] = skip_entry("unsupported-file-type", f"unsupported file type {path.suffix!r}")
        else:
            candidates.append((relative, str(path)))
    labelled = []
    for (relative, path), result in zip(candidates, _run_scan(candidates, labeler, pool, progress)):
        if isinstance(result, LabelError):
            entries[relative] = skip_entry("no-label", str(result))
        elif isinstance(result, SourceError):
            entries[relative] = skip_entry(result.reason, result.message)
        else:
            labelled.append(LabelledFile(relative, path, result))
    return labelled


def split_files(labelled: list[LabelledFile], fractions: tuple[float, float, float], seed: int) -> list[FileTask]:
    """Stage 2: deal the files' poses to splits (see `assign_splits`) and order the files for writing:
    split by split, each shuffled once with `seed` (reproducibly)."""
    groups = [f.label.group or f"file:{f.relative}" for f in labelled]
    assignment = assign_splits(groups, fractions, seed)
    tasks = [FileTask(f.relative, f.path, assignment[group], f.label) for f, group in zip(labelled, groups)]
    rng = np.random.default_rng(seed + 1)
    ordered: list[FileTask] = []
    for split_name in SPLITS:
        in_split = sorted((t for t in tasks if t.split == split_name), key=lambda t: t.relative)
        ordered += [in_split[i] for i in rng.permutation(len(in_split))]
    return ordered


@dataclass
class WrittenRows:
    """What `write_outcomes` wrote into a dataset folder.

    Attributes:
        counts: {split: {class name: rows}}.
        shards: {split: shard names relative to the folder}.
        num_bytes: {split: image bytes}.
        digests: content digests of every file read (the input fingerprint's material).
        grid: {class name: PNG bytes of the card's sample images}.
    """

    counts: dict[str, dict[str, int]]
    shards: dict[str, list[str]]
    num_bytes: dict[str, int]
    digests: list[str]
    grid: dict[str, list[bytes]]

    @property
    def frames(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def write_outcomes(
    outcomes: Iterable[tuple[FileTask, FileOutcome]],
    folder: Path,
    entries: dict[str, dict],
    *,
    grid_pairs: list[str] | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    strict: bool = False,
    progress: bool = False,
) -> WrittenRows:
    """Stage 4: stream the rows of processed files into parquet shards under `folder`, and record every
    file in `entries`; with `strict`, stop at the first file with a skip, naming it.

    Args:
        outcomes: (task, outcome) pairs in writing order (see `process_files`).
        folder: the dataset folder being written.
        entries: the report's file entries, added to.
        grid_pairs: pair ids whose images make the card's sample grid, the same poses in every class
            (see `grid_pairs`); without pair ids, the first sources of each class.
        max_shard_bytes: image bytes per parquet shard.
        strict: raise `BuildError` at the first file or frame that is skipped.
        progress: show a progress bar.
    """
    grid_pairs = grid_pairs or []
    writers = {s: SplitWriter(folder, s, max_shard_bytes) for s in SPLITS}
    counts = {s: dict.fromkeys(CLASS_NAMES, 0) for s in SPLITS}
    cells: dict[str, dict[str, bytes]] = {name: {} for name in CLASS_NAMES}
    digests: list[str] = []
    bar = tqdm(desc="Building X-DigiSkull", unit="file", disable=not progress)
    for task, outcome in outcomes:
        bar.update(1)
        if outcome.digest:
            digests.append(outcome.digest)
        for row in (f.row for f in outcome.frames if f.row is not None):
            writers[task.split].add(row)
            counts[task.split][task.label.class_name] += 1
            cell = cells[task.label.class_name]
            key = task.label.pair_id if grid_pairs else row.source_id
            if key not in cell and (key in grid_pairs or (not grid_pairs and len(cell) < GRID_SAMPLES)):
                cell[key] = row.image
        entries[task.relative] = file_entry(task, outcome)
        if strict and entries[task.relative]["status"] != "written":
            bar.close()
            _check_strict(strict, {task.relative: entries[task.relative]})
    bar.close()
    shards = {s: writers[s].close() for s in SPLITS}
    grid = {name: [cell[k] for k in (grid_pairs or sorted(cell)) if k in cell] for name, cell in cells.items()}
    return WrittenRows(counts, shards, {s: writers[s].num_bytes for s in SPLITS}, digests, grid)


def grid_pairs(tasks: list[FileTask]) -> list[str]:
    """The pair ids of the card's sample grid: the first `GRID_SAMPLES` in sorted order."""
    return sorted({t.label.pair_id for t in tasks if t.label.pair_id})[:GRID_SAMPLES]


def file_entry(task: FileTask, outcome: FileOutcome) -> dict:
    """A processed file's report entry: its class, split, status and every selected frame's fate."""
    entry: dict = {"class": task.label.class_name, "split": task.split}
    if outcome.reason:
        entry.update(skip_entry(outcome.reason, outcome.message))
    else:
        entry["frames_in_file"] = outcome.num_frames
        entry["frames"] = [
            {"frame": f.frame, "status": "written", "id": f.row.source_id, "field": f.field_source}
            if f.row is not None
            else skipped_frame(f.frame, f.reason, f.message)
            for f in outcome.frames
        ]
        written = sum(f.row is not None for f in outcome.frames)
        entry["status"] = "written" if written == len(outcome.frames) else ("partial" if written else "skipped")
    if outcome.warnings:
        entry["warnings"] = outcome.warnings
    return entry


def finish_dataset(folder: Path, written: WrittenRows, provenance: dict) -> str:
    """Stage 5: the sample grid and the dataset card; returns the input fingerprint the card records."""
    fingerprint = hashlib.sha256("\n".join(sorted(written.digests)).encode("ascii")).hexdigest()
    (folder / "assets").mkdir()
    make_sample_grid(written.grid, folder / "assets" / "sample_grid.png")
    write_card(
        folder / "README.md",
        CardInputs(
            counts=written.counts,
            num_bytes=written.num_bytes,
            shards=written.shards,
            options=provenance,
            fingerprint=fingerprint,
            num_input_files=len(written.digests),
        ),
    )
    return fingerprint


def _provenance(options: BuildOptions, labeler: Labeler, fractions: tuple[float, float, float], seed: int) -> dict:
    return {
        "frames": options.frames,
        "bit_depth": options.bit_depth,
        "size": options.size,
        "allow_upscale": options.allow_upscale,
        "mask_burned_in": options.mask_burned_in,
        "labels": labeler.mode,
        "split": ",".join(f"{f:g}" for f in fractions),
        "seed": seed,
        "source_id_salt": "default" if options.salt == DEFAULT_SALT else "site secret",
    }


def _make_pool(num_proc: int) -> concurrent.futures.ProcessPoolExecutor | None:
    if num_proc <= 1:
        return None
    # spawn: workers start clean (no inherited threads from OpenCV, pyarrow or tqdm)
    return concurrent.futures.ProcessPoolExecutor(
        num_proc, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
    )


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_scan(candidates, labeler: Labeler, pool, progress: bool) -> list[LabelInfo | LabelError | SourceError]:
    if not labeler.needs_header or pool is None:
        bar = tqdm(candidates, desc="Labelling", unit="file", disable=not progress or not labeler.needs_header)
        return [label_file(r, p, labeler) for r, p in bar]
    results: list = []
    chunks = _chunks(candidates, 64)
    bar = tqdm(total=len(candidates), desc="Labelling", unit="file", disable=not progress)
    for chunk_result in pool.map(scan_files, chunks, [labeler] * len(chunks)):
        results += chunk_result
        bar.update(len(chunk_result))
    bar.close()
    return results


def _run_process(ordered: list[FileTask], options: BuildOptions, pool) -> Iterator[tuple[FileTask, FileOutcome]]:
    """Stage 3: yield (task, outcome) in task order; at most a few chunks in flight, so memory stays flat."""
    if pool is None:
        for task in ordered:
            yield task, process_file(task, options)
        return
    chunks = _chunks(ordered, FILES_PER_TASK)
    in_flight: deque = deque()
    window = 4 * pool._max_workers
    next_chunk = 0
    while next_chunk < len(chunks) or in_flight:
        while next_chunk < len(chunks) and len(in_flight) < window:
            in_flight.append((chunks[next_chunk], pool.submit(process_files, chunks[next_chunk], options)))
            next_chunk += 1
        chunk, future = in_flight.popleft()
        yield from zip(chunk, future.result())


def _check_strict(strict: bool, entries: dict[str, dict]) -> None:
    if not strict:
        return
    for relative, entry in entries.items():
        if entry.get("status") == "skipped" and "reason" in entry:
            raise BuildError(f"--strict: {relative}: {entry['message']} [{entry['reason']}]")
        for frame in entry.get("frames", []):
            if frame["status"] == "skipped":
                raise BuildError(f"--strict: {relative} frame {frame['frame']}: {frame['message']} [{frame['reason']}]")


def _replace_folder(temp_dir: Path, out: Path) -> None:
    """Put `temp_dir` at `out`; an existing `out` is moved aside first and deleted only afterwards."""
    if out.exists():
        if not out.is_dir():
            raise BuildError(f"--out {out} exists and is not a folder")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(temp_dir, out)
        shutil.rmtree(old)
    else:
        os.replace(temp_dir, out)


# ---------------------------------------------------------------------------------------------- CLI


def build(
    raw_dir: Path = typer.Argument(..., help="Folder of raw exports: simulator|azurion/<dose>/ or synthetic|real/<dose>/."),
    out: Path = typer.Option(Path("x-digiskull"), "--out", "-o", help="Dataset folder to write (load it with load_dataset(OUT))."),
    labels: str = typer.Option("folders", help="'folders', a manifest .csv (file,class,...) or a rules .yaml (DICOM tags -> class)."),
    frames: str = typer.Option("first", help="Frames of multi-frame files: first, middle, all, or a 0-based index."),
    bit_depth: int = typer.Option(8, help="PNG bit depth: 8 (mode L) or 16 (mode I;16)."),
    size: int = typer.Option(780, help="Output side in pixels."),
    split: str = typer.Option("0.8,0.1,0.1", help="train,validation,test fractions (grouped by pair id / view)."),
    seed: int = typer.Option(0, help="Seed of the split assignment and row order."),
    num_proc: int = typer.Option(os.cpu_count() or 1, help="Worker processes."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first file or frame that cannot be used."),
    allow_upscale: bool = typer.Option(False, "--allow-upscale", help="Enlarge exposed fields smaller than --size instead of skipping them."),
    mask_burned_in: bool = typer.Option(False, "--mask-burned-in", help="Mask corners with burned-in text instead of skipping the frame."),
    report: Path = typer.Option(None, help="JSON build report path [default: <OUT>.report.json beside OUT]."),
    salt: str = typer.Option(DEFAULT_SALT, envvar="XDIGISKULL_SALT", show_default=False, help="Secret salt of the source ids (or XDIGISKULL_SALT)."),
) -> None:
    """Build the X-DigiSkull dataset (780x780, five classes, Hub parquet layout) from raw exports."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, soft_wrap=True)
    keep_freed_memory()  # this process is ours: in-process builds reuse buffers as the workers do
    options = BuildOptions(frames, bit_depth, size, allow_upscale, mask_burned_in, salt)
    try:
        summary = build_dataset(
            raw_dir, out, labels=labels, options=options, split=split, seed=seed, num_proc=num_proc, strict=strict, report=report
        )
    except (ValueError, BuildError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    table = Table(title=f"X-DigiSkull at {summary.out}")
    table.add_column("class")
    for split_name in SPLITS:
        table.add_column(split_name, justify="right")
    for name in CLASS_NAMES:
        table.add_row(name, *(str(summary.counts[s][name]) for s in SPLITS))
    console.print(table)
    console.print(
        f"{summary.frames_written} image(s) written from {summary.files_read} file(s); "
        f"{summary.frames_skipped} frame(s) and {summary.files_skipped} file(s) skipped"
        + (f" ({', '.join(f'{k}: {v}' for k, v in summary.skip_reasons.items())})" if summary.skip_reasons else "")
        + f". Report: {summary.report_path}"
    )
