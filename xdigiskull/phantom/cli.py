"""`xdigiskull phantom`: write phantom raw exports from the command line (options: `PhantomConfig`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from xdigiskull.command_line import config_command
from xdigiskull.phantom.phantom_config import PhantomConfig


def run_phantom(config: PhantomConfig, progress: bool = True) -> Path:
    """Render the phantom run `config` describes and return its output folder.

    Args:
        config: the run's options.
        progress: show a progress bar.
    """
    from xdigiskull.phantom.export import generate_exports  # scipy and the renderer load only when used

    return generate_exports(config.out_dir, views=config.views, seed=config.seed, detector=config.detector,
                            frames=config.frames, catheter=config.catheter, jitter_deg=config.jitter,
                            workers=config.workers, progress=progress, version=config.phantom_version,
                            test_object=config.test_object)


def _run_and_report(config: PhantomConfig) -> None:
    start = time.perf_counter()
    out = run_phantom(config)
    seconds = time.perf_counter() - start
    poses = 1 if config.test_object else config.views
    typer.echo(f"wrote {5 * poses} exports ({poses} poses x 5 classes) to {out} in {seconds:.1f} s; "
               f"manifest: {out / 'manifest.csv'}")


phantom = config_command("phantom", PhantomConfig, _run_and_report, "Render the skull phantom as simulator screen "
                         "captures and Azurion-like DICOM runs, with ground truth.")
