"""Every Hub write and read over real HTTP, against the local Hub of `tests/hub_server.py`.

`xdigiskull push`, `medshift translate --push-to-hub` and `MedShiftPipeline.push_to_hub` run through the real
`huggingface_hub` client (repository creation, preupload, LFS basic transfer, NDJSON commit); `load_dataset`
(also streaming) and `MedShiftPipeline.from_pretrained` read the result back. Nothing of `HfApi` is replaced.

The clients run in subprocesses: huggingface_hub and datasets read HF_ENDPOINT and the offline switches when they
are imported. HF_HUB_DISABLE_XET=1 makes uploads take the git-LFS route that the local Hub speaks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from datasets import Image, load_dataset
from hub_server import HubServer

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.phantom.export import generate_exports

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TESTTOKENthatmustneverbeprinted123"
DATASET_ID = "ORG/x-digiskull"

# Run with HF_ENDPOINT set: prints one JSON line of the rows of every split, read and streamed over HTTP.
READ_DATASET = """
import hashlib, json, sys
from datasets import Image, load_dataset

def rows(dataset):
    # every picture column (the image; phantom v2's bone mask) as the hash of its PNG bytes
    pictures = [name for name, feature in dataset.features.items() if isinstance(feature, Image)]
    for name in pictures:
        dataset = dataset.cast_column(name, Image(decode=False))
    return [dict(row, **{name: row[name] and hashlib.sha256(row[name]["bytes"]).hexdigest() for name in pictures})
            for row in dataset]

print(json.dumps({
    "rows": {split: rows(ds) for split, ds in load_dataset(sys.argv[1]).items()},
    "streamed": {split: rows(ds) for split, ds in load_dataset(sys.argv[1], streaming=True).items()},
}, default=str))
"""

# Push a saved pipeline, load it back by id and fingerprint both; also load a repository that does not exist.
PUSH_AND_LOAD_PIPELINE = """
import hashlib, json, sys
from medshift.pipeline_medshift import MedShiftPipeline

def weights(pipe):
    return {f"{name}.{key}": hashlib.sha256(tensor.numpy().tobytes()).hexdigest()
            for name in ("vae", "unet") for key, tensor in getattr(pipe, name).state_dict().items()}

local = MedShiftPipeline.from_pretrained(sys.argv[1])
url = local.push_to_hub(sys.argv[2], private=True, metrics={"SSIM": 0.9})
remote = MedShiftPipeline.from_pretrained(sys.argv[2])
try:
    MedShiftPipeline.from_pretrained("ORG/missing")
    missing = "loaded"
except Exception as error:
    missing = f"{type(error).__name__}: {error}"
print(json.dumps({"url": url, "local": weights(local), "remote": weights(remote), "missing": missing,
                  "class_names": [list(local.config.class_names), list(remote.config.class_names)]}))
"""


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub-dataset")
    raw = generate_exports(root / "raw", views=2, seed=3, detector=384, frames=1, workers=1, progress=False)
    out = root / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=raw, out=out, size=128, split="0.5,0.5,0", seed=2), progress=False)  # seed 2: one pose in each split
    (out / ".x-digiskull.partial").write_text("leftover")  # hidden files never go up
    return out


def run_client(hub: HubServer, args: list[str], home: Path, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    """Run `python ARGS` with HF_ENDPOINT on the local Hub, online, with its own empty HF_HOME."""
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE") and key != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, *args], env=env, cwd=home.parent, capture_output=True, text=True, timeout=300)


def local_rows(folder: Path) -> dict[str, list[dict]]:
    def rows(dataset) -> list[dict]:
        pictures = [name for name, feature in dataset.features.items() if isinstance(feature, Image)]
        for name in pictures:
            dataset = dataset.cast_column(name, Image(decode=False))
        return [json.loads(json.dumps(dict(row, **{name: row[name] and hashlib.sha256(row[name]["bytes"]).hexdigest()
                                                   for name in pictures}), default=str)) for row in dataset]

    # a cache of its own: datasets may reuse a cached build of another folder with files of the same names and sizes
    with tempfile.TemporaryDirectory() as cache:
        return {split: rows(ds) for split, ds in load_dataset(str(folder), cache_dir=cache).items()}


def pushed_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def test_xdigiskull_push_without_a_token_says_so_before_any_request(hub, local_dataset, tmp_path):
    result = run_client(hub, ["-m", "xdigiskull.cli", "push", str(local_dataset), "--repo-id", DATASET_ID], tmp_path / "home", token=None)
    assert result.returncode == 1
    assert "no Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr
    assert hub.requests == []


def test_xdigiskull_push_is_one_commit_retried_and_load_dataset_reads_it_back(hub, local_dataset, tmp_path):
    hub.faults.append(("POST", r"/commit/main$", 503))  # the first commit attempt fails: retried with backoff
    result = run_client(hub, ["-m", "xdigiskull.cli", "push", str(local_dataset), "--repo-id", DATASET_ID, "--private"], tmp_path / "home")
    assert result.returncode == 0, result.stderr[-4000:]
    assert TOKEN not in "".join((result.stdout + result.stderr).split())

    [commit] = hub.commits("dataset", DATASET_ID)  # one commit holds the whole dataset
    assert hub.files("dataset", DATASET_ID) == pushed_files(local_dataset)
    assert {"README.md", "assets/sample_grid.png"} <= set(commit.files) and not any(".partial" in p for p in commit.files)
    assert hub.repos[("dataset", DATASET_ID)].private
    calls = [(method, path) for method, path, _ in hub.requests]
    assert calls.count(("POST", f"/api/datasets/{DATASET_ID}/commit/main")) == 2
    assert ("POST", f"/datasets/{DATASET_ID}.git/info/lfs/objects/batch") in calls
    assert any(method == "PUT" and path.startswith("/lfs-objects/") for method, path in calls)
    assert commit.files["data/train-00000-of-00001.parquet"].lfs and not commit.files["README.md"].lfs

    hub.requests.clear()
    read = run_client(hub, ["-c", READ_DATASET, DATASET_ID], tmp_path / "reader", token=None)
    assert read.returncode == 0, read.stderr[-4000:]
    remote = json.loads(read.stdout.strip().splitlines()[-1])
    expected = local_rows(local_dataset)
    assert set(expected) == {"train", "validation"} and all(expected.values())
    assert remote["rows"] == expected and remote["streamed"] == expected
    # it came over HTTP: files resolved through the server, the streamed shards read by byte range
    assert any(path.startswith(f"/datasets/{DATASET_ID}/resolve/") for _, path, _ in hub.requests)
    assert any(method == "GET" and asked for method, path, asked in hub.requests if path.endswith(".parquet"))


def test_xdigiskull_push_with_a_rejected_token_fails_without_showing_it(local_dataset, tmp_path):
    with HubServer(token="hf_another_token") as hub:
        result = run_client(hub, ["-m", "xdigiskull.cli", "push", str(local_dataset), "--repo-id", DATASET_ID], tmp_path / "home")
    assert result.returncode == 1
    assert "401" in result.stderr and "push failed" in result.stderr
    assert TOKEN not in "".join((result.stdout + result.stderr).split())
    assert not hub.repos


def test_pipeline_push_to_hub_and_from_pretrained_over_http(hub, saved_tiny_pipeline, tmp_path):
    hub.faults.append(("POST", r"/api/repos/create$", 502))  # a transient error on the first call: retried
    result = run_client(hub, ["-c", PUSH_AND_LOAD_PIPELINE, saved_tiny_pipeline, "ORG/medshift-tiny"], tmp_path / "home")
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["remote"] == answer["local"] and answer["class_names"][0] == answer["class_names"][1]
    assert answer["missing"].startswith("RepositoryNotFoundError") and "ORG/missing" in answer["missing"]

    [commit] = hub.commits("model", "ORG/medshift-tiny")
    assert commit.message == "Upload MedShiftPipeline" and hub.repos[("model", "ORG/medshift-tiny")].private
    assert answer["url"].endswith(f"/ORG/medshift-tiny/commit/{commit.sha}")
    files = set(commit.files)
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    card = commit.files["README.md"].content.decode()
    assert "library_name: diffusers" in card and "| SSIM | 0.9 |" in card and 'from_pretrained("ORG/medshift-tiny")' in card


def test_translate_push_to_hub_and_load_dataset_reads_it_back(hub, tiny_dataset, saved_tiny_pipeline, tmp_path):
    out = tmp_path / "translated"
    translate = [
        "-m", "medshift.cli", "translate", "--dataset", str(tiny_dataset), "--split", "train", "--source", "synthetic_high",
        "--target", "real_normal", "--model", saved_tiny_pipeline, "--steps", "2", "--rows-per-shard", "4",
        "--out", str(out), "--push-to-hub", "ORG/x-digiskull-real",
    ]  # fmt: skip
    result = run_client(hub, translate, tmp_path / "home")
    assert result.returncode == 0, result.stderr[-4000:]
    [commit] = hub.commits("dataset", "ORG/x-digiskull-real")
    assert commit.message == "Upload translated X-DigiSkull"
    assert hub.files("dataset", "ORG/x-digiskull-real") == pushed_files(out)
    assert set(commit.files) == {"README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}

    read = run_client(hub, ["-c", READ_DATASET, "ORG/x-digiskull-real"], tmp_path / "reader", token=None)
    assert read.returncode == 0, read.stderr[-4000:]
    remote = json.loads(read.stdout.strip().splitlines()[-1])
    expected = local_rows(out)
    assert len(expected["train"]) == 8 and expected["train"][0]["source_label"] == "synthetic_high"
    assert remote["rows"] == expected and remote["streamed"] == expected


def test_translate_push_to_hub_without_a_token_stops_before_translating(hub, tiny_dataset, saved_tiny_pipeline, tmp_path):
    out = tmp_path / "translated"
    translate = [
        "-m", "medshift.cli", "translate", "--dataset", str(tiny_dataset), "--source", "synthetic_high", "--target",
        "real_normal", "--model", saved_tiny_pipeline, "--out", str(out), "--push-to-hub", "ORG/x-digiskull-real",
    ]  # fmt: skip
    result = run_client(hub, translate, tmp_path / "home", token=None)
    assert result.returncode == 2 and "no Hugging Face token" in result.stderr
    assert hub.requests == [] and not out.exists()
