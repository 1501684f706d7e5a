"""`xdigiskull push`: what it refuses before any request. The pushes themselves go over HTTP to a local Hub in
tests/test_hub_roundtrip.py."""

from __future__ import annotations

from typer.testing import CliRunner

from xdigiskull.cli import app


def test_push_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    result = CliRunner().invoke(app, ["push", str(tmp_path), "--repo-id", "org/x", "--token", "hf_x"])
    assert result.exit_code == 1 and "no README.md" in result.output


def test_push_refuses_a_repo_id_without_an_organisation(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    result = CliRunner().invoke(app, ["push", str(tmp_path), "--repo-id", "x-digiskull", "--token", "hf_x"])
    assert result.exit_code == 1 and "ORG/NAME" in result.output
