"""DICOM in, DICOM out: a translated image as a derived Secondary Capture object (built by highdicom).

The object is a new instance of a new series of a new study (new UIDs) that references its source instance
(Source Image Sequence) and says how it was derived (ImageType DERIVED\\SECONDARY, a DerivationDescription naming
the model, its revision and tau). Its pixels are 16-bit MONOCHROME2; its pixel spacing is the source's scaled
through the crop to the exposed field and the resize to the output size. Of the source header only the
builder's whitelisted technical attributes (`xdigiskull.deid.TECHNICAL_TAGS`) are carried over: no name,
identifier, date, institution or free text.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from xdigiskull.deid import TECHNICAL_TAGS, technical_values
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import SourceError, read_source

MANUFACTURER = "MedShift"
BIPED_ORIENTATIONS = {"A", "P", "R", "L", "H", "F"}


def pipeline_provenance(pipe: object) -> tuple[str, str]:
    """(model id, revision) of a loaded pipeline: the folder or Hub snapshot it was loaded from, and the Hub commit
    (the snapshot folder's name) or the folder's content hash; ("unsaved", "unsaved") for a pipeline built in memory."""
    from medshift.model_location import folder_revision

    name = str(getattr(pipe, "name_or_path", "") or "")
    folder = Path(name)
    if not name or not folder.is_dir():
        return "unsaved", "unsaved"
    if folder.parent.name == "snapshots":  # a Hub download: models--ORG--NAME/snapshots/<commit>
        return folder.parent.parent.name.removeprefix("models--").replace("--", "/"), folder.name
    return name, folder_revision(folder)


def source_geometry(path: str | os.PathLike) -> tuple[Dataset, int]:
    """The header of a DICOM file (pixels dropped) and the side of the square the translation was cut from
    (the exposed field's centred square of the first frame, as `xdigiskull.prepare.load_prepared` cuts it)."""
    try:
        source = read_source(path, "first")
        if source.dataset is None:
            raise ValueError(f"{path} is not a DICOM file")
        return source.dataset, prepare_frame(source.frames[0], source.dataset, size=None, allow_upscale=True).crop.side
    except SourceError as error:
        raise ValueError(f"{path}: {error.message}") from None


def carried_attributes(ds: Dataset) -> Dataset:
    """The whitelisted technical attributes of `ds` (pixel spacing excluded: it is rescaled), as they are."""
    carried = Dataset()
    for column, keywords in TECHNICAL_TAGS.items():
        if column == "pixel_spacing_mm":
            continue
        for keyword in keywords:
            if keyword in ds and ds[keyword].value not in (None, ""):
                carried[keyword] = ds[keyword]
    return carried


def patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """The source's Patient Orientation when it is a valid two-letter biped pair, else None (unknown)."""
    value = list(ds.get("PatientOrientation") or [])
    if len(value) == 2 and all(v in BIPED_ORIENTATIONS for v in value):
        return value[0], value[1]
    return None


def derived_secondary_capture(
    source: str | os.PathLike, image: np.ndarray, *, model_id: str, model_revision: str, tau: float, target: str | None = None
) -> Dataset:
    """A translated image of a DICOM file as a derived Secondary Capture dataset (see the module docstring).

    Args:
        source: the DICOM file that was translated (first frame).
        image: the translation, HxW floats in [0, 1] (clipped), at the size of the source's crop or any other.
        model_id: folder or Hub id of the MedShift model; model_revision: its commit or content hash.
        tau: the inversion time used.
        target: the class translated into, for the series description.

    Returns:
        A `highdicom.sc.SCImage` (a pydicom Dataset), ready for `save_as(path, enforce_file_format=True)`.

    Raises:
        ValueError: `source` is not a readable DICOM image.
    """
    import highdicom as hd

    from medshift.version import __version__

    ds, crop_side = source_geometry(source)
    image = np.asarray(image, dtype=np.float32)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    spacing = technical_values(ds)["pixel_spacing_mm"]
    scaled = None if spacing is None else (spacing * crop_side / pixels.shape[0], spacing * crop_side / pixels.shape[1])
    orientation = patient_orientation(ds)
    derived = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=16,
        coordinate_system="PATIENT",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model_id[-64:],
        software_versions=f"medshift {__version__}",
        series_description=f"MedShift translation{f' to {target}' if target else ''}"[:64],
        patient_orientation=orientation or ("A", "F"),
        pixel_spacing=scaled,
    )
    if orientation is None:
        derived.PatientOrientation = ""  # type 2C: present and empty when the source does not say
    derived.DerivationDescription = f"MedShift translation by {model_id} at revision {model_revision}, tau {tau:g}"[:1024]
    if "SOPInstanceUID" in ds and "SOPClassUID" in ds:
        reference = Dataset()
        reference.ReferencedSOPClassUID = ds.SOPClassUID
        reference.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        derived.SourceImageSequence = [reference]
    derived.update(carried_attributes(ds))
    return derived
