"""scripts/train_demo.py's multi-session bookkeeping: the session budget, progress.json and recipe.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from synthetic import load_script


@pytest.fixture(scope="module")
def train_demo():
    return load_script("train_demo")


def test_session_budget_and_progress_carry_over(train_demo, tmp_path):
    unlimited = train_demo.Session(tmp_path, max_minutes=None, resume=False)
    assert unlimited.budget("train", 0.0) == (None, False)  # no limit at all: train for the full step count
    assert unlimited.budget("train", 4.5) == (4.5, False)  # the preset's own stage budget

    session = train_demo.Session(tmp_path, max_minutes=10.0, resume=False)
    minutes, session_bound = session.budget("train-vae", 0.0)
    assert session_bound and 10.0 - train_demo.STAGE_OVERHEAD_MINUTES - 0.1 < minutes <= 10.0 - train_demo.STAGE_OVERHEAD_MINUTES
    assert session.budget("train-vae", 2.5) == (2.5, False)  # the preset's budget is the smaller one
    session.record("train-vae", 2.0, done=False)

    # the next session resumes the progress: 2 of the preset's 2.5 minutes are used, the stage is not done
    later = train_demo.Session(tmp_path, max_minutes=10.0, resume=True)
    assert not later.done("train-vae") and later.budget("train-vae", 2.5) == pytest.approx((0.5, False))
    later.record("train-vae", 0.5, done=True)
    assert json.loads((tmp_path / "progress.json").read_text()) == {"train-vae": {"minutes": 2.5, "done": True}}
    assert train_demo.Session(tmp_path, max_minutes=None, resume=True).done("train-vae")
    assert not train_demo.Session(tmp_path, max_minutes=None, resume=False).done("train-vae")  # a new run

    nearly_over = train_demo.Session(tmp_path, max_minutes=train_demo.STAGE_OVERHEAD_MINUTES + 1.0, resume=True)
    assert nearly_over.budget("train", 0.0) is None  # under MIN_STAGE_MINUTES left: do not start the stage


def _args(tmp_path: Path, resume: bool, **overrides) -> argparse.Namespace:
    """What parse_args gives: no preset override unless asked for."""
    options = {key: None for key in load_script("train_demo").PRESETS["cpu"]}
    return argparse.Namespace(**{"preset": "cpu", "seed": 3, "resume": resume, "work_dir": tmp_path, **options, **overrides})


def test_resume_keeps_the_recipe_it_started_with(train_demo, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        train_demo.recipe_settings(_args(tmp_path, resume=True), tmp_path)
    preset, seed, settings = train_demo.recipe_settings(_args(tmp_path, resume=False, unet_steps=60000), tmp_path)
    assert (preset, seed, settings["unet_steps"]) == ("cpu", 3, 60000)
    assert settings["vae_steps"] == train_demo.PRESETS["cpu"]["vae_steps"]
    # a later session gets the saved recipe (seed 3, 60000 steps), whatever defaults it was started with
    assert train_demo.recipe_settings(_args(tmp_path, resume=True, seed=0), tmp_path) == (preset, seed, settings)
    assert train_demo.recipe_settings(_args(tmp_path, resume=True, unet_steps=60000), tmp_path)[2] == settings
    with pytest.raises(SystemExit, match="cannot change unet_steps"):
        train_demo.recipe_settings(_args(tmp_path, resume=True, unet_steps=5000), tmp_path)


def test_the_heads_are_rendered_apart_and_built_from_one_manifest(train_demo, tmp_path):
    """Several phantom heads: each `xdigiskull phantom` run has its own folder and manifest; the merged
    manifest lists every file with its folder, in the order of --heads, and the build takes it."""
    from xdigiskull.phantom import generate_exports

    assert train_demo.head_seeds({"heads": "1,3,4,5"}) == [1, 3, 4, 5]
    assert all(seed not in (2, 7, 11) for preset in train_demo.PRESETS.values() for seed in train_demo.head_seeds(preset))
    with pytest.raises(SystemExit, match=r"--heads \[7, 11\]: held out for validation/evaluation"):
        train_demo.head_seeds({"heads": "1,7,11"})  # the shipped lineage.json's held-out heads
    raw = tmp_path / "raw"
    for seed in (4, 3):
        generate_exports(raw / f"head-{seed}", views=1, seed=seed, detector=128, frames=1, progress=False,
                         version=train_demo.PHANTOM_VERSION)
    manifest = train_demo.merge_manifests(raw, [4, 3])
    lines = manifest.read_text().splitlines()
    assert lines[0].startswith("file,class") and len(lines) == 1 + 2 * 5  # one export per class and head
    files = [line.split(",")[0] for line in lines[1:]]
    assert [f.split("/")[0] for f in files] == ["head-4"] * 5 + ["head-3"] * 5
    assert all((raw / f).is_file() for f in files)


def test_merged_manifest_of_phantom_v2_heads_keeps_their_bone_masks_reachable(train_demo, tmp_path):
    """Phantom v2 manifests name a bone-mask PNG per export: the merged manifest prefixes it like the file."""
    import csv

    from xdigiskull.phantom import generate_exports

    raw = tmp_path / "raw"
    for seed in (4, 3):
        generate_exports(raw / f"head-{seed}", views=1, seed=seed, detector=128, frames=1, progress=False, version=2)
    with open(train_demo.merge_manifests(raw, [4, 3]), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 5 and all(row["bone_mask"] for row in rows)
    assert all(row["bone_mask"].startswith(row["file"].split("/")[0] + "/labels/") for row in rows)
    assert all((raw / row["bone_mask"]).is_file() and (raw / row["file"]).is_file() for row in rows)
