"""Small pieces both training commands share: checkpoints, the loss log, image grids."""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from diffusers.optimization import get_scheduler
from PIL import Image

from xdigiskull.image_io import atomic_write


CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Where the training state at `step` is saved: OUTPUT/checkpoints/checkpoint-STEP."""
    return Path(output_dir) / "checkpoints" / f"checkpoint-{step}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under OUTPUT/checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = CHECKPOINT_PATTERN.match(child.name)
            # training_state.json is written last, so its presence marks a complete checkpoint
            if match and (child / "training_state.json").exists():
                found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """`--resume latest` -> newest checkpoint in OUTPUT (None when there is none yet); a path -> that checkpoint."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if not (path / "training_state.json").exists():
        raise ValueError(f"--resume {resume!r} is not a complete checkpoint folder (no training_state.json)")
    return path


def read_training_state(checkpoint: Path) -> dict:
    """The small JSON saved next to accelerate's state: step and the settings it was trained with."""
    return json.loads((checkpoint / "training_state.json").read_text())


def write_training_state(checkpoint: Path, state: dict) -> None:
    """Write training_state.json atomically; it marks the checkpoint as complete."""
    with atomic_write(checkpoint / "training_state.json") as temporary:
        temporary.write_text(json.dumps(state, indent=2))


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, max_steps: int, kind: str, keep: int) -> None:
    """Full training state (weights, optimiser, LR schedule, EMA, RNGs) at `step`, then keep the newest `keep`."""
    path = checkpoint_dir(output_dir, step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))  # every process writes its own RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_training_state(path, {"step": step, "max_steps": max_steps, "kind": kind})
        prune_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()


def save_stopped_run(accelerator, output_dir: str | Path, step: int, config, kind: str) -> None:
    """Checkpoint a run the time budget stopped between checkpoints, so `--resume` continues from `step`."""
    if step < config.max_steps and config.checkpoint_every > 0 and step % config.checkpoint_every:
        accelerator.print(f"time budget of {config.max_minutes} min used up at step {step}")
        save_checkpoint(accelerator, output_dir, step, config.max_steps, kind, config.checkpoints_total_limit)


class TimeBudget:
    """Wall-clock limit of one training run (`--max-minutes`), e.g. for a lent GPU or a cluster slot.

    Every process takes the same decision (the flag is max-reduced across them), so no rank stops
    early and leaves the others waiting in a collective.
    """

    def __init__(self, max_minutes: float | None, accelerator) -> None:
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {max_minutes}")
        self.max_seconds = None if max_minutes is None else 60.0 * max_minutes
        self.accelerator = accelerator
        self.started = time.perf_counter()

    def exhausted(self) -> bool:
        if self.max_seconds is None:
            return False
        over = torch.tensor([float(time.perf_counter() - self.started > self.max_seconds)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(over, reduction="max").item())


class LossLog:
    """Append-only CSV log (OUTPUT/<name>.csv). On resume, rows after the resumed step are dropped
    so the log never shows a step twice."""

    def __init__(self, path: str | Path, fields: list[str], resume_step: int | None = None):
        self.path = Path(path)
        self.fields = fields
        if resume_step is None or not self.path.exists():
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(fields)
        else:
            with self.path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
            with self.path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, **row: float | int) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields).writerow(row)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a LossLog CSV as floats."""
    with Path(path).open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def save_grid(rows: list[list[np.ndarray]], path: str | Path, gap: int = 4) -> Path:
    """Save a grid of grey [0, 1] images (rows x columns, all the same size) as an 8-bit PNG."""
    height, width = rows[0][0].shape
    columns = max(len(row) for row in rows)
    canvas = np.ones((len(rows) * (height + gap) - gap, columns * (width + gap) - gap), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = r * (height + gap), c * (width + gap)
            canvas[top : top + height, left : left + width] = np.clip(image, 0.0, 1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(canvas * 255).astype(np.uint8), mode="L").save(path)
    return path


# ------------------------------------------------------------------ shared by train and train-vae


def start_accelerator(config: Any, gradient_accumulation_steps: int = 1) -> Accelerator:
    """The Accelerator of a training run: mixed precision resolved, a seedable sampler (the shuffle order
    depends only on (seed, epoch), so resume is exact), different noise on each process, output folder made."""
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    set_seed(config.seed, device_specific=True)
    if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cpu" and cpu_has_native_bf16() is False:
        accelerator.print(
            "warning: --mixed-precision bf16 on a CPU without AVX-512 BF16 or AMX: torch emulates bf16 here, "
            "which has measured about 20x slower than float32 (--mixed-precision no)"
        )
    if accelerator.is_main_process:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    return accelerator


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU computes bf16 natively (the `avx512_bf16` or `amx_bf16` flag of /proc/cpuinfo);
    None where that cannot be told (no /proc/cpuinfo, or no flags line in it)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_mixed_precision(value: str) -> str:
    """"auto" -> bf16 on a GPU that supports it, else fp16 on a GPU, else fp32 ("no")."""
    if value != "auto":
        if value not in ("no", "fp16", "bf16"):
            raise ValueError(f"--mixed-precision must be auto, no, fp16 or bf16, got {value!r}")
        return value
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_optimizer(parameters: Any, config: Any, accelerator: Accelerator) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and the learning-rate schedule (`lr_schedule`, `warmup_steps`, `max_steps` of the config);
    the scheduler steps once per process and optimiser step, hence the factors."""
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler(
        config.lr_schedule,
        optimizer=optimizer,
        num_warmup_steps=config.warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_steps * accelerator.num_processes,
    )
    return optimizer, lr_scheduler


def optimizer_step(accelerator: Accelerator, model: torch.nn.Module, loss: torch.Tensor, optimizer, lr_scheduler, max_grad_norm: float) -> None:
    """Backward, clip (when gradients are synchronised and `max_grad_norm` > 0), step and zero the gradients."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def resume_training(accelerator: Accelerator, output_dir: Path, resume: str | None) -> int:
    """Load the checkpoint `--resume` names (if any) into the prepared objects; returns the step it was saved at."""
    resume_from = resolve_resume(output_dir, resume)
    if resume_from is None:
        return 0
    accelerator.load_state(str(resume_from))
    global_step = int(read_training_state(resume_from)["step"])
    accelerator.print(f"resumed from {resume_from} at step {global_step}")
    return global_step


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
