"""`xdigiskull phantom-benchmark`: held-out phantom heads as a dataset of their own, read back by load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xdigiskull.phantom_benchmark import (
    PhantomBenchmarkConfig, build_phantom_benchmark, default_lineage, lineage_training_heads, parse_heads,
)

SIZE = 128


@pytest.fixture(scope="module")
def benchmark_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomBenchmarkConfig]:
    out = tmp_path_factory.mktemp("phantom_benchmark") / "x-digiskull-phantom"
    config = PhantomBenchmarkConfig(out=str(out), heads="301", views=2, size=SIZE, detector=384)
    build_phantom_benchmark(config)
    return out, config


def test_load_dataset_gives_landmarks_masks_and_ground_truth_of_held_out_heads(benchmark_dataset) -> None:
    from datasets import load_dataset

    out, config = benchmark_dataset
    ds = load_dataset(str(out), split="test")
    assert len(ds) == 10  # 2 poses x 5 classes
    assert {"landmarks", "bone_mask", "ground_truth", "pixel_spacing_mm"} <= set(ds.column_names)
    heads = {int(pair.split("-")[0].lstrip("p")) for pair in ds["pair_id"]}
    assert heads == {301}
    assert not heads & set(config.excluded_heads)  # no training head, of the model or of the detectors
    assert set(lineage_training_heads(default_lineage())) <= set(config.excluded_heads)
    names = ds.features["label"].names
    for row in ds:
        assert len(row["landmarks"]["name"]) == 19 and all(row["landmarks"]["visible"])
        truth = np.asarray(row["ground_truth"], np.float64) / 65535.0
        image = np.asarray(row["image"], np.float64) / 255.0
        assert truth.shape == image.shape == (SIZE, SIZE)
        # the noise-free render is the same pose: it correlates with the acquisition far more than with a shifted copy
        same = np.corrcoef(truth.ravel(), image.ravel())[0, 1]
        shifted = np.corrcoef(np.roll(truth, SIZE // 4, axis=1).ravel(), image.ravel())[0, 1]
        assert same > 0.8 and same > shifted + 0.2, names[row["label"]]
        if names[row["label"]].startswith("real"):
            assert 0.3 < row["pixel_spacing_mm"] < 3.0  # the build's output-grid spacing, not a guess


def test_two_benchmark_folders_with_equal_settings_load_their_own_rows(benchmark_dataset, tmp_path) -> None:
    """`datasets` caches a local folder under a hash of its card's YAML: equal cards over different data must not
    share a cache (the card carries the shards' size), or the second folder would load the first one's rows."""
    from datasets import load_dataset

    first, _ = benchmark_dataset
    second = tmp_path / "x-digiskull-phantom"  # same folder name, same settings, another head
    build_phantom_benchmark(PhantomBenchmarkConfig(out=str(second), heads="302", views=2, size=SIZE, detector=384))
    assert {pair[:4] for pair in load_dataset(str(first), split="test")["pair_id"]} == {"p301"}
    assert {pair[:4] for pair in load_dataset(str(second), split="test")["pair_id"]} == {"p302"}


def test_the_card_states_protocol_excluded_heads_and_loads(benchmark_dataset) -> None:
    out, config = benchmark_dataset
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "config_name: default" in card
    assert "## Heads that must not be used for training" in card and "201-206" in card
    assert "1, 3-6, 8-10" in card  # the shipped model's training heads, from its lineage
    assert "## Protocol" in card and "## Results" in card and "$" not in card.replace("```bash", "")


def test_training_heads_are_refused() -> None:
    with pytest.raises(ValueError, match="training heads"):
        PhantomBenchmarkConfig(out="x", heads="3")  # a training head of the shipped model
    with pytest.raises(ValueError, match="training heads"):
        PhantomBenchmarkConfig(out="x", heads="201")  # a detector training head
    with pytest.raises(ValueError, match="--heads"):
        parse_heads("3-1")


def test_results_go_into_the_card(benchmark_dataset, tmp_path: Path) -> None:
    from xdigiskull.phantom_benchmark import render_phantom_card
    from datasets import load_dataset

    out, config = benchmark_dataset
    ds = load_dataset(str(out), split="test")
    table = "| Method | MRE (mm) ↓ |\n|---|---:|\n| (a) synthetic_low as is | 9.1 [8.0, 10.2] |"
    card = render_phantom_card(ds, config.heads, config.views, SIZE, config.excluded_heads,
                               config.detector_training_heads, table, num_bytes=1)
    assert table in card
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"table_markdown": table}))
    assert PhantomBenchmarkConfig(out="x", heads="301", results=str(results)).results == str(results)


def test_the_command_is_registered() -> None:
    from typer.testing import CliRunner

    from xdigiskull.cli import app

    result = CliRunner().invoke(app, ["phantom-benchmark", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--heads" in result.output and "--lineage" in result.output
    refused = CliRunner().invoke(app, ["phantom-benchmark", "--heads", "4", "--out", "unused"])
    assert refused.exit_code != 0 and "training heads" in refused.output
