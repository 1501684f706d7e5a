"""The default model is found from the installed package, whatever the working directory; a missing local folder
is named as such, not as a Hub download that failed."""

from __future__ import annotations

import socket

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner

from medshift.cli import app
from medshift.model_location import DEMO_CHECKPOINT, MODEL_ENV, default_model, looks_local
from medshift.pipeline_medshift import MedShiftPipeline

runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a temporary directory, with no $MEDSHIFT_MODEL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return tmp_path


def test_the_default_model_does_not_depend_on_the_working_directory(elsewhere, monkeypatch):
    assert default_model() == str(DEMO_CHECKPOINT) and DEMO_CHECKPOINT.is_absolute()
    assert (DEMO_CHECKPOINT / "model_index.json").is_file()
    pipe = MedShiftPipeline.from_pretrained(default_model())
    assert "real_normal" in pipe.config.class_names
    monkeypatch.setenv(MODEL_ENV, "user/some-medshift")
    assert default_model() == "user/some-medshift"


def test_a_missing_local_folder_is_named_not_blamed_on_the_hub(elsewhere):
    (elsewhere / "empty").mkdir()
    for path, shown in [
        (elsewhere / "empty", str(elsewhere / "empty")),
        ("./nowhere", "nowhere"),
        ("checkpoints/medshift-xdigiskull-demo", "checkpoints/medshift-xdigiskull-demo"),  # the old relative default
    ]:
        with pytest.raises(OSError) as error:
            MedShiftPipeline.from_pretrained(path)
        assert str(error.value).startswith(f"no MedShift pipeline at {shown} (model_index.json missing)"), str(error.value)


def test_local_paths_and_hub_ids_are_told_apart(elsewhere):
    assert looks_local(elsewhere) and looks_local("./model") and looks_local("~/model") and looks_local("a/b/c")
    assert not looks_local("user/medshift-xdigiskull") and not looks_local("medshift")


def test_translate_from_another_directory_uses_the_demo_checkpoint(elsewhere):
    PIL.Image.fromarray(np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)).save(elsewhere / "x.png")
    fast = ["--steps", "1", "--processing-resolution", "64", "--no-prepare"]
    result = runner.invoke(app, ["translate", "x.png", "--target", "real_normal", "--out", "out", *fast])
    assert result.exit_code == 0, result.output
    assert PIL.Image.open(elsewhere / "out" / "x.png").size == (64, 64)


def test_a_bad_default_model_is_not_blamed_on_an_option_that_was_not_given(elsewhere, monkeypatch):
    monkeypatch.setenv(MODEL_ENV, str(elsewhere / "nowhere"))
    PIL.Image.new("L", (32, 32)).save(elsewhere / "x.png")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    for command in (["translate", "x.png", "--target", "real_normal", "--out", "out"], ["demo", "--port", port]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert f"no MedShift pipeline at {elsewhere / 'nowhere'} (model_index.json missing)" in result.output
        assert "--model" not in result.output and "Traceback" not in result.output
