"""`xdigiskull push`: one dataset repo, one commit, every file at its own path; the token never shown.

Only the HfApi methods that talk to the Hub (create_repo, create_commit) are replaced.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from typer.testing import CliRunner

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.cli import app

TOKEN = "hf_TESTTOKENthatmustneverbeprinted123"


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("hubraw")
    rng = np.random.default_rng(0)
    for folder in ("synthetic/low", "synthetic/high", "real/low", "real/normal", "real/exposure"):
        (raw / folder).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(raw / folder / f"{i}.png"), rng.integers(30, 220, (40, 40), dtype=np.uint8))
    out = tmp_path_factory.mktemp("hubout") / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=raw, out=out, size=32), progress=False)
    (out / ".x-digiskull.partial").write_text("leftover")  # hidden files never go up
    return out


@pytest.fixture
def hub_calls(monkeypatch):
    calls: dict[str, list] = {"create_repo": [], "create_commit": []}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, "token": self.token, **kwargs})
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        calls["create_commit"].append({"repo_id": repo_id, "operations": list(operations), **kwargs})

        class Info:
            commit_url = f"https://huggingface.co/datasets/{repo_id}/commit/abc"

        return Info()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


def test_push_uploads_every_file_in_one_dataset_commit(dataset_folder, hub_calls):
    result = CliRunner().invoke(app, ["push", str(dataset_folder), "--repo-id", "org/x-digiskull", "--private", "--token", TOKEN])
    assert result.exit_code == 0, result.output
    assert TOKEN not in "".join(result.output.split())
    [repo] = hub_calls["create_repo"]
    assert repo["repo_id"] == "org/x-digiskull" and repo["repo_type"] == "dataset"
    assert repo["private"] is True and repo["exist_ok"] is True and repo["token"] == TOKEN
    [commit] = hub_calls["create_commit"]
    assert commit["repo_id"] == "org/x-digiskull" and commit["repo_type"] == "dataset"
    uploaded = {op.path_in_repo: Path(op.path_or_fileobj) for op in commit["operations"] if isinstance(op, CommitOperationAdd)}
    expected = {p.relative_to(dataset_folder).as_posix() for p in dataset_folder.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert set(uploaded) == expected
    assert {"README.md", "assets/sample_grid.png"} <= expected and any(n.startswith("data/train-") for n in expected)
    for path_in_repo, local in uploaded.items():
        assert local.resolve() == (dataset_folder / path_in_repo).resolve()


def test_push_refuses_a_folder_that_is_not_a_dataset(tmp_path, hub_calls):
    result = CliRunner().invoke(app, ["push", str(tmp_path), "--repo-id", "org/x"])
    assert result.exit_code == 1 and "no README.md" in result.output
    assert hub_calls["create_repo"] == [] and hub_calls["create_commit"] == []


def test_push_errors_hide_the_token(dataset_folder, monkeypatch):
    def failing_create_repo(self, repo_id, **kwargs):
        raise RuntimeError(f"401 Unauthorized for token {self.token}")

    monkeypatch.setattr(HfApi, "create_repo", failing_create_repo)
    result = CliRunner().invoke(app, ["push", str(dataset_folder), "--repo-id", "org/x"], env={"HF_TOKEN": TOKEN})
    assert result.exit_code == 1
    assert "401 Unauthorized" in result.output and TOKEN not in "".join(result.output.split())
