"""The main job, end to end, offline: `make demo` runs this.

1. write phantom raw exports (simulator PNG screenshots + Azurion-style DICOM) for a few poses,
2. build X-DigiSkull from them (crop to the exposed field, 780x780, five classes, parquet shards + card),
3. load it back with `datasets.load_dataset`, translate the synthetic_low test images to real_normal with the
   shipped demo checkpoint at tau = 0.6 / 0.45 / 0.3,
4. save a side-by-side figure: input | tau 0.6 | tau 0.45 | tau 0.3 | phantom ground-truth real render.

Everything lands in `demo_output/` (or `--out`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from medshift import MedShiftPipeline  # noqa: E402
from xdigiskull.cli import app as xdigiskull_app  # noqa: E402
from medshift.image_processor import resize, to_unit_float  # noqa: E402
from xdigiskull.phantom import generate_exports  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "medshift-xdigiskull-demo"
TAUS = (0.6, 0.45, 0.3)


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "demo_output", help="where everything is written")
    parser.add_argument("--views", type=int, default=10, help="phantom poses to render")
    parser.add_argument("--rows", type=int, default=3, help="test images shown in the figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw, dataset_dir = out / "raw", out / "x-digiskull"

    t0 = step(f"phantom: {args.views} poses x 5 classes -> {raw}")
    generate_exports(raw, views=args.views, seed=args.seed, detector=1024, frames=2)
    print(f"    {time.perf_counter() - t0:.1f} s")

    t0 = step(f"xdigiskull build {raw} --out {dataset_dir}")
    result = CliRunner().invoke(
        xdigiskull_app,
        ["build", str(raw), "--out", str(dataset_dir), "--frames", "first", "--split", "0.6,0.2,0.2", "--seed", str(args.seed)],
    )
    print(result.output)
    if result.exit_code != 0:
        raise SystemExit(f"build failed (exit {result.exit_code}): {result.exception!r}")
    print(f"    {time.perf_counter() - t0:.1f} s")

    t0 = step(f"load_dataset({str(dataset_dir)!r}) and translate synthetic_low -> real_normal")
    test = load_dataset(str(dataset_dir), split="test")
    names = test.features["label"].names
    sources = test.filter(lambda row: names[row["label"]] == "synthetic_low").select_columns(["image", "pair_id"])
    rows = min(args.rows, len(sources))
    if rows == 0:
        raise SystemExit("the test split holds no synthetic_low image; try more --views")
    pipe = MedShiftPipeline.from_pretrained(CHECKPOINT)
    generator = torch.Generator().manual_seed(args.seed)
    columns = ["input (synthetic_low)"] + [f"MedShift tau={tau}" for tau in TAUS] + ["ground truth (real_normal)"]
    fig, axes = plt.subplots(rows, len(columns), figsize=(3 * len(columns), 3 * rows), squeeze=False)
    for r in range(rows):
        image = to_unit_float(sources[r]["image"])  # 16-bit known from the PNG's mode
        panels = [image]
        for tau in TAUS:
            translated = pipe(image, target="real_normal", source="synthetic_low", tau=tau, generator=generator, output_type="np").images[0]
            panels.append(np.asarray(translated).squeeze())
        truth = cv2.imread(str(raw / "ground_truth" / f"{sources[r]['pair_id']}_real_normal.png"), cv2.IMREAD_UNCHANGED)
        truth = resize(to_unit_float(truth), image.shape)
        panels.append(truth)
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(columns[c], fontsize=10)
    fig.tight_layout()
    figure = out / "medshift_demo.png"
    fig.savefig(figure, dpi=100)
    print(f"    {time.perf_counter() - t0:.1f} s")
    print(f"\nDone. Figure: {figure}\nDataset: {dataset_dir} (load_dataset({str(dataset_dir)!r}))")


if __name__ == "__main__":
    main()
