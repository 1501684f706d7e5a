"""Make the shipped demo weights: phantom -> build -> train-vae -> train -> checkpoints/.

Every stage is the public command line, run as a subprocess and printed before it runs, so the recipe
can be repeated by hand; the script adds only timing and the final copy.

The shipped `checkpoints/medshift-xdigiskull-demo/` began with the cpu preset (stage 1) and was fine-tuned
in seven more stages this script does not run; `lineage.json` beside its weights records every stage (heads,
steps, hardware, time, training seed and the command), and its model card is generated from that file.

    python scripts/train_demo.py                      # 2-core CPU, about 100 minutes
    python scripts/train_demo.py --preset gpu         # a lent GPU: more heads, longer training, larger crops
    python scripts/train_demo.py --heads 0 --views 6 --vae-steps 20 --unet-steps 200   # smoke run

One run over several sessions (e.g. an hour of CPU each): --max-minutes bounds this session's
training, and --resume carries on from the last checkpoints in --work-dir with the settings the run
was started with (saved in WORK/recipe.json; progress in WORK/progress.json):

    python scripts/train_demo.py --preset cpu --vae-steps 20000 --unet-steps 60000 --max-minutes 50
    python scripts/train_demo.py --resume --max-minutes 50        # next session, same --work-dir

A stage cut short by --max-minutes saves its state (the UNet at the step it reached, the VAE at its
last --checkpoint-every step) and the recipe stops; the pipeline is published to --out only once the
UNet stage has finished, so a partly trained run never replaces the shipped checkpoint. Meanwhile
WORK/model holds the latest pipeline (`medshift evaluate --model WORK/model --phantom-seed 7 --out eval` measures it).
The VAE must finish before the UNet starts (the UNet trains on its latents).

On a lent GPU machine: `python scripts/train_demo.py --preset gpu --work-dir $OUT/work --out $OUT/model`
(each stage stops at its preset minutes; add --max-minutes to fit the lease), then bring $OUT/model back.

Stages (work files go to --work-dir, default ./demo_work):

1. `xdigiskull phantom` raw exports (simulator PNGs, Azurion DICOMs, ground truth) of --views poses of each
   phantom head in --heads (one seed per head, in WORK/raw/head-<seed>/), and one manifest.csv for all.
   The held-out heads of the shipped lineage.json (validation and evaluation heads) are refused.
2. `xdigiskull build` X-DigiSkull from them (780x780, 8-bit, every DICOM frame: frames differ only
   in their noise, which is what the real classes must teach).
3. `medshift train-vae`: the small one-channel AutoencoderDC (`--vae-config demo`) on random crops of the
   images at --vae-resolution (780: their own pixels).
4. `medshift train`: the demo UNet (`demo_unet_config`) on the cached latents of the images at
   --unet-resolution (whole latents, or random --unet-crop windows when it is above 0) with offset noise
   --noise-offset, EMA weights saved in a MedShiftPipeline whose processing resolution is --unet-resolution.
5. Copy the pipeline (model_index.json, vae/, unet/, scheduler/, model card) plus its training log,
   config and last sample grid to --out (default checkpoints/medshift-xdigiskull-demo), replacing
   an earlier one only once the new one is complete.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from medshift.lineage import held_out_seeds, load_lineage

REPO = Path(__file__).resolve().parents[1]
# the shipped weights were trained on phantom v1: the recipe renders v1 until the model is retrained on v2
PHANTOM_VERSION = 1

# Settings per machine. The AutoencoderDC VAE (`--vae-config demo`) learns on random 128² crops of the images
# at their own 780 px; the UNet learns on whole latents of the images at 512 px (64² latents), so that it sees
# the whole image, with offset noise 1.5 (`--noise-offset`) so that the flow can move the global brightness
# from one domain to the other (README, "Model-quality goals"). The VAE, trained at 780, reconstructs 512 px
# images at 40 dB. The default guidance 1.5 was chosen on a validation head (seed 11).
# cpu: about 100 minutes on 2 cores, measured 2026-12-02 (VAE 45 min at ~0.7 s/step, batch 8; latent
# cache 5 min; UNet 42 min at ~0.4 s/step on whole 64² latents, batch 8); --max-minutes and --resume
# split it over sessions.
PRESETS: dict[str, dict[str, int | float | str]] = {
    "cpu": {
        "heads": "1,3,4,5", "views": 12, "build_size": 780, "vae_resolution": 780, "unet_resolution": 512,
        "vae_steps": 3600, "vae_crop": 128, "vae_batch": 8, "vae_lr": 1e-3, "vae_minutes": 0.0,
        "unet_steps": 6000, "unet_crop": 0, "unet_batch": 8, "unet_lr": 5e-4, "unet_schedule": "cosine", "unet_minutes": 0.0,
        "noise_offset": 1.5, "default_tau": 0.45, "default_guidance": 1.5,
    },
    # a lent H100/H200 for ~12 minutes: more heads, larger batches, both stages stopped by their wall-clock budget
    "gpu": {
        "heads": "1,3,4,5,6,8,9,10", "views": 24, "build_size": 780, "vae_resolution": 780, "unet_resolution": 512,
        "vae_steps": 100000, "vae_crop": 256, "vae_batch": 16, "vae_lr": 1e-3, "vae_minutes": 4.0,
        "unet_steps": 200000, "unet_crop": 0, "unet_batch": 32, "unet_lr": 3e-4, "unet_schedule": "constant_with_warmup", "unet_minutes": 5.0,
        "noise_offset": 1.5, "default_tau": 0.45, "default_guidance": 1.5,
    },
}  # fmt: skip


def latent_crop_option(crop: int) -> list[str]:
    """`--latent-crop N` for random N² latent windows, nothing for 0 (whole latents)."""
    return ["--latent-crop", str(crop)] if crop > 0 else []


def minutes_option(minutes: float) -> list[str]:
    """`--max-minutes M` for a positive budget, nothing for 0 (train for the full step count)."""
    return ["--max-minutes", f"{float(minutes):.2f}"] if float(minutes) > 0 else []


# a training stage needs at least this much of the session left to be worth starting, and spends about
# this much beyond its --max-minutes (latent statistics or cache, saving, sample grids)
MIN_STAGE_MINUTES = 2.0
STAGE_OVERHEAD_MINUTES = 1.5


class Session:
    """This session's time budget and the run's progress (WORK/progress.json: per training stage,
    minutes trained so far and whether it is done), so a later session can resume the run."""

    def __init__(self, work: Path, max_minutes: float | None, resume: bool) -> None:
        self.path = work / "progress.json"
        self.end = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        self.progress: dict[str, dict] = json.loads(self.path.read_text()) if resume and self.path.exists() else {}

    def done(self, stage: str) -> bool:
        return bool(self.progress.get(stage, {}).get("done"))

    def budget(self, stage: str, preset_minutes: float) -> tuple[float | None, bool] | None:
        """(minutes for this stage, whether the session rather than the preset limits it); None when
        too little of the session is left to start it."""
        used = self.progress.get(stage, {}).get("minutes", 0.0)
        preset = float(preset_minutes) - used if float(preset_minutes) > 0 else None
        if self.end is None:
            return (max(preset, 0.1) if preset is not None else None), False
        left = (self.end - time.monotonic()) / 60.0 - STAGE_OVERHEAD_MINUTES
        if left < MIN_STAGE_MINUTES:
            return None
        return (left, True) if preset is None or left < preset else (max(preset, 0.1), False)

    def record(self, stage: str, minutes: float, done: bool) -> None:
        entry = self.progress.setdefault(stage, {"minutes": 0.0})
        entry.update(minutes=round(entry["minutes"] + minutes, 2), done=done)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.progress, indent=2))
        os.replace(temporary, self.path)


def last_checkpoint_step(output_dir: Path) -> int:
    """Step of the newest complete training checkpoint in output_dir (0 when there is none)."""
    from medshift.training.common import list_checkpoints

    found = list_checkpoints(output_dir)
    return found[-1][0] if found else 0


def recipe_settings(args: argparse.Namespace, work: Path) -> tuple[str, int, dict]:
    """(preset, seed, settings) of this run: from the options for a new run (saved to WORK/recipe.json),
    from WORK/recipe.json for --resume (options that would change it are refused)."""
    overrides = {key: getattr(args, key) for key in PRESETS["cpu"] if getattr(args, key) is not None}
    path = work / "recipe.json"
    if not args.resume:
        settings = {**PRESETS[args.preset], **overrides}
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"preset": args.preset, "seed": args.seed, "settings": settings}, indent=2))
        return args.preset, args.seed, settings
    if not path.is_file():
        sys.exit(f"--resume: {path} does not exist; start the run without --resume first")
    saved = json.loads(path.read_text())
    changed = {key: value for key, value in overrides.items() if saved["settings"].get(key) != value}
    if changed:
        sys.exit(f"--resume continues the run of {path}; it cannot change {', '.join(sorted(changed))}")
    return saved["preset"], saved["seed"], saved["settings"]


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring for multi-session runs.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="settings for a 2-core CPU or a GPU (default cpu)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="cpu hides GPUs from the training stages")
    parser.add_argument("--work-dir", type=Path, default=REPO / "demo_work", help="phantom exports, dataset, training runs")
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints" / "medshift-xdigiskull-demo")
    parser.add_argument("--seed", type=int, default=None, help="split and training seed (default 0); the phantom heads are --heads")
    for key, value in PRESETS["cpu"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None, help=f"override the preset (cpu: {value})")
    parser.add_argument("--skip-data", action="store_true", help="reuse the phantom exports and dataset in --work-dir")
    parser.add_argument("--dataset", type=Path, default=None, help="train on this built X-DigiSkull instead of making one")
    parser.add_argument("--max-minutes", type=float, default=None, help="this session's time budget; the run stops (resumably) when it is spent")
    parser.add_argument("--resume", action="store_true", help="continue the run in --work-dir from its last checkpoints")
    args = parser.parse_args()
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error(f"--max-minutes must be positive, got {args.max_minutes}")
    if args.resume and (args.preset is not None or args.seed is not None):
        parser.error("--resume takes the preset and seed from the run's recipe.json: drop --preset/--seed")
    args.preset = args.preset or "cpu"
    args.seed = 0 if args.seed is None else args.seed
    return args


def head_seeds(settings: dict) -> list[int]:
    """The phantom heads (seeds) of the recipe's training data, in order; the heads the shipped weights'
    lineage.json holds out for validation and evaluation are refused."""
    heads = [int(seed) for seed in str(settings["heads"]).split(",")]
    lineage = load_lineage(REPO / "checkpoints" / "medshift-xdigiskull-demo")
    held_out = sorted(set(heads) & set(held_out_seeds(lineage))) if lineage is not None else []
    if held_out:
        raise SystemExit(f"--heads {held_out}: held out for validation/evaluation in the shipped lineage.json; pick others")
    return heads


def merge_manifests(raw: Path, heads: list[int]) -> Path:
    """One manifest.csv for the heads' exports in raw/head-<seed>/ (their paths, and phantom v2's bone-mask
    paths, prefixed with that folder)."""
    fieldnames, rows = None, []
    for seed in heads:
        with open(raw / f"head-{seed}" / "manifest.csv", newline="") as handle:
            reader = csv.DictReader(handle)
            fieldnames = reader.fieldnames
            for row in reader:
                row["file"] = f"head-{seed}/{row['file']}"
                if row.get("bone_mask"):
                    row["bone_mask"] = f"head-{seed}/{row['bone_mask']}"
                rows.append(row)
    with open(raw / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return raw / "manifest.csv"


def make_data(raw: Path, dataset: Path, settings: dict, seed: int, timings: dict[str, float], env: dict[str, str]) -> None:
    """Stages 1 and 2: phantom exports of every head, then one X-DigiSkull built from them all."""
    python = sys.executable
    heads = head_seeds(settings)
    for head in heads:
        command = [python, "-m", "xdigiskull.cli", "phantom", str(raw / f"head-{head}"), "--views", str(settings["views"]), "--seed", str(head),
                   "--phantom-version", str(PHANTOM_VERSION)]
        run_stage(f"phantom head {head}", command, timings, env)
    merge_manifests(raw, heads)
    run_stage(
        "build",
        [python, "-m", "xdigiskull.cli", "build", str(raw), "--out", str(dataset), "--labels", str(raw / "manifest.csv"),
         "--frames", "all", "--size", str(settings["build_size"]), "--seed", str(seed)],
        timings,
        env,
    )  # fmt: skip


def train_stage(name: str, command: list[str], output_dir: Path, steps: int, preset_minutes: float,
                session: Session, timings: dict[str, float], env: dict[str, str]) -> bool:  # fmt: skip
    """Run (or resume) one training stage within the session's budget; True when the stage is done."""
    if session.done(name):
        print(f"\n=== {name}: done in an earlier session")
        return True
    budget = session.budget(name, preset_minutes)
    if budget is None:
        print(f"\n=== {name}: less than {MIN_STAGE_MINUTES:g} min of the session left; continue with --resume")
        return False
    minutes, session_bound = budget
    resume = ["--resume", "latest"] if last_checkpoint_step(output_dir) > 0 else []
    if not resume:  # nothing to resume from: start the stage afresh
        shutil.rmtree(output_dir, ignore_errors=True)
    run_stage(name, [*command, *minutes_option(minutes or 0.0), *resume], timings, env)
    done = not session_bound or last_checkpoint_step(output_dir) >= steps
    session.record(name, timings[name] / 60.0, done)
    if not done:
        print(f"--- {name}: session budget spent at step {last_checkpoint_step(output_dir)} of {steps}; continue with --resume")
    return done


def main() -> None:
    args = parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    work = args.work_dir
    raw, dataset, vae_dir, model_dir = work / "raw", work / "x-digiskull", work / "vae", work / "model"
    preset, seed, settings = recipe_settings(args, work)
    session = Session(work, args.max_minutes, args.resume)
    python = sys.executable
    timings: dict[str, float] = {}
    print(f"preset {preset}: {settings}")

    if args.dataset is not None:
        dataset = args.dataset
    elif not (args.skip_data or (args.resume and (dataset / "data").is_dir())):
        make_data(raw, dataset, settings, seed, timings, env)
    if not args.resume:
        for stale in (vae_dir, model_dir):
            shutil.rmtree(stale, ignore_errors=True)
    vae_steps, unet_steps = int(settings["vae_steps"]), int(settings["unet_steps"])
    vae_done = train_stage(
        "train-vae",
        [python, "-m", "medshift.cli", "train-vae", "--dataset", str(dataset), "--output-dir", str(vae_dir),
         "--vae-config", "demo", "--resolution", str(settings["vae_resolution"]), "--crop-size", str(settings["vae_crop"]),
         "--batch-size", str(settings["vae_batch"]), "--max-steps", str(vae_steps), "--learning-rate", str(settings["vae_lr"]),
         "--warmup-steps", "50", "--lr-schedule", "cosine", "--checkpoint-every", "250", "--seed", str(seed)],
        vae_dir, vae_steps, settings["vae_minutes"], session, timings, env,
    )  # fmt: skip
    unet_done = vae_done and train_stage(
        "train",
        [python, "-m", "medshift.cli", "train", "--dataset", str(dataset), "--output-dir", str(model_dir), "--vae", str(vae_dir),
         "--resolution", str(settings["unet_resolution"]), *latent_crop_option(int(settings["unet_crop"])),
         "--unet-config", "demo", "--batch-size", str(settings["unet_batch"]),
         "--max-steps", str(unet_steps), "--learning-rate", str(settings["unet_lr"]), "--warmup-steps", "200",
         "--lr-schedule", str(settings["unet_schedule"]), "--ema-decay", "0.999", "--label-dropout", "0.15",
         "--noise-offset", str(settings["noise_offset"]),
         "--checkpoint-every", str(max(unet_steps // 5, 1)), "--sample-every", str(max(unet_steps // 2, 1)),
         "--num-sample-images", "4", "--seed", str(seed),
         # the defaults the pipeline carries (chosen on a tau and guidance sweep of the trained model)
         "--default-tau", str(settings["default_tau"]), "--default-guidance-scale", str(settings["default_guidance"])],
        model_dir, unet_steps, settings["unet_minutes"], session, timings, env,
    )  # fmt: skip

    if unet_done:
        unet_crop = int(settings["unet_crop"])
        latents = (f"{unet_crop}² windows of the" if unet_crop > 0 else "the whole") + f" cached latents of {settings['unet_resolution']}² images"
        notes = (
            f"Trained with `python scripts/train_demo.py --preset {preset}` on a phantom-built X-DigiSkull "
            f"(phantom heads {settings['heads']}, {settings['views']} poses each; split and training seed {seed}): "
            f"VAE {vae_steps} steps on {settings['vae_crop']}² crops of {settings['vae_resolution']}² images, UNet "
            f"{unet_steps} steps (batch {settings['unet_batch']}) on {latents}, offset noise {settings['noise_offset']}. "
            f"A phantom-only demo: not for clinical use."
        )
        started = time.perf_counter()
        publish(model_dir, args.out, notes)
        timings["publish"] = time.perf_counter() - started
        print("\n=== done: " + str(args.out))
    else:
        print(f"\n=== session over, run not finished: `python scripts/train_demo.py --resume --work-dir {work}` continues it")
    for name, seconds in timings.items():
        print(f"{name:>10}: {seconds / 60:6.1f} min")
    print(f"{'total':>10}: {sum(timings.values()) / 60:6.1f} min")


if __name__ == "__main__":
    main()
