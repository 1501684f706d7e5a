"""`medshift train-vae`: a small single-channel autoencoder for grey X-rays.

The paper uses a pretrained RGB VAE from the Hub; offline we train our own: by default the small
`AutoencoderDC` of `medshift.models.demo_vae_config`, or an `AutoencoderKL` (`--vae-config kl`, or any
JSON config). Loss, per pixel:

    L1(x̂, x) + edge_weight · L1(∇x̂, ∇x) [+ kl_weight · KL(q(z|x) || N(0, I)) / pixels for an AutoencoderKL]

(the KL is summed over the latent and divided by the image's pixel count, so kl_weight means
the same as in latent-diffusion autoencoders, where 1e-6 is usual; AutoencoderDC is deterministic and
has no KL term). The edge term keeps bone edges and noise texture sharp where plain L1 blurs. Training
uses random crops of the images resized to --resolution (780, X-DigiSkull's own size, keeps them native):
the VAE is fully convolutional, and crops make CPU steps affordable. AutoencoderDC normalises each
pixel on its own, so crop training carries over to whole images exactly; AutoencoderKL's GroupNorm does
not (see `medshift.models.kl_vae_config`).

`--init-vae` starts from a trained autoencoder; with `--decoder-only` the encoder is frozen and the scaling
factor kept, so the latents a UNet learnt stay exactly as they were and only their decoding changes: the
shipped decoder was fine-tuned that way at the UNet's 512 px, where the 780 px-trained one decoded softer.

When training ends, `scaling_factor` is set to 1 / std of the latents of the training images
(so flow matching sees unit-variance latents) and the VAE is saved with `save_pretrained`
(safetensors), ready for `medshift train --vae OUTPUT_DIR` (a `--decoder-only` run keeps the one it started from).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from medshift.training.common import (
    LossLog,
    infinite_batches,
    make_optimizer,
    optimizer_step,
    resume_training,
    start_accelerator,
    TimeBudget,
    save_checkpoint,
    save_stopped_run,
    save_grid,
)
from medshift.models import make_autoencoder
from medshift.training.latents import load_vae
from medshift.training.data import (
    StreamingXDigiSkullImages,
    XDigiSkullImages,
    has_split,
    load_split,
    pick_examples,
    prepare_example,
)
from medshift.vae_codec import Autoencoder, downsampling_factor, encode_unscaled, vae_input, vae_output
from xdigiskull.command_line import config_command, option

LOG_FIELDS = ["step", "loss", "l1", "edge", "kl", "lr", "seconds"]


@dataclass
class VaeTrainConfig:
    """Everything `run_vae_training` needs, with its defaults; `medshift train-vae` has one option per field."""

    dataset: str = field(metadata=option("Built X-DigiSkull: local folder or Hugging Face Hub dataset id."))
    output_dir: str = field(metadata=option("Where the trained autoencoder (and checkpoints/) is written."))
    resolution: int = field(default=256, metadata=option("Images are resized (INTER_AREA) to this side before cropping; 780 keeps X-DigiSkull's own pixels."))
    crop_size: int = field(default=128, metadata=option("Side of the random training crops (a multiple of the VAE's factor, 8 for the demo VAEs)."))
    vae_config: str | dict = field(default="demo", metadata=option("'demo' (AutoencoderDC), 'kl' (the first demo AutoencoderKL) or a JSON file of AutoencoderKL/AutoencoderDC arguments."))
    init_vae: str | None = field(default=None, metadata=option("Start from this autoencoder's weights instead of a fresh --vae-config one: a `medshift train-vae` folder, a saved MedShiftPipeline (its vae/) or a Hub id."))
    decoder_only: bool = field(default=False, metadata=option("With --init-vae: freeze the encoder and keep its scaling factor, training the decoder alone. The latents stay exactly those a UNet was trained on, so the new decoder can replace a pipeline's (e.g. sharper decoding at the UNet's --resolution)."))
    train_split: str = field(default="train", metadata=option("Split to train on."))
    validation_split: str = field(default="validation", metadata=option("Split the reconstruction grid takes its inputs from."))
    batch_size: int = field(default=8, metadata=option("Batch size per process.", min=1))
    max_steps: int = field(default=2000, metadata=option("Optimiser steps in total.", min=1))
    max_minutes: float | None = field(default=None, metadata=option("Stop after this many minutes of training (then save as at the end); none: no limit."))
    learning_rate: float = field(default=4e-4, metadata=option("AdamW peak learning rate."))
    warmup_steps: int = field(default=50, metadata=option("Linear learning-rate warmup steps.", min=0))
    lr_schedule: str = field(default="cosine", metadata=option("diffusers schedule name: cosine, constant_with_warmup, linear, ..."))
    weight_decay: float = field(default=0.0, metadata=option("AdamW weight decay."))
    kl_weight: float = field(default=1e-6, metadata=option("Weight of the KL term of an AutoencoderKL (KL summed over the latent, per image pixel)."))
    edge_weight: float = field(default=0.5, metadata=option("Weight of the L1 loss on image gradients (0 disables)."))
    max_grad_norm: float = field(default=1.0, metadata=option("Gradient clipping norm (0 disables)."))
    mixed_precision: str = field(default="auto", metadata=option("auto (bf16/fp16 on GPU, fp32 on CPU), no, fp16 or bf16."))
    flip: bool = field(default=True, metadata=option("Random left-right flips."))
    streaming: bool = field(default=False, metadata=option("Stream the dataset instead of downloading it whole."))
    num_workers: int = field(default=0, metadata=option("DataLoader workers.", min=0))
    checkpoint_every: int = field(default=500, metadata=option("Save the training state every N steps (0: only at the end).", min=0))
    checkpoints_total_limit: int = field(default=2, metadata=option("Keep only the newest N checkpoints (0 keeps all)."))
    resume: str | None = field(default=None, metadata=option("'latest' (newest checkpoint in OUTPUT_DIR) or a checkpoint folder."))
    num_sample_images: int = field(default=4, metadata=option("Validation images in the reconstruction grid (0: none).", min=0))
    scaling_images: int = field(default=64, metadata=option("Training images whose latents set the scaling factor (1 / their std).", min=1))
    log_every: int = field(default=10, metadata=option("Write the losses to OUTPUT_DIR/train_vae_log.csv every N steps.", min=1))
    seed: int = field(default=0, metadata=option("Random seed."))
    show_progress: bool = field(default=True, metadata=option("Show progress bars."))


@dataclass
class VaeTrainResult:
    vae: Autoencoder
    global_step: int
    losses: list[float] = field(default_factory=list)


def vae_config_for(name: str | dict) -> dict:
    """Resolve `--vae-config`: "demo", "kl", a JSON file of AutoencoderKL/AutoencoderDC arguments, or a dict."""
    from medshift.models import demo_vae_config, kl_vae_config

    if isinstance(name, dict):
        return dict(name)
    if name in ("demo", "kl"):
        return demo_vae_config() if name == "demo" else kl_vae_config()
    if Path(name).is_file():
        return json.loads(Path(name).read_text())
    raise ValueError(f"--vae-config must be 'demo', 'kl' or a JSON file, got {name!r}")


def image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y (the edge loss compares these)."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


class VaeWithLoss(torch.nn.Module):
    """The VAE plus its training loss in `forward`, so that DDP (which syncs gradients of what runs
    through its wrapper's forward) sees the encoder and the decoder in one call."""

    def __init__(self, vae: Autoencoder, kl_weight: float, edge_weight: float, decoder_only: bool = False):
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight
        self.edge_weight = edge_weight
        self.decoder_only = decoder_only

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction (L1 + edge) and KL terms for one batch of grey pixels in [-1, 1]."""
        if self.decoder_only:  # the frozen encoder's latents, as the UNet sees them (the posterior mean for KL)
            with torch.no_grad():
                latent, kl = encode_unscaled(self.vae, pixels), pixels.new_zeros(())
        elif isinstance(self.vae, AutoencoderKL):
            posterior = self.vae.encode(vae_input(self.vae, pixels)).latent_dist
            latent = posterior.sample()
            kl = posterior.kl().float().mean() / pixels[0].numel()  # summed over the latent, per image pixel
        else:  # deterministic autoencoder: no posterior, no KL
            latent, kl = encode_unscaled(self.vae, pixels), pixels.new_zeros(())
        reconstruction = vae_output(self.vae, self.vae.decode(latent).sample).float()
        l1 = F.l1_loss(reconstruction, pixels)
        edge = sum(F.l1_loss(a, b) for a, b in zip(image_gradients(reconstruction), image_gradients(pixels)))
        return {"loss": l1 + self.edge_weight * edge + self.kl_weight * kl, "l1": l1, "edge": edge, "kl": kl}


@torch.no_grad()
def latent_std(vae: Autoencoder, data, resolution: int, count: int, batch_size: int = 8) -> float:
    """Standard deviation of the (unscaled) latents (posterior means) of the first `count` images."""
    values, batch = [], []

    def flush() -> None:
        values.append(encode_unscaled(vae, torch.stack(batch).to(vae.device)).float().cpu())
        batch.clear()

    for index, example in enumerate(data):
        if index >= count:
            break
        batch.append(prepare_example(example, resolution)["pixel_values"])
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return float(torch.cat(values).std())


@torch.no_grad()
def save_reconstructions(vae: Autoencoder, examples: list[dict], resolution: int, path: Path) -> Path:
    """Grid: originals on the top row, reconstructions below."""
    pixels = torch.stack([prepare_example(example, resolution)["pixel_values"] for example in examples]).to(vae.device)
    height, width = pixels.shape[-2:]  # the latents cover the image padded to the VAE's factor
    recon = vae_output(vae, vae.decode(encode_unscaled(vae, pixels)).sample)[..., :height, :width]
    to_unit = lambda x: ((x.squeeze(0).float().cpu().numpy() + 1.0) / 2.0)  # noqa: E731
    return save_grid([[to_unit(x) for x in pixels], [to_unit(x) for x in recon]], path)


def vae_dataloader(config: VaeTrainConfig) -> torch.utils.data.DataLoader:
    """Random crops (and flips) of the downscaled training images, streamed or shuffled."""
    data = load_split(config.dataset, config.train_split, streaming=config.streaming)
    if config.streaming:
        images = StreamingXDigiSkullImages(data, config.resolution, crop_size=config.crop_size, flip=config.flip, seed=config.seed)
        return torch.utils.data.DataLoader(images, batch_size=config.batch_size, num_workers=config.num_workers)
    images = XDigiSkullImages(data, config.resolution, crop_size=config.crop_size, flip=config.flip)
    return torch.utils.data.DataLoader(
        images, batch_size=config.batch_size, shuffle=True, drop_last=len(images) >= config.batch_size, num_workers=config.num_workers
    )


def run_vae_training(config: VaeTrainConfig) -> VaeTrainResult:
    """Train the VAE as configured and save it to `config.output_dir` (diffusers format, safetensors)."""
    if config.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {config.max_steps}")
    if config.crop_size > config.resolution:
        raise ValueError(f"crop_size ({config.crop_size}) must not exceed resolution ({config.resolution})")
    output_dir = Path(config.output_dir)
    accelerator = start_accelerator(config)
    if config.decoder_only and not config.init_vae:
        raise ValueError("--decoder-only fine-tunes the decoder of --init-vae: give --init-vae too")
    vae = load_vae(config.init_vae).requires_grad_(True) if config.init_vae else make_autoencoder(vae_config_for(config.vae_config))
    factor = downsampling_factor(vae)
    if config.crop_size % factor:
        raise ValueError(f"crop_size ({config.crop_size}) must be a multiple of the VAE's downsampling factor {factor}")
    vae.train()
    if config.decoder_only:
        vae.encoder.eval().requires_grad_(False)
        for name in ("quant_conv",):  # AutoencoderKL's latent projection belongs to the encoder side
            if getattr(vae, name, None) is not None:
                getattr(vae, name).requires_grad_(False)

    dataloader = vae_dataloader(config)
    model = VaeWithLoss(vae, config.kl_weight, config.edge_weight, config.decoder_only)
    optimizer, lr_scheduler = make_optimizer([p for p in model.parameters() if p.requires_grad], config, accelerator)
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    global_step = resume_training(accelerator, output_dir, config.resume)
    log = LossLog(output_dir / "train_vae_log.csv", LOG_FIELDS, resume_step=global_step or None) if accelerator.is_main_process else None

    progress = tqdm(total=config.max_steps, initial=global_step, desc="train-vae", disable=not (config.show_progress and accelerator.is_local_main_process))
    losses: list[float] = []
    batches = infinite_batches(dataloader, accelerator, global_step)
    started = time.perf_counter()
    budget = TimeBudget(config.max_minutes, accelerator)
    while global_step < config.max_steps:
        terms = model(next(batches)["pixel_values"])
        optimizer_step(accelerator, model, terms["loss"], optimizer, lr_scheduler, config.max_grad_norm)
        global_step += 1
        values = {key: accelerator.gather(value.detach()).mean().item() for key, value in terms.items()}
        losses.append(values["loss"])
        progress.update(1)
        progress.set_postfix(l1=f"{values['l1']:.4f}", edge=f"{values['edge']:.4f}")
        if log is not None and (global_step % config.log_every == 0 or global_step == config.max_steps):
            log.write(step=global_step, lr=lr_scheduler.get_last_lr()[0], seconds=round(time.perf_counter() - started, 3), **values)
        if config.checkpoint_every > 0 and (global_step % config.checkpoint_every == 0 or global_step == config.max_steps):
            save_checkpoint(accelerator, output_dir, global_step, config.max_steps, "vae", config.checkpoints_total_limit)
        if budget.exhausted():  # checked after a step, so every run trains at least one
            break
    progress.close()
    save_stopped_run(accelerator, output_dir, global_step, config, "vae")

    accelerator.wait_for_everyone()
    vae = accelerator.unwrap_model(model).vae.eval()
    if accelerator.is_main_process:
        save_vae(vae, config)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return VaeTrainResult(vae=vae, global_step=global_step, losses=losses)


def save_vae(vae: Autoencoder, config: VaeTrainConfig) -> None:
    """Set the scaling factor for unit-variance latents (1 / std, as flow matching wants), save the VAE, its
    training config and a reconstruction grid."""
    output_dir = Path(config.output_dir)
    if not config.decoder_only:  # a frozen encoder keeps the scale the UNet's latents were made with
        std = latent_std(vae, load_split(config.dataset, config.train_split, streaming=True), config.resolution, config.scaling_images)
        vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
    vae.save_pretrained(str(output_dir), safe_serialization=True)
    (output_dir / "training_config.json").write_text(json.dumps(asdict(config), indent=2, default=str))
    if config.num_sample_images > 0:
        split = config.validation_split if has_split(config.dataset, config.validation_split) else config.train_split
        examples = pick_examples(load_split(config.dataset, split, streaming=True), config.num_sample_images, labels=tuple(range(5)))
        save_reconstructions(vae, examples, config.resolution, output_dir / "samples" / "reconstructions.png")


train_vae = config_command("train_vae", VaeTrainConfig, run_vae_training, "Train a small single-channel autoencoder (AutoencoderDC by default) on a built X-DigiSkull (for `medshift train --vae`).")
