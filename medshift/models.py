"""Architectures MedShift uses, as plain config dicts.

Each function returns a dict for `diffusers.AutoencoderKL(**cfg)` or `diffusers.UNet2DModel(**cfg)`.
Keeping them as dicts (not subclasses) means every checkpoint is a stock diffusers model that
loads without this package.

Sizes were chosen on a 2-core CPU (fp32, random weights):

- `demo_vae_config`: an `AutoencoderDC` of 2.4M parameters, one grey channel, 4 latent channels, 8x
  downsampling, no attention: the shipped VAE (see `medshift.vae_codec` for why AutoencoderDC).
- `kl_vae_config`: the first demo VAE, an `AutoencoderKL` of 5.3M parameters (4 latent channels, 8x).
- `demo_unet_config`: 2.7M parameters, channels (32, 64, 128), attention only at the coarsest level
  (attention at the 100x100 latent level would dominate the cost for little gain).
- `paper_unet_config`: 72.7M parameters, channels (128, 256, 256, 512), the paper-sized UNet,
  still an order of magnitude smaller than Stable Diffusion 1.5's 860M UNet.
- `sd_vae_config`: the Stable Diffusion VAE architecture (83.7M), e.g. for `stabilityai/sd-vae-ft-mse`.

Every UNet has `num_class_embeds = len(CLASS_NAMES) + 1`: the five X-DigiSkull classes plus the
null class used for classifier-free guidance.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from medshift.vae_codec import AUTOENCODERS, Autoencoder
from xdigiskull.classes import CLASS_NAMES

if TYPE_CHECKING:
    from diffusers import UNet2DModel

# the null (unconditional) class of classifier-free guidance comes after the five X-DigiSkull classes
NULL_LABEL = len(CLASS_NAMES)
NUM_CLASS_EMBEDS = NULL_LABEL + 1
LATENT_CHANNELS = 4


def _up_block_types(down_block_types: tuple[str, ...]) -> tuple[str, ...]:
    """The decoder mirrors the encoder: reversed order, Down -> Up."""
    return tuple(block.replace("Down", "Up") for block in reversed(down_block_types))


def demo_vae_config(in_channels: int = 1) -> dict[str, Any]:
    """Small single-channel `AutoencoderDC` (2.4M parameters, 8x downsampling) trainable on a CPU.

    Four levels of one ResBlock each (32, 64, 128, 128 channels), pixel-unshuffle downsampling and
    pixel-shuffle upsampling with their space-to-channel shortcuts, per-pixel RMS norms and no attention:
    a model trained on random crops then works unchanged on whole 780x780 images, and a 780x780
    encode + decode costs about 1.6 s on 2 CPU cores.

    Args:
        in_channels: image channels (1 for grey X-rays).
    """
    levels = (32, 64, 128, 128)
    return {
        "_class_name": "AutoencoderDC",
        "in_channels": in_channels,
        "latent_channels": LATENT_CHANNELS,
        "encoder_block_types": "ResBlock",
        "decoder_block_types": "ResBlock",
        "encoder_block_out_channels": levels,
        "decoder_block_out_channels": levels,
        "encoder_layers_per_block": (1,) * len(levels),
        "decoder_layers_per_block": (1,) * len(levels),
        "encoder_qkv_multiscales": ((),) * len(levels),
        "decoder_qkv_multiscales": ((),) * len(levels),
        # refined after training by measuring the latent standard deviation; 1.0 is a neutral start
        "scaling_factor": 1.0,
    }


def kl_vae_config(in_channels: int = 1) -> dict[str, Any]:
    """The first demo VAE: a small single-channel AutoencoderKL (5.3M parameters, 8x downsampling).

    Its GroupNorms normalise over the whole image, so one trained on crops shifts intensities on a full
    image (measured: 4 dB PSNR lost on a 768x768 render against the same model run crop by crop).

    Args:
        in_channels: image channels (1 for grey X-rays).
    """
    return _vae_config(in_channels, block_out_channels=(32, 64, 128, 128), scaling_factor=1.0)


def make_autoencoder(config: dict[str, Any]) -> Autoencoder:
    """An AutoencoderKL or AutoencoderDC from a config dict: `_class_name` names the class (as in a saved
    config.json); without it, AutoencoderDC's `encoder_block_out_channels` tells the two apart."""
    name = config.get("_class_name") or ("AutoencoderDC" if "encoder_block_out_channels" in config else "AutoencoderKL")
    classes = {cls.__name__: cls for cls in AUTOENCODERS}
    if name not in classes:
        raise ValueError(f"VAE config names {name!r}; MedShift trains AutoencoderKL or AutoencoderDC")
    return classes[name](**{key: value for key, value in config.items() if not key.startswith("_")})


def sd_vae_config(in_channels: int = 3) -> dict[str, Any]:
    """The Stable Diffusion 1.x VAE architecture (83.7M parameters, 8x downsampling).

    Args:
        in_channels: 3 matches pretrained weights such as `stabilityai/sd-vae-ft-mse` (the pipeline
            replicates grey to RGB and averages back); 1 gives a grey variant to train from scratch.
    """
    return _vae_config(in_channels, block_out_channels=(128, 256, 512, 512), scaling_factor=0.18215)


def _vae_config(in_channels: int, block_out_channels: tuple[int, ...], scaling_factor: float) -> dict[str, Any]:
    """An AutoencoderKL config of four 2x downsampling levels (8x), two ResNet layers each."""
    return {
        "in_channels": in_channels,
        "out_channels": in_channels,
        "latent_channels": LATENT_CHANNELS,
        "block_out_channels": block_out_channels,
        "down_block_types": ("DownEncoderBlock2D",) * len(block_out_channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(block_out_channels),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "sample_size": 256,
        "scaling_factor": scaling_factor,
    }


def demo_unet_config(sample_size: int = 32) -> dict[str, Any]:
    """Small class-conditional UNet (2.7M parameters, 2 downsamplings) for CPU training.

    Args:
        sample_size: latent side used in training (informative only: the UNet is fully convolutional).
    """
    down = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    return {
        "sample_size": sample_size,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "block_out_channels": (32, 64, 128),
        "down_block_types": down,
        "up_block_types": _up_block_types(down),
        "layers_per_block": 1,
        "attention_head_dim": 32,
        "norm_num_groups": 32,
        "num_class_embeds": NUM_CLASS_EMBEDS,
    }


def paper_unet_config(sample_size: int = 96) -> dict[str, Any]:
    """Paper-sized class-conditional UNet (72.7M parameters, 3 downsamplings).

    Args:
        sample_size: latent side used in training (informative only: the UNet is fully convolutional).
    """
    down = ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    return {
        "sample_size": sample_size,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "block_out_channels": (128, 256, 256, 512),
        "down_block_types": down,
        "up_block_types": _up_block_types(down),
        "layers_per_block": 2,
        "attention_head_dim": 64,
        "norm_num_groups": 32,
        "num_class_embeds": NUM_CLASS_EMBEDS,
    }


def _neighbours(value: float, steps: int = 16):
    """`value`, then the floats next to it, alternately above and below."""
    yield value
    up = down = value
    for _ in range(steps):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        yield up
        yield down


def tile_vae(vae, image_size: int, tiles_per_side: int = 2, overlap: int = 80) -> None:
    """Turn on diffusers' tiled VAE encode/decode with tiles that fit `image_size` exactly.

    The SD-VAE's full-size activations (256 channels at 800x800 px) are what sets a paper-sized
    model's peak memory; tiling bounds them by the tile size. diffusers' default tile is the config's
    `sample_size` (256 px), which covers an 800 px image with 5 x 5 overlapping tiles and costs 2.5x
    the compute. Here the image is cut into `tiles_per_side`^2 tiles that overlap (and are blended)
    over `overlap` pixels: 2 x 2 tiles of 480 px for 800 px cover 1.2x the pixels of one pass (the
    decoder measured 1.3x the time of one pass on a 2-core CPU).

    Args:
        vae: a `diffusers.AutoencoderKL`.
        image_size: side, in pixels, of the (padded) images the VAE will see.
        tiles_per_side: tiles along each side.
        overlap: blended overlap between neighbouring tiles, in pixels (rounded up to latent cells).

    Raises:
        ValueError: the tiling cannot be expressed in diffusers' tile parameters.
    """
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    stride = -(-image_size // (tiles_per_side * factor))  # latent cells between tile starts
    # diffusers turns the tile parameters into strides and blend widths with int(), and the float ratio
    # blend / tile can round the wrong way: try the floats next to it, then a latent cell more overlap
    for blend in range(-(-overlap // factor), -(-overlap // factor) + 4):
        tile = stride + blend
        wanted = (stride * factor, stride, blend * factor, blend)
        for fraction in _neighbours(blend / tile):
            derived = (
                int(tile * factor * (1 - fraction)),
                int(tile * (1 - fraction)),
                int(tile * factor * fraction),
                int(tile * fraction),
            )
            if derived == wanted:
                vae.tile_latent_min_size = tile
                vae.tile_sample_min_size = tile * factor
                vae.tile_overlap_factor = fraction
                vae.enable_tiling()
                return
    raise ValueError(f"cannot tile {image_size} px as {tiles_per_side}x{tiles_per_side} tiles with {overlap} px overlap")


def deepen_unet(unet: "UNet2DModel", layers_per_block: int, seed: int = 0) -> "UNet2DModel":
    """A copy of a trained `UNet2DModel` with `layers_per_block` layers in every block, computing exactly
    the same function: the new layers start as identities, so fine-tuning continues from what the UNet
    learnt, with more capacity (net2net-style growth, as in ControlNet's zero-initialised layers).

    A new down-block layer is a ResNet (plus attention, in attention blocks) whose last convolution (and
    attention output projection) is zero, so its output is its input. It goes after the old layers, so its
    skip connection repeats the last old layer's. A new up-block layer goes right after the first one: it
    receives that repeated skip, and its 1x1 shortcut passes the hidden state through and drops the skip;
    every old up-block layer then meets the skip it was trained with.

    Args:
        unet: the trained UNet (diffusers' `UNet2DModel`); it is left unchanged.
        layers_per_block: layers per down block of the new UNet (up blocks get one more, as in diffusers);
            at least the UNet's own.
        seed: seeds the new layers' other (random) weights, so a recipe gives the same UNet each time; the
            global random state is left as it was.

    Raises:
        ValueError: fewer layers than the UNet has.
    """
    import torch
    from diffusers import UNet2DModel

    old = unet.config.layers_per_block
    if not isinstance(old, int) or layers_per_block < old:
        raise ValueError(f"layers_per_block must be at least the UNet's {old}, got {layers_per_block}")
    added = layers_per_block - old
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = UNet2DModel.from_config({**unet.config, "layers_per_block": layers_per_block})
    state = grown.state_dict()
    for name, value in unet.state_dict().items():
        parts = name.split(".")
        # up_blocks.<b>.resnets|attentions.<i>.…: the old layers after the first move `added` places on
        if parts[0] == "up_blocks" and parts[2] in ("resnets", "attentions") and int(parts[3]) > 0:
            parts[3] = str(int(parts[3]) + added)
        state[".".join(parts)] = value.clone()
    grown.load_state_dict(state)

    def make_identity(resnet, attention) -> None:
        torch.nn.init.zeros_(resnet.conv2.weight)
        torch.nn.init.zeros_(resnet.conv2.bias)
        if attention is not None:  # residual attention: a zero output projection adds nothing
            torch.nn.init.zeros_(attention.to_out[0].weight)
            torch.nn.init.zeros_(attention.to_out[0].bias)

    with torch.no_grad():
        for block in grown.down_blocks:
            attentions = getattr(block, "attentions", None)
            for index in range(old, layers_per_block):
                make_identity(block.resnets[index], attentions[index] if attentions is not None else None)
        for block in grown.up_blocks:
            attentions = getattr(block, "attentions", None)
            for index in range(1, 1 + added):
                resnet = block.resnets[index]
                make_identity(resnet, attentions[index] if attentions is not None else None)
                # its input is cat(hidden state, skip); the shortcut keeps the hidden state only
                shortcut = resnet.conv_shortcut.weight
                shortcut.zero_()
                shortcut[:, : shortcut.shape[0], 0, 0] = torch.eye(shortcut.shape[0])
                resnet.conv_shortcut.bias.zero_()
    return grown
