"""Backbones: the published architectures built from config with random weights, saved in the
published layouts, and loaded back through the real loading code."""

import numpy as np
import pytest
import torch

from medshift.metrics.inception import FIDInceptionV3, InceptionFeatures, clean_fid_resize
from medshift.metrics.lpips import LPIPS
from medshift.metrics.weights import load_into, load_state_dict


def _random_images(count, size=48, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((size, size)).astype(np.float32) for _ in range(count)]


def test_fid_inception_layout_and_weight_loading(tmp_path):
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    state = model.state_dict()
    # spot checks of the pytorch-fid / FID-graph layout
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    # published file has no BatchNorm counters; randomise running stats so they must load
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_()
    published = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "pt_inception.pth"
    torch.save(published, path)

    loaded = InceptionFeatures.from_pretrained(str(path))
    reference = InceptionFeatures(model)
    images = _random_images(1)
    features = loaded(images)
    assert features.shape == (1, 2048) and loaded.name == "inception-v3-fid"
    np.testing.assert_allclose(features, reference(images), rtol=1e-5, atol=1e-6)


def test_loading_wrong_weights_names_the_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"do not fit FIDInceptionV3: missing \['Conv2d_1a_3x3.bn.weight'"):
        load_into(FIDInceptionV3(), load_state_dict(path), origin=str(path))
    with pytest.raises(ValueError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")


def test_clean_fid_resize_quantises_then_resizes_bicubic():
    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    resized = clean_fid_resize(image)
    assert resized.shape == (299, 299) and resized.dtype == np.float32
    assert resized.min() >= 0 and resized.max() <= 255
    flat = np.full((10, 10), 0.5004, dtype=np.float32)  # quantises to round(127.6) = 128
    np.testing.assert_allclose(clean_fid_resize(flat), 128.0, atol=1e-3)


def test_lpips_loads_torchvision_trunk_and_lin_files(tmp_path):
    torch.manual_seed(1)
    model = LPIPS()
    for i in range(5):  # LPIPS's learned weights are non-negative
        getattr(model, f"lin{i}").model[1].weight.data.abs_()
    trunk = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    trunk["classifier.1.weight"] = torch.zeros(4096, 9216)  # torchvision's file also has the classifier
    lins = {f"lin{i}.{k}": v for i in range(5) for k, v in getattr(model, f"lin{i}").state_dict().items()}
    torch.save(trunk, tmp_path / "alexnet.pth")
    torch.save(lins, tmp_path / "alex.pth")

    loaded = LPIPS.from_pretrained(str(tmp_path / "alexnet.pth"), str(tmp_path / "alex.pth"))
    a, b = _random_images(2, size=64, seed=2), _random_images(2, size=64, seed=3)
    distances = loaded.distance(a, b)
    np.testing.assert_allclose(distances, model.distance(a, b), rtol=1e-6)
    assert (distances > 0).all()
    np.testing.assert_allclose(loaded.distance(a, a), 0.0, atol=1e-7)


def test_clip_loads_from_directory_and_state_dict_file(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from medshift.metrics.clip import CLIPFeatures, clip_vit_l14_336_config

    assert (clip_vit_l14_336_config().image_size, clip_vit_l14_336_config().projection_dim) == (336, 768)
    torch.manual_seed(2)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(tmp_path / "clip")
    torch.save(model.state_dict(), tmp_path / "clip.pth")
    images = _random_images(3, size=40)
    reference = CLIPFeatures(model)(images)
    assert reference.shape == (3, 16)
    np.testing.assert_allclose(CLIPFeatures.from_pretrained(str(tmp_path / "clip"))(images), reference, rtol=1e-5)
    from_file = CLIPFeatures.from_pretrained(str(tmp_path / "clip.pth"), config=config)
    np.testing.assert_allclose(from_file(images), reference, rtol=1e-5)
    with pytest.raises(ValueError, match="could not load CLIP"):
        CLIPFeatures.from_pretrained(str(tmp_path / "not-there"))


def test_vae_latent_features_are_labelled_and_deterministic():
    from diffusers import AutoencoderKL

    from medshift.metrics.vae_features import VAELatentFeatures

    torch.manual_seed(3)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4,
    )  # fmt: skip
    backbone = VAELatentFeatures(vae, resolution=32, grid=4)
    images = _random_images(3, size=48)
    features = backbone(images)
    assert features.shape == (3, 4 * 4 * 4)
    assert "vae" in backbone.name and "inception" not in backbone.name
    np.testing.assert_array_equal(features, backbone(images))
