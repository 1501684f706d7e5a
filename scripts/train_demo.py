"""Make the shipped demo weights: phantom -> build -> train-vae -> train -> checkpoints/.

This is the exact recipe of `checkpoints/medshift-xdigiskull-demo/`. Every stage is the public
command line, run as a subprocess and printed before it runs, so the recipe can be repeated by
hand; the script adds only timing and the final copy.

    python scripts/train_demo.py                      # 2-core CPU, about 25 minutes
    python scripts/train_demo.py --preset gpu         # a lent GPU: longer training, larger crops
    python scripts/train_demo.py --unet-steps 200 --vae-steps 20 --views 6   # smoke run

Stages (work files go to --work-dir, default ./demo_work):

1. `xdigiskull phantom` raw exports (simulator PNGs, Azurion DICOMs, ground truth) of --views poses.
2. `xdigiskull build` X-DigiSkull from them (780x780, 8-bit, every DICOM frame: frames differ only
   in their noise, which is what the real classes must teach).
3. `medshift train-vae`: the small one-channel AutoencoderKL (`demo_vae_config`) on random crops
   of the images downscaled to --resolution.
4. `medshift train`: the demo UNet (`demo_unet_config`) on cached latents of the images at
   --resolution, EMA weights saved in a MedShiftPipeline.
5. Copy the pipeline (model_index.json, vae/, unet/, scheduler/, model card) plus its training log,
   config and last sample grid to --out (default checkpoints/medshift-xdigiskull-demo), replacing
   an earlier one only once the new one is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Settings per machine. CPU: sized so the whole recipe fits in about 25 minutes on 2 cores
# (VAE ~1.5 s/step at 128² crops, batch 4; UNet ~0.1 s/step on 32² latents, batch 8).
PRESETS: dict[str, dict[str, int | float | str]] = {
    "cpu": {
        "views": 24, "build_size": 780, "resolution": 256,
        "vae_steps": 350, "vae_crop": 128, "vae_batch": 4, "vae_lr": 5e-4, "vae_minutes": 0.0,
        "unet_steps": 5000, "unet_batch": 8, "unet_lr": 3e-4, "unet_schedule": "cosine", "unet_minutes": 0.0,
    },
    # one lent H100 for ~10 minutes: 512² images, both stages stopped by their wall-clock budget
    "gpu": {
        "views": 48, "build_size": 512, "resolution": 512,
        "vae_steps": 50000, "vae_crop": 256, "vae_batch": 16, "vae_lr": 5e-4, "vae_minutes": 2.5,
        "unet_steps": 200000, "unet_batch": 32, "unet_lr": 3e-4, "unet_schedule": "constant_with_warmup", "unet_minutes": 4.5,
    },
}  # fmt: skip


def minutes_option(minutes: float) -> list[str]:
    """`--max-minutes M` for a positive budget, nothing for 0 (train for the full step count)."""
    return ["--max-minutes", str(minutes)] if float(minutes) > 0 else []


def run_stage(name: str, command: list[str], timings: dict[str, float], env: dict[str, str]) -> None:
    """Print and run one stage; stop the recipe if it fails."""
    print(f"\n=== {name}\n$ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, env=env)
    timings[name] = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"stage {name!r} failed with exit code {completed.returncode}")
    print(f"--- {name}: {timings[name] / 60:.1f} min", flush=True)


def publish(model_dir: Path, out: Path, notes: str) -> None:
    """Copy the pipeline and its training record to `out`, atomically (temp folder, then rename)."""
    from medshift.model_card import make_model_card
    from medshift.pipeline_medshift import MedShiftPipeline

    temporary = out.with_name(out.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name in ("model_index.json", "vae", "unet", "scheduler"):
        source = model_dir / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, temporary / name)
    for component in ("vae", "unet"):  # diffusers records the folder a model was loaded from: a path of this machine
        config_file = temporary / component / "config.json"
        config_file.write_text(json.dumps({k: v for k, v in json.loads(config_file.read_text()).items() if k != "_name_or_path"}, indent=2) + "\n")
    shutil.copy2(model_dir / "train_log.csv", temporary / "train_log.csv")
    # the training config names work folders on the machine that trained: record them relative to the repo
    config = json.loads((model_dir / "training_config.json").read_text())
    for key in ("dataset", "vae", "output_dir", "cache_dir"):
        if config.get(key) and Path(config[key]).is_absolute() and Path(config[key]).is_relative_to(REPO):
            config[key] = Path(config[key]).relative_to(REPO).as_posix()
    (temporary / "training_config.json").write_text(json.dumps(config, indent=2))
    if (model_dir / "samples" / "final.png").exists():
        shutil.copy2(model_dir / "samples" / "final.png", temporary / "samples.png")
    pipeline = MedShiftPipeline.from_pretrained(str(temporary))  # proves the copy loads
    make_model_card(pipeline, training_notes=notes).save(temporary / "README.md")
    if out.exists():
        shutil.rmtree(out)
    os.replace(temporary, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="settings for a 2-core CPU or a GPU")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="cpu hides GPUs from the training stages")
    parser.add_argument("--work-dir", type=Path, default=REPO / "demo_work", help="phantom exports, dataset, training runs")
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints" / "medshift-xdigiskull-demo")
    parser.add_argument("--seed", type=int, default=0)
    for key, value in PRESETS["cpu"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None, help=f"override the preset (cpu: {value})")
    parser.add_argument("--skip-data", action="store_true", help="reuse the phantom exports and dataset in --work-dir")
    parser.add_argument("--dataset", type=Path, default=None, help="train on this built X-DigiSkull instead of making one")
    args = parser.parse_args()
    settings = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in PRESETS[args.preset].items()}

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    work = args.work_dir
    raw, dataset, vae_dir, model_dir = work / "raw", work / "x-digiskull", work / "vae", work / "model"
    python = sys.executable
    timings: dict[str, float] = {}
    print(f"preset {args.preset}: {settings}")

    if args.dataset is not None:
        dataset = args.dataset
    elif not args.skip_data:
        run_stage(
            "phantom",
            [python, "-m", "xdigiskull.cli", "phantom", str(raw), "--views", str(settings["views"]), "--seed", str(args.seed)],
            timings,
            env,
        )
        run_stage(
            "build",
            [python, "-m", "xdigiskull.cli", "build", str(raw), "--out", str(dataset), "--labels", str(raw / "manifest.csv"),
             "--frames", "all", "--size", str(settings["build_size"]), "--seed", str(args.seed)],
            timings,
            env,
        )  # fmt: skip
    for stale in (vae_dir, model_dir):
        shutil.rmtree(stale, ignore_errors=True)
    run_stage(
        "train-vae",
        [python, "-m", "medshift.cli", "train-vae", "--dataset", str(dataset), "--output-dir", str(vae_dir),
         "--resolution", str(settings["resolution"]), "--crop-size", str(settings["vae_crop"]),
         "--batch-size", str(settings["vae_batch"]), "--max-steps", str(settings["vae_steps"]),
         "--learning-rate", str(settings["vae_lr"]), "--warmup-steps", "20", "--checkpoint-every", "100",
         *minutes_option(settings["vae_minutes"]),
         "--seed", str(args.seed)],
        timings,
        env,
    )  # fmt: skip
    unet_steps = int(settings["unet_steps"])
    run_stage(
        "train",
        [python, "-m", "medshift.cli", "train", "--dataset", str(dataset), "--output-dir", str(model_dir), "--vae", str(vae_dir),
         "--resolution", str(settings["resolution"]), "--unet-config", "demo", "--batch-size", str(settings["unet_batch"]),
         "--max-steps", str(unet_steps), "--learning-rate", str(settings["unet_lr"]), "--warmup-steps", "200",
         "--lr-schedule", str(settings["unet_schedule"]), *minutes_option(settings["unet_minutes"]), "--ema-decay", "0.999", "--label-dropout", "0.15",
         "--checkpoint-every", str(max(unet_steps // 5, 1)), "--sample-every", str(max(unet_steps // 4, 1)),
         "--num-sample-images", "4", "--seed", str(args.seed)],
        timings,
        env,
    )  # fmt: skip

    notes = (
        f"Trained with `python scripts/train_demo.py --preset {args.preset}` on a phantom-built X-DigiSkull "
        f"({settings['views']} poses): VAE {settings['vae_steps']} steps on {settings['vae_crop']}² crops of "
        f"{settings['resolution']}² images, UNet {unet_steps} steps (batch {settings['unet_batch']}) on cached "
        f"{settings['resolution']}² latents. A phantom-only demo: not for clinical use."
    )
    started = time.perf_counter()
    publish(model_dir, args.out, notes)
    timings["publish"] = time.perf_counter() - started

    print("\n=== done: " + str(args.out))
    for name, seconds in timings.items():
        print(f"{name:>10}: {seconds / 60:6.1f} min")
    print(f"{'total':>10}: {sum(timings.values()) / 60:6.1f} min")


if __name__ == "__main__":
    main()
