"""Builds of real-world inputs: one bad file never stops a build, no blank image is written, and every
input is in the report with a reason (and what to do about it)."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pydicom.data
import pytest
from PIL import Image
from synthetic import full_field_xa, skull_like
from typer.testing import CliRunner

from xdigiskull.build import BuildConfig, BuildError, build_dataset
from xdigiskull.cli import app

SIZE = 128


def _report(summary) -> dict:
    return json.loads(summary.report_path.read_text())


def _images_by_source(out: Path) -> dict[str, np.ndarray]:
    images = {}
    for shard in (out / "data").glob("*.parquet"):
        table = pq.read_table(shard, columns=["image", "source_id"]).to_pylist()
        for row in table:
            images[row["source_id"]] = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
    return images


@pytest.fixture
def with_bad_number_of_frames(raw_export, tmp_path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(raw_export, raw)
    # pydicom's own test file: an RT dose whose NumberOfFrames holds '1A' (an IS value that does not parse)
    shutil.copy(pydicom.data.get_testdata_file("badVR.dcm"), raw / "azurion" / "low" / "badVR.dcm")
    return raw


def test_failure_1_a_number_of_frames_of_1a_is_reported_and_the_build_goes_on(with_bad_number_of_frames, tmp_path):
    # two workers, as `xdigiskull build` runs by default: the error used to escape from the pool
    summary = build_dataset(BuildConfig(raw_dir=with_bad_number_of_frames, out=tmp_path / "out", size=SIZE, num_proc=2), progress=False)
    assert summary.frames_written == 20 and summary.skip_reasons == {"invalid-attribute": 1}
    entry = _report(summary)["files"]["azurion/low/badVR.dcm"]
    assert entry["status"] == "skipped" and entry["reason"] == "invalid-attribute"
    assert "NumberOfFrames '1A'" in entry["message"] and "correct the attribute" in entry["hint"]


def test_strict_stops_at_the_bad_file_and_names_it(with_bad_number_of_frames, tmp_path):
    with pytest.raises(BuildError, match=r"--strict: azurion/low/badVR.dcm: NumberOfFrames '1A'.*\[invalid-attribute\]"):
        build_dataset(BuildConfig(raw_dir=with_bad_number_of_frames, out=tmp_path / "out", size=SIZE, strict=True), progress=False)
    assert not (tmp_path / "out").exists() and not _report_path(tmp_path)["completed"]


def _report_path(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out.report.json").read_text())


def test_failure_4_no_blank_image_is_written(tmp_path, write_dicom):
    raw = tmp_path / "raw"
    anatomy = skull_like(256, 256, seed=4)
    # a sigmoid window this wide shows every pixel at 0.5 +- 0.002: one grey level over the whole frame
    write_dicom(
        raw / "real" / "low" / "sigmoid.dcm", anatomy, shutter=(0, 0, 256, 256), WindowCenter=2048, WindowWidth=1_000_000,
        VOILUTFunction="SIGMOID",
    )
    other = skull_like(256, 256, seed=5)  # another image: the same one twice would be a duplicate
    write_dicom(raw / "real" / "low" / "above.dcm", other, WindowCenter=60_000, WindowWidth=2)  # all black
    write_dicom(raw / "real" / "low" / "flat.dcm", np.full((256, 256), 0.3, np.float32), WindowCenter=1228, WindowWidth=1)
    summary = build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE), progress=False)
    for image in _images_by_source(tmp_path / "out").values():
        low, high = np.percentile(image, (1, 99))
        assert high - low > 0.3 * 255  # the anatomy, not one grey level
    files = _report(summary)["files"]
    assert summary.frames_written == 2
    assert files["real/low/flat.dcm"]["reason"] == "blank-after-windowing"
    for name in ("sigmoid.dcm", "above.dcm"):
        assert any("percentile window" in w for w in files[f"real/low/{name}"]["warnings"])


def _png_bomb(path: Path, side: int = 8192) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(bytes(side + 1)) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def hostile_export(raw_export, tmp_path, write_dicom) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(raw_export, raw)
    low = raw / "azurion" / "low"
    (low / "zero.dcm").write_bytes(b"")
    (low / "folder.dcm").mkdir()  # a folder named like a file: walked as a folder, its files built
    write_dicom(low / "folder.dcm" / "inside.dcm", skull_like(256, 256, seed=7), WindowCenter=2048, WindowWidth=4096)
    os.symlink(low / "loop.dcm", low / "loop.dcm")
    os.symlink(low / "nowhere.dcm", low / "dangling.dcm")
    os.mkfifo(low / "pipe.dcm")
    good = (low / "pose0.dcm").read_bytes()
    (low / "cut.dcm").write_bytes(good[: len(good) // 2])
    big = pydicom.dcmread(low / "pose0.dcm")
    big.Rows = big.Columns = 65535
    big.NumberOfFrames = 1000
    big.save_as(low / "enormous.dcm", enforce_file_format=True)
    _png_bomb(raw / "simulator" / "low" / "bomb.png")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "examples_ybr_color.dcm", "MR_small_bigendian.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), raw / "azurion" / "normal" / name)
    return raw


def test_hostile_inputs_are_refused_with_their_reason_and_the_build_goes_on(hostile_export, tmp_path):
    summary = build_dataset(BuildConfig(raw_dir=hostile_export, out=tmp_path / "out", size=SIZE, allow_upscale=True, num_proc=2), progress=False)
    files = _report(summary)["files"]
    reasons = {name: files[f"azurion/low/{name}"]["reason"] for name in ("zero.dcm", "loop.dcm", "dangling.dcm", "pipe.dcm", "cut.dcm", "enormous.dcm")}
    assert reasons == {
        "zero.dcm": "empty-file",
        "loop.dcm": "unreadable",
        "dangling.dcm": "unreadable",
        "pipe.dcm": "not-a-file",
        "cut.dcm": "truncated-pixel-data",
        "enormous.dcm": "image-too-large",
    }
    assert files["simulator/low/bomb.png"]["reason"] == "image-too-large"
    assert files["azurion/low/folder.dcm/inside.dcm"]["status"] == "written"
    listed = {p.relative_to(hostile_export).as_posix() for p in hostile_export.rglob("*") if not p.is_dir()} - {"manifest.csv"}
    assert set(files) == listed  # every input file is in the report
    for name, entry in files.items():
        reasons_here = [entry.get("reason")] + [f.get("reason") for f in entry.get("frames", [])]
        assert "internal-error" not in reasons_here, (name, entry)
        assert entry["status"] != "skipped" or entry.get("reason") or entry["frames"], name
    assert summary.frames_written >= 20 + 1 + 4  # the good exports, the file in folder.dcm, the real files but the US
    assert summary.skip_reasons["unreadable"] == 2


def test_cli_summary_gives_counts_per_reason_and_inspect_repeats_them(with_bad_number_of_frames, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(with_bad_number_of_frames), "--size", str(SIZE), "--num-proc", "1"])
    assert result.exit_code == 0, result.output
    assert "invalid-attribute: 1" in result.output
    result = runner.invoke(app, ["inspect", "x-digiskull"])
    assert result.exit_code == 0, result.output
    assert "invalid-attribute" in result.output and "1 file(s) or frame(s) skipped" in result.output


def test_a_cine_run_over_the_decoded_pixel_limit_is_built_one_frame_at_a_time(tmp_path, write_dicom, monkeypatch):
    import xdigiskull.reading

    frames = np.stack([skull_like(256, 256, seed=i) for i in range(6)])
    frames[2] = 0.3  # one blank frame among them
    write_dicom(tmp_path / "raw" / "real" / "low" / "cine.dcm", frames, WindowCenter=2048, WindowWidth=4096)
    # the real limit is 64 frames of 1024 x 1024; here it is 3 frames of 256 x 256, so the test stays small
    monkeypatch.setattr(xdigiskull.reading, "MAX_DECODED_PIXELS", 3 * 256 * 256)
    summary = build_dataset(BuildConfig(raw_dir=tmp_path / "raw", out=tmp_path / "out", size=SIZE, frames="all"), progress=False)
    entry = _report(summary)["files"]["real/low/cine.dcm"]
    assert summary.frames_written == 5 and entry["status"] == "partial" and entry["frames_in_file"] == 6
    assert [f["frame"] for f in entry["frames"]] == list(range(6))
    assert entry["frames"][2]["reason"] == "blank-after-windowing"
    assert len({f["id"] for f in entry["frames"] if f["status"] == "written"}) == 1  # one source, one id


def test_the_report_says_which_field_each_written_frame_used(tmp_path, write_dicom):
    # issue 13: a frame without collimation is built from the full frame, and the report says so
    raw = tmp_path / "raw"
    write_dicom(raw / "real" / "normal" / "open.dcm", np.zeros((1024, 1024)), stored=full_field_xa(seed=3))
    write_dicom(raw / "real" / "normal" / "shuttered.dcm", skull_like(256, 256, seed=5), shutter=(16, 16, 240, 240))
    summary = build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE), progress=False)
    files = _report(summary)["files"]
    assert [f["field"] for f in files["real/normal/open.dcm"]["frames"]] == ["full-frame"]
    assert [f["field"] for f in files["real/normal/shuttered.dcm"]["frames"]] == ["shutter-tags"]
