"""`xdigiskull` command line: phantom, phantom-benchmark, build, push, inspect."""

from __future__ import annotations

from xdigiskull.build import build
from xdigiskull.command_line import command_line_app
from xdigiskull.hub import push
from xdigiskull.inspect import inspect
from xdigiskull.phantom.cli import phantom
from xdigiskull.phantom_benchmark import phantom_benchmark

app = command_line_app(
    "xdigiskull",
    "Build the X-DigiSkull sim-to-real skull X-ray dataset from raw exports, and publish it.",
    {"phantom": phantom, "phantom-benchmark": phantom_benchmark, "build": build, "push": push, "inspect": inspect},
)

if __name__ == "__main__":
    app()
