"""`medshift train-vae` then `medshift train`, end to end through the CLI, on a tiny dataset."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medshift.cli import app
from medshift.training.fit_noise import FitNoiseConfig, fit_noise
from medshift.training.train import TrainConfig, train
from medshift.training.train_vae import VaeTrainConfig, train_vae


def _train_vae(runner: CliRunner, dataset, vae_config, output_dir, *options: str):
    """`medshift train-vae` on the tiny dataset at 64 px (32 px crops) with the tiny VAE config."""
    arguments = ["--dataset", str(dataset), "--output-dir", str(output_dir), "--resolution", "64", "--crop-size", "32"]
    return runner.invoke(app, ["train-vae", *arguments, "--vae-config", str(vae_config), *options])


@pytest.mark.parametrize("command,config", [(train, TrainConfig), (train_vae, VaeTrainConfig), (fit_noise, FitNoiseConfig)])
def test_every_config_field_is_an_option_with_the_config_default(command, config):
    parameters = inspect.signature(command).parameters
    assert list(parameters) == [spec.name for spec in dataclasses.fields(config)]
    for spec in dataclasses.fields(config):
        expected = inspect.Parameter.empty if spec.default is dataclasses.MISSING else spec.default
        assert parameters[spec.name].default == expected


def test_train_vae_then_train_end_to_end(tiny_dataset, tiny_config_files, tmp_path):
    from medshift.pipeline_medshift import MedShiftPipeline

    vae_config, unet_config = tiny_config_files
    runner = CliRunner()
    result = _train_vae(
        runner, tiny_dataset, vae_config, tmp_path / "vae",
        "--max-steps", "3", "--batch-size", "4", "--checkpoint-every", "2", "--weight-decay", "0.01", "--scaling-images", "8",
        "--no-show-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vae" / "config.json").exists()
    assert (tmp_path / "vae" / "checkpoints" / "checkpoint-3").is_dir()

    result = runner.invoke(
        app,
        ["train", "--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "model"), "--vae", str(tmp_path / "vae"),
         "--resolution", "64", "--unet-config", str(unet_config), "--max-steps", "4", "--batch-size", "4",
         "--sample-every", "2", "--num-sample-images", "2", "--sample-inference-steps", "2", "--log-every", "1",
         "--sample-tau", "0.6", "--default-guidance-scale", "1.5", "--weight-decay", "0.02", "--no-show-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = tmp_path / "model"
    assert (model / "model_index.json").exists() and (model / "train_log.csv").exists()
    grid = Image.open(model / "samples" / "step-0000002.png")
    # two rows (validation images), four columns (input + three real classes), 64 px tiles, 4 px gaps
    assert grid.size == (4 * 64 + 3 * 4, 2 * 64 + 4)
    assert (model / "samples" / "final.png").exists()
    settings = json.loads((model / "training_config.json").read_text())
    assert (settings["sample_tau"], settings["weight_decay"], settings["show_progress"]) == (0.6, 0.02, False)
    assert json.loads((tmp_path / "vae" / "training_config.json").read_text())["scaling_images"] == 8

    pipeline = MedShiftPipeline.from_pretrained(str(model))
    assert pipeline.config.default_guidance_scale == 1.5
    pipeline.set_progress_bar_config(disable=True)
    image = np.full((64, 64), 0.5, dtype=np.float32)
    output = pipeline(image, target="real_normal", num_inference_steps=2, output_type="np").images[0]
    assert np.asarray(output).squeeze().shape == (64, 64)


def test_streaming_without_cache_and_bad_split(tiny_dataset, tiny_config_files, tmp_path):
    vae_config, unet_config = tiny_config_files
    runner = CliRunner()
    result = _train_vae(runner, tiny_dataset, vae_config, tmp_path / "vae", "--max-steps", "1", "--batch-size", "2", "--streaming")
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["train", "--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "model"), "--vae", str(tmp_path / "vae"),
         "--resolution", "64", "--unet-config", str(unet_config), "--max-steps", "2", "--batch-size", "2",
         "--streaming", "--no-cache-latents", "--num-sample-images", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "model" / "latent_cache").exists()
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()

    result = runner.invoke(
        app,
        ["train", "--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "bad"), "--vae", str(tmp_path / "vae"),
         "--train-split", "nonexistent", "--unet-config", str(unet_config), "--resolution", "64"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "nonexistent" in result.output
