"""Full-resolution crops of one phantom pose translated by several checkpoints, beside the ground truth.

    python scripts/compare_crops.py --models OLD_PIPELINE checkpoints/medshift-xdigiskull-demo \
        --labels "previous" "shipped" --out docs/figures/crops.png

The demo figure shows each 780² image at about 280 px, which hides what sharpness a change bought. This
renders one head as `scripts/eval_quality.py` does (training seeds refused), translates one synthetic_low
pose to real_normal with each model at its defaults (20 steps), and writes a figure with one row per crop
region and the columns: the input, each model's translation, and the phantom's noise-free real_normal render
of the pose, all cut from the 780² images (unit floats) without resampling.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_quality  # noqa: E402  (the head rendering, seeds and constants)

# (top, left) of each square crop in the 780² image: the cranial vault's rim and the face
DEFAULT_REGIONS = "60,200;380,60"


def parse_regions(text: str) -> list[tuple[int, int]]:
    """'60,200;380,60' -> [(60, 200), (380, 60)]: the top-left corners of the crops."""
    regions = []
    for part in text.split(";"):
        try:
            top, left = (int(value) for value in part.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"region {part!r}: expected TOP,LEFT in pixels, e.g. 60,200") from None
        regions.append((top, left))
    return regions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", default=[eval_quality.DEFAULT_MODEL])
    parser.add_argument("--labels", nargs="+", default=None, help="one column title per model (default: folder names)")
    parser.add_argument("--seed", type=int, default=7, help="phantom head; never a training seed")
    parser.add_argument("--pose", type=int, default=0, help="which of the head's poses (0-based)")
    parser.add_argument("--regions", type=parse_regions, default=parse_regions(DEFAULT_REGIONS),
                        help=f"TOP,LEFT;TOP,LEFT... of the crops in the 780² image (default {DEFAULT_REGIONS})")  # fmt: skip
    parser.add_argument("--size", type=int, default=300, help="side of each crop in pixels")
    parser.add_argument("--out", type=Path, default=Path("crops.png"))
    args = parser.parse_args(argv)
    if args.seed in eval_quality.TRAINING_SEEDS:
        parser.error(f"--seed {args.seed} is a training seed ({eval_quality.TRAINING_SEEDS[args.seed]})")
    if args.labels is not None and len(args.labels) != len(args.models):
        parser.error(f"--labels gives {len(args.labels)} titles for {len(args.models)} --models")
    for top, left in args.regions:
        if not (0 <= top and 0 <= left and top + args.size <= eval_quality.SIZE and left + args.size <= eval_quality.SIZE):
            parser.error(f"--regions {top},{left} with --size {args.size} leaves the {eval_quality.SIZE}² image")
    for model in args.models:
        if not (model / "model_index.json").is_file():
            parser.error(f"--models {model}: no model_index.json there (not a saved MedShiftPipeline)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medshift import MedShiftPipeline
    from medshift.evaluate import Run, translate_images

    with tempfile.TemporaryDirectory(prefix="compare_crops_") as temporary:
        data, truths = eval_quality.load_head(Path(temporary), args.pose + 1, args.seed)
    source, truth = data.source_images[args.pose], truths[args.pose]
    columns = [("input (synthetic_low)", source)]
    for index, model in enumerate(args.models):
        pipe = MedShiftPipeline.from_pretrained(str(model))
        pipe.set_progress_bar_config(disable=True)
        translated = translate_images(pipe, [source], Run("medshift", None), eval_quality.SOURCE, eval_quality.TARGET,
                                      seed=args.seed, batch_size=1, num_inference_steps=20, guidance_scale=None)[0]  # fmt: skip
        label = args.labels[index] if args.labels else model.name
        columns.append((f"{label}, tau={pipe.config.default_tau}", translated))
    columns.append(("ground truth (real_normal)", truth))

    figure, axes = plt.subplots(len(args.regions), len(columns), figsize=(2.6 * len(columns), 2.7 * len(args.regions)),
                                squeeze=False)  # fmt: skip
    for row, (top, left) in enumerate(args.regions):
        for column, (title, image) in enumerate(columns):
            axis = axes[row][column]
            axis.imshow(np.asarray(image)[top : top + args.size, left : left + args.size], cmap="gray", vmin=0.0, vmax=1.0,
                        interpolation="nearest")  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
