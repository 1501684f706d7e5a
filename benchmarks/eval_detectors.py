"""Measure the builder's two image checks on evaluation sets with known truth (benchmarks/detector_sets.py).

Burned-in text (`xdigiskull.deid.detect_corner_text`): confusion matrix over generated radiographs and
phantom frames, with and without text, plus the greyscale images that ship with pydicom (no text).
Exposed field (`xdigiskull.field.detect_field`): IoU with the true field per kind and bit depth.

    python benchmarks/eval_detectors.py                        # 2000 text samples (+ phantom), 1000 fields
    python benchmarks/eval_detectors.py --text 200 --fields 100 --no-phantom

Goals (issue 13): text recall >= 0.95 and false-positive rate <= 1 %; field IoU >= 0.95 for every kind,
and a frame without a collimator never cut below 90 % of its side.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import typer

# run as `python benchmarks/eval_detectors.py`: its folder is on the import path
from detector_sets import FIELD_KINDS, SIDE, field_sample, iou, text_sample  # noqa: E402

from xdigiskull.deid import detect_corner_text  # noqa: E402
from xdigiskull.field import detect_field  # noqa: E402
from xdigiskull.prepare import prepare_frame  # noqa: E402
from xdigiskull.reading import SourceError, read_source  # noqa: E402

# pydicom's greyscale test images: CT of a skull, a spine and a head, MR of an abdomen and a knee, NM (none has text)
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "examples_overlay.dcm",
                 "JPEG2000.dcm", "JPGExtended.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm")


def pydicom_frames() -> list[tuple[str, np.ndarray]]:
    """The pydicom test files above, read, cropped and resized by the builder's own code."""
    from pydicom.data import get_testdata_file

    frames = []
    for name in PYDICOM_FILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = get_testdata_file(name)
            if path is None:
                continue
            source = read_source(path, "first")
        frames.append((name, prepare_frame(source.frames[0], source.dataset, SIDE, allow_upscale=True).image))
    return frames


def phantom_frames(views: int) -> list[np.ndarray]:
    """Frames of a small phantom export (all classes), prepared as the builder prepares them."""
    from xdigiskull.phantom.export import generate_exports

    frames = []
    with tempfile.TemporaryDirectory(prefix="eval-phantom-") as tmp:
        out = generate_exports(Path(tmp) / "raw", views=views, seed=7, detector=512, frames=1, catheter=True,
                               jitter_deg=1.5, workers=1)
        for path in sorted(p for p in out.rglob("*") if p.suffix in (".png", ".dcm") and "ground_truth" not in p.parts):
            try:
                source = read_source(path, "first")
                frames.append(prepare_frame(source.frames[0], source.dataset, SIDE, allow_upscale=True).image)
            except SourceError:
                continue
    return frames


def evaluate_text(count: int, phantom_views: int, start: int) -> None:
    backgrounds = phantom_frames(phantom_views) if phantom_views else []
    matrix = np.zeros((2, 2), int)  # [truth][flagged]
    misses: list[str] = []
    seconds = 0.0
    # generated radiographs first, then (again with and without text) on each phantom frame in turn
    samples = [(start + i, None) for i in range(count)]
    samples += [(start + count + 2 * i + k, b) for i, b in enumerate(backgrounds) for k in (0, 1)]
    for index, background in samples:
        image, truth, description = text_sample(index, background)
        started = time.perf_counter()
        flagged = bool(detect_corner_text(image))
        seconds += time.perf_counter() - started
        matrix[int(truth), int(flagged)] += 1
        if flagged != truth and len(misses) < 12:
            misses.append(f"  #{index} {'missed' if truth else 'false alarm'}: {description}")
    real = pydicom_frames()
    real_flagged = [name for name, image in real if detect_corner_text(image)]
    matrix[0, 1] += len(real_flagged)
    matrix[0, 0] += len(real) - len(real_flagged)
    n_text, n_clean = matrix[1].sum(), matrix[0].sum()
    print(f"burned-in text: {len(samples)} generated samples ({len(backgrounds)} phantom frames used twice) + "
          f"{len(real)} pydicom images without text")
    print("                    flagged   not flagged")
    print(f"  text     ({n_text:5d})  {matrix[1, 1]:7d}   {matrix[1, 0]:11d}")
    print(f"  no text  ({n_clean:5d})  {matrix[0, 1]:7d}   {matrix[0, 0]:11d}")
    print(f"  recall {matrix[1, 1] / max(1, n_text):.3f} (goal >= 0.95), false-positive rate "
          f"{matrix[0, 1] / max(1, n_clean):.2%} (goal <= 1 %); pydicom images flagged: {real_flagged or 'none'}")
    print(f"  {1000 * seconds / max(1, len(samples)):.2f} ms per {SIDE}x{SIDE} image on one core")
    if misses:
        print("\n".join(["  first errors:", *misses]))


def evaluate_fields(count: int) -> None:
    results: dict[tuple[str, int], list[float]] = {}
    narrow_none = 0
    not_full_frame = 0
    seconds = 0.0
    for index in range(count):
        frame, truth, kind, bits = field_sample(index)
        started = time.perf_counter()
        found = detect_field(frame)
        seconds += time.perf_counter() - started
        results.setdefault((kind, bits), []).append(iou(found, truth))
        if kind == "none":
            rows, cols = frame.shape
            narrow_none += found.height < 0.9 * rows or found.width < 0.9 * cols
            not_full_frame += found.source != "full-frame"
    print(f"\nexposed field: {count} frames, IoU with the true field")
    print(f"  {'kind':<11} {'bits':>4} {'frames':>6} {'mean':>6} {'min':>6} {'>= 0.95':>8}")
    for kind in FIELD_KINDS:
        for bits in (8, 16):
            values = np.asarray(results.get((kind, bits), []))
            if values.size:
                print(f"  {kind:<11} {bits:>4} {values.size:>6} {values.mean():6.3f} {values.min():6.3f} {np.mean(values >= 0.95):8.1%}")
    print(f"  frames without a collimator cut below 90 % of a side: {narrow_none}; not reported as full-frame: {not_full_frame}")
    print(f"  {1000 * seconds / max(1, count):.2f} ms per frame on one core")


def main(
    text: int = typer.Option(2000, help="Generated text samples (half with text)."),
    fields: int = typer.Option(1000, help="Generated field frames (a fifth of each kind, half 8-bit)."),
    phantom_views: int = typer.Option(4, help="Phantom poses rendered as extra text backgrounds (0: none)."),
    start: int = typer.Option(100_000, help="First sample of the text set (the check was tuned on 0-2399)."),
) -> None:
    """Print the confusion matrix of the text check and the IoU table of the field detector."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)  # one core, as in a build worker
    if text:
        evaluate_text(text, phantom_views, start)
    if fields:
        evaluate_fields(fields)


if __name__ == "__main__":
    typer.run(main)
