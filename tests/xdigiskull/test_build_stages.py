"""Each stage of a build on its own: list and label, split, process, write, report; and the typed row."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from synthetic import skull_like
from xdigiskull.build import BuildError, file_entry, grid_pairs, list_and_label, list_raw_files, split_files, write_outcomes
from xdigiskull.labels import LabelInfo, make_labeler
from xdigiskull.processing import BuildOptions, FileOutcome, FileTask, FrameOutcome, LabelledFile, process_file
from xdigiskull.report import REASON_HINTS, summarise, write_report
from xdigiskull.row import DatasetRow
from xdigiskull.writer import dataset_features

SIZE = 128


def test_the_row_is_typed_with_the_dataset_schema():
    # the optional label columns come last, and only in a dataset whose manifest has them
    assert [f.name for f in dataclasses.fields(DatasetRow)] == list(dataset_features(label_columns=True))
    assert list(dataset_features()) == list(dataset_features(label_columns=True))[:-2]


def test_list_and_label_reports_every_file_it_cannot_label(raw_export, tmp_path):
    (tmp_path / "video.mp4").write_bytes(b"x")
    files = list_raw_files(raw_export) + [tmp_path / "video.mp4"]
    entries: dict[str, dict] = {}
    labelled = list_and_label(tmp_path.parent, files, make_labeler("folders", raw_export), entries)
    assert len(labelled) == 20 and all(isinstance(f, LabelledFile) for f in labelled)
    video = entries.pop(f"{tmp_path.name}/video.mp4")
    assert video["reason"] == "unsupported-file-type" and video["hint"] == REASON_HINTS["unsupported-file-type"]
    assert entries == {}
    assert {f.label.class_name for f in labelled} == {"synthetic_low", "synthetic_high", "real_low", "real_normal", "real_exposure"}


def _labelled(raw_export: Path) -> list[LabelledFile]:
    return list_and_label(raw_export, list_raw_files(raw_export), make_labeler("folders", raw_export), {})


def test_split_files_keeps_poses_together_and_is_reproducible(raw_export):
    labelled = _labelled(raw_export)
    ordered = split_files(labelled, (0.5, 0.25, 0.25), seed=4)
    assert ordered == split_files(list(reversed(labelled)), (0.5, 0.25, 0.25), seed=4)
    assert sorted(t.relative for t in ordered) == sorted(f.relative for f in labelled)
    split_of_pair: dict[str, set[str]] = {}
    for task in ordered:
        split_of_pair.setdefault(task.label.pair_id, set()).add(task.split)
    assert all(len(splits) == 1 for splits in split_of_pair.values())
    splits = [t.split for t in ordered]
    assert splits == sorted(splits, key=["train", "validation", "test"].index)  # written split by split
    with pytest.raises(dataclasses.FrozenInstanceError):
        ordered[0].split = "test"  # a task is made once, with its split


def test_process_then_write_then_report(raw_export, tmp_path):
    ordered = split_files(_labelled(raw_export), (0.5, 0.25, 0.25), seed=4)
    options = BuildOptions(size=SIZE)
    outcomes = [(task, process_file(task, options)) for task in ordered]
    assert all(isinstance(f.row, DatasetRow) for _, o in outcomes for f in o.frames)
    entries: dict[str, dict] = {}
    written = write_outcomes(outcomes, tmp_path, entries, grid_pairs=grid_pairs(ordered))
    assert written.frames == 20 and len(written.digests) == 20 and set(entries) == {t.relative for t in ordered}
    assert all(len(images) == 4 for images in written.grid.values())  # the same four poses in every class
    rows = sum(pq.read_metadata(tmp_path / name).num_rows for names in written.shards.values() for name in names)
    assert rows == 20
    summary = summarise(tmp_path, tmp_path / "r.json", written.counts, entries, "f" * 64)
    write_report(tmp_path / "r.json", entries, summary, "folders")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["completed"] and report["totals"]["frames_written"] == 20


def test_write_outcomes_records_skips_and_stops_under_strict(tmp_path):
    task = FileTask("real/low/a.dcm", "/nowhere/a.dcm", "train", LabelInfo("real_low"))
    skipped = FileOutcome(task.relative, frames=[FrameOutcome(0, "skipped", "field-too-small", "field is 90 pixels")], num_frames=1)
    entry = file_entry(task, skipped)
    assert entry["status"] == "skipped" and entry["frames"][0]["hint"].startswith("build with --allow-upscale")
    entries: dict[str, dict] = {}
    with pytest.raises(BuildError, match=r"--strict: real/low/a.dcm frame 0: field is 90 pixels \[field-too-small\]"):
        write_outcomes([(task, skipped)], tmp_path / "strict", entries, strict=True)
    assert entries[task.relative]["frames"][0]["reason"] == "field-too-small"


def test_a_file_whose_frames_partly_fail_is_partial(tmp_path, write_dicom):
    frames = np.stack([skull_like(256, 256, seed=1), np.full((256, 256), 0.3, np.float32), skull_like(256, 256, seed=2)])
    path = write_dicom(tmp_path / "real" / "low" / "cine.dcm", frames, WindowCenter=2048, WindowWidth=4096)
    task = FileTask("real/low/cine.dcm", str(path), "train", LabelInfo("real_low"))
    outcome = process_file(task, BuildOptions(size=SIZE, frames="all"))
    entry = file_entry(task, outcome)
    assert entry["status"] == "partial" and [f["status"] for f in entry["frames"]] == ["written", "skipped", "written"]
    assert entry["frames"][1]["reason"] == "blank-after-windowing"

