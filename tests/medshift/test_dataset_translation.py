"""`medshift translate --dataset`: a translated dataset in the Hub layout, with provenance and a card; resumable
after a kill (byte-identical), and the same bytes from 2 processes as from 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import Image, load_dataset
from typer.testing import CliRunner

from medshift.cli import app
from medshift.dataset_translation import WORK_FOLDER
from medshift.model_location import folder_revision
from xdigiskull.classes import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
# 40 rows cycle through the five classes: 8 synthetic_high rows, 3 shards of at most 3 rows
SETTINGS = ["--split", "train", "--source", "synthetic_high", "--target", "real_normal", "--tau", "0.6", "--steps", "4",
            "--rows-per-shard", "3", "--batch-size", "2"]  # fmt: skip


def translate_args(dataset: Path, model: str, out: Path, *extra: str) -> list[str]:
    return ["translate", "--dataset", str(dataset), "--model", model, "--out", str(out), *SETTINGS, *extra]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a finished dataset folder (the hidden work folder aside)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and WORK_FOLDER not in p.parts}


@pytest.fixture(scope="module")
def translated(tiny_dataset, saved_tiny_pipeline, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("translated") / "x-digiskull-real"
    result = runner.invoke(app, translate_args(tiny_dataset, saved_tiny_pipeline, out))
    assert result.exit_code == 0, result.output
    return out


def test_translated_dataset_keeps_the_pose_and_states_its_provenance(translated, tiny_dataset, saved_tiny_pipeline, tmp_path):
    source = load_dataset(str(tiny_dataset), split="train", cache_dir=str(tmp_path / "cache")).cast_column("image", Image(decode=False))
    source_rows = [row for row in source if row["label"] == CLASS_NAMES.index("synthetic_high")]
    assert sorted(p.name for p in (translated / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    rows = load_dataset(str(translated), split="train", cache_dir=str(tmp_path / "cache"))  # not a previous run's
    assert len(rows) == len(source_rows) == 8
    assert rows.features["label"].names == list(CLASS_NAMES)
    revision = folder_revision(saved_tiny_pipeline)
    for index, (row, original) in enumerate(zip(rows, source_rows)):
        assert row["label"] == CLASS_NAMES.index("real_normal") and (row["domain"], row["dose"]) == ("real", "normal")
        for name in ("pair_id", "view", "primary_angle", "secondary_angle", "source_id", "frame_index"):
            assert row[name] == original[name], name
        assert row["source_label"] == "synthetic_high" and row["model_id"] == saved_tiny_pipeline
        assert row["model_revision"] == revision and row["seed"] == index
        assert row["tau"] == pytest.approx(0.6) and row["num_inference_steps"] == 4
        assert row["image"].size == (64, 64) and row["image"].mode == "L"
    assert rows[0]["image"].tobytes() != source_rows[0]["image"]["bytes"]

    card = (translated / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["dataset_info"]["splits"][0]["num_examples"] == 8
    assert {"name": "model_revision", "dtype": "string"} in header["dataset_info"]["features"]
    assert revision in card and "`synthetic_high`" in card and "`real_normal`" in card and "| tau | `0.6` |" in card
    assert tiny_dataset.name in card  # names the (local) source
    assert not (translated / WORK_FOLDER / "train-00000.parquet").exists()


def test_a_rerun_of_a_finished_translation_changes_nothing(translated, tiny_dataset, saved_tiny_pipeline):
    before = folder_bytes(translated)
    result = runner.invoke(app, translate_args(tiny_dataset, saved_tiny_pipeline, translated))
    assert result.exit_code == 0, result.output
    assert folder_bytes(translated) == before


def test_other_settings_in_the_same_folder_are_refused(translated, tiny_dataset, saved_tiny_pipeline):
    result = runner.invoke(app, [*translate_args(tiny_dataset, saved_tiny_pipeline, translated), "--seed", "7"])
    assert result.exit_code == 2 and "other settings" in result.output


def test_bad_dataset_arguments_are_refused(tiny_dataset, saved_tiny_pipeline, tmp_path):
    out = str(tmp_path / "o")
    result = runner.invoke(app, ["translate", "--dataset", str(tiny_dataset), "--target", "real_normal", "--out", out, "--model", saved_tiny_pipeline])
    assert result.exit_code == 2 and "--source is required" in result.output
    result = runner.invoke(app, ["translate", str(tiny_dataset), "--dataset", str(tiny_dataset), "--source", "synthetic_low", "--target", "real_normal", "--out", out])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(app, translate_args(tiny_dataset, saved_tiny_pipeline, tmp_path / "o", "--split", "test"))
    assert result.exit_code == 2 and "test" in result.output


def cli_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_a_killed_translation_resumes_byte_identical(translated, tiny_dataset, saved_tiny_pipeline, tmp_path):
    out = tmp_path / "killed"
    # one row per shard and 40 steps (a third of a second a row): the kill lands after the first shard, before the last
    args = translate_args(tiny_dataset, saved_tiny_pipeline, out)
    slow = [*args[: args.index("--rows-per-shard")], "--rows-per-shard", "1", "--batch-size", "1"]
    slow[slow.index("--steps") + 1] = "40"
    process = subprocess.Popen([sys.executable, "-m", "medshift.cli", *slow], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((out / WORK_FOLDER).glob("train-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(p.name for p in (out / WORK_FOLDER).glob("train-*.parquet"))
    assert 1 <= len(done) < 8 and not (out / "README.md").exists()

    result = runner.invoke(app, slow)  # the same command again: resumes
    assert result.exit_code == 0, result.output
    uninterrupted = tmp_path / "uninterrupted"
    result = runner.invoke(app, [str(uninterrupted) if a == str(out) else a for a in slow])
    assert result.exit_code == 0, result.output
    assert folder_bytes(out) == folder_bytes(uninterrupted) and len(folder_bytes(out)) == 9  # 8 shards and the card


def test_two_processes_write_the_same_dataset_as_one(translated, tiny_dataset, saved_tiny_pipeline, tmp_path):
    # torchrun plus ACCELERATE_USE_CPU is what `accelerate launch --cpu` sets up (its CPU launcher needs MPI)
    out = tmp_path / "two"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--module",
        "medshift.cli", *translate_args(tiny_dataset, saved_tiny_pipeline, out),
    ]  # fmt: skip
    completed = subprocess.run(command, env={**cli_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert folder_bytes(out) == folder_bytes(translated)
