"""Write Azurion-like multi-frame X-ray angiography (XA) DICOM files with pydicom.

The headers carry what a real export carries: the technique (kVp, tube current, exposure time, frame time), the
C-arm geometry (positioner angles, distances, imager pixel spacing), rectangular display shutters matching the
dark bands in the pixels, and patient identifiers. The identifiers are planted on purpose (clearly fictitious,
but distinctive) so that the de-identification of downstream tools can be tested: `planted_identifiers(seed)`
lists them. UIDs and dates are derived from the seed, so the same seed writes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    UID,
    ExplicitVRLittleEndian,
    XRayAngiographicImageStorage,
    generate_uid,
)

import xdigiskull
from xdigiskull.image_io import atomic_write

# transfer syntaxes the phantom writes; most files stay uncompressed, as most archives hand them over
TRANSFER_SYNTAXES: tuple[UID, ...] = (ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, JPEG2000Lossless)

_UID_ROOT = "1.2.826.0.1.3680043.10.1455."  # generate_uid prefix (a root reserved for examples and testing)


def transfer_syntax_for(index: int) -> UID:
    """The transfer syntax of the index-th DICOM file of a run: about 20 % JPEG-LS lossless, 10 % RLE lossless,
    3 % JPEG 2000 lossless, the rest uncompressed explicit VR little endian."""
    if index % 30 == 17:
        return JPEG2000Lossless
    if index % 5 == 2:
        return JPEGLSLossless
    if index % 10 == 4:
        return RLELossless
    return ExplicitVRLittleEndian


def planted_identifiers(seed: int) -> dict[str, str]:
    """The fictitious patient and site identifiers written into every DICOM header of a run with this seed.

    De-identification tests look for these strings in a built dataset: none of them may appear there.
    """
    token = f"{(seed * 2654435761) % 100000:05d}"
    return {
        "PatientName": f"SKULLPHANTOM^TESTPATIENT^Q{token}",
        "PatientID": f"XDS-PID-{token}-7Q",
        "PatientBirthDate": "19530417",
        "InstitutionName": f"Saint Elsewhere Neurovascular Institute {token}",
        "InstitutionAddress": "17 Imaginary Lane, Nowhere 00000",
        "AccessionNumber": f"ACC{token}QX",
        "DeviceSerialNumber": f"AZSN-{token}-88",
        "ReferringPhysicianName": f"DRZHIVAGO^YURI^{token}",
        "OperatorsName": f"TECHNICIAN^ANNA^{token}",
        "StationName": f"NEURO-LAB-{token}",
    }


@dataclass(frozen=True)
class XAHeader:
    """Per-file header values of one XA run.

    Attributes:
        seed: run seed (identifiers, UIDs).
        series_key: unique text for this file (UIDs are derived from it).
        series_number: DICOM SeriesNumber.
        kvp: tube voltage (kV).
        tube_current_ma: tube current (mA).
        exposure_time_ms: pulse width (ms).
        frame_time_ms: time between frames (ms).
        primary_angle: PositionerPrimaryAngle (deg, + LAO).
        secondary_angle: PositionerSecondaryAngle (deg, + CRAN).
        source_to_detector_mm: DistanceSourceToDetector.
        source_to_patient_mm: DistanceSourceToPatient (to the isocenter).
        pixel_spacing_mm: ImagerPixelSpacing (square pixels).
        shutter: (left, right, upper, lower) shutter edges, 1-based inclusive pixel columns/rows of the exposed field.
        fluoroscopy: fluoroscopy run (True) or an exposure/acquisition run (False).
        acquisition_datetime: "YYYYMMDDHHMMSS" of the run.
    """

    seed: int
    series_key: str
    series_number: int
    kvp: float
    tube_current_ma: int
    exposure_time_ms: int
    frame_time_ms: float
    primary_angle: float
    secondary_angle: float
    source_to_detector_mm: float
    source_to_patient_mm: float
    pixel_spacing_mm: float
    shutter: tuple[int, int, int, int]
    fluoroscopy: bool
    acquisition_datetime: str


def _ds(value: float) -> str:
    """A DS value with at most 16 characters."""
    return f"{value:.6g}"


def make_xa_dataset(frames: np.ndarray, header: XAHeader, transfer_syntax: UID) -> Dataset:
    """The XA dataset (not yet written) for `frames` (F, rows, cols) of uint16 12-bit pixels.

    pydicom writes elements in tag order, so the modules below may be filled in any order."""
    if frames.ndim != 3 or frames.dtype != np.uint16:
        raise ValueError(f"frames must be a (frames, rows, cols) uint16 array, got {frames.shape} {frames.dtype}")
    ds = _identity_modules(header)
    _add_technique(ds, header, rows=frames.shape[1], cols=frames.shape[2])
    _add_cine_and_shutter(ds, header, count=frames.shape[0])
    _add_pixels(ds, frames, transfer_syntax)
    return ds


def _identity_modules(header: XAHeader) -> Dataset:
    """File meta, patient (planted identifiers), study, series, equipment and instance attributes."""
    entropy = ["xdigiskull-phantom", str(header.seed), header.series_key]
    study_uid = generate_uid(_UID_ROOT, ["xdigiskull-phantom-study", str(header.seed)])
    sop_uid = generate_uid(_UID_ROOT, entropy + ["sop"])
    date, time = header.acquisition_datetime[:8], header.acquisition_datetime[8:]

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(_UID_ROOT, ["xdigiskull-phantom-implementation"])
    meta.ImplementationVersionName = f"XDIGISKULL_{xdigiskull.__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.Modality = "XA"
    ds.Manufacturer = "Philips Medical Systems"
    ds.ManufacturerModelName = "Azurion 7 M20"
    ds.SoftwareVersions = ["xdigiskull-phantom", "R2.2"]
    ds.StudyDescription = "NEURO^Skull phantom"
    ds.SeriesDescription = "Fluoro run" if header.fluoroscopy else "Exposure run"
    ds.BodyPartExamined = "HEAD"
    ds.PatientSex = "O"
    ds.PatientAge = "070Y"
    for keyword, value in planted_identifiers(header.seed).items():
        setattr(ds, keyword, value)
    ds.StudyID = "1"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT, entropy + ["series"])
    ds.FrameOfReferenceUID = generate_uid(_UID_ROOT, ["xdigiskull-phantom-frame", str(header.seed)])
    ds.SeriesNumber = header.series_number
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = header.series_number
    ds.PatientOrientation = ["L", "F"] if abs(header.primary_angle) < 45 else ["P", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.DerivationDescription = "Simulated by the xdigiskull phantom (not a patient image)"
    return ds


def _add_technique(ds: Dataset, header: XAHeader, rows: int, cols: int) -> None:
    """Exposure technique and acquisition geometry."""
    ds.KVP = _ds(header.kvp)
    ds.XRayTubeCurrent = int(header.tube_current_ma)
    ds.ExposureTime = int(header.exposure_time_ms)
    # per-frame mAs is below 1 in fluoroscopy, so it goes in the microampere-second attribute
    ds.ExposureInuAs = int(round(header.tube_current_ma * header.exposure_time_ms))
    ds.AveragePulseWidth = _ds(float(header.exposure_time_ms))
    ds.RadiationSetting = "SC" if header.fluoroscopy else "GR"
    ds.RadiationMode = "PULSED"
    ds.FocalSpots = _ds(0.4 if header.fluoroscopy else 0.7)
    ds.Grid = "IN"
    ds.FilterType = "CU" if header.fluoroscopy else "AL"
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = _ds(header.primary_angle)
    ds.PositionerSecondaryAngle = _ds(header.secondary_angle)
    ds.DistanceSourceToDetector = _ds(header.source_to_detector_mm)
    ds.DistanceSourceToPatient = _ds(header.source_to_patient_mm)
    ds.EstimatedRadiographicMagnificationFactor = _ds(header.source_to_detector_mm / header.source_to_patient_mm)
    ds.ImagerPixelSpacing = [_ds(header.pixel_spacing_mm), _ds(header.pixel_spacing_mm)]
    ds.FieldOfViewShape = "RECTANGLE"
    ds.FieldOfViewDimensions = [int(round(rows * header.pixel_spacing_mm)), int(round(cols * header.pixel_spacing_mm))]


def _add_cine_and_shutter(ds: Dataset, header: XAHeader, count: int) -> None:
    """Cine timing of the `count` frames, and the display shutter (the exposed field; outside are dark bands)."""
    ds.NumberOfFrames = count
    ds.FrameTime = _ds(header.frame_time_ms)
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.CineRate = int(round(1000.0 / header.frame_time_ms))
    ds.RecommendedDisplayFrameRate = ds.CineRate
    ds.StartTrim = 1
    ds.StopTrim = count
    left, right, upper, lower = header.shutter
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge = left
    ds.ShutterRightVerticalEdge = right
    ds.ShutterUpperHorizontalEdge = upper
    ds.ShutterLowerHorizontalEdge = lower
    ds.ShutterPresentationValue = 0


def _add_pixels(ds: Dataset, frames: np.ndarray, transfer_syntax: UID) -> None:
    """Image pixel module: 12 bits stored in 16, standard display (MONOCHROME2), a window covering the whole range."""
    count, rows, cols = frames.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    else:
        # pydicom expects a single frame as a 2D array
        ds.compress(transfer_syntax, frames[0] if count == 1 else frames, generate_instance_uid=False)


def write_xa(path: Path, frames: np.ndarray, header: XAHeader, transfer_syntax: UID = ExplicitVRLittleEndian) -> Path:
    """Write one XA file atomically (a temporary file beside `path`, then renamed).

    Args:
        path: destination `.dcm` file.
        frames: (frames, rows, cols) uint16 array of 12-bit pixels.
        header: header values.
        transfer_syntax: one of TRANSFER_SYNTAXES.

    Returns:
        `path`.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {transfer_syntax!r} for {path}")
    ds = make_xa_dataset(frames, header, transfer_syntax)
    path = Path(path)
    with atomic_write(path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return path
