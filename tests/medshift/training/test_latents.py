"""The latent cache equals encoding directly, and is rebuilt when the VAE changes."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from medshift.training.data import load_split, prepare_example
from medshift.training.latents import (
    LatentDataset,
    encode_dataset,
    load_or_build_cache,
    load_vae,
)
from medshift.vae_codec import encode_grey, vae_output


def test_cache_equals_direct_encoding(tiny_dataset, tiny_vae, tmp_path):
    vae = load_vae(str(tiny_vae))
    data = load_split(str(tiny_dataset), "validation")
    cache, path = load_or_build_cache(vae, data, str(tiny_dataset), "validation", 64, tmp_path, flip=True, batch_size=2, show_progress=False)
    assert path.exists()
    assert cache.latents.shape == (5, 2, 4, 8, 8)
    pixels = torch.stack([prepare_example(example, 64)["pixel_values"] for example in data])
    direct = encode_grey(vae, pixels)
    torch.testing.assert_close(cache.latents[:, 0], direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache.latents[:, 1], encode_grey(vae, pixels.flip(-1)), rtol=1e-5, atol=1e-5)
    assert cache.labels.tolist() == [int(example["label"]) for example in data]

    # the second call reads the file instead of encoding again: same tensors, same path
    again, again_path = load_or_build_cache(vae, data, str(tiny_dataset), "validation", 64, tmp_path, flip=True, show_progress=False)
    assert again_path == path
    torch.testing.assert_close(again.latents, cache.latents, rtol=0, atol=0)

    # other VAE weights -> another cache file
    with torch.no_grad():
        vae.encoder.conv_in.weight.add_(0.01)
    _, other_path = load_or_build_cache(vae, data, str(tiny_dataset), "validation", 64, tmp_path, flip=True, show_progress=False)
    assert other_path != path


def test_latent_dataset_picks_one_orientation(tiny_dataset, tiny_vae):
    vae = load_vae(str(tiny_vae))
    cache = encode_dataset(vae, load_split(str(tiny_dataset), "validation"), 64, flip=True, show_progress=False)
    item = LatentDataset(cache)[2]
    assert item["latents"].shape == (4, 8, 8)
    assert any(torch.equal(item["latents"], cache.latents[2, view]) for view in range(2))


def test_rgb_vae_gets_grey_replicated_and_averaged_back():
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
    ).eval()
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    latents = encode_grey(vae, grey)
    expected = vae.encode(grey.repeat(1, 3, 1, 1)).latent_dist.mode() * vae.config.scaling_factor
    torch.testing.assert_close(latents, expected)
    decoded = vae_output(vae, vae.decode(latents / vae.config.scaling_factor).sample)
    assert decoded.shape == (2, 1, 16, 16)  # RGB decoded back to grey
    torch.testing.assert_close(decoded, vae.decode(latents / vae.config.scaling_factor).sample.mean(1, keepdim=True))
