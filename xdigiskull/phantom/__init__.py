"""A physics-based stand-in for the X-DigiSkull raw exports: a seeded voxel skull phantom rendered as simulator
screen captures (synthetic domain) and Azurion-like XA DICOM runs (real domain), with aligned noise-free ground
truth for every pose and class.

    from xdigiskull.phantom import generate_exports
    generate_exports("raw", views=10, seed=0, detector=1024, frames=2)

or `xdigiskull phantom raw --views 10`. The default is phantom v2: fine anatomy (trabecular texture, sutures,
sinuses, teeth, air cells, ...) at the detector's pitch, the flat detector's measured MTF, and cephalometric
landmarks and a bone mask per export in the manifest. `version=1` (`--phantom-version 1`) renders phantom v1, the
phantom the shipped model was trained on, byte for byte.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xdigiskull.phantom.anatomy import HeadPhantom, make_head
    from xdigiskull.phantom.dicom_writer import planted_identifiers
    from xdigiskull.phantom.export import MANIFEST_COLUMNS, generate_exports
    from xdigiskull.phantom.geometry import STANDARD_VIEWS, View, cone_beam

# name -> submodule; loaded on first use (PEP 562) so that `xdigiskull` commands that do not render the
# phantom (and the build's worker processes) start without SciPy and the renderer
_EXPORTS = {
    "HeadPhantom": "anatomy",
    "make_head": "anatomy",
    "planted_identifiers": "dicom_writer",
    "MANIFEST_COLUMNS": "export",
    "generate_exports": "export",
    "STANDARD_VIEWS": "geometry",
    "View": "geometry",
    "cone_beam": "geometry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
