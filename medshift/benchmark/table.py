"""The benchmark's results table and report: one row per method (identity, SDEdit at each strength, MedShift at each
tau, and the oracle), ``medshift evaluate``'s image metrics beside the downstream landmark figures, and the average
rank of the paper's Table 1 (`medshift.metrics.ranking`)."""

from __future__ import annotations

from typing import Any

from medshift.evaluate import column_names

ROW_ORDER = ("identity", "sdedit", "medshift", "oracle")  # the order: identity, SDEdit, MedShift, oracle


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(entry: dict[str, float] | None, digits: int = 2, scale: float = 1.0,
              bounds: tuple[float, float] | None = None) -> str:
    """mean [low, high]; `bounds` clips the interval to a figure's possible range (an SDR lies in 0..100 %)."""
    if entry is None:
        return "–"
    low, high = entry["low"] * scale, entry["high"] * scale
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return f"{entry['mean'] * scale:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def ordered_conditions(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The conditions in table order (methods as ROW_ORDER, taus high to low within one)."""
    conditions = results["conditions"]
    return sorted(conditions, key=lambda c: (ROW_ORDER.index(c["method"]), -(c["tau"] or 0)))


def results_table(results: dict[str, Any]) -> list[str]:
    """The Markdown table: image metrics (when computed), average rank, MRE and SDR (mean [95 % CI] over seeds)
    and the share of the (a)->(d) gap closed."""
    metrics = results.get("image_metrics")
    thresholds = results["sdr_thresholds_mm"]
    if metrics:
        names = column_names(metrics["backbones"])
        image_header = f" {names['fd']} ↓ | Cov. ↑ | {names['mmd']} ↓ | LPIPS ↓ | SSIM ↑ | Avg. rank ↓ |"
    else:
        image_header = ""
    sdr_header = "".join(f" SDR {t:g} mm (%) ↑ |" for t in thresholds)
    lines = [
        f"| Method |{image_header} MRE (mm) ↓ |{sdr_header} Gap closed (%) ↑ |",
        "|---|" + ("---:|" * 6 if metrics else "") + "---:|" + "---:|" * len(thresholds) + "---:|",
    ]
    summary = results["summary"]
    for condition in ordered_conditions(results):
        key = condition["key"]
        stats = summary[key]
        image = ""
        if metrics:
            row = metrics["rows"].get(key)
            if row is None:
                image = " |" * 6
            else:
                image = (f" {_f(row['fd'])} | {_f(row['coverage'])} | {_f(row['mmd'])} | {_f(row['lpips'], 3)} | "
                         f"{_f(row['ssim'], 3)} | {row.get('average_rank') if row.get('average_rank') is not None else '–'} |")
        sdr = "".join(f" {_interval(stats[f'sdr_{t:g}mm'], 1, bounds=(0.0, 100.0))} |" for t in thresholds)
        gap = "" if condition["method"] in ("identity", "oracle") else _interval(stats.get("gap_closed"), 0, 100.0)
        gap = {"identity": "0", "oracle": "100"}.get(condition["method"], gap)
        mre = _interval(stats["mre_mm"], bounds=(0.0, float("inf")))
        lines.append(f"| {condition['label']} |{image} {mre} |{sdr} {gap} |")
    return lines


def render_benchmark_report(results: dict[str, Any]) -> str:
    """``report.md``: the table, what was trained and tested how, and the verdict on (a) against (d)."""
    config, test, recipe = results["config"], results["test"], results["recipe"]
    seeds = config["seeds"]
    floor = results["constant_baseline"]
    verdict = results["identity_vs_oracle"]
    lines = [
        f"# Downstream benchmark: landmark detection on {test['class']} after training on translated "
        f"{config['source']}",
        "",
        *results_table(results),
        "",
        f"- Training: {results['train']['poses']} poses of phantom v2 heads {results['train']['heads']} "
        f"({config['source']} images, their landmarks); the oracle trains on the {config['target']} images of the same "
        f"poses. Test: {test['images']} {test['class']} images of held-out heads {test['heads']} "
        f"({test['visible']} visible landmarks, {test['landmarks']} per image), pixel spacing "
        f"{test['pixel_spacing_mm']:.3f} mm from the build (detector plane).",
        f"- Detector: heatmap network, {recipe['input_size']} px input, {recipe['steps']} steps of batch "
        f"{recipe['batch_size']}, the same recipe and seeds ({', '.join(map(str, seeds))}) for every condition. "
        f"Figures: mean [95 % Student-t interval] over {len(seeds)} seeds. SDR: share of landmarks within the radius "
        "(ISBI 2015).",
        f"- Gap closed: (MRE(a) − MRE) / (MRE(a) − MRE(d)) per seed, then mean [95 % interval]. A constant detector "
        f"(mean training positions) scores MRE {floor['mre_mm']:.2f} mm.",
        f"- (a) against (d): {verdict['note']} (Welch p = {verdict['welch_p']:.2g}).",
    ]
    if config.get("quick"):
        lines.insert(2, "**Quick mode**: toy sizes that show the pipeline runs; its figures say nothing about the methods.\n")
    if results.get("image_metrics"):
        lines.append("- Image metrics as `medshift evaluate` computes them, of the training images of each condition: "
                     f"realism against the {config['target']} images of the training heads, SSIM/LPIPS against the "
                     "source image; average rank = mean of the realism (Fréchet distance) and structure (SSIM) ranks "
                     "over the translated rows (the paper's Table 1 rule). "
                     f"Backbones: {results['image_metrics']['backbones']}.")
    timings = results["timings"]
    lines.append(f"- Time: {timings['total_s'] / 60:.1f} min (datasets {timings['datasets_s']:.0f} s, translations "
                 f"{timings['translations_s']:.0f} s, image metrics {timings['image_metrics_s']:.0f} s, detectors "
                 f"{timings['detectors_s']:.0f} s).")
    return "\n".join(lines) + "\n"
