"""Evaluation sets with known truth for the builder's two image checks: burned-in text and exposed field.

Every sample is drawn from its own seeded generator, so a set is the same on every machine (fonts aside:
the DejaVu and Liberation fonts join PIL's bundled ones where they are installed). Images are float32 in
[0, 1], standard display (bright = high), as the builder hands them to the checks.

    text_sample(index)   -> (780x780 image, has_text, description)
    field_sample(index)  -> (frame, true Field, kind, bit depth)

`benchmarks/eval_detectors.py` prints the figures; the tests run small subsets.
"""

from __future__ import annotations

import functools
import glob

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xdigiskull.deid import CORNER_SHARE, TEXT_REFERENCE_SIDE
from xdigiskull.field import Field

SIDE = TEXT_REFERENCE_SIDE
PATCH = int(round(SIDE * CORNER_SHARE))
FIELD_KINDS = ("none", "rectangle", "asymmetric", "circle", "screen")
STRINGS = (
    "AP", "PA", "LAT", "LAO 30", "RAO 25 CRA 15", "ID 0012345", "12.03.2024", "2024-11-05 14:32",
    "70 kV 12 mA", "W 400 L 40", "Im 23/48", "Se 4", "SMITH^JOHN", "Frame 12", "F 1/30", "SID 1100",
    "DAP 12.5", "Acc 88421", "Dr. Lee", "x1.5", "HOSP A", "120kV 250mAs", "R 12", "OBL",
)


# ------------------------------------------------------------------------------------------- fonts


@functools.cache
def _truetype_paths() -> tuple[str, ...]:
    patterns = ("/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif*.ttf",
                "/usr/share/fonts/truetype/liberation/Liberation*.ttf")
    return tuple(sorted(p for pattern in patterns for p in glob.glob(pattern)))


def font_names() -> list[str]:
    """Names of the fonts text is drawn in: PIL's bitmap and bundled TrueType font, OpenCV's Hershey fonts,
    and the DejaVu / Liberation fonts found on this machine."""
    return ["pil-bitmap", "pil-bitmap-x2", "pil-aileron", "hershey-simplex", "hershey-duplex", "hershey-plain",
            *(p.rsplit("/", 1)[1].removesuffix(".ttf") for p in _truetype_paths())]


def render_text(text: str, font: str, height: int) -> np.ndarray:
    """Coverage (float32 in [0, 1]) of `text` drawn in `font` with a cap height of about `height` pixels."""
    if font.startswith("hershey"):
        face = {"hershey-simplex": cv2.FONT_HERSHEY_SIMPLEX, "hershey-duplex": cv2.FONT_HERSHEY_DUPLEX,
                "hershey-plain": cv2.FONT_HERSHEY_PLAIN}[font]
        scale = cv2.getFontScaleFromHeight(face, height)
        thickness = max(1, int(round(height / 10)))
        (width, text_height), base = cv2.getTextSize(text, face, scale, thickness)
        canvas = np.zeros((text_height + base + 2 * thickness + 2, width + 2 * thickness + 2), np.uint8)
        cv2.putText(canvas, text, (thickness + 1, text_height + thickness + 1), face, scale, 255, thickness, cv2.LINE_AA)
        return canvas.astype(np.float32) / 255.0
    if font.startswith("pil-bitmap"):
        face = ImageFont.load_default_imagefont()
    elif font == "pil-aileron":
        face = ImageFont.load_default(size=max(6, int(height * 1.4)))
    else:
        path = next(p for p in _truetype_paths() if p.endswith(f"/{font}.ttf"))
        face = ImageFont.truetype(path, size=max(6, int(height * 1.4)))
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2))
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=255, font=face)
    coverage = np.asarray(canvas, np.float32) / 255.0
    if font == "pil-bitmap-x2":  # a blocky pixel font, as some consoles burn in
        coverage = cv2.resize(coverage, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    return coverage


# ------------------------------------------------------------------------------------ backgrounds


def smooth_noise(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: `cells` x `cells` Gaussian values, cubic-upsampled."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC) / 1.5


def anatomy(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A radiograph-like frame that fills the whole frame: smooth tissue, a body outline that may leave the
    frame, bone rings and edges, sometimes dark tissue all along the border; values in about [0.05, 0.95]."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows * rng.uniform(0.35, 0.65), cols * rng.uniform(0.35, 0.65)
    ry, rx = rows * rng.uniform(0.35, 0.8), cols * rng.uniform(0.35, 0.8)
    r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    level, depth = rng.uniform(0.45, 0.8), rng.uniform(0.15, 0.4)
    image = level - depth * np.exp(-r2 * rng.uniform(0.8, 2.0))
    image += rng.uniform(0.03, 0.12) * smooth_noise(rng, rows, cols, int(rng.integers(4, 10)))
    if rng.random() < 0.5:  # body outline: air outside is brighter (or darker), edge blurred by the focal spot
        body = cv2.GaussianBlur((r2 < rng.uniform(0.8, 1.6)).astype(np.float32), (0, 0), rng.uniform(1.0, 4.0))
        image += rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3) * (1.0 - body)
    for _ in range(int(rng.integers(0, 4))):  # bone: thin rings / arcs (skull, ribs)
        ring = np.zeros((rows, cols), np.float32)
        center = (int(cols * rng.uniform(0, 1)), int(rows * rng.uniform(0, 1)))
        axes = (int(cols * rng.uniform(0.1, 0.6)), int(rows * rng.uniform(0.1, 0.6)))
        cv2.ellipse(ring, center, axes, rng.uniform(0, 180), 0, rng.uniform(90, 360), 1.0, int(rng.integers(2, 12)))
        image -= rng.uniform(0.05, 0.25) * cv2.GaussianBlur(ring, (0, 0), rng.uniform(0.8, 3.0))
    if rng.random() < 0.25:  # dense tissue all around the border: dark edges without a collimator
        border = np.minimum(np.minimum(yy, rows - 1 - yy) / rows, np.minimum(xx, cols - 1 - xx) / cols)
        image -= rng.uniform(0.2, 0.45) * np.exp(-border / rng.uniform(0.05, 0.2))
    image += rng.uniform(0.005, 0.03) * rng.standard_normal((rows, cols)).astype(np.float32)
    return np.clip(image, 0.02, 0.98).astype(np.float32)


def _corner_origin(rng: np.random.Generator, corner: str, size: tuple[int, int], side: int = SIDE) -> tuple[int, int]:
    """Top-left position that puts a thing of `size` (rows, cols) near `corner` of a side x side image."""
    margin_y, margin_x = (int(rng.integers(2, 25) * side / SIDE) for _ in range(2))
    top = margin_y if corner.startswith("top") else side - margin_y - size[0]
    left = margin_x if corner.endswith("left") else side - margin_x - size[1]
    return max(0, top), max(0, left)


def _paste(image: np.ndarray, coverage: np.ndarray, top: int, left: int, value: float) -> None:
    """Blend `value` into `image` with `coverage` as alpha (clipped at the image border)."""
    rows = min(coverage.shape[0], image.shape[0] - top)
    cols = min(coverage.shape[1], image.shape[1] - left)
    alpha = coverage[:rows, :cols]
    region = image[top : top + rows, left : left + cols]
    region *= 1.0 - alpha
    region += value * alpha


def add_distractors(rng: np.random.Generator, image: np.ndarray) -> list[str]:
    """Things that reach the corners and are not text: collimator edges, rulers, lead markers. Returns their names."""
    added = []
    if rng.random() < 0.4:  # collimator edge crossing a corner (dark outside; bright on film-like displays)
        blades = np.zeros_like(image)
        side = int(rng.integers(0, 4))
        width = int(rng.integers(10, 140))
        if side == 0:
            blades[:width] = 1
        elif side == 1:
            blades[-width:] = 1
        elif side == 2:
            blades[:, :width] = 1
        else:
            blades[:, -width:] = 1
        blades = cv2.GaussianBlur(blades, (0, 0), rng.uniform(0.7, 3.0))
        value = rng.uniform(0.02, 0.12) if rng.random() < 0.7 else rng.uniform(0.85, 0.98)
        image[:] = image * (1 - blades) + value * blades
        added.append("collimator")
    if rng.random() < 0.3:  # radiopaque ruler: 5 mm ticks (9-20 pixels at 0.25-0.55 mm a pixel), long every cm
        corner = str(rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"]))
        pitch, length = int(rng.integers(9, 21)), int(rng.integers(6, 14))
        ruler = np.zeros((length * 2 + 4, SIDE // 3), np.float32)
        cv2.line(ruler, (0, 1), (ruler.shape[1] - 1, 1), 1.0, 1)
        for i, x in enumerate(range(0, ruler.shape[1], pitch)):
            cv2.line(ruler, (x, 1), (x, length * (2 if i % 2 == 0 else 1)), 1.0, 1)
        ruler = cv2.GaussianBlur(ruler, (0, 0), rng.uniform(0.5, 1.2))
        if rng.random() < 0.5:
            ruler = np.ascontiguousarray(ruler.T)
        top, left = _corner_origin(rng, corner, ruler.shape)
        _paste(image, ruler, top, left, float(rng.choice([0.03, 0.97])))
        added.append("ruler")
    if rng.random() < 0.3:  # lead marker: one large blurred letter, sometimes in a box
        corner = str(rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"]))
        letter = render_text(str(rng.choice(["L", "R"])), "DejaVuSans-Bold" if _truetype_paths() else "pil-aileron",
                             int(rng.integers(24, 48)))
        letter = cv2.copyMakeBorder(letter, 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=0)
        if rng.random() < 0.4:
            cv2.rectangle(letter, (0, 0), (letter.shape[1] - 1, letter.shape[0] - 1), 1.0, 3)
        letter = cv2.GaussianBlur(letter, (0, 0), rng.uniform(1.0, 2.5))
        top, left = _corner_origin(rng, corner, letter.shape)
        _paste(image, letter, top, left, float(rng.uniform(0.9, 0.98)))
        added.append("lead marker")
    return added


def text_sample(index: int, background: np.ndarray | None = None) -> tuple[np.ndarray, bool, str]:
    """Sample `index` of the text set: odd indices carry text in one or two corners, even ones none.

    Args:
        index: sample number (its seed).
        background: a SIDE x SIDE frame to draw on (a phantom frame, say); a generated radiograph if None.

    Returns:
        (image, has_text, description of what was drawn).
    """
    rng = np.random.default_rng([13, index])
    image = anatomy(rng, SIDE, SIDE) if background is None else background.copy()
    if rng.random() < 0.5:
        image = image[:, ::-1] if rng.random() < 0.5 else image[::-1]
        image = np.ascontiguousarray(image)
    parts = add_distractors(rng, image)
    has_text = index % 2 == 1
    # text is burned in at the source's size and reaches the check through the builder's resize to 780
    source = int(rng.integers(400, 1400))
    image = cv2.resize(image, (source, source), interpolation=cv2.INTER_AREA if source < SIDE else cv2.INTER_LINEAR)
    if has_text:
        corners = list(rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"], int(rng.integers(1, 3)), replace=False))
        for corner in corners:
            font = str(rng.choice(font_names()))
            text = str(rng.choice(STRINGS))
            # cap height 7-25 pixels once on the 780 scale (where the check judges it)
            coverage = render_text(text, font, max(5, int(round(rng.integers(7, 26) * source / SIDE))))
            top, left = _corner_origin(rng, corner, coverage.shape, source)
            region = image[top : top + coverage.shape[0], left : left + coverage.shape[1]]
            local = float(np.median(region)) if region.size else 0.5
            # the polarity that shows on this ground (a console writes white on dark and black on light)
            bright = local < 0.4 or (local <= 0.6 and rng.random() < 0.6)
            if rng.random() < 0.5:  # saturated, as most consoles burn it in
                value = 1.0 if bright else 0.0
            else:  # grey text, at least 0.3 from the ground it sits on
                contrast = rng.uniform(0.3, 0.6)
                value = min(1.0, local + contrast) if bright else max(0.0, local - contrast)
            _paste(image, coverage, top, left, value)
            parts.append(f"{'bright' if bright else 'dark'} '{text}' in {font} at the {corner} of a {source}-pixel frame")
    image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA if source > SIDE else cv2.INTER_CUBIC)
    return np.clip(image, 0.0, 1.0).astype(np.float32), has_text, "; ".join(parts) or "clean"


# ----------------------------------------------------------------------------------------- fields


def field_sample(index: int) -> tuple[np.ndarray, Field, str, int]:
    """Sample `index` of the field set: kind `FIELD_KINDS[index % 5]`, 8-bit on even, 16-bit (12 stored) on
    odd turns of the kinds.

    Returns:
        (frame in [0, 1], true field, kind, bit depth).
    """
    rng = np.random.default_rng([31, index])
    kind = FIELD_KINDS[index % len(FIELD_KINDS)]
    bits = 8 if (index // len(FIELD_KINDS)) % 2 == 0 else 16
    rows, cols = (int(v) for v in rng.choice([(512, 512), (768, 768), (1024, 1024), (768, 1024), (1024, 768)]))
    frame = anatomy(rng, rows, cols)
    truth = Field(0, 0, rows, cols, "rectangle", "full-frame")
    dark = float(rng.uniform(0.0, 0.1))
    if kind in ("rectangle", "asymmetric", "circle"):  # windowed for the field: it is well above the blades' level
        frame = dark + 0.1 + frame * (0.98 - dark - 0.1)
    if kind in ("rectangle", "asymmetric"):
        if kind == "rectangle":
            band_y, band_x = int(rows * rng.uniform(0.04, 0.2)), int(cols * rng.uniform(0.04, 0.2))
            top, bottom, left, right = band_y, rows - band_y, band_x, cols - band_x
        else:  # each blade on its own, some of them open
            top, left = (int(n * rng.uniform(0.03, 0.3)) if rng.random() < 0.75 else 0 for n in (rows, cols))
            bottom, right = (n - (int(n * rng.uniform(0.03, 0.3)) if rng.random() < 0.75 else 0) for n in (rows, cols))
            if (top, left, bottom, right) == (0, 0, rows, cols):
                top = int(rows * 0.1)
        inside = np.zeros((rows, cols), np.float32)
        inside[top:bottom, left:right] = 1.0
        frame = _shutter(rng, frame, inside, dark)
        truth = Field(top, left, bottom, right, "rectangle", "detected")
    elif kind == "circle":
        radius = min(rows, cols) * rng.uniform(0.4, 0.49)
        cy, cx = rows / 2 + rng.uniform(-0.02, 0.02) * rows, cols / 2 + rng.uniform(-0.02, 0.02) * cols
        yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
        inside = (((yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2) <= radius**2).astype(np.float32)
        frame = _shutter(rng, frame, inside, dark)
        truth = Field(int(round(cy - radius)), int(round(cx - radius)), int(round(cy + radius)), int(round(cx + radius)),
                      "circle", "detected")
    elif kind == "screen":  # a screen capture: the image in a flat margin of any grey
        top, bottom = int(rows * rng.uniform(0.02, 0.15)), rows - int(rows * rng.uniform(0.02, 0.15))
        left, right = int(cols * rng.uniform(0.02, 0.2)), cols - int(cols * rng.uniform(0.02, 0.2))
        screen = np.full((rows, cols), float(rng.choice([0.0, 0.1, 0.16, 0.5, 1.0])), np.float32)
        screen[top:bottom, left:right] = cv2.resize(frame, (right - left, bottom - top), interpolation=cv2.INTER_AREA)
        frame = screen
        truth = Field(top, left, bottom, right, "rectangle", "detected")
    levels = 255.0 if bits == 8 else 4095.0
    return (np.round(np.clip(frame, 0, 1) * levels) / levels).astype(np.float32), truth, kind, bits


def _shutter(rng: np.random.Generator, frame: np.ndarray, inside: np.ndarray, dark: float) -> np.ndarray:
    """Darken everything outside `inside` to a noisy `dark` level behind a blurred (penumbra) edge."""
    inside = cv2.GaussianBlur(inside, (0, 0), rng.uniform(0.5, 2.0))
    outside = dark + rng.uniform(0.003, 0.02) * rng.standard_normal(frame.shape).astype(np.float32)
    return frame * inside + outside * (1.0 - inside)


def iou(a: Field, b: Field) -> float:
    """Intersection over union of two fields' rectangles."""
    rows = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    cols = max(0, min(a.right, b.right) - max(a.left, b.left))
    inter = rows * cols
    union = a.height * a.width + b.height * b.width - inter
    return inter / union if union else 0.0


