"""Scatter-to-primary ratio of phantom v2's real classes behind the skull (issue 40, goal 3).

For each head and view, the polyenergetic primary of each class through the voxel head and the class's scatter
field (`physics_v2`), and the median SPR over the pixels whose rays cross at least 1 g/cm^2 of bone.

    python scripts/measure_scatter.py [--seeds 101 102 103]
"""

from __future__ import annotations

import argparse

import numpy as np

from xdigiskull.phantom import physics, physics_v2
from xdigiskull.phantom.anatomy import MATERIALS, make_head
from xdigiskull.phantom.export import REAL_CLASSES, export_layout
from xdigiskull.phantom.geometry import DETECTOR_SIDE_MM, STANDARD_VIEWS, cone_beam
from xdigiskull.phantom.projector import project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    args = parser.parse_args()
    layout = export_layout(1024)
    ratios: dict[tuple[str, str], list[float]] = {}
    for seed in args.seeds:
        head = make_head(seed, version=2)
        for view in STANDARD_VIEWS[:2]:
            thickness = project(head, cone_beam(view.primary, view.secondary), layout.coarse, DETECTOR_SIDE_MM)
            behind_bone = thickness[..., MATERIALS.index("bone")] > 1.0
            for name in REAL_CLASSES:
                primary, _ = physics_v2.primary_and_slopes(thickness, physics.ACQUISITIONS[name])
                spr = physics_v2.scatter_to_primary(primary, layout.coarse_pitch_mm, name, behind_bone)
                ratios.setdefault((view.name, name), []).append(spr)
    print("scatter-to-primary ratio behind the skull (median over pixels behind >= 1 g/cm^2 of bone), "
          f"phantom v2, seeds {args.seeds}")
    for (view, name), values in ratios.items():
        print(f"  {view:8s} {name:14s} SPR {np.mean(values):.2f} (min {np.min(values):.2f}, max {np.max(values):.2f})")


if __name__ == "__main__":
    main()
