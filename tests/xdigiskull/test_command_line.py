"""Both command lines' help texts show what they say: no rich markup eats a bracketed default."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medshift.cli import app as medshift_app
from xdigiskull.cli import app as xdigiskull_app


@pytest.mark.parametrize(
    "app, command, shown",
    [
        (xdigiskull_app, "build", "[default: <OUT>.report.json beside OUT]"),
        (xdigiskull_app, "push", "Hub token [default: logged-in token]"),
        (xdigiskull_app, "inspect", "[default: <FOLDER>-samples.png beside FOLDER]"),
        (medshift_app, "translate", "Default: $MEDSHIFT_MODEL, else the demo checkpoint."),
        (medshift_app, "demo", "Default: $GRADIO_SERVER_PORT, else 7860."),
    ],
)
def test_help_texts_keep_their_bracketed_defaults(app, command, shown):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert shown in " ".join(result.output.split()), result.output
