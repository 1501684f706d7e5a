"""Model cards (README.md with YAML metadata) for saved and pushed MedShift pipelines.

A card is generated, never edited by hand: from the pipeline's config and components, its ``lineage.json``
(`medshift.lineage`: the training-procedure table) and its ``evaluation.json`` (the ``results.json`` of
`medshift evaluate`: the evaluation table). `python scripts/make_model_card.py FOLDER` regenerates a saved
pipeline's README.md from those files.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from medshift.lineage import held_out_seeds, load_lineage, seed_ranges, training_procedure_table, training_seeds

EVALUATION_FILE = "evaluation.json"

CARD_TAGS = ["medical-imaging", "x-ray", "flow-matching", "domain-adaptation", "medshift", "image-to-image"]

# the card's text below its YAML header; `make_model_card` fills the fields
CARD_BODY = """
# MedShift: sim-to-real X-ray translation

Class-conditional latent flow matching (MedShift, AIM 2025 / ICCV Workshops) as a
`diffusers` pipeline. An input X-ray is encoded by the VAE, its latent is carried back along the flow
to time tau (inversion), then forward again conditioned on the target class, and decoded: the
appearance (noise, contrast, processing) of the target domain, the anatomy of the input.

## Usage

```python
from medshift import MedShiftPipeline

pipe = MedShiftPipeline.from_pretrained("{location}")
out = pipe("synthetic.png", target="real_normal", source="synthetic_high", tau={tau})
out.images[0].save("translated.png")
```

From the command line: `medshift translate INPUT... --target real_normal --tau {tau} --model {location} --out translated/`.

Recommended tau: **{tau}** (higher keeps more structure, lower gives more realism; the paper reports
0.6, 0.45 and 0.3). Default guidance scale: {guidance_scale} (generation); inversion: {inversion_guidance}.

## Classes

{class_lines}
- `{null_index}`: null class (unconditional, for classifier-free guidance)

## Model

- VAE: `{vae_class}`, {vae_params:.1f}M parameters, {vae_in} input channel(s),
  {vae_latent} latent channels, scaling factor {scaling_factor:.5g}.
- UNet: `UNet2DModel`, {unet_params:.1f}M parameters, channels {unet_channels}, {unet_layers} layer(s) per down block.
- Scheduler: `FlowMatchODEScheduler` ({solver}, {steps} steps over [0, 1]){noise}.
- Training resolution: {resolution} px; larger inputs are processed at this resolution and
  resized back (see the `processing_resolution` argument).

## Training data

Trained on `{dataset}` (X-DigiSkull: aligned synthetic and real skull X-rays at several dose levels,
780x780 grey images).{training_notes}
{training_procedure}
## Evaluation

{metric_lines}

## Limitations

- Research software: **not for clinical use**. Outputs are generated images and may add or remove
  structures; never use them for diagnosis.
- Trained on skull X-rays of one domain pair (a simulator and one C-arm system); other anatomy,
  systems or acquisition settings are out of distribution.
- Fine detail above the training resolution is not synthesised: large inputs are translated at
  the training resolution and resized back.
- Low tau changes more of the image, including anatomy; check the structure against the input.
{extra_limitations}"""


def inversion_guidance_text(scale: float | None) -> str:
    """How the card words the inversion's guidance weight."""
    if scale is None:
        return "the generation's guidance scale"
    return "unguided, along the source class's flow" if scale == 1.0 else f"guidance scale {scale:g}"


def _num_params(module: Any) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _noise_text(noise_offset: float, coarse_noise: list[float] | None = None) -> str:
    parts = []
    if noise_offset:
        parts.append(f"offset noise {noise_offset:g} (a per-channel constant added to the Gaussian noise)")
    if coarse_noise and any(coarse_noise):
        levels = ", ".join(f"{weight:g} at 1/{2**level}" for level, weight in enumerate(coarse_noise, start=1) if weight)
        parts.append(f"coarse noise ({levels} of the latent's side, upsampled)")
    if not parts:
        return ""
    return f"; trained with {' and '.join(parts)}, which SDEdit's noise follows"


def _evaluation_row(label: str, ssim: float | None, psnr: float | None, fd: float | None = None,
                    source_ssim: float | None = None, evaluations: int | None = None) -> str:
    def cell(value: float | int | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    return (f"| {label} | {cell(fd, 1)} | {cell(source_ssim, 3)} | {cell(ssim, 3)} | {cell(psnr, 2)} | "
            f"{cell(evaluations, 0)} |")  # fmt: skip


def evaluation_command(results: dict[str, Any]) -> str:
    """The `medshift evaluate` command line that produced `results` (its config's options)."""
    config = results["config"]
    parts = ["medshift evaluate", f"--model {config['model']}"]
    if "phantom_seed" in config:
        parts += [f"--phantom-seed {config['phantom_seed']}", f"--phantom-views {config['phantom_views']}",
                  f"--phantom-version {config.get('phantom_version', 1)}"]  # results without it predate phantom v2
    else:
        parts += [f"--dataset {config['dataset']}", f"--split {config['split']}"]
    parts += [f"--steps {config['num_inference_steps']}", "--taus " + ",".join(f"{tau:g}" for tau in config["taus"])]
    if "reconstruction_ceiling" in results:
        parts.append("--reconstruction-ceiling")
    if config.get("sdedit_steps") == "matched network evaluations":
        parts.append("--match-evaluations")
    if config.get("goals"):
        parts.append(f"--goals {config['goals']}")
    return " ".join(parts + ["--out eval"])


def shell_lines(command: str, width: int = 118) -> list[str]:
    """A long command as shell lines of at most `width` characters, continued with backslashes."""
    lines = [""]
    for option in command.replace(" --", "\0--").split("\0"):
        if lines[-1] and len(lines[-1]) + len(option) + 3 > width:
            lines[-1] += " \\"
            lines.append("  ")
        lines[-1] += ("" if lines[-1].strip() == "" else " ") + option
    return lines


def evaluation_table(results: dict[str, Any]) -> list[str]:
    """The figures of a `medshift evaluate` results.json as a short Markdown table, a line on how they were
    measured, and the goals' verdict: the model card's "Evaluation" and the README's "Results"."""
    config, names = results["config"], {"fd": "CFID" if str(results["backbones"]["fd"]).startswith("inception") else "FD"}
    head = config.get("phantom_seed")
    version = config.get("phantom_version", 1)  # results without it predate phantom v2
    data = (f"phantom v{version} head {head} ({results['counts']['source_images']} poses, no training stage's)" if head is not None
            else f"`{config['dataset']}` split {config['split']} ({results['counts']['source_images']} images)")  # fmt: skip
    lines = [
        f"| method | {names['fd']} ↓ | SSIM to input ↑ | paired SSIM ↑ | paired PSNR (dB) ↑ | network evaluations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(_evaluation_row(row["label"], row["paired"]["ssim"], row["paired"]["psnr"], row["fd"], row["ssim"],
                                     row.get("network_evaluations")))  # fmt: skip
    for name, figures in results.get("reconstruction_ceiling", {}).items():
        label = (f"VAE reconstruction, {figures['processing_resolution']} px" if "processing_resolution" in figures
                 else f"a real acquisition of the pose ({config['target']})")  # fmt: skip
        lines.append(_evaluation_row(label, figures["ssim"], figures["psnr"]))
    text = (
        f"{config['source']} → {config['target']} on {data}, {config['image_size']} px, {config['num_inference_steps']} "
        f"steps, guidance {config['guidance_scale']:g} (inversion {config['inversion_guidance_scale']:g}); "
        + ("SDEdit at MedShift's network evaluations. " if config.get("sdedit_steps") == "matched network evaluations" else "")
        + "Paired: against the noise-free render of the same pose."
    )  # fmt: skip
    if "goals" in results:
        passed = sum(goal["passed"] for goal in results["goals"])
        text += f" Goals (`{config['goals']}`): {passed} of {len(results['goals'])} pass."
    return [*lines, "", *textwrap.wrap(text, 120, break_on_hyphens=False), "", "```bash", *shell_lines(evaluation_command(results)), "```"]


def _training_procedure(lineage: dict[str, Any] | None) -> str:
    if lineage is None:
        return ""
    notes = [f"- {note}" for note in lineage.get("notes", [])]
    return "\n".join([
        "",
        "### Training procedure",
        "",
        f"Training heads (phantom seeds): {seed_ranges(training_seeds(lineage))}. Held out: validation "
        f"{seed_ranges(lineage['validation_seeds'])}, evaluation {seed_ranges(lineage['evaluation_seeds'])} "
        f"({len(held_out_seeds(lineage))} heads no stage trained on). Every stage's command is in `lineage.json`.",
        "",
        *(f"- {key.replace('_', ' ').capitalize()}: {value}" for key, value in lineage.get("data", {}).items()),
        "",
        *training_procedure_table(lineage),
        "",
        *notes,
        "",
    ])  # fmt: skip


def wrap_prose(text: str, width: int = 120) -> str:
    """Markdown with its prose lines wrapped at `width` (list items indented under their dash); tables,
    headings and fenced code stay as they are."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or len(line) <= width or line.startswith(("|", "#", "```")):
            lines.append(line)
            continue
        indent = "  " if line.startswith("- ") else ""
        lines.append(textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def make_model_card(
    pipeline: Any,
    dataset: str = "x-digiskull",
    metrics: dict[str, float] | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    training_notes: str | None = None,
    lineage: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    limitations: list[str] | None = None,
) -> ModelCard:
    """Generate the model card of a `MedShiftPipeline`.

    Args:
        pipeline: the `MedShiftPipeline` described (its config and component sizes fill the card).
        dataset: dataset id (Hub id or name) the model was trained on.
        metrics: evaluation figures to list, e.g. {"CFID (tau=0.45)": 195.2, "SSIM (tau=0.45)": 0.85};
            None says that no evaluation was recorded.
        repo_id: Hub id used in the usage snippet; None uses a local folder placeholder.
        license: license identifier for the YAML header.
        training_notes: free text about how the weights were trained (commands, hardware, steps).
        lineage: the weights' lineage (`medshift.lineage.load_lineage`): a training-procedure table.
        evaluation: a `medshift evaluate` results.json: the evaluation table (instead of `metrics`).
        limitations: further limitations of these weights, one Markdown line each.

    Returns:
        A `huggingface_hub.ModelCard`; `str(card)` is the README text, `card.save(path)` writes it.
    """
    config = pipeline.config
    class_names = list(config.class_names)
    tau = float(config.default_tau)
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="image-to-image",
        license=license,
        tags=CARD_TAGS,
        datasets=[dataset],
        class_names=class_names,
        recommended_tau=tau,
        tau_range=[0.3, 0.6],
        training_resolution=int(config.resolution),
    )
    class_lines = "\n".join(f"- `{index}`: `{name}`" for index, name in enumerate(class_names))
    if evaluation is not None:
        metric_lines = "\n".join(evaluation_table(evaluation))
    elif metrics:
        metric_lines = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items())
    else:
        metric_lines = "No evaluation has been recorded for these weights yet (see `medshift evaluate`)."
    vae, unet, scheduler = pipeline.vae, pipeline.unet, pipeline.scheduler
    body = CARD_BODY.format(
        location=repo_id or "path/to/this/folder",
        tau=tau,
        guidance_scale=float(config.default_guidance_scale),
        inversion_guidance=inversion_guidance_text(config.default_inversion_guidance_scale),
        class_lines=class_lines,
        null_index=len(class_names),
        vae_class=type(vae).__name__,
        vae_params=_num_params(vae),
        vae_in=vae.config.in_channels,
        vae_latent=vae.config.latent_channels,
        scaling_factor=vae.config.scaling_factor,
        unet_params=_num_params(unet),
        unet_channels=tuple(unet.config.block_out_channels),
        unet_layers=unet.config.layers_per_block,
        solver=scheduler.config.solver,
        steps=scheduler.config.num_inference_steps,
        noise=_noise_text(float(scheduler.config.get("noise_offset", 0.0)), scheduler.config.get("coarse_noise")),
        resolution=int(config.resolution),
        dataset=dataset,
        training_notes=(" " + training_notes) if training_notes else "",
        metric_lines=metric_lines,
        training_procedure=_training_procedure(lineage),
        extra_limitations="".join(f"- {line}\n" for line in limitations or []),
    )
    content = f"---\n{card_data.to_yaml()}\n---\n{wrap_prose(body)}"
    return ModelCard(content)


def write_model_card(pipeline: Any, folder: str | Path, dataset: str = "x-digiskull") -> Path:
    """Regenerate `folder`/README.md for `pipeline` (the pipeline saved there) from the folder's lineage.json and
    evaluation.json (either may be missing), with the limitations the lineage lists. Returns the card's path."""
    folder = Path(folder)
    lineage = load_lineage(folder)
    evaluation_path = folder / EVALUATION_FILE
    evaluation = json.loads(evaluation_path.read_text(encoding="utf-8")) if evaluation_path.is_file() else None
    limitations = lineage.get("limitations") if lineage else None
    card = make_model_card(pipeline, dataset=dataset, lineage=lineage, evaluation=evaluation, limitations=limitations)
    card.save(folder / "README.md")
    return folder / "README.md"
