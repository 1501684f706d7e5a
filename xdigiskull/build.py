"""`xdigiskull build`: raw simulator and C-arm exports -> the X-DigiSkull dataset on disk.

Steps: list the raw files; label them (class, view, pose); split the poses into train/validation/test
(grouped by pair id, else view, so no pose is in two splits; deterministic from the seed); read, crop
and encode every selected frame in a process pool; stream the PNG bytes into parquet shards; write the
dataset card and a report. Everything is written into a temporary folder beside the target and renamed
at the end, so a killed build leaves no half dataset and never damages an existing one.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from tqdm.auto import tqdm

from xdigiskull.card import CardInputs, make_sample_grid, write_card
from xdigiskull.classes import CLASS_NAMES, SPLITS
from xdigiskull.deid import DEFAULT_SALT
from xdigiskull.labels import LabelError, LabelInfo, Labeler, make_labeler
from xdigiskull.processing import BuildOptions, FileTask, keep_freed_memory, label_file, process_file, process_files, scan_files, worker_init
from xdigiskull.reading import is_supported_path, select_frames
from xdigiskull.writer import DEFAULT_MAX_SHARD_BYTES, SplitWriter

# files in a raw folder that are notes, not images: not listed in the report at all
IGNORED_SUFFIXES: frozenset[str] = frozenset({".csv", ".yaml", ".yml", ".json", ".txt", ".md", ".log"})
# folders of a raw export that are not inputs (the phantom's noise-free references)
IGNORED_FOLDERS: frozenset[str] = frozenset({"ground_truth"})
FILES_PER_TASK = 8
GRID_SAMPLES = 4  # samples per class in the card's grid


class BuildError(Exception):
    """The build cannot go on (bad options, no usable input, or a skip under --strict)."""


@dataclass
class BuildSummary:
    """What a build produced.

    Attributes:
        out: the dataset folder.
        report_path: where the JSON report went.
        counts: {split: {class name: rows}}.
        files_read, files_skipped, frames_written, frames_skipped: totals.
        skip_reasons: {reason code: frames or files skipped for it}.
        fingerprint: input fingerprint recorded in the card.
    """

    out: Path
    report_path: Path
    counts: dict[str, dict[str, int]]
    files_read: int
    files_skipped: int
    frames_written: int
    frames_skipped: int
    skip_reasons: dict[str, int]
    fingerprint: str


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

    Args:
        raw_dir: folder of raw exports (``simulator|azurion/<dose>/`` or ``synthetic|real/<dose>/``).
        out: dataset folder to create (replaced atomically if it exists).
        labels: ``folders``, a manifest ``.csv`` or a rules ``.yaml`` (see `xdigiskull.labels`).
        options: per-image options (frames, bit depth, size, upscale, burned-in masking, salt).
        split: train,validation,test fractions.
        seed: seed of the split assignment and of the row order within splits.
        num_proc: worker processes (1 works in this process, for which
            `xdigiskull.processing.keep_freed_memory` saves a third of the time per image).
        strict: stop at the first skipped file or frame.
        report: JSON report path (default ``<out>.report.json`` beside the dataset folder).
        max_shard_bytes: image bytes per parquet shard.
        progress: show progress bars.

    Raises:
        BuildError: nothing usable, or a skip under `strict`.
        ValueError: bad arguments.
    """
    options = options or BuildOptions()
    raw_dir = Path(raw_dir)
    out = Path(out)
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
    report_path = Path(report) if report is not None else out_resolved.parent / f"{out_resolved.name}.report.json"
    labeler = make_labeler(labels, raw_dir)

    files = list_raw_files(raw_dir)
    file_entries: dict[str, dict] = {}
    pool = _make_pool(min(num_proc, max(1, len(files) // FILES_PER_TASK)))  # no pool start-up for a handful
    temp_dir = out_resolved.parent / f".{out_resolved.name}.tmp-{os.getpid()}"
    try:
        # 1. labels (header reads go to the pool when the labeler needs them)
        candidates = []
        for path in files:
            relative = path.relative_to(raw_dir).as_posix()
            if not is_supported_path(path):
                file_entries[relative] = _skip_entry("unsupported-file-type", f"unsupported file type {path.suffix!r}")
            else:
                candidates.append((relative, str(path)))
        label_results = _run_scan(candidates, labeler, pool, progress)
        tasks: list[FileTask] = []
        for (relative, path), result in zip(candidates, label_results):
            if isinstance(result, LabelError):
                file_entries[relative] = _skip_entry("no-label", str(result))
            else:
                tasks.append(FileTask(relative, path, "", result))
        _check_strict(strict, file_entries)
        if not tasks:
            raise BuildError(f"no labelled image files under {raw_dir} (see {report_path})")

        # 2. splits, grouped by pose
        assignment = assign_splits([t.label.group or f"file:{t.relative}" for t in tasks], fractions, seed)
        for task in tasks:
            task.split = assignment[task.label.group or f"file:{task.relative}"]
        rng = np.random.default_rng(seed + 1)
        ordered: list[FileTask] = []
        for split_name in SPLITS:
            in_split = sorted((t for t in tasks if t.split == split_name), key=lambda t: t.relative)
            ordered += [in_split[i] for i in rng.permutation(len(in_split))]  # shuffled once, reproducibly

        # 3. images -> shards
        if temp_dir.exists():
            shutil.rmtree(temp_dir)
        temp_dir.mkdir(parents=True)
        writers = {s: SplitWriter(temp_dir, s, max_shard_bytes) for s in SPLITS}
        counts = {s: dict.fromkeys(CLASS_NAMES, 0) for s in SPLITS}
        # the grid shows the same poses in every class row: the first few pair ids (else any sources)
        grid_pairs = sorted({t.label.pair_id for t in tasks if t.label.pair_id})[:GRID_SAMPLES]
        grid_cells: dict[str, dict[str, bytes]] = {name: {} for name in CLASS_NAMES}
        digests: list[str] = []
        bar = tqdm(total=len(ordered), desc="Building X-DigiSkull", unit="file", disable=not progress)
        for task, outcome in _run_process(ordered, options, pool):
            bar.update(1)
            entry = {"class": task.label.class_name, "split": task.split}
            if outcome.digest:
                digests.append(outcome.digest)
            if outcome.reason:
                entry.update(_skip_entry(outcome.reason, outcome.message))
            else:
                entry["frames_in_file"] = outcome.num_frames
                entry["frames"] = []
                for frame in outcome.frames:
                    if frame.status == "written":
                        assert frame.row is not None
                        writers[task.split].add(frame.row)
                        counts[task.split][task.label.class_name] += 1
                        cells = grid_cells[task.label.class_name]
                        key = task.label.pair_id if grid_pairs else frame.row["source_id"]
                        if key not in cells and (key in grid_pairs or (not grid_pairs and len(cells) < GRID_SAMPLES)):
                            cells[key] = frame.row["image"]
                        entry["frames"].append({"frame": frame.frame, "status": "written", "id": frame.row["source_id"]})
                    else:
                        entry["frames"].append(
                            {"frame": frame.frame, "status": "skipped", "reason": frame.reason, "message": frame.message}
                        )
                written = sum(f["status"] == "written" for f in entry["frames"])
                entry["status"] = "written" if written == len(entry["frames"]) else ("partial" if written else "skipped")
            if outcome.warnings:
                entry["warnings"] = outcome.warnings
            file_entries[task.relative] = entry
            if strict and entry["status"] != "written":
                bar.close()
                _check_strict(strict, {task.relative: entry})
        bar.close()
        shards = {s: writers[s].close() for s in SPLITS}
        frames_written = sum(sum(c.values()) for c in counts.values())
        if frames_written == 0:
            raise BuildError(f"no frame of {len(tasks)} labelled file(s) could be used (see {report_path})")

        # 4. card, grid
        fingerprint = hashlib.sha256("\n".join(sorted(digests)).encode("ascii")).hexdigest()
        provenance = {
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
        (temp_dir / "assets").mkdir()
        samples = {name: [cells[k] for k in (grid_pairs or sorted(cells)) if k in cells] for name, cells in grid_cells.items()}
        make_sample_grid(samples, temp_dir / "assets" / "sample_grid.png")
        write_card(
            temp_dir / "README.md",
            CardInputs(
                counts=counts,
                num_bytes={s: writers[s].num_bytes for s in SPLITS},
                shards=shards,
                options=provenance,
                fingerprint=fingerprint,
                num_input_files=len(digests),
            ),
        )

        # 5. swap in atomically
        _replace_folder(temp_dir, out_resolved)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        _write_report(report_path, file_entries, None, labeler.mode)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    summary = _summarise(out, report_path, counts, file_entries, fingerprint)
    _write_report(report_path, file_entries, summary, labeler.mode)
    return summary


def _make_pool(num_proc: int) -> concurrent.futures.ProcessPoolExecutor | None:
    if num_proc <= 1:
        return None
    # spawn: workers start clean (no inherited threads from OpenCV, pyarrow or tqdm)
    return concurrent.futures.ProcessPoolExecutor(
        num_proc, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
    )


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_scan(candidates, labeler: Labeler, pool, progress: bool) -> list[LabelInfo | LabelError]:
    pairs = [(r, p) for r, p in candidates]
    if not labeler.needs_header or pool is None:
        bar = tqdm(pairs, desc="Labelling", unit="file", disable=not progress or not labeler.needs_header)
        return [label_file(r, p, labeler) for r, p in bar]
    results: list = []
    chunks = _chunks(pairs, 64)
    bar = tqdm(total=len(pairs), desc="Labelling", unit="file", disable=not progress)
    for chunk_result in pool.map(scan_files, chunks, [labeler] * len(chunks)):
        results += chunk_result
        bar.update(len(chunk_result))
    bar.close()
    return results


def _run_process(ordered: list[FileTask], options: BuildOptions, pool):
    """Yield (task, outcome) in task order; at most a few chunks in flight, so memory stays flat."""
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


def _skip_entry(reason: str, message: str) -> dict:
    return {"status": "skipped", "reason": reason, "message": message}


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


def _summarise(out, report_path, counts, entries: dict[str, dict], fingerprint: str) -> BuildSummary:
    reasons: Counter = Counter()
    frames_written = frames_skipped = files_skipped = files_read = 0
    for entry in entries.values():
        if "frames" in entry:
            files_read += 1
            for frame in entry["frames"]:
                if frame["status"] == "written":
                    frames_written += 1
                else:
                    frames_skipped += 1
                    reasons[frame["reason"]] += 1
        if entry.get("status") == "skipped":
            files_skipped += 1
            if "reason" in entry:
                reasons[entry["reason"]] += 1
    return BuildSummary(
        out, report_path, counts, files_read, files_skipped, frames_written, frames_skipped, dict(sorted(reasons.items())), fingerprint
    )


def _write_report(path: Path, entries: dict[str, dict], summary: BuildSummary | None, mode: str) -> None:
    """Write the JSON report atomically (it names input files, so it lives outside the dataset)."""
    from xdigiskull import __version__

    report = {
        "tool": f"xdigiskull {__version__}",
        "completed": summary is not None,
        "labels": mode,
        "totals": None
        if summary is None
        else {
            "files_listed": len(entries),
            "files_read": summary.files_read,
            "files_skipped": summary.files_skipped,
            "frames_written": summary.frames_written,
            "frames_skipped": summary.frames_skipped,
            "skip_reasons": summary.skip_reasons,
            "counts": summary.counts,
            "input_fingerprint": summary.fingerprint,
        },
        "files": {relative: entries[relative] for relative in sorted(entries)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(temp, path)


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
