"""The demo page's functions on real phantom exports with the demo checkpoint, its `/translate` endpoint over
HTTP with gradio_client, and `medshift demo` serving the page."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import PIL.Image
import pytest
from gradio_client import Client, handle_file
from typer.testing import CliRunner

from medshift.cli import app
from medshift.demo_app import (
    IMAGE_SIZE,
    OUTPUT_LIFETIME_S,
    PIPELINE_QUEUE,
    TAU_SWEEP,
    DemoTranslator,
    build_demo,
    example_labels,
    phantom_examples,
    read_upload,
    save_png16,
    server_address,
)

from .conftest import DEMO_MODEL, TEST_STEPS, free_port


def test_examples_are_pngs_and_a_dicom_rendered_once(examples_dir):
    examples = phantom_examples(examples_dir)
    assert [p.suffix for p in examples] == [".png"] * 4 + [".dcm"]
    stamp = (examples_dir / "manifest.csv").stat().st_mtime_ns
    assert phantom_examples(examples_dir) == examples  # the second start reuses them
    assert (examples_dir / "manifest.csv").stat().st_mtime_ns == stamp


def test_uploads_are_read_like_the_builder_reads_them(examples_dir):
    for path in phantom_examples(examples_dir):
        image = read_upload(path)
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE) and image.dtype == np.float32, path.name
        assert 0.0 <= image.min() < image.max() <= 1.0, path.name


def _gradient(height: int, width: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage", "broken.dcm:"),
        ("notes.txt", b"not an image", "notes.txt: unsupported file type"),
        ("truncated.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "truncated.png: image cannot be decoded"),
        ("small.png", None, "small.png: the exposed field is"),
    ],
)
def test_bad_uploads_get_a_short_message(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        PIL.Image.fromarray(_gradient(40, 40)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(gr.Error) as error:
        read_upload(path)
    assert error.value.message.startswith(message)
    assert str(tmp_path) not in error.value.message and "Traceback" not in error.value.message


def test_translate_gives_the_slider_pair_and_a_16_bit_png(demo_pipe, examples_dir, tmp_path):
    translator = DemoTranslator(demo_pipe, output_dir=tmp_path)
    path = str(phantom_examples(examples_dir)[0])
    (before, after), png = translator.translate(path, "synthetic_low", "real_normal", 0.45, 6.0, TEST_STEPS)
    assert before.shape == after.shape == (IMAGE_SIZE, IMAGE_SIZE) and before.dtype == after.dtype == np.uint8
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1.0  # translated, not copied
    saved = PIL.Image.open(png)
    assert (saved.size, saved.mode) == ((IMAGE_SIZE, IMAGE_SIZE), "I;16")
    assert np.abs(np.asarray(saved, dtype=np.float64) / 257 - after).max() <= 1.0  # the slider shows the download


def test_translate_errors_are_messages(demo_pipe, tmp_path):
    translator = DemoTranslator(demo_pipe, output_dir=tmp_path)
    with pytest.raises(gr.Error, match="upload an image"):
        translator.translate(None, "unknown", "real_normal", 0.45, 6.0, TEST_STEPS)
    path = tmp_path / "ok.png"
    PIL.Image.fromarray(_gradient(300, 300)).save(path)
    with pytest.raises(gr.Error, match="tau must lie in"):
        translator.translate(str(path), "unknown", "real_normal", 0.0, 6.0, TEST_STEPS)


def test_tau_sweep_shows_three_translations(demo_pipe, examples_dir, tmp_path):
    translator = DemoTranslator(demo_pipe, output_dir=tmp_path)
    panels = translator.sweep(str(phantom_examples(examples_dir)[-1]), "unknown", "real_normal", 6.0, TEST_STEPS)
    assert [caption for _, caption in panels] == [f"τ = {tau}" for tau in TAU_SWEEP]
    images = [image.astype(int) for image, _ in panels]
    assert all(image.shape == (IMAGE_SIZE, IMAGE_SIZE) for image in images)
    assert np.abs(images[0] - images[2]).mean() > 0.5  # τ changes the result


def test_translate_endpoint_answers_gradio_client(demo_url, examples_dir):
    client = Client(demo_url, verbose=False)
    dicom = phantom_examples(examples_dir)[-1]
    result = client.predict(handle_file(str(dicom)), "real_normal", 0.45, api_name="/translate")
    image = PIL.Image.open(result)
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    assert np.asarray(image).std() > 0  # an image, not a blank


def test_translate_and_sweep_pressed_together_both_succeed(demo_url, demo_pipe, examples_dir):
    """Every pipeline event is in one concurrency group: jobs from different events wait for each other."""
    client = Client(demo_url, verbose=False)
    example = handle_file(str(phantom_examples(examples_dir)[0]))
    jobs = [
        client.submit(example, "unknown", "real_normal", 0.45, 2.0, TEST_STEPS, api_name="/translate_page"),
        client.submit(example, "unknown", "real_normal", 2.0, TEST_STEPS, api_name="/tau_sweep"),
        client.submit(example, "real_normal", 0.45, api_name="/translate"),
    ]
    (before_after, download), sweep, translated = (job.result(timeout=300) for job in jobs)
    assert Path(download).suffix == ".png" and len(sweep) == len(TAU_SWEEP)
    assert PIL.Image.open(translated).size == (IMAGE_SIZE, IMAGE_SIZE)
    demo = build_demo(demo_pipe, examples_dir=examples_dir)
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values() if fn.name in ("translate", "sweep", "api_translate")}
    assert groups == {name: (PIPELINE_QUEUE, 1) for name in ("translate", "sweep", "api_translate")}


def test_tau_sent_as_a_string_through_the_api(demo_url, examples_dir):
    client = Client(demo_url, verbose=False)
    example = handle_file(str(phantom_examples(examples_dir)[0]))
    assert PIL.Image.open(client.predict(example, "real_normal", "0.3", api_name="/translate")).size == (IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(Exception, match="tau must be a number, got 'abc'"):
        client.predict(example, "real_normal", "abc", api_name="/translate")


def test_examples_can_be_told_apart(examples_dir):
    labels = example_labels(phantom_examples(examples_dir))
    assert len(set(labels)) == len(labels)
    assert labels[0] == "simulator high: ap_p0-0000.png" and labels[-1] == "azurion normal: ap_p0-0000.dcm"


def test_a_colour_photograph_gets_a_warning(demo_pipe, tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "holiday.jpg"
    PIL.Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(photo)
    grey = tmp_path / "xray.png"
    PIL.Image.fromarray(np.repeat(_gradient(300, 300)[..., None], 3, axis=-1)).save(grey)  # grey saved as RGB
    translator = DemoTranslator(demo_pipe, output_dir=tmp_path)
    with pytest.warns(UserWarning, match="holiday.jpg is a colour picture, not a grey X-ray"):
        translator.read(str(photo))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        translator.read(str(grey))


def test_the_page_reports_progress_during_the_flow(demo_url, examples_dir):
    client = Client(demo_url, verbose=False)
    example = handle_file(str(phantom_examples(examples_dir)[0]))
    job = client.submit(example, "unknown", "real_normal", 0.3, 6.0, 20, api_name="/translate_page")
    seen = []
    while not job.done():
        progress = job.status().progress_data
        if progress:
            seen.extend(unit.index for unit in progress if unit.index is not None)
        time.sleep(0.02)
    (before_after, download) = job.result()
    assert seen and max(seen) > 0  # the flow's steps reached the page while it ran
    assert Path(download).suffix == ".png"


def test_translate_endpoint_reports_bad_input(demo_url, tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    client = Client(demo_url, verbose=False)
    with pytest.raises(Exception, match="broken.dcm:"):
        client.predict(handle_file(str(broken)), "real_normal", 0.45, api_name="/translate")


def test_medshift_demo_serves_the_page(examples_dir, tmp_path):
    """Served on $GRADIO_SERVER_PORT (no --port given); an expected error is one line in the server's log."""
    port = free_port()
    env = {**os.environ, "MEDSHIFT_DEMO_CACHE": str(examples_dir), "MEDSHIFT_MODEL": str(DEMO_MODEL), "HF_HUB_OFFLINE": "1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "medshift.cli", "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "medshift demo did not serve its page within 120 s"
                time.sleep(0.5)
        assert "MedShift: sim-to-real X-ray translation" in config and '"translate"' in config
        assert json.loads(config)["analytics_enabled"] is False  # nothing about the uploads leaves the machine
        broken = tmp_path / "broken.dcm"
        broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
        with pytest.raises(Exception, match="broken.dcm:"):
            Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(broken)), "real_normal", 0.45, api_name="/translate")
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    assert "broken.dcm:" in log and "Traceback" not in log, log


def test_a_taken_port_is_one_line(examples_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--model", str(DEMO_MODEL), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot serve on 127.0.0.1:{port}:") and "GRADIO_SERVER_PORT" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_server_address_honours_gradios_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert server_address() == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert server_address() == ("0.0.0.0", 7861)
    assert server_address("localhost", 9000) == ("localhost", 9000)  # options win
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT must be a port number, got 'http'"):
        server_address()


def test_medshift_demo_names_a_bad_model(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "--model" in result.output and "missing" in result.output


def test_results_are_written_whole_and_old_ones_removed(tmp_path):
    old, recent = tmp_path / "old.png", tmp_path / "recent.png"
    old.write_bytes(b"x")
    recent.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * OUTPUT_LIFETIME_S,) * 2)
    path = save_png16(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64), tmp_path, "new.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.png", "recent.png"]  # no partial file left behind
    assert np.asarray(PIL.Image.open(path)).max() == 65535
