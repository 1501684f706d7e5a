"""Benchmark `xdigiskull build`: images per second and peak memory for 1024x1024 12-bit DICOM -> 780x780 PNG.

Writes N single-frame XA files like the phantom's Azurion exports (12-bit, dark shutter bands with matching
shutter tags, a window) under a scratch folder, then builds them and prints the figures. Each of the N files
is a copy of one of a pool of distinct images with its own SOPInstanceUID and a few pixels of its own, so no
file is a duplicate of another (the builder writes a copy once). To reach 20k files without 40 GB of disk,
`--links` hard-links the pool under N names instead (every file is still read and decoded in full, and the
copies are reported ``duplicate-of``; images/s counts them).

    python benchmarks/bench_build.py --n 1000 --n 5000 --num-proc 2
    python benchmarks/bench_build.py --n 0 --stages     # where a worker's time goes, step by step
    python benchmarks/bench_build.py --n 1000 --against main   # this checkout vs another commit, same files, one run

Goal (issue 4): >= 150 images/s on 2 cores, peak RSS < 1 GiB and flat from 1k to 20k images.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pydicom
import typer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

from xdigiskull.build import BuildConfig, build_dataset

DOSES = ("low", "normal", "exposure")


def write_pool(folder: Path, count: int, side: int = 1024, seed: int = 0) -> list[Path]:
    """`count` distinct 12-bit XA files with shutters, each its own view (so splits have groups to deal)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    paths = []
    for index in range(count):
        r2 = ((yy - side / 2) / (side / 3)) ** 2 + ((xx - side / 2) / (side / 3.4)) ** 2
        image = 2600 - 1400 * np.exp(-r2 * (1 + 0.1 * index)) + 60 * rng.standard_normal((side, side), dtype=np.float32)
        pixels = np.clip(image, 0, 4095).astype(np.uint16)
        band = side // 12
        pixels[:band] = pixels[-band:] = 30
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = pool_uid(index)  # fixed length: copies get their own (see make_raw)
        ds.SOPClassUID = XRayAngiographicImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality = "XA"
        ds.PatientName = "Bench^Patient"
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.KVP, ds.XRayTubeCurrent, ds.ExposureTime = 70, 10, 8
        ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = float(index * 7 % 180 - 90), 0.0
        ds.ShutterShape = "RECTANGULAR"
        ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 1, side
        ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = band + 1, side - band
        ds.PixelData = pixels.tobytes()
        path = folder / f"pool-{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def pool_uid(index: int, copy: int = 0) -> str:
    """The SOPInstanceUID of pool file `index`'s copy `copy`: always 38 characters (no component may start with
    0), so that a copy is a byte patch."""
    return f"1.2.826.0.1.3680043.10.1.{1000 + index}.{1000000 + copy}"


# where a copy's own pixels go: a row of MARK_BITS pixels in the exposed field, each dark or bright by a bit of
# the copy's number (a difference the 780-pixel output keeps)
MARK_ROW, MARK_COLUMN, MARK_BITS = 512, 400, 20


def make_raw(folder: Path, pool: list[Path], n: int, links: bool = False) -> None:
    """N files under azurion/<dose>/: copies of the pool, each with its own SOPInstanceUID and pixel mark
    (with `links`, hard links to the pool: duplicates of one another)."""
    templates = [path.read_bytes() for path in pool] if not links else []
    for index in range(n):
        target = folder / "azurion" / DOSES[index % 3] / f"run-{index:06d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = pool[index % len(pool)]
        if links:
            try:
                os.link(source, target)
                continue
            except OSError:
                pass
        if not templates:
            shutil.copyfile(source, target)
            continue
        data = bytearray(templates[index % len(pool)].replace(pool_uid(index % len(pool)).encode(), pool_uid(index % len(pool), index).encode()))
        side = 1024
        start = len(data) - 2 * side * side + 2 * (MARK_ROW * side + MARK_COLUMN)
        mark = np.array([3800 if index >> bit & 1 else 300 for bit in range(MARK_BITS)], "<u2").tobytes()
        data[start : start + len(mark)] = mark
        target.write_bytes(data)


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU time of this process, and of its finished children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


class PeakMemory:
    """Samples the RSS of this process and of all its children (the build's workers) every 50 ms."""

    def __init__(self) -> None:
        self.peak_total = 0
        self.peak_main = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                main = me.memory_info().rss
                total = main + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_main = max(self.peak_main, main)
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.05)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def stage_times(files: list[Path], rounds: int = 2) -> dict[str, float]:
    """Milliseconds per image of each step of a build, on one core, in this process.

    Calls the builder's own functions in the order a worker does (the last round is reported, so
    imports and first-call costs are left out).
    """
    import hashlib
    import io

    from xdigiskull.deid import detect_corner_text, technical_values
    from xdigiskull.labels import make_labeler
    from xdigiskull.prepare import prepare_frame
    from xdigiskull.processing import encode_png, label_file, worker_init
    from xdigiskull.reading import decode_frame, dicom_to_display

    worker_init()  # one OpenCV thread and malloc settings, as in a build worker
    labeler = make_labeler("folders", files[0].parent)
    times: dict[str, float] = {}

    def clock(name, function, *args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        times[name] = times.get(name, 0.0) + time.perf_counter() - started
        return result

    for _ in range(rounds):
        times.clear()
        for path in files:
            clock("label (header read)", label_file, "azurion/normal/x.dcm", str(path), labeler)
            data = clock("read file", path.read_bytes)
            clock("SHA-256", lambda: hashlib.sha256(data).hexdigest())
            ds = clock("parse header", pydicom.dcmread, io.BytesIO(data))
            raw = clock("decode pixels", decode_frame, ds)
            display = clock("window", dicom_to_display, raw, ds, "MONOCHROME2", [])
            clock("technical tags", technical_values, ds)
            prepared = clock("field + crop + resize", prepare_frame, display, ds, 780)
            clock("burned-in text check", detect_corner_text, prepared.image)
            clock("PNG encode", encode_png, prepared.image, 8)
    return {name: 1000 * seconds / len(files) for name, seconds in times.items()}


def main(
    n: list[int] = typer.Option([1000], "--n", help="Number of images (repeat the option for several runs)."),
    num_proc: int = typer.Option(2, help="Build worker processes."),
    distinct: int = typer.Option(64, help="Distinct DICOM files behind the N names."),
    workdir: Path = typer.Option(None, help="Scratch folder [default: a temporary folder, removed afterwards]."),
    stages: bool = typer.Option(False, "--stages", help="Also time each step of a worker on one core."),
    links: bool = typer.Option(False, "--links", help="Hard-link the pool under N names (duplicates) instead of writing N distinct copies."),
    against: str = typer.Option(None, help="A git commit to compare with: both build the same files, alternately, twice each."),
) -> None:
    """Print images/s and peak RSS of `build_dataset` for each N."""
    scratch = Path(workdir or tempfile.mkdtemp(prefix="bench-build-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        pool_dir = scratch / "pool"
        pool_dir.mkdir(exist_ok=True)
        started = time.perf_counter()
        pool = write_pool(pool_dir, distinct)
        print(f"pool: {distinct} distinct 1024x1024 12-bit DICOM files in {time.perf_counter() - started:.1f} s")
        print(f"cpus: {os.cpu_count()}, num_proc: {num_proc} (timings are noisy when the machine is shared)")
        if stages:
            figures = stage_times(pool)
            print("one core, ms per image: " + ", ".join(f"{name} {ms:.2f}" for name, ms in figures.items())
                  + f"; total {sum(figures.values()):.1f}")
        for count in (count for count in n if count > 0):  # --n 0: only the --stages figures
            raw = scratch / f"raw-{count}"
            shutil.rmtree(raw, ignore_errors=True)
            make_raw(raw, pool, count, links=links)
            if against:
                compare_commits(raw, scratch, against, num_proc)
                shutil.rmtree(raw)
                continue
            out = scratch / f"out-{count}"
            cpu_before = _cpu_seconds()
            with PeakMemory() as memory:
                started = time.perf_counter()
                summary = build_dataset(BuildConfig(raw_dir=raw, out=out, num_proc=num_proc, report=scratch / f"report-{count}.json"), progress=False)
                seconds = time.perf_counter() - started
            cpu_after = _cpu_seconds()
            images = summary.frames_written + summary.skip_reasons.get("duplicate-of", 0)  # decoded and encoded alike
            main_ms, workers_ms = (1000 * (a - b) / max(1, images) for a, b in zip(cpu_after, cpu_before))
            cpu_ms = main_ms + workers_ms
            size = sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))
            print(
                f"N={count}: {images} images in {seconds:.1f} s = {images / seconds:.1f} images/s "
                f"({summary.frames_written} written); "
                f"peak RSS main {memory.peak_main / 2**20:.0f} MiB, main+workers {memory.peak_total / 2**20:.0f} MiB; "
                f"shards {size / 2**20:.0f} MiB"
            )
            # wall time suffers when other jobs share the cores; CPU time per image much less so
            print(
                f"N={count}: CPU time {cpu_ms:.1f} ms per image (main {main_ms:.1f} + workers {workers_ms:.1f}) -> "
                f"{num_proc * 1000 / cpu_ms:.0f} images/s on {num_proc} uncontended cores"
            )
            shutil.rmtree(raw)
            shutil.rmtree(out)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


def compare_commits(raw: Path, scratch: Path, commit: str, num_proc: int, rounds: int = 3) -> None:
    """Build `raw` with `xdigiskull build` from a checkout of `commit` and from this checkout, alternately, and
    print the wall times (each a fresh process: imports and pool start-up included, as a user sees them) and
    the CPU times of the build and its workers (less disturbed than wall time when other jobs share the cores)."""
    root = Path(__file__).resolve().parent.parent
    other = scratch / "other-checkout"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(other), commit], check=True, capture_output=True)
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in (commit, "this checkout")}
    try:
        for _ in range(rounds):
            for name, source in ((commit, other), ("this checkout", root)):
                out = scratch / "compare-out"
                command = [sys.executable, "-m", "xdigiskull.cli", "build", str(raw), "--out", str(out), "--num-proc", str(num_proc)]
                env = {**os.environ, "PYTHONPATH": str(source)}
                cpu_before, started = sum(_cpu_seconds()), time.perf_counter()
                subprocess.run(command, env=env, check=True, capture_output=True)
                times[name]["wall"].append(time.perf_counter() - started)
                times[name]["cpu"].append(sum(_cpu_seconds()) - cpu_before)  # the build and its workers (reaped)
                shutil.rmtree(out)
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(other)], check=False)
    for name, figures in times.items():
        print(
            f"{name}: wall " + ", ".join(f"{v:.1f}" for v in figures["wall"]) + f" s (median {statistics.median(figures['wall']):.1f}); "
            "CPU " + ", ".join(f"{v:.1f}" for v in figures["cpu"]) + f" s (median {statistics.median(figures['cpu']):.1f})"
        )
    for kind in ("wall", "cpu"):
        ratio = statistics.median(times["this checkout"][kind]) / statistics.median(times[commit][kind])
        print(f"this checkout / {commit}, {kind} time: {ratio:.3f} (goal: within 5 %)")


if __name__ == "__main__":
    typer.run(main)
