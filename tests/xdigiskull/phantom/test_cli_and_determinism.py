"""The command line and byte-for-byte determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import PIL.Image
import pydicom
import pytest
from typer.testing import CliRunner

from xdigiskull.cli import app
from xdigiskull.phantom import generate_exports


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    # phantom v1 (fast): v2's own determinism is tested in test_phantom_v2.py
    kwargs = dict(views=2, detector=128, frames=2, progress=False, version=1)
    first = _tree(generate_exports(tmp_path / "a", seed=5, workers=1, **kwargs))
    second = _tree(generate_exports(tmp_path / "b", seed=5, workers=2, **kwargs))  # threads change nothing
    other = _tree(generate_exports(tmp_path / "c", seed=6, **kwargs))
    assert len(first) == 2 * 5 + 2 * 5 + 1  # exports, ground truths, manifest
    assert first == second
    assert first.keys() != other.keys()  # pair ids carry the seed
    assert sorted(first.values()) != sorted(other.values())


def test_cli_writes_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "raw"), "--views", "1", "--detector", "128",
                                      "--frames", "1", "--seed", "2", "--jitter", "0"])
    assert result.exit_code == 0, result.output
    assert "5 exports" in result.output
    manifest = (tmp_path / "raw" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 6
    # without jitter the simulator's angles are the real ones
    angles = {tuple(line.split(",")[3:5]) for line in manifest[1:]}
    assert angles == {("0.0", "0.0")}


@pytest.mark.parametrize("args,message", [(["--views", "0"], "--views"), (["--detector", "64"], "--detector")])
def test_cli_rejects_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "raw"), *args])
    assert result.exit_code != 0
    assert message in result.output


def test_generate_exports_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames"):
        generate_exports(tmp_path, frames=0)
    with pytest.raises(ValueError, match="detector"):
        generate_exports(tmp_path, detector=16)
    with pytest.raises(ValueError, match="workers"):
        generate_exports(tmp_path, workers=0)
    assert not any(tmp_path.iterdir())  # bad arguments write nothing


def test_a_rerun_replaces_the_earlier_run_and_spares_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    generate_exports(out, views=2, detector=128, frames=1, progress=False, version=1)  # v1: fast, same layout
    (out / ".phantom-partial" / "azurion").mkdir(parents=True)  # left over by an interrupted run
    (out / "notes.txt").write_text("mine")
    generate_exports(out, views=1, seed=1, detector=128, frames=1, progress=False, version=1)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert len(files) == 5 + 5 + 1 + 1  # exports, ground truths, manifest, notes.txt
    assert all("p1-0000" in f for f in files if f not in ("manifest.csv", "notes.txt"))
    assert not (out / ".phantom-partial").exists()
    # a file the phantom did not write, in one of its folders: refused, nothing touched
    (out / "azurion" / "low" / "patient.dcm").write_bytes(b"real data")
    with pytest.raises(ValueError, match="patient.dcm"):
        generate_exports(out, views=1, detector=128, frames=1, progress=False, version=1)
    assert (out / "azurion" / "low" / "patient.dcm").read_bytes() == b"real data"
    assert len([p for p in out.rglob("*") if p.is_file()]) == len(files) + 1


# the pixels of `test_phantom_v1_is_unchanged`'s run, rendered before phantom v2 became the default
V1_DIGEST = "ae05106ff4bea79a7c443f16aa8458c22f57401aadd477e7d56f437856fd4bc5"


def _pixel_digest(root: Path) -> str:
    """SHA-256 over the manifest and the decoded pixels of every file of a run (encoder-independent)."""
    digest = hashlib.sha256((root / "manifest.csv").read_bytes())
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".png", ".dcm")):
        pixels = pydicom.dcmread(path).pixel_array if path.suffix == ".dcm" else np.asarray(PIL.Image.open(path))
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def test_phantom_v1_is_unchanged(tmp_path: Path) -> None:
    # phantom v1 is what the shipped model was trained on: its pixels stay the same, byte for byte
    out = generate_exports(tmp_path / "v1", views=1, seed=3, detector=128, frames=1, catheter=True, version=1,
                           progress=False)
    assert _pixel_digest(out) == V1_DIGEST
