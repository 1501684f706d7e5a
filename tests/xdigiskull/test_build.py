"""End-to-end builds of small raw exports: layout, loading, splits, crops, determinism, robustness, privacy."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from xdigiskull.build import BuildConfig, BuildError, assign_splits, build_dataset
from xdigiskull.classes import CLASS_NAMES
from xdigiskull.cli import app

SIZE = 128  # the fixture's fields are 256 pixels wide


def _load(folder: Path, tmp_path: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(raw_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "x-digiskull"
    summary = build_dataset(BuildConfig(raw_dir=raw_export, out=out, size=SIZE, seed=2), progress=False)
    return out, summary


def test_layout_card_and_report(built):
    out, summary = built
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "assets/sample_grid.png",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
    ]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train-*" in card and "class_label" in card
    assert f"`{summary.fingerprint}`" in card and "${" not in card
    report_path = out.parent / "x-digiskull.report.json"
    assert summary.report_path == report_path and not (out / "x-digiskull.report.json").exists()
    report = json.loads(report_path.read_text())
    assert report["completed"] and report["totals"]["frames_written"] == 20
    assert set(report["files"]) == {f"simulator/{d}/pose{i}.png" for d in ("low", "high") for i in range(4)} | {
        f"azurion/{d}/pose{i}.dcm" for d in ("low", "normal", "exposure") for i in range(4)
    }
    entry = report["files"]["azurion/low/pose0.dcm"]
    assert entry["status"] == "written" and entry["frames_in_file"] == 2 and entry["frames"][0]["status"] == "written"
    grid = cv2.imread(str(out / "assets" / "sample_grid.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape[0] == 5 * 192


def test_load_dataset_features_and_pose_grouping(built, tmp_path):
    out, summary = built
    ds = _load(out, tmp_path)
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features["label"].names == list(CLASS_NAMES)
    assert sum(len(ds[s]) for s in ds) == 20
    pairs = {s: set(ds[s]["pair_id"]) for s in ds}
    assert all(pairs[a].isdisjoint(pairs[b]) for a in pairs for b in pairs if a != b)
    assert all(len(p) >= 1 for p in pairs.values())  # 4 poses at 0.8/0.1/0.1: every split gets one
    for split in ds:
        for pair in pairs[split]:  # all five classes of a pose stay together
            assert sorted(r["label"] for r in ds[split] if r["pair_id"] == pair) == [0, 1, 2, 3, 4]
    row = ds["train"][0]
    assert row["image"].mode == "L" and row["image"].size == (SIZE, SIZE)
    real = next(r for s in ds for r in ds[s] if r["domain"] == "real")
    assert real["kvp"] == pytest.approx(72) and real["frame_time_ms"] == pytest.approx(66.7)
    assert real["pixel_spacing_mm"] == pytest.approx(0.2 * 256 / SIZE)
    assert len(real["source_id"]) == 16 and real["frame_index"] == 0
    assert summary.counts["train"]["real_low"] + summary.counts["validation"]["real_low"] + summary.counts["test"]["real_low"] == 4
    streamed = next(iter(datasets.load_dataset(str(out), split="test", streaming=True)))
    assert streamed["label"] in range(5)


def test_crops_match_the_exposed_fields(built, raw_export, tmp_path):
    out, _ = built
    table = pq.read_table(sorted((out / "data").glob("*.parquet"))[0]).to_pylist()
    table += [r for p in sorted((out / "data").glob("*.parquet"))[1:] for r in pq.read_table(p).to_pylist()]
    by_key = {(r["label"], r["pair_id"]): r for r in table}
    # simulator: the 256x256 field at (22, 52) of the screen capture
    canvas = cv2.imread(str(raw_export / "simulator" / "high" / "pose1.png"), cv2.IMREAD_UNCHANGED)
    expected = cv2.resize(canvas[22:278, 52:308].astype(np.float32) / 255, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    got = cv2.imdecode(np.frombuffer(by_key[(1, "p1")]["image"]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.abs(got.astype(np.float32) / 255 - expected).max() <= 1 / 255 + 1e-6
    # azurion: the shutter field (rows/columns 16..271); bands would pull the border down to ~0
    got = cv2.imdecode(np.frombuffer(by_key[(2, "p1")]["image"]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert got[0].mean() > 40 and got[:, -1].mean() > 40


def test_image_bytes_are_stored_plain(built):
    out, _ = built
    for shard in (out / "data").glob("*.parquet"):
        metadata = pq.ParquetFile(shard).metadata
        for group in range(metadata.num_row_groups):
            image = metadata.row_group(group).column(0)
            assert image.path_in_schema == "image.bytes"
            # PNG bytes as written: no dictionary, no min/max statistics (which would copy image bytes)
            assert not image.has_dictionary_page and not image.is_stats_set
            assert "PLAIN" in image.encodings and "RLE_DICTIONARY" not in image.encodings


def test_byte_identical_rebuild_and_parallel_build(raw_export, built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_dataset(BuildConfig(raw_dir=raw_export, out=again, size=SIZE, seed=2, num_proc=2), progress=False)
    assert _folder_bytes(again) == _folder_bytes(out)


def test_no_identifier_or_path_in_the_output(built, raw_export):
    out, _ = built
    planted = [
        "Planted^Patient^Name", "PLANTED-PID-4711", "19450508", "Planted General Hospital", "Planted^Doctor",
        "PLANTACC99", "PLANTED STUDY DESCRIPTION", "Planted^Operator", "PLANTSN-31337",
    ]
    import pydicom

    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in sorted(raw_export.rglob("*.dcm"))]
    needles = planted + uids + ["pose0", "azurion/", "simulator/", str(raw_export)]
    blobs = _folder_bytes(out)
    for name, blob in blobs.items():
        for needle in needles:
            assert needle.encode() not in blob, f"{needle!r} found in {name}"
    for shard in (out / "data").glob("*.parquet"):  # and in the decoded values (not only the raw pages)
        text = json.dumps(pq.read_table(shard).drop(["image"]).to_pylist())
        assert not any(n in text for n in needles)


def test_frames_all_and_16_bit(raw_export, tmp_path):
    out = tmp_path / "all16"
    summary = build_dataset(BuildConfig(raw_dir=raw_export, out=out, size=SIZE, frames="all", bit_depth=16), progress=False)
    assert summary.frames_written == 8 + 12 * 2
    ds = _load(out, tmp_path)
    rows = [r for s in ds for r in ds[s] if r["domain"] == "real"]
    assert sorted({r["frame_index"] for r in rows}) == [0, 1]
    image = np.asarray(rows[0]["image"])
    assert image.dtype in (np.uint16, np.int32) and image.max() > 255  # 16-bit PNG (PIL mode I;16 or I)
    assert rows[0]["image"].mode in ("I;16", "I")


@pytest.fixture
def damaged_export(raw_export, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_export, raw)
    (raw / "azurion" / "low" / "notdicom.dcm").write_text("hello")
    good = (raw / "azurion" / "low" / "pose0.dcm").read_bytes()
    (raw / "azurion" / "low" / "truncated.dcm").write_bytes(good[:-5000])
    cv2.imwrite(str(raw / "simulator" / "low" / "black.png"), np.zeros((300, 300), np.uint8))
    cv2.imwrite(str(raw / "simulator" / "low" / "tiny.png"), np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    cv2.imwrite(str(raw / "simulator" / "low" / "small.png"), np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8))
    (raw / "azurion" / "low" / "video.mp4").write_bytes(b"\x00" * 10)
    (raw / "misc").mkdir()
    cv2.imwrite(str(raw / "misc" / "unlabelled.png"), np.zeros((8, 8), np.uint8))
    return raw


def test_damaged_inputs_are_reported_and_skipped(damaged_export, tmp_path):
    summary = build_dataset(BuildConfig(raw_dir=damaged_export, out=tmp_path / "out", size=SIZE), progress=False)
    assert summary.frames_written == 20
    files = json.loads(summary.report_path.read_text())["files"]
    assert files["azurion/low/notdicom.dcm"]["reason"] == "not-dicom"
    assert files["azurion/low/truncated.dcm"]["reason"] == "truncated-pixel-data"
    assert files["simulator/low/black.png"]["frames"][0]["reason"] == "all-black-frame"
    assert files["simulator/low/tiny.png"]["frames"][0]["reason"] == "tiny-image"
    assert files["simulator/low/small.png"]["frames"][0]["reason"] == "field-too-small"
    assert files["azurion/low/video.mp4"]["reason"] == "unsupported-file-type"
    assert files["misc/unlabelled.png"]["reason"] == "no-label"
    assert summary.skip_reasons["not-dicom"] == 1


def test_strict_stops_and_leaves_the_existing_dataset_alone(damaged_export, built, tmp_path):
    out, _ = built
    target = tmp_path / "x-digiskull"
    shutil.copytree(out, target)
    before = _folder_bytes(target)
    with pytest.raises(BuildError, match="--strict"):
        build_dataset(BuildConfig(raw_dir=damaged_export, out=target, size=SIZE, strict=True), progress=False)
    assert _folder_bytes(target) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp folder left behind


def test_assign_splits_is_deterministic_and_follows_the_fractions_on_average():
    groups = [f"g{i}" for i in range(2000)]
    a = assign_splits(groups, (0.8, 0.1, 0.1), seed=1)
    assert a == assign_splits(list(reversed(groups)), (0.8, 0.1, 0.1), seed=1)
    counts = [list(a.values()).count(s) for s in ("train", "validation", "test")]
    assert abs(counts[0] - 1600) < 4 * 18 and abs(counts[1] - 200) < 4 * 14 and abs(counts[2] - 200) < 4 * 14  # binomial spread
    assert a != assign_splits(groups, (0.8, 0.1, 0.1), seed=2)
    assert set(assign_splits(groups[:50], (1.0, 0.0, 0.0), seed=0).values()) == {"train"}


def test_cli_build_then_inspect(raw_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(raw_export), "--size", str(SIZE), "--num-proc", "1", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x-digiskull" / "README.md").is_file() and (tmp_path / "x-digiskull.report.json").is_file()
    ds = datasets.load_dataset("x-digiskull", cache_dir=str(tmp_path / "hf-cache"))  # exactly as a user writes it
    assert sum(len(ds[s]) for s in ds) == 20
    result = runner.invoke(app, ["inspect", "x-digiskull"])
    assert result.exit_code == 0, result.output
    assert "real_exposure" in result.output and (tmp_path / "x-digiskull-samples.png").is_file()
    bad = runner.invoke(app, ["build", str(raw_export), "--bit-depth", "12", "--out", "other"])
    assert bad.exit_code == 1 and "--bit-depth must be 8 or 16" in bad.output



def _noisy_field(side: int, seed: int, ground: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    return np.clip(ground + 0.2 * np.sin(xx / 11.0) + 0.03 * rng.standard_normal((side, side)), 0.05, 0.95)


def test_burned_in_annotation_is_skipped_or_masked(tmp_path, write_dicom):
    raw = tmp_path / "raw"
    write_dicom(raw / "real" / "low" / "flagged.dcm", _noisy_field(160, 0), BurnedInAnnotation="YES", WindowCenter=2048, WindowWidth=4096)
    # text is judged on the 780-pixel scale: a 400-pixel capture with 1-pixel strokes, built at 390. White
    # text on a dark corner, as overlays are: on a mid-grey ground, 1-pixel strokes are found at some
    # positions only, and which ones changed with OpenCV's text rendering (5.0 -> 5.1)
    texted = (_noisy_field(400, 1, ground=0.35) * 255).astype(np.uint8)
    cv2.putText(texted, "R 35", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    (raw / "synthetic" / "low").mkdir(parents=True)
    cv2.imwrite(str(raw / "synthetic" / "low" / "texted.png"), texted)
    cv2.imwrite(str(raw / "synthetic" / "low" / "clean.png"), (_noisy_field(400, 2, ground=0.35) * 255).astype(np.uint8))
    config = BuildConfig(raw_dir=raw, out=tmp_path / "skip", size=390, allow_upscale=True)

    skipped = build_dataset(config, progress=False)
    files = json.loads(skipped.report_path.read_text())["files"]
    assert skipped.frames_written == 1 and skipped.skip_reasons == {"burned-in-annotation": 2}
    assert "BurnedInAnnotation = YES" in files["real/low/flagged.dcm"]["frames"][0]["message"]
    assert "top-left" in files["synthetic/low/texted.png"]["frames"][0]["message"]
    assert files["synthetic/low/clean.png"]["status"] == "written"

    masked = build_dataset(replace(config, out=tmp_path / "mask", mask_burned_in=True), progress=False)
    assert masked.frames_written == 3
    files = json.loads(masked.report_path.read_text())["files"]
    assert any("masked" in w for w in files["synthetic/low/texted.png"]["warnings"])


def test_large_splits_roll_over_to_several_shards_and_empty_splits_are_left_out(raw_export, tmp_path):
    out = tmp_path / "sharded"
    build_dataset(BuildConfig(raw_dir=raw_export, out=out, size=SIZE, split="1,0,0", max_shard_bytes=30_000), progress=False)
    names = sorted(p.name for p in (out / "data").iterdir())
    assert all(n.startswith("train-") for n in names) and len(names) > 1
    assert all(n.endswith(f"-of-{len(names):05d}.parquet") for n in names)
    assert "validation" not in (out / "README.md").read_text().split("---")[1]  # no empty split in the YAML
    ds = _load(out, tmp_path)
    assert list(ds) == ["train"] and len(ds["train"]) == 20


def test_the_build_command_is_generated_from_build_config():
    import dataclasses
    import os

    result = CliRunner().invoke(app, ["build", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "RAW_DIR" in result.output
    for spec in dataclasses.fields(BuildConfig):
        if spec.name != "raw_dir":
            assert f"--{spec.name.replace('_', '-')}" in result.output
    assert BuildConfig(raw_dir=Path(".")).num_proc == (os.cpu_count() or 1)  # one default, for the CLI and Python alike
