"""`PhantomConfig`: every option of `xdigiskull phantom`, in one place.

The typer command is generated from it (`xdigiskull.command_line.config_command`), so a default or a help text
lives here only; Python callers build the same config and pass it to `run_phantom`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xdigiskull.command_line import option

TEST_OBJECTS: tuple[str, ...] = ("edge",)


@dataclass
class PhantomConfig:
    """Options of one phantom run (see `xdigiskull.phantom.generate_exports` for what each does)."""

    out_dir: Path = field(metadata=option("Output folder for simulator/, azurion/, ground_truth/ and manifest.csv "
                                          "(created if missing).", argument=True, metavar="OUT_DIR"))
    views: int = field(default=10, metadata=option("Number of poses; each gives one export per class (standard "
                                                   "views first, then seeded variations).", min=1))
    seed: int = field(default=0, metadata=option("Seed of the anatomy, poses, noise and shutters; the same seed and "
                                                 "options give the same bytes."))
    detector: int = field(default=1024, metadata=option("Flat-detector pixels per side (the detector is 400 mm "
                                                        "wide).", min=128))
    frames: int = field(default=2, metadata=option("Frames per DICOM run, each with independent noise.", min=1))
    catheter: bool = field(default=False, metadata=option("Draw a radiopaque catheter in the carotid artery.",
                                                                        "--catheter/--no-catheter"))
    workers: int = field(default=2, metadata=option("Poses rendered at the same time (threads); the output does not "
                                                    "depend on it.", min=1))
    jitter: float = field(default=1.5, metadata=option("Largest deviation (deg) of the simulator's angles from the "
                                                       "real ones.", min=0.0, max=10.0))
    phantom_version: int = field(default=2, metadata=option(
        "2: fine anatomy at the detector pitch, the flat detector's MTF, and landmarks and a bone mask in the "
        "manifest; 1: the phantom the shipped model was trained on (unchanged, byte for byte).", min=1, max=2))
    test_object: str | None = field(default=None, metadata=option(
        "Render a test object instead of the head, in every class: 'edge' (a slanted tungsten edge on the detector, "
        "for MTF; one pose)."))

    def __post_init__(self) -> None:
        # the CLI checks ranges itself; Python callers get the same limits here, naming the option
        self.out_dir = Path(self.out_dir)
        for name, low in (("views", 1), ("detector", 128), ("frames", 1), ("workers", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if not 0.0 <= self.jitter <= 10.0:
            raise ValueError(f"jitter must be in [0, 10] degrees, got {self.jitter}")
        if self.phantom_version not in (1, 2):
            raise ValueError(f"phantom_version must be 1 or 2, got {self.phantom_version}")
        if self.test_object is not None and self.test_object not in TEST_OBJECTS:
            raise ValueError(f"test_object must be one of {', '.join(TEST_OBJECTS)}, got {self.test_object!r}")
