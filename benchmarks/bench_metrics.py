"""Print the metrics' backbone speed on this machine: FID Inception images/s and LPIPS pairs/s at 780².

Inception: Clean-FID preprocessing (uint8, PIL bicubic to 299² per channel) plus the forward pass,
batches of 16, as `medshift evaluate` runs it. LPIPS-AlexNet on full 780² pairs, batches of 8.
Needs the cache `medshift weights fetch` fills.

    python benchmarks/bench_metrics.py [--images 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from medshift.metrics.inception import InceptionFeatures
from medshift.metrics.lpips import LPIPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=780)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inception, lpips = InceptionFeatures.from_cache(), LPIPS.from_cache()
    if inception is None or lpips is None:
        raise SystemExit("no cached backbone weights: run `medshift weights fetch` first")
    rng = np.random.default_rng(0)
    images = [rng.random((args.size, args.size), dtype=np.float32) for _ in range(args.images)]
    inception(images[:4])  # warm-up
    start = time.perf_counter()
    inception(images, batch_size=16)
    seconds = time.perf_counter() - start
    print(f"FID Inception (Clean-FID resize + forward): {args.images} images at {args.size}² in {seconds:.1f} s: "
          f"{args.images / seconds:.1f} images/s on {args.threads} thread(s), {os.cpu_count()} cores visible")
    pairs = args.images // 2
    start = time.perf_counter()
    lpips.distance(images[:pairs], images[pairs : 2 * pairs])
    seconds = time.perf_counter() - start
    print(f"LPIPS-AlexNet: {pairs} pairs at {args.size}² in {seconds:.1f} s: {pairs / seconds:.1f} pairs/s")


if __name__ == "__main__":
    main()
