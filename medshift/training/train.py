"""`medshift train`: class-conditional latent flow matching on X-DigiSkull.

The loop, in order (one optimiser step):

    x1 = cached VAE latent of an image, y = its class
    eps ~ N(0, I), t ~ U(0, 1), y -> null class with probability p   (classifier-free guidance)
    x_t, u_t = sample_path(x1, eps, t)                                (medshift.flow_matching)
    loss = || unet(x_t, num_train_timesteps t, y) - u_t ||²           (the scheduler config's time scale)
    AdamW step with warmup, gradient clipping, EMA update

It runs on `accelerate`, so `accelerate launch --num_processes N medshift/cli.py train ...`
(several GPUs, nodes, or CPU processes) needs no change. The EMA weights are what the saved
MedShiftPipeline gets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from medshift.flow_matching import check_coarse_noise, drop_labels, sample_path, sample_times
from medshift.training.common import (
    LossLog,
    TimeBudget,
    infinite_batches,
    make_optimizer,
    optimizer_step,
    resume_training,
    save_checkpoint,
    save_stopped_run,
    save_grid,
    start_accelerator,
)
from medshift.models import NULL_LABEL, NUM_CLASS_EMBEDS, deepen_unet
from medshift.scheduling_flow_match import FlowMatchODEScheduler
from medshift.training.data import (
    StreamingXDigiSkullImages,
    XDigiSkullImages,
    has_split,
    load_split,
    pick_examples,
)
from medshift.training.latents import LatentDataset, load_or_build_cache, load_vae
from medshift.vae_codec import Autoencoder, downsampling_factor, encode_grey
from xdigiskull.classes import CLASS_NAMES
from medshift.image_processor import resize_square, to_unit_float
from xdigiskull.command_line import config_command, option

LOG_FIELDS = ["step", "loss", "lr", "seconds"]


@dataclass
class TrainConfig:
    """Everything `run_training` needs, with its defaults; `medshift train` has one option per field."""

    dataset: str = field(metadata=option("Built X-DigiSkull: local folder or Hugging Face Hub dataset id."))
    output_dir: str = field(metadata=option("Where the trained MedShiftPipeline (and checkpoints/) is written."))
    vae: str = field(metadata=option("AutoencoderKL or AutoencoderDC to train in: `medshift train-vae` output, a saved pipeline, or a Hub id (RGB VAEs get grey replicated to RGB)."))
    resolution: int = field(default=256, metadata=option("Images are resized (INTER_AREA) to this side before encoding; 780 keeps X-DigiSkull's own pixels. Also the pipeline's processing resolution."))
    latent_crop: int | None = field(default=None, metadata=option("Train on random crops of this many latent cells per side (a multiple of 2^(UNet levels - 1)); none: whole latents."))
    unet_config: str | dict = field(default="demo", metadata=option("UNet size: 'demo', 'paper' or a JSON file of UNet2DModel arguments."))
    init_unet: str | None = field(default=None, metadata=option("Start from this UNet's weights instead of a fresh --unet-config one (fine-tuning, e.g. at another --resolution): a saved MedShiftPipeline folder, its unet/ folder, or a pipeline's Hub id."))
    init_unet_layers_per_block: int | None = field(default=None, metadata=option("With --init-unet: first deepen that UNet to this many layers per block; the new layers start as identities, so it computes what it did, with more capacity to fine-tune (none: as it is).", min=1))
    train_split: str = field(default="train", metadata=option("Split to train on."))
    validation_split: str = field(default="validation", metadata=option("Split the sample grids take their inputs from."))
    batch_size: int = field(default=8, metadata=option("Batch size per process.", min=1))
    max_steps: int = field(default=2000, metadata=option("Optimiser steps in total (a resumed run counts the steps already done).", min=1))
    max_minutes: float | None = field(default=None, metadata=option("Stop after this many minutes of training (then save as at the end); none: no limit."))
    learning_rate: float = field(default=2e-4, metadata=option("AdamW peak learning rate."))
    warmup_steps: int = field(default=100, metadata=option("Linear learning-rate warmup steps.", min=0))
    lr_schedule: str = field(default="constant_with_warmup", metadata=option("diffusers schedule name: constant_with_warmup, cosine, linear, ..."))
    weight_decay: float = field(default=0.01, metadata=option("AdamW weight decay."))
    label_dropout: float = field(default=0.15, metadata=option("Probability of replacing the class by the null class (classifier-free guidance)."))
    noise_offset: float = field(default=0.0, metadata=option("Offset noise: std of a per-channel constant added to the training noise, so the flow can change global brightness (0: plain Gaussian; stored in the scheduler config).", min=0.0))
    coarse_noise: str | list | None = field(default=None, metadata=option("Coarse (pyramid) noise: comma-separated standard deviations of Gaussian noise drawn on grids 2, 4, 8, ... times coarser than the latent and upsampled, added to the training noise so the flow can re-draw large-scale shading (e.g. 0,0,0.5,0.7,0.7; none: no coarse noise; stored in the scheduler config)."))
    focus_time_min: float = field(default=0.0, metadata=option("With --focus-time-fraction: the lower end of the time range most training steps are drawn from (t = 0 noise, 1 data); a translation at tau only runs on [tau, 1], so e.g. 0.25 for taus of 0.3 and up.", min=0.0))
    focus_time_fraction: float = field(default=0.0, metadata=option("Share of training times drawn uniformly on [--focus-time-min, 1]; the rest are uniform on [0, 1] (0: all uniform on [0, 1]).", min=0.0))
    ema_decay: float = field(default=0.999, metadata=option("EMA decay of the weights that get saved."))
    max_grad_norm: float = field(default=1.0, metadata=option("Gradient clipping norm (0 disables)."))
    mixed_precision: str = field(default="auto", metadata=option("auto (bf16/fp16 on GPU, fp32 on CPU), no, fp16 or bf16."))
    gradient_accumulation_steps: int = field(default=1, metadata=option("Batches per optimiser step.", min=1))
    cache_latents: bool = field(default=True, metadata=option("Encode the dataset through the VAE once and train on the cached latents."))
    cache_dir: str | None = field(default=None, metadata=option("Where latent caches live (default OUTPUT_DIR/latent_cache)."))
    flip: bool = field(default=True, metadata=option("Left-right flip augmentation (cached: both orientations are encoded)."))
    streaming: bool = field(default=False, metadata=option("Stream the dataset instead of downloading it whole."))
    num_workers: int = field(default=0, metadata=option("DataLoader workers when not caching latents.", min=0))
    checkpoint_every: int = field(default=500, metadata=option("Save the training state every N steps (0: only at the end).", min=0))
    checkpoints_total_limit: int = field(default=2, metadata=option("Keep only the newest N checkpoints (0 keeps all)."))
    resume: str | None = field(default=None, metadata=option("'latest' (newest checkpoint in OUTPUT_DIR) or a checkpoint folder."))
    sample_every: int = field(default=500, metadata=option("Save a grid of translated validation images every N steps (0: only at the end).", min=0))
    num_sample_images: int = field(default=4, metadata=option("Validation images in each sample grid.", min=0))
    sample_inference_steps: int = field(default=20, metadata=option("ODE steps used for the sample grids.", min=1))
    sample_tau: float = field(default=0.45, metadata=option("τ of the translations in the sample grids."))
    default_tau: float = field(default=0.45, metadata=option("τ stored in the pipeline config as its default."))
    default_guidance_scale: float | None = field(
        default=None, metadata=option("Guidance scale stored in the pipeline config as its default (none: the pipeline's own default).")
    )
    log_every: int = field(default=10, metadata=option("Write the loss to OUTPUT_DIR/train_log.csv every N steps.", min=1))
    seed: int = field(default=0, metadata=option("Random seed."))
    show_progress: bool = field(default=True, metadata=option("Show progress bars."))


@dataclass
class TrainResult:
    """What `run_training` hands back (besides the files it writes)."""

    unet: UNet2DModel  # the raw trained weights on this process
    ema_unet: UNet2DModel  # the EMA weights (saved in the pipeline)
    global_step: int
    losses: list[float] = field(default_factory=list)  # per-step loss of the steps run in this call


def unet_config_for(name: str | dict, latent_channels: int) -> dict:
    """Resolve `--unet-config`: "demo", "paper", a JSON file, or a dict; in/out channels follow the VAE."""
    if isinstance(name, dict):
        config = dict(name)
    elif name in ("demo", "paper"):
        from medshift import models

        config = models.demo_unet_config() if name == "demo" else models.paper_unet_config()
    elif Path(name).is_file():
        config = json.loads(Path(name).read_text())
    else:
        raise ValueError(f"--unet-config must be 'demo', 'paper' or a JSON file, got {name!r}")
    config.update(in_channels=latent_channels, out_channels=latent_channels)
    if config.get("num_class_embeds") != NUM_CLASS_EMBEDS:
        raise ValueError(
            f"the UNet needs num_class_embeds={NUM_CLASS_EMBEDS} (5 classes + the null class), "
            f"got {config.get('num_class_embeds')}"
        )
    return config


def build_pipeline(vae: Autoencoder, unet: UNet2DModel, config: TrainConfig):
    """Assemble the MedShiftPipeline that `--output-dir` receives."""
    from medshift.pipeline_medshift import MedShiftPipeline

    kwargs = {}
    if config.default_guidance_scale is not None:
        kwargs["default_guidance_scale"] = config.default_guidance_scale
    return MedShiftPipeline(
        vae=vae,
        unet=unet,
        scheduler=make_scheduler(config),
        class_names=list(CLASS_NAMES),
        resolution=config.resolution,
        default_tau=config.default_tau,
        **kwargs,
    )


def make_scheduler(config: TrainConfig):
    """The FlowMatchODEScheduler the trained pipeline is saved with; the training loss reads its prior (noise
    offset, coarse noise), its path's sigma_min and its time scale from it, so training and inference agree."""
    return FlowMatchODEScheduler(noise_offset=config.noise_offset, coarse_noise=list(coarse_noise_weights(config.coarse_noise)) or None)


def save_samples(pipeline, examples: list[dict], config: TrainConfig, path: Path) -> Path:
    """Grid: one row per validation image: input, then its translation into each real class."""
    targets = [name for name in CLASS_NAMES if name.startswith("real_")]
    inputs = [resize_square(to_unit_float(example["image"]), config.resolution) for example in examples]
    pipeline.set_progress_bar_config(disable=True)
    # one batched call: every input once per target
    output = pipeline(
        [image for image in inputs for _ in targets],
        target=[target for _ in inputs for target in targets],
        source=[CLASS_NAMES[int(example["label"])] for example in examples for _ in targets],
        tau=config.sample_tau,
        num_inference_steps=config.sample_inference_steps,
        output_type="np",
    )
    translated = [np.asarray(image, dtype=np.float32).squeeze() for image in output.images]
    rows = [[image, *translated[i * len(targets) : (i + 1) * len(targets)]] for i, image in enumerate(inputs)]
    return save_grid(rows, path)


def make_dataloader(config: TrainConfig, vae: Autoencoder, accelerator: Accelerator) -> torch.utils.data.DataLoader:
    """Cached latents (default) or images that are encoded on the fly."""
    data = load_split(config.dataset, config.train_split, streaming=config.streaming)
    if config.cache_latents:
        cache_dir = config.cache_dir or str(Path(config.output_dir) / "latent_cache")
        # the main process encodes and saves; the others then read its file
        with accelerator.main_process_first():
            cache, _ = load_or_build_cache(
                vae,
                data,
                config.dataset,
                config.train_split,
                config.resolution,
                cache_dir,
                flip=config.flip,
                batch_size=config.batch_size,
                show_progress=config.show_progress and accelerator.is_local_main_process,
            )
        dataset = LatentDataset(cache)
        return torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(dataset) >= config.batch_size
        )
    if config.streaming:
        images = StreamingXDigiSkullImages(data, config.resolution, flip=config.flip, seed=config.seed)
        return torch.utils.data.DataLoader(images, batch_size=config.batch_size, num_workers=config.num_workers)
    images = XDigiSkullImages(data, config.resolution, flip=config.flip)
    return torch.utils.data.DataLoader(
        images,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(images) >= config.batch_size,
        num_workers=config.num_workers,
    )


def batch_latents(batch: dict, vae: Autoencoder) -> torch.Tensor:
    """Latents of a batch: read from the cache, or encoded now."""
    if "latents" in batch:
        return batch["latents"]
    return encode_grey(vae, batch["pixel_values"])


def check_config(config: TrainConfig) -> None:
    """Refuse settings that cannot train, before any work."""
    if config.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {config.max_steps}")
    if not 0.0 <= config.label_dropout < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {config.label_dropout}")
    if config.noise_offset < 0:
        raise ValueError(f"noise_offset must be >= 0, got {config.noise_offset}")
    coarse_noise_weights(config.coarse_noise)
    if not 0.0 <= config.focus_time_min < 1.0:
        raise ValueError(f"focus_time_min must be in [0, 1), got {config.focus_time_min}")
    if not 0.0 <= config.focus_time_fraction <= 1.0:
        raise ValueError(f"focus_time_fraction must be in [0, 1], got {config.focus_time_fraction}")
    if config.init_unet_layers_per_block is not None and not config.init_unet:
        raise ValueError("--init-unet-layers-per-block deepens the --init-unet UNet: give --init-unet too")


def coarse_noise_weights(coarse_noise: str | list | None) -> tuple[float, ...]:
    """`--coarse-noise` as weights: a comma-separated string (the command line) or a list (Python, a saved config)."""
    if isinstance(coarse_noise, str):
        try:
            coarse_noise = [float(part) for part in coarse_noise.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"coarse_noise must be comma-separated numbers such as 0,0,0.5,0.7,0.7, got {coarse_noise!r}") from None
    return check_coarse_noise(coarse_noise)


def load_init_unet(location: str, latent_channels: int) -> UNet2DModel:
    """The UNet `--init-unet` names, checked against the VAE's latents and the classes."""
    folder = Path(location)
    if folder.is_dir():
        unet = UNet2DModel.from_pretrained(folder / "unet" if (folder / "unet" / "config.json").is_file() else folder)
    else:
        unet = UNet2DModel.from_pretrained(location, subfolder="unet")
    if unet.config.in_channels != latent_channels or unet.config.out_channels != latent_channels:
        raise ValueError(f"--init-unet {location}: the UNet takes {unet.config.in_channels} latent channels, the VAE gives {latent_channels}")
    if unet.config.num_class_embeds != NUM_CLASS_EMBEDS:
        raise ValueError(f"--init-unet {location}: the UNet needs num_class_embeds={NUM_CLASS_EMBEDS}, got {unet.config.num_class_embeds}")
    return unet


def build_unet(config: TrainConfig, vae: Autoencoder) -> UNet2DModel:
    """A fresh UNet of `config.unet_config` (or the `config.init_unet` one) for the VAE's latents at
    `config.resolution` (or their crops)."""
    initial = load_init_unet(config.init_unet, vae.config.latent_channels) if config.init_unet else None
    if initial is not None and config.init_unet_layers_per_block is not None:
        initial = deepen_unet(initial, config.init_unet_layers_per_block)
    unet_config = dict(initial.config) if initial is not None else unet_config_for(config.unet_config, vae.config.latent_channels)
    latent_side = math.ceil(config.resolution / downsampling_factor(vae))  # encode_grey pads to the VAE's factor
    # what the UNet sees must survive its downsamplings without rounding
    multiple = 2 ** (len(unet_config["block_out_channels"]) - 1)
    trained_side = latent_side if config.latent_crop is None else config.latent_crop
    if trained_side % multiple:
        what = f"--latent-crop {config.latent_crop}" if config.latent_crop else f"the latent side {latent_side} (resolution {config.resolution})"
        raise ValueError(f"{what} must be a multiple of {multiple} for this UNet; set --latent-crop or another resolution")
    if trained_side > latent_side:
        raise ValueError(f"--latent-crop {config.latent_crop} exceeds the latent side {latent_side} at resolution {config.resolution}")
    if initial is not None:
        initial.register_to_config(sample_size=trained_side)  # only a record: the UNet works at any multiple
        return initial.train()
    unet_config["sample_size"] = trained_side
    return UNet2DModel(**unet_config).train()


def random_crops(latents: torch.Tensor, size: int | None) -> torch.Tensor:
    """A random size x size window of each latent in the batch (each its own); all of them for None."""
    if size is None:
        return latents
    height, width = latents.shape[-2:]
    tops = torch.randint(0, height - size + 1, (len(latents),)).tolist()
    lefts = torch.randint(0, width - size + 1, (len(latents),)).tolist()
    return torch.stack([latent[..., y : y + size, x : x + size] for latent, y, x in zip(latents, tops, lefts)])


def flow_matching_loss(
    unet: UNet2DModel,
    vae: Autoencoder,
    batch: dict,
    scheduler: FlowMatchODEScheduler,
    label_dropout: float,
    latent_crop: int | None = None,
    focus_time_min: float = 0.0,
    focus_time_fraction: float = 0.0,
) -> torch.Tensor:
    """MSE between the predicted and the path's velocity at a random time, classes dropped to the null class
    with probability `label_dropout` (classifier-free guidance); on random `latent_crop` windows if given.

    The noise is the scheduler's prior (`scheduler.sample_noise`: Gaussian, its per-channel `noise_offset` and
    `coarse_noise` levels), the path its `sigma_min`'s, and the network sees `t * num_train_timesteps` as at
    inference; times come from `sample_times` (uniform on [0, 1], or mostly on [focus_time_min, 1]). With
    `latent_crop` the coarse levels' grids follow the crop's side, while SDEdit's noise follows the whole
    latent's; the two agree when the crop is (nearly) the whole latent."""
    x1 = random_crops(batch_latents(batch, vae), latent_crop)
    labels = drop_labels(batch["label"], NULL_LABEL, label_dropout)
    eps = scheduler.sample_noise(tuple(x1.shape), device=x1.device, dtype=x1.dtype)
    t = sample_times(x1.shape[0], focus_time_min, focus_time_fraction, device=x1.device)
    x_t, u_t = sample_path(x1, eps, t, scheduler.config.sigma_min)
    velocity = unet(x_t, t * scheduler.config.num_train_timesteps, class_labels=labels).sample
    return F.mse_loss(velocity.float(), u_t.float())


def sample_examples_for(config: TrainConfig, accelerator: Accelerator) -> list[dict]:
    """The validation rows (the training split's when there is none) that every sample grid translates."""
    if not accelerator.is_main_process or config.num_sample_images <= 0:
        return []
    split = config.validation_split if has_split(config.dataset, config.validation_split) else config.train_split
    return pick_examples(load_split(config.dataset, split, streaming=True), config.num_sample_images)


def run_training(config: TrainConfig) -> TrainResult:
    """Train the flow-matching UNet as configured and save the MedShiftPipeline to `config.output_dir`."""
    check_config(config)
    output_dir = Path(config.output_dir)
    scheduler = make_scheduler(config)
    accelerator = start_accelerator(config, config.gradient_accumulation_steps)
    vae = load_vae(config.vae, accelerator.device)
    unet = build_unet(config, vae)
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, model_cls=UNet2DModel, model_config=unet.config)
    ema.to(accelerator.device)
    optimizer, lr_scheduler = make_optimizer(unet.parameters(), config, accelerator)
    dataloader = make_dataloader(config, vae, accelerator)
    unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)
    accelerator.register_for_checkpointing(ema)
    global_step = resume_training(accelerator, output_dir, config.resume)
    if global_step >= config.max_steps:
        accelerator.print(f"already trained for {global_step} >= max_steps={config.max_steps} steps")

    log = LossLog(output_dir / "train_log.csv", LOG_FIELDS, resume_step=global_step or None) if accelerator.is_main_process else None
    sample_examples = sample_examples_for(config, accelerator)
    progress = tqdm(total=config.max_steps, initial=global_step, desc="train", disable=not (config.show_progress and accelerator.is_local_main_process))
    losses: list[float] = []
    batches = infinite_batches(dataloader, accelerator, global_step * config.gradient_accumulation_steps)
    started, running, budget = time.perf_counter(), [], TimeBudget(config.max_minutes, accelerator)
    while global_step < config.max_steps:
        batch = next(batches)
        with accelerator.accumulate(unet):
            loss = flow_matching_loss(
                unet, vae, batch, scheduler, config.label_dropout, config.latent_crop,
                config.focus_time_min, config.focus_time_fraction,
            )
            optimizer_step(accelerator, unet, loss, optimizer, lr_scheduler, config.max_grad_norm)
        running.append(accelerator.gather(loss.detach()).mean().item())
        if not accelerator.sync_gradients:
            continue

        ema.step(accelerator.unwrap_model(unet).parameters())
        global_step += 1
        losses.append(sum(running) / len(running))
        running.clear()
        lr = lr_scheduler.get_last_lr()[0]
        progress.update(1)
        progress.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
        if log is not None and (global_step % config.log_every == 0 or global_step == config.max_steps):
            log.write(step=global_step, loss=losses[-1], lr=lr, seconds=round(time.perf_counter() - started, 3))
        if config.checkpoint_every > 0 and (global_step % config.checkpoint_every == 0 or global_step == config.max_steps):
            save_checkpoint(accelerator, config.output_dir, global_step, config.max_steps, "unet", config.checkpoints_total_limit)
        if sample_examples and config.sample_every > 0 and global_step % config.sample_every == 0 and global_step < config.max_steps:
            with torch.no_grad():
                pipeline = build_pipeline(vae, ema_copy(accelerator.unwrap_model(unet), ema), config)
                save_samples(pipeline, sample_examples, config, output_dir / "samples" / f"step-{global_step:07d}.png")
        if budget.exhausted():  # checked after a step, so every run trains at least one
            break
    progress.close()
    return finish_training(config, accelerator, vae, unet, ema, global_step, losses, sample_examples)


def finish_training(config, accelerator: Accelerator, vae, unet, ema: EMAModel, global_step: int, losses: list[float], sample_examples: list[dict]) -> TrainResult:
    """Keep a resumable state when the time budget stopped the run, save the pipeline (EMA weights), its
    training config and the final sample grid."""
    save_stopped_run(accelerator, config.output_dir, global_step, config, "unet")
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(unet)
    ema_unet = ema_copy(trained, ema)
    if accelerator.is_main_process:
        output_dir = Path(config.output_dir)
        pipeline = build_pipeline(vae, ema_unet, config)
        pipeline.save_pretrained(str(output_dir))
        (output_dir / "training_config.json").write_text(json.dumps(asdict(config), indent=2, default=str))
        if sample_examples:
            save_samples(pipeline, sample_examples, config, output_dir / "samples" / "final.png")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(unet=trained, ema_unet=ema_unet, global_step=global_step, losses=losses)


def ema_copy(unet: UNet2DModel, ema: EMAModel) -> UNet2DModel:
    """A fresh UNet (eval mode, float32, on the same device) holding the EMA weights."""
    copy = UNet2DModel.from_config(unet.config).to(next(unet.parameters()).device)
    ema.copy_to(copy.parameters())
    return copy.eval().requires_grad_(False)


train = config_command("train", TrainConfig, run_training, "Train MedShift's class-conditional flow-matching UNet on the latents of a built X-DigiSkull.")
