"""medshift.goals: a goals file checked against evaluation results, PASS/FAIL per goal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medshift.goals import check_goals, goal_table, load_goals

REPO = Path(__file__).resolve().parents[2]


def _row(method, tau, fd, ssim, paired_ssim=0.95, paired_psnr=30.0):
    return {"method": method, "tau": tau, "fd": fd, "ssim": ssim, "paired": {"ssim": paired_ssim, "psnr": paired_psnr}}


def test_goals_pass_and_fail_on_the_figures():
    results = {
        "reconstruction_ceiling": {"default": {"ssim": 0.975, "psnr": 36.5}},
        "checkpoint_mb": 120.0,
        "rows": [
            _row("identity", None, 100.0, 1.0),
            _row("medshift", 0.45, 40.0, 0.9),
            _row("medshift", 0.3, 30.0, 0.8, paired_ssim=0.85),
            _row("sdedit", 0.45, 45.0, 0.85),  # dominated
            _row("sdedit", 0.3, 25.0, 0.7),  # more realistic than MedShift: not dominated
        ],
    }
    goals = load_goals(REPO / "docs" / "quality-goals.json")
    goals.append({"goal": "paired SSIM at tau 0.3", "metric": "medshift@0.3/paired/ssim", "at_least": 0.9})
    checks = {c["goal"].split(" (")[0]: c for c in check_goals(results, goals)}
    assert checks["VAE reconstruction SSIM, default processing >= 0.97"]["passed"]
    assert checks["paired SSIM at tau 0.45 >= 0.9"]["passed"] and not checks["paired SSIM at tau 0.3 >= 0.9"]["passed"]
    ratio = checks["CFID(MedShift tau 0.45) / CFID(identity) <= 0.5"]
    assert ratio["value"] == pytest.approx(0.4) and ratio["passed"]
    assert checks["MedShift dominates SDEdit at tau 0.45"]["passed"]
    assert not checks["MedShift dominates SDEdit at tau 0.3"]["passed"]
    assert not checks["checkpoint MB of safetensors <= 100"]["passed"]
    table = goal_table(list(checks.values()))
    assert table[0] == "| goal | measured | result |" and sum("| PASS |" in line for line in table) == 6


def test_a_goal_not_measured_fails_and_says_so():
    results = {"rows": [_row("identity", None, 100.0, 1.0)]}
    goals = [{"goal": "paired PSNR", "metric": "medshift@0.45/paired/psnr", "at_least": 28}, {"goal": "beats", "dominates": "sdedit"}]
    checks = check_goals(results, goals)
    assert [c["passed"] for c in checks] == [False, False]
    assert all("not measured" in c["goal"] for c in checks)


def test_bad_goal_files_are_named(tmp_path):
    path = tmp_path / "goals.json"
    path.write_text(json.dumps({"goals": [{"goal": "no bound", "metric": "checkpoint_mb"}]}))
    with pytest.raises(ValueError, match="goal 'no bound' needs a 'metric' and one of at_least / at_most"):
        load_goals(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"--goals {path}: not a goals file"):
        load_goals(path)
