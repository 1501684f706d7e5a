"""Figure of the phantom's five classes side by side for two views: docs/figures/phantom_classes.png.

Renders a small phantom run (or reads an existing one with --raw), crops every export to its exposed field the
way the builder does (DICOM shutter tags; the simulator's uniform screen margin), and shows the first frame.

    python scripts/phantom_figure.py [--raw RAW_DIR] [--views ap lateral] [--out docs/figures/phantom_classes.png]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from PIL import Image  # noqa: E402

from xdigiskull.classes import CLASS_NAMES  # noqa: E402
from xdigiskull.phantom import STANDARD_VIEWS, generate_exports  # noqa: E402
from xdigiskull.phantom.appearance import SCREEN_MARGIN_RGB  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def read_field(path: Path) -> np.ndarray:
    """First frame of an export, cropped to its exposed field, as float in [0, 1]."""
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        frame = ds.pixel_array[0] if int(ds.get("NumberOfFrames", 1)) > 1 else ds.pixel_array
        rows = slice(ds.ShutterUpperHorizontalEdge - 1, ds.ShutterLowerHorizontalEdge)
        cols = slice(ds.ShutterLeftVerticalEdge - 1, ds.ShutterRightVerticalEdge)
        return frame[rows, cols].astype(np.float32) / (2**ds.BitsStored - 1)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    image = np.any(rgb != np.array(SCREEN_MARGIN_RGB, np.uint8), axis=2)
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1, 0].astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=None, help="existing phantom output (default: render one)")
    parser.add_argument("--views", nargs="+", default=["ap", "lateral"], help="view names to show, one per row")
    parser.add_argument("--seed", type=int, default=0, help="seed when rendering")
    parser.add_argument("--catheter", action="store_true", help="render with a catheter")
    parser.add_argument("--phantom-version", type=int, default=2, help="phantom version when rendering (2 or 1)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "phantom_classes.png")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw
        if raw is None:
            names = [view.name for view in STANDARD_VIEWS]
            unknown = [view for view in args.views if view not in names]
            if unknown:
                parser.error(f"unknown view(s) {unknown}; standard views: {', '.join(names)}")
            # the standard views come first in a run: render just enough poses to reach the last one asked for
            count = max(names.index(view) for view in args.views) + 1
            raw = generate_exports(Path(tmp) / "raw", views=count, seed=args.seed, detector=1024, frames=1,
                                   catheter=args.catheter, version=args.phantom_version)
        with open(raw / "manifest.csv", newline="") as handle:
            manifest = list(csv.DictReader(handle))
        fig, axes = plt.subplots(len(args.views), len(CLASS_NAMES), figsize=(3.2 * len(CLASS_NAMES),
                                                                             3.35 * len(args.views)))
        axes = np.atleast_2d(axes)
        for r, view in enumerate(args.views):
            entries = {row["class"]: row for row in manifest if row["view"] == view}
            for c, name in enumerate(CLASS_NAMES):
                ax = axes[r, c]
                ax.axis("off")
                if name not in entries:
                    continue
                ax.imshow(read_field(raw / entries[name]["file"]), cmap="gray", vmin=0.0, vmax=1.0)
                if r == 0:
                    ax.set_title(name, fontsize=12)
                if c == 0:
                    ax.text(-0.04, 0.5, view, transform=ax.transAxes, rotation=90, va="center", ha="right",
                            fontsize=12)
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
