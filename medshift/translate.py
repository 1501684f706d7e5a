"""`medshift translate`: translate X-ray files and folders (PNG, TIFF, JPEG, DICOM) into a target domain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medshift.model_location import default_model
from xdigiskull.image_io import IMAGE_SUFFIXES, atomic_write, is_dicom


def collect_inputs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders into (file, output path relative to --out) pairs, in a stable order.

    Folders are searched recursively for image and DICOM files (by suffix, or by the DICOM 'DICM'
    marker for other files); their relative layout is kept under --out. Every output is a PNG.

    Args:
        inputs: files and folders given on the command line.
    """
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                if path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path):
                    pairs.append((path, path.relative_to(item).with_suffix(".png")))
        elif item.is_file():
            pairs.append((item, Path(item.name).with_suffix(".png")))
        else:
            raise typer.BadParameter(f"{item} does not exist", param_hint="INPUT")
    # two inputs with the same name would overwrite each other: number the later ones
    seen: set[Path] = set()
    unique: list[tuple[Path, Path]] = []
    for source, relative in pairs:
        candidate, n = relative, 1
        while candidate in seen:
            candidate = relative.with_name(f"{relative.stem}_{n}{relative.suffix}")
            n += 1
        seen.add(candidate)
        unique.append((source, candidate))
    return unique


def check_arguments(inputs: list[Path], tau: float | None, steps: int | None, encode: str) -> list[tuple[Path, Path]]:
    """Refuse bad options before the model loads; returns the (file, output path) pairs to translate."""
    if not inputs:
        raise typer.BadParameter("give at least one file or folder", param_hint="INPUT")
    pairs = collect_inputs(inputs)
    if not pairs:
        raise typer.BadParameter("no image or DICOM files found in the given inputs", param_hint="INPUT")
    if tau is not None and not 0.0 < tau <= 1.0:
        raise typer.BadParameter(f"must lie in (0, 1], got {tau}", param_hint="--tau")
    if steps is not None and steps < 1:
        raise typer.BadParameter(f"must be >= 1, got {steps}", param_hint="--steps")
    if encode not in ("ode", "noise"):
        raise typer.BadParameter(f"must be 'ode' or 'noise', got {encode!r}", param_hint="--encode")
    return pairs


def model_error(model: str | None, error: Exception) -> typer.BadParameter | typer.Exit:
    """The error for a model that does not load: on --model when it was given, else on the default (printed)."""
    if model is not None:
        return typer.BadParameter(f"cannot load a MedShift pipeline from {model!r}: {error}", param_hint="--model")
    typer.echo(f"error: cannot load the default model ($MEDSHIFT_MODEL, else the demo checkpoint): {error}", err=True)
    return typer.Exit(code=1)


def translate(
    inputs: Annotated[list[Path], typer.Argument(help="Image files (PNG, TIFF, JPEG, BMP), DICOM files or folders of them.", show_default=False)],
    target: Annotated[str, typer.Option("--target", "-t", help="Class to translate into, e.g. real_normal.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; one PNG per input (16-bit for DICOM and 16-bit inputs).", show_default=False)],
    source: Annotated[Optional[str], typer.Option(help="Class of the inputs, e.g. synthetic_high; unknown by default (unguided inversion).")] = None,
    tau: Annotated[Optional[float], typer.Option(help="Inversion time in (0, 1]: higher keeps structure, lower adds realism. Default: the model's recommended tau.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Saved MedShiftPipeline folder or Hub id. Default: $MEDSHIFT_MODEL, else the demo checkpoint.")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option(help="Classifier-free guidance weight of the generation. Default: the model's.")] = None,
    inversion_guidance_scale: Annotated[Optional[float], typer.Option(help="Guidance weight of the inversion (1: the source class's own flow). Default: the model's.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="ODE steps over the whole [0, 1] interval (each direction uses the share (1 - tau)). Default: the model's.")] = None,
    solver: Annotated[Optional[str], typer.Option(help="ODE solver: euler, midpoint, heun or rk4. Default: the model's.")] = None,
    encode: Annotated[str, typer.Option(help="'ode' (MedShift inversion) or 'noise' (SDEdit baseline).")] = "ode",
    seed: Annotated[int, typer.Option(help="Random seed (used by --encode noise).")] = 0,
    processing_resolution: Annotated[Optional[int], typer.Option(help="Longer side at which the model works; default its training resolution (outputs are resized back to the input size).")] = None,
    prepare: Annotated[bool, typer.Option("--prepare/--no-prepare", help="Read files like the dataset builder: display conversion, crop to the exposed field, 780 x 780 (raw exports). --no-prepare: take images as they are (DICOM: field crop only).")] = True,
    device: Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu or cuda. Default: cuda when available.")] = None,
) -> None:
    """Translate X-ray images into the TARGET domain with a MedShift model, keeping the anatomy."""
    import torch
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medshift.image_processor import is_sixteen_bit_file, unit_to_pil
    from medshift.pipeline_medshift import MedShiftPipeline
    from xdigiskull.prepare import load_prepared

    console = Console(stderr=True)
    pairs = check_arguments(inputs, tau, steps, encode)

    try:
        pipe = MedShiftPipeline.from_pretrained(model or default_model())
    except (OSError, ValueError) as error:
        raise model_error(model, error) from None
    names = list(pipe.config.class_names)
    for hint, value in (("--target", target), ("--source", source)):
        if value is not None and value not in names:
            raise typer.BadParameter(f"unknown class {value!r}; valid classes: {', '.join(names)}", param_hint=hint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    failures: list[str] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"translating to {target}", total=len(pairs))
        for path, relative in pairs:
            try:
                # raw exports are read as the builder reads them: exposed field, 780 x 780 (the dataset's geometry)
                image = load_prepared(path, frames="first")[0] if prepare else path
                result = pipe(
                    image,
                    target=target,
                    source=source,
                    tau=tau,
                    guidance_scale=guidance_scale,
                    inversion_guidance_scale=inversion_guidance_scale,
                    num_inference_steps=steps,
                    solver=solver,
                    encode=encode,
                    generator=torch.Generator(device="cpu").manual_seed(seed),
                    processing_resolution=processing_resolution,
                    output_type="np",
                ).images[0, ..., 0]
                with atomic_write(out / relative) as temporary:  # no half-written PNG is left
                    unit_to_pil(result, is_sixteen_bit_file(path)).save(temporary, format="PNG")
            except (ValueError, OSError) as error:  # report and carry on with the next file
                failures.append(f"{path}: {error}")
                console.print(f"[red]failed[/red] {escape(str(path))}: {escape(str(error))}")
            progress.advance(task)

    done = len(pairs) - len(failures)
    console.print(f"translated {done}/{len(pairs)} file(s) into {out}")
    if failures:
        raise typer.Exit(code=1)
