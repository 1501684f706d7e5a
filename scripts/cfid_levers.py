"""Where does a checkpoint's CFID come from? Floors and inference-time levers on one phantom head.

    python scripts/cfid_levers.py                                   # shipped checkpoint, head seed 7, 4 poses
    python scripts/cfid_levers.py --seed 11 --variants default,guidance=2,steps=40
    python scripts/cfid_levers.py --seed 7 --views 12 --variants default --reconstructions 512,784

Renders the head as `scripts/eval_quality.py` does (same seeds refused), then prints, against the head's
real_normal frames, the CFID (FID Inception) of:

- the untranslated synthetic_low images (identity) and the phantom's noise-free real_normal renders of the
  same poses (what a perfect noise-free translation would score: the floor this metric allows);
- synthetic_low -> real_normal translations by MedShift at the model's defaults with --steps ODE steps (20,
  as issue 14's goals and eval_quality.py; the scheduler's own default is 50) and under each --variants
  entry, one change each: `guidance=G`, `steps=N`, `solver=S`, `tau=T`, `resolution=R` (processing px),
  with their paired SSIM/PSNR against the renders. Translations are `medshift.evaluate.translate_images`'s,
  as in eval_quality.py, so the default row repeats that script's MedShift figure at the default tau;
- with --reconstructions R1,R2,...: the VAE's reconstructions (encode and decode, tau = 1) of the renders
  and of the real frames, processed at each resolution R: the CFID a translation cannot go below at R,
  whatever the UNet does. (This is how the 512 px decoder fine-tune of the demo weights was found: the
  780 px-trained decoder reconstructed at 0.43 x the identity at 512 px and 0.29 x at 784.)

A lever that moves CFID moves it here; one that does not (the ODE is integrated well enough, say) leaves
the network's sharpness as the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_quality  # noqa: E402  (the head rendering, seeds and constants)

LEVERS = {"guidance": ("guidance_scale", float), "steps": ("num_inference_steps", int), "solver": ("solver", str),
          "tau": ("tau", float), "resolution": ("processing_resolution", int)}  # fmt: skip


def parse_variant(text: str) -> dict:
    """'default' -> {}; 'guidance=2' -> {'guidance_scale': 2.0}."""
    if text == "default":
        return {}
    name, _, value = text.partition("=")
    if name not in LEVERS or not value:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected default or one of {sorted(LEVERS)}=VALUE")
    argument, kind = LEVERS[name]
    try:
        return {argument: kind(value)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"variant {text!r}: {value!r} is not {'an integer' if kind is int else 'a number' if kind is float else 'valid'}") from None


def resolutions(text: str) -> list[int]:
    """'512,784' -> [512, 784]: positive processing resolutions in pixels."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated pixel sizes such as 512,784") from None
    if any(value < 8 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: a processing resolution must be at least 8 px")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=eval_quality.DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=7, help="phantom head; never a training seed")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps unless a variant sets steps=N")
    parser.add_argument("--variants", default="default,guidance=2,guidance=3,steps=50,solver=heun,tau=0.3",
                        help="comma-separated: default or LEVER=VALUE, LEVER in " + ", ".join(LEVERS))  # fmt: skip
    parser.add_argument("--reconstructions", type=resolutions, default=[],
                        help="comma-separated processing resolutions (px) at which to score the VAE's reconstructions")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON file with every figure")
    args = parser.parse_args()
    if args.seed in eval_quality.TRAINING_SEEDS:
        parser.error(f"--seed {args.seed} is a training seed ({eval_quality.TRAINING_SEEDS[args.seed]})")
    try:
        variants = [(text, parse_variant(text)) for text in args.variants.split(",")]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from medshift import MedShiftPipeline
    from medshift.evaluate import Run, mean_similarity, translate_images
    from medshift.metrics.frechet import frechet_distance_from_features
    from medshift.metrics.inception import InceptionFeatures

    inception = InceptionFeatures.from_cache()
    if inception is None:
        raise SystemExit("the FID Inception weights are not cached: run `medshift weights fetch`")
    pipe = MedShiftPipeline.from_pretrained(str(args.model))
    pipe.set_progress_bar_config(disable=True)  # translate_images reports nothing per ODE solve
    results: dict = {"model": str(args.model), "seed": args.seed, "poses": args.views, "num_inference_steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="cfid_levers_") as temporary:
        data, truths = eval_quality.load_head(Path(temporary), args.views, args.seed)
    reference = inception(data.target_images)
    results["reference_images"] = len(data.target_images)

    def cfid(images: list[np.ndarray]) -> float:
        return frechet_distance_from_features(reference, inception(images))

    results["identity"] = {"cfid": cfid(data.source_images)}
    results["noise-free render"] = {"cfid": cfid(truths)}
    for name in ("identity", "noise-free render"):
        print(f"{name:>22}: CFID {results[name]['cfid']:.1f}", flush=True)
    for text, overrides in variants:
        options = {"num_inference_steps": args.steps, **overrides}
        translations = translate_images(
            pipe, data.source_images, Run("medshift", options.get("tau")), eval_quality.SOURCE, eval_quality.TARGET,
            args.seed, 4, options["num_inference_steps"], options.get("guidance_scale"),
            solver=options.get("solver"), processing_resolution=options.get("processing_resolution"),
        )  # fmt: skip
        paired = mean_similarity(translations, truths)
        results[text] = {"cfid": cfid(translations), "paired_ssim": paired["ssim"], "paired_psnr": paired["psnr"]}
        ratio = results[text]["cfid"] / results["identity"]["cfid"]
        print(f"{text:>22}: CFID {results[text]['cfid']:.1f} ({ratio:.2f} x identity), "
              f"paired {paired['ssim']:.3f} / {paired['psnr']:.2f} dB", flush=True)  # fmt: skip
    for resolution in args.reconstructions:
        for name, images in (("renders", truths), ("real frames", data.target_images)):
            key = f"VAE reconstruction of the {name} at {resolution}"
            results[key] = {"cfid": cfid(eval_quality.reconstruct(pipe, images, resolution))}
            ratio = results[key]["cfid"] / results["identity"]["cfid"]
            print(f"{key}: CFID {results[key]['cfid']:.1f} ({ratio:.2f} x identity)", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
