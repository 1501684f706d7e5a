"""Label columns from a phantom v2 manifest, through the builder's own reading, crop and resize."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from xdigiskull.build import BuildConfig, build_dataset
from xdigiskull.field import Field, SquareCrop
from xdigiskull.labels import LabelInfo
from xdigiskull.label_columns import label_features, landmarks_to_output, mask_to_output, read_landmarks
from xdigiskull.phantom import generate_exports
from xdigiskull.prepare import prepare_frame
from xdigiskull.processing import BuildOptions, FileTask, process_file
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
    assert set(label_features()) == {"landmarks", "bone_mask"}


def test_bad_landmarks_name_their_source() -> None:
    with pytest.raises(ValueError, match="manifest.csv row 3"):
        read_landmarks("[1, 2]", where="manifest.csv row 3")


@pytest.fixture(scope="module")
def labelled_build(lateral_pose, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom v2 run built into a dataset (its manifest.csv gives poses, landmarks and masks)."""
    raw, _ = lateral_pose
    out = tmp_path_factory.mktemp("built") / "x-digiskull"
    build_dataset(BuildConfig(raw_dir=raw, out=out, size=SIZE, split="1,0,0", num_proc=1), progress=False)
    return out


def test_build_carries_landmarks_and_masks_that_load_dataset_gives_back(lateral_pose, labelled_build) -> None:
    from datasets import load_dataset

    dataset = load_dataset(str(labelled_build), split="train")
    assert {"landmarks", "bone_mask"} <= set(dataset.column_names)
    assert len(dataset) == 10  # two poses x five classes
    lateral = [row for row in dataset if row["view"] == "lateral"]
    assert sorted(row["label"] for row in lateral) == [0, 1, 2, 3, 4]  # one pose, all five classes
    tips = []
    for row in lateral:
        marks = {name: (x, y, v) for name, x, y, v in zip(*(row["landmarks"][k] for k in ("name", "x", "y", "visible")))}
        assert len(marks) == 19
        image = np.asarray(row["image"], np.float32) / 255.0
        mask = np.asarray(row["bone_mask"])
        assert mask.shape == image.shape == (SIZE, SIZE)
        x, y, visible = marks["incision_superius"]
        assert visible
        tips.append((x, y))
        px, py = int(round(x)), int(round(y))
        ux, uy = (int(round(c)) for c in marks["upper_lip"][:2])
        # the landmark lands on the incisor (bright, bone in the mask) in every class, the lip beside it does not
        assert image[py - 1:py + 2, px - 1:px + 2].mean() > image[uy - 1:uy + 2, ux - 1:ux + 2].mean() + 0.1, row["label"]
        assert mask[py, px] == 255 and mask[py, 2] == 0
    # the same output pixel in all five classes (the classes of a pose share one field and crop)
    assert np.ptp(np.array(tips), axis=0).max() < 1.0


def test_a_build_without_label_columns_has_none(tmp_path: Path) -> None:
    raw = generate_exports(tmp_path / "raw", views=1, seed=2, detector=192, frames=1, progress=False, version=1)
    build_dataset(BuildConfig(raw_dir=raw, out=tmp_path / "out", size=SIZE, split="1,0,0", num_proc=1), progress=False)
    from datasets import load_dataset

    dataset = load_dataset(str(tmp_path / "out"), split="train")
    assert "landmarks" not in dataset.column_names and "bone_mask" not in dataset.column_names


def test_an_unreadable_mask_or_bad_landmarks_skip_the_frame_naming_them(lateral_pose, tmp_path: Path) -> None:
    raw, rows = lateral_pose
    row = rows[0]
    missing = tmp_path / "labels" / "missing_bone_mask.png"
    for info, named in ((LabelInfo(row["class"], bone_mask=str(missing)), "missing_bone_mask.png"),
                        (LabelInfo(row["class"], landmarks="[1, 2]"), "landmarks")):
        task = FileTask(row["file"], str(raw / row["file"]), "train", info)
        outcome = process_file(task, BuildOptions(size=SIZE))
        assert [f.status for f in outcome.frames] == ["skipped"]
        frame = outcome.frames[0]
        assert frame.reason == "bad-label-columns" and named in frame.message and row["file"] in frame.message
