"""`PhantomConfig` is the one home of `xdigiskull phantom`'s options: the CLI is generated from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xdigiskull.cli import app
from xdigiskull.phantom.cli import run_phantom
from xdigiskull.phantom.phantom_config import PhantomConfig


def test_every_config_field_is_a_cli_option_with_its_default() -> None:
    result = CliRunner().invoke(app, ["phantom", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for spec in dataclasses.fields(PhantomConfig):
        if spec.name == "out_dir":
            assert "OUT_DIR" in result.output
            continue
        assert "--" + spec.name.replace("_", "-") in result.output
        assert spec.metadata["help"].split()[0] in result.output
    assert "--no-catheter" in result.output


def test_cli_and_python_config_write_the_same_bytes(tmp_path: Path) -> None:
    # phantom v1 keeps this fast (the fine anatomy of v2 takes seconds per head); both versions share the mapping
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "cli"), "--views", "1", "--detector", "128",
                                      "--frames", "1", "--seed", "4", "--catheter", "--phantom-version", "1"])
    assert result.exit_code == 0, result.output
    config = PhantomConfig(tmp_path / "py", views=1, detector=128, frames=1, seed=4, catheter=True, phantom_version=1)
    run_phantom(config, progress=False)
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert len(files) == 11
    for name in files:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "py" / name).read_bytes(), name


@pytest.mark.parametrize("changes,message", [({"views": 0}, "views"), ({"detector": 64}, "detector"),
                                             ({"jitter": 11.0}, "jitter"), ({"phantom_version": 3}, "phantom_version"),
                                             ({"test_object": "wedge"}, "test_object")])
def test_config_names_the_bad_option(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhantomConfig(tmp_path, **changes)


def test_cli_rejects_an_unknown_test_object(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "raw"), "--test-object", "wedge"])
    assert result.exit_code != 0
    assert "test_object" in result.output
    assert not (tmp_path / "raw").exists()


def test_phantom_v2_is_the_default() -> None:
    import inspect

    from xdigiskull.phantom import generate_exports

    assert PhantomConfig("raw").phantom_version == 2
    assert inspect.signature(generate_exports).parameters["version"].default == 2
