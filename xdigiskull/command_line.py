"""The conventions both packages' command lines share (`xdigiskull`, `medshift`), and the one way a config
dataclass becomes a typer command (so the dataclass is the single home of every default and help text)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Annotated, Any, Callable

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


def option(help: str, *flags: str, argument: bool = False, **typer_kwargs: Any) -> dict[str, Any]:
    """Metadata of a config dataclass field: its command-line help, optional flag spellings (``"--out", "-o"``;
    a bool given one flag has no ``--no-`` form), whether it is a positional argument, and other
    typer.Option / typer.Argument settings such as `min` or `envvar`."""
    return {"help": help, "flags": flags, "argument": argument, **typer_kwargs}


def config_command(name: str, config_cls: type, run: Callable[[Any], Any], doc: str) -> Callable[..., None]:
    """A typer command with one option per field of the dataclass `config_cls`, so that the dataclass is the
    one source of every default and help text and every field can be set from the command line.

    The command builds `config_cls(**options)` and passes it to `run`; a ValueError from `run` becomes a usage
    error. Fields typed `str | dict` (a name, a JSON file, or a dict from Python) or `str | list` (a comma-separated list, or
    a list from Python) are plain strings on the CLI. Fields whose metadata says ``argument=True`` (see
    `option`) are positional arguments.
    """
    hints = typing.get_type_hints(config_cls)
    parameters = []
    for spec in dataclasses.fields(config_cls):
        if not spec.metadata:  # a field without help is Python-only
            continue
        kind = hints[spec.name]
        if dict in typing.get_args(kind) or list in typing.get_args(kind):
            kind = str | None if type(None) in typing.get_args(kind) else str
        default = inspect.Parameter.empty if spec.default is dataclasses.MISSING else spec.default
        settings = dict(spec.metadata)
        flags, is_argument = settings.pop("flags", ()), settings.pop("argument", False)
        parameter_info = typer.Argument(**settings) if is_argument else typer.Option(*flags, **settings)
        annotation = Annotated[kind, parameter_info]
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))

    def command(**options: Any) -> None:
        try:
            run(config_cls(**options))
        except ValueError as error:
            raise typer.BadParameter(str(error)) from error

    command.__signature__ = inspect.Signature(parameters)  # what typer reads the options from
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    command.__name__ = command.__qualname__ = name
    command.__doc__ = doc
    return command
