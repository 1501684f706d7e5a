"""`medshift benchmark`: does translation make synthetic data useful? A landmark-detection benchmark on the phantom.

1. Detector-training heads (phantom v2, `--train-heads`) are rendered and built (`xdigiskull.phantom_benchmark`);
   the test set is the phantom benchmark dataset (`--dataset`, a folder or Hub id built by
   `xdigiskull phantom-benchmark`; without it, one is built here from `--test-heads`).
2. The `--source` (synthetic_low) images of the training heads make the conditions (`conditions.plan_conditions`):
   (a) as they are, (b) MedShift at each tau, (c) SDEdit at each tau with MedShift's network evaluations (as
   ``medshift evaluate --match-evaluations``), (d) the `--target` (real_normal) images of the same poses, the oracle.
   Translations are cached on disk (`conditions.translated_condition`).
3. One detector per condition and training seed, all with one recipe (`detector.DetectorRecipe`); each is tested
   on the `--test-class` images of the held-out heads: mean radial error (mm, the build's pixel spacing) and SDR
   at 2, 2.5, 3 and 4 mm; mean and 95 % t-interval over seeds; the share of the (a)->(d) gap each translation
   closes (`protocol`). A constant detector (the mean training landmark positions) is the floor.
4. The image metrics of ``medshift evaluate`` (Fréchet distance, coverage, MMD, LPIPS, SSIM and the Table 1 ranks)
   of the same translations against the training heads' target images, beside the downstream figures
   (`table.results_table`).

Outputs in `--out`: ``results.json`` and ``report.md``. ``--quick`` is a few-minute run with tiny settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

from medshift.benchmark.conditions import (
    Condition, LandmarkImages, load_landmark_images, plan_conditions, translated_condition,
)
from medshift.benchmark.detector import DetectorRecipe, predict, prepare_image, scale_points, train_detector
from medshift.benchmark.protocol import (
    SDR_THRESHOLDS_MM, differ, gap_share, landmark_figures, radial_errors, seed_interval, welch_p,
)
from medshift.benchmark.table import render_benchmark_report, results_table
from medshift.evaluate import json_safe
from medshift.model_location import default_model
from xdigiskull.command_line import config_command, option
from xdigiskull.image_io import atomic_write
from xdigiskull.phantom_benchmark import (
    DEFAULT_DETECTOR_TRAINING_HEADS, DEFAULT_TEST_HEADS, PhantomBenchmarkConfig, build_phantom_benchmark,
    build_phantom_heads, lineage_training_heads, parse_heads,
)

QUICK = {  # --quick: a few minutes on 2 CPU cores (translations at 256 px, a tiny detector)
    "train_heads": [201, 202], "train_views": 2, "test_heads": [301], "test_views": 2, "phantom_detector": 384,
    "size": 256, "seeds": [0, 1, 2], "input_size": 48, "train_steps": 40, "width": 8, "steps": 6,
    "processing_resolution": 256,
}


def _numbers(value: str | list, cast: type, name: str) -> list:
    if isinstance(value, list):
        return [cast(v) for v in value]
    try:
        return [cast(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: expected comma-separated numbers, got {value!r}") from None


@dataclass
class BenchmarkConfig:
    """Everything one benchmark run needs; `medshift benchmark` has one option per field."""

    model: str | None = field(default=None, metadata=option("Saved MedShiftPipeline folder or Hub id (default: $MEDSHIFT_MODEL, else the demo weights)."))
    out: str = field(default="benchmark", metadata=option("Folder for results.json and report.md."))
    dataset: str | None = field(default=None, metadata=option("Phantom benchmark dataset (folder or Hub id, `xdigiskull phantom-benchmark`) to test on; default: build one from --test-heads in --work."))
    work: str = field(default="benchmark_work", metadata=option("Cache folder: renders, built datasets and translations (reused by later runs)."))
    train_heads: str | list = field(default=DEFAULT_DETECTOR_TRAINING_HEADS, metadata=option("Phantom heads (seeds) the detectors train on, e.g. 201-206."))
    train_views: int = field(default=12, metadata=option("Poses per training head.", min=1))
    test_heads: str | list = field(default=DEFAULT_TEST_HEADS, metadata=option("Held-out heads of the test set built when --dataset is not given."))
    test_views: int = field(default=8, metadata=option("Poses per test head when the test set is built here.", min=1))
    phantom_detector: int = field(default=1024, metadata=option("Flat-detector pixels of the phantom renders.", min=128))
    size: int = field(default=780, metadata=option("Image side of the built datasets (X-DigiSkull's 780).", min=64))
    source: str = field(default="synthetic_low", metadata=option("Class of the synthetic training images."))
    target: str = field(default="real_normal", metadata=option("Class translated into; its images of the same poses are the oracle."))
    test_class: str = field(default="real_normal", metadata=option("Class of the held-out test images (real_low: the harder, low-dose test)."))
    taus: str | list = field(default="0.6,0.45,0.3", metadata=option("Comma-separated taus of MedShift and SDEdit."))
    seeds: str | list = field(default="0,1,2,3,4", metadata=option("Comma-separated training seeds (at least 2; with 3 the synthetic and real conditions did not separate on phantom v2, with 5 they did)."))
    input_size: int = field(default=128, metadata=option("Detector input side (images are area-resized to it).", min=32))
    train_steps: int = field(default=500, metadata=option("Detector optimiser steps (the same for every condition).", min=1))
    batch_size: int = field(default=8, metadata=option("Detector batch size.", min=1))
    width: int = field(default=16, metadata=option("Channels of the detector's first stage.", min=4))
    steps: int | None = field(default=20, metadata=option("num_inference_steps of MedShift (the README's evaluation uses 20; empty: the model's); SDEdit gets matched network evaluations."))
    guidance_scale: float | None = field(default=None, metadata=option("Guidance scale of the translations (default: the model's)."))
    processing_resolution: int | None = field(default=None, metadata=option("Resolution the pipeline translates at (default: the model's)."))
    image_metrics: bool = field(default=True, metadata=option("Also compute medshift evaluate's image metrics of the translations (CFID needs `medshift weights fetch`)."))
    allow_training_heads: bool = field(default=False, metadata=option("Allow test heads that the model's lineage.json trained on (not a fair test)."))
    quick: bool = field(default=False, metadata=option("A run of a few minutes with tiny settings (2 training heads x 2 poses, 1 test head, 64 px detector)."))
    threads: int = field(default=1, metadata=option("torch threads for translations and detectors (1 is the fastest on a busy 2-core machine).", min=1))

    def __post_init__(self) -> None:
        self.model = self.model or default_model()
        if self.quick:
            for name, value in QUICK.items():
                setattr(self, name, value)
        self.train_heads = parse_heads(self.train_heads, "train_heads")
        self.test_heads = parse_heads(self.test_heads, "test_heads")
        self.taus = _numbers(self.taus, float, "taus")
        self.seeds = _numbers(self.seeds, int, "seeds")
        if len(self.seeds) < 2:
            raise ValueError("--seeds: give at least 2 training seeds (a confidence interval needs them)")
        if not self.train_heads:
            raise ValueError("--train-heads: give at least one head")
        for tau in self.taus:
            if not 0.0 < tau < 1.0:
                raise ValueError(f"--taus: every tau must lie in (0, 1), got {tau}")
        clash = sorted(set(self.train_heads) & set(self.test_heads)) if self.dataset is None else []
        if clash:
            raise ValueError(f"--train-heads and --test-heads share heads {clash}")

    def recipe(self) -> DetectorRecipe:
        return DetectorRecipe(input_size=self.input_size, steps=self.train_steps, batch_size=self.batch_size,
                              width=self.width, threads=self.threads)


# ---------------------------------------------------------------------------------------------- data


def _settings_file(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.settings.json"


def training_dataset(config: BenchmarkConfig) -> Path:
    """The detector-training heads, rendered and built once into ``work/train`` (rebuilt when settings change)."""
    work = Path(config.work)
    out = work / "train"
    settings = {"heads": config.train_heads, "views": config.train_views, "detector": config.phantom_detector,
                "size": config.size, "phantom_version": 2}
    if out.is_dir() and _settings_file(out).is_file() and json.loads(_settings_file(out).read_text()) == settings:
        return out
    build_phantom_heads(work / "raw_train", out, config.train_heads, config.train_views, config.phantom_detector,
                        config.size, "1,0,0")
    _settings_file(out).write_text(json.dumps(settings))
    return out


def test_dataset(config: BenchmarkConfig) -> str:
    """`--dataset`, else the phantom benchmark dataset of `--test-heads`, built once into ``work/x-digiskull-phantom``."""
    if config.dataset is not None:
        return config.dataset
    out = Path(config.work) / "x-digiskull-phantom"
    settings = {"heads": config.test_heads, "views": config.test_views, "detector": config.phantom_detector,
                "size": config.size, "phantom_version": 2}
    if out.is_dir() and _settings_file(out).is_file() and json.loads(_settings_file(out).read_text()) == settings:
        return str(out)
    lineage = Path(config.model) / "lineage.json"
    build_phantom_benchmark(PhantomBenchmarkConfig(
        out=str(out), heads=config.test_heads, views=config.test_views, size=config.size, detector=config.phantom_detector,
        lineage=str(lineage) if lineage.is_file() and not config.allow_training_heads else None,
        detector_training_heads=config.train_heads, raw_dir=str(Path(config.work) / "raw_test")))
    _settings_file(out).write_text(json.dumps(settings))
    return str(out)


def heads_of(pair_ids: list[str]) -> list[int]:
    """Phantom heads from pair ids (``p<seed>-<pose>``)."""
    return sorted({int(pair.split("-", 1)[0].lstrip("p")) for pair in pair_ids})


def check_test_heads(config: BenchmarkConfig, test: LandmarkImages) -> list[int]:
    """The test set's heads; refused when the detectors or (without --allow-training-heads) the model trained on one."""
    heads = heads_of(test.pair_ids)
    if set(heads) & set(config.train_heads):
        raise ValueError(f"the test set has detector-training heads {sorted(set(heads) & set(config.train_heads))}")
    lineage = Path(config.model) / "lineage.json"
    model_heads = set(lineage_training_heads(lineage)) if lineage.is_file() else set()
    if set(heads) & model_heads and not config.allow_training_heads:
        raise ValueError(f"the test set has heads {sorted(set(heads) & model_heads)} that {lineage} trained on; "
                         "pass --allow-training-heads to test on them anyway (not a fair test)")
    return heads


# ---------------------------------------------------------------------------------------------- run


def evaluate_config(config: BenchmarkConfig) -> Any:
    """The `medshift evaluate` settings the translations and image metrics reuse."""
    from medshift.evaluate import EvaluateConfig

    return EvaluateConfig(model=config.model, out=config.out, source=config.source, target=config.target,
                          taus=list(config.taus), steps=config.steps, guidance_scale=config.guidance_scale,
                          match_evaluations=True, show_progress=False)


def training_sets(config: BenchmarkConfig, pipe: Any, synthetic: LandmarkImages, real: LandmarkImages,
                  log: Any) -> tuple[dict[str, LandmarkImages], dict[str, dict[str, Any]]]:
    """Every condition's training images (translations made or read from the cache), and how each was made."""
    from medshift.model_location import folder_revision

    revision = folder_revision(config.model) if Path(config.model).is_dir() else str(config.model)
    evaluate_settings = evaluate_config(config)
    sets: dict[str, LandmarkImages] = {}
    made: dict[str, dict[str, Any]] = {}
    for condition in plan_conditions(config.taus):
        start = time.perf_counter()
        if condition.method == "identity":
            sets[condition.key], made[condition.key] = synthetic, {"network_evaluations": 0}
        elif condition.method == "oracle":
            sets[condition.key], made[condition.key] = real, {"network_evaluations": 0}
        else:
            images, info = translated_condition(
                pipe, revision, synthetic, condition.method, condition.tau, config.source, config.target,
                Path(config.work) / "translations", evaluate_settings, config.processing_resolution)
            sets[condition.key] = synthetic.replace_images(images)
            made[condition.key] = {**info, "seconds": round(time.perf_counter() - start, 1)}
            log(f"{condition.label}: {info['translated']} translated, {info['cached']} from the cache "
                f"({made[condition.key]['seconds']} s)")
    return sets, made


def image_metrics(config: BenchmarkConfig, pipe: Any, sets: dict[str, LandmarkImages], real: LandmarkImages,
                  conditions: list[Condition]) -> dict[str, dict[str, Any]]:
    """``medshift evaluate``'s metrics of each condition's training images: realism against the target images of the
    training heads, structure against the source images, paired against the target image of the same pose; ranks
    over the translated conditions as in the paper's Table 1."""
    from medshift.evaluate import build_backbones, score_run
    from medshift.metrics import table1_ranks

    backbones = build_backbones(pipe, evaluate_config(config))
    target_features = backbones.distribution(real.images)
    target_embeddings = target_features if backbones.embedding is backbones.distribution else backbones.embedding(real.images)
    sources = sets["identity"].images
    rows: dict[str, dict[str, Any]] = {}
    for condition in conditions:
        if condition.method == "oracle":
            continue
        rows[condition.key] = score_run(sets[condition.key].images, sources, target_features, target_embeddings,
                                        backbones, list(real.images))
    ranked = [c.key for c in conditions if c.method in ("medshift", "sdedit")]
    if all(rows[key]["fd"] is not None and rows[key]["ssim"] is not None for key in ranked):
        for key, ranks in zip(ranked, table1_ranks([rows[key] for key in ranked])):
            rows[key].update(ranks)
    return {"backbones": backbones.describe(), "rows": rows}


def detector_inputs(data: LandmarkImages, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(prepared images, landmark pixels at the detector's input size)."""
    images = np.stack([prepare_image(image, size) for image in data.images])
    return images, scale_points(data.points, data.images[0].shape[0], size)


def run_detectors(config: BenchmarkConfig, sets: dict[str, LandmarkImages], test: LandmarkImages,
                  conditions: list[Condition], log: Any) -> dict[str, list[dict[str, float]]]:
    """Train and test one detector per condition and seed; {condition key: [figures of each seed]}."""
    recipe = config.recipe()
    test_images, _ = detector_inputs(test, recipe.input_size)
    side = test.images[0].shape[0]
    per_seed: dict[str, list[dict[str, float]]] = {c.key: [] for c in conditions}
    cache = Path(config.work) / "detectors"
    cache.mkdir(parents=True, exist_ok=True)
    for seed in config.seeds:
        for condition in conditions:
            # a detector's figures depend on the recipe, the seed, its training images and the test set only: a
            # later run with more seeds trains only the new ones
            data = sets[condition.key]
            key = hashlib.sha256(json.dumps({
                "recipe": dataclasses.asdict(recipe), "seed": seed, "train": data.image_ids,
                "train_pixels": [float(np.sum(image, dtype=np.float64)) for image in data.images],
                "test": test.image_ids, "test_class": config.test_class}, sort_keys=True).encode()).hexdigest()[:20]
            cached = cache / f"{condition.key}_seed{seed}_{key}.json"
            if cached.is_file():
                per_seed[condition.key].append(json.loads(cached.read_text()))
                continue
            start = time.perf_counter()
            images, points = detector_inputs(sets[condition.key], recipe.input_size)
            model = train_detector(images, points, sets[condition.key].visible, recipe, seed)
            predicted = scale_points(predict(model, test_images, recipe.input_size), recipe.input_size, side)
            errors = radial_errors(predicted, test.points, test.visible, test.spacing_mm)
            per_seed[condition.key].append(landmark_figures(errors))
            cached.write_text(json.dumps(per_seed[condition.key][-1]))
            log(f"seed {seed} {condition.label}: MRE {per_seed[condition.key][-1]['mre_mm']:.2f} mm "
                f"({time.perf_counter() - start:.0f} s)")
    return per_seed


def constant_baseline(train: LandmarkImages, test: LandmarkImages) -> dict[str, float]:
    """The floor: every test image gets the mean training landmark positions (scaled to the test side)."""
    mean = np.nanmean(np.where(train.visible[..., None], train.points, np.nan), axis=0)
    mean = scale_points(mean, train.images[0].shape[0], test.images[0].shape[0])
    predicted = np.broadcast_to(mean, test.points.shape)
    return landmark_figures(radial_errors(predicted, test.points, test.visible, test.spacing_mm))


def summarise(conditions: list[Condition], per_seed: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per condition: each figure's seed interval and the gap share; whether (a) and (d) differ."""
    keys = list(per_seed["identity"][0])
    summary: dict[str, Any] = {}
    identity = [f["mre_mm"] for f in per_seed["identity"]]
    oracle = [f["mre_mm"] for f in per_seed["oracle"]]
    for condition in conditions:
        figures = per_seed[condition.key]
        entry = {key: seed_interval([f[key] for f in figures]) for key in keys}
        if condition.method in ("medshift", "sdedit"):
            shares = [gap_share(a, f["mre_mm"], d) for a, f, d in zip(identity, figures, oracle)]
            entry["gap_closed"] = seed_interval(shares) if all(np.isfinite(shares)) else None
        summary[condition.key] = entry
    a, d = summary["identity"]["mre_mm"], summary["oracle"]["mre_mm"]
    return {"summary": summary, "identity_vs_oracle": {
        "differ": differ(a, d), "welch_p": welch_p(identity, oracle),
        "note": "the (a) and (d) MRE intervals do not overlap" if differ(a, d) else
                "the (a) and (d) MRE intervals overlap: make the task harder (e.g. --test-class real_low)"}}


def run_benchmark(config: BenchmarkConfig, log: Any = print) -> dict[str, Any]:
    """The whole benchmark; returns the content of ``results.json``."""
    from medshift.evaluate import load_pipeline

    import torch

    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    train_path = training_dataset(config)
    test_path = test_dataset(config)
    timings["datasets_s"] = round(time.perf_counter() - started, 1)
    synthetic = load_landmark_images(str(train_path), "train", config.source)
    real = load_landmark_images(str(train_path), "train", config.target, set(synthetic.pair_ids))
    if real.pair_ids != synthetic.pair_ids:
        raise ValueError(f"{train_path}: not every {config.source} pose has a {config.target} image")
    test = load_landmark_images(test_path, "test", config.test_class)
    if np.isnan(test.spacing_mm).any():
        raise ValueError(f"{test_path}: some {config.test_class} rows have no pixel_spacing_mm; radial errors need it")
    test_heads = check_test_heads(config, test)
    log(f"training: {len(synthetic)} poses of heads {config.train_heads}; test: {len(test)} {config.test_class} images "
        f"of heads {test_heads}")
    conditions = plan_conditions(config.taus)
    step = time.perf_counter()
    pipe = load_pipeline(evaluate_config(config))
    sets, made = training_sets(config, pipe, synthetic, real, log)
    timings["translations_s"] = round(time.perf_counter() - step, 1)
    step = time.perf_counter()
    metrics = image_metrics(config, pipe, sets, real, conditions) if config.image_metrics else None
    timings["image_metrics_s"] = round(time.perf_counter() - step, 1)
    del pipe
    step = time.perf_counter()
    per_seed = run_detectors(config, sets, test, conditions, log)
    timings["detectors_s"] = round(time.perf_counter() - step, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    config_record = {key: value for key, value in dataclasses.asdict(config).items()}
    config_record["dataset"] = test_path
    results = {
        "config": config_record,
        "recipe": dataclasses.asdict(config.recipe()),
        "test": {"heads": test_heads, "images": len(test), "class": config.test_class,
                 "landmarks": len(test.names), "visible": int(test.visible.sum()),
                 "pixel_spacing_mm": float(np.median(test.spacing_mm))},
        "train": {"heads": config.train_heads, "poses": len(synthetic)},
        "conditions": [dataclasses.asdict(c) for c in conditions],
        "made": made,
        "per_seed": per_seed,
        "constant_baseline": constant_baseline(real, test),
        "image_metrics": metrics,
        "sdr_thresholds_mm": list(SDR_THRESHOLDS_MM),
        "timings": timings,
        **summarise(conditions, per_seed),
    }
    results["table_markdown"] = "\n".join(results_table(results))
    return results


def write_benchmark(results: dict[str, Any], out: Path) -> None:
    """``results.json`` and ``report.md`` in `out` (each written atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "results.json") as temporary:
        Path(temporary).write_text(json.dumps(json_safe(results), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic_write(out / "report.md") as temporary:
        Path(temporary).write_text(render_benchmark_report(results), encoding="utf-8")


def benchmark_and_write(config: BenchmarkConfig) -> None:
    """`medshift benchmark`: run, write results.json and report.md, print the report."""
    results = run_benchmark(config, log=typer.echo)
    write_benchmark(results, Path(config.out))
    typer.echo(render_benchmark_report(results))
    typer.echo(f"wrote {Path(config.out) / 'report.md'} and results.json in {results['timings']['total_s']:.0f} s")


benchmark = config_command(
    "benchmark", BenchmarkConfig, benchmark_and_write,
    "Train a landmark detector on synthetic, translated and real phantom images and test it on held-out real images.",
)
