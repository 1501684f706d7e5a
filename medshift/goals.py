"""Quality goals read from a file and checked against a `medshift evaluate` result: a table with PASS/FAIL.

A goals file is JSON::

    {"goals": [
        {"goal": "paired SSIM at tau 0.45", "metric": "medshift@0.45/paired/ssim", "at_least": 0.90},
        {"goal": "CFID ratio to the input", "metric": "medshift@0.45/fd", "divided_by": "identity/fd", "at_most": 0.5},
        {"goal": "MedShift dominates SDEdit", "dominates": "sdedit"},
        {"goal": "checkpoint MB of safetensors", "metric": "checkpoint_mb", "at_most": 100}
    ]}

A metric is a path through the results: its first part names a row of the table (``identity``,
``medshift@TAU``, ``sdedit@TAU``) or a top-level entry (``reconstruction_ceiling``, ``checkpoint_mb``),
the rest the keys below it. ``dominates`` checks, at every tau both methods were run at, that MedShift is
at least as realistic (Fréchet distance) and keeps at least as much structure (SSIM to the source).
A goal whose figure was not measured fails and says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

BOUNDS = ("at_least", "at_most")


def load_goals(path: str | Path) -> list[dict[str, Any]]:
    """The goals of a goals file, checked; a ValueError names the file and the first bad goal."""
    path = Path(path)
    try:
        goals = json.loads(path.read_text(encoding="utf-8"))["goals"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"--goals {path}: not a goals file with a 'goals' list ({error})") from error
    for index, goal in enumerate(goals):
        if "goal" not in goal:
            raise ValueError(f"--goals {path}: goal {index} has no 'goal' text")
        if "dominates" not in goal and ("metric" not in goal or sum(bound in goal for bound in BOUNDS) != 1):
            raise ValueError(f"--goals {path}: goal {goal['goal']!r} needs a 'metric' and one of at_least / at_most")
    return goals


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    method, _, tau = name.partition("@")
    for row in rows:
        if row["method"] == method and (not tau or (row["tau"] is not None and math.isclose(row["tau"], float(tau)))):
            return row
    return None


def metric_value(results: dict[str, Any], metric: str) -> float | None:
    """The figure at `metric` (a path such as ``medshift@0.45/paired/ssim``); None when it was not measured."""
    head, *keys = metric.split("/")
    value: Any = _row(results["rows"], head) if "@" in head or head in ("identity",) else results.get(head)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_bound(goal: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    value = metric_value(results, goal["metric"])
    if value is not None and "divided_by" in goal:
        divisor = metric_value(results, goal["divided_by"])
        value = value / divisor if divisor else None
    bound = "at_least" if "at_least" in goal else "at_most"
    sign = ">=" if bound == "at_least" else "<="
    text = f"{goal['goal']} {sign} {goal[bound]:g}" + ("" if value is not None else " (not measured)")
    passed = value is not None and (value >= goal[bound] if bound == "at_least" else value <= goal[bound])
    return {"goal": text, "value": value, "passed": passed}


def _check_dominance(goal: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]]:
    other = goal["dominates"]
    checks = []
    for mine in (row for row in results["rows"] if row["method"] == "medshift"):
        theirs = _row(results["rows"], f"{other}@{mine['tau']}")
        if theirs is None:
            continue
        passed = mine["fd"] <= theirs["fd"] and mine["ssim"] >= theirs["ssim"]
        gap = f"FD {mine['fd']:.1f} vs {theirs['fd']:.1f}, SSIM to source {mine['ssim']:.3f} vs {theirs['ssim']:.3f}"
        checks.append({"goal": f"{goal['goal']} at tau {mine['tau']:g} ({gap})", "value": None, "passed": passed})
    return checks or [{"goal": f"{goal['goal']} (not measured: no {other} rows)", "value": None, "passed": False}]


def check_goals(results: dict[str, Any], goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One {"goal", "value", "passed"} row per goal (per tau for a ``dominates`` goal)."""
    checks: list[dict[str, Any]] = []
    for goal in goals:
        checks.extend(_check_dominance(goal, results) if "dominates" in goal else [_check_bound(goal, results)])
    return checks


def goal_table(checks: list[dict[str, Any]]) -> list[str]:
    """The checks as a Markdown table with PASS/FAIL."""
    lines = ["| goal | measured | result |", "|---|---:|---|"]
    for check in checks:
        value = "" if check["value"] is None else f"{check['value']:.3f}"
        lines.append(f"| {check['goal']} | {value} | {'PASS' if check['passed'] else 'FAIL'} |")
    return lines
