"""scripts/cfid_levers.py: variants parse into pipeline arguments, and bad input stops before any work."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cfid_levers.py"


def test_variants_become_pipeline_arguments():
    levers = load_script("cfid_levers")
    assert levers.parse_variant("default") == {}
    assert levers.parse_variant("guidance=2") == {"guidance_scale": 2.0}
    assert levers.parse_variant("steps=40") == {"num_inference_steps": 40}
    assert levers.parse_variant("solver=heun") == {"solver": "heun"}
    assert levers.parse_variant("tau=0.3") == {"tau": 0.3}
    assert levers.parse_variant("resolution=640") == {"processing_resolution": 640}


@pytest.mark.parametrize("text", ["sharpness=2", "guidance", "guidance=", "steps=forty"])
def test_unknown_or_malformed_variants_are_refused(text):
    levers = load_script("cfid_levers")
    with pytest.raises(argparse.ArgumentTypeError, match="variant"):
        levers.parse_variant(text)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--seed", "3"], "training seed"), (["--variants", "default,sharpness=2"], "variant 'sharpness=2'"),
     (["--variants", "steps=forty"], "'forty' is not an integer")],
)
def test_the_command_line_names_what_is_wrong(arguments, message):
    completed = subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True)
    assert completed.returncode == 2
    assert message in completed.stderr


def test_reconstruction_resolutions_parse_and_bad_ones_are_refused():
    levers = load_script("cfid_levers")
    assert levers.resolutions("512,784") == [512, 784]
    assert levers.resolutions("512") == [512]
    for text in ("512,big", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            levers.resolutions(text)
    completed = subprocess.run([sys.executable, str(SCRIPT), "--reconstructions", "512,big"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "--reconstructions" in completed.stderr and "pixel sizes" in completed.stderr
