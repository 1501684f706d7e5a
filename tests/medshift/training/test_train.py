"""The flow-matching training loop: it learns, resumes exactly, and runs on two processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from synthetic import tiny_train_config

from medshift.training.common import list_checkpoints, read_log
from medshift.training.train import run_training

WORKER = Path(__file__).with_name("two_process_worker.py")



def test_loss_falls_and_pipeline_is_saved(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    from medshift.pipeline_medshift import MedShiftPipeline

    result = run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "run"))
    assert result.global_step == 50 and len(result.losses) == 50
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.75 * first, (first, last)

    pipeline = MedShiftPipeline.from_pretrained(str(tmp_path / "run"))
    assert pipeline.config.resolution == 64
    # the pipeline holds the EMA weights, not the raw ones
    saved = pipeline.unet.state_dict()
    for name, value in result.ema_unet.state_dict().items():
        torch.testing.assert_close(saved[name], value)
    assert any(not torch.equal(saved[name], value) for name, value in result.unet.state_dict().items())
    log = read_log(tmp_path / "run" / "train_log.csv")
    assert [row["step"] for row in log] == [10, 20, 30, 40, 50]


def test_offset_and_coarse_noise_training_learns_and_stores_the_prior_in_the_scheduler(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    from medshift.pipeline_medshift import MedShiftPipeline

    # the command line's form of --coarse-noise: a comma-separated string
    # with training times focused on [0.25, 1], as the demo's continuation trains
    config = tiny_train_config(
        tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "run", noise_offset=1.0, coarse_noise="0,0.5",
        focus_time_min=0.25, focus_time_fraction=0.75,
    )
    result = run_training(config)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.75 * first, (first, last)
    # the pipeline's SDEdit noise must come from the prior the UNet learned
    scheduler = MedShiftPipeline.from_pretrained(str(tmp_path / "run")).scheduler
    assert scheduler.config.noise_offset == 1.0 and list(scheduler.config.coarse_noise) == [0.0, 0.5]
    card = " ".join((tmp_path / "run" / "README.md").read_text().split())  # the card's prose is wrapped at 120
    assert "trained with offset noise 1 (a per-channel constant added to the Gaussian noise) and coarse noise (0.5 at 1/4 of" in card


def test_init_unet_starts_from_a_saved_pipelines_weights(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    from diffusers import UNet2DModel

    from medshift.pipeline_medshift import MedShiftPipeline

    run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "first", max_steps=10))
    trained = MedShiftPipeline.from_pretrained(str(tmp_path / "first")).unet.state_dict()
    # learning rate 0: the fine-tuned pipeline must hold exactly the weights it started from
    frozen = run_training(tiny_train_config(tiny_dataset, tiny_vae, "no-such-config", tmp_path / "frozen", max_steps=3,
                                            learning_rate=0.0, weight_decay=0.0, init_unet=str(tmp_path / "first")))  # fmt: skip
    for name, value in frozen.ema_unet.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
    # and it goes on learning from there: its first losses are those of the trained weights, not a fresh UNet's
    fresh = run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "fresh", max_steps=3))
    tuned = run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "tuned", max_steps=3,
                                           init_unet=str(tmp_path / "first" / "unet")))  # fmt: skip
    assert sum(tuned.losses) < sum(fresh.losses)

    UNet2DModel(**{**tiny_unet_config, "num_class_embeds": 5}).save_pretrained(tmp_path / "five")
    with pytest.raises(ValueError, match=r"--init-unet .*five: the UNet needs num_class_embeds=6, got 5"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "bad", init_unet=str(tmp_path / "five")))


def test_init_unet_layers_per_block_fine_tunes_a_deepened_copy(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    from medshift.pipeline_medshift import MedShiftPipeline

    run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "first", max_steps=5))
    first = MedShiftPipeline.from_pretrained(str(tmp_path / "first")).unet.eval()
    # learning rate 0: the saved UNet is the deepened copy, which computes what the trained one did
    run_training(tiny_train_config(tiny_dataset, tiny_vae, "no-such-config", tmp_path / "deep", max_steps=2, learning_rate=0.0,
                                   weight_decay=0.0, init_unet=str(tmp_path / "first"), init_unet_layers_per_block=2))  # fmt: skip
    deep = MedShiftPipeline.from_pretrained(str(tmp_path / "deep")).unet.eval()
    assert first.config.layers_per_block == 1 and deep.config.layers_per_block == 2
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in first.parameters())
    latents = torch.randn(2, first.config.in_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = first(latents, torch.tensor([200.0, 800.0]), class_labels=torch.tensor([0, 3])).sample
        got = deep(latents, torch.tensor([200.0, 800.0]), class_labels=torch.tensor([0, 3])).sample
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="--init-unet-layers-per-block deepens the --init-unet UNet: give --init-unet too"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "bad", init_unet_layers_per_block=2))


def test_resume_continues_from_the_saved_step(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    common = dict(max_steps=10, checkpoint_every=5, cache_dir=str(tmp_path / "cache"), log_every=1)
    uninterrupted = run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "full", **common))

    run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "split", **{**common, "max_steps": 5}))
    assert [step for step, _ in list_checkpoints(tmp_path / "split")] == [5]
    resumed = run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "split", resume="latest", **common))

    assert resumed.global_step == 10 and len(resumed.losses) == 5  # only steps 6..10 ran
    assert resumed.losses == pytest.approx(uninterrupted.losses[5:], rel=1e-5)
    for name, value in uninterrupted.ema_unet.state_dict().items():
        torch.testing.assert_close(resumed.ema_unet.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert [row["step"] for row in read_log(tmp_path / "split" / "train_log.csv")] == list(range(1, 11))


def test_two_processes_end_with_identical_weights(tiny_dataset, tiny_vae, tiny_unet_config_file, tmp_path):
    # torchrun plus ACCELERATE_USE_CPU is what `accelerate launch` sets up; accelerate's own CPU
    # launcher needs MPI, which this machine lacks
    # tests/ on the worker's import path, for the shared synthetic data
    tests = str(Path(__file__).parents[2])
    python_path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(WORKER), str(tiny_dataset), str(tiny_vae), str(tiny_unet_config_file), str(tmp_path / "out"),
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [load_file(str(tmp_path / "out" / f"rank-{rank}.safetensors")) for rank in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        # gloo's all-reduce may round the last bit differently per rank; unsynchronised ranks (each on
        # its own data shard and noise) would differ by about the learning rate, 1e-3
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=1e-6, atol=1e-6)
    # one log, written by the main process only, from a run that saw both shards
    log = read_log(tmp_path / "out" / "train_log.csv")
    assert [row["step"] for row in log] == [4]


def test_bad_settings_are_refused(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    with pytest.raises(ValueError, match="latent side 5 .* multiple of 2"):  # 40 px: 5 latent cells, the UNet halves once
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "a", resolution=40))
    with pytest.raises(ValueError, match="--latent-crop 3 must be a multiple of 2"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "a", latent_crop=3))
    with pytest.raises(ValueError, match="--latent-crop 10 exceeds the latent side 8"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "a", latent_crop=10))
    with pytest.raises(ValueError, match="num_class_embeds"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, {**tiny_unet_config, "num_class_embeds": 5}, tmp_path / "b"))
    with pytest.raises(ValueError, match="AutoencoderKL or AutoencoderDC"):
        run_training(tiny_train_config(tiny_dataset, tmp_path / "no-vae", tiny_unet_config, tmp_path / "c"))
    with pytest.raises(ValueError, match="noise_offset must be >= 0, got -0.5"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "e", noise_offset=-0.5))
    with pytest.raises(ValueError, match="coarse_noise must be comma-separated numbers such as 0,0,0.5,0.7,0.7, got '0,x'"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "e", coarse_noise="0,x"))
    with pytest.raises(ValueError, match=r"coarse_noise weights must be finite and >= 0, got -1.0 for level 2 \(1/4 of the latent\)"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "e", coarse_noise=[0.5, -1]))
    with pytest.raises(ValueError, match=r"focus_time_min must be in \[0, 1\), got 1.0"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "e", focus_time_min=1.0, focus_time_fraction=0.5))
    with pytest.raises(ValueError, match=r"focus_time_fraction must be in \[0, 1\], got 1.5"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "e", focus_time_min=0.25, focus_time_fraction=1.5))
    assert not (tmp_path / "e").exists()  # refused before any work
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "d", resume=str(tmp_path)))


def test_time_budget_stops_early_saves_the_pipeline_and_a_resumable_checkpoint(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path):
    from medshift.pipeline_medshift import MedShiftPipeline

    # a budget far below one step's time: training stops after its first step, whatever the machine
    config = tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "run", max_steps=10_000, max_minutes=1e-9, checkpoint_every=1000)
    result = run_training(config)
    assert result.global_step == 1
    assert MedShiftPipeline.from_pretrained(str(tmp_path / "run")).config.resolution == 64
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [1]

    with pytest.raises(ValueError, match="max_minutes"):
        run_training(tiny_train_config(tiny_dataset, tiny_vae, tiny_unet_config, tmp_path / "bad", max_minutes=0))


def test_training_on_latent_crops_of_an_autoencoder_dc_gives_a_pipeline_for_whole_images(tiny_dataset, tiny_unet_config, tmp_path):
    """The shipped recipe: an AutoencoderDC, images at a resolution that is not a multiple of its factor,
    the UNet trained on random latent windows; the pipeline then translates whole images of any size."""
    from synthetic import TINY_DC_VAE_CONFIG

    from medshift.models import make_autoencoder
    from medshift.pipeline_medshift import MedShiftPipeline
    from medshift.training.train import random_crops

    torch.manual_seed(0)
    make_autoencoder(dict(TINY_DC_VAE_CONFIG)).save_pretrained(str(tmp_path / "vae"))
    config = tiny_train_config(tiny_dataset, tmp_path / "vae", tiny_unet_config, tmp_path / "run", resolution=60, latent_crop=4)
    result = run_training(config)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.85 * first, (first, last)
    pipeline = MedShiftPipeline.from_pretrained(str(tmp_path / "run"))
    assert type(pipeline.vae).__name__ == "AutoencoderDC" and pipeline.unet.config.sample_size == 4
    out = pipeline(np.random.default_rng(0).random((70, 90), dtype=np.float32), target="real_normal", num_inference_steps=4, output_type="np")
    assert out.images[0].shape == (70, 90, 1) and np.isfinite(out.images[0]).all()

    latents = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    crops = random_crops(latents, 4)
    assert crops.shape == (2, 3, 4, 4)
    for latent, crop in zip(latents, crops):  # each crop is a contiguous window of its own latent
        top, left = divmod(int(crop[0, 0, 0] - latent[0, 0, 0]), 8)
        torch.testing.assert_close(crop, latent[:, top : top + 4, left : left + 4])
    assert random_crops(latents, None) is latents
