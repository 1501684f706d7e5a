"""scripts/prior_snr.py: octave bands put each scale's power in its own band, and the script runs on a
built dataset and a saved pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prior_snr.py"


def _load_script():
    return load_script("prior_snr")


def test_octave_bands_separate_scales():
    prior_snr = _load_script()
    constant = torch.full((1, 1, 16, 16), 0.5)
    assert prior_snr.octave_band_power(constant, 3) == pytest.approx([0, 0, 0, 0.25], abs=1e-7)
    # a checkerboard of single cells is all finest detail: halving the grid averages it away
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]).remainder(2).float()[None, None] * 2 - 1
    powers = prior_snr.octave_band_power(checker, 3)
    assert powers[0] == pytest.approx(1.0) and powers[1:] == pytest.approx([0, 0, 0], abs=1e-7)
    # blocks of 4x4 cells survive two halvings and show up in the third band
    index = torch.arange(16) // 4
    blocks = ((index[:, None] + index[None, :]).remainder(2).float()[None, None] * 2 - 1)
    powers = prior_snr.octave_band_power(blocks, 3)
    assert powers[2] > 0.5 > 0.3 > powers[0] and powers[3] == pytest.approx(0, abs=1e-7)


def test_the_script_prints_snr_for_the_models_prior_and_a_candidate(tiny_dataset, tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(tmp_path / "model"), "--dataset", str(tiny_dataset), "--images", "4",
         "--taus", "0.45", "--coarse-noise", "0,0.5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "this model's prior (offset 0, coarse [])" in completed.stdout
    assert "offset 0, coarse [0.0, 0.5]" in completed.stdout
    assert completed.stdout.count("SNR at tau 0.45:") == 2
