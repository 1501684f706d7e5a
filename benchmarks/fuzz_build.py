"""Fuzz `xdigiskull build`: mutate valid DICOMs and PNGs, build them all, and check that nothing escapes.

Seeds: real DICOMs from pydicom's test set (CT, MR, US, NM; JPEG 2000, JPEG-LS, RLE, big endian, deflated)
and generated 12-bit XA frames and 8-/16-bit PNGs. Each fuzzed file is one seed with one or two mutations:
bit flips (anywhere, or in the header), truncation, a random value for an attribute the builder reads
(NumberOfFrames, Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, window, rescale, shutter,
angles, photometric interpretation), a swapped transfer syntax, or a PNG header that claims another size.

    python benchmarks/fuzz_build.py --n 10000            # prints crashes, reasons, peak RSS
    python benchmarks/fuzz_build.py --n 10000 --seed 424242   # any seed: the builder was tuned on seed 0 only
    python benchmarks/fuzz_build.py --n 300 --num-proc 1

Passes when the build completes, every input file is in the report, and no file ended as internal-error.
"""

from __future__ import annotations

import io
import json
import resource
import shutil
import struct
import tempfile
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.data
import typer
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    XRayAngiographicImageStorage,
    generate_uid,
)

from xdigiskull.build import BuildConfig, BuildError, build_dataset

REAL_SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "image_dfl.dcm",
    "rtdose.dcm",
    "examples_palette.dcm",
    "SC_rgb_rle.dcm",
    "badVR.dcm",
)
# attribute -> VR of the values the fuzzer writes in its place
FUZZED_ATTRIBUTES: dict[str, str] = {
    "NumberOfFrames": "IS",
    "Rows": "US",
    "Columns": "US",
    "BitsAllocated": "US",
    "BitsStored": "US",
    "PixelRepresentation": "US",
    "SamplesPerPixel": "US",
    "WindowCenter": "DS",
    "WindowWidth": "DS",
    "VOILUTFunction": "CS",
    "RescaleSlope": "DS",
    "RescaleIntercept": "DS",
    "ShutterShape": "CS",
    "ShutterLeftVerticalEdge": "IS",
    "ShutterRightVerticalEdge": "IS",
    "ShutterUpperHorizontalEdge": "IS",
    "ShutterLowerHorizontalEdge": "IS",
    "CenterOfCircularShutter": "IS",
    "RadiusOfCircularShutter": "IS",
    "PositionerPrimaryAngle": "DS",
    "PositionerSecondaryAngle": "DS",
    "PhotometricInterpretation": "CS",
    "BurnedInAnnotation": "CS",
}
TEXT_VALUES = (b"1A", b"", b"-1", b"0", b"nan", b"inf", b"1e308", b"65535", b"4294967295", b"-2147483648", b"3.5",
               b"1\\2\\3", b"RECTANGULAR", b"CIRCULAR\\POLYGONAL", b"SIGMOID", b"MONOCHROME1", b"YBR_FULL_422", b"\xff\xfe")
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
            JPEGBaseline8Bit, JPEG2000Lossless, JPEGLSLossless, RLELossless, "1.2.840.10008.1.2.4.100", "1.2.3.4")


@dataclass
class FuzzResult:
    """What one fuzz run found.

    Attributes:
        files: fuzzed input files written.
        crashed: the exception that escaped the build, or "" when it completed.
        missing: input files absent from the report.
        reasons: {reason code: count} over files and frames.
        internal_errors: report entries of exceptions the builder did not expect (contained, but bugs).
        frames_written: images in the dataset.
        seconds: build time.
        peak_rss_main_mb, peak_rss_worker_mb: peak resident memory of the build process and of its largest worker.
    """

    files: int
    crashed: str
    missing: list[str]
    reasons: dict[str, int]
    internal_errors: list[str]
    frames_written: int
    seconds: float
    peak_rss_main_mb: float
    peak_rss_worker_mb: float


# ------------------------------------------------------------------------------------------------ seeds


def _xa_seed(rng: np.random.Generator, side: int, frames: int) -> Dataset:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r2 = ((yy - side / 2) / (side / 3)) ** 2 + ((xx - side / 2) / (side / 3.2)) ** 2
    image = 0.75 - 0.35 * np.exp(-r2) + 0.02 * rng.standard_normal((frames, side, side)).astype(np.float32)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"fuzz-seed-{side}-{frames}"])  # reproducible
    ds.SOPClassUID, ds.SOPInstanceUID = XRayAngiographicImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "XA"
    ds.Rows = ds.Columns = side
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = 30, -10
    margin = side // 16
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge = ds.ShutterUpperHorizontalEdge = margin + 1
    ds.ShutterRightVerticalEdge = ds.ShutterLowerHorizontalEdge = side - margin
    pixels = np.clip(np.round(image * 4095), 0, 4095).astype(np.uint16)
    pixels[:, :margin] = pixels[:, -margin:] = 20
    pixels[:, :, :margin] = pixels[:, :, -margin:] = 20
    ds.PixelData = pixels.tobytes()
    return ds


def dicom_seeds(rng: np.random.Generator) -> list[bytes]:
    """Valid DICOM files to mutate: pydicom's real files and generated XA in several transfer syntaxes."""
    seeds = [Path(pydicom.data.get_testdata_file(name)).read_bytes() for name in REAL_SEEDS]
    for side, frames, syntax in ((256, 1, None), (192, 3, None), (256, 1, RLELossless), (128, 2, JPEG2000Lossless)):
        ds = _xa_seed(rng, side, frames)
        if syntax is not None:
            ds.compress(syntax, generate_instance_uid=False)
        seeds.append(_encode(ds, enforce_file_format=True))
    return seeds


def png_seeds(rng: np.random.Generator) -> list[bytes]:
    """Valid 8- and 16-bit grey PNGs (and one colour) to mutate."""
    seeds = []
    for side, depth in ((256, 8), (200, 16), (320, 8)):
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        image = 0.5 + 0.3 * np.sin(xx / 13.0) * np.cos(yy / 17.0) + 0.03 * rng.standard_normal((side, side))
        scale = 255 if depth == 8 else 65535
        pixels = np.clip(np.round(image * scale), 0, scale).astype(np.uint8 if depth == 8 else np.uint16)
        seeds.append(cv2.imencode(".png", pixels)[1].tobytes())
    colour = np.dstack([np.full((128, 128), v, np.uint8) for v in (30, 120, 200)])
    seeds.append(cv2.imencode(".png", colour)[1].tobytes())
    return seeds


# ------------------------------------------------------------------------------------------------ mutations


def _encode(ds: Dataset, enforce_file_format: bool = False) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=enforce_file_format)
    return buffer.getvalue()


def _flip_bits(data: bytes, rng: np.random.Generator, head: int | None = None) -> bytes:
    out = bytearray(data)
    span = min(len(out), head or len(out))
    if span == 0:  # an earlier truncation left nothing to flip
        return data
    for _ in range(int(rng.integers(1, 65))):
        position = int(rng.integers(0, span))
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _random_value(rng: np.random.Generator, vr: str) -> bytes:
    if vr == "US" and rng.random() < 0.7:
        return struct.pack("<H", int(rng.choice([0, 1, 2, 3, 7, 12, 16, 33, 64, 65535, int(rng.integers(0, 65536))])))
    if rng.random() < 0.5:
        return TEXT_VALUES[int(rng.integers(0, len(TEXT_VALUES)))]
    return bytes(rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8))


def mutate_dicom(seed: bytes, rng: np.random.Generator) -> bytes:
    """One seed file with one or two random mutations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(seed))
    kinds = rng.choice(["attribute", "syntax", "flip", "flip-header", "truncate"], size=int(rng.integers(1, 3)))
    for kind in kinds:
        if kind == "attribute":
            keyword = list(FUZZED_ATTRIBUTES)[int(rng.integers(0, len(FUZZED_ATTRIBUTES)))]
            vr = FUZZED_ATTRIBUTES[keyword]
            value = _random_value(rng, vr)
            value += b" " * (len(value) % 2)
            tag = Tag(keyword)
            implicit, little = ds.original_encoding  # written as is only in the file's own encoding
            if not little and vr == "US":
                value = value[::-1]
            ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, bool(implicit), bool(little))

        elif kind == "syntax":
            ds.file_meta.TransferSyntaxUID = SYNTAXES[int(rng.integers(0, len(SYNTAXES)))]
    try:
        data = _encode(ds)
    except Exception:  # pydicom converts raw values for a new encoding, and refuses the malformed ones
        data = seed
    for kind in kinds:
        if kind == "flip":
            data = _flip_bits(data, rng)
        elif kind == "flip-header":
            data = _flip_bits(data, rng, head=1024)
        elif kind == "truncate":
            data = data[: int(rng.integers(0, max(1, len(data))))]
    return data


def mutate_png(data: bytes, rng: np.random.Generator) -> bytes:
    """A PNG seed with a random mutation: bit flips, truncation, or an IHDR that claims another size or depth."""
    kind = rng.choice(["flip", "truncate", "size", "depth"])
    if kind == "flip":
        return _flip_bits(data, rng)
    if kind == "truncate":
        return data[: int(rng.integers(0, len(data)))]
    header = bytearray(data[16:29])  # IHDR data: width, height, depth, colour type, ...
    if kind == "size":
        header[0:8] = struct.pack(">II", *(int(v) for v in rng.choice([1, 7, 65535, 100_000, 2**31 - 1], size=2)))
    else:
        header[8] = int(rng.choice([1, 2, 4, 8, 16, 3, 0]))
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)))
    return data[:16] + bytes(header) + crc + data[33:]


def write_inputs(raw: Path, n: int, seed: int) -> list[str]:
    """Write `n` fuzzed files under `raw` in the folder layout (3 DICOMs to 1 PNG); returns their relative paths."""
    rng = np.random.default_rng(seed)
    dicoms, pngs = dicom_seeds(rng), png_seeds(rng)
    names = []
    for index in range(n):
        if index % 4 == 3:
            relative = f"simulator/{('low', 'high')[index % 2]}/fuzz{index:05d}.png"
            data = mutate_png(pngs[int(rng.integers(0, len(pngs)))], rng)
        else:
            relative = f"azurion/{('low', 'normal', 'exposure')[index % 3]}/fuzz{index:05d}.dcm"
            data = mutate_dicom(dicoms[int(rng.integers(0, len(dicoms)))], rng)
        path = raw / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        names.append(relative)
    return names


# ------------------------------------------------------------------------------------------------ run


def fuzz(n: int, workdir: Path, seed: int = 0, num_proc: int = 2, size: int = 64) -> FuzzResult:
    """Write `n` fuzzed files under `workdir`, build them, and check the report."""
    raw, out = workdir / "raw", workdir / "out"
    shutil.rmtree(raw, ignore_errors=True)
    names = write_inputs(raw, n, seed)
    report_path = workdir / "report.json"
    crashed = ""
    started = time.perf_counter()
    try:
        build_dataset(BuildConfig(raw_dir=raw, out=out, size=size, allow_upscale=True, num_proc=num_proc, report=report_path), progress=False)
    except BuildError as error:  # "no frame could be used" is an answer, not a crash
        if "could be used" not in str(error) and "no labelled" not in str(error):
            crashed = f"BuildError: {error}"
    except Exception as error:
        crashed = f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - started
    report = json.loads(report_path.read_text())
    files = report["files"]
    reasons: Counter = Counter()
    internal = []
    for name, entry in files.items():
        for reason in [entry.get("reason")] + [f.get("reason") for f in entry.get("frames", [])]:
            if reason:
                reasons[reason] += 1
            if reason == "internal-error":
                internal.append(f"{name}: {entry.get('message') or [f.get('message') for f in entry.get('frames', [])]}")
    written = sum(f["status"] == "written" for e in files.values() for f in e.get("frames", []))
    return FuzzResult(
        files=n,
        crashed=crashed,
        missing=sorted(set(names) - set(files)),
        reasons=dict(sorted(reasons.items())),
        internal_errors=internal,
        frames_written=written,
        seconds=seconds,
        peak_rss_main_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_rss_worker_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def main(
    n: int = typer.Option(10_000, "--n", help="Fuzzed files to build."),
    seed: int = typer.Option(0, help="Seed of the mutations."),
    num_proc: int = typer.Option(2, help="Build worker processes."),
    workdir: Path = typer.Option(None, help="Scratch folder [default: a temporary folder, removed afterwards]."),
) -> None:
    """Print crashes, missing report entries, counts per reason and peak RSS of one fuzz run."""
    scratch = Path(workdir or tempfile.mkdtemp(prefix="fuzz-build-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        result = fuzz(n, scratch, seed=seed, num_proc=num_proc)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"files: {result.files}, build: {result.seconds:.1f} s, frames written: {result.frames_written}")
    print(f"crashes: {1 if result.crashed else 0}{' (' + result.crashed + ')' if result.crashed else ''}")
    print(f"files missing from the report: {len(result.missing)}")
    print(f"internal errors (contained): {len(result.internal_errors)}")
    for line in result.internal_errors[:20]:
        print(f"  {line}")
    print("reasons: " + ", ".join(f"{k}: {v}" for k, v in result.reasons.items()))
    print(f"peak RSS: main process {result.peak_rss_main_mb:.0f} MB, largest worker {result.peak_rss_worker_mb:.0f} MB")
    if result.crashed or result.missing or result.internal_errors:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
