"""Commands generated from config dataclasses: each field is one option, so the dataclass is the one home of
every default and help text (`medshift train`, `medshift train-vae`, `medshift evaluate`)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Annotated, Any, Callable

import typer


def option(help: str, **typer_kwargs: Any) -> dict[str, Any]:
    """Metadata of a config dataclass field: its command-line help (and typer.Option settings such as `min`)."""
    return {"help": help, **typer_kwargs}


def config_command(name: str, config_cls: type, run: Callable[[Any], Any], doc: str) -> Callable[..., None]:
    """A typer command with one option per field of the dataclass `config_cls`, so that the dataclass is the
    one source of every default and help text and every field can be set from the command line.

    The command builds `config_cls(**options)` and passes it to `run`; a ValueError from `run` becomes a usage
    error. Fields typed `str | dict` (a name, a JSON file, or a dict from Python) or `str | list` (a comma-separated list, or
    a list from Python) are plain strings on the CLI.
    """
    hints = typing.get_type_hints(config_cls)
    parameters = []
    for spec in dataclasses.fields(config_cls):
        kind = hints[spec.name]
        if dict in typing.get_args(kind) or list in typing.get_args(kind):
            kind = str | None if type(None) in typing.get_args(kind) else str
        default = inspect.Parameter.empty if spec.default is dataclasses.MISSING else spec.default
        annotation = Annotated[kind, typer.Option(**spec.metadata)]
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
