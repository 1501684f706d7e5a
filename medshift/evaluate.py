"""`medshift evaluate`: the MedShift paper's Table 1 protocol on X-DigiSkull, a tau sweep, and paired ground truth.

For a source class (e.g. synthetic_low) and a target class (e.g. real_normal) of one dataset split:

1. every source image is translated into the target class by MedShift at each tau (flow inversion
   to tau, then generation), by the SDEdit baseline (same network, noising to tau instead of
   inversion), and by the identity baseline (the source image itself, the paper's unranked
   "Synthetic Images" row);
2. realism: Fréchet distance, coverage/density (k = 5) and MMD of the translations against the
   target-class images of the split, all at the dataset's image size (780 for X-DigiSkull; the
   pipeline translates at its own resolution and resizes back);
3. structure: LPIPS and SSIM of each translation against its own source image;
4. ranks: realism rank by the Fréchet distance, structure rank by SSIM, average of both (the rule
   of the paper's Table 1, see `medshift.metrics.ranking`);
5. paired ground truth (phantom data): SSIM, PSNR and LPIPS of each translation against the
   target-class render of the same pose (`pair_id`): the phantom's noise-free
   ``ground_truth/<pair_id>_<target>.png`` when `--ground-truth` is given, else the dataset's
   ``ground_truth`` column when it has one (`xdigiskull phantom-benchmark`), otherwise the
   target-class image of the same pair_id in the split.

Every metric names the backbone it was computed on. By default the FID Inception-v3 (CFID,
coverage, density) and LPIPS-AlexNet run on the weights ``medshift weights fetch`` cached
(`medshift.metrics.fetch`). Without them the Fréchet distance, coverage and MMD use the evaluated
pipeline's own VAE encoder (``vae-latent-8x8``), and those numbers are *not* FID/CFID and are not
comparable with the paper's. The MMD is CMMD only with ``--clip-model``; otherwise it runs on the
distribution backbone's features and is named for it (e.g. ``MMD [inception-v3-fid]``).

Options beyond the paper's protocol (all off by default):

- ``--phantom-seed N``: evaluate on a phantom head rendered and built on the spot (`medshift.phantom_head`),
  its noise-free renders the paired ground truth; a head the model's ``lineage.json`` trained on is refused;
- ``--reconstruction-ceiling``: the VAE's reconstruction (tau = 1) of the paired references, at the model's
  processing resolution and at full size, the best a translation can score;
- ``--match-evaluations``: SDEdit gets the steps that cost what MedShift's inversion plus generation costs
  (every row records its network evaluations per image);
- ``--goals FILE``: a goal table with PASS/FAIL read from a JSON file (`medshift.goals`,
  ``docs/quality-goals.json`` holds the demo weights' goals).

Outputs in `--out`: ``report.md`` (Table 1 layout with ranks, then the paired table and the goals),
``results.json`` (every number, the configuration and the backbones) and ``tau_sweep.png``.

Every default lives in `EvaluateConfig`, which generates the command's options.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import typer
from tqdm.auto import tqdm

from medshift.goals import check_goals, goal_table, load_goals
from medshift.image_processor import resize_square, to_unit_float
from medshift.model_card import wrap_prose
from medshift.metrics import cmmd, density_and_coverage, frechet_distance_from_features, psnr, ssim, table1_ranks
from medshift.metrics.backbones import FeatureBackbone
from medshift.metrics.coverage import DEFAULT_K
from medshift.metrics.lpips import LPIPS
from medshift.metrics.texture import FlatRegions, high_frequency_share, lowpass, lowpass_similarity, noise_power
from medshift.phantom_head import phantom_dataset
from xdigiskull.command_line import config_command, option
from xdigiskull.image_io import atomic_write

BASELINES = ("identity", "sdedit")
DEFAULT_TAUS = "0.3,0.45,0.6"  # the paper's taus
METHOD_LABELS = {"medshift": "MedShift", "sdedit": "SDEdit", "identity": "Source images (identity)"}
METHOD_TYPES = {"medshift": "FM", "sdedit": "FM, noised", "identity": "None"}


# ---------------------------------------------------------------------------------------------- data


@dataclass
class EvaluationData:
    """Images of one split, as float32 HxW arrays in [0, 1] at the evaluation size `size`."""

    size: int
    source_images: list[np.ndarray]
    source_pair_ids: list[str | None]
    target_images: list[np.ndarray]
    # pair_id -> the target-class image of that pose in the split (lowest frame index)
    target_by_pair: dict[str, np.ndarray] = field(default_factory=dict)
    # pair_id -> the noise-free target-class render of that pose, from a ``ground_truth`` column (the phantom
    # benchmark dataset, `xdigiskull phantom-benchmark`); empty when the dataset has none
    truth_by_pair: dict[str, np.ndarray] = field(default_factory=dict)


def load_evaluation_data(
    dataset: str, split: str, source: str, target: str, image_size: int | None, max_images: int | None = None
) -> EvaluationData:
    """Load the source- and target-class images of one split of an X-DigiSkull-style dataset.

    Args:
        dataset: a local dataset folder or Hub id readable by `datasets.load_dataset`.
        split: the split to evaluate on.
        source: class name of the images to translate.
        target: class name to translate into (its images are the realism reference).
        image_size: side every image is resized to; None: the longer side of the first source image.
        max_images: keep at most this many images of each class (the first ones, in dataset order).
    """
    import datasets

    try:
        ds = datasets.load_dataset(dataset, split=split)
    except Exception as error:  # not found, offline, unknown split: name what was asked for
        raise ValueError(f"could not load split {split!r} of dataset {dataset!r}: {error}") from error
    for column in ("image", "label"):
        if column not in ds.column_names:
            raise ValueError(f"dataset {dataset!r} has no {column!r} column (columns: {', '.join(ds.column_names)})")
    names = list(ds.features["label"].names)
    for role, name in (("source", source), ("target", target)):
        if name not in names:
            raise ValueError(f"{role} class {name!r} is not in dataset {dataset!r}; its classes: {', '.join(names)}")
    labels = ds["label"]
    pair_ids = ds["pair_id"] if "pair_id" in ds.column_names else [None] * len(ds)
    frame_indices = ds["frame_index"] if "frame_index" in ds.column_names else [0] * len(ds)

    def rows_of(name: str) -> list[int]:
        return [i for i, label in enumerate(labels) if label == names.index(name)]

    source_rows, all_target_rows = rows_of(source), rows_of(target)
    if not source_rows:
        raise ValueError(f"split {split!r} of {dataset!r} has no {source!r} images")
    if not all_target_rows:
        raise ValueError(f"split {split!r} of {dataset!r} has no {target!r} images")
    if max_images:
        source_rows = source_rows[:max_images]
    target_rows = all_target_rows[:max_images] if max_images else all_target_rows
    # the paired reference of a pose: its target-class row with the lowest frame index, searched
    # among all target rows (not only the realism reference kept by max_images)
    pair_row: dict[str, int] = {}
    for row in all_target_rows:
        pair = pair_ids[row]
        if pair is not None and (pair not in pair_row or frame_indices[row] < frame_indices[pair_row[pair]]):
            pair_row[pair] = row
    wanted_pairs = {pair_ids[row] for row in source_rows} & set(pair_row)
    if image_size is None:
        image_size = max(to_unit_float(ds[source_rows[0]]["image"]).shape)

    def images_of(rows: list[int]) -> list[np.ndarray]:
        return [resize_square(to_unit_float(row["image"]), image_size) for row in ds.select(rows)] if rows else []

    paired_rows = sorted(pair_row[pair] for pair in wanted_pairs)
    paired_images = dict(zip(paired_rows, images_of(paired_rows)))
    truth_by_pair = {}
    if "ground_truth" in ds.column_names and paired_rows:
        truths = [resize_square(to_unit_float(row["ground_truth"]), image_size) for row in ds.select(paired_rows)]
        truth_by_row = dict(zip(paired_rows, truths))
        truth_by_pair = {pair: truth_by_row[pair_row[pair]] for pair in wanted_pairs}
    return EvaluationData(
        size=image_size,
        source_images=images_of(source_rows),
        source_pair_ids=[pair_ids[row] for row in source_rows],
        target_images=images_of(target_rows),
        target_by_pair={pair: paired_images[pair_row[pair]] for pair in wanted_pairs},
        truth_by_pair=truth_by_pair,
    )


def load_ground_truth(directory: Path, pair_id: str, target: str, image_size: int) -> np.ndarray | None:
    """The phantom's noise-free render ``<directory>/<pair_id>_<target>.png`` (16- or 8-bit grey),
    resized to image_size with INTER_AREA; None when the file does not exist."""
    path = directory / f"{pair_id}_{target}.png"
    if not path.is_file():
        return None
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise ValueError(f"{path} is not a grey PNG")
    return resize_square(to_unit_float(raw), image_size)


# ---------------------------------------------------------------------------------------------- configuration


def _floats(value: str | list) -> list[float]:
    if isinstance(value, list):
        return [float(v) for v in value]
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--taus: expected comma-separated numbers such as 0.3,0.45,0.6, got {value!r}") from None


def _names(value: str | list) -> list[str]:
    return list(value) if isinstance(value, list) else [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class EvaluateConfig:
    """Everything one evaluation needs, with its defaults; `medshift evaluate` has one option per field."""

    model: str = field(metadata=option("Saved MedShiftPipeline folder (or Hub id) to evaluate."))
    out: str = field(metadata=option("Folder for report.md, results.json and tau_sweep.png."))
    dataset: str = field(default="x-digiskull", metadata=option("Dataset folder or Hub id readable by datasets.load_dataset."))
    source: str = field(default="synthetic_low", metadata=option("Class of the images to translate."))
    target: str = field(default="real_normal", metadata=option("Class to translate into; its images are the realism reference."))
    taus: str | list = field(default=DEFAULT_TAUS, metadata=option("Comma-separated tau values for MedShift and SDEdit."))
    baselines: str | list = field(default="identity,sdedit", metadata=option("Comma-separated baselines: identity, sdedit (empty for none)."))
    split: str = field(default="test", metadata=option("Dataset split to evaluate on."))
    seed: int = field(default=0, metadata=option("Seed of the SDEdit noise; results are deterministic for a seed."))
    ground_truth: str | None = field(default=None, metadata=option("Phantom ground_truth/ folder (<pair_id>_<class>.png); default: the target image of the same pair_id."))
    image_size: int | None = field(default=None, metadata=option("Side the metrics run on (default: the dataset's own size, 780 for X-DigiSkull)."))
    max_images: int | None = field(default=None, metadata=option("Use at most this many images per class (quick runs)."))
    batch_size: int = field(default=8, metadata=option("Images per pipeline call."))
    steps: int | None = field(default=None, metadata=option("num_inference_steps for the pipeline (default: the model's)."))
    guidance_scale: float | None = field(default=None, metadata=option("Guidance scale (default: the model's)."))
    inversion_guidance_scale: float | None = field(default=None, metadata=option("Guidance of MedShift's inversion (default: the model's)."))
    phantom_seed: int | None = field(default=None, metadata=option("Render this phantom head (`xdigiskull phantom` seed) and build it into the dataset evaluated (all poses in the test split, its noise-free renders the ground truth) instead of --dataset. Refused when the model's lineage.json lists it as a training head."))
    phantom_views: int = field(default=4, metadata=option("Poses of the --phantom-seed head; more give a steadier CFID (about 10 s each per run on 2 CPU cores).", min=2))
    phantom_version: int = field(default=2, metadata=option("Phantom version of the --phantom-seed head (`xdigiskull phantom --phantom-version`): 2, or 1, the cartoon the shipped weights were trained on."))
    phantom_dir: str | None = field(default=None, metadata=option("Keep the --phantom-seed exports and dataset in this folder (default: a temporary one)."))
    allow_training_seed: bool = field(default=False, metadata=option("Evaluate on a --phantom-seed head a training stage used (not a fair test)."))
    reconstruction_ceiling: bool = field(default=False, metadata=option("Also score the VAE's reconstruction (tau = 1) of the paired references, at the model's processing resolution and at full size: the best any translation can do."))
    match_evaluations: bool = field(default=False, metadata=option("Give SDEdit the steps that spend as many network evaluations as MedShift's inversion plus generation (default: the same --steps)."))
    goals: str | None = field(default=None, metadata=option("JSON goals file (see medshift.goals, e.g. docs/quality-goals.json): a goal table with PASS/FAIL."))
    inception_weights: str | None = field(default=None, metadata=option("FID Inception weights (file or URL); default: the cached ones (medshift weights fetch)."))
    clip_model: str | None = field(default=None, metadata=option("CLIP vision model for CMMD: Hub id (openai/clip-vit-large-patch14-336), folder or weights file."))
    lpips_alexnet: str | None = field(default=None, metadata=option("torchvision AlexNet weights (file or URL) for LPIPS."))
    lpips_weights: str | None = field(default=None, metadata=option("LPIPS v0.1 alex.pth lin weights (file or URL)."))
    cached_backbones: bool = field(default=True, metadata=option("Use the FID Inception and LPIPS weights `medshift weights fetch` cached."))
    device: str = field(default="cpu", metadata=option("torch device, e.g. cpu or cuda."))
    show_progress: bool = field(default=True, metadata=option("Show a progress bar."))

    def __post_init__(self) -> None:
        self.taus, self.baselines = _floats(self.taus), _names(self.baselines)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for tau in self.taus:
            if not 0.0 < tau <= 1.0:
                raise ValueError(f"every tau must lie in (0, 1], got {tau}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
        if self.ground_truth is not None and not Path(self.ground_truth).is_dir():
            raise ValueError(f"--ground-truth {self.ground_truth} is not a directory")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.phantom_version not in (1, 2):
            raise ValueError(f"--phantom-version must be 1 or 2, got {self.phantom_version}")
        if (self.lpips_alexnet is None) != (self.lpips_weights is None):
            raise ValueError("LPIPS needs both --lpips-alexnet (AlexNet trunk) and --lpips-weights (LPIPS lin layers)")
        if self.goals is not None and not Path(self.goals).is_file():
            raise ValueError(f"--goals {self.goals} is not a file")


# ---------------------------------------------------------------------------------------------- backbones


@dataclass
class Backbones:
    """Which networks the metrics run on; their names go into the report."""

    distribution: FeatureBackbone  # Fréchet distance, coverage, density
    embedding: FeatureBackbone  # MMD: CLIP (then it is CMMD), else the distribution backbone
    lpips: LPIPS | None  # None: LPIPS is not computed

    @property
    def is_paper_protocol(self) -> bool:
        """True when FD and CMMD run on the paper's backbones (FID Inception, CLIP ViT-L/14-336)."""
        return self.distribution.name == "inception-v3-fid" and self.embedding.name == "clip-vit-l14-336"

    def describe(self) -> dict[str, str | None]:
        return {
            "fd": self.distribution.name,
            "coverage": self.distribution.name,
            "density": self.distribution.name,
            "mmd": self.embedding.name,
            "lpips": self.lpips.name if self.lpips is not None else None,
        }


def build_backbones(pipe: Any, config: EvaluateConfig) -> Backbones:
    """Weights given explicitly first, then (with `cached_backbones`) those `medshift weights fetch`
    cached; without an Inception the distribution metrics fall back to the pipeline's VAE encoder.
    Without CLIP the MMD runs on the distribution backbone's features (and is named for it)."""
    from medshift.metrics.inception import InceptionFeatures

    distribution: FeatureBackbone | None = None
    if config.inception_weights is not None:
        distribution = InceptionFeatures.from_pretrained(config.inception_weights, device=config.device)
    elif config.cached_backbones:
        distribution = InceptionFeatures.from_cache(device=config.device)
    if distribution is None:
        from medshift.metrics.vae_features import VAELatentFeatures

        distribution = VAELatentFeatures(pipe.vae, resolution=pipe.config.resolution)
    embedding = distribution
    if config.clip_model is not None:
        from medshift.metrics.clip import CLIPFeatures

        embedding = CLIPFeatures.from_pretrained(config.clip_model, device=config.device)
    lpips = None
    if config.lpips_alexnet is not None:
        lpips = LPIPS.from_pretrained(config.lpips_alexnet, config.lpips_weights)
    elif config.cached_backbones:
        lpips = LPIPS.from_cache()
    return Backbones(distribution=distribution, embedding=embedding, lpips=lpips.to(config.device) if lpips else None)


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One row of the table: a method, and its tau (None for identity)."""

    method: str
    tau: float | None

    @property
    def label(self) -> str:
        name = METHOD_LABELS[self.method]
        return name if self.tau is None else f"{name} (τ={self.tau:g})"


def plan_runs(taus: list[float], baselines: list[str]) -> list[Run]:
    """Identity first (unranked reference), then MedShift and SDEdit from high to low tau (Table 1 order)."""
    ordered = sorted(taus, reverse=True)
    runs = [Run("identity", None)] if "identity" in baselines else []
    runs += [Run("medshift", tau) for tau in ordered]
    if "sdedit" in baselines:
        runs += [Run("sdedit", tau) for tau in ordered]
    return runs


def translate_images(
    pipe: Any,
    images: list[np.ndarray],
    run: Run,
    source: str,
    target: str,
    seed: int,
    batch_size: int,
    num_inference_steps: int | None,
    guidance_scale: float | None,
    progress: tqdm | None = None,
    solver: str | None = None,
    processing_resolution: int | None = None,
    inversion_guidance_scale: float | None = None,
) -> list[np.ndarray]:
    """Translate `images` with the pipeline as `run` says; image i always gets the noise of
    generator seed `seed + i`, so results do not depend on the batch size. `solver`,
    `processing_resolution` and `inversion_guidance_scale` are the pipeline's (None: its defaults)."""
    if run.method == "identity":
        if progress is not None:
            progress.update(len(images))
        return [image.copy() for image in images]
    outputs: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        generators = [torch.Generator("cpu").manual_seed(seed + start + i) for i in range(len(batch))]
        result = pipe(
            image=np.stack(batch),
            target=target,
            source=source,
            tau=run.tau,
            guidance_scale=guidance_scale,
            inversion_guidance_scale=inversion_guidance_scale,
            num_inference_steps=num_inference_steps,
            encode="noise" if run.method == "sdedit" else "ode",
            generator=generators,
            output_type="np",
            solver=solver,
            processing_resolution=processing_resolution,
        ).images
        outputs.extend(np.asarray(image, dtype=np.float32).squeeze() for image in result)
        if progress is not None:
            progress.update(len(batch))
    return outputs


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def mean_similarity(images: list[np.ndarray], references: list[np.ndarray]) -> dict[str, float | None]:
    """Mean SSIM and PSNR of each image against its reference (None for no pairs)."""
    return {
        "ssim": _mean([ssim(a, b) for a, b in zip(images, references)]),
        "psnr": _mean([psnr(a, b) for a, b in zip(images, references)]),
    }


def texture_scores(images: list[np.ndarray], references: list[np.ndarray | None], acquisitions: list[np.ndarray | None]) -> dict[str, Any]:
    """How much the images look like acquisitions of their poses (`medshift.metrics.texture`), as ratios to the
    target-class acquisition of the same pose (1 = as an acquisition): the noise power in the regions that are flat in
    the low-passed paired reference, and the high-frequency share of the whole image. None without pairs."""
    noise_ratios, share_ratios = [], []
    for image, reference, acquisition in zip(images, references, acquisitions):
        if reference is None or acquisition is None:
            continue
        regions = FlatRegions.of(lowpass(reference))
        if regions.corners:
            noise_ratios.append(noise_power(image, regions) / max(noise_power(acquisition, regions), 1e-12))
        share_ratios.append(high_frequency_share(image) / max(high_frequency_share(acquisition), 1e-12))
    return {"noise_power_ratio": _mean(noise_ratios), "high_frequency_ratio": _mean(share_ratios), "poses": len(share_ratios)}


def lowpass_fidelity(images: list[np.ndarray], references: list[np.ndarray | None]) -> dict[str, float | None]:
    """Mean SSIM and PSNR against the paired references after the same Gaussian low-pass (sigma 2 pixels)."""
    pairs = [lowpass_similarity(image, reference) for image, reference in zip(images, references) if reference is not None]
    return {"ssim": _mean([a for a, _ in pairs]), "psnr": _mean([b for _, b in pairs])}


def score_run(
    translations: list[np.ndarray],
    sources: list[np.ndarray],
    target_features: np.ndarray,
    target_embeddings: np.ndarray,
    backbones: Backbones,
    references: list[np.ndarray | None],
    k: int = DEFAULT_K,
    acquisitions: list[np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """All metrics of one run. `references[i]` is the paired ground truth of image i (or None); `acquisitions[i]`
    the target-class acquisition of its pose (or None), the yardstick of the texture ratios."""
    scores: dict[str, Any] = {}
    features = backbones.distribution(translations)
    scores["fd"] = frechet_distance_from_features(target_features, features) if len(features) >= 2 else None
    if len(target_features) > k:
        scores.update(density_and_coverage(target_features, features, k=k))
    else:
        scores.update(coverage=None, density=None)
    embeddings = features if backbones.embedding is backbones.distribution else backbones.embedding(translations)
    # CMMD's estimator (RBF sigma 10, x1000, L2-normalised); it is CMMD only on CLIP embeddings
    scores["mmd"] = cmmd(target_embeddings, embeddings)
    # structure: each translation against its own source image
    scores.update(mean_similarity(translations, sources))
    scores["lpips"] = float(backbones.lpips.distance(translations, sources).mean()) if backbones.lpips is not None else None
    # paired ground truth: the real-domain render of the same pose
    paired = [(t, r) for t, r in zip(translations, references) if r is not None]
    scores["paired"] = {
        "count": len(paired),
        **mean_similarity([t for t, _ in paired], [r for _, r in paired]),
        "lpips": float(backbones.lpips.distance(*zip(*paired)).mean()) if paired and backbones.lpips is not None else None,
        "lowpass": lowpass_fidelity(translations, references),
    }
    scores["texture"] = texture_scores(translations, references, acquisitions or [None] * len(translations))
    return scores


def load_pipeline(config: EvaluateConfig) -> Any:
    """The MedShiftPipeline to evaluate, checked to know the source and target classes."""
    from medshift import MedShiftPipeline

    torch.manual_seed(config.seed)
    try:
        pipe = MedShiftPipeline.from_pretrained(config.model).to(config.device)
    except Exception as error:  # missing folder, offline Hub, wrong files: all reported the same way
        raise ValueError(f"could not load a MedShiftPipeline from {config.model!r}: {error}") from error
    pipe.set_progress_bar_config(disable=True)  # one overall bar instead of one per ODE solve
    for role, name in (("source", config.source), ("target", config.target)):
        if name not in pipe.config.class_names:
            raise ValueError(f"{role} class {name!r} is not one of the model's classes: {', '.join(pipe.config.class_names)}")
    return pipe


def paired_references(config: EvaluateConfig, data: EvaluationData) -> tuple[list[np.ndarray | None], str]:
    """The paired ground truth of each source image (None where there is none), and where it came from."""
    if config.ground_truth is not None:
        references = [
            load_ground_truth(Path(config.ground_truth), pair, config.target, data.size) if pair is not None else None
            for pair in data.source_pair_ids
        ]
        return references, f"phantom ground truth {config.ground_truth}/<pair_id>_{config.target}.png"
    if data.truth_by_pair:
        references = [data.truth_by_pair.get(pair) if pair is not None else None for pair in data.source_pair_ids]
        return references, f"the dataset's noise-free ground_truth of the {config.target} row of the same pair_id"
    references = [data.target_by_pair.get(pair) if pair is not None else None for pair in data.source_pair_ids]
    return references, f"{config.target} image of the same pair_id in split {config.split!r}"


def network_calls(pipe: Any, tau: float, steps: int) -> int:
    """UNet calls (solver stages included) that `steps` spend between t = 1 and t = tau, one direction."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # leave the pipeline's own untouched
    scheduler.set_timesteps(steps, t_from=1.0, t_to=tau)
    return len(scheduler.timesteps)


def matched_sdedit_steps(pipe: Any, tau: float, steps: int) -> int:
    """num_inference_steps for SDEdit so that its generation alone costs the network evaluations of
    MedShift's inversion plus generation at `steps`."""
    evaluations = 2 * network_calls(pipe, tau, steps)
    for candidate in range(2 * steps - 2, 2 * steps + 3):
        if network_calls(pipe, tau, candidate) == evaluations:
            return candidate
    raise ValueError(f"no SDEdit step count matches MedShift's {evaluations} network evaluations at tau {tau}")


def run_steps(pipe: Any, run: Run, config: EvaluateConfig) -> tuple[int | None, int]:
    """(num_inference_steps passed to the pipeline, network evaluations per image) of one run."""
    if run.method == "identity":
        return None, 0
    steps = config.steps or pipe.scheduler.config.num_inference_steps
    if run.method == "medshift":
        return config.steps, 2 * network_calls(pipe, run.tau, steps)
    if config.match_evaluations:
        steps = matched_sdedit_steps(pipe, run.tau, steps)
        return steps, network_calls(pipe, run.tau, steps)
    return config.steps, network_calls(pipe, run.tau, steps)


def score_runs(
    pipe: Any, data: EvaluationData, references: list[np.ndarray | None], backbones: Backbones, config: EvaluateConfig
) -> list[dict[str, Any]]:
    """Translate the source images for every run and score each; ranked rows get Table 1 ranks."""
    target_features = backbones.distribution(data.target_images)
    target_embeddings = (
        target_features if backbones.embedding is backbones.distribution else backbones.embedding(data.target_images)
    )
    runs = plan_runs(list(config.taus), list(config.baselines))
    acquisitions = [data.target_by_pair.get(pair) if pair is not None else None for pair in data.source_pair_ids]
    rows: list[dict[str, Any]] = []
    total = len(runs) * len(data.source_images)
    with tqdm(total=total, desc="evaluate", unit="img", disable=not config.show_progress) as bar:
        for run in runs:
            bar.set_postfix_str(run.label)
            steps, evaluations = run_steps(pipe, run, config)
            translations = translate_images(
                pipe, data.source_images, run, config.source, config.target, config.seed, config.batch_size,
                steps, config.guidance_scale, bar, inversion_guidance_scale=config.inversion_guidance_scale,
            )  # fmt: skip
            scores = score_run(translations, data.source_images, target_features, target_embeddings, backbones, references,
                               acquisitions=acquisitions)
            rows.append({
                "method": run.method, "label": run.label, "tau": run.tau, "ranked": run.method != "identity",
                "num_inference_steps": steps, "network_evaluations": evaluations, **scores,
            })  # fmt: skip

    ranked = [row for row in rows if row["ranked"]]
    if ranked and all(row["fd"] is not None and row["ssim"] is not None for row in ranked):
        for row, ranks in zip(ranked, table1_ranks(ranked)):
            row.update(ranks)
    for row in rows:
        for key in ("realism_rank", "structure_rank", "average_rank"):
            row.setdefault(key, None)
    return rows


def reconstruct(pipe: Any, images: list[np.ndarray], target: str, resolution: int, restore_noise: bool = False, seed: int = 0) -> list[np.ndarray]:
    """The VAE's reconstruction of same-size grey images processed at `resolution`: the pipeline at tau = 1
    (encode and decode, no ODE step), as (H, W) arrays; with `restore_noise` plus the target class's noise model."""
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(len(images))]
    out = pipe(np.stack(images), target=target, tau=1.0, processing_resolution=resolution, output_type="np",
               restore_noise=restore_noise, generator=generators).images
    return [image[..., 0] for image in out]


def reconstruction_ceiling(pipe: Any, data: EvaluationData, references: list[np.ndarray | None], config: EvaluateConfig) -> dict[str, Any]:
    """SSIM/PSNR of the VAE's reconstruction of the paired references, at the model's processing resolution
    ("default") and at the evaluation size ("full"); with --ground-truth also those of a target-class
    acquisition of the same pose ("target_acquisition": the noise a real image carries)."""
    pairs = [(pair, reference) for pair, reference in zip(data.source_pair_ids, references) if reference is not None]
    if not pairs:
        raise ValueError("--reconstruction-ceiling needs paired references (--ground-truth, or pair_id columns)")
    truths = [reference for _, reference in pairs]
    ceiling: dict[str, Any] = {}
    for name, resolution in (("default", pipe.config.resolution), ("full", data.size)):
        reconstructions = reconstruct(pipe, truths, config.target, resolution)
        ceiling[name] = {"processing_resolution": resolution, **mean_similarity(reconstructions, truths)}
    acquired = [(data.target_by_pair[pair], truth) for pair, truth in pairs if pair in data.target_by_pair]
    if (config.ground_truth is not None or data.truth_by_pair) and acquired:  # references are noise-free renders
        ceiling["target_acquisition"] = mean_similarity(*map(list, zip(*acquired)))
        # what the VAE (plus the noise model, when the pipeline has one) keeps of an acquisition's texture
        acquisitions, truths = map(list, zip(*acquired))
        restore = getattr(pipe, "noise_model", None) is not None
        reconstructions = reconstruct(pipe, acquisitions, config.target, pipe.config.resolution, restore_noise=restore, seed=config.seed)
        ceiling["acquisition_texture"] = {"noise_model": restore, **texture_scores(reconstructions, truths, acquisitions)}
    return ceiling


def checkpoint_megabytes(model: str | Path) -> float | None:
    """Size of the pipeline's safetensors weights (None for a Hub id): the component folders model_index.json
    names, so a training run's output folder does not count its own checkpoints/ and latent cache."""
    index = Path(model) / "model_index.json"
    if not index.is_file():
        return None
    config = json.loads(index.read_text())
    components = [name for name, value in config.items() if isinstance(value, list) and (Path(model) / name).is_dir()]
    files = [f for name in components for f in (Path(model) / name).rglob("*.safetensors")]
    return sum(f.stat().st_size for f in files) / 1e6 if files else None


def run_evaluation(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate a saved MedShiftPipeline; returns the content of ``results.json`` (see module docstring).
    With `phantom_seed` the dataset is a phantom head rendered and built first (`medshift.phantom_head`)."""
    config.validate()
    if config.phantom_seed is None:
        return evaluate_dataset(config)
    with phantom_dataset(config) as phantom_config:
        results = evaluate_dataset(phantom_config)
    return name_phantom_head(results, config.phantom_seed, config.phantom_views, config.phantom_dir, config.phantom_version)


def name_phantom_head(results: dict[str, Any], seed: int, views: int, folder: str | None, version: int = 2) -> dict[str, Any]:
    """Record the phantom head in the results' config, in place of the (temporary) folder it was built in."""
    where = folder or "a temporary folder"
    results["config"].update(
        phantom_seed=seed, phantom_views=views, phantom_version=version,
        dataset=f"phantom v{version} head {seed} ({views} poses), built in {where}",
        paired_reference=f"the phantom's noise-free {results['config']['target']} render of the same pose",
    )  # fmt: skip
    return results


def evaluate_dataset(config: EvaluateConfig) -> dict[str, Any]:
    """`run_evaluation` on the dataset the config names."""
    goals = load_goals(config.goals) if config.goals else None
    pipe = load_pipeline(config)
    data = load_evaluation_data(config.dataset, config.split, config.source, config.target, config.image_size, config.max_images)
    references, reference_origin = paired_references(config, data)
    backbones = build_backbones(pipe, config)
    rows = score_runs(pipe, data, references, backbones, config)
    guidance_scale, inversion_guidance_scale = pipe.guidance_scales(config.guidance_scale, config.inversion_guidance_scale)
    results = {
        "config": {
            "model": str(config.model),
            "dataset": config.dataset,
            "split": config.split,
            "source": config.source,
            "target": config.target,
            "taus": sorted(config.taus, reverse=True),
            "baselines": list(config.baselines),
            "seed": config.seed,
            "image_size": data.size,
            "max_images": config.max_images,
            "processing_resolution": pipe.config.resolution,
            "num_inference_steps": config.steps or pipe.scheduler.config.num_inference_steps,
            "sdedit_steps": "matched network evaluations" if config.match_evaluations else "the same steps",
            "guidance_scale": guidance_scale,
            "inversion_guidance_scale": inversion_guidance_scale,
            "solver": pipe.scheduler.config.solver,
            "coverage_k": DEFAULT_K,
            "realism_reference": f"all {config.target} images of split {config.split!r}"
            + (f" (first {config.max_images})" if config.max_images else ""),
            "paired_reference": reference_origin,
            "goals": config.goals,
        },
        "backbones": backbones.describe(),
        "paper_protocol_backbones": backbones.is_paper_protocol,
        "counts": {
            "source_images": len(data.source_images),
            "target_images": len(data.target_images),
            "paired": sum(r is not None for r in references),
        },
        "rows": rows,
        "checkpoint_mb": checkpoint_megabytes(config.model),
    }
    if config.reconstruction_ceiling:
        results["reconstruction_ceiling"] = reconstruction_ceiling(pipe, data, references, config)
    if goals is not None:
        results["goals"] = check_goals(results, goals)
        results["all_passed"] = all(check["passed"] for check in results["goals"])
    return results


# ---------------------------------------------------------------------------------------------- outputs


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _rank(value: float | None) -> str:
    return "--" if value is None else f"{value:g}"


def column_names(backbones: dict[str, str | None]) -> dict[str, str]:
    """Table headers that say what was measured: CFID / CMMD only on the paper's backbones."""
    fd = "CFID" if str(backbones["fd"]).startswith("inception") else f"FD [{backbones['fd']}]"
    mmd = "CMMD" if str(backbones["mmd"]).startswith("clip") else f"MMD [{backbones['mmd']}]"
    return {"fd": fd, "mmd": mmd}


def _main_table(results: dict[str, Any]) -> list[str]:
    names, with_lpips = column_names(results["backbones"]), results["backbones"]["lpips"] is not None
    lpips_header = " LPIPS ↓ |" if with_lpips else ""
    lines = [
        f"| Type | Method | {names['fd']} ↓ | Cov. ↑ | {names['mmd']} ↓ | Rank ↓ |{lpips_header} SSIM ↑ | Rank ↓ | Avg. Rank ↓ |",
        "|---|---|" + "---:|" * (8 if with_lpips else 7),
    ]
    for row in results["rows"]:
        lpips = f" {_fmt(row['lpips'])} |" if with_lpips else ""
        lines.append(
            f"| {METHOD_TYPES[row['method']]} | {row['label']} | {_fmt(row['fd'])} | {_fmt(row['coverage'])} | "
            f"{_fmt(row['mmd'])} | {_rank(row['realism_rank'])} |{lpips} {_fmt(row['ssim'])} | "
            f"{_rank(row['structure_rank'])} | {_rank(row['average_rank'])} |"
        )
    return lines


def _texture_cells(paired: dict[str, Any], texture: dict[str, Any] | None) -> str:
    lowpass, texture = paired.get("lowpass") or {}, texture or {}
    return (f" {_fmt(lowpass.get('ssim'), 3)} | {_fmt(lowpass.get('psnr'))} | {_fmt(texture.get('noise_power_ratio'))} |"
            f" {_fmt(texture.get('high_frequency_ratio'))} |")  # fmt: skip


def _paired_table(results: dict[str, Any]) -> list[str]:
    with_lpips = results["backbones"]["lpips"] is not None
    with_evaluations = all("network_evaluations" in row for row in results["rows"])  # not in older results.json
    with_texture = all("texture" in row for row in results["rows"])  # not in older results.json
    lines = [
        "| Method | SSIM ↑ | PSNR ↑ (dB) |" + (" LPIPS ↓ |" if with_lpips else "") + (" Network evaluations |" if with_evaluations else "")
        + (" SSIM, low-passed ↑ | PSNR, low-passed ↑ (dB) | Noise power × | High-frequency share × |" if with_texture else ""),
        "|---|---:|---:|" + ("---:|" if with_lpips else "") + ("---:|" if with_evaluations else "") + ("---:|" * 4 if with_texture else ""),
    ]  # fmt: skip
    for row in results["rows"]:
        paired = row["paired"]
        lpips = f" {_fmt(paired['lpips'], 3)} |" if with_lpips else ""
        evaluations = f" {row['network_evaluations']} |" if with_evaluations else ""
        texture = _texture_cells(paired, row["texture"]) if with_texture else ""
        lines.append(f"| {row['label']} | {_fmt(paired['ssim'], 3)} | {_fmt(paired['psnr'])} |{lpips}{evaluations}{texture}")
    blank = (" |" if with_lpips else "") + (" |" if with_evaluations else "") + (" | | | |" if with_texture else "")
    for name, figures in results.get("reconstruction_ceiling", {}).items():
        if name == "acquisition_texture":
            continue
        what = (f"VAE reconstruction ({name}: {figures['processing_resolution']} px processing)" if "processing_resolution" in figures
                else f"a {results['config']['target']} acquisition of the pose (noise included)")  # fmt: skip
        lines.append(f"| {what} | {_fmt(figures['ssim'], 3)} | {_fmt(figures['psnr'])} |{blank}")
    return lines


def _acquisition_texture_note(results: dict[str, Any]) -> list[str]:
    texture = results.get("reconstruction_ceiling", {}).get("acquisition_texture")
    if not texture:
        return []
    what = "VAE plus noise model" if texture["noise_model"] else "VAE alone (no noise model)"
    return [f"VAE reconstruction of the {results['config']['target']} acquisitions ({what}): noise power "
            f"×{_fmt(texture['noise_power_ratio'])}, high-frequency share ×{_fmt(texture['high_frequency_ratio'])}."]


def _backbone_notes(results: dict[str, Any]) -> list[str]:
    config, backbones = results["config"], results["backbones"]
    lpips_text = (
        f"LPIPS on `{backbones['lpips']}`" if backbones["lpips"] else
        "LPIPS not computed (run `medshift weights fetch`, or pass --lpips-alexnet and --lpips-weights)"
    )  # fmt: skip
    notes = [
        f"- Backbones: Fréchet distance and coverage (k = {config['coverage_k']}) on `{backbones['fd']}` features; "
        f"MMD (Gaussian RBF, σ = 10, ×1000, on L2-normalised features) on `{backbones['mmd']}`; {lpips_text}.",
        f"- Realism reference: {config.get('realism_reference', config['target'] + ' images of the split')}. "
        f"Metrics run on {config['image_size']}×{config['image_size']} images"
        + (f"; the model translates at {config['processing_resolution']} px and its output is resized back."
           if config.get("processing_resolution") not in (None, config["image_size"]) else "."),
    ]  # fmt: skip
    if str(backbones["fd"]).startswith("inception"):
        notes.append(
            "- CFID follows Clean-FID: grey replicated to RGB, uint8, PIL bicubic resize to 299² per channel in "
            "float, (x − 128)/128 into the FID Inception-v3, 2048-d pool features, Fréchet distance in float64."
        )
    if any(str(name).startswith("vae-latent") for name in backbones.values()):
        notes.append(
            "- **Not the paper's backbones**: `vae-latent` features come from the evaluated pipeline's own VAE "
            "encoder. These numbers compare the rows of this table with each other; they are not FID/CFID/CMMD "
            "and cannot be compared with the paper's values."
        )
    if not str(backbones["mmd"]).startswith("clip"):
        notes.append("- No CLIP model was given (`--clip-model`), so the MMD column is not CMMD.")
    return notes


def render_report(results: dict[str, Any]) -> str:
    """``report.md``: the Table 1 layout with ranks, the paired ground-truth table, and what was measured how."""
    config, counts = results["config"], results["counts"]
    structure = "LPIPS, SSIM" if results["backbones"]["lpips"] is not None else "SSIM"
    lines = [
        f"# MedShift evaluation: {config['source']} → {config['target']}",
        "",
        f"Model `{config['model']}` · dataset `{config['dataset']}`, split `{config['split']}` · "
        f"{counts['source_images']} {config['source']} images translated, {counts['target_images']} "
        f"{config['target']} reference images · {config['image_size']}×{config['image_size']} px · "
        f"{config['num_inference_steps']} steps ({config['solver']}), guidance {config['guidance_scale']:g}"
        + (f" (inversion {config['inversion_guidance_scale']:g})" if config.get("inversion_guidance_scale") is not None else "")
        + f" · seed {config['seed']}",
        "",
        "## Realism and structure (Table 1 layout)",
        "",
        *_main_table(results),
        "",
        *_backbone_notes(results),
        f"- Structure ({structure}) compares each translation with its own source image. "
        "Ranks follow the paper's Table 1: realism rank by the Fréchet distance, structure rank by SSIM "
        "(competition ranks on values rounded to two decimals), average rank = mean of the two. "
        "The identity row is the unranked reference, as the paper's \"Synthetic Images\" row.",
        "- SDEdit uses the same network, reaching z_τ by noising the source latent instead of inverting the flow.",
        "",
        "## Paired ground truth",
        "",
        f"Each translation against the {config['target']} render of the same pose ({config['paired_reference']}); "
        f"{counts['paired']} of {counts['source_images']} source images have one.",
        "",
        *_paired_table(results),
        "",
        "Low-passed: both images blurred by a Gaussian of σ = 2 px first, so that noise is not penalised and lost anatomy "
        f"is. Noise power ×: the image's noise power in the regions flat in the low-passed reference, over that of the "
        f"{config['target']} acquisition of the pose; high-frequency share ×: std(Laplacian) / std(image), over the "
        "acquisition's (1 = as an acquisition).",
        *_acquisition_texture_note(results),
        "",
    ]
    if "goals" in results:
        verdict = "all pass" if results["all_passed"] else "not all pass"
        lines += ["## Goals", "", f"From `{config['goals']}`: {verdict}.", "", *goal_table(results["goals"]), ""]
    return wrap_prose("\n".join(lines))


def plot_tau_sweep(results: dict[str, Any], path: Path) -> None:
    """Realism (Fréchet distance, lower is more realistic) against structure (SSIM to the source):
    one curve per method, points labelled by tau, identity as a single marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = column_names(results["backbones"])
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for method, marker, offset in (("medshift", "o", (5, 5)), ("sdedit", "s", (5, -11))):
        points = [r for r in results["rows"] if r["method"] == method and r["fd"] is not None and r["ssim"] is not None]
        if not points:
            continue
        points.sort(key=lambda r: r["tau"])
        ax.plot([p["fd"] for p in points], [p["ssim"] for p in points], marker=marker, label=METHOD_LABELS[method])
        for p in points:
            ax.annotate(f"τ={p['tau']:g}", (p["fd"], p["ssim"]), textcoords="offset points", xytext=offset, fontsize=8)
    for row in results["rows"]:
        if row["method"] == "identity" and row["fd"] is not None:
            ax.scatter([row["fd"]], [row["ssim"]], marker="*", s=140, color="black", label=row["label"], zorder=3)
    ax.set_xlabel(f"{names['fd']} to {results['config']['target']} (lower: more realistic)")
    ax.set_ylabel("SSIM to source (higher: more structure kept)")
    ax.set_title(f"τ sweep: {results['config']['source']} → {results['config']['target']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def json_safe(value: Any) -> Any:
    """`value` with what JSON cannot hold made plain: non-finite floats (PSNR of identical images) as null (the
    reports show ∞), numpy scalars as Python numbers, tuples as lists, keys as strings."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write ``report.md``, ``results.json`` and ``tau_sweep.png`` into `out` (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(results), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic_write(out / "report.md") as tmp:
        Path(tmp).write_text(render_report(results), encoding="utf-8")
    plot_tau_sweep(results, out / "tau_sweep.png")


# ---------------------------------------------------------------------------------------------- command


def evaluate_and_write(config: EvaluateConfig) -> None:
    """`medshift evaluate`: run the evaluation, write its outputs to `config.out` and print the report."""
    results = run_evaluation(config)
    out = Path(config.out)
    write_outputs(results, out)
    typer.echo(render_report(results))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'tau_sweep.png'}")


evaluate = config_command(
    "evaluate",
    EvaluateConfig,
    evaluate_and_write,
    "Evaluate a MedShift model with the paper's Table 1 protocol, a tau sweep and paired ground truth.",
)
