"""The MedShift browser demo: a Gradio page that translates one X-ray and shows it before/after.

`medshift demo` serves it locally and `app.py` (repository root) on a Hugging Face Space. Uploads are read the
way the X-DigiSkull builder reads its raw exports (standard display, centred square of the exposed field,
780 x 780), so the model sees what it was trained on. The same translation answers the `/translate` API
endpoint: `gradio_client.Client(url).predict(handle_file(path), "real_normal", 0.45, api_name="/translate")`.
"""

from __future__ import annotations

import html
import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Optional

import gradio as gr
import numpy as np
import PIL.Image

from medshift.image_processor import COLOUR_MODES, is_colour, unit_to_pil
from medshift.model_location import default_model
from medshift.pipeline_medshift import MedShiftPipeline
from xdigiskull.image_io import atomic_write
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import DICOM_SUFFIXES, IMAGE_SUFFIXES, SourceError, read_source

EXAMPLES_ENV = "MEDSHIFT_DEMO_CACHE"  # where the phantom examples are generated on first start
IMAGE_SIZE = 780  # the dataset's geometry: uploads are prepared to it, outputs have it
MIN_FIELD_SIDE = 128  # an exposed field smaller than this holds too little anatomy to translate
MAX_FILE_SIZE = "50mb"  # a 1024 x 1024 x 30-frame uncompressed DICOM run is about 60 MB; one frame is enough
TAU_SWEEP = (0.6, 0.45, 0.3)  # the paper's three trade-offs between structure and realism
UNKNOWN_SOURCE = "unknown"
PIPELINE_QUEUE = "pipeline"  # the concurrency group shared by every event that runs the pipeline
OUTPUT_LIFETIME_S = 3600  # translated PNGs are kept this long for their download
logger = logging.getLogger("medshift.demo")
UPLOAD_SUFFIXES = sorted((DICOM_SUFFIXES | IMAGE_SUFFIXES) - {"", ".bmp"})  # DICOM without suffix: rename to .dcm


def page_error(message: str) -> gr.Error:
    """An expected error (bad upload, value out of range): one line in the server log, no traceback, and a message
    that stays on the page until closed."""
    logger.warning("%s", message)
    return gr.Error(message, duration=None, print_exception=False)


def number(value: float | int | str, name: str) -> float:
    """A slider's value as a float; API clients may send it as a string ("0.3")."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise page_error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise page_error(f"{name} must be a finite number, got {value!r}")
    return result


def server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """The address to serve on: the arguments, else Gradio's $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT (which
    Spaces set), else 127.0.0.1:7860. Raises ValueError for a port that is not a number from 1 to 65535."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port is None:
        text = os.environ.get("GRADIO_SERVER_PORT") or "7860"
        if not text.strip().isdigit():
            raise ValueError(f"GRADIO_SERVER_PORT must be a port number, got {text!r}")
        port = int(text)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must lie in 1..65535, got {port}")
    return host, int(port)


def check_port_free(host: str, port: int) -> None:
    """Raise a ValueError saying what to do when `port` on `host` is taken (another server listens there)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ValueError(
                f"cannot serve on {host}:{port}: {error.strerror or error} (another server?); pass --port or set GRADIO_SERVER_PORT"
            ) from None


def read_upload(path: str | os.PathLike) -> np.ndarray:
    """Read an uploaded PNG/TIFF/JPEG/DICOM like the builder does: 780 x 780 float32 in [0, 1].

    Raises:
        gr.Error: unsupported type, unreadable or broken file, or an exposed field under 128 pixels; the
            message names the file and says what is wrong (shown in the page, never a stack trace).
    """
    path = Path(path)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise page_error(f"{path.name}: unsupported file type; upload one of {', '.join(UPLOAD_SUFFIXES)}")
    try:
        source = read_source(path, frames="first")
        prepared = prepare_frame(source.frames[0], source.dataset, IMAGE_SIZE, allow_upscale=True)
    except SourceError as error:
        raise page_error(f"{path.name}: {error.message}") from None
    if prepared.crop.side < MIN_FIELD_SIDE:
        raise page_error(f"{path.name}: the exposed field is {prepared.crop.side} pixels across; at least {MIN_FIELD_SIDE} are needed")
    if colour_picture(path):
        gr.Warning(f"{path.name} is a colour picture, not a grey X-ray: it is translated through its luminance", duration=None)
    return prepared.image


def colour_picture(path: Path) -> bool:
    """Whether an uploaded image file holds a colour picture (a photograph, not an X-ray saved as RGB)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return False
    with PIL.Image.open(path) as image:
        return image.mode in COLOUR_MODES and is_colour(np.asarray(image.convert("RGB")))


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
    """Runs the pipeline for the page's events; one instance per app, one job at a time (every event that runs the
    pipeline is in the concurrency group `PIPELINE_QUEUE`, limit 1)."""

    def __init__(self, pipe: MedShiftPipeline, output_dir: str | os.PathLike | None = None):
        self.pipe = pipe
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="medshift-demo-"))
        self.errors: dict[str, str] = {}  # the last error of each browser session, shown under the buttons

    def last_error(self, request: Optional[gr.Request] = None) -> str:
        """The page's status line after a failed job: the error's text, in red."""
        message = self.errors.pop(request.session_hash if request else "", "")
        return f"<span style='color: #dc2626'>**Error:** {html.escape(message)}</span>" if message else ""

    def _remember(self, request: Optional[gr.Request], error: gr.Error) -> None:
        self.errors[request.session_hash if request else ""] = error.message

    def read(self, path: str | None) -> np.ndarray:
        if not path:
            raise page_error("upload an image or pick an example first")
        return read_upload(path)

    def run(self, image: np.ndarray, source: str, target: str, tau: float, guidance: float, steps: int) -> np.ndarray:
        """Translate one prepared image; returns the 780 x 780 float32 result in [0, 1]."""
        tau, guidance, steps = number(tau, "tau"), number(guidance, "guidance"), number(steps, "steps")
        try:
            result = self.pipe(
                image,
                target=target,
                source=None if source == UNKNOWN_SOURCE else source,
                tau=tau,
                guidance_scale=guidance,
                num_inference_steps=int(steps),
                output_type="np",
            ).images[0, ..., 0]
        except ValueError as error:  # an unknown class, tau outside (0, 1]: the pipeline's own message
            raise page_error(str(error)) from None
        return result

    def translate(
        self, path: str | None, source: str, target: str, tau: float, guidance: float, steps: int,
        progress=gr.Progress(track_tqdm=True), request: Optional[gr.Request] = None,
    ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
        """The page's Translate button: (before, after) for the slider and the 16-bit PNG to download."""
        try:
            before = self.read(path)
            result = self.run(before, source, target, tau, guidance, steps)
        except gr.Error as error:
            self._remember(request, error)
            raise
        name = f"{Path(path).stem}_{target}_tau{number(tau, 'tau'):g}.png"
        return (to_uint8(before), to_uint8(result)), save_png16(result, self.output_dir, name)

    def sweep(
        self, path: str | None, source: str, target: str, guidance: float, steps: int,
        progress=gr.Progress(track_tqdm=True), request: Optional[gr.Request] = None,
    ) -> list[tuple[np.ndarray, str]]:
        """The τ sweep button: one translation per τ of the paper, side by side."""
        try:
            image = self.read(path)
            return [(to_uint8(self.run(image, source, target, tau, guidance, steps)), f"τ = {tau}") for tau in TAU_SWEEP]
        except gr.Error as error:
            self._remember(request, error)
            raise

    def api_translate(self, path: str, target: str, tau: float) -> str:
        """`/translate`: (image file, target class, τ) -> path of the translated 16-bit PNG (780 x 780)."""
        guidance = self.pipe.config.default_guidance_scale
        result = self.run(self.read(path), UNKNOWN_SOURCE, target, tau, guidance, self._default_steps())
        return save_png16(result, self.output_dir, f"{Path(path).stem}_{target}_tau{number(tau, 'tau'):g}.png")

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
        The `gr.Blocks` app, queued one pipeline job at a time across all its events; launch it with `launch_demo`
        or `.launch()`.
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
                upload = gr.File(label="X-ray (PNG, TIFF, JPEG or DICOM)", file_types=UPLOAD_SUFFIXES, type="filepath", elem_id="upload")
                source = gr.Dropdown([UNKNOWN_SOURCE, *classes], value=UNKNOWN_SOURCE, label="Source class")
                target = gr.Dropdown(classes, value=default_target, label="Target class")
                tau = gr.Slider(0.05, 1.0, value=float(pipe.config.default_tau), step=0.05, label="τ (inversion depth)")
                guidance = gr.Slider(1.0, 10.0, value=float(pipe.config.default_guidance_scale), step=0.5, label="Guidance")
                num_steps = gr.Slider(1, 100, value=translator._default_steps(), step=1, label="Steps")
                with gr.Row():
                    translate_button = gr.Button("Translate", variant="primary", elem_id="translate-button")
                    sweep_button = gr.Button("τ sweep (0.6 / 0.45 / 0.3)", elem_id="sweep-button")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(
                    label="Before / after", type="numpy", image_mode="L", format="png", elem_id="before-after", max_height=780
                )
                download = gr.File(label="Translated image (16-bit PNG)", elem_id="download")
        sweep_gallery = gr.Gallery(label="τ sweep", columns=len(TAU_SWEEP), format="png", elem_id="tau-sweep")
        examples = phantom_examples(examples_dir)
        gr.Examples([[str(path)] for path in examples], inputs=[upload], label="Phantom examples", example_labels=example_labels(examples))

        job = {"concurrency_limit": 1, "concurrency_id": PIPELINE_QUEUE}  # one pipeline job at a time, whatever the event
        page_events = [
            translate_button.click(
                translator.translate, [upload, source, target, tau, guidance, num_steps], [slider, download], api_name="translate_page", **job
            ),
            sweep_button.click(translator.sweep, [upload, source, target, guidance, num_steps], sweep_gallery, api_name="tau_sweep", **job),
        ]
        # the API-only endpoint of the issue: (file, target, τ) -> image, other settings at the model's defaults
        # (its τ is a Number without bounds: a client's "0.3" reaches `number`, which reads it or names the problem)
        api_tau = gr.Number(float(pipe.config.default_tau), visible=False, label="τ")
        api_output = gr.Image(type="filepath", format="png", visible=False)
        gr.Button(visible=False).click(translator.api_translate, [upload, target, api_tau], api_output, api_name="translate", **job)
        # an error's text stays on the page (the toast alone is easy to miss); a new upload clears the old results
        quiet = {"queue": False, "api_visibility": "private"}
        for event in page_events:
            event.success(lambda: "", None, status, **quiet)
            event.failure(translator.last_error, None, status, **quiet)
        upload.change(lambda: (None, None, None, ""), None, [slider, download, sweep_gallery, status], **quiet)
    return demo.queue(default_concurrency_limit=1)  # one job at a time: a CPU runs one translation well


def example_labels(paths: list[Path]) -> list[str]:
    """Labels that tell the examples apart: device and dose folders with the file name, e.g. "simulator low: ap_p0-0000.png"."""
    return [f"{path.parent.parent.name} {path.parent.name}: {path.name}" for path in paths]


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs) -> None:
    """Serve the page with the upload size limit; other keyword arguments go to `gr.Blocks.launch`."""
    demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, **kwargs)
