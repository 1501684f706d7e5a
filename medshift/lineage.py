"""A saved MedShift pipeline's lineage: how its weights were made, in one file beside them (``lineage.json``).

The file lists the training stages in order (date, component, what changed, data, steps, hardware, time,
training seed, the command), the phantom heads the data was rendered from, and the held-out heads that no
stage trained on: the validation heads the defaults were chosen on and the evaluation heads. Every tool that
needs the training seeds reads them here: `medshift evaluate` refuses to evaluate on a training head, the
model card's training-procedure table is generated from it, and `scripts/train_demo.py` /
`scripts/gpu_continue.sh` refuse to train on a held-out head.

Layout::

    {"model": "...", "data": {...}, "validation_seeds": [11], "evaluation_seeds": [2, 7],
     "stages": [{"stage": 1, "date": "2026-12-02", "component": "VAE + UNet", "change": "...",
                 "heads": [1, 3, 4, 5], "steps": "...", "hardware": "2 CPU cores", "minutes": 87,
                 "training_seed": 0, "command": "..."}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LINEAGE_FILE = "lineage.json"
STAGE_FIELDS = ("stage", "date", "component", "change", "heads", "steps", "hardware", "minutes", "training_seed", "command")


def load_lineage(model: str | Path) -> dict[str, Any] | None:
    """The lineage of the pipeline folder `model` (None when it has no lineage file, e.g. a Hub id).

    Raises:
        ValueError: the file is not valid JSON or lacks a field (the message names the file).
    """
    path = Path(model) / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        lineage = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    for key in ("stages", "validation_seeds", "evaluation_seeds"):
        if key not in lineage:
            raise ValueError(f"{path} has no {key!r} entry")
    for stage in lineage["stages"]:
        missing = [name for name in STAGE_FIELDS if name not in stage]
        if missing:
            raise ValueError(f"{path}: stage {stage.get('stage', '?')} lacks {', '.join(missing)}")
    return lineage


def training_seeds(lineage: dict[str, Any]) -> list[int]:
    """The phantom heads (seeds) any training stage used, sorted."""
    return sorted({int(seed) for stage in lineage["stages"] for seed in stage["heads"]})


def held_out_seeds(lineage: dict[str, Any]) -> list[int]:
    """The heads no stage trained on and that must stay so: validation and evaluation heads, sorted."""
    return sorted({int(seed) for seed in (*lineage["validation_seeds"], *lineage["evaluation_seeds"])})


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as short text: [1, 3, 4, 5, 12, 13, 14] -> "1, 3-5, 12-14"."""
    parts: list[str] = []
    for seed in sorted(seeds):
        if parts and _last(parts[-1]) == seed - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{seed}"
        else:
            parts.append(str(seed))
    return ", ".join(parts)


def _last(part: str) -> int:
    return int(part.split("-")[-1])


def training_procedure_table(lineage: dict[str, Any]) -> list[str]:
    """The stages as a Markdown table, one row each (the model card's "Training procedure")."""
    lines = [
        "| stage | date | what: change | heads | steps | hardware | min | seed |",
        "|---:|---|---|---|---|---|---:|---:|",
    ]
    for stage in lineage["stages"]:
        lines.append(
            f"| {stage['stage']} | {stage['date']} | {stage['component']}: {stage['change']} | "
            f"{seed_ranges(stage['heads'])} | {stage['steps']} | {stage['hardware']} | {stage['minutes']:g} | "
            f"{stage['training_seed']} |"
        )
    return lines
