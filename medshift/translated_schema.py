"""What a translated dataset is: the settings of a translation, its rows (the X-DigiSkull columns, then where each
image came from) and its features. Shared by `medshift.dataset_translation`, which writes such a dataset, and
`medshift.translated_card`, which describes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xdigiskull.row import DatasetRow
from xdigiskull.writer import dataset_features

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class TranslationSettings:
    """Everything that decides a translated dataset's bytes (the provenance the card and the columns state).

    Attributes:
        source_dataset: folder or Hub id of the source X-DigiSkull.
        split: split translated (the output has one split of that name).
        source_class, target_class: class names.
        model_id: folder or Hub id of the MedShift pipeline; model_revision: its Hub commit, or
            ``sha256:<digest>`` of a local folder's weights and configs.
        tau, guidance_scale, inversion_guidance_scale, num_inference_steps, solver, encode, processing_resolution:
            the pipeline's call arguments, resolved to the model's defaults.
        seed: row i gets the generator seeded with ``seed + i`` (used by ``encode="noise"``).
        batch_size: images per pipeline call; rows_per_shard: rows per output shard (and unit of resumption).
    """

    source_dataset: str
    split: str
    source_class: str
    target_class: str
    model_id: str
    model_revision: str
    tau: float
    guidance_scale: float
    inversion_guidance_scale: float
    num_inference_steps: int
    solver: str
    encode: str
    processing_resolution: int
    seed: int
    batch_size: int
    rows_per_shard: int


@dataclass(frozen=True, kw_only=True)  # keyword-only: its fields follow DatasetRow's defaulted label columns
class TranslatedRow(DatasetRow):
    """A row of a translated dataset: the X-DigiSkull columns, then where the image came from."""

    source_label: str
    model_id: str
    model_revision: str
    tau: float
    guidance_scale: float
    num_inference_steps: int
    seed: int


# the class columns are the target's; the label columns (landmarks, mask) are not carried over yet
NOT_KEPT = ("image", "label", "domain", "dose", "landmarks", "bone_mask")


# the pipeline arguments that a translation's settings (`TranslationSettings`, `medshift.translate.TranslateConfig`)
# hold under the pipeline's own names
SAMPLING_ARGUMENTS = ("tau", "guidance_scale", "inversion_guidance_scale", "solver", "encode", "processing_resolution")


def sampling_arguments(settings: object) -> dict[str, object]:
    """The `SAMPLING_ARGUMENTS` of `settings`, as keyword arguments of `MedShiftPipeline.__call__`."""
    return {name: getattr(settings, name) for name in SAMPLING_ARGUMENTS}


def translated_features() -> datasets.Features:
    """The X-DigiSkull features followed by the provenance columns."""
    import datasets

    features = dataset_features()
    features.update({
        "source_label": datasets.Value("string"),
        "model_id": datasets.Value("string"),
        "model_revision": datasets.Value("string"),
        "tau": datasets.Value("float32"),
        "guidance_scale": datasets.Value("float32"),
        "num_inference_steps": datasets.Value("int32"),
        "seed": datasets.Value("int32"),
    })
    return features
