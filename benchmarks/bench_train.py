"""Print training steps/s of `medshift train` with and without the latent cache, and with bf16 autocast.

Runs the real training loop (`run_training`) on the same small X-DigiSkull-shaped dataset (random-weight
demo VAE and demo UNet, 256² images, 32² latents): on cached latents, encoding every batch through the
VAE, and on cached latents with `--mixed-precision bf16` (on a CPU: torch's bf16 autocast, which pays on
CPUs with AVX-512 BF16 or AMX and is many times slower on those without). The time to build the cache is
printed separately: it is paid once per dataset and VAE. Goal: at least 3x more steps/s with the cache.

    python benchmarks/bench_train.py              # 20 steps each, batch 8
    python benchmarks/bench_train.py --steps 50 --batch-size 16

Timings on a shared CPU are noisy; run it on an idle machine for figures to quote.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate.state import AcceleratorState  # noqa: E402
from PIL import Image  # noqa: E402

from medshift.models import demo_vae_config, make_autoencoder  # noqa: E402
from medshift.training.common import read_log  # noqa: E402
from medshift.training.data import load_split  # noqa: E402
from medshift.training.latents import encode_dataset, load_vae  # noqa: E402
from medshift.training.train import TrainConfig, run_training  # noqa: E402
from xdigiskull.classes import CLASS_NAMES  # noqa: E402


def write_dataset(root: Path, count: int, side: int) -> Path:
    """`count` grey images of noisy rings (skull-like structure), cycling through the five classes."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:side, :side] / side - 0.5
    images, labels = [], []
    for index in range(count):
        radius = np.hypot(x - rng.uniform(-0.05, 0.05), y - rng.uniform(-0.05, 0.05))
        image = 0.2 + 0.6 * np.exp(-(((radius - 0.3) / 0.04) ** 2)) + rng.normal(0, 0.03, (side, side))
        images.append(Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)))
        labels.append(index % len(CLASS_NAMES))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))})
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(
        str(root / "data" / "train-00000-of-00001.parquet")
    )
    return root


def loop_seconds_per_step(output_dir: Path) -> float:
    """From the per-step log: time between the first and the last logged step (skips step 1's warm-up)."""
    log = read_log(output_dir / "train_log.csv")
    return (log[-1]["seconds"] - log[0]["seconds"]) / (log[-1]["step"] - log[0]["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256, help="image side (latent side = resolution / 8)")
    parser.add_argument("--images", type=int, default=32, help="dataset size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as temporary:
        root = Path(temporary)
        dataset = write_dataset(root / "dataset", args.images, args.resolution)
        torch.manual_seed(0)
        make_autoencoder(demo_vae_config()).save_pretrained(str(root / "vae"))

        vae = load_vae(str(root / "vae"))
        started = time.perf_counter()
        encode_dataset(vae, load_split(str(dataset), "train"), args.resolution, flip=False, batch_size=args.batch_size, show_progress=False)
        cache_seconds = time.perf_counter() - started

        results = {}
        for name, cached, precision in (("cached", True, "no"), ("uncached", False, "no"), ("cached-bf16", True, "bf16")):
            output_dir = root / name
            AcceleratorState._reset_state(reset_partial_state=True)  # accelerate fixes the precision once per process
            run_training(
                TrainConfig(
                    dataset=str(dataset),
                    output_dir=str(output_dir),
                    vae=str(root / "vae"),
                    resolution=args.resolution,
                    batch_size=args.batch_size,
                    max_steps=args.steps,
                    cache_latents=cached,
                    mixed_precision=precision,
                    flip=False,
                    checkpoint_every=0,
                    num_sample_images=0,
                    log_every=1,
                    show_progress=False,
                )
            )
            results[name] = 1.0 / loop_seconds_per_step(output_dir)

    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}")
    print(f"setting: demo VAE + demo UNet, {args.resolution}² images, batch {args.batch_size}, {args.steps} steps each")
    print(f"latent cache build ({args.images} images, once): {cache_seconds:.1f} s")
    print(f"with latent cache:    {results['cached']:.2f} steps/s ({1 / results['cached']:.3f} s/step)")
    print(f"without latent cache: {results['uncached']:.2f} steps/s ({1 / results['uncached']:.3f} s/step)")
    print(f"speed-up with the cache: {results['cached'] / results['uncached']:.1f}x (goal: >= 3x)")
    print(f"with latent cache, bf16 autocast: {results['cached-bf16']:.2f} steps/s ({1 / results['cached-bf16']:.3f} s/step), "
          f"{results['cached-bf16'] / results['cached']:.2f}x fp32's")


if __name__ == "__main__":
    main()
