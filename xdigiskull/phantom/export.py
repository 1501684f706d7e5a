"""`generate_exports`: write a complete phantom hand-over, as a site would deliver it.

    OUT/simulator/{low,high}/<name>.png            8-bit RGB screen captures, uniform margin around a square field
    OUT/azurion/{low,normal,exposure}/<name>.dcm   12-bit multi-frame XA DICOM, shutters as dark bands
    OUT/ground_truth/<pair_id>_<class>.png         16-bit noise-free render of the synthetic pose in each class's
                                                   appearance, cropped exactly to the square exposed field
    OUT/manifest.csv                               file,class,view,primary_angle,secondary_angle,pair_id,frames
                                                   (+ landmarks,bone_mask with version=2)
    OUT/labels/<pair_id>_bone_mask.png             version=2: 8-bit bone mask in the ground truth's frame

One pose (pair_id) gives one export per class. Its real exports are rendered at the nominal C-arm angles; the
simulator renders it at slightly jittered angles (recorded in the manifest), like a simulator that only
approximates the real views. The ground truth of every class is rendered at the simulator's pose, so it is
pixel-aligned with the simulator export's field.

Two phantom versions: 2 (the default: fine anatomy at the detector's pitch and the flat detector's MTF,
`render_v2`; each export's landmarks at its own pose, in its field's pixels, and the pose's bone mask) and 1 (byte
for byte what the shipped model was trained on). `test_object="edge"` renders a slanted tungsten edge instead of the
head (`test_objects`).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

import xdigiskull.phantom.appearance as appearance
import xdigiskull.phantom.physics as physics
from xdigiskull.phantom.anatomy import HeadPhantom, catheter_path, make_head
from xdigiskull.phantom.dicom_writer import XAHeader, transfer_syntax_for, write_xa
from xdigiskull.phantom.geometry import (
    DETECTOR_SIDE_MM,
    EXPOSED_FIELD_FRACTION,
    SOURCE_TO_DETECTOR_MM,
    SOURCE_TO_ISOCENTER_MM,
    ConeBeam,
    ExportLayout,
    View,
    cone_beam,
    pose_views,
)
from xdigiskull.phantom.projector import project, tube_chord_mm
from xdigiskull.phantom.render_v2 import LABEL_COLUMNS, LABEL_FOLDER, PoseRendererV2, bone_mask_path
from xdigiskull.image_io import atomic_write
from xdigiskull.phantom.export_files import REAL_CLASSES, SYNTHETIC_CLASSES, to_16bit, write_png

# hidden folder inside OUT where a run is rendered before its files are moved into place
STAGING_FOLDER = ".phantom-partial"
MANIFEST_COLUMNS: tuple[str, ...] = ("file", "class", "view", "primary_angle", "secondary_angle", "pair_id", "frames")
# phantom v2 adds per-export labels: landmarks (JSON) and the pose's bone mask (a PNG path)
MANIFEST_COLUMNS_V2: tuple[str, ...] = MANIFEST_COLUMNS + LABEL_COLUMNS
PHANTOM_VERSIONS: tuple[int, ...] = (1, 2)
TEST_OBJECTS: tuple[str, ...] = ("edge",)

# catheter: a 5F (1.67 mm) braided catheter; its radiopacity as an equivalent platinum density (g/cm^3)
CATHETER_DIAMETER_MM = 1.67
CATHETER_PLATINUM_DENSITY = 0.5
# effective energy used to attenuate the catheter in the real domain (keV); the head hardens the beam
CATHETER_EFFECTIVE_KEV = 50.0


def export_layout(detector: int) -> ExportLayout:
    """The layout for a `detector` x `detector` flat detector."""
    field = int(round(detector * EXPOSED_FIELD_FRACTION / 2.0)) * 2
    coarse = max(128, detector // 4)
    top = bottom = max(8, detector // 20)
    side = max(16, detector // 6)
    return ExportLayout(detector=detector, field=field, coarse=coarse, margins=(top, bottom, side, side + 4))


def _upsample(image: np.ndarray, size: int) -> np.ndarray:
    """Smooth (bicubic) upsampling of a coarse map to the detector grid, pixel centres aligned."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)


class _PoseRenderer:
    """Renders one pose: the projections, then every class's exports and ground truths."""

    def __init__(self, head: HeadPhantom, layout: ExportLayout, catheter: np.ndarray | None) -> None:
        self.head = head
        self.layout = layout
        self.catheter = catheter
        tables = physics.physics_tables()
        energy = tables["energies_kev"]
        mu_platinum = tables["mass_mu_platinum"]
        self.catheter_mu_real = float(np.interp(CATHETER_EFFECTIVE_KEV, energy, mu_platinum))
        # the simulator draws devices boldly
        self.catheter_mu_synthetic = 3.0 * float(np.interp(physics.SYNTHETIC_ENERGY_KEV, energy, mu_platinum))

    def line_integrals(self, beam: ConeBeam) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-material mass thickness on the coarse grid, and the catheter's mass thickness at full resolution."""
        layout = self.layout
        thickness = project(self.head, beam, layout.coarse, DETECTOR_SIDE_MM)
        return thickness, self.catheter_thickness(beam)

    def catheter_thickness(self, beam: ConeBeam) -> np.ndarray | None:
        """The catheter's platinum-equivalent mass thickness (g/cm^2) at full resolution, or None without one."""
        if self.catheter is None:
            return None
        chord = tube_chord_mm(self.catheter, beam, self.layout.detector, DETECTOR_SIDE_MM, CATHETER_DIAMETER_MM)
        return chord * np.float32(0.1 * CATHETER_PLATINUM_DENSITY)

    def real_expected(self, thickness: np.ndarray, catheter: np.ndarray | None, name: str) -> np.ndarray:
        """Noise-free expected quanta per detector pixel per frame for a real class, at full resolution."""
        layout = self.layout
        acquisition = physics.ACQUISITIONS[name]
        coarse = physics.detected_quanta(thickness, acquisition, layout.pixel_mm, layout.coarse_pitch_mm,
                                         SOURCE_TO_DETECTOR_MM)
        log_expected = _upsample(np.log(np.maximum(coarse, 1e-6)), layout.detector)
        if catheter is not None:
            log_expected -= catheter * np.float32(self.catheter_mu_real)
        return np.exp(log_expected)

    def unattenuated(self, name: str) -> float:
        """Quanta per pixel per frame of the open beam (I0 of the log conversion)."""
        return physics.open_beam_quanta(physics.ACQUISITIONS[name], self.layout.pixel_mm, SOURCE_TO_DETECTOR_MM)

    def noisy_frame(self, expected: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
        """One noisy frame of detected quanta."""
        return physics.noisy_frame(expected, physics.ACQUISITIONS[name], rng)

    def real_noise_free(self, expected: np.ndarray, name: str) -> np.ndarray:
        """Processed (unwindowed) noise-free image of a real class."""
        processing = appearance.PROCESSING[name]
        log_image = appearance.log_signal(physics.noise_free_frame(expected), self.unattenuated(name))
        return appearance.vendor_process(log_image, processing)

    def synthetic_display(self, thickness: np.ndarray, catheter: np.ndarray | None, name: str) -> np.ndarray:
        """Noise-free simulator render in [0, 1] over the whole detector grid."""
        attenuation = _upsample(physics.synthetic_attenuation(thickness), self.layout.detector)
        if catheter is not None:
            attenuation += catheter * np.float32(self.catheter_mu_synthetic)
        return appearance.simulator_display(attenuation, appearance.SIMULATOR[name])


def _jittered(view: View, rng: np.random.Generator, jitter_deg: float) -> View:
    if jitter_deg <= 0:
        return view
    primary = float(np.round(view.primary + rng.uniform(-jitter_deg, jitter_deg), 2))
    secondary = float(np.round(view.secondary + rng.uniform(-jitter_deg, jitter_deg), 2))
    return View(view.name, primary, secondary)


def _xa_header(seed: int, pair_id: str, k: int, name: str, view: View, layout: ExportLayout,
               corner: tuple[int, int]) -> XAHeader:
    """The DICOM XA header of class `name` at pose k, its shutter around the field whose top-left is `corner`."""
    row0, col0 = corner
    acquisition = physics.ACQUISITIONS[name]
    return XAHeader(
        seed=seed,
        series_key=f"{pair_id}/{name}",
        series_number=100 + 3 * k + REAL_CLASSES.index(name),
        kvp=acquisition.kvp,
        tube_current_ma=acquisition.tube_current_ma,
        exposure_time_ms=acquisition.exposure_time_ms,
        frame_time_ms=acquisition.frame_time_ms,
        primary_angle=view.primary,
        secondary_angle=view.secondary,
        source_to_detector_mm=SOURCE_TO_DETECTOR_MM,
        source_to_patient_mm=SOURCE_TO_ISOCENTER_MM,
        pixel_spacing_mm=layout.pixel_mm,
        shutter=(col0 + 1, col0 + layout.field, row0 + 1, row0 + layout.field),
        fluoroscopy=name != "real_exposure",
        acquisition_datetime=f"20250612{9 + k // 60:02d}{k % 60:02d}{10 + 15 * REAL_CLASSES.index(name):02d}",
    )


def _render_pose(renderer: _PoseRenderer | PoseRendererV2, out: Path, seed: int, k: int, view: View, frames: int,
                 jitter_deg: float) -> list[dict[str, object]]:
    """Render and write the five exports and five ground truths of pose k; returns its manifest rows."""
    layout = renderer.layout
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng([seed, 2, k])
    pair_id = f"p{seed}-{k:04d}"
    synthetic_view = _jittered(view, rng, jitter_deg)
    slack = layout.detector - layout.field
    row0, col0 = (slack // 2 + int(rng.integers(-(slack // 4), slack // 4 + 1)) for _ in range(2))
    field = (slice(row0, row0 + layout.field), slice(col0, col0 + layout.field))

    real_beam = cone_beam(view.primary, view.secondary)
    real_thickness, real_catheter = renderer.line_integrals(real_beam)
    if synthetic_view == view:
        synthetic_thickness, synthetic_catheter = real_thickness, real_catheter
    else:
        synthetic_thickness, synthetic_catheter = renderer.line_integrals(
            cone_beam(synthetic_view.primary, synthetic_view.secondary))

    # ---- real domain: DICOM runs at the nominal pose, ground truth at the simulator's pose
    for name in REAL_CLASSES:
        dose = name.split("_", 1)[1]
        processing = appearance.PROCESSING[name]
        unattenuated = renderer.unattenuated(name)
        expected = renderer.real_expected(real_thickness, real_catheter, name)
        window = appearance.auto_window(renderer.real_noise_free(expected, name), field,
                                        expected > 0.9 * unattenuated)
        stack = np.empty((frames, layout.detector, layout.detector), np.uint16)
        for f in range(frames):
            quanta = renderer.noisy_frame(expected, name, rng)
            processed = appearance.vendor_process(appearance.log_signal(quanta, unattenuated), processing)
            stack[f] = appearance.to_12bit(appearance.to_display(processed, window, processing.gamma))
        appearance.apply_shutters(stack, field, rng)
        header = _xa_header(seed, pair_id, k, name, view, layout, (row0, col0))
        relative = f"azurion/{dose}/{view.name}_{pair_id}.dcm"
        write_xa(out / relative, stack, header, transfer_syntax_for(3 * k + REAL_CLASSES.index(name)))
        rows.append({"file": relative, "class": name, "view": view.name, "primary_angle": view.primary,
                     "secondary_angle": view.secondary, "pair_id": pair_id, "frames": frames,
                     **_label_columns(renderer, real_thickness, field, pair_id)})

        truth_expected = renderer.real_expected(synthetic_thickness, synthetic_catheter, name)
        truth_processed = renderer.real_noise_free(truth_expected, name)
        truth_window = appearance.auto_window(truth_processed, field, truth_expected > 0.9 * unattenuated)
        truth = appearance.to_display(truth_processed[field], truth_window, processing.gamma)
        write_png(out / "ground_truth" / f"{pair_id}_{name}.png", to_16bit(truth))

    # ---- synthetic domain: screen captures at the simulator's pose
    for name in SYNTHETIC_CLASSES:
        dose = name.split("_", 1)[1]
        look = appearance.SIMULATOR[name]
        display = renderer.synthetic_display(synthetic_thickness, synthetic_catheter, name)[field]
        noisy = appearance.simulator_noise(display, look, rng)
        capture = appearance.screen_capture(np.rint(noisy * 255.0).astype(np.uint8), layout.margins)
        relative = f"simulator/{dose}/{view.name}_{pair_id}.png"
        write_png(out / relative, capture)
        rows.append({"file": relative, "class": name, "view": view.name,
                     "primary_angle": synthetic_view.primary, "secondary_angle": synthetic_view.secondary,
                     "pair_id": pair_id, "frames": 1, **_label_columns(renderer, synthetic_thickness, field, pair_id)})
        write_png(out / "ground_truth" / f"{pair_id}_{name}.png", to_16bit(display))
    if isinstance(renderer, PoseRendererV2):
        # the bone mask is drawn in the ground truth's frame (the simulator's pose), like every ground truth
        write_png(out / bone_mask_path(pair_id), renderer.bone_mask(synthetic_thickness, field))
    return rows


def _label_columns(renderer: _PoseRenderer | PoseRendererV2, thickness, field: tuple[slice, slice],
                   pair_id: str) -> dict[str, str]:
    """Phantom v2's label columns of one export (its landmarks at its own pose, the pose's bone mask); none for
    v1."""
    if not isinstance(renderer, PoseRendererV2):
        return {}
    return {"landmarks": renderer.landmarks(thickness.beam, field), "bone_mask": bone_mask_path(pair_id)}


def generate_exports(
    out_dir: str | os.PathLike,
    views: int = 10,
    seed: int = 0,
    detector: int = 1024,
    frames: int = 2,
    catheter: bool = False,
    jitter_deg: float = 1.5,
    workers: int = 2,
    progress: bool = True,
    version: int = 2,
    test_object: str | None = None,
) -> Path:
    """Render the skull phantom and write raw exports of all five classes for `views` poses.

    Args:
        out_dir: output folder (created if missing). The files of an earlier phantom run there (those its
            manifest lists) are replaced; other files in simulator/, azurion/ or ground_truth/ raise ValueError.
        views: number of poses; the standard views (AP, lateral, Towne, Waters, obliques) come first, further
            poses are seeded variations of them.
        seed: random seed of the head's anatomy, the pose variations, the noise and the shutter positions; the same
            seed and options give the same bytes.
        detector: flat-detector pixels per side (DICOM rows and columns); the detector is always 400 mm wide, so a
            smaller detector has larger pixels. At least 128.
        frames: frames per DICOM run, each with independent noise. At least 1.
        catheter: draw a radiopaque catheter in the carotid artery into the head.
        jitter_deg: largest deviation (deg) of the simulator's angles from the real ones; 0 for identical poses.
        workers: poses rendered at the same time (threads); the output does not depend on it.
        progress: show a progress bar.
        version: 2 (the default): fine anatomy at the detector's pitch, the flat detector's MTF and the focal
            spot, scatter per class, and labels (landmarks and a bone mask per pose, in the manifest's `landmarks`
            and `bone_mask` columns); or 1, the phantom the shipped model was trained on (kept byte for byte).
        test_object: instead of the head, render a test object in every class: "edge", a slanted tungsten edge
            on the detector (IEC 62220-1 style) for MTF measurements (one pose; see `test_objects`).

    Returns:
        The output folder, as a Path.
    """
    _check_options(views=views, detector=detector, frames=frames, workers=workers, jitter_deg=jitter_deg)
    if version not in PHANTOM_VERSIONS:
        raise ValueError(f"version must be one of {PHANTOM_VERSIONS}, got {version}")
    if test_object is not None and test_object not in TEST_OBJECTS:
        raise ValueError(f"test_object must be one of {TEST_OBJECTS} or None, got {test_object!r}")
    out = Path(out_dir)
    previous = _previous_run_files(out)  # checked first: refuse a folder of someone else's files before rendering
    # render into a hidden staging folder and move the files into place at the end: an interrupted run leaves
    # neither a half-written layout nor a damaged earlier run (the staging folder is cleared on the next run)
    staging = out / STAGING_FOLDER
    if staging.exists():
        shutil.rmtree(staging)
    for folder in ("simulator/low", "simulator/high", "azurion/low", "azurion/normal", "azurion/exposure",
                   "ground_truth") + ((LABEL_FOLDER,) if version == 2 and test_object is None else ()):
        (staging / folder).mkdir(parents=True, exist_ok=True)

    layout = export_layout(detector)
    if test_object == "edge":
        from xdigiskull.phantom.test_objects import render_edge  # noqa: PLC0415 (only this mode needs it)

        _publish(render_edge(staging, layout, seed, frames, version), staging, out, previous, MANIFEST_COLUMNS)
        return out
    head = make_head(seed, voxels=176 if detector >= 512 else 120, version=version)
    renderer = _PoseRenderer(head, layout, catheter_path(seed) if catheter else None)
    if version == 2:
        renderer = PoseRendererV2(head, layout, renderer.catheter, renderer)
    poses = pose_views(views, np.random.default_rng([seed, 1]))

    def render(k: int) -> list[dict[str, object]]:
        return _render_pose(renderer, staging, seed, k, poses[k], frames, jitter_deg)

    # poses are independent (each has its own random stream), so they render in threads: numpy, OpenCV and the
    # PNG/DICOM encoders release the GIL. Results come back in pose order, so the bytes do not depend on it.
    rows: list[dict[str, object]] = []
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(render, range(views)) if pool is not None else map(render, range(views))
        for pose_rows in tqdm(results, total=views, desc="phantom poses", unit="pose", disable=not progress):
            rows.extend(pose_rows)
    _publish(rows, staging, out, previous, MANIFEST_COLUMNS if version == 1 else MANIFEST_COLUMNS_V2)
    return out


def _check_options(views: int, detector: int, frames: int, workers: int, jitter_deg: float) -> None:
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    if detector < 128:
        raise ValueError(f"detector must be at least 128 pixels, got {detector}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if jitter_deg < 0 or jitter_deg > 10:
        raise ValueError(f"jitter_deg must be between 0 and 10, got {jitter_deg}")


def _publish(rows: list[dict[str, object]], staging: Path, out: Path, previous: list[Path],
             columns: tuple[str, ...]) -> None:
    """Write the manifest, replace the earlier run's files by the staged ones, and the manifest last (it marks
    a complete run)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(staging / "manifest.csv") as temporary:
        temporary.write_bytes(buffer.getvalue().encode("utf-8"))
    for path in previous:
        path.unlink(missing_ok=True)
    for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.name != "manifest.csv"):
        target = out / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    os.replace(staging / "manifest.csv", out / "manifest.csv")
    shutil.rmtree(staging)


def _previous_run_files(out: Path) -> list[Path]:
    """Files of an earlier phantom run in `out` (listed by its manifest), to be replaced by this run.

    Raises:
        ValueError: `out` holds files in the phantom's folders that no phantom manifest lists (someone else's data,
            or a foreign manifest), which the phantom must not overwrite or mix with.
    """
    manifest = out / "manifest.csv"
    previous: list[Path] = []
    if manifest.exists():
        with open(manifest, newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) not in (MANIFEST_COLUMNS, MANIFEST_COLUMNS_V2):
                raise ValueError(f"{manifest} is not a phantom manifest (columns {reader.fieldnames}); "
                                 "write the phantom into an empty or new folder")
            for row in reader:
                previous.append(out / row["file"])
                previous.append(out / "ground_truth" / f"{row['pair_id']}_{row['class']}.png")
                if row.get("bone_mask"):
                    previous.append(out / row["bone_mask"])
        previous.append(manifest)
    listed = set(previous)
    foreign = [p for folder in ("simulator", "azurion", "ground_truth", LABEL_FOLDER)
               for p in sorted((out / folder).rglob("*")) if p.is_file() and p not in listed]
    if foreign:
        raise ValueError(f"{out} already holds {len(foreign)} file(s) that no phantom manifest lists, e.g. "
                         f"{foreign[0]}; write the phantom into an empty or new folder")
    return previous
