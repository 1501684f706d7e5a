"""The conventions both packages' command lines share (`xdigiskull`, `medshift`)."""

from __future__ import annotations

from typing import Callable

import typer


def command_line_app(name: str, help: str, commands: dict[str, Callable]) -> typer.Typer:
    """A Typer app that shows its help when called bare, adds no shell-completion commands and never
    prints local variables in a traceback (they can hold a Hub token)."""
    app = typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False, rich_markup_mode=None
    )
    for command_name, function in commands.items():
        app.command(name=command_name)(function)
    return app
