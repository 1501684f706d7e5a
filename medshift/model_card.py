"""Model cards (README.md with YAML metadata) for saved and pushed MedShift pipelines."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard, ModelCardData

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
"""


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


def make_model_card(
    pipeline: Any,
    dataset: str = "x-digiskull",
    metrics: dict[str, float] | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    training_notes: str | None = None,
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
    if metrics:
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
    )
    content = f"---\n{card_data.to_yaml()}\n---\n{body}"
    return ModelCard(content)
