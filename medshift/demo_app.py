"""The MedShift browser demo: a Gradio page that translates one X-ray and shows it before/after.

`medshift demo` serves it locally and `app.py` (repository root) on a Hugging Face Space. Uploads are read the
way the X-DigiSkull builder reads its raw exports (standard display, centred square of the exposed field,
780 x 780), so the model sees what it was trained on. The same translation answers the `/translate` API
endpoint: `gradio_client.Client(url).predict(handle_file(path), "real_normal", 0.45, api_name="/translate")`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np

from medshift.pipeline_medshift import MedShiftPipeline
from medshift.translate import DEFAULT_MODEL
from medshift.image_processor import unit_to_pil
from xdigiskull.image_io import atomic_write
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import DICOM_SUFFIXES, IMAGE_SUFFIXES, SourceError, read_source

MODEL_ENV = "MEDSHIFT_MODEL"  # a Hub id or folder; `--model` wins over it
EXAMPLES_ENV = "MEDSHIFT_DEMO_CACHE"  # where the phantom examples are generated on first start
IMAGE_SIZE = 780  # the dataset's geometry: uploads are prepared to it, outputs have it
MIN_FIELD_SIDE = 128  # an exposed field smaller than this holds too little anatomy to translate
MAX_FILE_SIZE = "50mb"  # a 1024 x 1024 x 30-frame uncompressed DICOM run is about 60 MB; one frame is enough
TAU_SWEEP = (0.6, 0.45, 0.3)  # the paper's three trade-offs between structure and realism
UNKNOWN_SOURCE = "unknown"
OUTPUT_LIFETIME_S = 3600  # translated PNGs are kept this long for their download
UPLOAD_SUFFIXES = sorted((DICOM_SUFFIXES | IMAGE_SUFFIXES) - {"", ".bmp"})  # DICOM without suffix: rename to .dcm


def default_model() -> str:
    """The model the demo serves when none is given: $MEDSHIFT_MODEL, else the demo checkpoint."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def read_upload(path: str | os.PathLike) -> np.ndarray:
    """Read an uploaded PNG/TIFF/JPEG/DICOM like the builder does: 780 x 780 float32 in [0, 1].

    Raises:
        gr.Error: unsupported type, unreadable or broken file, or an exposed field under 128 pixels; the
            message names the file and says what is wrong (shown in the page, never a stack trace).
    """
    path = Path(path)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise gr.Error(f"{path.name}: unsupported file type; upload one of {', '.join(UPLOAD_SUFFIXES)}")
    try:
        source = read_source(path, frames="first")
        prepared = prepare_frame(source.frames[0], source.dataset, IMAGE_SIZE, allow_upscale=True)
    except SourceError as error:
        raise gr.Error(f"{path.name}: {error.message}") from None
    if prepared.crop.side < MIN_FIELD_SIDE:
        raise gr.Error(f"{path.name}: the exposed field is {prepared.crop.side} pixels across; at least {MIN_FIELD_SIDE} are needed")
    return prepared.image


def phantom_examples(folder: str | os.PathLike | None = None) -> list[Path]:
    """A few phantom exports to try the demo on, rendered once into `folder` (a cache) and reused.

    Two poses: their simulator captures (low and high dose) and one Azurion-like DICOM.
    """
    from xdigiskull.phantom.export import generate_exports  # the renderer loads only when used

    folder = Path(folder or os.environ.get(EXAMPLES_ENV) or Path.home() / ".cache" / "medshift" / "demo-examples")
    if not (folder / "manifest.csv").is_file():  # the manifest is written last: its presence means a complete run
        generate_exports(folder, views=2, seed=0, detector=1024, frames=1, workers=1, progress=False)
    images = sorted((folder / "simulator").rglob("*.png"))
    dicoms = sorted((folder / "azurion" / "normal").glob("*.dcm"))
    return images + dicoms[:1]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def save_png16(image: np.ndarray, folder: str | os.PathLike, name: str) -> str:
    """Write `image` (float in [0, 1]) as a 16-bit grey PNG and return its path.

    Written beside and renamed into place, so that a download never sees a half-written file; results older
    than an hour are removed (Gradio keeps its own copy of what it served, also for an hour).
    """
    folder = Path(folder)
    for old in folder.glob("*.png"):
        if time.time() - old.stat().st_mtime > OUTPUT_LIFETIME_S:
            old.unlink(missing_ok=True)
    path = folder / name
    with atomic_write(path) as partial:
        unit_to_pil(image, sixteen_bit=True).save(partial, format="PNG")
    return str(path)


class DemoTranslator:
    """Runs the pipeline for the page's events; one instance per app, one job at a time (Gradio's queue)."""

    def __init__(self, pipe: MedShiftPipeline, output_dir: str | os.PathLike | None = None):
        self.pipe = pipe
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="medshift-demo-"))

    def read(self, path: str | None) -> np.ndarray:
        if not path:
            raise gr.Error("upload an image or pick an example first")
        return read_upload(path)

    def run(self, image: np.ndarray, source: str, target: str, tau: float, guidance: float, steps: int) -> np.ndarray:
        """Translate one prepared image; returns the 780 x 780 float32 result in [0, 1]."""
        try:
            result = self.pipe(
                image,
                target=target,
                source=None if source == UNKNOWN_SOURCE else source,
                tau=float(tau),
                guidance_scale=float(guidance),
                num_inference_steps=int(steps),
                output_type="np",
            ).images[0, ..., 0]
        except ValueError as error:  # an unknown class, tau outside (0, 1]: the pipeline's own message
            raise gr.Error(str(error)) from None
        return result

    def translate(
        self, path: str | None, source: str, target: str, tau: float, guidance: float, steps: int, progress=gr.Progress(track_tqdm=True)
    ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
        """The page's Translate button: (before, after) for the slider and the 16-bit PNG to download."""
        before = self.read(path)
        result = self.run(before, source, target, tau, guidance, steps)
        name = f"{Path(path).stem}_{target}_tau{float(tau):g}.png"
        return (to_uint8(before), to_uint8(result)), save_png16(result, self.output_dir, name)

    def sweep(
        self, path: str | None, source: str, target: str, guidance: float, steps: int, progress=gr.Progress(track_tqdm=True)
    ) -> list[tuple[np.ndarray, str]]:
        """The τ sweep button: one translation per τ of the paper, side by side."""
        image = self.read(path)
        return [(to_uint8(self.run(image, source, target, tau, guidance, steps)), f"τ = {tau}") for tau in TAU_SWEEP]

    def api_translate(self, path: str, target: str, tau: float) -> str:
        """`/translate`: (image file, target class, τ) -> path of the translated 16-bit PNG (780 x 780)."""
        guidance = self.pipe.config.default_guidance_scale
        result = self.run(self.read(path), UNKNOWN_SOURCE, target, tau, guidance, self._default_steps())
        return save_png16(result, self.output_dir, f"{Path(path).stem}_{target}_tau{float(tau):g}.png")

    def _default_steps(self) -> int:
        return int(self.pipe.scheduler.config.num_inference_steps)


def build_demo(
    pipe_or_model_path: MedShiftPipeline | str | os.PathLike | None = None,
    examples_dir: str | os.PathLike | None = None,
) -> gr.Blocks:
    """Build the demo page for a pipeline, or a folder / Hub id to load one from (default: `default_model()`).

    Args:
        pipe_or_model_path: a loaded `MedShiftPipeline`, or where to load one from.
        examples_dir: cache folder of the phantom examples (generated there on first start).

    Returns:
        The `gr.Blocks` app, queued one job at a time; launch it with `launch_demo` or `.launch()`.
    """
    pipe = pipe_or_model_path
    if not isinstance(pipe, MedShiftPipeline):
        pipe = MedShiftPipeline.from_pretrained(str(pipe or default_model()))
    translator = DemoTranslator(pipe)
    classes = list(pipe.config.class_names)
    default_target = "real_normal" if "real_normal" in classes else classes[-1]

    # Gradio's copies of uploads and results are deleted after an hour; no usage analytics are sent
    with gr.Blocks(
        title="MedShift: sim-to-real X-ray translation", delete_cache=(OUTPUT_LIFETIME_S, OUTPUT_LIFETIME_S), analytics_enabled=False
    ) as demo:
        gr.Markdown(
            "# MedShift: sim-to-real X-ray translation\n"
            "Upload a PNG, TIFF, JPEG or DICOM X-ray (cropped to its exposed field and resized to 780 x 780, as the "
            "X-DigiSkull builder does) or pick a phantom example, choose the target class and press **Translate**. "
            "High τ keeps more structure, low τ gives more realism."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="X-ray (PNG, TIFF, JPEG or DICOM)", file_types=UPLOAD_SUFFIXES, type="filepath")
                source = gr.Dropdown([UNKNOWN_SOURCE, *classes], value=UNKNOWN_SOURCE, label="Source class")
                target = gr.Dropdown(classes, value=default_target, label="Target class")
                tau = gr.Slider(0.05, 1.0, value=float(pipe.config.default_tau), step=0.05, label="τ (inversion depth)")
                guidance = gr.Slider(1.0, 10.0, value=float(pipe.config.default_guidance_scale), step=0.5, label="Guidance")
                num_steps = gr.Slider(1, 100, value=translator._default_steps(), step=1, label="Steps")
                with gr.Row():
                    translate_button = gr.Button("Translate", variant="primary", elem_id="translate-button")
                    sweep_button = gr.Button("τ sweep (0.6 / 0.45 / 0.3)", elem_id="sweep-button")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(
                    label="Before / after", type="numpy", image_mode="L", format="png", elem_id="before-after", max_height=780
                )
                download = gr.File(label="Translated image (16-bit PNG)", elem_id="download")
        sweep_gallery = gr.Gallery(label="τ sweep", columns=len(TAU_SWEEP), format="png", elem_id="tau-sweep")
        gr.Examples([[str(path)] for path in phantom_examples(examples_dir)], inputs=[upload], label="Phantom examples")

        translate_button.click(
            translator.translate, [upload, source, target, tau, guidance, num_steps], [slider, download], api_name="translate_page"
        )
        sweep_button.click(translator.sweep, [upload, source, target, guidance, num_steps], sweep_gallery, api_name="tau_sweep")
        # the API-only endpoint of the issue: (file, target, τ) -> image, other settings at the model's defaults
        api_output = gr.Image(type="filepath", format="png", visible=False)
        gr.Button(visible=False).click(translator.api_translate, [upload, target, tau], api_output, api_name="translate")
    return demo.queue(default_concurrency_limit=1)  # one job at a time: a CPU runs one translation well


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs) -> None:
    """Serve the page with the upload size limit; other keyword arguments go to `gr.Blocks.launch`."""
    demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, **kwargs)
