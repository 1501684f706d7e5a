"""How much of each scale of an image's latent shows through the noise at a given tau: the tool for choosing
`medshift train --coarse-noise`.

MedShift inverts the source to tau and generates from there: a scale where the prior's noise hides the
signal at tau is re-drawn by the target class, a scale where the signal dominates is kept from the source.
This script encodes images of a built X-DigiSkull with a pipeline's VAE (at its processing resolution),
splits the latents and draws from each prior into octave bands (finest first: the detail lost by halving the
grid, then by halving again, ...; the last entry is what is left on the coarsest grid) and prints, per band,
the signal-to-noise power ratio on the path at tau,

    SNR(band, tau) = tau^2 P_latent(band) / ((1 - tau)^2 P_noise(band))

for the pipeline's own prior and for any `--coarse-noise` candidates. Around 1 or below the band is re-drawn;
far above 1 the source's content of that scale comes through.

    python scripts/prior_snr.py --dataset demo_work/x-digiskull
    python scripts/prior_snr.py --dataset demo_work/x-digiskull --coarse-noise 0,0,0.5,0.7,0.7 --coarse-noise 0,0,1,1.2,1.2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medshift.flow_matching import prior_noise  # noqa: E402
from medshift.pipeline_medshift import MedShiftPipeline  # noqa: E402
from medshift.training.data import load_split, prepare_example  # noqa: E402
from medshift.training.train import coarse_noise_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def octave_band_power(latents: torch.Tensor, bands: int) -> list[float]:
    """Mean power of each octave band of (N, C, H, W) latents, finest first, then the coarsest residual."""
    powers, current = [], latents
    for _ in range(bands):
        coarser = F.avg_pool2d(current, 2)
        detail = current - F.interpolate(coarser, size=current.shape[-2:], mode="bilinear", align_corners=False)
        powers.append(float(detail.pow(2).mean()))
        current = coarser
    powers.append(float(current.pow(2).mean()))
    return powers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "medshift-xdigiskull-demo"), help="MedShiftPipeline folder (its VAE, resolution and prior)")
    parser.add_argument("--dataset", required=True, help="built X-DigiSkull folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=32, help="images to encode")
    parser.add_argument("--taus", default="0.6,0.45,0.3")
    parser.add_argument("--coarse-noise", action="append", default=[], help="a candidate's weights, e.g. 0,0,0.5,0.7,0.7 (repeatable)")
    parser.add_argument("--noise-offset", type=float, default=None, help="offset of the candidates (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = MedShiftPipeline.from_pretrained(args.model)
    resolution = int(pipe.config.resolution)
    rows = load_split(args.dataset, args.split)
    count = min(args.images, len(rows))
    pixels = torch.stack([prepare_example(rows[i], resolution)["pixel_values"] for i in range(count)])
    with torch.no_grad():
        latents = torch.cat([pipe.encode_images((batch + 1) / 2) for batch in pixels.split(8)]).float()
    side = min(latents.shape[-2:])
    bands = max(side.bit_length() - 2, 1)  # down to a 2x2 (or so) grid
    signal = octave_band_power(latents, bands)

    own_offset = float(pipe.scheduler.config.noise_offset)
    offset = own_offset if args.noise_offset is None else args.noise_offset
    priors = {f"this model's prior (offset {own_offset:g}, coarse {list(pipe.scheduler.config.coarse_noise or [])})": pipe.scheduler.sample_noise}
    for text in args.coarse_noise:
        weights = coarse_noise_weights(text)
        priors[f"offset {offset:g}, coarse {list(weights)}"] = lambda shape, generator, w=weights: prior_noise(shape, offset, w, generator=generator)

    taus = [float(t) for t in args.taus.split(",")]
    print(f"{count} images of {args.dataset} ({args.split}) at {resolution} px -> latents {tuple(latents.shape[1:])}")
    header = [f"1/{2**k}" for k in range(bands)] + [f"rest ({side >> bands}²)"]
    print("bands (latent detail lost by halving the grid k times):", ", ".join(header))
    print("latent power: " + "  ".join(f"{p:.3g}" for p in signal))
    for name, draw in priors.items():
        noise = draw((256, *latents.shape[1:]), generator=torch.Generator().manual_seed(args.seed)).float()
        power = octave_band_power(noise, bands)
        print(f"\n{name}: noise power " + "  ".join(f"{p:.3g}" for p in power))
        for tau in taus:
            ratios = [tau**2 * s / ((1 - tau) ** 2 * n) for s, n in zip(signal, power)]
            print(f"  SNR at tau {tau:g}: " + "  ".join(f"{r:7.2f}" for r in ratios))


if __name__ == "__main__":
    main()
