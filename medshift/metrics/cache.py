"""Where the metrics' converted backbone weights live, and whether `medshift weights fetch` made them.

The feature extractors (`medshift.metrics.inception`, `medshift.metrics.lpips`) read the cache through this
module; `medshift.metrics.fetch` writes it. Keeping the location here lets the writer import the extractors
(it converts into their state dicts) without the extractors importing the writer.
"""

from __future__ import annotations

import os
from pathlib import Path

INCEPTION_FILE = "inception-v3-fid.safetensors"
LPIPS_FILE = "lpips-alex.safetensors"
MANIFEST_FILE = "manifest.json"


def cache_dir() -> Path:
    """Where converted weights live: ``$MEDSHIFT_CACHE``, else ``$HF_HOME/medshift``, else ``~/.cache/medshift``."""
    if os.environ.get("MEDSHIFT_CACHE"):
        return Path(os.environ["MEDSHIFT_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "medshift"
    return Path.home() / ".cache" / "medshift"


def cached_weights(name: str, directory: Path | None = None) -> Path | None:
    """Path of a converted weights file (`INCEPTION_FILE`, `LPIPS_FILE`) when the fetch step made it, else None."""
    path = (directory or cache_dir()) / name
    return path if path.is_file() and (path.parent / MANIFEST_FILE).is_file() else None
