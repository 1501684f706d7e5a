"""`xdigiskull phantom`: write phantom raw exports from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def phantom(
    out_dir: Annotated[Path, typer.Argument(help="Output folder for simulator/, azurion/, ground_truth/ and "
                                                 "manifest.csv (created if missing).")],
    views: Annotated[int, typer.Option("--views", min=1, help="Number of poses; each gives one export per class "
                                                              "(standard views first, then seeded variations).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the anatomy, poses, noise and shutters; the same "
                                                     "seed and options give the same bytes.")] = 0,
    detector: Annotated[int, typer.Option("--detector", min=128, help="Flat-detector pixels per side (the detector "
                                                                      "is 400 mm wide).")] = 1024,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per DICOM run, each with independent "
                                                                "noise.")] = 2,
    catheter: Annotated[bool, typer.Option("--catheter/--no-catheter", help="Draw a radiopaque catheter in the "
                                                                           "carotid artery.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Poses rendered at the same time (threads); "
                                                                 "the output does not depend on it.")] = 2,
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, max=10.0, help="Largest deviation (deg) of the "
                                                                              "simulator's angles from the real "
                                                                              "ones.")] = 1.5,
    phantom_version: Annotated[int, typer.Option("--phantom-version", min=1, max=2, help="1: the phantom the "
                                                 "shipped model was trained on (unchanged, byte for byte); 2: fine "
                                                 "anatomy at the detector pitch, the flat detector's MTF, and "
                                                 "landmarks and a bone mask in the manifest.")] = 1,
    test_object: Annotated[str | None, typer.Option("--test-object", help="Render a test object instead of the "
                                                    "head, in every class: 'edge' (a slanted tungsten edge on the "
                                                    "detector, for MTF; one pose).")] = None,
) -> None:
    """Render the skull phantom as simulator screen captures and Azurion-like DICOM runs, with ground truth."""
    from xdigiskull.phantom.export import generate_exports  # scipy and the renderer load only when used

    start = time.perf_counter()
    try:
        out = generate_exports(out_dir, views=views, seed=seed, detector=detector, frames=frames, catheter=catheter,
                               jitter_deg=jitter, workers=workers, version=phantom_version, test_object=test_object)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    seconds = time.perf_counter() - start
    poses = 1 if test_object else views
    typer.echo(f"wrote {5 * poses} exports ({poses} poses x 5 classes) to {out} in {seconds:.1f} s; "
               f"manifest: {out / 'manifest.csv'}")
