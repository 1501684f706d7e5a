"""scripts/eval_quality.py end to end: a real phantom head, a tiny random-weight pipeline, the cached FID Inception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from synthetic import load_script



def _load_script():
    return load_script("eval_quality")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The demo architectures, shrunk to a few channels, with random weights (processing at 64 px)."""
    from medshift import FlowMatchODEScheduler, MedShiftPipeline
    from medshift.models import demo_unet_config, kl_vae_config

    torch.manual_seed(0)
    small = {"layers_per_block": 1, "norm_num_groups": 8}
    vae = AutoencoderKL(**{**kl_vae_config(), **small, "block_out_channels": (8, 8, 8, 8)})
    unet = UNet2DModel(**{**demo_unet_config(), **small, "block_out_channels": (8, 16, 16), "attention_head_dim": 8})
    pipe = MedShiftPipeline(vae, unet, FlowMatchODEScheduler(num_inference_steps=4), resolution=64, default_tau=0.3)
    path = tmp_path_factory.mktemp("model") / "medshift-tiny"
    pipe.save_pretrained(path)
    return path


def test_figures_and_goals_of_a_fresh_head(tiny_model, tmp_path, capsys):
    from medshift.metrics.fetch import cache_dir, verify_cache

    if verify_cache(cache_dir()) is None:
        pytest.skip(f"no fetched backbone weights in {cache_dir()}: run `medshift weights fetch` (make install does)")
    out = tmp_path / "quality.json"
    _load_script().main(["--model", str(tiny_model), "--views", "2", "--steps", "4", "--taus", "0.6,0.45",
                         "--work-dir", str(tmp_path / "work"), "--out", str(out)])  # fmt: skip
    results = json.loads(out.read_text())

    assert results["seed"] == 7 and results["poses"] == 2 and results["reference_images"] == 4  # 2 frames per pose
    assert results["cfid_backbone"] == "inception-v3-fid"
    assert set(results["reconstruction_ceiling"]) == {"default", "full"}
    assert results["reconstruction_ceiling"]["full"]["processing_resolution"] == 780
    # a real acquisition of the pose matches the noise-free render closely: the ground truth is aligned
    assert results["real_acquisition"]["ssim"] > 0.9 and results["real_acquisition"]["psnr"] > 30
    rows = {(r["method"], r["tau"]): r for r in results["methods"]}
    # MedShift at the default tau (0.3) and every --taus value, SDEdit at each --taus value only
    assert set(rows) == {("identity", None), ("medshift", 0.6), ("medshift", 0.45), ("medshift", 0.3), ("sdedit", 0.6), ("sdedit", 0.45)}
    identity = rows[("identity", None)]
    assert identity["ssim_to_source"] == pytest.approx(1.0) and identity["network_evaluations"] == 0
    assert 0.3 < identity["paired_ssim"] < 0.9  # synthetic vs real render of one pose: related, not equal
    for tau in (0.6, 0.45):  # equal cost: MedShift inverts and generates, SDEdit only generates
        assert rows[("sdedit", tau)]["network_evaluations"] == rows[("medshift", tau)]["network_evaluations"] > 0
    for row in results["methods"]:
        assert row["cfid"] >= 0 and -1 <= row["paired_ssim"] <= 1 and row["paired_psnr"] > 0
    # random weights: the reconstruction and paired goals fail, the size goal passes
    goals = {g["goal"]: g["passed"] for g in results["goals"]}
    assert len(goals) == 10 and goals["checkpoint <= 100 MB of safetensors"] is True
    assert not any(passed for goal, passed in goals.items() if goal.startswith(("VAE", "paired")))
    assert results["all_passed"] is False
    assert "| MedShift (τ=0.45) |" in capsys.readouterr().out


def test_training_seeds_and_bad_options_are_refused(tiny_model, capsys):
    script = _load_script()
    for argv, message in (
        (["--seed", "1"], "--seed 1 is a training seed"),
        (["--views", "1"], "--views must be at least 2"),
        (["--taus", "0.45,1.2"], "every tau must lie in (0, 1)"),
        (["--model", str(tiny_model.parent)], "is not a saved MedShiftPipeline folder"),
    ):
        with pytest.raises(SystemExit):
            script.parse_args(["--model", str(tiny_model), *argv])
        assert message in capsys.readouterr().err


def _row(method, tau, cfid, ssim_to_source, paired_ssim=0.95, paired_psnr=30.0):
    return {"method": method, "tau": tau, "cfid": cfid, "ssim_to_source": ssim_to_source,
            "paired_ssim": paired_ssim, "paired_psnr": paired_psnr}  # fmt: skip


def test_goals_pass_and_fail_on_the_figures():
    script = _load_script()
    results = {
        "reconstruction_ceiling": {"default": {"ssim": 0.975, "psnr": 36.5}},
        "checkpoint_mb": 120.0,
        "methods": [
            _row("identity", None, 100.0, 1.0),
            _row("medshift", 0.45, 40.0, 0.9),
            _row("medshift", 0.3, 30.0, 0.8, paired_ssim=0.85),
            _row("sdedit", 0.45, 45.0, 0.85),  # dominated
            _row("sdedit", 0.3, 25.0, 0.7),  # more realistic than MedShift: not dominated
        ],
    }
    goals = {g["goal"].split(" (")[0]: g for g in script.check_goals(results, default_tau=0.3)}
    assert goals["VAE reconstruction SSIM >= 0.97"]["passed"] and goals["VAE reconstruction PSNR >= 36 dB"]["passed"]
    assert goals["paired SSIM >= 0.90 at tau 0.45"]["passed"] and not goals["paired SSIM >= 0.90 at tau 0.3"]["passed"]
    assert goals["CFID(MedShift tau 0.45) / CFID(identity) <= 0.5"]["value"] == pytest.approx(0.4)
    assert goals["CFID(MedShift tau 0.45) / CFID(identity) <= 0.5"]["passed"]
    assert goals["MedShift dominates SDEdit at tau 0.45"]["passed"]
    assert not goals["MedShift dominates SDEdit at tau 0.3"]["passed"]
    assert not goals["checkpoint <= 100 MB of safetensors"]["passed"]


def test_checkpoint_size_counts_the_pipeline_weights_only(tiny_model, tmp_path):
    """A training run's output folder also holds checkpoints/ and a latent cache: not part of the checkpoint."""
    import shutil

    script = _load_script()
    weights = sum(f.stat().st_size for name in ("vae", "unet") for f in (tiny_model / name).glob("*.safetensors")) / 1e6
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    (run / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-10" / "model.safetensors").write_bytes(b"\0" * 3_000_000)
    (run / "latent_cache").mkdir()
    (run / "latent_cache" / "latents.safetensors").write_bytes(b"\0" * 2_000_000)
    assert script.checkpoint_megabytes(run) == pytest.approx(weights) and weights > 0
    assert script.checkpoint_megabytes(tmp_path / "not-a-model") is None
