"""An evaluation dataset rendered on the spot: one phantom head (`xdigiskull phantom`), built into an
X-DigiSkull (`xdigiskull build`) whose poses all go to the test split, its noise-free renders the paired
ground truth. `medshift evaluate --phantom-seed N` evaluates on it; the head must be one no training stage of
the model used (its ``lineage.json``, `medshift.lineage`)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medshift.lineage import load_lineage, training_seeds

IMAGE_SIZE = 780  # X-DigiSkull's side: the metrics run on it
DETECTOR = 1024  # flat-detector pixels, `xdigiskull phantom`'s default
FRAMES = 2  # frames per DICOM run: two real acquisitions of each pose


def render_phantom_head(work: Path, views: int, seed: int, version: int = 2) -> tuple[Path, Path]:
    """Render `views` poses of the phantom-`version` head of `seed` into `work`/raw and build them into `work`/x-digiskull
    (780 px, every frame, all in the test split). Returns (dataset folder, ground_truth folder).

    Raises:
        ValueError: the build failed (its output is in the message).
    """
    from xdigiskull.phantom import generate_exports

    raw, dataset = work / "raw", work / "x-digiskull"
    generate_exports(raw, views=views, seed=seed, detector=DETECTOR, frames=FRAMES, version=version)
    command = [sys.executable, "-m", "xdigiskull.cli", "build", str(raw), "--out", str(dataset), "--labels",
               str(raw / "manifest.csv"), "--frames", "all", "--size", str(IMAGE_SIZE), "--split", "0,0,1",
               "--seed", str(seed), "--num-proc", "1"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ValueError(f"xdigiskull build of {raw} failed:\n{completed.stdout}\n{completed.stderr}")
    return dataset, raw / "ground_truth"


def check_held_out(model: str, seed: int, allow_training_seed: bool) -> None:
    """Raise a ValueError when the model's lineage lists head `seed` as a training head (unless allowed)."""
    lineage = load_lineage(model) if Path(model).is_dir() else None
    if lineage is not None and seed in training_seeds(lineage) and not allow_training_seed:
        raise ValueError(
            f"--phantom-seed {seed} is a training head of {model} (its lineage.json trains on "
            f"{training_seeds(lineage)}); pick another, or pass --allow-training-seed"
        )


@contextmanager
def phantom_dataset(config: Any) -> Iterator[Any]:
    """The evaluation config with `dataset`, `split` and `ground_truth` pointing at a freshly rendered head
    of `config.phantom_seed` (in `config.phantom_dir`, else a temporary folder removed afterwards)."""
    check_held_out(config.model, config.phantom_seed, config.allow_training_seed)
    with tempfile.TemporaryDirectory(prefix="medshift_phantom_") as temporary:
        work = Path(config.phantom_dir) if config.phantom_dir else Path(temporary)
        dataset, ground_truth = render_phantom_head(work, config.phantom_views, config.phantom_seed, config.phantom_version)
        yield dataclasses.replace(config, dataset=str(dataset), split="test", ground_truth=str(ground_truth))
