"""MedShiftPipeline: translate grey X-ray images between domains with class-conditional latent flow matching.

One pipeline, three components and an optional fourth:

- `vae` (`AutoencoderDC` or `AutoencoderKL`): images in [-1, 1] <-> latents (times `vae.config.scaling_factor`).
- `unet` (`UNet2DModel` with `num_class_embeds = len(class_names) + 1`): the velocity v(x_t, t, class);
  the last class index is the null class used for classifier-free guidance.
- `scheduler` (`FlowMatchODEScheduler`): fixed-step ODE solver in both time directions (diffusers' contract:
  `set_timesteps`, then one `step` per network evaluation). Each call steps its own copy of it, made from its
  config, so one pipeline serves several threads at once.
- `noise_model` (`ClassNoiseModel`, optional): the noise and finest texture an acquisition of each class carries
  beyond what the VAE reconstructs, added to the decoded images of the target class (`medshift fit-noise`).

Images go in and out through `image_processor` (`medshift.image_processor.MedShiftImageProcessor`, the role
diffusers gives `VaeImageProcessor`): grey [0, 1] conversion with a checked input contract, resizing, output types.

Translation of an image x (MedShift): encode x to the latent x1, integrate the flow ODE backwards from
t = 1 to t = tau along the source class's flow (or the unconditional one when the source is unknown), then
forwards from tau to 1 guided by the target class, and decode. `encode="noise"` replaces the inversion by noising
(z_tau = (1 - (1 - sigma_min) tau) eps + tau x1), which is SDEdit with the same network.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from medshift.flow_matching import guided_velocity
from medshift.image_processor import OUTPUT_TYPES, MedShiftImageProcessor, PipelineImageInput, check_bits_stored
from medshift.model_location import looks_local, missing_pipeline_message
from medshift.noise_model import ClassNoiseModel
from medshift.scheduling_flow_match import FlowMatchODEScheduler, check_solver
from medshift.vae_codec import Autoencoder, decode_grey, downsampling_factor, encode_grey, pad_to_multiple
from xdigiskull.classes import CLASS_NAMES
from xdigiskull.image_io import is_dicom

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# from_pretrained's arguments that say where and how to fetch a Hub repo (they go to snapshot_download)
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
ENCODE_MODES = ("ode", "noise")
# "dicom": derived Secondary Capture datasets of DICOM path inputs (medshift.dicom_output)
PIPELINE_OUTPUT_TYPES = (*OUTPUT_TYPES, "dicom")


def group_generator(generator: torch.Generator | list[torch.Generator] | None, indices: list[int]):
    """The generator(s) of the images at `indices`: one per image when a list was given, else the shared one."""
    return [generator[i] for i in indices] if isinstance(generator, list) else generator


def fetch_pipeline(repo_id: str, hub_kwargs: dict[str, Any]) -> Path:
    """Download a Hub repository's pipeline, safetensors only (diffusers' own download takes every list in
    model_index.json for a component and fails on `class_names` and the scheduler's module); a failure says
    that no local folder has that name either."""
    try:
        return Path(snapshot_download(repo_id, ignore_patterns=[f"*{suffix}" for suffix in PICKLE_SUFFIXES], **hub_kwargs))
    except OSError as error:  # offline, not found, no network: one line, the local reading first, same error type
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message = f"{missing_pipeline_message(repo_id)}, and no Hub repository {repo_id!r} could be fetched: {reason}"
        try:  # callers may catch huggingface_hub's types (RepositoryNotFoundError...): keep them
            response = getattr(error, "response", None)
            same_type = type(error)(message, response=response) if isinstance(error, HfHubHTTPError) else type(error)(message)
        except Exception:
            same_type = OSError(message)
        raise same_type from error


def refuse_pickle_weights(folder: Path, components: dict[str, Any]) -> None:
    """Raise a ValueError for a vae/ or unet/ folder (not replaced by `components`) holding only pickle weights."""
    for component in ("vae", "unet"):
        weights = folder / component
        if not weights.is_dir() or component in components:
            continue
        pickles = sorted(p.name for p in weights.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and not any(p.suffix == ".safetensors" for p in weights.iterdir()):
            raise ValueError(
                f"{weights} holds pickle weights ({', '.join(pickles)}) and no .safetensors file; "
                "MedShift refuses pickle weights (they can execute code when loaded). Convert them "
                "with safetensors, e.g. `model.save_pretrained(folder, safe_serialization=True)`."
            )


class MedShiftPipeline(DiffusionPipeline):
    r"""Translate grey X-ray images into a target domain (e.g. synthetic -> real) keeping the anatomy.

    Args:
        vae: `AutoencoderDC` (the shipped demo VAE) or `AutoencoderKL` with 1 (grey) or 3 (RGB, e.g.
            `stabilityai/sd-vae-ft-mse`: grey is replicated and the output averaged back) input channels.
            Images enter it in [-1, 1].
        unet: class-conditional `UNet2DModel` predicting the flow velocity; `num_class_embeds` must be
            `len(class_names) + 1` (the last index is the null class for classifier-free guidance).
        scheduler: `FlowMatchODEScheduler`; its config holds the default number of steps and solver.
        class_names: names of the UNet's classes, in embedding order (default: the X-DigiSkull classes).
        resolution: side (in pixels) of the images the UNet was trained on. By default images are
            resized so that their longer side equals it, translated, and resized back (see `__call__`).
        default_tau: tau used when `__call__` gets `tau=None`.
        default_guidance_scale: classifier-free guidance weight used when `__call__` gets `guidance_scale=None`.
        default_inversion_guidance_scale: guidance weight of the inversion when `__call__` gets
            `inversion_guidance_scale=None`. 1 (the default) inverts along the flow the model learnt for the
            source class, one network call per step; guidance extrapolates off that flow, so the inverted
            z_tau keeps less of the source. None uses `guidance_scale` for both directions, as pipelines
            saved before this option did (a config without the entry loads with 1; write None into its
            model_index.json to keep the old behaviour).
        noise_model: optional `ClassNoiseModel`: Gaussian noise with each class's measured spectrum and
            intensity-dependent variance, added to the decoded images (`restore_noise` in `__call__`). The
            decoder returns the conditional mean of an image; without it, translations are smoother than
            acquisitions. Pipelines saved without one load with None.

    Example:
        ```py
        >>> from medshift import MedShiftPipeline
        >>> from medshift.model_location import default_model
        >>> pipe = MedShiftPipeline.from_pretrained(default_model())  # $MEDSHIFT_MODEL, else the demo checkpoint
        >>> real = pipe("synthetic.png", target="real_normal", source="synthetic_high", tau=0.45).images[0]
        ```
    """

    model_cpu_offload_seq = "vae->unet"
    _optional_components = ["noise_model"]

    def __init__(
        self,
        vae: Autoencoder,
        unet: UNet2DModel,
        scheduler: FlowMatchODEScheduler,
        class_names: list[str] | tuple[str, ...] = CLASS_NAMES,
        resolution: int = 256,
        default_tau: float = 0.45,
        default_guidance_scale: float = 2.0,
        default_inversion_guidance_scale: float | None = 1.0,
        noise_model: ClassNoiseModel | None = None,
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
        if noise_model is not None and list(noise_model.config.class_names) != class_names:
            raise ValueError(f"noise_model's classes {list(noise_model.config.class_names)} differ from class_names {class_names}")
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, noise_model=noise_model)
        self.image_processor = MedShiftImageProcessor(vae_scale_factor=downsampling_factor(vae))
        self.register_to_config(
            class_names=class_names,
            resolution=int(resolution),
            default_tau=float(default_tau),
            default_guidance_scale=float(default_guidance_scale),
            default_inversion_guidance_scale=None if default_inversion_guidance_scale is None else float(default_inversion_guidance_scale),
        )

    # ------------------------------------------------------------------ properties

    @property
    def null_label(self) -> int:
        """Index of the null (unconditional) class: `len(class_names)`."""
        return len(self.config.class_names)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for the demo and SD VAEs)."""
        return downsampling_factor(self.vae)

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
                "user/medshift-xdigiskull" (`medshift.model_location.default_model()` names the demo checkpoint).
                A folder without model_index.json raises OSError "no MedShift pipeline at PATH (model_index.json
                missing)".
            **kwargs: passed to `DiffusionPipeline.from_pretrained` (e.g. `torch_dtype`, or components to
                replace, `unet=my_unet`); for a Hub id, `revision`, `cache_dir`, `token`, `local_files_only`,
                `force_download` and `proxies` go to `huggingface_hub.snapshot_download`, which fetches the
                repo (safetensors only). `use_safetensors=False` is refused.
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MedShift loads safetensors weights only; use_safetensors=False is not supported")
        kwargs["use_safetensors"] = True
        local = Path(pretrained_model_name_or_path)
        if looks_local(pretrained_model_name_or_path):
            if not (local / "model_index.json").is_file():
                raise OSError(missing_pipeline_message(local))
            refuse_pickle_weights(local, kwargs)
        else:
            local = fetch_pipeline(str(pretrained_model_name_or_path), {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs})
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
        """Upload the pipeline (safetensors) and a model card to the Hugging Face Hub in one commit (retried with
        backoff on 429 and 5xx answers).

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
        from medshift.model_card import make_model_card
        from xdigiskull.hub import upload_folder_in_one_commit

        if kwargs.get("safe_serialization") is False:
            raise ValueError("MedShift pushes safetensors weights only")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=False)
            card = model_card if model_card is not None else str(
                make_model_card(self, dataset=dataset, metrics=metrics, repo_id=repo_id)
            )
            Path(tmp, "README.md").write_text(card, encoding="utf-8")
            files = sorted(p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*") if p.is_file())
            commit = upload_folder_in_one_commit(
                tmp,
                files,
                repo_id,
                repo_type="model",
                token=token,
                private=private,
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
        return encode_grey(self.vae, pixels.to(device=self._execution_device, dtype=self.vae.dtype) * 2 - 1)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> grey images (N, 1, H, W) in [0, 1], float32."""
        return ((decode_grey(self.vae, latents) + 1) / 2).clamp(0, 1)

    def velocity(self, x: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """Guided velocity v_u + w (v_c - v_u); conditional and null passes share one batch.

        Args:
            x: latents, (N, C, h, w).
            timestep: the network's timestep (a scalar: `t * num_train_timesteps`, see the scheduler).
            labels: class index per latent; the null index gives the unconditional velocity.
            guidance_scale: w; 1 is plain conditional sampling, 0 unconditional.
        """
        n = x.shape[0]
        x_in = x.to(self.unet.dtype)
        timestep = torch.as_tensor(timestep, dtype=torch.float32, device=x.device)
        if guidance_scale == 1.0 or bool((labels == self.null_label).all()):
            return self.unet(x_in, timestep.expand(n), class_labels=labels).sample.to(x.dtype)
        null = torch.full_like(labels, self.null_label)
        v = self.unet(torch.cat([x_in, x_in]), timestep.expand(2 * n), class_labels=torch.cat([labels, null])).sample
        v_cond, v_uncond = v.to(x.dtype).chunk(2)
        return guided_velocity(v_cond, v_uncond, guidance_scale)

    def guidance_scales(self, guidance_scale: float | None = None, inversion_guidance_scale: float | None = None) -> tuple[float, float]:
        """The (generation, inversion) guidance weights a call with these arguments uses (None: the config's;
        an inversion weight of None in the config follows the generation's)."""
        guidance_scale = self.config.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        if inversion_guidance_scale is None:
            inversion_guidance_scale = self.config.default_inversion_guidance_scale
        return guidance_scale, guidance_scale if inversion_guidance_scale is None else float(inversion_guidance_scale)

    def check_inputs(
        self,
        tau: float | None,
        guidance_scale: float | None,
        num_inference_steps: int | None,
        solver: str | None,
        encode: str,
        output_type: str,
        processing_resolution: int | None,
        inversion_guidance_scale: float | None = None,
        bits_stored: int | None = None,
        restore_noise: bool | None = None,
    ) -> tuple[float, float, float, str, int, bool]:
        """Fill in the defaults (None: the config's) and raise a ValueError naming any argument out of range,
        before any work is done. Returns (tau, guidance_scale, inversion_guidance_scale, solver, processing_resolution,
        restore_noise)."""
        tau = self.config.default_tau if tau is None else float(tau)
        guidance_scale, inversion_guidance_scale = self.guidance_scales(guidance_scale, inversion_guidance_scale)
        solver = self.scheduler.config.solver if solver is None else solver
        processing_resolution = self.config.resolution if processing_resolution is None else int(processing_resolution)
        if not (0.0 < tau <= 1.0):  # also rejects NaN
            raise ValueError(f"tau must lie in (0, 1], got {tau}")
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
        if not math.isfinite(inversion_guidance_scale):
            raise ValueError(f"inversion_guidance_scale must be a finite number, got {inversion_guidance_scale}")
        if num_inference_steps is not None and int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        check_solver(solver)
        if encode not in ENCODE_MODES:
            raise ValueError(f"encode must be one of {', '.join(ENCODE_MODES)}, got {encode!r}")
        if output_type not in PIPELINE_OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(PIPELINE_OUTPUT_TYPES)}, got {output_type!r}")
        if processing_resolution < 8:
            raise ValueError(f"processing_resolution must be at least 8 pixels, got {processing_resolution}")
        check_bits_stored(bits_stored)
        has_noise_model = getattr(self, "noise_model", None) is not None
        if restore_noise and not has_noise_model:
            raise ValueError("restore_noise=True needs a noise_model; this pipeline has none (add one with `medshift fit-noise`)")
        restore_noise = has_noise_model if restore_noise is None else bool(restore_noise)
        return tau, guidance_scale, inversion_guidance_scale, solver, processing_resolution, restore_noise

    def prepare_latents(self, arrays: list[np.ndarray], processing_resolution: int) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Same-size [0, 1] images -> padded latents x1, plus the pixel and latent sizes to crop back to."""
        pixels, crop = self.image_processor.to_model_size(arrays, processing_resolution)
        latents, latent_crop = pad_to_multiple(self.encode_images(pixels).float(), self.latent_multiple)
        return latents, crop, latent_crop

    def decode_to_size(self, latents: torch.Tensor, crop: tuple[int, int], latent_crop: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """Latents -> (N, 1, H, W) images in [0, 1] on the CPU, cropped and resized back to the input `size`."""
        pixels = self.decode_latents(latents[..., : latent_crop[0], : latent_crop[1]])
        return self.image_processor.to_input_size(pixels, crop, size)

    def integrate(
        self, scheduler: FlowMatchODEScheduler, latents: torch.Tensor, labels: torch.Tensor, guidance_scale: float, t_from: float, t_to: float,
        num_inference_steps: int | None, solver: str,
    ) -> torch.Tensor:
        """Solve the guided flow ODE of `labels` from `t_from` to `t_to` (backwards when `t_to < t_from`) with
        `scheduler`, one `step` per network evaluation."""
        scheduler.set_timesteps(num_inference_steps, device=latents.device, t_from=t_from, t_to=t_to, solver=solver)
        for t in self.progress_bar(scheduler.timesteps):
            v = self.velocity(latents, t, labels, guidance_scale)
            latents = scheduler.step(v, t, latents).prev_sample
        return latents

    def translate_latents(
        self, scheduler: FlowMatchODEScheduler, latents: torch.Tensor, source_labels: torch.Tensor, target_labels: torch.Tensor, tau: float,
        guidance_scale: float, inversion_guidance_scale: float, num_inference_steps: int | None, solver: str, encode: str,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """Data latents x1 -> translated latents: z_tau by inversion along the source's flow (`encode="ode"`) or by
        noising (SDEdit), then generation from tau to t = 1 guided by the target class. tau = 1 returns x1."""
        if tau < 1.0 and encode == "ode":
            latents = self.integrate(scheduler, latents, source_labels, inversion_guidance_scale, 1.0, tau, num_inference_steps, solver)
        elif tau < 1.0:
            noise = scheduler.sample_noise(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
            latents = scheduler.add_noise(latents, noise, tau)
        return self.integrate(scheduler, latents, target_labels, guidance_scale, tau, 1.0, num_inference_steps, solver)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Inference runs in eval mode, as diffusers' loaders leave models (outputs then match after a save/load
        round trip); a model lent by a training loop for sample grids gets its mode back."""
        was_training = {module: module.training for module in (self.vae, self.unet)}
        for module in was_training:
            module.eval()
        try:
            yield
        finally:
            for module, training in was_training.items():
                module.train(training)

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
        inversion_guidance_scale: float | None = None,
        bits_stored: int | None = None,
        restore_noise: bool | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Translate `image` into the `target` class: encode, invert to tau along the source class's flow,
        generate back to t = 1 guided by the target class, decode.

        Args:
            image: grey X-ray image(s): PIL images, numpy arrays or torch tensors (one or a batch), image or DICOM
                paths (read like the dataset builder reads them), or a list mixing them; sizes may differ. Float pixels
                must lie in [0, 1] (else refused, naming the range found); integers are read by their dtype's range
                (uint8 by 255; uint16, int16, int32 by 65535) unless `bits_stored` is given (`medshift.image_processor`).
            target: class to translate into (name from `class_names` or its index), or one per image.
            source: class of the input, or one per image; None (unknown) inverts without guidance.
            tau: time in (0, 1] where inversion stops and generation starts: high keeps structure, low adds
                realism (the paper uses 0.6, 0.45, 0.3); 1 returns the VAE reconstruction. Default `config.default_tau`.
            guidance_scale: classifier-free guidance weight of the generation (1: none). Default the config's.
            num_inference_steps: steps over [0, 1]; inversion and generation each take their share,
                `round(num_inference_steps * (1 - tau))` (at least 1). Default: the scheduler's.
            solver: "euler", "midpoint", "heun" or "rk4" (1, 2, 2, 4 network evaluations per step). Default: the scheduler's.
            encode: "ode" (MedShift: deterministic inversion) or "noise" (SDEdit:
                z_tau = (1 - (1 - sigma_min) tau) eps + tau x1, eps from `generator` and the prior the model
                was trained with, `scheduler.sample_noise`: Gaussian, plus the config's `noise_offset` and `coarse_noise`).
            generator: torch generator(s) for `encode="noise"` and for the restored noise (one per image, or one for
                all); None draws from torch's global generator.
            output_type: "pil" (I;16 images for 16-bit inputs, L otherwise), "np" ((N, H, W, 1) float32) or "pt"
                ((N, 1, H, W) float32); a list of arrays/tensors when sizes differ. "dicom" (DICOM paths only): derived
                Secondary Capture datasets referencing their sources (`medshift.dicom_output`).
            return_dict: return an `ImagePipelineOutput` (True) or a tuple `(images,)`.
            processing_resolution: longer side at which the networks work; default `config.resolution` (the
                training resolution), so the model sees anatomy at the scale it learnt (area-averaged down,
                bicubic up, resized back after). Pass the image's own size to work at full resolution.
            inversion_guidance_scale: guidance weight of the inversion (`encode="ode"`). Default the config's
                `default_inversion_guidance_scale` (1: the source class's own flow), or `guidance_scale` when
                that is None.
            bits_stored: bit depth of integer inputs (1 to 16), e.g. 12 for 12-bit detector data stored in
                uint16: they are read by 2**bits_stored - 1 and values above it are refused. Default: the dtype's range.
            restore_noise: add the target class's noise (`noise_model`) to the decoded images, so that they carry the
                noise power and fine texture of acquisitions of that class; the deterministic decoder alone returns
                smoother images. Default: True when the pipeline has a noise model. Refused without one.

        Returns `ImagePipelineOutput(images)`, or `(images,)` when `return_dict=False`. Raises ValueError naming the
        argument for an unknown class, a value out of range, an empty batch, an unreadable input or pixels outside
        the contract. Thread-safe: each call steps its own copy of the scheduler.
        """
        # 1. check the arguments, then read every input as a grey [0, 1] image with one label per image
        tau, guidance_scale, inversion_guidance_scale, solver, processing_resolution, restore_noise = self.check_inputs(
            tau, guidance_scale, num_inference_steps, solver, encode, output_type, processing_resolution, inversion_guidance_scale,
            bits_stored, restore_noise,
        )
        if output_type == "dicom":
            self.check_dicom_paths(image)
        images, groups = self.image_processor.preprocess(image, bits_stored)
        target_labels, source_labels = self._labels(target, "target", len(images)), self._labels(source, "source", len(images))
        # a scheduler of this call's own: its step state is not shared with calls running in other threads
        scheduler = self.scheduler.from_config(self.scheduler.config)
        outputs: dict[int, torch.Tensor] = {}
        with self._eval_mode():
            for size, indices in groups.items():
                # 2. resize to the processing resolution, pad, encode: the data latents x1 (t = 1)
                latents, crop, latent_crop = self.prepare_latents([images[i][0] for i in indices], processing_resolution)
                # 3-4. invert (or noise) to tau along the source's flow, generate back to t = 1 guided by the target
                latents = self.translate_latents(
                    scheduler, latents, source_labels[indices], target_labels[indices], tau, guidance_scale,
                    inversion_guidance_scale, num_inference_steps, solver, encode, group_generator(generator, indices),
                )
                # 5. decode, crop the padding and resize back to the input size; restore the target class's noise
                pixels = self.decode_to_size(latents, crop, latent_crop, size)
                if restore_noise:
                    noise = self.noise_model.sample(pixels, target_labels[indices].tolist(), group_generator(generator, indices))
                    pixels = (pixels + noise).clamp(0, 1)
                outputs.update(zip(indices, pixels))
        # 6. offload hooks, then the output type asked for
        self.maybe_free_model_hooks()
        result_images = self._postprocess(image, tau, target, [outputs[i] for i in range(len(images))], [is16 for _, is16 in images], output_type)
        return ImagePipelineOutput(images=result_images) if return_dict else (result_images,)

    @staticmethod
    def check_dicom_paths(image: PipelineImageInput) -> None:
        """`output_type="dicom"` derives objects from their source files: every input must be a DICOM path."""
        paths = image if isinstance(image, (list, tuple)) else [image]
        if not all(isinstance(p, (str, os.PathLike)) and Path(p).is_file() and is_dicom(p) for p in paths):
            raise ValueError('output_type="dicom" takes DICOM file paths as image (the derived objects reference them)')

    def _postprocess(self, image: PipelineImageInput, tau: float, target: Any, outputs: list[torch.Tensor], is16: list[bool], output_type: str) -> Any:
        """The image processor's outputs, or for "dicom" derived Secondary Capture datasets (`medshift.dicom_output`)
        of the translated DICOM path inputs."""
        if output_type != "dicom":
            return self.image_processor.postprocess(outputs, is16, output_type)
        from medshift.dicom_output import derived_secondary_capture, pipeline_provenance

        model_id, revision = pipeline_provenance(self)
        targets = target if isinstance(target, (list, tuple)) else [target] * len(outputs)
        return [
            derived_secondary_capture(path, output[0].numpy(), model_id=model_id, model_revision=revision, tau=tau, target=str(name))
            for path, output, name in zip(image if isinstance(image, (list, tuple)) else [image], outputs, targets)
        ]
