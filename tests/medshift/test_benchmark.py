"""`medshift benchmark`: the ISBI figures and statistics, the detector, and a tiny end-to-end run on phantom data."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from medshift.benchmark.detector import DetectorRecipe, predict, prepare_image, train_detector
from medshift.benchmark.protocol import differ, gap_share, landmark_figures, radial_errors, seed_interval
from medshift.benchmark.run import BenchmarkConfig, run_benchmark, write_benchmark


def test_radial_errors_use_each_images_spacing_and_skip_invisible_landmarks() -> None:
    truth = np.zeros((2, 2, 2))
    predicted = np.array([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [100.0, 100.0]]])
    visible = np.array([[True, True], [True, False]])
    errors = radial_errors(predicted, truth, visible, np.array([0.5, 2.0]))
    assert errors.tolist() == [2.5, 0.5, 4.0]
    figures = landmark_figures(errors)
    assert figures["mre_mm"] == pytest.approx(7.0 / 3)
    assert figures["sdr_2mm"] == pytest.approx(100 / 3) and figures["sdr_2.5mm"] == pytest.approx(200 / 3)
    assert figures["sdr_4mm"] == 100.0


def test_seed_interval_is_the_student_t_interval_and_contains_the_mean() -> None:
    values = [3.1, 3.5, 2.9, 3.3]
    interval = seed_interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / math.sqrt(4)
    assert interval["mean"] == pytest.approx(np.mean(values))
    assert interval["low"] == pytest.approx(np.mean(values) - half) and interval["high"] == pytest.approx(np.mean(values) + half)
    assert interval["low"] < interval["mean"] < interval["high"]
    with pytest.raises(ValueError, match="2 seeds"):
        seed_interval([1.0])
    assert differ({"low": 1, "high": 2}, {"low": 2.5, "high": 3}) and not differ({"low": 1, "high": 2.6}, {"low": 2.5, "high": 3})


def test_gap_share() -> None:
    assert gap_share(identity=6.0, condition=4.0, oracle=2.0) == 0.5  # half of the 4 mm gap closed
    assert gap_share(6.0, 6.0, 2.0) == 0.0 and gap_share(6.0, 2.0, 2.0) == 1.0
    assert gap_share(6.0, 7.0, 2.0) < 0  # worse than the untranslated images
    assert math.isnan(gap_share(3.0, 2.0, 3.0))


def _blobs(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with two bright discs at random places: landmark 0 the big one, landmark 1 the small one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images, points = [], []
    for _ in range(count):
        centres = rng.uniform(0.2 * size, 0.8 * size, (2, 2))
        image = 0.1 * rng.random((size, size))
        for (x, y), radius in zip(centres, (size / 10, size / 20)):
            image[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 1.0
        images.append(image.astype(np.float32))
        points.append(centres)
    return np.stack(images), np.asarray(points, np.float32)


def test_the_detector_learns_to_beat_a_constant_guess() -> None:
    size = 64
    train_images, train_points = _blobs(48, size, 0)
    test_images, test_points = _blobs(12, size, 1)
    recipe = DetectorRecipe(input_size=size, steps=120, batch_size=8, width=8, rotation_deg=5, threads=1)
    prepared = np.stack([prepare_image(image, size) for image in train_images])
    model = train_detector(prepared, train_points, np.ones(train_points.shape[:2], bool), recipe, seed=0)
    predicted = predict(model, np.stack([prepare_image(image, size) for image in test_images]), size)
    visible = np.ones(test_points.shape[:2], bool)
    learned = radial_errors(predicted, test_points, visible, np.ones(len(test_points))).mean()
    constant = radial_errors(np.broadcast_to(train_points.mean(0), test_points.shape), test_points, visible,
                             np.ones(len(test_points))).mean()
    assert learned < 0.5 * constant, (learned, constant)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchmarkConfig, dict]:
    """The benchmark end to end at toy sizes: 1 training head x 2 poses, 1 test head x 2 poses, 3 seeds."""
    work = tmp_path_factory.mktemp("benchmark")
    config = BenchmarkConfig(out=str(work / "out"), work=str(work / "work"), train_heads="201", train_views=2,
                             test_heads="301", test_views=2, phantom_detector=384, size=256, seeds="0,1,2",
                             input_size=32, train_steps=8, width=4, steps=4, processing_resolution=128)
    results = run_benchmark(config, log=lambda _: None)
    write_benchmark(results, Path(config.out))
    return config, results


def test_tiny_benchmark_end_to_end(tiny_run) -> None:
    config, results = tiny_run
    keys = [c["key"] for c in results["conditions"]]
    assert keys == ["identity", "medshift_0.6", "medshift_0.45", "medshift_0.3", "sdedit_0.6", "sdedit_0.45",
                    "sdedit_0.3", "oracle"]
    assert results["test"]["heads"] == [301] and results["train"]["heads"] == [201]
    assert results["test"]["images"] == 2 and results["test"]["visible"] == 2 * 19
    assert 0.3 < results["test"]["pixel_spacing_mm"] < 3.0
    # SDEdit got MedShift's network evaluations at every tau
    for tau in ("0.6", "0.45", "0.3"):
        assert results["made"][f"sdedit_{tau}"]["network_evaluations"] == results["made"][f"medshift_{tau}"]["network_evaluations"] > 0
    for key in keys:
        figures = results["per_seed"][key]
        assert len(figures) == 3
        interval = results["summary"][key]["mre_mm"]
        assert interval["low"] <= interval["mean"] <= interval["high"]
        assert interval["mean"] == pytest.approx(np.mean([f["mre_mm"] for f in figures]))
    # the gap share is computed per seed from the same seed's (a) and (d)
    a, d = ([f["mre_mm"] for f in results["per_seed"][k]] for k in ("identity", "oracle"))
    shares = [(x - f["mre_mm"]) / (x - y) for x, f, y in zip(a, results["per_seed"]["medshift_0.45"], d)]
    assert results["summary"]["medshift_0.45"]["gap_closed"]["mean"] == pytest.approx(np.mean(shares))
    # image metrics beside the downstream figures, ranked over the six translated rows
    rows = results["image_metrics"]["rows"]
    assert set(rows) == set(keys) - {"oracle"}
    assert rows["identity"]["ssim"] == pytest.approx(1.0)
    assert all(rows[k]["average_rank"] is not None for k in keys[1:-1])
    report = (Path(config.out) / "report.md").read_text(encoding="utf-8")
    assert report.count("\n| (") == 8 and "Gap closed" in report and "SDR 2.5 mm" in report


def test_translations_are_cached(tiny_run) -> None:
    config, results = tiny_run
    again = run_benchmark(replace(config, seeds=[0, 1], image_metrics=False), log=lambda _: None)
    assert all(again["made"][k]["translated"] == 0 and again["made"][k]["cached"] == 2
               for k in again["made"] if k.startswith(("medshift", "sdedit")))
    assert again["per_seed"]["oracle"][0] == results["per_seed"]["oracle"][0]  # same seed, same recipe, same figures


def test_training_heads_of_the_model_are_refused_as_test_heads(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="share heads"):
        BenchmarkConfig(train_heads="201-202", test_heads="202", work=str(tmp_path))
    with pytest.raises(ValueError, match="at least 2"):
        BenchmarkConfig(seeds="0", work=str(tmp_path))


def test_evaluate_reads_the_benchmark_datasets_noise_free_ground_truth(tiny_run) -> None:
    from medshift.evaluate import EvaluateConfig, load_evaluation_data, paired_references

    config, results = tiny_run
    dataset = results["config"]["dataset"]  # the phantom benchmark dataset the run built (a folder)
    data = load_evaluation_data(dataset, "test", "synthetic_low", "real_normal", None)
    assert set(data.truth_by_pair) == set(data.target_by_pair) and len(data.truth_by_pair) == 2
    references, origin = paired_references(EvaluateConfig(model=config.model, out="unused", dataset=dataset), data)
    assert "ground_truth" in origin and all(r is not None for r in references)
    for pair, truth in data.truth_by_pair.items():
        acquired = data.target_by_pair[pair]
        # the noise-free render of the pose, not the noisy acquisition itself, yet the same anatomy
        assert not np.allclose(truth, acquired, atol=1e-3)
        assert np.corrcoef(truth.ravel(), acquired.ravel())[0, 1] > 0.8


def test_the_command_has_one_option_per_config_field() -> None:
    from typer.testing import CliRunner

    from medshift.cli import app

    result = CliRunner().invoke(app, ["benchmark", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--dataset", "--train-heads", "--test-class", "--taus", "--seeds", "--quick", "--work"):
        assert flag in result.output
    bad = CliRunner().invoke(app, ["benchmark", "--seeds", "0", "--work", "unused"])
    assert bad.exit_code != 0 and "at least 2" in bad.output
