"""The Hub round trip over real HTTP: a built X-DigiSkull and the demo pipeline, committed to local git
repositories, served on 127.0.0.1 by olah (a Hub mirror that serves local git repositories offline), read back
with `load_dataset` (also streaming) and `MedShiftPipeline.from_pretrained` through HF_ENDPOINT.

The client runs in a subprocess: huggingface_hub and datasets read HF_ENDPOINT and the offline switches when
they are imported. olah's local-mirror file route answers a byte-range request with the whole file, which
streaming (parquet footers are read by range) cannot use; a small proxy in this file serves the asked-for range
of olah's answer, and changes nothing else.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from datasets import Image, load_dataset

from medshift.pipeline_medshift import MedShiftPipeline
from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.phantom.export import generate_exports

pytest.importorskip("olah", reason="olah (the Hub mirror server) is not installed: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "checkpoints" / "medshift-xdigiskull-demo"
DATASET_ID = "ORG/x-digiskull"
MODEL_ID = "ORG/medshift-xdigiskull-demo"

# Run with HF_ENDPOINT set: prints one JSON line of fingerprints of what came over HTTP.
CLIENT = """
import hashlib, json, sys
import torch
from datasets import Image, load_dataset
from medshift.pipeline_medshift import MedShiftPipeline

def rows(dataset):
    dataset = dataset.cast_column("image", Image(decode=False))
    return [dict(row, image=hashlib.sha256(row["image"]["bytes"]).hexdigest()) for row in dataset]

pipe = MedShiftPipeline.from_pretrained(sys.argv[2])
try:
    MedShiftPipeline.from_pretrained("ORG/missing")
    missing = "loaded"
except Exception as error:
    missing = f"{type(error).__name__}: {error}"
weights = {f"{name}.{key}": hashlib.sha256(tensor.numpy().tobytes()).hexdigest()
           for name in ("vae", "unet") for key, tensor in getattr(pipe, name).state_dict().items()}
print(json.dumps({
    "rows": {split: rows(ds) for split, ds in load_dataset(sys.argv[1]).items()},
    "streamed": {split: rows(ds) for split, ds in load_dataset(sys.argv[1], streaming=True).items()},
    "weights": weights,
    "class_names": list(pipe.config.class_names),
    "missing": missing,
}, default=str))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git_repo(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    git = ["git", "-C", str(target), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "upload"], check=True)


class RangeProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to olah; when the client asked for a byte range and olah sent the whole file
    (200), answers 206 with that range. Records the requests it saw."""

    def __init__(self, port: int, upstream_port: int):
        self.upstream_port = upstream_port
        self.requests: list[tuple[str, str, str | None]] = []
        super().__init__(("127.0.0.1", port), _RangeHandler)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _forward(self) -> None:
        asked = self.headers.get("Range")
        self.server.requests.append((self.command, self.path, asked))
        headers = {key: value for key, value in self.headers.items() if key.lower() not in ("range", "host", "accept-encoding")}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        upstream.request(self.command, self.path, headers=headers)
        response = upstream.getresponse()
        body = response.read()
        status, extra = response.status, {}
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", asked or "")
        if match and status == 200 and self.command == "GET":
            size = len(body)
            first, last = match.groups()
            start = size - int(last) if first == "" else int(first)
            end = size - 1 if first == "" or last == "" else min(int(last), size - 1)
            body, status = body[start : end + 1], 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if self.command == "GET" else response.getheader("content-length", "0")))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)
        upstream.close()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"olah exited: {log.read_text()[-3000:]}"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"olah did not listen on port {port} within 60 s")


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub-dataset")
    raw = generate_exports(root / "raw", views=2, seed=3, detector=384, frames=1, workers=1, progress=False)
    out = root / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=raw, out=out, size=256, split="0.5,0.5,0", seed=2), progress=False)  # seed 2: one pose in each split
    return out


@pytest.fixture(scope="module")
def hub(local_dataset, tmp_path_factory):
    """olah serving the two repositories, behind the range proxy; yields (endpoint URL, proxy)."""
    root = tmp_path_factory.mktemp("olah")
    _git_repo(local_dataset, root / "mirrors" / "datasets" / DATASET_ID)
    _git_repo(DEMO_MODEL, root / "mirrors" / "models" / MODEL_ID)
    olah_port, proxy_port = _free_port(), _free_port()
    config = root / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {olah_port}\n'
        f'mirror-netloc = "127.0.0.1:{proxy_port}"\nmirror-lfs-netloc = "127.0.0.1:{proxy_port}"\n'
        f'repos-path = "{root / "cache"}"\nmirrors-path = ["{root / "mirrors"}"]\n'
        "[accessibility]\noffline = true\n"  # never ask huggingface.co
    )
    log = root / "olah.out"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(root / "logs")],
            cwd=root, stdout=out, stderr=subprocess.STDOUT,
        )
    proxy = RangeProxy(proxy_port, olah_port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    try:
        _wait_for_port(olah_port, server, log)
        thread.start()
        yield f"http://127.0.0.1:{proxy_port}", proxy
    finally:
        proxy.shutdown()
        server.terminate()
        server.wait(timeout=30)


def _rows(dataset) -> list[dict]:
    dataset = dataset.cast_column("image", Image(decode=False))
    return [json.loads(json.dumps(dict(row, image=hashlib.sha256(row["image"]["bytes"]).hexdigest()), default=str)) for row in dataset]


def test_dataset_and_pipeline_come_back_over_http(hub, local_dataset, tmp_path):
    endpoint, proxy = hub
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, DATASET_ID, MODEL_ID], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])

    local_rows = {split: _rows(ds) for split, ds in load_dataset(str(local_dataset)).items()}
    assert set(local_rows) == {"train", "validation"} and all(local_rows.values())
    assert remote["rows"] == local_rows
    assert remote["streamed"] == local_rows

    local = MedShiftPipeline.from_pretrained(DEMO_MODEL)
    local_weights = {
        f"{name}.{key}": hashlib.sha256(tensor.numpy().tobytes()).hexdigest()
        for name in ("vae", "unet") for key, tensor in getattr(local, name).state_dict().items()
    }
    assert remote["weights"] == local_weights
    assert remote["class_names"] == list(local.config.class_names)
    assert remote["missing"].startswith("RepositoryNotFoundError") and "ORG/missing" in remote["missing"]

    # it all came over HTTP: the files were resolved through the server, the parquet footers read by range
    paths = [path for _, path, _ in proxy.requests]
    assert any(path.startswith(f"/datasets/{DATASET_ID}/resolve/") for path in paths)
    assert any(path.startswith(f"/{MODEL_ID}/resolve/") and path.endswith(".safetensors") for path in paths)
    assert any(asked and not asked.startswith("bytes=0-") for _, path, asked in proxy.requests if path.endswith(".parquet"))
