"""Label columns from a phantom v2 manifest, through the builder's own reading, crop and resize."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from xdigiskull.field import Field, SquareCrop
from xdigiskull.label_columns import FEATURES, landmarks_to_output, mask_to_output, read_landmarks
from xdigiskull.phantom import generate_exports
from xdigiskull.prepare import prepare_frame
from xdigiskull.reading import read_source

SIZE = 128


@pytest.fixture(scope="module")
def lateral_pose(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """The lateral pose of a small phantom v2 run (AP first, then lateral)."""
    raw = generate_exports(tmp_path_factory.mktemp("labels") / "raw", views=2, seed=9, detector=256, frames=1,
                           version=2, progress=False)
    with open(raw / "manifest.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["view"] == "lateral"]
    return raw, rows


def test_a_landmark_lands_on_the_same_anatomy_in_all_five_classes(lateral_pose) -> None:
    raw, rows = lateral_pose
    assert len(rows) == 5
    for row in rows:
        source = read_source(raw / row["file"])
        prepared = prepare_frame(source.frames[0], source.dataset, SIZE)
        marks = {m["name"]: m for m in landmarks_to_output(read_landmarks(row["landmarks"]), prepared.field,
                                                          prepared.crop, SIZE)}
        assert len(marks) == 19 and all(m["visible"] for m in marks.values())

        def value(name: str) -> float:
            x, y = int(round(marks[name]["x"])), int(round(marks[name]["y"]))
            return float(prepared.image[y - 1:y + 2, x - 1:x + 2].mean())

        # the upper incisor's tip (enamel) is bright and the upper lip in front of it is not, in every class
        assert value("incision_superius") > value("upper_lip") + 0.1, row["class"]
        # and the bone mask, cut and resized the same way, covers the incisor but not the air in front of the face
        mask = np.asarray(Image.open(io.BytesIO(mask_to_output(
            cv2.imread(str(raw / row["bone_mask"]), cv2.IMREAD_GRAYSCALE), prepared.field, prepared.crop, SIZE))))
        x, y = int(round(marks["incision_superius"]["x"])), int(round(marks["incision_superius"]["y"]))
        assert mask.shape == (SIZE, SIZE) and mask[y, x] == 255 and mask[y, 2] == 0


def test_mapping_through_crop_and_resize() -> None:
    field = Field(top=10, left=20, bottom=110, right=120)
    crop = SquareCrop(top=10, left=20, side=100)
    marks = {"a": (0.0, 0.0, True), "b": (99.0, 49.5, True), "c": (150.0, 10.0, True), "d": (5.0, 5.0, False)}
    out = {m["name"]: m for m in landmarks_to_output(marks, field, crop, 50)}
    assert (out["a"]["x"], out["a"]["y"]) == (-0.25, -0.25)  # the first pixel's centre, halved
    assert (out["b"]["x"], out["b"]["y"]) == (49.25, 24.5)
    assert not out["c"]["visible"]  # outside the output image
    assert not out["d"]["visible"]  # not visible in the export
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 50:] = 255
    decoded = cv2.imdecode(np.frombuffer(mask_to_output(mask, field, crop, 50), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (50, 50) and decoded[:, :25].max() == 0 and decoded[:, 25:].min() == 255
    assert set(FEATURES) == {"landmarks", "bone_mask"}


def test_bad_landmarks_name_their_source() -> None:
    with pytest.raises(ValueError, match="manifest.csv row 3"):
        read_landmarks("[1, 2]", where="manifest.csv row 3")
