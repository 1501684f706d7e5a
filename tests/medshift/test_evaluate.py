"""`medshift evaluate` end to end on a tiny random-weight pipeline and a tiny X-DigiSkull-shaped dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from PIL import Image
from typer.testing import CliRunner

from medshift.cli import app
from medshift.evaluate import EvaluateConfig, render_report, run_evaluation
from xdigiskull.classes import CLASS_NAMES

SIDE = 64
POSES = 7  # 7 target images: enough for coverage with k = 5


def _pose_image(pose: int, real: bool, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[:SIDE, :SIDE] / SIDE - 0.5
    radius = np.hypot(x - 0.02 * (pose - 3), y)
    image = 0.15 + 0.6 * np.exp(-(((radius - 0.25 - 0.01 * pose) / 0.05) ** 2))
    if real:
        image = 1.3 * image - 0.1 + rng.normal(0, 0.05, image.shape)
    return np.clip(image, 0, 1)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Test split: one synthetic_low and one real_normal image per pose (plus a second real frame), 8-bit."""
    root = tmp_path_factory.mktemp("xdigiskull")
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("image", "label", "domain", "dose", "pair_id", "frame_index")}
    for pose in range(POSES):
        for name, frame in (("synthetic_low", 0), ("real_normal", 1), ("real_normal", 0), ("real_low", 0)):
            image = _pose_image(pose, real=name.startswith("real"), rng=rng)
            rows["image"].append(Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L"))
            rows["label"].append(CLASS_NAMES.index(name))
            rows["domain"].append(name.split("_")[0])
            rows["dose"].append(name.split("_")[1])
            rows["pair_id"].append(f"pose{pose:02d}")
            rows["frame_index"].append(frame)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "domain": datasets.Value("string"),
            "dose": datasets.Value("string"),
            "pair_id": datasets.Value("string"),
            "frame_index": datasets.Value("int32"),
        }
    )
    (root / "data").mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory) -> Path:
    """Noise-free 16-bit renders for all poses but the last, at another size than the dataset (80 px)."""
    folder = tmp_path_factory.mktemp("ground_truth")
    for pose in range(POSES - 1):
        image = cv2.resize(_pose_image(pose, real=False, rng=None), (80, 80), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"pose{pose:02d}_real_normal.png"), np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from medshift import FlowMatchODEScheduler, MedShiftPipeline

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=SIDE,
    )  # fmt: skip
    unet = UNet2DModel(
        in_channels=4, out_channels=4, block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8,
        num_class_embeds=len(CLASS_NAMES) + 1,
    )  # fmt: skip
    pipe = MedShiftPipeline(vae, unet, FlowMatchODEScheduler(num_inference_steps=4), resolution=SIDE)
    path = tmp_path_factory.mktemp("model") / "medshift-tiny"
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_backbone_files(tmp_path_factory) -> dict[str, Path]:
    """Random-weight LPIPS (trunk + lin files, torchvision / LPIPS layouts) and a tiny CLIP folder."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from medshift.metrics.lpips import LPIPS

    folder = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(4)
    lpips = LPIPS()
    for i in range(5):
        getattr(lpips, f"lin{i}").model[1].weight.data.abs_()
    torch.save({f"features.{k}": v for k, v in lpips.features.state_dict().items()}, folder / "alexnet.pth")
    torch.save({f"lin{i}.{k}": v for i in range(5) for k, v in getattr(lpips, f"lin{i}").state_dict().items()}, folder / "alex.pth")
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=16,
    )  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(folder / "clip")
    return {"alexnet": folder / "alexnet.pth", "lin": folder / "alex.pth", "clip": folder / "clip"}


def test_command_writes_table_results_and_plot(tiny_model, tiny_dataset, ground_truth, tiny_backbone_files, tmp_path):
    out = tmp_path / "eval"
    files = tiny_backbone_files
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--model", str(tiny_model), "--dataset", str(tiny_dataset), "--source", "synthetic_low",
            "--target", "real_normal", "--taus", "0.45,0.6", "--baselines", "identity,sdedit", "--out", str(out),
            "--split", "test", "--seed", "3", "--ground-truth", str(ground_truth),
            "--lpips-alexnet", str(files["alexnet"]), "--lpips-weights", str(files["lin"]), "--clip-model", str(files["clip"]),
            "--no-cached-backbones",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"report.md", "results.json", "tau_sweep.png"}

    results = json.loads((out / "results.json").read_text())
    assert results["counts"] == {"source_images": POSES, "target_images": 2 * POSES, "paired": POSES - 1}
    assert results["backbones"] == {
        "fd": "vae-latent-8x8", "coverage": "vae-latent-8x8", "density": "vae-latent-8x8",
        "mmd": f"clip:{files['clip']}", "lpips": "lpips-alex",
    }  # fmt: skip
    assert results["paper_protocol_backbones"] is False  # no Inception
    labels = [row["label"] for row in results["rows"]]
    assert labels == [
        "Source images (identity)", "MedShift (τ=0.6)", "MedShift (τ=0.45)", "SDEdit (τ=0.6)", "SDEdit (τ=0.45)",
    ]  # fmt: skip
    identity, *ranked = results["rows"]
    assert identity["ssim"] == pytest.approx(1.0) and identity["psnr"] is None  # identical: PSNR = inf -> null
    assert identity["lpips"] == pytest.approx(0.0, abs=1e-6)
    # the 16-bit 80 px ground truth, resized to 64 px, is the source's own (noise-free) pose
    assert identity["paired"]["ssim"] > 0.9 and identity["paired"]["psnr"] > 25
    assert identity["realism_rank"] is None and identity["average_rank"] is None
    for row in ranked:
        assert math.isfinite(row["fd"]) and 0 <= row["coverage"] <= 1 and math.isfinite(row["mmd"])
        assert row["paired"]["count"] == POSES - 1 and math.isfinite(row["paired"]["ssim"])
        assert row["lpips"] > 0 and row["paired"]["lpips"] > 0
        assert row["average_rank"] == (row["realism_rank"] + row["structure_rank"]) / 2
    assert sorted(row["realism_rank"] for row in ranked)[0] == 1

    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")]
    header = table[0]
    assert header.startswith("| Type | Method | FD [vae-latent-8x8] ↓ | Cov. ↑ | CMMD ↓ | Rank ↓ |")
    assert header.endswith("| LPIPS ↓ | SSIM ↑ | Rank ↓ | Avg. Rank ↓ |")
    main_rows = table[1:6]
    assert all(line.count("|") == 11 for line in main_rows)
    assert main_rows[0].startswith("| None | Source images (identity) |") and main_rows[0].endswith("| -- | -- |")
    assert "Not the paper's backbones" in report and "## Paired ground truth" in report

    with Image.open(out / "tau_sweep.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 300


def _flat(value, prefix: str = "") -> dict:
    """Nested rows as one {path: value} dict."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for index, item in enumerate(value) for k, v in _flat(item, f"{prefix}/{index}").items()}
    return {prefix: value}


def test_deterministic_for_a_seed_and_pairs_from_the_dataset(tiny_model, tiny_dataset):
    kwargs = dict(
        model=str(tiny_model), dataset=str(tiny_dataset), taus=[0.5], baselines=["sdedit"], split="test",
        max_images=6, cached_backbones=False, show_progress=False,
    )  # fmt: skip
    first = run_evaluation(EvaluateConfig(out="unused", seed=1, batch_size=4, **kwargs))
    again = run_evaluation(EvaluateConfig(out="unused", seed=1, batch_size=6, **kwargs))  # batch size must not change the noise
    other = run_evaluation(EvaluateConfig(out="unused", seed=2, batch_size=4, **kwargs))
    # the weights the pipeline really used: the model's guidance, its inversion unguided
    from medshift import MedShiftPipeline

    default_guidance = MedShiftPipeline.from_pretrained(str(tiny_model)).config.default_guidance_scale
    assert default_guidance != 1.0
    assert (first["config"]["guidance_scale"], first["config"]["inversion_guidance_scale"]) == (default_guidance, 1.0)
    # the same noise per image; the network's float rounding may differ with the batch size
    flat, flat_again = _flat(first["rows"]), _flat(again["rows"])
    numbers = {k for k, v in flat.items() if isinstance(v, float)}
    assert flat.keys() == flat_again.keys() and numbers
    assert {k: flat[k] for k in numbers} == pytest.approx({k: flat_again[k] for k in numbers}, rel=1e-5)
    assert {k: v for k, v in flat.items() if k not in numbers} == {k: v for k, v in flat_again.items() if k not in numbers}
    medshift, sdedit = first["rows"]
    assert medshift["ssim"] == other["rows"][0]["ssim"]  # the ODE inversion uses no noise
    assert sdedit["ssim"] != other["rows"][1]["ssim"]
    # without --ground-truth the reference is the real_normal image (frame 0) of the same pose in the split
    assert first["counts"]["paired"] == 6 and medshift["paired"]["count"] == 6
    assert "same pair_id" in first["config"]["paired_reference"]
    report = render_report(first)
    assert "| MedShift (τ=0.5) |" in report and "| MMD [vae-latent-8x8] ↓ |" in report  # no CLIP: not "CMMD"
    assert first["rows"][0]["lpips"] is None and "LPIPS not computed" in report
    assert "LPIPS ↓" not in report  # no LPIPS column without its backbone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baselines", "identity,cyclegan"], "unknown baseline(s) cyclegan"),
        (["--taus", "0.3,1.5"], "every tau must lie in (0, 1]"),
        (["--target", "real_high"], "target class 'real_high' is not one of the model's classes"),
        (["--split", "validation"], "could not load split 'validation'"),
    ],
)
def test_bad_arguments_are_named(tiny_model, tiny_dataset, tmp_path, args, message):
    base = ["evaluate", "--model", str(tiny_model), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, base + args)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_cached_backbones_are_the_default_and_named(tiny_model, tiny_dataset):
    from medshift.metrics.fetch import cache_dir, verify_cache

    if verify_cache(cache_dir()) is None:
        pytest.skip(f"no fetched backbone weights in {cache_dir()}: run `medshift weights fetch` (make install does)")
    config = EvaluateConfig(out="unused", 
        model=str(tiny_model), dataset=str(tiny_dataset), taus=[], baselines=["identity"], max_images=6,
        show_progress=False,
    )  # fmt: skip
    results = run_evaluation(config)  # the identity row only: the Inception is slow on a CPU
    assert results["backbones"] == {
        "fd": "inception-v3-fid", "coverage": "inception-v3-fid", "density": "inception-v3-fid",
        "mmd": "inception-v3-fid", "lpips": "lpips-alex",
    }  # fmt: skip
    (identity,) = results["rows"]
    # against its own source LPIPS is 0 (the paper's identity row); against the real render of the pose it is not
    assert identity["lpips"] == pytest.approx(0.0, abs=1e-6) and identity["paired"]["lpips"] > 0.01
    assert identity["fd"] > 1 and 0 <= identity["coverage"] <= 1 and identity["mmd"] > 0
    header = next(line for line in render_report(results).splitlines() if line.startswith("| Type"))
    assert header == (
        "| Type | Method | CFID ↓ | Cov. ↑ | MMD [inception-v3-fid] ↓ | Rank ↓ | LPIPS ↓ | SSIM ↑ | Rank ↓ | Avg. Rank ↓ |"
    )
    assert "CMMD" not in header
