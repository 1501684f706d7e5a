"""`medshift translate`: translate X-ray files and folders (PNG, TIFF, JPEG, DICOM), or a whole built
X-DigiSkull split, into a target domain.

`TranslateConfig` is the one home of the command's options: `medshift translate` has one option per field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from medshift.model_location import default_model
from xdigiskull.command_line import config_command, option
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
            raise ValueError(f"INPUT {item} does not exist")
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



FORMATS = ("png", "dicom")


@dataclass
class TranslateConfig:
    """Everything `medshift translate` needs, with its defaults; the command has one option per field."""

    target: str = field(metadata=option("Class to translate into, e.g. real_normal.", "--target", "-t", show_default=False))
    out: Path = field(metadata=option("Output folder: one PNG (or DICOM) per input file, or a dataset in the Hub layout for --dataset.", "--out", "-o", show_default=False))
    inputs: list[Path] | None = field(default=None, metadata=option("Image files (PNG, TIFF, JPEG, BMP), DICOM files or folders of them (or --dataset).", argument=True, show_default=False, metavar="INPUT"))
    dataset: str | None = field(default=None, metadata=option("A built X-DigiSkull (folder or Hub dataset id) to translate instead of files: the --source rows of --split become a dataset in the same layout, with provenance columns and a card."))
    split: str = field(default="train", metadata=option("Split of --dataset to translate."))
    source: str | None = field(default=None, metadata=option("Class of the inputs, e.g. synthetic_high (required with --dataset: the rows translated); unknown by default (unguided inversion)."))
    tau: float | None = field(default=None, metadata=option("Inversion time in (0, 1]: higher keeps structure, lower adds realism. Default: the model's recommended tau."))
    model: str | None = field(default=None, metadata=option("Saved MedShiftPipeline folder or Hub id. Default: $MEDSHIFT_MODEL, else the demo checkpoint."))
    revision: str | None = field(default=None, metadata=option("Revision (branch, tag or commit) of a Hub --model. Default: main."))
    guidance_scale: float | None = field(default=None, metadata=option("Classifier-free guidance weight of the generation. Default: the model's."))
    inversion_guidance_scale: float | None = field(default=None, metadata=option("Guidance weight of the inversion (1: the source class's own flow). Default: the model's."))
    steps: int | None = field(default=None, metadata=option("ODE steps over the whole [0, 1] interval (each direction uses the share (1 - tau)). Default: the model's."))
    solver: str | None = field(default=None, metadata=option("ODE solver: euler, midpoint, heun or rk4. Default: the model's."))
    encode: str = field(default="ode", metadata=option("'ode' (MedShift inversion) or 'noise' (SDEdit baseline)."))
    seed: int = field(default=0, metadata=option("Random seed (used by --encode noise; with --dataset row i uses seed + i)."))
    processing_resolution: int | None = field(default=None, metadata=option("Longer side at which the model works; default its training resolution (outputs are resized back to the input size)."))
    prepare: bool = field(default=True, metadata=option("Read files like the dataset builder: display conversion, crop to the exposed field, 780 x 780 (raw exports). --no-prepare: take images as they are (DICOM: field crop only).", "--prepare/--no-prepare"))
    format: str = field(default="png", metadata=option("Output of file inputs: 'png', or 'dicom' (a derived Secondary Capture for each DICOM input, PNG for the others)."))
    batch_size: int = field(default=8, metadata=option("Images per pipeline call with --dataset.", min=1))
    rows_per_shard: int = field(default=100, metadata=option("Rows per output shard with --dataset (the unit a killed run resumes from).", min=1))
    push_to_hub: str | None = field(default=None, metadata=option("With --dataset: publish the translated dataset to this Hub dataset repository (ORG/NAME) in one commit."))
    private: bool = field(default=False, metadata=option("Create the --push-to-hub repository as private."))
    token: str | None = field(default=None, metadata=option("Hub token for --push-to-hub (default: $HF_TOKEN, else the logged-in token).", envvar="HF_TOKEN", show_default=False, show_envvar=False))
    device: str | None = field(default=None, metadata=option("torch device, e.g. cpu or cuda. Default: cuda when available (with accelerate launch: each process's own)."))

    def __post_init__(self) -> None:
        self.inputs = list(self.inputs or [])
        if self.dataset is None and not self.inputs:
            raise ValueError("give at least one file or folder (INPUT), or --dataset")
        if self.dataset is not None and self.inputs:
            raise ValueError("give either files and folders (INPUT) or --dataset, not both")
        if self.dataset is not None and self.source is None:
            raise ValueError("--source is required with --dataset: the class of the rows to translate")
        if self.push_to_hub is not None and self.dataset is None:
            raise ValueError("--push-to-hub publishes a translated dataset: use it with --dataset")
        if self.tau is not None and not 0.0 < self.tau <= 1.0:
            raise ValueError(f"--tau must lie in (0, 1], got {self.tau}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.encode not in ("ode", "noise"):
            raise ValueError(f"--encode must be 'ode' or 'noise', got {self.encode!r}")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        for name in ("guidance_scale", "inversion_guidance_scale"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def model_error(model: str | None, error: Exception) -> typer.BadParameter | typer.Exit:
    """The error for a model that does not load: on --model when it was given, else on the default (printed)."""
    if model is not None:
        return typer.BadParameter(f"cannot load a MedShift pipeline from {model!r}: {error}", param_hint="--model")
    typer.echo(f"error: cannot load the default model ($MEDSHIFT_MODEL, else the demo checkpoint): {error}", err=True)
    return typer.Exit(code=1)


def load_pipeline(config: TranslateConfig, device: str | None) -> tuple[Any, str, str]:
    """The pipeline on `device` (cuda when available by default), its location and its revision; checks --target
    and --source."""
    import torch

    from medshift.dataset_translation import resolve_model
    from medshift.model_location import folder_revision
    from medshift.pipeline_medshift import MedShiftPipeline

    location = config.model or default_model()
    try:
        folder, revision = resolve_model(location, config.revision)
        pipe = MedShiftPipeline.from_pretrained(folder)
        revision = revision or folder_revision(folder)
    except (OSError, ValueError) as error:
        raise model_error(config.model, error) from None
    names = list(pipe.config.class_names)
    for hint, value in (("--target", config.target), ("--source", config.source)):
        if value is not None and value not in names:
            raise typer.BadParameter(f"unknown class {value!r}; valid classes: {', '.join(names)}", param_hint=hint)
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(disable=True)
    return pipe, location, revision


def dataset_settings(config: TranslateConfig, pipe: Any, location: str, revision: str) -> Any:
    """The `TranslationSettings` of a --dataset run, with the model's defaults filled in."""
    from medshift.translated_schema import TranslationSettings

    tau, guidance, inversion_guidance, solver, resolution, _restore_noise = pipe.check_inputs(
        config.tau, config.guidance_scale, config.steps, config.solver, config.encode, "np",
        config.processing_resolution, config.inversion_guidance_scale,
    )  # fmt: skip
    return TranslationSettings(
        source_dataset=str(config.dataset), split=config.split, source_class=str(config.source),
        target_class=config.target, model_id=location, model_revision=revision, tau=tau,
        guidance_scale=guidance, inversion_guidance_scale=inversion_guidance,
        num_inference_steps=int(config.steps or pipe.scheduler.config.num_inference_steps), solver=solver,
        encode=config.encode, processing_resolution=resolution, seed=config.seed,
        batch_size=config.batch_size, rows_per_shard=config.rows_per_shard,
    )  # fmt: skip


def run_dataset_translation(config: TranslateConfig) -> Path | None:
    """`medshift translate --dataset`: translate a split's --source rows into a dataset folder, then push it."""
    from accelerate import PartialState

    from medshift.dataset_translation import translate_dataset
    from xdigiskull.hub import push_to_hub, resolve_token

    if config.push_to_hub is not None:
        resolve_token(config.token)  # say it before hours of work, not after
    pipe, location, revision = load_pipeline(config, config.device or str(PartialState().device))
    out = translate_dataset(pipe, dataset_settings(config, pipe, location, revision), config.out)
    if out is not None and config.push_to_hub is not None:
        url = push_to_hub(out, config.push_to_hub, private=config.private, token=config.token, commit_message="Upload translated X-DigiSkull")
        typer.echo(f"pushed {out} to the dataset {config.push_to_hub} in one commit: {url}", err=True)
    return out


def run_file_translation(config: TranslateConfig) -> None:
    """`medshift translate INPUT...`: one output file per input; a file that fails is reported and the rest go on."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    pairs = collect_inputs(list(config.inputs or []))
    if not pairs:
        raise ValueError("INPUT: no image or DICOM files found in the given inputs")
    pipe, location, revision = load_pipeline(config, config.device)
    failures: list[str] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"translating to {config.target}", total=len(pairs))
        for path, relative in pairs:
            try:
                translate_file(pipe, config, (location, revision), path, config.out / relative)
            except (ValueError, OSError) as error:  # report and carry on with the next file
                failures.append(f"{path}: {error}")
                console.print(f"[red]failed[/red] {escape(str(path))}: {escape(str(error))}")
            progress.advance(task)
    console.print(f"translated {len(pairs) - len(failures)}/{len(pairs)} file(s) into {config.out}")
    if failures:
        raise typer.Exit(code=1)


def translate_file(pipe: Any, config: TranslateConfig, model: tuple[str, str], path: Path, target: Path) -> None:
    """Translate one file to `target`: a PNG (16-bit for DICOM and 16-bit inputs), or with --format dicom a derived
    DICOM (``.dcm``) for a DICOM input. `model` is the pipeline's (location, revision)."""
    import torch

    from medshift.translated_schema import sampling_arguments
    from medshift.image_processor import is_sixteen_bit_file, unit_to_pil
    from xdigiskull.prepare import load_prepared

    # raw exports are read as the builder reads them: exposed field, 780 x 780 (the dataset's geometry)
    image = load_prepared(path, frames="first")[0] if config.prepare else path
    result = pipe(
        image,
        target=config.target,
        source=config.source,
        num_inference_steps=config.steps,
        generator=torch.Generator(device="cpu").manual_seed(config.seed),
        output_type="np",
        **sampling_arguments(config),
    ).images[0, ..., 0]
    if config.format == "dicom" and is_dicom(path):
        from medshift.dicom_output import derived_secondary_capture

        tau = pipe.config.default_tau if config.tau is None else config.tau
        derived = derived_secondary_capture(path, result, model_id=model[0], model_revision=model[1], tau=tau, target=config.target)
        with atomic_write(target.with_suffix(".dcm")) as temporary:  # no half-written file is left
            derived.save_as(temporary, enforce_file_format=True)
    else:
        with atomic_write(target) as temporary:  # no half-written PNG is left
            unit_to_pil(result, is_sixteen_bit_file(path)).save(temporary, format="PNG")


def run_translate(config: TranslateConfig) -> None:
    """Translate files (and folders) or a dataset, as `config` says."""
    if config.dataset is not None:
        run_dataset_translation(config)
    else:
        run_file_translation(config)


translate = config_command("translate", TranslateConfig, run_translate, "Translate X-ray images, or one class of a built X-DigiSkull split, into the TARGET domain with a MedShift model, keeping the anatomy.")
