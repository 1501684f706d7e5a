from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ImagePipelineOutput
from huggingface_hub import ModelCard
from synthetic import skull_like, write_dicom

from medshift import MedShiftPipeline
from medshift.model_card import make_model_card
from medshift.scheduling_flow_match import FlowMatchODEScheduler
from xdigiskull.classes import CLASS_NAMES
from xdigiskull.prepare import load_prepared

TINY_RESOLUTION = 64  # the resolution of the tiny pipelines built in conftest.py


def write_skull_dicom(path: Path, height: int = 96, width: int = 80) -> Path:
    return write_dicom(path, skull_like(height, width))


# ---------------------------------------------------------------- the method


def test_ode_inversion_then_regeneration_returns_the_latent(tiny_pipeline, integrate):
    """Backwards to tau and forwards again with the same label and many steps: the flow is invertible."""
    pipe = tiny_pipeline
    pixels = torch.from_numpy(skull_like())[None, None]
    x1 = pipe.encode_images(pixels)
    labels = torch.tensor([CLASS_NAMES.index("synthetic_high")])

    def field(x, t):
        return pipe.velocity(x, torch.tensor(t * 1000.0), labels, guidance_scale=2.0)

    scheduler = FlowMatchODEScheduler.from_config(pipe.scheduler.config, solver="rk4")
    with torch.no_grad():
        z_tau = integrate(scheduler, field, x1, 1.0, 0.3, 23)  # 16 steps over [0.3, 1]
        back = integrate(scheduler, field, z_tau, 0.3, 1.0, 23)
    assert (z_tau - x1).abs().max() > 0.1  # the inversion did move the latent
    assert torch.allclose(back, x1, atol=1e-3 * x1.abs().max().item())


def test_same_source_and_target_reproduces_the_reconstruction(tiny_pipeline):
    """With the same guidance both ways, inversion and generation run one flow in opposite directions."""
    image = skull_like(48, 56)
    reconstruction = tiny_pipeline(image, target="real_low", tau=1.0, output_type="np").images[0]
    round_trip = tiny_pipeline(
        image, target="real_low", source="real_low", tau=0.5, num_inference_steps=24, solver="rk4", output_type="np",
        guidance_scale=2.0, inversion_guidance_scale=2.0,
    ).images[0]
    translated = tiny_pipeline(image, target="real_low", source="synthetic_low", tau=0.5, output_type="np").images[0]
    round_trip_error = np.abs(round_trip - reconstruction).max()
    assert round_trip_error < 5e-3
    assert np.abs(translated - reconstruction).max() > 5 * round_trip_error


def test_tau_one_returns_the_vae_reconstruction(tiny_pipeline):
    image = skull_like()
    out = tiny_pipeline(image, target="real_normal", tau=1.0, output_type="pt").images
    with torch.no_grad():
        pixels = torch.from_numpy(image)[None, None]
        expected = tiny_pipeline.decode_latents(tiny_pipeline.encode_images(pixels))
    assert torch.allclose(out, expected, atol=1e-6)


def test_noise_encoding_uses_the_generator_and_ode_does_not(tiny_pipeline):
    image = skull_like()

    def run(encode, seed):
        g = torch.Generator().manual_seed(seed)
        return tiny_pipeline(image, target="real_normal", encode=encode, generator=g, output_type="np").images

    assert np.array_equal(run("noise", 1), run("noise", 1))
    assert not np.allclose(run("noise", 1), run("noise", 2))
    assert np.array_equal(run("ode", 1), run("ode", 2))


def test_sdedit_noise_comes_from_the_schedulers_prior(tiny_pipeline):
    """A model trained with offset noise (scheduler noise_offset) gets SDEdit noise with that offset;
    the ODE inversion draws no noise, so its translation does not change."""
    from medshift.scheduling_flow_match import FlowMatchODEScheduler

    image = skull_like()

    def run(encode):
        return tiny_pipeline(image, target="real_normal", encode=encode, generator=torch.Generator().manual_seed(1), output_type="np").images

    plain = {encode: run(encode) for encode in ("noise", "ode")}
    tiny_pipeline.scheduler = FlowMatchODEScheduler.from_config(tiny_pipeline.scheduler.config, noise_offset=2.0)
    assert not np.allclose(run("noise"), plain["noise"], atol=1e-3)
    assert np.array_equal(run("ode"), plain["ode"])


def test_guidance_costs_one_batched_network_call_per_step(tiny_pipeline):
    calls = []
    handle = tiny_pipeline.unet.register_forward_pre_hook(lambda module, args, kwargs: calls.append(args[0].shape[0]), with_kwargs=True)

    def batch_sizes(**kwargs) -> list[int]:
        calls.clear()
        tiny_pipeline(skull_like(), target="real_normal", source="synthetic_high", tau=0.5, num_inference_steps=8, **kwargs)
        return list(calls)

    try:
        both = batch_sizes(guidance_scale=2.0, inversion_guidance_scale=2.0)
        default = batch_sizes(guidance_scale=2.0)
        unguided = batch_sizes(guidance_scale=1.0)
    finally:
        handle.remove()
    assert both == [2] * 8  # 4 inversion + 4 generation steps, conditional and null in one batch
    assert tiny_pipeline.config.default_inversion_guidance_scale == 1.0
    assert default == [1] * 4 + [2] * 4  # the inversion follows the source class's own flow
    assert unguided == [1] * 8


def test_guidance_scales_fill_in_the_config(make_pipeline):
    pipe = make_pipeline(default_guidance_scale=3.0)
    assert pipe.guidance_scales() == (3.0, 1.0)
    assert pipe.guidance_scales(2.0, 0.5) == (2.0, 0.5)
    old_style = make_pipeline(default_guidance_scale=3.0, default_inversion_guidance_scale=None)
    assert old_style.guidance_scales() == (3.0, 3.0)
    assert old_style.guidance_scales(2.0) == (2.0, 2.0)


def test_inversion_guidance_none_follows_the_generation(make_pipeline):
    """Pipelines saved before the option carry None: their inversion is guided like the generation."""
    old_style, explicit = make_pipeline(default_inversion_guidance_scale=None), make_pipeline()
    outputs = [
        old_style(skull_like(), target="real_normal", source="synthetic_high", guidance_scale=3.0, output_type="np").images,
        explicit(skull_like(), target="real_normal", source="synthetic_high", guidance_scale=3.0, inversion_guidance_scale=3.0,
                 output_type="np").images,
        explicit(skull_like(), target="real_normal", source="synthetic_high", guidance_scale=3.0, output_type="np").images,
    ]  # fmt: skip
    assert np.array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0] - outputs[2]).max() > 1e-3


# ---------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize(
    "make_input,expected_shapes,expected_mode",
    [
        (lambda: PIL.Image.fromarray((skull_like(40, 72) * 255).astype(np.uint8)), [(40, 72)], "L"),
        (lambda: PIL.Image.fromarray((skull_like(50, 30) * 65535).astype(np.uint16)), [(50, 30)], "I;16"),
        (lambda: PIL.Image.fromarray((skull_like() * 255).astype(np.uint8)).convert("RGB"), [(64, 64)], "L"),
        (lambda: (skull_like(33, 47) * 255).astype(np.uint8), [(33, 47)], "L"),
        (lambda: (skull_like(33, 47) * 65535).astype(np.uint16), [(33, 47)], "I;16"),
        (lambda: skull_like(70, 70).astype(np.float64), [(70, 70)], "L"),
        (lambda: np.repeat(skull_like(30, 40)[..., None], 3, axis=-1), [(30, 40)], "L"),
        (lambda: np.stack([skull_like(seed=1), skull_like(seed=2)]), [(64, 64)] * 2, "L"),
        (lambda: torch.from_numpy(skull_like(36, 28)), [(36, 28)], "L"),
        (lambda: torch.from_numpy(skull_like(36, 28))[None].repeat(3, 1, 1), [(36, 28)], "L"),
        (lambda: torch.rand(3, 1, 24, 40), [(24, 40)] * 3, "L"),
        (lambda: [skull_like(20, 20), PIL.Image.fromarray((skull_like(90, 60) * 255).astype(np.uint8))], [(20, 20), (90, 60)], "L"),
    ],
    ids=["pil_L", "pil_I16", "pil_RGB", "np_uint8", "np_uint16", "np_float64", "np_HWC", "np_batch",
         "pt_HW", "pt_CHW", "pt_NCHW", "list_mixed_sizes"],
)
def test_every_input_kind_keeps_its_size(tiny_pipeline, make_input, expected_shapes, expected_mode):
    pil = tiny_pipeline(make_input(), target="real_normal", tau=0.6).images
    assert [img.size[::-1] for img in pil] == expected_shapes
    assert all(img.mode == expected_mode for img in pil)
    arrays = tiny_pipeline(make_input(), target="real_normal", tau=0.6, output_type="np").images
    assert len(arrays) == len(expected_shapes)
    for array, shape in zip(arrays, expected_shapes):
        assert array.dtype == np.float32 and array.shape == (*shape, 1)
        assert 0.0 <= array.min() and array.max() <= 1.0
    tensors = tiny_pipeline(make_input(), target="real_normal", tau=0.6, output_type="pt").images
    for tensor, shape in zip(tensors, expected_shapes):
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (1, *shape)


def test_batches_of_equal_size_are_stacked(tiny_pipeline):
    out = tiny_pipeline([skull_like(seed=1), skull_like(seed=2)], target="real_normal", output_type="np").images
    assert isinstance(out, np.ndarray) and out.shape == (2, 64, 64, 1)
    pt = tiny_pipeline(torch.rand(2, 1, 32, 32), target="real_normal", output_type="pt").images
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 1, 32, 32)
    batch = tiny_pipeline([skull_like(seed=1), skull_like(seed=1)], target="real_normal", output_type="np").images
    assert np.allclose(batch[0], batch[1], atol=1e-5)


def test_per_image_targets(tiny_pipeline):
    images = [skull_like(seed=3), skull_like(seed=3)]
    out = tiny_pipeline(images, target=["real_low", "real_exposure"], output_type="np").images
    low = tiny_pipeline(images[0], target="real_low", output_type="np").images[0]
    assert np.allclose(out[0], low, atol=1e-5)
    assert not np.allclose(out[0], out[1], atol=1e-3)


def test_dicom_path_goes_through_the_builder_reader(tiny_pipeline, tmp_path):
    path = write_skull_dicom(tmp_path / "frame.dcm")
    prepared = load_prepared(path, size=None)[0]
    out = tiny_pipeline(str(path), target="real_normal").images[0]
    assert out.mode == "I;16" and out.size[::-1] == prepared.shape
    no_suffix = write_skull_dicom(tmp_path / "IM0001")
    assert tiny_pipeline(no_suffix, target="real_normal").images[0].size[::-1] == prepared.shape


def test_image_path_input(tiny_pipeline, tmp_path):
    path = tmp_path / "sim.png"
    PIL.Image.fromarray((skull_like(50, 70) * 255).astype(np.uint8)).save(path)
    out = tiny_pipeline(path, target="real_normal", output_type="np").images
    assert out.shape == (1, 50, 70, 1)


def test_large_inputs_are_processed_at_the_training_resolution(tiny_pipeline):
    """A 780x780 image through a model trained at 64: the UNet sees a 64 px image's latent, output is 780."""
    seen = []
    handle = tiny_pipeline.unet.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        out = tiny_pipeline(skull_like(780, 780), target="real_normal", tau=0.8, output_type="np").images
        assert out.shape == (1, 780, 780, 1)
        assert set(seen) == {(TINY_RESOLUTION // 8, TINY_RESOLUTION // 8)}
        seen.clear()
        # explicit full-resolution processing: 300 is padded to 304 (multiple of 8 x 2) -> latent 38
        out = tiny_pipeline(skull_like(300, 300), target="real_normal", tau=0.8, processing_resolution=300, output_type="np").images
        assert out.shape == (1, 300, 300, 1)
        assert set(seen) == {(38, 38)}
        seen.clear()
        # non-square: the longer side goes to the training resolution, the aspect ratio is kept
        tiny_pipeline(skull_like(200, 100), target="real_normal", tau=0.8)
        assert set(seen) == {(8, 4)}
    finally:
        handle.remove()


def test_reconstruction_at_training_resolution_keeps_the_anatomy(tiny_pipeline):
    """Resizing to the training resolution and back must not shift the image."""
    image = skull_like(128, 128)
    out = tiny_pipeline(image, target="real_normal", tau=1.0, output_type="np").images[0, ..., 0]
    # the random VAE changes grey levels, but its output still correlates with the input's layout
    assert np.corrcoef(out.ravel(), image.ravel())[0, 1] > np.corrcoef(out.ravel(), np.roll(image, 20, axis=1).ravel())[0, 1]


def test_return_dict_false(tiny_pipeline):
    result = tiny_pipeline(skull_like(), target="real_normal", return_dict=False)
    assert isinstance(result, tuple) and len(result[0]) == 1
    assert isinstance(tiny_pipeline(skull_like(), target="real_normal"), ImagePipelineOutput)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"target": "real_fancy"}, r"unknown target class 'real_fancy'; valid classes: synthetic_low, synthetic_high, real_low, real_normal, real_exposure"),
        ({"target": "real_normal", "source": "ct"}, r"unknown source class 'ct'; valid classes: synthetic_low"),
        ({"target": 7}, r"unknown target class 7"),
        ({"target": "real_normal", "tau": 0.0}, r"tau must lie in \(0, 1\]"),
        ({"target": "real_normal", "tau": 1.5}, r"tau must lie in \(0, 1\]"),
        ({"target": "real_normal", "tau": float("nan")}, r"tau must lie in \(0, 1\]"),
        ({"target": "real_normal", "num_inference_steps": 0}, r"num_inference_steps must be >= 1"),
        ({"target": "real_normal", "inversion_guidance_scale": float("inf")}, r"inversion_guidance_scale must be a finite number"),
        ({"target": "real_normal", "solver": "dopri5"}, r"unknown solver 'dopri5'"),
        ({"target": "real_normal", "encode": "ddim"}, r"encode must be one of ode, noise"),
        ({"target": "real_normal", "output_type": "latent"}, r"output_type must be one of pil, np, pt"),
        ({"target": ["real_normal"] * 3}, r"target has 3 entries for 1 images"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny_pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(skull_like(), **kwargs)


@pytest.mark.parametrize(
    "image,message",
    [
        ([], "empty batch"),
        (np.zeros((0, 64, 64), dtype=np.float32), "empty batch"),
        (np.full((16, 16), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros((16, 16), dtype=np.int64), "dtype int64"),
        (np.zeros((2, 3, 16, 16), dtype=np.float32), r"shape \(2, 3, 16, 16\)"),
        ("does/not/exist.png", "does not exist"),
        (12, "unsupported image type int"),
    ],
    ids=["empty_list", "empty_array", "nan", "int64", "bad_shape", "missing_file", "int"],
)
def test_bad_images_raise_clear_errors(tiny_pipeline, image, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(image, target="real_normal")


def test_unreadable_file(tiny_pipeline, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png"):
        tiny_pipeline(bad, target="real_normal")


def test_constructor_checks_class_embeddings(tiny_models, tiny_pipeline):
    vae, unet = tiny_models()
    with pytest.raises(ValueError, match="num_class_embeds must be len\\(class_names\\) \\+ 1 = 4"):
        MedShiftPipeline(vae, unet, tiny_pipeline.scheduler, class_names=["a", "b", "c"], resolution=64)


# ---------------------------------------------------------------- saving, loading, publishing


def test_save_load_round_trip_gives_identical_output(saved_tiny_pipeline, make_pipeline):
    original = make_pipeline()  # same seed as the saved one
    loaded = MedShiftPipeline.from_pretrained(saved_tiny_pipeline)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.class_names == list(CLASS_NAMES)
    assert loaded.config.resolution == TINY_RESOLUTION
    assert loaded.scheduler.config.num_inference_steps == 8
    for encode in ("noise", "ode"):
        outputs = [
            p(skull_like(40, 52), target="real_exposure", source="synthetic_low", encode=encode,
              generator=torch.Generator().manual_seed(5), output_type="np").images
            for p in (original, loaded)
        ]
        assert np.array_equal(outputs[0], outputs[1])
    folder = Path(saved_tiny_pipeline)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(folder.rglob("*.bin"))
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "MedShiftPipeline"


@pytest.mark.parametrize("scale", [None, 0.5])
def test_inversion_guidance_round_trips(make_pipeline, tmp_path, scale):
    make_pipeline(default_inversion_guidance_scale=scale).save_pretrained(tmp_path / "pipe")
    assert json.loads((tmp_path / "pipe" / "model_index.json").read_text())["default_inversion_guidance_scale"] == scale
    assert MedShiftPipeline.from_pretrained(tmp_path / "pipe").config.default_inversion_guidance_scale == scale


def test_saved_folder_has_a_model_card(saved_tiny_pipeline):
    card = ModelCard.load(Path(saved_tiny_pipeline) / "README.md")
    assert card.data.library_name == "diffusers"
    assert card.data.pipeline_tag == "image-to-image"
    assert {"medical-imaging", "x-ray"} <= set(card.data.tags)
    assert card.data.class_names == list(CLASS_NAMES)
    assert card.data.recommended_tau == 0.45
    for section in ("## Usage", "## Training data", "## Evaluation", "## Limitations"):
        assert section in card.text


def test_model_card_lists_metrics(tiny_pipeline):
    card = make_model_card(tiny_pipeline, dataset="user/x-digiskull", metrics={"CFID": 195.17, "SSIM": 0.85})
    assert card.data.datasets == ["user/x-digiskull"]
    assert "| CFID | 195.2 |" in card.text and "| SSIM | 0.85 |" in card.text
    unet = tiny_pipeline.unet.config
    assert f"channels {tuple(unet.block_out_channels)}, {unet.layers_per_block} layer(s) per down block." in card.text


def test_refuses_pickle_weights(saved_tiny_pipeline, tiny_pipeline, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(saved_tiny_pipeline, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ValueError, match="pickle weights"):
        MedShiftPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="safetensors"):
        MedShiftPipeline.from_pretrained(saved_tiny_pipeline, use_safetensors=False)
    with pytest.raises(ValueError, match="safetensors"):
        tiny_pipeline.save_pretrained(tmp_path / "unsafe", safe_serialization=False)


def test_vae_sees_its_own_padding_and_the_unet_its_own(tiny_pipeline):
    """72 px: the VAE works on 72 px (a multiple of 8), the UNet on a 10-cell latent (9 padded to even)."""
    seen = {"vae": [], "unet": []}
    hooks = [
        tiny_pipeline.vae.encoder.register_forward_pre_hook(lambda m, args: seen["vae"].append(tuple(args[0].shape[-2:]))),
        tiny_pipeline.vae.decoder.register_forward_pre_hook(lambda m, args: seen["vae"].append(tuple(args[0].shape[-2:]))),
        tiny_pipeline.unet.register_forward_pre_hook(lambda m, args: seen["unet"].append(tuple(args[0].shape[-2:]))),
    ]
    try:
        out = tiny_pipeline(skull_like(72, 72), target="real_normal", tau=0.5, num_inference_steps=2,
                            processing_resolution=72, output_type="np").images
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape == (1, 72, 72, 1)
    assert seen["vae"] == [(72, 72), (9, 9)]  # encoder input in pixels, decoder input in latent cells
    assert seen["unet"] and set(seen["unet"]) == {(10, 10)}


# ---------------------------------------------------------------- the input contract and threads


def test_the_input_contract_is_checked_by_the_call(tiny_pipeline):
    image = skull_like(32, 32)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\], got values in \[1\d\d\.\d+, 2\d\d\.\d+\]"):
        tiny_pipeline(image * 255, target="real_normal")
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        tiny_pipeline(image * 2 - 1, target="real_normal")
    with pytest.raises(ValueError, match="bits_stored must be an integer from 1 to 16"):
        tiny_pipeline(image, target="real_normal", bits_stored=20)
    twelve = np.round(image * 4095).astype(np.uint16)
    by_bits = tiny_pipeline(twelve, target="real_normal", bits_stored=12, output_type="np").images
    as_float = tiny_pipeline(twelve / np.float32(4095), target="real_normal", output_type="np").images
    assert np.allclose(by_bits, as_float, atol=1e-6)
    assert tiny_pipeline(twelve, target="real_normal", bits_stored=12).images[0].mode == "I;16"


def test_threads_sharing_one_pipeline_get_the_sequential_results(tiny_pipeline):
    """4 threads x 3 calls on one pipeline (each call its own scheduler state) == the same calls one by one."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(skull_like(48, 48, seed=seed), tau, solver) for seed, tau, solver in
            [(0, 0.3, "euler"), (1, 0.6, "heun"), (2, 0.45, "midpoint"), (3, 0.5, "rk4")] * 3]  # fmt: skip

    def run(job):
        image, tau, solver = job
        return tiny_pipeline(image, target="real_normal", source="synthetic_low", tau=tau, solver=solver,
                             num_inference_steps=6, output_type="np").images  # fmt: skip

    sequential = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(run, jobs))
    for one, other in zip(sequential, threaded):
        assert np.array_equal(one, other)
