"""scripts/compare_crops.py: regions parse, bad input stops before any work, and one real run writes the figure."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from synthetic import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "compare_crops.py"
SHIPPED = REPO / "checkpoints" / "medshift-xdigiskull-demo"


def test_regions_parse_into_top_left_corners():
    crops = load_script("compare_crops")
    assert crops.parse_regions("60,200;380,60") == [(60, 200), (380, 60)]
    assert crops.parse_regions("0,0") == [(0, 0)]


@pytest.mark.parametrize("text", ["60", "60,200,3", "a,b", "60,200;"])
def test_malformed_regions_are_refused(text):
    crops = load_script("compare_crops")
    with pytest.raises(argparse.ArgumentTypeError, match="TOP,LEFT"):
        crops.parse_regions(text)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--seed", "3"], "training seed"),
     (["--models", str(SHIPPED), "--labels", "a", "b"], "2 titles for 1 --models"),
     (["--regions", "600,600"], "leaves the 780² image"),
     (["--models", "no/such/folder"], "no model_index.json")],
)
def test_the_command_line_names_what_is_wrong(arguments, message, tmp_path):
    out = tmp_path / "crops.png"
    completed = subprocess.run([sys.executable, str(SCRIPT), *arguments, "--out", str(out)], capture_output=True, text=True)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert not out.exists()


def test_one_model_writes_a_figure_of_regions_by_columns(tmp_path):
    out = tmp_path / "figures" / "crops.png"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", str(SHIPPED), "--labels", "shipped", "--regions", "100,100",
         "--size", "200", "--out", str(out)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    figure = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    # one row (2.7 in) by three columns (input, shipped, ground truth; 2.6 in each) at 100 dpi
    assert figure.shape == (270, 780)
    # the crops are drawn on the unit-float grey scale: a wrong vmax paints them black
    assert (figure < 10).mean() < 0.3
    assert figure.std() > 20  # and they are not a blank canvas
