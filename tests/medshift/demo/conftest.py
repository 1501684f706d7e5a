"""The demo's tests share the demo checkpoint (4 steps, processing at 256 px: a translation takes a second or two
on one CPU thread), one set of phantom examples and, for the HTTP tests, one running page."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from medshift.demo_app import build_demo, launch_demo, phantom_examples
from medshift.pipeline_medshift import MedShiftPipeline
from medshift.scheduling_flow_match import FlowMatchODEScheduler

DEMO_MODEL = Path(__file__).resolve().parents[3] / "checkpoints" / "medshift-xdigiskull-demo"
TEST_STEPS = 4
# the VAE's cost grows with the area; inputs and outputs stay 780 x 780. The README's screenshot
# (MEDSHIFT_DEMO_SCREENSHOT set) shows the model at its own resolution instead.
TEST_RESOLUTION = 256


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo-examples")
    phantom_examples(folder)
    return folder


@pytest.fixture(scope="session")
def demo_pipe() -> MedShiftPipeline:
    pipe = MedShiftPipeline.from_pretrained(DEMO_MODEL)
    # the model's own steps (50) but fewer: the endpoint without a steps input then runs quickly too
    pipe.scheduler = FlowMatchODEScheduler.from_config(pipe.scheduler.config, num_inference_steps=TEST_STEPS)
    if not os.environ.get("MEDSHIFT_DEMO_SCREENSHOT"):
        pipe.register_to_config(resolution=TEST_RESOLUTION)
    return pipe


@pytest.fixture(scope="session")
def demo_url(demo_pipe, examples_dir):
    """The page served on a free local port for the whole session."""
    demo = build_demo(demo_pipe, examples_dir=examples_dir)
    port = free_port()
    launch_demo(demo, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
