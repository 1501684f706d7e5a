"""`xdigiskull build`: raw simulator and C-arm exports -> the X-DigiSkull dataset on disk.

Stages, each a function testable on its own: list the raw files and label them (class, view, pose:
`list_and_label`); split the poses into train/validation/test (grouped by pair id, else view, so no pose
is in two splits; each group's split is a keyed hash of its name, so it stays put when files are added:
`split_files`); read, crop and encode every selected frame in a process pool that survives a dying worker
(`xdigiskull.processing.process_file`, `xdigiskull.worker_pool`); stream the rows into parquet shards,
dropping copies of images already written (`write_outcomes`); write the card (`finish_dataset`) and the
report (`xdigiskull.report`). A file that cannot be used, for whatever reason, becomes its entry in the
report and the build goes on.

Everything is written into ``.<OUT>.partial/`` beside the target and renamed at the end, so a killed build
leaves no half dataset and never damages an existing one; the outcomes of finished files are journalled
there (`xdigiskull.journal`), so ``--resume`` continues a killed build.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.markup import escape
from tqdm.auto import tqdm

try:
    import fcntl  # a build's work folder is locked, so two builds into one --out cannot mix their work
except ImportError:  # Windows: no lock
    fcntl = None  # type: ignore[assignment]

from xdigiskull.build_config import BuildConfig
from xdigiskull.card import CardInputs, make_sample_grid, write_card
from xdigiskull.classes import CLASS_NAMES, SPLITS
from xdigiskull.command_line import config_command
from xdigiskull.deid import DEFAULT_SALT
from xdigiskull.duplicates import DuplicateFilter
from xdigiskull.journal import BuildJournal, listing_key, load_labels, plan_key, save_labels
from xdigiskull.labels import LabelError, LabelInfo, Labeler, make_labeler
from xdigiskull.processing import (
    BuildOptions,
    FileOutcome,
    FileTask,
    LabelledFile,
    keep_freed_memory,
    label_file,
    process_files,
    scan_files,
    worker_init,
)
from xdigiskull.reading import SourceError, is_supported_path, select_frames
from xdigiskull.report import BuildSummary, skip_entry, skipped_frame, summarise, write_report
from xdigiskull.worker_pool import WorkerPool, import_plugins
from xdigiskull.writer import DEFAULT_MAX_SHARD_BYTES, SplitWriter

__all__ = ["BuildConfig", "BuildError", "BuildOptions", "BuildSummary", "assign_splits", "build_dataset"]

# files in a raw folder that are notes, not images: not listed in the report at all
IGNORED_SUFFIXES: frozenset[str] = frozenset({".csv", ".yaml", ".yml", ".json", ".txt", ".md", ".log"})
# folders of a raw export that are not inputs (the phantom's noise-free references and phantom v2's bone masks,
# which a build reads through the manifest's `bone_mask` column when given --labels)
IGNORED_FOLDERS: frozenset[str] = frozenset({"ground_truth", "labels"})
FILES_PER_TASK = 8
GRID_SAMPLES = 4  # samples per class in the card's grid


class BuildError(Exception):
    """The build cannot go on (bad options, no usable input, or a skip under --strict)."""


# ------------------------------------------------------------------------------------- main side


def list_raw_files(raw_dir: Path) -> list[Path]:
    """Every candidate input under `raw_dir`, sorted by relative POSIX path (hidden files, notes and
    the phantom's ``ground_truth/`` and ``labels/`` excluded)."""
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


def split_position(group: str, seed: int) -> float:
    """Where a group falls in [0, 1): a keyed BLAKE2b hash of its name (the seed is the key), so it depends on
    nothing else: no other file, and no file that could or could not be read."""
    digest = hashlib.blake2b(group.encode("utf-8", "surrogateescape"), key=str(seed).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_splits(groups: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Deal groups to splits: a group goes to train when its `split_position` is below the train fraction, to
    validation below train + validation, else to test.

    A group's split never changes when others are added or removed. The price: the splits' sizes follow the
    fractions only on average (each is binomial: with n groups, a split of fraction f holds f*n +- sqrt(n f (1 - f))
    groups), so a small dataset can come out with an empty split (the build warns of it).
    """
    train, validation = fractions[0], fractions[0] + fractions[1]
    assignment = {}
    for group in sorted(set(groups)):
        position = split_position(group, seed)
        assignment[group] = SPLITS[0] if position < train else SPLITS[1] if position < validation else SPLITS[2]
    return assignment


def empty_split_warnings(counts: dict[str, dict[str, int]], fractions: tuple[float, float, float], groups: int) -> list[str]:
    """A warning for each split that was asked for (fraction > 0) but holds no image."""
    warnings = []
    for split, fraction in zip(SPLITS, fractions):
        if fraction > 0 and not sum(counts[split].values()):
            warnings.append(
                f"split {split!r} is empty: none of the {groups} pose group(s) fell in its fraction {fraction:g} "
                f"(splits are a hash of each pose, so small datasets drift from the fractions); load_dataset gives "
                f"no {split!r} split. Add more poses, or give --split a larger {split} fraction (or 0 to mean none)"
            )
    return warnings


def build_dataset(config: BuildConfig, *, progress: bool = True) -> BuildSummary:
    """Build X-DigiSkull from a raw export folder. The Python side of `xdigiskull build`.

    The stages, each a function of its own: `list_and_label`, `split_files`, `process_chunks` (in a pool),
    `write_outcomes` and `finish_dataset`; the report is written whatever happens.

    Args:
        config: every setting of the build (see `BuildConfig`: the raw folder, the target, labels, image
            options, split fractions and seed, workers, ``resume``...).
        progress: show progress bars.

    Raises:
        BuildError: nothing usable, or a skip under `config.strict`.
        ValueError: bad settings.
    """
    options = config.image_options()
    raw_dir, out_resolved = Path(config.raw_dir), Path(config.out).resolve()
    fractions = check_arguments(raw_dir, Path(config.out), options, config.num_proc, config.split)
    import_plugins(config.plugin_modules())  # here too: for in-process builds, and to name a bad module early
    report_path = Path(config.report) if config.report is not None else out_resolved.parent / f"{out_resolved.name}.report.json"
    labeler = make_labeler(config.labels, raw_dir)
    files = list_raw_files(raw_dir)
    entries: dict[str, dict] = {}
    # worker processes, even for --num-proc 1 (a decoder that crashes then costs its file, not the build); a
    # handful of files is read in this process: no pool start-up for them. The pool starts when work is given.
    workers = min(config.num_proc, max(1, len(files) // FILES_PER_TASK))
    pool = WorkerPool(workers, worker_init, config.plugin_modules()) if len(files) > FILES_PER_TASK else None
    if pool is not None and not config.resume:
        pool.start()  # the workers' start-up overlaps the labelling (a resume may need none: started below)
    partial = out_resolved.parent / f".{out_resolved.name}.partial"
    dataset_dir = partial / "dataset"
    lock = _lock_work_folder(partial, Path(config.out))
    try:
        labelled = _label_or_resume(raw_dir, files, labeler, entries, pool, partial / "labels.pkl", config.resume, progress)
        _check_strict(config.strict, entries)
        if not labelled:
            raise BuildError(f"no labelled image files under {raw_dir} (see {report_path})")
        ordered = split_files(labelled, fractions, config.seed)
        journal = BuildJournal(partial / "journal", plan_key(_plan_settings(config, labeler.mode), ordered))
        journal.start(config.resume)
        if pool is not None and journal.resumed_chunks * FILES_PER_TASK < len(ordered):  # work left to do
            pool.start()  # the workers start up while this process sets up the writers
        shutil.rmtree(dataset_dir, ignore_errors=True)
        dataset_dir.mkdir(parents=True)
        written = write_outcomes(
            process_chunks(ordered, options, pool, journal),
            dataset_dir,
            entries,
            grid_pairs=grid_pairs(ordered),
            max_shard_bytes=config.max_shard_bytes,
            strict=config.strict,
            progress=progress,
            label_columns=labeler.has_label_columns,
        )
        if written.frames == 0:
            raise BuildError(f"no frame of {len(ordered)} labelled file(s) could be used (see {report_path})")
        fingerprint = finish_dataset(dataset_dir, written, _provenance(options, labeler, fractions, config.seed, written))
        _replace_folder(dataset_dir, out_resolved)  # swap in atomically
        shutil.rmtree(partial)
    except KeyboardInterrupt:  # the journal stays for --resume
        shutil.rmtree(dataset_dir, ignore_errors=True)
        write_report(report_path, entries, None, labeler.mode)
        raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        write_report(report_path, entries, None, labeler.mode)
        raise
    finally:
        lock.close()
        if pool is not None:
            pool.shutdown()
    groups = sum(len(g) for g in written.groups.values())
    summary = summarise(
        Path(config.out), report_path, written.counts, entries, fingerprint, empty_split_warnings(written.counts, fractions, groups)
    )
    summary.resumed_files = min(len(ordered), journal.resumed_chunks * FILES_PER_TASK)  # only the last chunk is short
    write_report(report_path, entries, summary, labeler.mode)
    return summary


def _label_or_resume(
    raw_dir: Path, files: list[Path], labeler: Labeler, entries: dict[str, dict], pool, cache: Path, resume: bool, progress: bool
) -> list[LabelledFile]:
    """`list_and_label`, or, for a resume over the same files (paths, sizes and times) and labelling, its kept result."""
    key = listing_key(repr(labeler), files)
    kept = load_labels(cache, key) if resume else None
    if kept is not None:
        entries.update(kept[1])
        return kept[0]
    labelled = list_and_label(raw_dir, files, labeler, entries, pool=pool, progress=progress)
    save_labels(cache, key, labelled, entries)
    return labelled


def _lock_work_folder(partial: Path, out: Path):
    """Create the work folder and hold its lock (released when the returned file is closed).

    Raises:
        BuildError: another build holds it.
    """
    partial.mkdir(parents=True, exist_ok=True)
    handle = open(partial / "lock", "w")
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise BuildError(f"another build is writing --out {out} (its work folder {partial} is locked)") from None
    return handle


def _plan_settings(config: BuildConfig, labels_mode: str) -> dict:
    """What a journal must match to be resumed, besides the tasks: every setting that shapes an outcome."""
    from xdigiskull import __version__

    settings = {"tool": __version__, "labels": labels_mode, "options": repr(config.image_options())}
    settings["plugins"] = config.plugin_modules()
    return settings


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
    split by split, each shuffled by a keyed hash of the file's path (so that a file added or left out moves
    no other file's row)."""
    groups = [f.label.group or f"file:{f.relative}" for f in labelled]
    assignment = assign_splits(groups, fractions, seed)
    tasks = [FileTask(f.relative, f.path, assignment[group], f.label) for f, group in zip(labelled, groups)]
    row_order = lambda t: (SPLITS.index(t.split), split_position(f"row:{t.relative}", seed), t.relative)  # noqa: E731
    return sorted(tasks, key=row_order)


@dataclass
class WrittenRows:
    """What `write_outcomes` wrote into a dataset folder.

    Attributes:
        counts: {split: {class name: rows}}.
        shards: {split: shard names relative to the folder}.
        num_bytes: {split: image bytes}.
        digests: content digests of every file read (the input fingerprint's material).
        grid: {class name: PNG bytes of the card's sample images}.
        duplicates: frames left out as copies of a written one (see `xdigiskull.duplicates`).
        groups: {split: pose groups with at least one row written}.
        label_columns: whether the shards have the ``landmarks`` and ``bone_mask`` columns.
    """

    counts: dict[str, dict[str, int]]
    shards: dict[str, list[str]]
    num_bytes: dict[str, int]
    digests: list[str]
    grid: dict[str, list[bytes]]
    duplicates: int = 0
    groups: dict[str, set[str]] = field(default_factory=dict)
    label_columns: bool = False

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
    label_columns: bool = False,
) -> WrittenRows:
    """Stage 4: stream the rows of processed files into parquet shards under `folder`, leaving out copies of
    images already written (``duplicate-of``), and record every file in `entries`; with `strict`, stop at the
    first file with a skip, naming it.

    Args:
        outcomes: (task, outcome) pairs in writing order (see `process_files`).
        folder: the dataset folder being written.
        entries: the report's file entries, added to.
        grid_pairs: pair ids whose images make the card's sample grid, the same poses in every class
            (see `grid_pairs`); without pair ids, the first sources of each class.
        max_shard_bytes: image bytes per parquet shard.
        strict: raise `BuildError` at the first file or frame that is skipped.
        progress: show a progress bar.
        label_columns: give the dataset the ``landmarks`` and ``bone_mask`` columns (the manifest has them).
    """
    grid_pairs = grid_pairs or []
    writers = {s: SplitWriter(folder, s, max_shard_bytes, label_columns) for s in SPLITS}
    counts = {s: dict.fromkeys(CLASS_NAMES, 0) for s in SPLITS}
    cells: dict[str, dict[str, bytes]] = {name: {} for name in CLASS_NAMES}
    digests: list[str] = []
    duplicates = DuplicateFilter()
    groups: dict[str, set[str]] = {s: set() for s in SPLITS}
    bar = tqdm(desc="Building X-DigiSkull", unit="file", disable=not progress)
    for task, outcome in outcomes:
        bar.update(1)
        if outcome.digest:
            digests.append(outcome.digest)
        duplicates.check(task.relative, outcome)
        if any(f.row is not None for f in outcome.frames):
            groups[task.split].add(task.label.group or f"file:{task.relative}")
        for row in (f.row for f in outcome.frames if f.row is not None):
            writers[task.split].add(row)
            counts[task.split][task.label.class_name] += 1
            cell = cells[task.label.class_name]
            key = task.label.pair_id if grid_pairs else row.source_id
            if key not in cell and (key in grid_pairs or (not grid_pairs and len(cell) < GRID_SAMPLES)):
                cell[key] = row.image
        entries[task.relative] = file_entry(task, outcome)
        if strict and entries[task.relative]["status"] != "written":
            try:
                _check_strict(strict, {task.relative: entries[task.relative]})
            except BuildError:
                bar.close()
                raise
    bar.close()
    shards = {s: writers[s].close() for s in SPLITS}
    grid = {name: [cell[k] for k in (grid_pairs or sorted(cell)) if k in cell] for name, cell in cells.items()}
    return WrittenRows(
        counts, shards, {s: writers[s].num_bytes for s in SPLITS}, digests, grid, duplicates.dropped, groups, label_columns
    )


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
            else skipped_frame(f.frame, f.reason, f.message, f.duplicate_of)
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
            label_columns=written.label_columns,
        ),
    )
    return fingerprint


def _provenance(
    options: BuildOptions, labeler: Labeler, fractions: tuple[float, float, float], seed: int, written: WrittenRows
) -> dict:
    return {
        "frames": options.frames,
        "bit_depth": options.bit_depth,
        "size": options.size,
        "allow_upscale": options.allow_upscale,
        "mask_burned_in": options.mask_burned_in,
        "labels": labeler.mode,
        "split": ",".join(f"{f:g}" for f in fractions),
        "seed": seed,
        "poses per split (train/validation/test)": "/".join(str(len(written.groups[split])) for split in SPLITS),
        "duplicates_dropped": written.duplicates,
        "source_id_salt": "default" if options.salt == DEFAULT_SALT else "site secret",
    }


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_scan(candidates, labeler: Labeler, pool, progress: bool) -> list[LabelInfo | LabelError | SourceError]:
    if not labeler.needs_header or pool is None:
        bar = tqdm(candidates, desc="Labelling", unit="file", disable=not progress or not labeler.needs_header)
        return [label_file(r, p, labeler) for r, p in bar]
    results: list = []
    chunks = _chunks(candidates, 64)
    bar = tqdm(total=len(candidates), desc="Labelling", unit="file", disable=not progress)
    died = lambda item, how: SourceError("worker-died", f"the worker process died while reading this file's header ({how})")  # noqa: E731
    for chunk_result in pool.run(chunks, functools.partial(scan_files, labeler=labeler), died):
        results += chunk_result
        bar.update(len(chunk_result))
    bar.close()
    return results


def process_chunks(
    ordered: list[FileTask], options: BuildOptions, pool: WorkerPool | None, journal: BuildJournal
) -> Iterator[tuple[FileTask, FileOutcome]]:
    """Stage 3: yield (task, outcome) in task order, chunk by chunk; chunks the journal holds (a resumed build)
    are read back instead of done again, and every chunk done is journalled.

    Args:
        ordered: the tasks in writing order (see `split_files`).
        options: the per-image options.
        pool: worker processes, or None to work in this process.
        journal: where finished chunks are kept (see `xdigiskull.journal`).
    """
    chunks = _chunks(ordered, FILES_PER_TASK)
    finished = {i for i in range(len(chunks)) if journal.has(i)} if journal.resumed_chunks else set()
    todo = [i for i in range(len(chunks)) if i not in finished]
    work = functools.partial(process_files, options=options)
    results = pool.run([chunks[i] for i in todo], work, worker_died) if pool is not None else map(work, (chunks[i] for i in todo))
    # resuming with workers: they run on while this process reads the journalled chunks back
    feeder = _JournalFeeder(results, todo, journal) if pool is not None and finished and todo else None
    for index, chunk in enumerate(chunks):
        if feeder is not None and index not in finished:
            feeder.wait_for(index)
        outcomes = journal.load(index) if index in finished or feeder is not None else None  # one chunk at a time
        if outcomes is None:
            outcomes = work(chunk) if index in finished or feeder is not None else next(results)  # (a damaged chunk is done again)
            journal.save(index, outcomes)
        yield from zip(chunk, outcomes)


class _JournalFeeder(threading.Thread):
    """Takes a resumed build's new chunks from the pool in the background and journals each as it comes.

    Args:
        results: the pool's results, chunk by chunk (see `WorkerPool.run`).
        indices: the chunk index of each result.
        journal: where each result is saved.
    """

    def __init__(self, results: Iterator[list[FileOutcome]], indices: list[int], journal: BuildJournal):
        super().__init__(daemon=True, name="xdigiskull-journal-feeder")
        self._results, self._indices, self._journal = results, indices, journal
        self._saved: set[int] = set()
        self._error: BaseException | None = None
        self._condition = threading.Condition()
        self.start()

    def run(self) -> None:
        try:
            for index, outcomes in zip(self._indices, self._results):
                self._journal.save(index, outcomes)
                with self._condition:
                    self._saved.add(index)
                    self._condition.notify_all()
        except BaseException as error:  # handed to the build's thread by `wait_for`
            with self._condition:
                self._error = error
                self._condition.notify_all()

    def wait_for(self, index: int) -> None:
        """Return once chunk `index` is journalled (raises what stopped the feeder, if it stopped)."""
        with self._condition:
            self._condition.wait_for(lambda: index in self._saved or self._error is not None)
        if index not in self._saved:
            raise BuildError(f"processing stopped: {self._error!r}") from self._error


def worker_died(task: FileTask, how: str) -> FileOutcome:
    """The outcome of a file whose worker process died while reading it."""
    message = f"the worker process died while reading this file ({how}): a decoder crashed on it, or the OS killed the worker"
    return FileOutcome(task.relative, reason="worker-died", message=message)


def _check_strict(strict: bool, entries: dict[str, dict]) -> None:
    """Under `strict`, raise at the first skipped file or frame (a copy left out as ``duplicate-of`` is no failure)."""
    if not strict:
        return
    for relative, entry in entries.items():
        if entry.get("status") == "skipped" and "reason" in entry:
            raise BuildError(f"--strict: {relative}: {entry['message']} [{entry['reason']}]")
        for frame in entry.get("frames", []):
            if frame["status"] == "skipped" and frame["reason"] != "duplicate-of":
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


def run_build(config: BuildConfig) -> None:
    """`xdigiskull build`: build, then print the counts, the skips per reason and any warning."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, soft_wrap=True)
    keep_freed_memory()  # this process is ours: in-process builds reuse buffers as the workers do
    try:
        summary = build_dataset(config)
    except (ValueError, BuildError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
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
        + f". Report: {summary.report_path}",
        markup=False,
    )
    if config.resume:
        resumed = summary.resumed_files
        nothing = "--resume: no half-build of these inputs and settings was found; built from the start"
        console.print(f"resumed {resumed} file(s) from the killed build" if resumed else nothing)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


build = config_command(
    "build",
    BuildConfig,
    run_build,
    "Build the X-DigiSkull dataset (780x780, five classes, Hub parquet layout) from raw exports.",
)
