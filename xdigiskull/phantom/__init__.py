"""A physics-based stand-in for the X-DigiSkull raw exports: a seeded voxel skull phantom rendered as simulator
screen captures (synthetic domain) and Azurion-like XA DICOM runs (real domain), with aligned noise-free ground
truth for every pose and class.

    from xdigiskull.phantom import generate_exports
    generate_exports("raw", views=10, seed=0, detector=1024, frames=2)

or `xdigiskull phantom raw --views 10`.
"""

from xdigiskull.phantom.anatomy import HeadPhantom, make_head
from xdigiskull.phantom.dicom_writer import planted_identifiers
from xdigiskull.phantom.export import MANIFEST_COLUMNS, generate_exports
from xdigiskull.phantom.geometry import STANDARD_VIEWS, View, cone_beam

__all__ = [
    "MANIFEST_COLUMNS",
    "STANDARD_VIEWS",
    "HeadPhantom",
    "View",
    "cone_beam",
    "generate_exports",
    "make_head",
    "planted_identifiers",
]
