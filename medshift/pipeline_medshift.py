"""MedShiftPipeline: translate grey X-ray images between domains with class-conditional latent flow matching.

One pipeline, three components:

- `vae` (`AutoencoderKL`): images in [-1, 1] <-> latents (times `vae.config.scaling_factor`).
- `unet` (`UNet2DModel` with `num_class_embeds = len(class_names) + 1`): the velocity v(x_t, t, class);
  the last class index is the null class used for classifier-free guidance.
- `scheduler` (`FlowMatchODEScheduler`): fixed-step ODE solver in both time directions.

Translation of an image x (MedShift): encode x to the latent x1, integrate the flow ODE backwards from
t = 1 to t = tau guided by the source class (or unconditionally when the source is unknown), then forwards
from tau to 1 guided by the target class, and decode. `encode="noise"` replaces the inversion by noising
(z_tau = (1 - (1 - sigma_min) tau) eps + tau x1), which is SDEdit with the same network.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import snapshot_download

from medshift.flow_matching import guided_velocity
from medshift.scheduling_flow_match import FlowMatchODEScheduler
from xdigiskull.classes import CLASS_NAMES

PipelineImageInput = Union[
    PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike, Sequence[Union[PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike]]
]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# from_pretrained's arguments that say where and how to fetch a Hub repo (they go to snapshot_download)
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
DICOM_SUFFIXES = (".dcm", ".dicom")
OUTPUT_TYPES = ("pil", "np", "pt")
ENCODE_MODES = ("ode", "noise")


def _is_dicom(path: Path) -> bool:
    """DICOM by suffix or by the 'DICM' magic at byte 128 (files from PACS often have no suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _load_path(path: Path) -> tuple[np.ndarray, bool]:
    """Read a DICOM (builder's reader and field crop, first frame) or an image file as grey float in [0, 1]."""
    if not path.is_file():
        raise ValueError(f"input image {str(path)!r} does not exist or is not a file")
    if _is_dicom(path):
        from xdigiskull.prepare import load_prepared  # the builder's reader: display conversion + field crop

        frames = load_prepared(path, size=None, frames="first")
        if len(frames) == 0:
            raise ValueError(f"DICOM file {str(path)!r} has no frames")
        return np.asarray(frames[0], dtype=np.float32), True
    try:
        with PIL.Image.open(path) as img:
            img.load()
            return _pil_to_array(img)
    except PIL.UnidentifiedImageError as err:
        raise ValueError(f"cannot read {str(path)!r} as an image or DICOM file") from err


def _pil_to_array(img: PIL.Image.Image) -> tuple[np.ndarray, bool]:
    """PIL image -> (grey float32 HxW in [0, 1], is_16_bit)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / 65535.0, True
    if img.mode == "I":  # 32-bit integer container, as PIL opens most 16-bit PNGs
        return np.asarray(img, dtype=np.float32) / 65535.0, True
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32), False
    if img.mode != "L":
        img = img.convert("L")  # RGB, RGBA, P, 1: luminance
    return np.asarray(img, dtype=np.float32) / 255.0, False


def _numpy_to_arrays(array: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """numpy HxW, HxWxC (C in 1, 3, 4), NxHxW or NxHxWxC -> grey float images."""
    if array.dtype == np.uint8:
        scaled, is16 = array.astype(np.float32) / 255.0, False
    elif array.dtype == np.uint16:
        scaled, is16 = array.astype(np.float32) / 65535.0, True
    elif np.issubdtype(array.dtype, np.floating):
        scaled, is16 = array.astype(np.float32), False
    else:
        raise ValueError(f"numpy images must be uint8, uint16 or float (values in [0, 1]), got dtype {array.dtype}")
    if scaled.ndim == 2:
        return [(scaled, is16)]
    if scaled.ndim == 3 and scaled.shape[-1] in (1, 3, 4):
        return [(_grey_channels_last(scaled), is16)]
    if scaled.ndim == 3:
        return [(frame, is16) for frame in scaled]
    if scaled.ndim == 4 and scaled.shape[-1] in (1, 3, 4):
        return [(_grey_channels_last(frame), is16) for frame in scaled]
    raise ValueError(f"cannot interpret a numpy array of shape {array.shape} as grey image(s): use HxW, HxWxC, NxHxW or NxHxWxC")


def _grey_channels_last(image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return image[..., 0]
    return image[..., :3].mean(axis=-1)  # RGB(A) -> grey; alpha ignored


def _tensor_to_arrays(tensor: torch.Tensor) -> list[tuple[np.ndarray, bool]]:
    """torch HxW, CxHxW (C in 1, 3) or NxCxHxW; uint8/int16/uint16 scaled, float taken as [0, 1]."""
    t = tensor.detach().cpu()
    if t.dtype == torch.uint8:
        t, is16 = t.float() / 255.0, False
    elif t.dtype in (torch.int16, torch.uint16, torch.int32):
        t, is16 = t.float() / 65535.0, True
    elif t.is_floating_point():
        t, is16 = t.float(), False
    else:
        raise ValueError(f"torch images must be uint8, 16-bit integer or float (values in [0, 1]), got {t.dtype}")
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(f"cannot interpret a tensor of shape {tuple(tensor.shape)} as grey image(s): use HxW, CxHxW or NxCxHxW with C = 1 or 3")
    grey = t.mean(dim=1)
    return [(frame.numpy(), is16) for frame in grey]


def _to_grey_images(image: PipelineImageInput) -> list[tuple[np.ndarray, bool]]:
    """Every supported input -> list of (grey float32 HxW array, was_16_bit)."""
    if isinstance(image, (list, tuple)):
        items = [item for element in image for item in _to_grey_images(element)]
    elif isinstance(image, (str, os.PathLike)):
        items = [_load_path(Path(image))]
    elif isinstance(image, PIL.Image.Image):
        items = [_pil_to_array(image)]
    elif isinstance(image, np.ndarray):
        items = _numpy_to_arrays(image)
    elif isinstance(image, torch.Tensor):
        items = _tensor_to_arrays(image)
    else:
        raise ValueError(f"unsupported image type {type(image).__name__}: pass PIL images, numpy arrays, torch tensors, file paths or lists of them")
    return items


class MedShiftPipeline(DiffusionPipeline):
    r"""Translate grey X-ray images into a target domain (e.g. synthetic -> real) keeping the anatomy.

    Args:
        vae: `AutoencoderKL` with 1 (grey) or 3 (RGB, e.g. `stabilityai/sd-vae-ft-mse`: grey is replicated
            and the output averaged back) input channels. Images enter it in [-1, 1].
        unet: class-conditional `UNet2DModel` predicting the flow velocity; `num_class_embeds` must be
            `len(class_names) + 1` (the last index is the null class for classifier-free guidance).
        scheduler: `FlowMatchODEScheduler`; its config holds the default number of steps and solver.
        class_names: names of the UNet's classes, in embedding order (default: the X-DigiSkull classes).
        resolution: side (in pixels) of the images the UNet was trained on. By default images are
            resized so that their longer side equals it, translated, and resized back (see `__call__`).
        default_tau: tau used when `__call__` gets `tau=None`.
        default_guidance_scale: classifier-free guidance weight used when `__call__` gets `guidance_scale=None`.

    Example:
        ```py
        >>> from medshift import MedShiftPipeline
        >>> pipe = MedShiftPipeline.from_pretrained("checkpoints/medshift-xdigiskull-demo")
        >>> real = pipe("synthetic.png", target="real_normal", source="synthetic_high", tau=0.45).images[0]
        ```
    """

    model_cpu_offload_seq = "vae->unet"

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DModel,
        scheduler: FlowMatchODEScheduler,
        class_names: list[str] | tuple[str, ...] = CLASS_NAMES,
        resolution: int = 256,
        default_tau: float = 0.45,
        default_guidance_scale: float = 2.0,
    ):
        super().__init__()
        class_names = [str(name) for name in class_names]
        num_class_embeds = unet.config.get("num_class_embeds")
        if num_class_embeds != len(class_names) + 1:
            raise ValueError(
                f"unet.config.num_class_embeds must be len(class_names) + 1 = {len(class_names) + 1} "
                f"(classes plus the null class), got {num_class_embeds}"
            )
        if vae.config.in_channels not in (1, 3):
            raise ValueError(f"vae must take 1 (grey) or 3 (RGB) channels, got {vae.config.in_channels}")
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"unet.config.in_channels ({unet.config.in_channels}) must equal vae.config.latent_channels "
                f"({vae.config.latent_channels})"
            )
        if int(resolution) < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler)
        self.register_to_config(
            class_names=class_names,
            resolution=int(resolution),
            default_tau=float(default_tau),
            default_guidance_scale=float(default_guidance_scale),
        )

    # ------------------------------------------------------------------ properties

    @property
    def null_label(self) -> int:
        """Index of the null (unconditional) class: `len(class_names)`."""
        return len(self.config.class_names)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for the demo and SD VAEs)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_multiple(self) -> int:
        """Latent sides the UNet accepts are multiples of this (2 to the number of its downsamplings)."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ saving and loading

    def save_pretrained(
        self, save_directory: str | os.PathLike, safe_serialization: bool = True, model_card: bool = True, **kwargs: Any
    ) -> None:
        """Save the pipeline (safetensors weights, configs) to `save_directory`.

        Args:
            save_directory: target folder, created if needed.
            safe_serialization: must be True: MedShift checkpoints are safetensors only.
            model_card: write a generated `README.md` model card when the folder has none yet
                (an existing card, e.g. one with evaluation metrics, is kept).
            **kwargs: passed to `DiffusionPipeline.save_pretrained` (e.g. `push_to_hub`, `variant`).
        """
        if not safe_serialization:
            raise ValueError("MedShift saves safetensors weights only (pickle files can execute code when loaded)")
        super().save_pretrained(save_directory, safe_serialization=True, **kwargs)
        card_path = Path(save_directory) / "README.md"
        if model_card and not card_path.exists():
            from medshift.model_card import make_model_card

            make_model_card(self).save(card_path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "MedShiftPipeline":
        """Load a saved pipeline from a local folder or a Hub repo id; safetensors weights only.

        Args:
            pretrained_model_name_or_path: folder written by `save_pretrained`, or a Hub id such as
                "user/medshift-xdigiskull".
            **kwargs: passed to `DiffusionPipeline.from_pretrained` (e.g. `torch_dtype`, or components to
                replace, `unet=my_unet`); for a Hub id, `revision`, `cache_dir`, `token`, `local_files_only`,
                `force_download` and `proxies` go to `huggingface_hub.snapshot_download`, which fetches the
                repo (safetensors only). `use_safetensors=False` is refused.
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MedShift loads safetensors weights only; use_safetensors=False is not supported")
        kwargs["use_safetensors"] = True
        local = Path(pretrained_model_name_or_path)
        if not local.is_dir():
            # diffusers' own download takes every list in model_index.json for a component and fails on a Hub
            # id (`class_names`, the scheduler's module in medshift): fetch the repo first, safetensors only
            hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
            ignore = [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
            local = Path(snapshot_download(str(pretrained_model_name_or_path), ignore_patterns=ignore, **hub_kwargs))
        else:
            for component in ("vae", "unet"):
                folder = local / component
                if not folder.is_dir() or component in kwargs:
                    continue
                pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
                has_safetensors = any(p.suffix == ".safetensors" for p in folder.iterdir())
                if pickles and not has_safetensors:
                    raise ValueError(
                        f"{folder} holds pickle weights ({', '.join(pickles)}) and no .safetensors file; "
                        "MedShift refuses pickle weights (they can execute code when loaded). Convert them "
                        "with safetensors, e.g. `model.save_pretrained(folder, safe_serialization=True)`."
                    )
        return super().from_pretrained(local, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        model_card: str | None = None,
        dataset: str = "x-digiskull",
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> str:
        """Upload the pipeline (safetensors) and a model card to the Hugging Face Hub.

        Args:
            repo_id: target repository, e.g. "user/medshift-xdigiskull"; created if missing.
            commit_message: commit message (default "Upload MedShiftPipeline").
            private: create the repository as private.
            token: Hub token (default: the cached login).
            create_pr: open a pull request instead of committing to main.
            model_card: card text to upload as README.md; None generates one (`medshift.model_card`).
            dataset: dataset id named in the generated card.
            metrics: evaluation figures for the generated card, e.g. {"FID": 95.3}.
            **kwargs: ignored keys of `DiffusionPipeline.push_to_hub` (`safe_serialization` must stay True).

        Returns:
            The URL of the commit (or pull request).
        """
        from huggingface_hub import HfApi

        from medshift.model_card import make_model_card

        if kwargs.get("safe_serialization") is False:
            raise ValueError("MedShift pushes safetensors weights only")
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=False)
            card = model_card if model_card is not None else str(
                make_model_card(self, dataset=dataset, metrics=metrics, repo_id=repo_url.repo_id)
            )
            Path(tmp, "README.md").write_text(card, encoding="utf-8")
            commit = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=tmp,
                commit_message=commit_message or "Upload MedShiftPipeline",
                create_pr=create_pr,
            )
        return str(getattr(commit, "pr_url", None) or getattr(commit, "commit_url", commit))

    # ------------------------------------------------------------------ building blocks

    def _class_index(self, name: str | int, role: str) -> int:
        names = list(self.config.class_names)
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool) and 0 <= int(name) < len(names):
            return int(name)
        if isinstance(name, str) and name in names:
            return names.index(name)
        raise ValueError(f"unknown {role} class {name!r}; valid classes: {', '.join(names)}")

    def _labels(self, value: str | int | Sequence[str | int] | None, role: str, batch_size: int) -> torch.Tensor:
        """One class index per image; None is the null class (unknown source)."""
        if value is None:
            indices = [self.null_label] * batch_size
        elif isinstance(value, (list, tuple)):
            if len(value) != batch_size:
                raise ValueError(f"{role} has {len(value)} entries for {batch_size} images")
            indices = [self._class_index(v, role) for v in value]
        else:
            indices = [self._class_index(value, role)] * batch_size
        return torch.tensor(indices, dtype=torch.long, device=self._execution_device)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Grey images (N, 1, H, W) in [0, 1] -> scaled latents (the posterior mean, so encoding is deterministic)."""
        x = pixels.to(device=self._execution_device, dtype=self.vae.dtype) * 2 - 1
        if self.vae.config.in_channels == 3:
            x = x.repeat(1, 3, 1, 1)
        latents = self.vae.encode(x).latent_dist.mean
        shift = self.vae.config.get("shift_factor") or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> grey images (N, 1, H, W) in [0, 1], float32."""
        shift = self.vae.config.get("shift_factor") or 0.0
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor + shift
        x = self.vae.decode(z).sample.float()
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        return ((x + 1) / 2).clamp(0, 1)

    def velocity(self, x: torch.Tensor, t: float, labels: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """Guided velocity v_u + w (v_c - v_u) at time t; conditional and null passes share one batch.

        Args:
            x: latents at time t, (N, C, h, w).
            t: time in [0, 1].
            labels: class index per latent; the null index gives the unconditional velocity.
            guidance_scale: w; 1 is plain conditional sampling, 0 unconditional.
        """
        n = x.shape[0]
        x_in = x.to(self.unet.dtype)
        unguided = guidance_scale == 1.0 or bool((labels == self.null_label).all())
        if unguided:
            v = self.unet(x_in, self.scheduler.timestep(t, n, x.device), class_labels=labels).sample
            return v.to(x.dtype)
        null = torch.full_like(labels, self.null_label)
        v = self.unet(
            torch.cat([x_in, x_in]), self.scheduler.timestep(t, 2 * n, x.device), class_labels=torch.cat([labels, null])
        ).sample.to(x.dtype)
        v_cond, v_uncond = v.chunk(2)
        return guided_velocity(v_cond, v_uncond, guidance_scale)

    def _integrate(
        self, latents: torch.Tensor, t_from: float, t_to: float, num_steps: int, labels: torch.Tensor, guidance_scale: float, solver: str
    ) -> torch.Tensor:
        grid = self.scheduler.time_grid(t_from, t_to, num_steps)

        def velocity_fn(x: torch.Tensor, t: float) -> torch.Tensor:
            return self.velocity(x, t, labels, guidance_scale)

        with self.progress_bar(total=num_steps) as progress:
            for t, t_next in zip(grid[:-1], grid[1:]):
                latents = self.scheduler.step(velocity_fn, latents, t, t_next, solver=solver)
                progress.update()
        return latents

    def _processing_size(self, height: int, width: int, processing_resolution: int) -> tuple[int, int]:
        """Size the network sees: longer side = processing_resolution, aspect ratio kept."""
        scale = processing_resolution / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    @staticmethod
    def _pad(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad (N, C, H, W) at the bottom/right to multiples of `m` (reflect where possible); returns the old size."""
        h, w = x.shape[-2:]
        ph, pw = math.ceil(h / m) * m - h, math.ceil(w / m) * m - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (h, w)

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        image: PipelineImageInput,
        target: str | int | Sequence[str | int],
        source: str | int | Sequence[str | int] | None = None,
        tau: float | None = None,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        solver: str | None = None,
        encode: str = "ode",
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        processing_resolution: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Translate `image` into the `target` class.

        Args:
            image: one or more grey X-ray images. Accepted: PIL images (L, I;16, I, F, RGB: converted to
                grey), numpy arrays (uint8, uint16, or float in [0, 1]; HxW, HxWxC, NxHxW or NxHxWxC),
                torch tensors (uint8, 16-bit int, or float in [0, 1]; HxW, CxHxW or NxCxHxW, C = 1 or 3),
                paths to image files or DICOM files (read, converted to display and cropped to the exposed
                field by `xdigiskull.prepare.load_prepared`; first frame), or a list mixing them. Images of
                different sizes may be mixed; each output has its input's size.
            target: class to translate into (name from `class_names` or its index), or one per image.
            source: class of the input, or one per image; None (unknown) inverts with the null class,
                i.e. without guidance.
            tau: time in (0, 1] at which the inversion stops and generation starts. High tau keeps more
                structure, low tau gives more realism (the paper uses 0.6, 0.45, 0.3). tau = 1 returns the
                VAE reconstruction. None uses `config.default_tau`.
            guidance_scale: classifier-free guidance weight w for both directions (1: no guidance).
                None uses `config.default_guidance_scale`.
            num_inference_steps: steps for integrating over the whole interval [0, 1]; the inversion and the
                generation each take `round(num_inference_steps * (1 - tau))` steps (at least 1), as
                diffusers' img2img pipelines scale their steps by strength. None uses the scheduler's default.
            solver: "euler", "midpoint", "heun" or "rk4" (network evaluations per step: 1, 2, 2, 4).
                None uses the scheduler's default.
            encode: "ode" (MedShift: deterministic inversion of the flow) or "noise" (SDEdit baseline:
                z_tau = (1 - (1 - sigma_min) tau) eps + tau x1 with Gaussian eps from `generator`).
            generator: torch generator(s) for the noise of `encode="noise"` (the "ode" mode is deterministic).
            output_type: "pil" (list of PIL images: mode I;16 for 16-bit inputs such as DICOM or uint16,
                L otherwise), "np" (float32 in [0, 1], shape (N, H, W, 1), or a list of (H, W, 1) arrays when
                sizes differ) or "pt" (float32 in [0, 1], (N, 1, H, W), or a list when sizes differ).
            return_dict: return an `ImagePipelineOutput` (True) or a tuple `(images,)`.
            processing_resolution: longer side, in pixels, at which the networks process the image. Default
                `config.resolution`, the training resolution: an image of another size (e.g. 780x780 for
                a model trained at 256) is resized to it (area-averaged down, bicubic up), translated, and
                resized back to its own size, so the network always sees anatomy at the scale it was
                trained on and cost does not grow with the input; fine detail above the training
                resolution is therefore not reproduced. Pass the image's own size to process at full
                resolution instead (slower; the model then sees anatomy at an unfamiliar scale).
                Inside, the image is padded (reflect) to a multiple of the VAE's downsampling factor, its
                latents to a multiple of `latent_multiple` for the UNet, and both are cropped back.

        Returns:
            `ImagePipelineOutput` with `images`, or `(images,)` when `return_dict=False`.

        Raises:
            ValueError: unknown target/source class (the message lists the valid ones), tau outside (0, 1],
                num_inference_steps < 1, unknown solver/encode/output_type, an empty batch, an unreadable
                input, or NaN/inf pixel values.
        """
        # ---- check arguments before any work
        tau = self.config.default_tau if tau is None else float(tau)
        if not (0.0 < tau <= 1.0):  # also rejects NaN
            raise ValueError(f"tau must lie in (0, 1], got {tau}")
        guidance_scale = self.config.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
        if num_inference_steps is not None and int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        solver = self.scheduler.config.solver if solver is None else solver
        self.scheduler._check_solver(solver)
        if encode not in ENCODE_MODES:
            raise ValueError(f"encode must be one of {', '.join(ENCODE_MODES)}, got {encode!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        processing_resolution = self.config.resolution if processing_resolution is None else int(processing_resolution)
        if processing_resolution < 8:
            raise ValueError(f"processing_resolution must be at least 8 pixels, got {processing_resolution}")

        images = _to_grey_images(image)
        if not images:
            raise ValueError("image is an empty batch: pass at least one image")
        for i, (array, _) in enumerate(images):
            if array.size == 0:
                raise ValueError(f"image {i} is empty (shape {array.shape})")
            if not np.isfinite(array).all():
                raise ValueError(f"image {i} contains NaN or infinite pixel values")
        target_labels = self._labels(target, "target", len(images))
        source_labels = self._labels(source, "source", len(images))
        steps = self.scheduler.steps_between(1.0, tau, num_inference_steps)

        # inference runs in eval mode, as diffusers' loaders leave models (outputs then match after a
        # save/load round trip); a model lent by a training loop for sample grids gets its mode back
        was_training = {name: module.training for name, module in (("vae", self.vae), ("unet", self.unet))}
        self.vae.eval()
        self.unet.eval()
        try:
            outputs = self._translate_all(
                images, tau, steps, source_labels, target_labels, guidance_scale, solver, encode, generator, processing_resolution
            )
        finally:
            self.vae.train(was_training["vae"])
            self.unet.train(was_training["unet"])

        self.maybe_free_model_hooks()
        result_images = self._format_outputs(outputs, [is16 for _, is16 in images], output_type)
        if not return_dict:
            return (result_images,)
        return ImagePipelineOutput(images=result_images)

    def _translate_all(
        self,
        images: list[tuple[np.ndarray, bool]],
        tau: float,
        steps: int,
        source_labels: torch.Tensor,
        target_labels: torch.Tensor,
        guidance_scale: float,
        solver: str,
        encode: str,
        generator: torch.Generator | list[torch.Generator] | None,
        processing_resolution: int,
    ) -> list[torch.Tensor]:
        """Translate every image; images of equal size share one batch. Returns (1, H, W) tensors in [0, 1]."""
        outputs: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (array, _) in enumerate(images):
            groups.setdefault(array.shape, []).append(i)
        for (height, width), indices in groups.items():
            pixels = torch.from_numpy(np.stack([np.clip(images[i][0], 0.0, 1.0) for i in indices]))[:, None]
            size = self._processing_size(height, width, processing_resolution)
            if size != (height, width):
                pixels = F.interpolate(pixels, size=size, mode="area" if size[0] < height else "bicubic")
            # the VAE sees the image padded to its own factor only (780 -> 784, not 832): it is the costly part,
            # and the UNet's larger multiple is met by padding the latents instead
            pixels, crop = self._pad(pixels, self.vae_scale_factor)
            latents = self.encode_images(pixels)
            if tau < 1.0:
                group_generator = [generator[i] for i in indices] if isinstance(generator, list) else generator
                latents, latent_crop = self._pad(latents, self.latent_multiple)
                latents = self._translate_latents(
                    latents, tau, steps, source_labels[indices], target_labels[indices], guidance_scale, solver, encode, group_generator
                )[..., : latent_crop[0], : latent_crop[1]]
            result = self.decode_latents(latents)[..., : crop[0], : crop[1]]
            if tuple(result.shape[-2:]) != (height, width):
                result = F.interpolate(result, size=(height, width), mode="bicubic" if height > size[0] else "area")
            result = result.clamp(0, 1).cpu()
            for j, i in enumerate(indices):
                outputs[i] = result[j]
        return outputs

    def _translate_latents(
        self,
        latents: torch.Tensor,
        tau: float,
        steps: int,
        source_labels: torch.Tensor,
        target_labels: torch.Tensor,
        guidance_scale: float,
        solver: str,
        encode: str,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """x1 -> z_tau (inversion or noising) -> translated x1."""
        latents = latents.float()
        if encode == "ode":
            z_tau = self._integrate(latents, 1.0, tau, steps, source_labels, guidance_scale, solver)
        else:
            noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
            z_tau = self.scheduler.add_noise(latents, noise, tau)
        return self._integrate(z_tau, tau, 1.0, steps, target_labels, guidance_scale, solver)

    @staticmethod
    def _format_outputs(
        outputs: list[torch.Tensor], is16: list[bool], output_type: str
    ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
        same_size = len({tuple(o.shape) for o in outputs}) == 1
        if output_type == "pt":
            return torch.stack(outputs) if same_size else list(outputs)
        arrays = [o.permute(1, 2, 0).numpy().astype(np.float32) for o in outputs]  # (H, W, 1)
        if output_type == "np":
            return np.stack(arrays) if same_size else arrays
        pil = []
        for array, sixteen in zip(arrays, is16):
            grey = array[..., 0]
            if sixteen:
                pil.append(PIL.Image.fromarray(np.round(grey * 65535).astype(np.uint16)))
            else:
                pil.append(PIL.Image.fromarray(np.round(grey * 255).astype(np.uint8)))
        return pil
