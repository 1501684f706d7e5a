"""The builder under faults: a worker that dies, a build that is killed, copies, blank pages, splits that
stay put. Every death here is real (a signal to a process), never a raised exception."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pydicom
import pydicom.data
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless
from synthetic import skull_like, write_dicom
from typer.testing import CliRunner

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.cli import app
from xdigiskull.processing import BLANK_FRACTION

SIZE = 32

# A pixel-data decoder plugin (pydicom's plugin interface) that kills its own process when it meets a planted
# frame. pydicom tries its own RLE decoders first; they fail on the planted bytes, and this one is tried last.
DYING_PLUGIN = '''
import os
import signal

from pydicom.pixels.decoders import RLELosslessDecoder
from pydicom.uid import RLELossless

DECODER_DEPENDENCIES = {RLELossless: ()}


def is_available(uid):
    return uid == RLELossless


def decode_pixel_data(src, runner):
    if src.startswith(b"DIE-SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    if src.startswith(b"DIE-ABORT"):
        os.abort()
    raise ValueError("not a planted frame")


RLELosslessDecoder.add_plugin("xdigiskull-test-dying", (__name__, "decode_pixel_data"))
'''


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(folder: Path) -> list[dict]:
    rows = []
    for shard in sorted((folder / "data").glob("*.parquet")):
        table = pq.read_table(shard, columns=["source_id", "frame_index"]).to_pylist()
        rows += [{**row, "split": shard.name.split("-", 1)[0]} for row in table]
    return rows


def _planted_dicom(path: Path, marker: bytes) -> None:
    """An RLE DICOM whose one frame is `marker`: no real decoder can read it, the dying plugin acts on it."""
    write_dicom(path, skull_like(64, 64, seed=99))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([marker + b"\0" * (64 - len(marker))])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def dying_plugin(tmp_path, monkeypatch) -> str:
    """The module name of the dying decoder plugin, importable here and in spawned workers."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "xdigiskull_dying_decoder.py").write_text(DYING_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))  # spawned workers start with this sys.path
    return "xdigiskull_dying_decoder"


@pytest.fixture(scope="module")
def reference_of_raw_export(raw_export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=raw_export, out=out, size=SIZE, seed=2, num_proc=1), progress=False)
    return out


@pytest.mark.parametrize(
    "marker, death, num_proc", [(b"DIE-SIGKILL", "SIGKILL", 2), (b"DIE-ABORT", "SIGABRT", 2), (b"DIE-SIGKILL", "SIGKILL", 1)]
)
def test_a_dying_worker_costs_only_its_file(
    raw_export, reference_of_raw_export, dying_plugin, tmp_path, marker, death, num_proc
):
    raw = tmp_path / "raw"
    shutil.copytree(raw_export, raw)
    _planted_dicom(raw / "azurion" / "low" / "zz-planted.dcm", marker)
    config = BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, seed=2, num_proc=num_proc, decoder_plugins=dying_plugin)
    summary = build_dataset(config, progress=False)  # 21 files: a pool of `num_proc` workers, even of one

    entry = json.loads(summary.report_path.read_text())["files"]["azurion/low/zz-planted.dcm"]
    assert entry["reason"] == "worker-died" and f"killed by signal {death}" in entry["message"]
    assert summary.skip_reasons == {"worker-died": 1} and summary.frames_written == 20
    assert _folder_bytes(tmp_path / "out") == _folder_bytes(reference_of_raw_export)


def _multi_frame_raw(root: Path, files: int = 32, frames: int = 12) -> Path:
    for index in range(files):
        stack = np.stack([skull_like(96, 96, seed=1000 * index + f) for f in range(frames)])
        write_dicom(root / "azurion" / ("low", "normal", "exposure")[index % 3] / f"run{index:03d}.dcm", stack)
    return root


@pytest.fixture(scope="module")
def multi_frame_raw(tmp_path_factory) -> Path:
    return _multi_frame_raw(tmp_path_factory.mktemp("multi") / "raw")


@pytest.fixture(scope="module")
def multi_frame_reference(multi_frame_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multi-reference") / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=multi_frame_raw, out=out, size=SIZE, frames="all", num_proc=1), progress=False)
    return out


def _journal_chunks(out: Path) -> int:
    return len(list((out.parent / f".{out.name}.partial" / "journal").glob("chunk-*.pkl")))


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_worker_killed_from_outside_loses_nothing(multi_frame_raw, multi_frame_reference, tmp_path):
    out = tmp_path / "out"
    config = BuildConfig(raw_dir=multi_frame_raw, out=out, size=SIZE, frames="all", num_proc=2)
    result: dict = {}
    builder = threading.Thread(target=lambda: result.update(summary=build_dataset(config, progress=False)))
    builder.start()
    _wait_for(lambda: _journal_chunks(out) >= 1 or not builder.is_alive())
    workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
    assert builder.is_alive() and workers, "the build ended before a worker could be killed"
    workers[0].send_signal(signal.SIGKILL)
    builder.join()
    summary = result["summary"]
    assert summary.skip_reasons == {} and summary.frames_written == 32 * 12  # the killed worker's files were read again
    assert _folder_bytes(out) == _folder_bytes(multi_frame_reference)


def test_resume_continues_a_killed_build_and_only_when_asked(multi_frame_raw, multi_frame_reference, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "xdigiskull.cli", "build", str(multi_frame_raw), "--out", str(out)]
    command += ["--size", str(SIZE), "--frames", "all", "--num-proc", "1"]
    process = subprocess.Popen(command, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: _journal_chunks(out) >= 2 or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = tmp_path / ".out.partial"
    done = _journal_chunks(out)
    assert not out.exists() and 2 <= done < 4, "the build was not killed half-way"
    assert (partial / "labels.pkl").is_file()  # the labelling pass (a header read per file) is kept too
    kept = tmp_path / "kept"
    shutil.copytree(partial, kept)

    config = BuildConfig(raw_dir=multi_frame_raw, out=out, size=SIZE, frames="all", num_proc=2, resume=True)  # workers run while the journal is read
    summary = build_dataset(config, progress=False)
    assert summary.resumed_files == 8 * done  # files of the journalled chunks, not read again
    assert _folder_bytes(out) == _folder_bytes(multi_frame_reference) and not partial.exists()

    # a journalled chunk is taken as it is: alter one, and only a resumed build shows it
    shutil.rmtree(out)
    shutil.copytree(kept, partial)
    chunk = partial / "journal" / "chunk-0000000.pkl"
    outcomes = pickle.loads(chunk.read_bytes())
    outcomes[0].frames, outcomes[0].reason, outcomes[0].message = [], "corrupt-image", "altered in the journal"
    chunk.write_bytes(pickle.dumps(outcomes))
    fresh = build_dataset(replace(config, resume=False), progress=False)
    assert _folder_bytes(out) == _folder_bytes(multi_frame_reference) and fresh.skip_reasons == {} and fresh.resumed_files == 0
    shutil.copytree(kept, partial)
    chunk.write_bytes(pickle.dumps(outcomes))
    resumed = build_dataset(config, progress=False)
    assert resumed.skip_reasons == {"corrupt-image": 1}


def test_copies_are_written_once_and_never_in_two_splits(tmp_path):
    raw = tmp_path / "raw"
    uid = pydicom.uid.generate_uid()
    image = skull_like(128, 128, seed=7)
    write_dicom(raw / "real" / "low" / "instance.dcm", image, SOPInstanceUID=uid)
    write_dicom(raw / "real" / "normal" / "instance-rle.dcm", image, syntax=RLELossless, SOPInstanceUID=uid)  # one instance, two encodings
    write_dicom(raw / "real" / "low" / "other.dcm", skull_like(128, 128, seed=8))
    write_dicom(raw / "real" / "exposure" / "other-again.dcm", skull_like(128, 128, seed=8))  # same pixels, another UID
    for index in range(12):
        write_dicom(raw / "real" / "low" / f"pose{index}.dcm", skull_like(128, 128, seed=20 + index))
    summary = build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, num_proc=1), progress=False)

    files = json.loads(summary.report_path.read_text())["files"]
    assert summary.skip_reasons == {"duplicate-of": 2} and summary.frames_written == 14
    for first, copy in (("real/low/instance.dcm", "real/normal/instance-rle.dcm"), ("real/low/other.dcm", "real/exposure/other-again.dcm")):
        kept, dropped = sorted((first, copy), key=lambda name: files[name]["frames"][0]["status"] != "written")
        frame = files[dropped]["frames"][0]
        assert frame["reason"] == "duplicate-of" and frame["duplicate_of"] == files[kept]["frames"][0]["id"]
    rows = _rows(tmp_path / "out")
    assert len({(r["source_id"], r["frame_index"]) for r in rows}) == len(rows) == 14
    splits_of: dict[str, set] = {}
    for row in rows:
        splits_of.setdefault(row["source_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert "| duplicates dropped | `2` |" in (tmp_path / "out" / "README.md").read_text()


def test_blank_pages_are_skipped_and_faint_xrays_kept(tmp_path, monkeypatch):
    import cv2

    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    page = np.full((256, 256), 250, np.uint8)
    page[rng.random((256, 256)) < 0.01] = 20  # specks: 1 % of the pixels
    (raw / "synthetic" / "low").mkdir(parents=True)
    cv2.imwrite(str(raw / "synthetic" / "low" / "scanned-page.png"), page)
    # a faint, low-dose X-ray: the anatomy spans 8 grey levels, under quantum noise of 2 levels
    anatomy = 8 * (skull_like(256, 256, seed=3) - 0.1) / 0.8
    faint = np.round(120 + anatomy + 2 * rng.standard_normal((256, 256))).astype(np.uint8)
    cv2.imwrite(str(raw / "synthetic" / "low" / "faint.png"), faint)
    (raw / "real" / "low").mkdir(parents=True)
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), raw / "real" / "low" / "ct.dcm")  # a real CT slice
    config = BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, allow_upscale=True, num_proc=1, split="1,0,0")
    summary = build_dataset(config, progress=False)

    files = json.loads(summary.report_path.read_text())["files"]
    blank = files["synthetic/low/scanned-page.png"]["frames"][0]
    assert blank["reason"] == "blank" and float(blank["message"].split("%")[0]) >= 100 * BLANK_FRACTION
    assert files["synthetic/low/faint.png"]["status"] == "written" and files["real/low/ct.dcm"]["status"] == "written"
    assert summary.skip_reasons == {"blank": 1}
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["inspect", "out"])
    assert result.exit_code == 0 and "blank: 1" in result.output


def test_a_pose_stays_in_its_split_when_files_are_added(raw_export, reference_of_raw_export, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_export, raw)
    for pose in range(6):  # a new head's exports, and files that cannot be read
        write_dicom(raw / "azurion" / "low" / f"head2-pose{pose}.dcm", skull_like(288, 288, seed=500 + pose))
    (raw / "simulator" / "low" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (raw / "simulator" / "high" / "empty.png").write_bytes(b"")
    build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, seed=2, num_proc=1), progress=False)

    before = {(r["source_id"], r["frame_index"]): r["split"] for r in _rows(reference_of_raw_export)}
    after = {(r["source_id"], r["frame_index"]): r["split"] for r in _rows(tmp_path / "out")}
    assert len(after) == len(before) + 6
    assert {key: after[key] for key in before} == before


def test_an_empty_split_is_named_with_what_to_do(raw_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["build", str(raw_export), "--size", str(SIZE), "--num-proc", "1", "--split", "0.96,0.02,0.02", "--seed", "0"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "x-digiskull.report.json").read_text())["totals"]
    empty = [split for split, counts in summary["counts"].items() if not sum(counts.values())]
    assert empty and len(summary["warnings"]) == len(empty)
    for split in empty:
        assert f"warning: split '{split}' is empty" in result.output and "--split" in result.output


def test_two_builds_into_one_folder_do_not_mix(raw_export, tmp_path):
    import fcntl

    from xdigiskull.build import BuildError

    work = tmp_path / ".out.partial"
    work.mkdir()
    with open(work / "lock", "w") as held:  # another build's lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BuildError, match="another build is writing"):
            build_dataset(BuildConfig(raw_dir=raw_export, out=tmp_path / "out", size=SIZE, num_proc=1), progress=False)
    assert work.is_dir() and not (tmp_path / "out").exists()


def test_strict_builds_leave_copies_out_without_failing(tmp_path):
    raw = tmp_path / "raw"
    for name in ("a.dcm", "copy-of-a.dcm"):
        write_dicom(raw / "real" / "low" / name, skull_like(128, 128, seed=1), SOPInstanceUID="1.2.3.4.5")
    summary = build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, num_proc=1, strict=True), progress=False)
    assert summary.frames_written == 1 and summary.skip_reasons == {"duplicate-of": 1}
