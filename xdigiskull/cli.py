"""`xdigiskull` command line: phantom, build, push, inspect."""

from __future__ import annotations

import typer

from xdigiskull.build import build
from xdigiskull.hub import push
from xdigiskull.inspect import inspect
from xdigiskull.phantom.cli import phantom

app = typer.Typer(
    name="xdigiskull",
    help="Build the X-DigiSkull sim-to-real skull X-ray dataset from raw exports, and publish it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold a Hub token
)
app.command()(phantom)
app.command()(build)
app.command()(push)
app.command()(inspect)

if __name__ == "__main__":
    app()
