"""MedShift: class-conditional latent flow matching for sim-to-real X-ray translation."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medshift.version import __version__

# Imported on first use so that `import medshift` (and the CLI's --help) stays fast: torch and
# diffusers take seconds to import. diffusers also loads a saved pipeline's scheduler with
# `getattr(importlib.import_module("medshift"), "FlowMatchODEScheduler")`, which this serves.
_LAZY = {
    "MedShiftPipeline": "medshift.pipeline_medshift",
    "FlowMatchODEScheduler": "medshift.scheduling_flow_match",
}

__all__ = ["MedShiftPipeline", "FlowMatchODEScheduler", "__version__"]

if TYPE_CHECKING:
    from medshift.pipeline_medshift import MedShiftPipeline
    from medshift.scheduling_flow_match import FlowMatchODEScheduler


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medshift' has no attribute {name!r}")
