"""`medshift train`: class-conditional latent flow matching on X-DigiSkull.

The loop, in order (one optimiser step):

    x1 = cached VAE latent of an image, y = its class
    eps ~ N(0, I), t ~ U(0, 1), y -> null class with probability p   (classifier-free guidance)
    x_t, u_t = sample_path(x1, eps, t)                                (medshift.flow_matching)
    loss = || unet(x_t, 1000 t, y) - u_t ||²
    AdamW step with warmup, gradient clipping, EMA update

It runs on `accelerate`, so `accelerate launch --num_processes N medshift/cli.py train ...`
(several GPUs, nodes, or CPU processes) needs no change. The EMA weights are what the saved
MedShiftPipeline gets.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from diffusers import AutoencoderKL, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from medshift.flow_matching import drop_labels, sample_path
from medshift.training.common import (
    LossLog,
    TimeBudget,
    read_training_state,
    resolve_resume,
    save_checkpoint,
    save_grid,
)
from medshift.training.data import (
    NULL_LABEL,
    StreamingXDigiSkullImages,
    XDigiSkullImages,
    has_split,
    image_to_array,
    load_split,
    pick_examples,
    resize_square,
)
from medshift.training.latents import LatentDataset, encode_grey, load_or_build_cache, load_vae
from xdigiskull.classes import CLASS_NAMES

LOG_FIELDS = ["step", "loss", "lr", "seconds"]


@dataclass
class TrainConfig:
    """Everything `run_training` needs; the CLI options map onto these one to one."""

    dataset: str
    output_dir: str
    vae: str
    resolution: int = 256
    unet_config: str | dict = "demo"
    train_split: str = "train"
    validation_split: str = "validation"
    batch_size: int = 8
    max_steps: int = 2000
    max_minutes: float | None = None  # wall-clock budget; training stops (and saves) when it runs out
    learning_rate: float = 2e-4
    warmup_steps: int = 100
    lr_schedule: str = "constant_with_warmup"
    weight_decay: float = 0.01
    label_dropout: float = 0.15
    ema_decay: float = 0.999
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    gradient_accumulation_steps: int = 1
    cache_latents: bool = True
    cache_dir: str | None = None
    flip: bool = True
    streaming: bool = False
    num_workers: int = 0
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    resume: str | None = None
    sample_every: int = 500
    num_sample_images: int = 4
    sample_inference_steps: int = 20
    sample_tau: float = 0.45
    default_tau: float = 0.45
    default_guidance_scale: float | None = None
    log_every: int = 10
    seed: int = 0
    show_progress: bool = True


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
    if config.get("num_class_embeds") != len(CLASS_NAMES) + 1:
        raise ValueError(
            f"the UNet needs num_class_embeds={len(CLASS_NAMES) + 1} (5 classes + the null class), "
            f"got {config.get('num_class_embeds')}"
        )
    return config


def resolve_mixed_precision(value: str) -> str:
    """"auto" -> bf16 on a GPU that supports it, else fp16 on a GPU, else fp32 ("no")."""
    if value != "auto":
        if value not in ("no", "fp16", "bf16"):
            raise ValueError(f"--mixed-precision must be auto, no, fp16 or bf16, got {value!r}")
        return value
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def build_pipeline(vae: AutoencoderKL, unet: UNet2DModel, config: TrainConfig):
    """Assemble the MedShiftPipeline that `--output-dir` receives."""
    from medshift.pipeline_medshift import MedShiftPipeline
    from medshift.scheduling_flow_match import FlowMatchODEScheduler

    kwargs = {}
    if config.default_guidance_scale is not None:
        kwargs["default_guidance_scale"] = config.default_guidance_scale
    return MedShiftPipeline(
        vae=vae,
        unet=unet,
        scheduler=FlowMatchODEScheduler(),
        class_names=list(CLASS_NAMES),
        resolution=config.resolution,
        default_tau=config.default_tau,
        **kwargs,
    )


def save_samples(pipeline, examples: list[dict], config: TrainConfig, path: Path) -> Path:
    """Grid: one row per validation image: input, then its translation into each real class."""
    targets = [name for name in CLASS_NAMES if name.startswith("real_")]
    inputs = [resize_square(image_to_array(example["image"]), config.resolution) for example in examples]
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


def make_dataloader(config: TrainConfig, vae: AutoencoderKL, accelerator: Accelerator) -> torch.utils.data.DataLoader:
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


def batch_latents(batch: dict, vae: AutoencoderKL) -> torch.Tensor:
    """Latents of a batch: read from the cache, or encoded now."""
    if "latents" in batch:
        return batch["latents"]
    return encode_grey(vae, batch["pixel_values"])


def infinite_batches(dataloader, accelerator: Accelerator, start_step: int):
    """Yield batches forever, epoch after epoch; on resume, skip the batches already seen so the
    data order matches an uninterrupted run."""
    try:
        per_epoch = len(dataloader)
    except TypeError:  # streamed: no length, no epochs
        per_epoch = None
    epoch = start_step // per_epoch if per_epoch else 0
    skip = start_step % per_epoch if per_epoch else 0
    while True:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        yield from loader
        skip = 0
        epoch += 1


def run_training(config: TrainConfig) -> TrainResult:
    """Train the flow-matching UNet as configured and save the MedShiftPipeline to `config.output_dir`."""
    if config.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {config.max_steps}")
    if not 0.0 <= config.label_dropout < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {config.label_dropout}")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        # seedable sampler: the shuffle order depends only on (seed, epoch), so resume is exact
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    # different noise on each process; data order is shared through the seedable sampler
    set_seed(config.seed, device_specific=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    vae = load_vae(config.vae, accelerator.device)
    unet_config = unet_config_for(config.unet_config, vae.config.latent_channels)
    # the latent side must survive the VAE's and the UNet's downsamplings without rounding
    multiple = 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (len(unet_config["block_out_channels"]) - 1)
    if config.resolution % multiple:
        raise ValueError(f"resolution must be a multiple of {multiple} for this VAE and UNet, got {config.resolution}")
    unet_config["sample_size"] = config.resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = UNet2DModel(**unet_config)
    unet.train()
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, model_cls=UNet2DModel, model_config=unet.config)
    ema.to(accelerator.device)

    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler(
        config.lr_schedule,
        optimizer=optimizer,
        num_warmup_steps=config.warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_steps * accelerator.num_processes,
    )
    dataloader = make_dataloader(config, vae, accelerator)
    unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)
    accelerator.register_for_checkpointing(ema)

    global_step = 0
    resume_from = resolve_resume(output_dir, config.resume)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        global_step = int(read_training_state(resume_from)["step"])
        accelerator.print(f"resumed from {resume_from} at step {global_step}")
    if global_step >= config.max_steps:
        accelerator.print(f"already trained for {global_step} >= max_steps={config.max_steps} steps")

    log = LossLog(output_dir / "train_log.csv", LOG_FIELDS, resume_step=global_step if resume_from else None) if accelerator.is_main_process else None
    sample_examples = []
    if accelerator.is_main_process and config.num_sample_images > 0:
        split = config.validation_split if has_split(config.dataset, config.validation_split) else config.train_split
        sample_examples = pick_examples(load_split(config.dataset, split, streaming=True), config.num_sample_images)

    progress = tqdm(
        total=config.max_steps,
        initial=global_step,
        desc="train",
        disable=not (config.show_progress and accelerator.is_local_main_process),
    )
    losses: list[float] = []
    batches = infinite_batches(dataloader, accelerator, global_step * config.gradient_accumulation_steps)
    started = time.perf_counter()
    running = []
    budget = TimeBudget(config.max_minutes, accelerator)
    while global_step < config.max_steps:
        batch = next(batches)
        x1 = batch_latents(batch, vae)
        labels = drop_labels(batch["label"], NULL_LABEL, config.label_dropout)
        eps = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        x_t, u_t = sample_path(x1, eps, t)
        with accelerator.accumulate(unet):
            velocity = unet(x_t, t * 1000, class_labels=labels).sample
            loss = F.mse_loss(velocity.float(), u_t.float())
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        running.append(accelerator.gather(loss.detach()).mean().item())
        if not accelerator.sync_gradients:
            continue

        ema.step(accelerator.unwrap_model(unet).parameters())
        global_step += 1
        step_loss = sum(running) / len(running)
        running.clear()
        losses.append(step_loss)
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
        if log is not None and (global_step % config.log_every == 0 or global_step == config.max_steps):
            log.write(step=global_step, loss=step_loss, lr=lr_scheduler.get_last_lr()[0], seconds=round(time.perf_counter() - started, 3))

        if config.checkpoint_every > 0 and (global_step % config.checkpoint_every == 0 or global_step == config.max_steps):
            save_checkpoint(accelerator, config.output_dir, global_step, config.max_steps, "unet", config.checkpoints_total_limit)
        if sample_examples and config.sample_every > 0 and global_step % config.sample_every == 0 and global_step < config.max_steps:
            with torch.no_grad():
                ema_unet = ema_copy(accelerator.unwrap_model(unet), ema)
                save_samples(build_pipeline(vae, ema_unet, config), sample_examples, config, output_dir / "samples" / f"step-{global_step:07d}.png")
        if budget.exhausted():  # checked after a step, so every run trains at least one
            break
    progress.close()
    if global_step < config.max_steps and config.checkpoint_every > 0 and global_step % config.checkpoint_every:
        # stopped by --max-minutes: keep the state so that --resume can carry on from here
        accelerator.print(f"time budget of {config.max_minutes} min used up at step {global_step}")
        save_checkpoint(accelerator, config.output_dir, global_step, config.max_steps, "unet", config.checkpoints_total_limit)

    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(unet)
    ema_unet = ema_copy(trained, ema)
    if accelerator.is_main_process:
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


def train(
    dataset: Annotated[str, typer.Option(help="Built X-DigiSkull: local folder or Hugging Face Hub dataset id.")],
    output_dir: Annotated[Path, typer.Option(help="Where the trained MedShiftPipeline (and checkpoints/) is written.")],
    vae: Annotated[str, typer.Option(help="AutoencoderKL to train in: `medshift train-vae` output, a saved pipeline, or a Hub id (RGB VAEs get grey replicated to RGB).")],
    resolution: Annotated[int, typer.Option(help="Images are downscaled (INTER_AREA) to this side before encoding.")] = 256,
    unet_config: Annotated[str, typer.Option(help="UNet size: 'demo', 'paper' or a JSON file of UNet2DModel arguments.")] = "demo",
    train_split: Annotated[str, typer.Option(help="Split to train on.")] = "train",
    validation_split: Annotated[str, typer.Option(help="Split the sample grids take their inputs from.")] = "validation",
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size per process.")] = 8,
    max_steps: Annotated[int, typer.Option(min=1, help="Optimiser steps in total (a resumed run counts the steps already done).")] = 2000,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes of training (then save as at the end); none: no limit.")] = None,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 2e-4,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Linear learning-rate warmup steps.")] = 100,
    lr_schedule: Annotated[str, typer.Option(help="diffusers schedule name: constant_with_warmup, cosine, linear, ...")] = "constant_with_warmup",
    label_dropout: Annotated[float, typer.Option(help="Probability of replacing the class by the null class (classifier-free guidance).")] = 0.15,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the weights that get saved.")] = 0.999,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm (0 disables).")] = 1.0,
    mixed_precision: Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), no, fp16 or bf16.")] = "auto",
    gradient_accumulation_steps: Annotated[int, typer.Option(min=1, help="Batches per optimiser step.")] = 1,
    cache_latents: Annotated[bool, typer.Option(help="Encode the dataset through the VAE once and train on the cached latents.")] = True,
    cache_dir: Annotated[Path | None, typer.Option(help="Where latent caches live (default OUTPUT_DIR/latent_cache).")] = None,
    flip: Annotated[bool, typer.Option(help="Left-right flip augmentation (cached: both orientations are encoded).")] = True,
    streaming: Annotated[bool, typer.Option(help="Stream the dataset instead of downloading it whole.")] = False,
    num_workers: Annotated[int, typer.Option(min=0, help="DataLoader workers when not caching latents.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Save the training state every N steps (0: only at the end).")] = 500,
    checkpoints_total_limit: Annotated[int, typer.Option(help="Keep only the newest N checkpoints (0 keeps all).")] = 2,
    resume: Annotated[str | None, typer.Option(help="'latest' (newest checkpoint in OUTPUT_DIR) or a checkpoint folder.")] = None,
    sample_every: Annotated[int, typer.Option(min=0, help="Save a grid of translated validation images every N steps (0: only at the end).")] = 500,
    num_sample_images: Annotated[int, typer.Option(min=0, help="Validation images in each sample grid.")] = 4,
    sample_inference_steps: Annotated[int, typer.Option(min=1, help="ODE steps used for the sample grids.")] = 20,
    default_tau: Annotated[float, typer.Option(help="τ stored in the pipeline config as its default.")] = 0.45,
    log_every: Annotated[int, typer.Option(min=1, help="Write the loss to OUTPUT_DIR/train_log.csv every N steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train MedShift's class-conditional flow-matching UNet on the latents of a built X-DigiSkull."""
    config = TrainConfig(
        dataset=dataset,
        output_dir=str(output_dir),
        vae=vae,
        resolution=resolution,
        unet_config=unet_config,
        train_split=train_split,
        validation_split=validation_split,
        batch_size=batch_size,
        max_steps=max_steps,
        max_minutes=max_minutes,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        lr_schedule=lr_schedule,
        label_dropout=label_dropout,
        ema_decay=ema_decay,
        max_grad_norm=max_grad_norm,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        cache_latents=cache_latents,
        cache_dir=str(cache_dir) if cache_dir else None,
        flip=flip,
        streaming=streaming,
        num_workers=num_workers,
        checkpoint_every=checkpoint_every,
        checkpoints_total_limit=checkpoints_total_limit,
        resume=resume,
        sample_every=sample_every,
        num_sample_images=num_sample_images,
        sample_inference_steps=sample_inference_steps,
        default_tau=default_tau,
        log_every=log_every,
        seed=seed,
    )
    try:
        run_training(config)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
