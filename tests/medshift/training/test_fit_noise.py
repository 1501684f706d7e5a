"""`medshift fit-noise` end to end: a saved tiny pipeline gets a noise model measured on a tiny X-DigiSkull."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from typer.testing import CliRunner

from medshift import MedShiftPipeline
from medshift.cli import app
from medshift.noise_model import ClassNoiseModel


def test_fit_noise_adds_a_noise_model_that_round_trips(saved_tiny_pipeline, tiny_dataset, tmp_path):
    model = tmp_path / "pipe"
    shutil.copytree(saved_tiny_pipeline, model)
    result = CliRunner().invoke(app, ["fit-noise", "--model", str(model), "--dataset", str(tiny_dataset),
                                      "--resolution", "64", "--max-images", "3", "--no-show-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "saved" in result.output
    fit = json.loads((model / "noise_model" / "fit.json").read_text())
    assert fit["split"] == "train" and all(summary["images"] <= 3 for summary in fit["classes"].values())
    pipe = MedShiftPipeline.from_pretrained(model)
    assert isinstance(pipe.noise_model, ClassNoiseModel) and pipe.noise_model.config.resolution == 64
    fitted = [name for name, flag in zip(pipe.config.class_names, pipe.noise_model.fitted) if flag]
    assert fitted == sorted(fit["classes"], key=list(pipe.config.class_names).index)
    pipe.set_progress_bar_config(disable=True)
    image = np.full((64, 64), 0.5, np.float32)
    target = fitted[0]
    quiet = pipe(image, target=target, tau=1.0, output_type="np", restore_noise=False).images[0]
    noisy = pipe(image, target=target, tau=1.0, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert not np.array_equal(quiet, noisy)


def test_fit_noise_names_a_missing_model(tiny_dataset, tmp_path):
    result = CliRunner().invoke(app, ["fit-noise", "--model", str(tmp_path / "none"), "--dataset", str(tiny_dataset)])
    assert result.exit_code != 0
    assert "could not load a MedShiftPipeline" in " ".join(result.output.replace("│", " ").split())
