"""Figures of phantom v2 beside v1 (issue 40, goal 7): docs/figures/phantom_v2_classes.png and
docs/figures/phantom_v2_crops.png.

1. The five classes of one lateral pose, v1 above v2 (same seed, same pose).
2. Full-resolution crops (one export pixel per screen pixel) of the skull vault, the sella and the teeth in
   v1's and v2's real_exposure export, and v2's 19 cephalometric landmarks on its real_normal export.

    python scripts/phantom_v2_figure.py [--seed 7] [--out-dir docs/figures]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from phantom_figure import read_field  # noqa: E402 (scripts/ is on the path when run as a script)
from PIL import Image  # noqa: E402

from xdigiskull.classes import CLASS_NAMES  # noqa: E402
from xdigiskull.phantom import generate_exports  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CROP = 200  # pixels


def render(out: Path, seed: int, version: int) -> dict[str, dict[str, str]]:
    """The lateral pose (the 2nd standard view) of both versions; {class: manifest row}."""
    raw = generate_exports(out, views=2, seed=seed, detector=1024, frames=1, jitter_deg=0.0, version=version,
                           progress=False)
    with open(raw / "manifest.csv", newline="") as handle:
        return {row["class"]: row for row in csv.DictReader(handle) if row["view"] == "lateral"}


def crop(image: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    x, y = (int(round(c)) for c in centre)
    r0 = int(np.clip(y - CROP // 2, 0, image.shape[0] - CROP))
    c0 = int(np.clip(x - CROP // 2, 0, image.shape[1] - CROP))
    return image[r0:r0 + CROP, c0:c0 + CROP]


def crop_centres(raw: Path, row: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Where the vault, the sella and the teeth are in the lateral field, from v2's landmarks and bone mask."""
    marks = json.loads(row["landmarks"])
    sella, incisor = marks["sella"], marks["incision_superius"]
    mask = np.asarray(Image.open(raw / row["bone_mask"])) > 0
    column = int(round(sella[0]))
    top = int(np.flatnonzero(mask[:, column])[0])
    return {"vault": (sella[0], top + CROP // 2 - 10), "sella": (sella[0], sella[1]),
            "teeth": (incisor[0] + 0.35 * CROP, incisor[1])}


def classes_figure(runs: dict[int, tuple[Path, dict]], path: Path) -> None:
    fig, axes = plt.subplots(2, len(CLASS_NAMES), figsize=(3.2 * len(CLASS_NAMES), 6.7))
    for r, (version, (raw, rows)) in enumerate(sorted(runs.items())):
        for c, name in enumerate(CLASS_NAMES):
            ax = axes[r, c]
            ax.axis("off")
            ax.imshow(read_field(raw / rows[name]["file"]), cmap="gray", vmin=0.0, vmax=1.0)
            if r == 0:
                ax.set_title(name, fontsize=12)
            if c == 0:
                ax.text(-0.04, 0.5, f"phantom v{version}", transform=ax.transAxes, rotation=90, va="center",
                        ha="right", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def crops_figure(runs: dict[int, tuple[Path, dict]], path: Path) -> None:
    raw2, rows2 = runs[2]
    centres = crop_centres(raw2, rows2["real_normal"])
    # one export pixel per figure pixel: 200 px crops at 100 dpi are 2 inches
    fig, axes = plt.subplots(2, 4, figsize=(4 * 2.3, 2 * 2.45), dpi=100)
    for r, version in enumerate((1, 2)):
        raw, rows = runs[version]
        image = read_field(raw / rows["real_exposure"]["file"])
        for c, (name, centre) in enumerate(centres.items()):
            ax = axes[r, c]
            ax.imshow(crop(image, centre), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"v{version} real_exposure: {name}", fontsize=8)
            ax.axis("off")
    ax = axes[0, 3]
    ax.axis("off")
    ax.text(0.0, 0.5, "crops: 200 x 200 export pixels\n(0.39 mm at the detector),\nno resampling;\n"
            "right below: v2 landmarks\n(ISBI 2015, 19) on real_normal", fontsize=8, va="center")
    ax = axes[1, 3]
    image = read_field(raw2 / rows2["real_normal"]["file"])
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    marks = json.loads(rows2["real_normal"]["landmarks"])
    xs, ys = zip(*[(x, y) for x, y, visible in marks.values() if visible])
    ax.scatter(xs, ys, s=6, c="red")
    ax.set_title("v2 real_normal: 19 landmarks", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="the head (not one the texture was tuned on)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs" / "figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {version: (Path(tmp) / f"v{version}", render(Path(tmp) / f"v{version}", args.seed, version))
                for version in (1, 2)}
        args.out_dir.mkdir(parents=True, exist_ok=True)
        classes_figure(runs, args.out_dir / "phantom_v2_classes.png")
        crops_figure(runs, args.out_dir / "phantom_v2_crops.png")
    print(f"wrote {args.out_dir / 'phantom_v2_classes.png'} and {args.out_dir / 'phantom_v2_crops.png'}")


if __name__ == "__main__":
    main()
