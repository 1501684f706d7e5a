"""`BuildConfig`: every setting of `xdigiskull build`, in one place.

The dataclass is what `xdigiskull.build.build_dataset` takes, and the `xdigiskull build` command is generated
from it (`xdigiskull.command_line.config_command`), so a default or a help text lives here only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from xdigiskull.command_line import option
from xdigiskull.deid import DEFAULT_SALT
from xdigiskull.processing import BuildOptions
from xdigiskull.writer import DEFAULT_MAX_SHARD_BYTES

# all cores: the build is CPU-bound, one worker process per core
DEFAULT_NUM_PROC = os.cpu_count() or 1


@dataclass
class BuildConfig:
    """The settings of one build (see `xdigiskull.build.build_dataset`). Each field's help is its CLI help."""

    raw_dir: Path = field(metadata=option("Folder of raw exports: simulator|azurion/<dose>/ or synthetic|real/<dose>/.", argument=True, metavar="RAW_DIR"))
    out: Path = field(default=Path("x-digiskull"), metadata=option("Dataset folder to write (load it with load_dataset(OUT)).", "--out", "-o"))
    labels: str = field(default="folders", metadata=option("'folders', a manifest .csv (file,class,...) or a rules .yaml (DICOM tags -> class)."))
    frames: str = field(default="first", metadata=option("Frames of multi-frame files: first, middle, all, or a 0-based index."))
    bit_depth: int = field(default=8, metadata=option("PNG bit depth: 8 (mode L) or 16 (mode I;16)."))
    size: int = field(default=780, metadata=option("Output side in pixels."))
    split: str = field(default="0.8,0.1,0.1", metadata=option("train,validation,test fractions; each pose (pair id, else view) goes to the split its keyed hash falls in, so it stays there when files are added."))
    seed: int = field(default=0, metadata=option("Key of the split hash and of the row order."))
    num_proc: int = field(default=DEFAULT_NUM_PROC, metadata=option("Worker processes (default: all cores). Files are read in worker processes, so a decoder that crashes costs only its file (a build of 8 files or fewer works in this process)."))
    strict: bool = field(default=False, metadata=option("Stop at the first file or frame that cannot be used.", "--strict"))
    allow_upscale: bool = field(default=False, metadata=option("Enlarge exposed fields smaller than --size instead of skipping them.", "--allow-upscale"))
    mask_burned_in: bool = field(default=False, metadata=option("Mask corners with burned-in text instead of skipping the frame.", "--mask-burned-in"))
    resume: bool = field(default=False, metadata=option("Continue a killed build of the same inputs and settings into --out, decoding only the files it had not finished (without it, a half-build is discarded).", "--resume"))
    report: Path | None = field(default=None, metadata=option("JSON build report path [default: <OUT>.report.json beside OUT]."))
    salt: str = field(default=DEFAULT_SALT, metadata=option("Secret salt of the source ids (or XDIGISKULL_SALT).", envvar="XDIGISKULL_SALT", show_default=False))
    decoder_plugins: str = field(default="", metadata=option("Comma-separated Python modules imported in every worker before it reads a file (e.g. to register a pydicom pixel-data decoder plugin).", show_default=False))
    max_shard_bytes: int = field(default=DEFAULT_MAX_SHARD_BYTES, metadata=option("Image bytes per parquet shard.", min=1))

    def image_options(self) -> BuildOptions:
        """The per-image settings the workers apply (all recorded in the card's provenance)."""
        return BuildOptions(self.frames, self.bit_depth, self.size, self.allow_upscale, self.mask_burned_in, self.salt)

    def plugin_modules(self) -> tuple[str, ...]:
        """`decoder_plugins` as a tuple of module names."""
        return tuple(name.strip() for name in self.decoder_plugins.split(",") if name.strip())
