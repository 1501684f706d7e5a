"""`medshift evaluate --phantom-seed` end to end: a real phantom head, a tiny random-weight pipeline, the cached
FID Inception, the reconstruction ceiling, SDEdit at matched network evaluations and a goals file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from typer.testing import CliRunner

from medshift.cli import app
from medshift.evaluate import checkpoint_megabytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The demo architectures, shrunk to a few channels, with random weights (processing at 64 px), and a
    lineage.json that trains on heads 1 and 3."""
    from medshift import FlowMatchODEScheduler, MedShiftPipeline
    from medshift.models import demo_unet_config, kl_vae_config

    torch.manual_seed(0)
    small = {"layers_per_block": 1, "norm_num_groups": 8}
    vae = AutoencoderKL(**{**kl_vae_config(), **small, "block_out_channels": (8, 8, 8, 8)})
    unet = UNet2DModel(**{**demo_unet_config(), **small, "block_out_channels": (8, 16, 16), "attention_head_dim": 8})
    pipe = MedShiftPipeline(vae, unet, FlowMatchODEScheduler(num_inference_steps=4), resolution=64, default_tau=0.3)
    path = tmp_path_factory.mktemp("model") / "medshift-tiny"
    pipe.save_pretrained(path)
    stage = {"stage": 1, "date": "2026-12-07", "component": "UNet", "change": "random", "heads": [1, 3], "steps": "0",
             "hardware": "none", "minutes": 0, "training_seed": 0, "command": "none"}  # fmt: skip
    lineage = {"stages": [stage], "validation_seeds": [11], "evaluation_seeds": [7]}
    (path / "lineage.json").write_text(json.dumps(lineage))
    return path


def test_figures_and_goals_of_a_fresh_head(tiny_model, tmp_path):
    from medshift.metrics.fetch import cache_dir, verify_cache

    if verify_cache(cache_dir()) is None:
        pytest.skip(f"no fetched backbone weights in {cache_dir()}: run `medshift weights fetch` (make install does)")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "--model", str(tiny_model), "--out", str(out), "--phantom-seed", "7", "--phantom-views", "2",
        "--phantom-dir", str(tmp_path / "work"), "--steps", "4", "--taus", "0.6,0.45", "--reconstruction-ceiling",
        "--match-evaluations", "--goals", str(REPO / "docs" / "quality-goals.json"), "--no-show-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())

    assert results["config"]["phantom_seed"] == 7 and results["config"]["split"] == "test"
    assert results["config"]["dataset"] == f"phantom v2 head 7 (2 poses), built in {tmp_path / 'work'}"
    assert results["config"]["phantom_version"] == 2
    assert results["counts"] == {"source_images": 2, "target_images": 4, "paired": 2}  # 2 frames per pose
    assert results["backbones"]["fd"] == "inception-v3-fid"
    ceiling = results["reconstruction_ceiling"]
    assert ceiling["default"]["processing_resolution"] == 64 and ceiling["full"]["processing_resolution"] == 780
    # a real acquisition of the pose matches the noise-free render closely: the ground truth is aligned (v2's
    # noise on fine trabecular texture costs SSIM, not PSNR)
    assert ceiling["target_acquisition"]["ssim"] > 0.8 and ceiling["target_acquisition"]["psnr"] > 30
    rows = {(r["method"], r["tau"]): r for r in results["rows"]}
    assert set(rows) == {("identity", None), ("medshift", 0.6), ("medshift", 0.45), ("sdedit", 0.6), ("sdedit", 0.45)}
    identity = rows[("identity", None)]
    assert identity["ssim"] == pytest.approx(1.0) and identity["network_evaluations"] == 0
    assert 0.3 < identity["paired"]["ssim"] < 0.9  # synthetic vs real render of one pose: related, not equal
    for tau in (0.6, 0.45):  # equal cost: MedShift inverts and generates, SDEdit only generates
        assert rows[("sdedit", tau)]["network_evaluations"] == rows[("medshift", tau)]["network_evaluations"] > 0
        assert rows[("sdedit", tau)]["num_inference_steps"] > 4
    # texture against the real_normal acquisition of each pose (random weights: any positive figure); the synthetic
    # source is blurred: its low-passed fidelity to the real render beats its full-resolution one
    assert identity["paired"]["ssim"] < identity["paired"]["lowpass"]["ssim"] < 0.95
    for row in rows.values():
        assert row["texture"]["poses"] == 2 and row["texture"]["high_frequency_ratio"] > 0
        assert row["texture"]["noise_power_ratio"] > 0
    assert ceiling["acquisition_texture"]["noise_model"] is False and ceiling["acquisition_texture"]["poses"] == 2
    # random weights: the reconstruction and paired goals fail, the size goal passes
    goals = {g["goal"]: g["passed"] for g in results["goals"]}
    assert len(goals) == 8 and goals["checkpoint MB of safetensors <= 100"] is True
    assert not any(passed for goal, passed in goals.items() if goal.startswith(("VAE", "paired")))
    assert results["all_passed"] is False
    report = (out / "report.md").read_text()
    assert "## Goals" in report and "| FAIL |" in report and "VAE reconstruction (full: 780 px processing)" in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phantom-seed", "3"], "--phantom-seed 3 is a training head"),
        (["--phantom-seed", "7", "--phantom-views", "1"], "should be greater than or equal to 2"),
        (["--goals", "no-such-goals.json"], "--goals no-such-goals.json is not a file"),
    ],
)
def test_training_heads_and_bad_options_are_refused(tiny_model, tmp_path, args, message):
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    assert message in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "o").exists()


def test_checkpoint_size_counts_the_pipeline_weights_only(tiny_model, tmp_path):
    """A training run's output folder also holds checkpoints/ and a latent cache: not part of the checkpoint."""
    weights = sum(f.stat().st_size for name in ("vae", "unet") for f in (tiny_model / name).glob("*.safetensors")) / 1e6
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    (run / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-10" / "model.safetensors").write_bytes(b"\0" * 3_000_000)
    (run / "latent_cache").mkdir()
    (run / "latent_cache" / "latents.safetensors").write_bytes(b"\0" * 2_000_000)
    assert checkpoint_megabytes(run) == pytest.approx(weights) and weights > 0
    assert checkpoint_megabytes(tmp_path / "not-a-model") is None
