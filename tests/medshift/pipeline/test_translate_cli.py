from __future__ import annotations

import numpy as np
import PIL.Image
from typer.testing import CliRunner

from medshift.cli import app

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
        app, ["translate", str(folder), str(single), "--target", "real_normal", "--tau", "0.6", "--model", saved_tiny_pipeline, "--out", str(out)]
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
    (folder / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    result = runner.invoke(app, ["translate", str(folder), "--target", "real_low", "--model", saved_tiny_pipeline, "--out", str(out)])
    assert result.exit_code == 1
    assert "broken.png" in result.output
    assert (out / "good.png").is_file() and not (out / "broken.png").exists()
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
              "--model", saved_tiny_pipeline]  # fmt: skip
    for name, extra in (("default", []), ("guided", ["--inversion-guidance-scale", "3"])):
        result = runner.invoke(app, [*common, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    pipe = MedShiftPipeline.from_pretrained(saved_tiny_pipeline)
    expected = pipe(str(image), target="real_normal", source="synthetic_low", guidance_scale=3.0, inversion_guidance_scale=3.0).images[0]
    guided = np.asarray(PIL.Image.open(tmp_path / "guided" / "in.png"))
    assert np.array_equal(guided, np.asarray(expected))
    assert not np.array_equal(guided, np.asarray(PIL.Image.open(tmp_path / "default" / "in.png")))
