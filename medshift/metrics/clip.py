"""CLIP image embeddings for CMMD, through transformers' `CLIPVisionModelWithProjection`.

CMMD's reference implementation embeds with OpenAI's CLIP ViT-L/14 at 336 px
(``openai/clip-vit-large-patch14-336``); `clip_vit_l14_336_config` is that model's published
vision configuration, so the architecture can be built without network access. Images are
quantised to uint8, replicated to RGB and passed through CLIP's own preprocessing (bicubic
resize of the shorter side, centre crop, CLIP mean/std); the projected embeddings are returned
as they are (`medshift.metrics.mmd.cmmd` L2-normalises them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from medshift.metrics.backbones import FeatureBackbone
from medshift.metrics.weights import load_into, load_state_dict

try:  # transformers >= 5 names the torchvision-free processor explicitly
    from transformers import CLIPImageProcessorPil as _CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor as _CLIPImageProcessor

CMMD_CLIP_MODEL = "openai/clip-vit-large-patch14-336"


def clip_vit_l14_336_config() -> CLIPVisionConfig:
    """The vision tower of OpenAI CLIP ViT-L/14 at 336 px (24 layers, width 1024, 768-d projection)."""
    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


class CLIPFeatures(FeatureBackbone):
    """Projected CLIP image embeddings (the features CMMD is defined on).

    Args:
        model: a `CLIPVisionModelWithProjection`.
        device: where to run it.
        name: reported with every number computed on these features.
    """

    def __init__(self, model: CLIPVisionModelWithProjection, device: torch.device | str = "cpu", name: str = "clip-vit-l14-336") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.name = name
        size = model.config.image_size
        self.processor = _CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})

    @classmethod
    def from_pretrained(
        cls, source: str = CMMD_CLIP_MODEL, config: CLIPVisionConfig | None = None, device: str = "cpu"
    ) -> "CLIPFeatures":
        """Load CLIP's vision tower.

        Args:
            source: a Hub model id or a local directory in transformers' layout (loaded with
                `CLIPVisionModelWithProjection.from_pretrained`), or a single state-dict file
                (``.safetensors`` / ``.bin`` / ``.pth``) for the architecture `config`.
            config: the architecture a state-dict file is loaded into (default: ViT-L/14-336).
            device: where to run the model.
        """
        path = Path(source)
        if path.is_file():
            model = CLIPVisionModelWithProjection(config or clip_vit_l14_336_config())
            load_into(model, load_state_dict(path), origin=str(path))
        else:
            try:
                model = CLIPVisionModelWithProjection.from_pretrained(source)
            except OSError as error:
                raise ValueError(f"could not load CLIP from {source!r} (offline, or not a CLIP model): {error}") from error
        # a non-default CLIP is named after where it came from, so reports say which one it was
        name = "clip-vit-l14-336" if source == CMMD_CLIP_MODEL else f"clip:{source}"
        return cls(model, device=device, name=name)

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        rgb = [np.repeat(np.rint(image * 255.0).astype(np.uint8)[..., None], 3, axis=2) for image in images]
        pixels = self.processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)
        return self.model(pixel_values=pixels).image_embeds.double().cpu().numpy()
