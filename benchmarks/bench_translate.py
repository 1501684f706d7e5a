"""Time one 780x780 translation at tau = 0.45 and record peak memory, for three models.

(a) the demo MedShift model (shipped checkpoint, or random weights of the demo configs if absent),
    at its default processing resolution (the training resolution) and at the full 780 px;
(b) a paper-sized MedShift model: SD-VAE architecture + `paper_unet_config()` UNet, random weights,
    processing at the full 780 px (padded to 784), VAE encode/decode in 2 x 2 blended tiles (`tile_vae`);
(c) diffusers' StableDiffusionImg2ImgPipeline built from the SD 1.5 configs with random weights
    (the paper's SDEdit baseline): strength 1 - tau with 50 scheduler steps, guidance on.

All cases use the same number of (guided, batch-2) UNet calls as far as step rounding allows: SDEdit
runs int(50 * 0.55) = 27 denoising steps; MedShift's inversion plus generation use 2 x round(n * 0.55)
steps with n = 25 (28 calls). The exact counts are measured and printed, with per-call figures.
Each case runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own;
memory is reported as the peak RSS and as its increase over the process after imports.

Usage:
    python benchmarks/bench_translate.py            # full run (case (c) takes about 10 min on 2 CPU cores)
    python benchmarks/bench_translate.py --quick    # 4 UNet calls per case; full-run times extrapolated
    python benchmarks/bench_translate.py --case b   # one case, prints its JSON line
    options: --threads N (torch threads), --no-vae-tiling (case (b) without tiled VAE), --cases a,b,
             --no-channels-last (PyTorch's default NCHW weights in every case instead of channels-last)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "checkpoints" / "medshift-xdigiskull-demo"
SIZE = 780
TAU = 0.45
SD_STEPS = 50


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


class UNetTimer:
    """Counts UNet calls and the wall time spent inside them (forward hooks)."""

    def __init__(self, unet):
        self.calls, self.seconds, self._start = 0, 0.0, 0.0
        unet.register_forward_pre_hook(self._pre)
        unet.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.calls += 1
        self.seconds += time.perf_counter() - self._start


def _test_image():
    import numpy as np

    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 3) ** 2).astype(np.float32)
    return (0.2 + 0.6 * disc).astype(np.float32)


def _medshift_steps(quick: bool) -> int:
    # full: 2 * round(25 * 0.55) = 28 calls (SDEdit: 27); quick: 2 * round(4 * 0.55) = 4 calls
    return 4 if quick else 25


def _sd_steps(quick: bool) -> int:
    # quick: int(8 * 0.55) = 4 calls; full: int(50 * 0.55) = 27 calls
    return 8 if quick else SD_STEPS


def run_medshift(case: str, quick: bool, vae_tiling: bool = True, channels_last: bool = True) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DModel

    from medshift.models import demo_unet_config, demo_vae_config, make_autoencoder, paper_unet_config, sd_vae_config, tile_vae
    from medshift.pipeline_medshift import MedShiftPipeline
    from medshift.scheduling_flow_match import FlowMatchODEScheduler

    baseline = _rss_mb()
    torch.manual_seed(0)
    processing_resolution = None
    if case.startswith("a"):
        if (DEMO_CHECKPOINT / "model_index.json").is_file():
            pipe, weights = MedShiftPipeline.from_pretrained(DEMO_CHECKPOINT), "shipped checkpoint"
        else:
            pipe = MedShiftPipeline(
                make_autoencoder(demo_vae_config()), UNet2DModel(**demo_unet_config()), FlowMatchODEScheduler(), resolution=SIZE
            )
            weights = "random (no shipped checkpoint yet)"
        if case == "a_full":
            processing_resolution = SIZE
    else:
        vae = AutoencoderKL(**sd_vae_config())
        pipe = MedShiftPipeline(vae, UNet2DModel(**paper_unet_config()), FlowMatchODEScheduler(), resolution=SIZE)
        # the VAE's full-size activations are the peak memory: 2 x 2 blended tiles over the padded image
        # (784 px -> tiles of 456 px, 64 px blended) bound them for about 1.3x the compute of one pass
        if vae_tiling:
            padded = -(-SIZE // pipe.vae_scale_factor) * pipe.vae_scale_factor
            tile_vae(vae, padded, tiles_per_side=2, overlap=64)
        weights = "random"
    pipe.set_progress_bar_config(disable=True)
    if channels_last:
        _to_channels_last(pipe.vae, pipe.unet)
    timer = UNetTimer(pipe.unet)
    image = _test_image()
    start = time.perf_counter()
    out = pipe(image, target="real_normal", source="synthetic_high", tau=TAU, num_inference_steps=_medshift_steps(quick),
               processing_resolution=processing_resolution, output_type="np").images
    seconds = time.perf_counter() - start
    assert out.shape == (1, SIZE, SIZE, 1)
    return {
        "case": case,
        "weights": weights,
        "params_M": round(sum(p.numel() for m in (pipe.vae, pipe.unet) for p in m.parameters()) / 1e6, 1),
        "processing_px": processing_resolution or pipe.config.resolution,
        "seconds": seconds,
        "unet_calls": timer.calls,
        "unet_seconds": timer.seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_over_imports_mb": _peak_rss_mb() - baseline,
    }


def _to_channels_last(*models) -> None:
    """NHWC weights: oneDNN's CPU convolutions run 5-25 % faster on them; the arithmetic is unchanged."""
    import torch

    for model in models:
        model.to(memory_format=torch.channels_last)


def run_sd_img2img(quick: bool, channels_last: bool = True) -> dict:
    import PIL.Image
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from medshift.models import sd_vae_config

    baseline = _rss_mb()
    torch.manual_seed(0)
    # Stable Diffusion 1.5 configs (runwayml/stable-diffusion-v1-5), random weights
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000,
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=AutoencoderKL(**sd_vae_config()), text_encoder=text_encoder, tokenizer=None, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    if channels_last:
        _to_channels_last(pipe.vae, pipe.unet)
    timer = UNetTimer(pipe.unet)
    image = PIL.Image.fromarray((_test_image() * 255).astype("uint8")).convert("RGB")
    start = time.perf_counter()
    with torch.no_grad():
        # no CLIP tokenizer offline: token ids of "a real X-ray" would be a handful of integers; any
        # ids cost the same, so encode fixed ids with the real text encoder (its time is counted)
        ids = torch.full((1, 77), 49407, dtype=torch.long)
        ids[0, 0] = 49406
        prompt_embeds = text_encoder(ids)[0]
        negative_embeds = text_encoder(ids)[0]
    out = pipe(
        prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, image=image, strength=1 - TAU,
        num_inference_steps=_sd_steps(quick), guidance_scale=7.5, output_type="np",
    ).images
    seconds = time.perf_counter() - start
    return {
        "case": "c",
        "weights": "random",
        "params_M": round(sum(p.numel() for m in (pipe.vae, pipe.unet, text_encoder) for p in m.parameters()) / 1e6, 1),
        "processing_px": int(out.shape[1]),
        "seconds": seconds,
        "unet_calls": timer.calls,
        "unet_seconds": timer.seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_over_imports_mb": _peak_rss_mb() - baseline,
    }


def _full_calls(case: str) -> int:
    """UNet calls of the full (non-quick) run: SDEdit int(50 * 0.55); MedShift 2 * round(25 * 0.55)."""
    return int(SD_STEPS * (1 - TAU)) if case == "c" else 2 * round(25 * (1 - TAU))


CASE_NAMES = {
    "a": "(a) demo MedShift, default processing",
    "a_full": "(a') demo MedShift, 780 px processing",
    "b": "(b) paper-sized MedShift (SD-VAE, tiled)",
    "c": "(c) SD 1.5 img2img (SDEdit)",
}


def main(
    quick: Annotated[bool, typer.Option("--quick", help="4 UNet calls per case; full-run times extrapolated from per-call times.")] = False,
    case: Annotated[Optional[str], typer.Option(help="Run one case (a, a_full, b, c) in this process and print its JSON.")] = None,
    cases: Annotated[str, typer.Option(help="Comma-separated cases to run, each in its own subprocess.")] = "a,a_full,b,c",
    threads: Annotated[Optional[int], typer.Option(help="torch threads per case (default: torch's choice, one per core).")] = None,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling/--no-vae-tiling", help="Tiled VAE encode/decode in case (b).")] = True,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last", help="Channels-last weights in every case (same for all, so the ratios stay fair).")] = True,
) -> None:
    """Benchmark one 780x780 translation at tau = 0.45: time and peak memory of MedShift vs SDEdit."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    if case is not None:
        if case not in CASE_NAMES:
            raise typer.BadParameter(f"unknown case {case!r}; valid: {', '.join(CASE_NAMES)}", param_hint="--case")
        result = run_sd_img2img(quick, channels_last) if case == "c" else run_medshift(case, quick, vae_tiling, channels_last)
        print(json.dumps(result))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; image {SIZE}x{SIZE}, tau={TAU}"
          + (", channels-last weights" if channels_last else ", default (NCHW) weights") + (", QUICK mode" if quick else ""))
    results = {}
    for name in cases.split(","):
        command = [sys.executable, __file__, "--case", name] + (["--quick"] if quick else [])
        command += ["--threads", str(threads)] if threads is not None else []
        command += [] if vae_tiling else ["--no-vae-tiling"]
        command += [] if channels_last else ["--no-channels-last"]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(f"{CASE_NAMES.get(name, name)}: FAILED\n{proc.stderr[-3000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        # the run's time outside the UNet (VAE, resizing) plus the full run's UNet calls at the measured rate
        r["full_seconds_est"] = r["seconds"] - r["unet_seconds"] + _full_calls(name) * r["unet_seconds"] / max(r["unet_calls"], 1)
        print(
            f"{CASE_NAMES[name]:<44} {r['params_M']:>7.1f}M params  {r['processing_px']:>4} px  "
            f"{r['seconds']:>7.1f} s  ({r['unet_calls']} UNet calls, {r['unet_seconds'] / max(r['unet_calls'], 1):.2f} s/call)  "
            f"peak RSS {r['peak_rss_mb']:>6.0f} MB (+{r['peak_over_imports_mb']:.0f} MB over imports)"
            + (f"  full-run estimate {r['full_seconds_est']:.1f} s" if quick else ""),
            flush=True,
        )
    if "c" not in results:
        return
    c = results["c"]
    key = "full_seconds_est" if quick else "seconds"
    for name in ("b", "a", "a_full"):
        if name not in results:
            continue
        r = results[name]
        per_call = (c["unet_seconds"] / c["unet_calls"]) / (r["unet_seconds"] / r["unet_calls"])
        print(
            f"(c)/({name}): time {c[key] / r[key]:.1f}x{' (extrapolated to the full run)' if quick else ''}, "
            f"per UNet call {per_call:.1f}x, peak RSS {c['peak_rss_mb'] / r['peak_rss_mb']:.1f}x, "
            f"peak over imports {c['peak_over_imports_mb'] / max(r['peak_over_imports_mb'], 1):.1f}x"
        )
    print("goals: (c)/(b) time >= 8x and peak memory >= 3x; (a) under 10 s on 2 cores")


if __name__ == "__main__":
    typer.run(main)
