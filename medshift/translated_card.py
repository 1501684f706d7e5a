"""The dataset card (README.md) of a translated X-DigiSkull, filled from `dataset_card/TRANSLATED.template.md`.

Like the builder's card (`xdigiskull.card`) its YAML header carries ``configs``/``data_files`` and
``dataset_info.features``, so `datasets.load_dataset` reads the provenance columns with their types and
``label`` as a ClassLabel; ``source_datasets`` links the source on the Hub. Nothing time-dependent goes in.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from xdigiskull.card import LICENSE, LICENSE_NAME, features_yaml, size_category, template_path
from xdigiskull.classes import CLASS_NAMES
from xdigiskull.image_io import atomic_write

from medshift.translated_schema import TranslationSettings, translated_features

TEMPLATE_NAME = "TRANSLATED.template.md"
HUB_URL = "https://huggingface.co"


def is_hub_id(name: str) -> bool:
    """Whether a dataset or model name is a Hub id (``ORG/NAME``, not an existing local path)."""
    return not Path(name).exists() and name.count("/") == 1 and all(name.split("/"))


def link(name: str, kind: str) -> str:
    """Markdown link to a Hub repository, or the local name in backticks."""
    if is_hub_id(name):
        prefix = "datasets/" if kind == "dataset" else ""
        return f"[{name}]({HUB_URL}/{prefix}{name})"
    return f"`{Path(name).name}` (a local folder)"


def shard_facts(shards: list[Path]) -> tuple[int, int, int]:
    """(rows, bytes of PNG data, bit depth of the first image) of the written shards."""
    rows, num_bytes, bit_depth = 0, 0, 8
    for number, path in enumerate(shards):
        images = pq.read_table(path, columns=["image"]).column("image").combine_chunks().field("bytes")
        rows += len(images)
        num_bytes += pc.sum(pc.binary_length(images)).as_py() or 0
        if number == 0 and len(images):
            bit_depth = images[0].as_py()[24]  # the PNG's IHDR bit depth
    return rows, num_bytes, bit_depth


def card_yaml(settings: TranslationSettings, num_rows: int, num_bytes: int) -> str:
    """The YAML header (without the ``---`` fences)."""
    header: dict = {
        "license": LICENSE,
        "task_categories": ["image-to-image", "image-classification"],
        "tags": ["medical", "x-ray", "domain-adaptation", "sim-to-real", "medshift", "translated"],
        "pretty_name": pretty_name(settings),
        "size_categories": [size_category(num_rows)],
    }
    if is_hub_id(settings.source_dataset):
        header["source_datasets"] = [settings.source_dataset]
    header["configs"] = [{"config_name": "default", "data_files": [{"split": settings.split, "path": f"data/{settings.split}-*"}]}]
    header["dataset_info"] = {
        "features": features_yaml(translated_features()),
        "splits": [{"name": settings.split, "num_bytes": num_bytes, "num_examples": num_rows}],
        "dataset_size": num_bytes,
    }
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=120).rstrip("\n")


def pretty_name(settings: TranslationSettings) -> str:
    return f"X-DigiSkull {settings.source_class} translated to {settings.target_class}"


def render_translated_card(settings: TranslationSettings, shards: list[Path]) -> str:
    """Fill the translated dataset's card template.

    Args:
        settings: the translation's settings.
        shards: the written shards (rows, sizes and bit depth are read from them).
    """
    from medshift.version import __version__

    num_rows, num_bytes, bit_depth = shard_facts(shards)
    settings_table = {
        "tau": settings.tau,
        "guidance scale": settings.guidance_scale,
        "inversion guidance scale": settings.inversion_guidance_scale,
        "ODE steps over [0, 1]": settings.num_inference_steps,
        "solver": settings.solver,
        "encode": settings.encode,
        "processing resolution": settings.processing_resolution,
        "seed": settings.seed,
        "batch size, rows per shard": f"{settings.batch_size}, {settings.rows_per_shard}",
    }
    values = {
        "yaml_header": card_yaml(settings, num_rows, num_bytes),
        "pretty_name": pretty_name(settings),
        "source_link": link(settings.source_dataset, "dataset"),
        "model_link": link(settings.model_id, "model"),
        "model_revision": settings.model_revision,
        "split": settings.split,
        "source_class": settings.source_class,
        "target_class": settings.target_class,
        "target_label": CLASS_NAMES.index(settings.target_class),
        "num_rows": num_rows,
        "bit_depth": bit_depth,
        "setting_rows": "\n".join(f"| {key} | `{value}` |" for key, value in settings_table.items()),
        "tool": f"medshift {__version__}",
        "usage_id": "ORG/NAME",
        "license_name": LICENSE_NAME,
    }
    return Template(template_path(TEMPLATE_NAME).read_text(encoding="utf-8")).substitute(values)


def write_translated_card(out: Path, settings: TranslationSettings, shards: list[Path]) -> None:
    """Write ``out/README.md`` (to a temporary name, then renamed)."""
    with atomic_write(Path(out) / "README.md") as temporary:
        temporary.write_text(render_translated_card(settings, shards), encoding="utf-8")
