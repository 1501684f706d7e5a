"""Benchmark `medshift translate --dataset`: peak memory against the number of rows, and throughput.

memory (default): a tiny randomly initialised MedShiftPipeline (saved to a temporary folder) translates the
    synthetic_high rows of two synthetic X-DigiSkull datasets, one with 10x the rows of the other, each in a fresh
    subprocess; prints both peak RSS (ru_maxrss) figures and their ratio. Streaming means the ratio stays near 1
    (the goal: at most 1.10).
throughput: the demo checkpoint at its defaults (its tau, steps, guidance, processing resolution; batch 8)
    translates N synthetic 780 x 780 16-bit images; prints images/s of the translation (model loading excluded)
    and the torch thread count.

Usage:
    python benchmarks/bench_translate_dataset.py memory [--rows 50] [--side 64]
    python benchmarks/bench_translate_dataset.py throughput [--rows 16] [--side 780] [--model checkpoints/medshift-xdigiskull-demo]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import typer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "checkpoints" / "medshift-xdigiskull-demo"
app = typer.Typer(add_completion=False, no_args_is_help=True)


def write_source_dataset(folder: Path, rows: int, side: int, bits: int) -> Path:
    """`rows` synthetic_high rows of a ring-on-a-field image (each a little different), as one split's shards."""
    from xdigiskull.classes import CLASS_NAMES
    from xdigiskull.processing import encode_png
    from xdigiskull.row import DatasetRow
    from xdigiskull.writer import SplitWriter

    writer = SplitWriter(folder, "train")
    y, x = np.mgrid[:side, :side] / side - 0.5
    for index in range(rows):
        rng = np.random.default_rng(index)
        radius = np.hypot(x - rng.uniform(-0.05, 0.05), y - rng.uniform(-0.05, 0.05))
        image = np.clip(0.15 + 0.6 * np.exp(-(((radius - 0.3) / 0.05) ** 2)) + rng.normal(0, 0.02, x.shape), 0, 1)
        writer.add(DatasetRow(
            image=encode_png(image.astype(np.float32), bits), label=CLASS_NAMES.index("synthetic_high"), domain="synthetic",
            dose="high", view="view0", primary_angle=0.0, secondary_angle=0.0, pair_id=f"pose{index:05d}", frame_index=0,
            source_id=f"source{index:05d}", kvp=None, tube_current_ma=None, exposure_time_ms=None, pixel_spacing_mm=None,
            frame_time_ms=None,
        ))  # fmt: skip
    writer.close()
    return folder


def save_tiny_pipeline(folder: Path) -> Path:
    """A small random-weight pipeline (64 px training resolution) for the memory figures."""
    import torch
    from diffusers import AutoencoderKL, UNet2DModel

    from medshift.pipeline_medshift import MedShiftPipeline
    from medshift.scheduling_flow_match import FlowMatchODEScheduler
    from xdigiskull.classes import CLASS_NAMES

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), latent_channels=4,
                        norm_num_groups=4, layers_per_block=1)  # fmt: skip
    unet = UNet2DModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, num_class_embeds=len(CLASS_NAMES) + 1)  # fmt: skip
    pipe = MedShiftPipeline(vae=vae, unet=unet, scheduler=FlowMatchODEScheduler(num_inference_steps=4), class_names=list(CLASS_NAMES), resolution=64)
    pipe.save_pretrained(folder)
    return folder


def run_child(arguments: list[str]) -> dict:
    """Run `child` in a fresh process (its own peak RSS) and return its JSON line."""
    completed = subprocess.run([sys.executable, __file__, "child", *arguments], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


@app.command()
def child(dataset: str, model: str, out: str, extra: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """(internal) One translation: loads, times the translation alone, prints seconds, rows and peak RSS."""
    import torch

    from medshift.dataset_translation import translate_dataset
    from medshift.translate import TranslateConfig, dataset_settings, load_pipeline

    options = dict(zip(extra[::2], extra[1::2])) if extra else {}
    config = TranslateConfig(target="real_normal", out=Path(out), dataset=dataset, source="synthetic_high", model=model,
                             batch_size=int(options.get("batch_size", 8)), rows_per_shard=int(options.get("rows_per_shard", 100)),
                             steps=int(options["steps"]) if "steps" in options else None)  # fmt: skip
    pipe, location, revision = load_pipeline(config, "cpu")
    settings = dataset_settings(config, pipe, location, revision)
    baseline = None
    if options.get("baseline"):  # one bare pipeline call on one source image: the same machine's per-image cost
        from medshift.dataset_translation import class_rows, translate_rows

        first = next(class_rows(dataset, "train", "synthetic_high"))
        start = time.perf_counter()
        translate_rows(pipe, [(0, first)], settings)
        baseline = time.perf_counter() - start
    start = time.perf_counter()
    translate_dataset(pipe, settings, config.out, progress=False)
    seconds = time.perf_counter() - start
    rows = sum(1 for _ in (Path(out) / "data").glob("*.parquet"))
    print(json.dumps({"seconds": seconds, "one_image_seconds": baseline, "shards": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads(), "settings": {k: v for k, v in vars(settings).items() if k not in ("source_dataset", "model_id")}}))


@app.command()
def memory(rows: int = 50, side: int = 64, steps: int = 2) -> None:
    """Peak RSS for `rows` and 10 x `rows` source rows (tiny pipeline, small images)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = str(save_tiny_pipeline(root / "tiny"))
        figures = {}
        for count in (rows, 10 * rows):
            dataset = write_source_dataset(root / f"source-{count}", count, side, 8)
            figures[count] = run_child([str(dataset), model, str(root / f"out-{count}"), "steps", str(steps), "rows_per_shard", "25"])
            print(f"{count:6d} rows ({side} px): peak RSS {figures[count]['peak_rss_mb']:.1f} MB, {figures[count]['seconds']:.1f} s", flush=True)
        ratio = figures[10 * rows]["peak_rss_mb"] / figures[rows]["peak_rss_mb"]
        print(f"peak RSS ratio, {10 * rows} rows / {rows} rows: {ratio:.3f} (goal <= 1.10)")


@app.command()
def throughput(rows: int = 16, side: int = 780, model: str = str(DEMO_MODEL)) -> None:
    """Images/s of a dataset translation at the model's defaults (batch 8), 16-bit `side` x `side` sources."""
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_source_dataset(Path(tmp) / "source", rows, side, 16)
        result = run_child([str(dataset), model, str(Path(tmp) / "out"), "baseline", "1"])
        print(json.dumps(result["settings"]))
        print(f"{rows} images of {side} x {side}: {result['seconds']:.1f} s, {rows / result['seconds']:.3f} images/s "
              f"({result['threads']} torch threads; peak RSS {result['peak_rss_mb']:.0f} MB); one image alone, batch 1, "
              f"before: {result['one_image_seconds']:.1f} s")


if __name__ == "__main__":
    app()
