from __future__ import annotations


import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel

from medshift.models import deepen_unet, demo_unet_config, demo_vae_config, kl_vae_config, make_autoencoder, paper_unet_config, sd_vae_config, tile_vae
from xdigiskull.classes import CLASS_NAMES


def millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_demo_models_sizes_and_shapes():
    vae = make_autoencoder(demo_vae_config())
    unet = UNet2DModel(**demo_unet_config())
    assert type(vae).__name__ == "AutoencoderDC" and 2.0 < millions(vae) < 3.0
    assert 2.0 < millions(unet) < 3.5
    assert unet.config.num_class_embeds == len(CLASS_NAMES) + 1
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 1, 64, 96)).latent
        assert latents.shape == (1, 4, 8, 12)  # 8x downsampling, 4 channels
        velocity = unet(latents, torch.tensor([500.0]), class_labels=torch.tensor([len(CLASS_NAMES)])).sample
        assert velocity.shape == latents.shape
        assert vae.decode(latents).sample.shape == (1, 1, 64, 96)
    kl = make_autoencoder(kl_vae_config())  # the first demo VAE
    assert type(kl).__name__ == "AutoencoderKL" and 4.0 < millions(kl) < 6.5


def test_make_autoencoder_takes_the_class_from_the_config():
    config = demo_vae_config()
    assert type(make_autoencoder({k: v for k, v in config.items() if k != "_class_name"})).__name__ == "AutoencoderDC"
    assert type(make_autoencoder({**kl_vae_config(), "_class_name": "AutoencoderKL", "_diffusers_version": "0.42.1"})).__name__ == "AutoencoderKL"
    with pytest.raises(ValueError, match="'VQModel'; MedShift trains AutoencoderKL or AutoencoderDC"):
        make_autoencoder({**config, "_class_name": "VQModel"})


@pytest.mark.parametrize(
    "make,expected_millions",
    [(lambda: UNet2DModel(**paper_unet_config()), 72.7), (lambda: AutoencoderKL(**sd_vae_config()), 83.7)],
    ids=["paper_unet", "sd_vae"],
)
def test_paper_sized_architectures(make, expected_millions):
    assert millions(make()) == pytest.approx(expected_millions, abs=0.2)


def test_paper_unet_is_class_conditional():
    config = paper_unet_config()
    assert config["num_class_embeds"] == len(CLASS_NAMES) + 1
    assert config["in_channels"] == config["out_channels"] == sd_vae_config()["latent_channels"]


@pytest.fixture(scope="module")
def vae() -> AutoencoderKL:
    return AutoencoderKL(**kl_vae_config())


@pytest.mark.parametrize("tiles", [1, 2, 3, 4])
@pytest.mark.parametrize("overlap", [8, 64, 80, 128])
def test_tiles_cover_the_image_exactly(vae, tiles, overlap):
    for size in range(64, 1700, 8):
        _check_tiling(vae, size, tiles, overlap)


def _check_tiling(vae: AutoencoderKL, size: int, tiles: int, overlap: int) -> None:
    tile_vae(vae, size, tiles, overlap)
    factor = 8
    stride = int(vae.tile_latent_min_size * (1 - vae.tile_overlap_factor))
    blend = int(vae.tile_latent_min_size * vae.tile_overlap_factor)
    assert vae.use_tiling
    assert blend * factor >= overlap  # at least the asked overlap, in whole latent cells
    latent_side = -(-size // factor)
    assert len(range(0, latent_side, stride)) <= tiles  # at most `tiles` tile starts per side ...
    assert stride * tiles >= latent_side  # ... and together they cover the image
    # pixel-space figures are the latent ones times the downsampling factor, as diffusers needs them
    assert int(vae.tile_sample_min_size * (1 - vae.tile_overlap_factor)) == stride * factor
    assert int(vae.tile_sample_min_size * vae.tile_overlap_factor) == blend * factor


def _checker_image() -> torch.Tensor:
    """A 256 px grey test image in [-1, 1]: a bright blob and a checkerboard whose edges cross the tile seams."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    checks = ((xx * 8).floor() + (yy * 8).floor()) % 2
    return (0.8 * torch.exp(-(xx**2 + yy**2) * 3) - 0.4 + 0.2 * checks)[None, None]


def _tiny_trained_kl_vae(image: torch.Tensor, steps: int) -> AutoencoderKL:
    """A tiny 8x-downsampling AutoencoderKL (with its mid-block attention) fitted for `steps` Adam steps on
    random 64 px crops of `image`: weights that reconstruct, in a few seconds."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64,
    )  # fmt: skip
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(steps):
        corners = torch.randint(0, image.shape[-1] - 64 + 1, (4, 2)).tolist()
        batch = torch.cat([image[..., y : y + 64, x : x + 64] for y, x in corners])
        loss = (vae.decode(vae.encode(batch).latent_dist.mean).sample - batch).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vae.eval()


def test_tiled_round_trip_keeps_the_size_and_nearly_the_quality():
    """With trained weights, 2 x 2 blended tiles reconstruct about as well as one pass."""
    image = _checker_image()
    untrained, vae = _tiny_trained_kl_vae(image, steps=0), _tiny_trained_kl_vae(image, steps=40)
    with torch.no_grad():
        untrained_error = (untrained.decode(untrained.encode(image).latent_dist.mean).sample - image).abs().mean()
        whole = vae.decode(vae.encode(image).latent_dist.mean).sample
        tile_vae(vae, 256, tiles_per_side=2, overlap=32)
        latents = vae.encode(image).latent_dist.mean
        tiled = vae.decode(latents).sample
    assert (whole - image).abs().mean() < 0.8 * untrained_error  # the weights did learn to reconstruct
    assert latents.shape == (1, 4, 32, 32)
    assert tiled.shape == image.shape
    assert (tiled - image).abs().mean() < 1.25 * (whole - image).abs().mean()


def _small_unet(layers_per_block: int) -> UNet2DModel:
    """A tiny class-conditional UNet with plain and attention blocks at both ends, random weights."""
    torch.manual_seed(0)
    return UNet2DModel(
        in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=layers_per_block,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=32, norm_num_groups=32, num_class_embeds=len(CLASS_NAMES) + 1,
    ).eval()


@pytest.mark.parametrize("old, new", [(1, 2), (1, 3), (2, 3), (2, 2)])
def test_deepened_unet_computes_the_same_function(old, new):
    unet = _small_unet(old)
    grown = deepen_unet(unet, new).eval()
    assert grown.config.layers_per_block == new and unet.config.layers_per_block == old  # the original untouched
    assert all(len(block.resnets) == new for block in grown.down_blocks)
    assert all(len(block.resnets) == new + 1 for block in grown.up_blocks)
    if new > old:
        assert millions(grown) > millions(unet)
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    timesteps, classes = torch.tensor([50.0, 500.0, 950.0]), torch.tensor([0, 3, len(CLASS_NAMES)])
    with torch.no_grad():
        before = unet(latents, timesteps, class_labels=classes).sample
        after = grown(latents, timesteps, class_labels=classes).sample
    assert before.abs().mean() > 0.05  # a real function, not zeros
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_deepened_unet_learns_in_its_new_layers():
    grown = deepen_unet(_small_unet(1), 2).train()
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    loss = grown(latents, torch.tensor([100.0, 700.0]), class_labels=torch.tensor([1, 2])).sample.pow(2).mean()
    loss.backward()
    new_layer = grown.down_blocks[0].resnets[1]
    assert new_layer.conv2.weight.grad.abs().sum() > 0  # zero weights, but not a dead end
    assert grown.down_blocks[0].attentions[1].to_out[0].weight.grad.abs().sum() > 0


def test_deepen_unet_is_reproducible_and_leaves_the_global_random_state_alone():
    unet = _small_unet(1)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = deepen_unet(unet, 2)
    assert torch.equal(torch.rand(3), expected_draw)
    second = deepen_unet(unet, 2)
    assert all(torch.equal(value, second.state_dict()[name]) for name, value in first.state_dict().items())
    other = deepen_unet(unet, 2, seed=1)
    assert not torch.equal(other.down_blocks[0].resnets[1].conv1.weight, first.down_blocks[0].resnets[1].conv1.weight)


def test_deepen_unet_refuses_to_remove_layers():
    with pytest.raises(ValueError, match="layers_per_block must be at least the UNet's 2, got 1"):
        deepen_unet(_small_unet(2), 1)
