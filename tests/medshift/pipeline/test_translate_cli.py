from __future__ import annotations

import json
import shlex

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner

from medshift.cli import app
from medshift.model_location import DEMO_CHECKPOINT, MODEL_ENV
from xdigiskull.cli import app as xdigiskull_app

runner = CliRunner()


def write_png(path, height, width, sixteen=False):
    rng = np.random.default_rng(0)
    array = rng.random((height, width))
    if sixteen:
        PIL.Image.fromarray((array * 65535).astype(np.uint16)).save(path)
    else:
        PIL.Image.fromarray((array * 255).astype(np.uint8)).save(path)
    return path


def test_translate_files_and_folders(saved_tiny_pipeline, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_png(folder / "a.png", 40, 56)
    write_png(folder / "sub" / "b.png", 30, 30, sixteen=True)
    (folder / "notes.txt").write_text("not an image")
    single = write_png(tmp_path / "c.png", 20, 24)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["translate", str(folder), str(single), "--target", "real_normal", "--tau", "0.6", "--model", saved_tiny_pipeline, "--out", str(out),
         "--no-prepare"]
    )
    assert result.exit_code == 0, result.output
    a = PIL.Image.open(out / "a.png")
    b = PIL.Image.open(out / "sub" / "b.png")
    c = PIL.Image.open(out / "c.png")
    assert (a.size, a.mode) == ((56, 40), "L")
    assert b.size == (30, 30) and b.mode.startswith("I")  # 16-bit in, 16-bit out
    assert c.size == (24, 20)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.png", "b.png", "c.png"]


def test_bad_file_is_reported_and_the_rest_translated(saved_tiny_pipeline, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_png(folder / "good.png", 32, 32)
    (folder / "broken[b].png").write_bytes(b"garbage")  # [b] would be eaten as rich markup if not escaped
    out = tmp_path / "out"
    result = runner.invoke(app, ["translate", str(folder), "--target", "real_low", "--model", saved_tiny_pipeline, "--out", str(out), "--no-prepare"])
    assert result.exit_code == 1
    assert "broken[b].png" in result.output
    assert (out / "good.png").is_file() and not (out / "broken[b].png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_unknown_target_and_missing_model(saved_tiny_pipeline, tmp_path):
    image = write_png(tmp_path / "x.png", 16, 16)
    result = runner.invoke(app, ["translate", str(image), "--target", "real_best", "--model", saved_tiny_pipeline, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "real_best" in result.output and "real_normal" in result.output
    result = runner.invoke(app, ["translate", str(image), "--target", "real_low", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(app, ["translate", str(image), "--target", "real_low", "--tau", "0", "--model", saved_tiny_pipeline, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--tau" in result.output


def test_inversion_guidance_option_reaches_the_pipeline(saved_tiny_pipeline, tmp_path):
    from medshift import MedShiftPipeline

    image = write_png(tmp_path / "in.png", 32, 32)
    common = ["translate", str(image), "--target", "real_normal", "--source", "synthetic_low", "--guidance-scale", "3",
              "--model", saved_tiny_pipeline, "--no-prepare"]  # fmt: skip
    for name, extra in (("default", []), ("guided", ["--inversion-guidance-scale", "3"])):
        result = runner.invoke(app, [*common, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    pipe = MedShiftPipeline.from_pretrained(saved_tiny_pipeline)
    expected = pipe(str(image), target="real_normal", source="synthetic_low", guidance_scale=3.0, inversion_guidance_scale=3.0).images[0]
    guided = np.asarray(PIL.Image.open(tmp_path / "guided" / "in.png"))
    assert np.array_equal(guided, np.asarray(expected))
    assert not np.array_equal(guided, np.asarray(PIL.Image.open(tmp_path / "default" / "in.png")))


# the README's "From raw exports to a translated image", steps 1, 2 and 4 as written (fewer poses: the command's
# shape is the same); step 3, `xdigiskull push`, needs a Hub and is tested with the Hub code
README_STEPS = [
    (xdigiskull_app, "xdigiskull phantom raw --views 2 --seed 0"),
    (xdigiskull_app, "xdigiskull build raw --out x-digiskull"),
    (app, "medshift translate raw/simulator/low --target real_normal --out translated/"),
]


@pytest.fixture(scope="module")
def reconstructing_pipeline(tmp_path_factory) -> str:
    """The demo checkpoint's VAE with a default tau of 1 (the output is its reconstruction: no UNet call) at 128 px:
    fast, and it keeps the input's layout, so a margin left in the input would show in the output."""
    folder = tmp_path_factory.mktemp("reconstructing")
    for component in ("vae", "unet", "scheduler"):
        (folder / component).symlink_to(DEMO_CHECKPOINT / component, target_is_directory=True)
    index = json.loads((DEMO_CHECKPOINT / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "default_tau": 1.0, "resolution": 128}))
    return str(folder)


def test_the_readme_steps_give_780_translations_without_margin(reconstructing_pipeline, tmp_path, monkeypatch):
    from xdigiskull.prepare import load_prepared

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MODEL_ENV, reconstructing_pipeline)  # the command names no model: the default is used
    for command_app, line in README_STEPS:
        result = runner.invoke(command_app, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
    outputs = sorted((tmp_path / "translated").glob("*.png"))
    assert [p.name for p in outputs] == sorted(p.with_suffix(".png").name for p in (tmp_path / "raw/simulator/low").iterdir())
    assert (tmp_path / "x-digiskull" / "README.md").is_file()
    for output in outputs:
        translated = np.asarray(PIL.Image.open(output), dtype=np.float64)
        assert translated.shape == (780, 780)
        # the builder's reading of the same export (field-cropped): the translation lies on it, not on the screen capture
        prepared = load_prepared(tmp_path / "raw/simulator/low" / output.name)[0]
        screen = np.asarray(PIL.Image.open(tmp_path / "raw/simulator/low" / output.name).convert("L").resize((780, 780)), dtype=np.float64)
        assert np.corrcoef(translated.ravel(), prepared.ravel())[0, 1] > 0.9 > np.corrcoef(translated.ravel(), screen.ravel())[0, 1]
    result = runner.invoke(app, ["translate", "raw/simulator/low", "--target", "real_normal", "--out", "as-is", "--no-prepare"])
    assert result.exit_code == 0, result.output
    assert PIL.Image.open(next((tmp_path / "as-is").glob("*.png"))).size == (1224, 982)  # the screen capture, margin and all
