"""Build every DICOM file of pydicom's test data (bundled, plus the pydicom-data package when installed) with
`xdigiskull build --allow-upscale`, and print what a held-out set of real files shows:

- images written, skips per reason, duplicates dropped;
- source ids found in two splits (must be 0) and source ids written twice (must be 0);
- images written that are near-blank by the builder's own rule (must be 0);
- families of encodings (files that share a SOPInstanceUID): each must end alike, one image written and the
  others ``duplicate-of`` it, or every member skipped for the same reason.

    python scripts/check_pydicom_build.py --num-proc 2
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pydicom.data
import typer

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.processing import BLANK_FRACTION, blank_fraction


def copy_test_files(raw: Path) -> dict[str, str]:
    """Copy pydicom's test DICOM files under raw/real/low/; returns {report key: SOPInstanceUID or ""}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = sorted({Path(p) for p in pydicom.data.get_testdata_files("*")})
    target = raw / "real" / "low"
    target.mkdir(parents=True)
    uids = {}
    for path in paths:
        if not path.is_file() or path.suffix.lower() not in (".dcm", ""):
            continue
        name = path.name if not (target / path.name).exists() else f"{path.parent.name}-{path.name}"
        shutil.copyfile(path, target / name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                uids[f"real/low/{name}"] = str(pydicom.dcmread(path, stop_before_pixels=True).get("SOPInstanceUID", "") or "")
        except Exception:
            uids[f"real/low/{name}"] = ""
    return uids


# reasons of a damaged copy (pydicom's test set holds truncated and corrupted variants on purpose): such a member
# cannot end as its family's image does, and is counted apart
DAMAGED = frozenset({"corrupt-dicom", "corrupt-pixel-data", "truncated-pixel-data", "invalid-attribute", "no-pixel-data"})


def _ending(entry: dict) -> str:
    """"image" (written, or a duplicate of a written image) or the skip reason of a file's first frame."""
    first = entry["frames"][0] if entry.get("frames") else entry
    return "image" if first.get("status") == "written" or first.get("reason") == "duplicate-of" else str(first.get("reason"))


def family_endings(files: dict[str, dict], uids: dict[str, str]) -> tuple[int, int, list[str]]:
    """(families of 2+ files sharing a SOPInstanceUID, damaged members, families whose sound members did not
    end alike, each as a line)."""
    families = defaultdict(list)
    for name, uid in uids.items():
        if uid and name in files:
            families[uid].append(name)
    damaged, uneven = 0, []
    for uid, names in families.items():
        if len(names) < 2:
            continue
        endings = {name: _ending(files[name]) for name in names}
        sound = {name: ending for name, ending in endings.items() if ending not in DAMAGED}
        damaged += len(endings) - len(sound)
        if len(set(sound.values())) > 1:
            uneven.append(f"{uid}: " + ", ".join(f"{name.split('/')[-1]}={ending}" for name, ending in sound.items()))
    return sum(len(n) >= 2 for n in families.values()), damaged, uneven


def main(num_proc: int = typer.Option(2, help="Build worker processes.")) -> None:
    """Print the figures of a build of pydicom's test files."""
    scratch = Path(tempfile.mkdtemp(prefix="pydicom-build-"))
    try:
        uids = copy_test_files(scratch / "raw")
        config = BuildConfig(raw_dir=scratch / "raw", out=scratch / "out", allow_upscale=True, num_proc=num_proc, split="0.5,0.25,0.25")
        summary = build_dataset(config, progress=False)
        files = json.loads(summary.report_path.read_text())["files"]
        splits_of, rows, blank, ids = defaultdict(set), 0, 0, set()
        for shard in sorted((scratch / "out" / "data").glob("*.parquet")):
            table = pq.read_table(shard, columns=["image", "source_id", "frame_index"]).to_pylist()
            for row in table:
                rows += 1
                ids.add((row["source_id"], row["frame_index"]))
                splits_of[row["source_id"]].add(shard.name.split("-", 1)[0])
                image = cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
                blank += blank_fraction(image.astype(np.float32) / 255.0) >= BLANK_FRACTION
        families, damaged, uneven = family_endings(files, uids)
        print(f"input files: {len(uids)}; images written: {summary.frames_written}; skips: {summary.skip_reasons}")
        print(f"duplicates dropped: {summary.skip_reasons.get('duplicate-of', 0)}; "
              f"source ids in two splits: {sum(len(s) > 1 for s in splits_of.values())}; "
              f"rows: {rows}, of which repeat a (source id, frame): {rows - len(ids)}")
        print(f"near-blank images written (>= {BLANK_FRACTION:.0%} within the builder's grey-level span): {blank}")
        print(f"families of encodings (files sharing a SOPInstanceUID): {families}; "
              f"damaged members (truncated, corrupt) set apart: {damaged}; families whose sound members did not end alike: {len(uneven)}")
        for line in uneven:
            print(f"  {line}")
        for warning in summary.warnings:
            print(f"warning: {warning}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
