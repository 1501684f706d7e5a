"""De-identification helpers: whitelisted technical values, salted source ids, burned-in text."""

from __future__ import annotations

import cv2
import numpy as np
from pydicom.dataset import Dataset

from xdigiskull.deid import detect_corner_text, has_burned_in_flag, mask_corners, source_id, technical_values


def _anatomy(side=390, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    image = 0.5 + 0.25 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 0.04 * rng.standard_normal((side, side))
    return np.clip(image, 0, 1).astype(np.float32)


def test_technical_values_whitelist_and_preference():
    ds = Dataset()
    ds.KVP = "72.5"
    ds.XRayTubeCurrent = 10
    ds.XRayTubeCurrentInmA = 10.4  # preferred: more precise
    ds.ExposureTime = 8
    ds.ImagerPixelSpacing = [0.154, 0.154]
    ds.PatientName = "Not^Carried"
    values = technical_values(ds)
    assert values == {
        "kvp": 72.5,
        "tube_current_ma": 10.4,
        "exposure_time_ms": 8.0,
        "pixel_spacing_mm": 0.154,
        "frame_time_ms": None,
    }
    assert technical_values(None) == dict.fromkeys(values)


def test_source_ids_are_salted_content_hashes():
    a = source_id("00ff" * 8)
    assert len(a) == 16 and a == source_id("00ff" * 8)
    assert a != source_id("00fe" * 8)
    assert a != source_id("00ff" * 8, salt="site secret")


def test_burned_in_flag():
    ds = Dataset()
    assert not has_burned_in_flag(ds) and not has_burned_in_flag(None)
    ds.BurnedInAnnotation = "YES"
    assert has_burned_in_flag(ds)
    ds.BurnedInAnnotation = "NO"
    assert not has_burned_in_flag(ds)


def test_corner_text_is_found_and_masked():
    clean = _anatomy()
    assert detect_corner_text(clean) == []
    marked = clean.copy()
    white, black = np.zeros(clean.shape, np.uint8), np.zeros(clean.shape, np.uint8)
    cv2.putText(white, "L 12", (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)
    cv2.putText(black, "AB", (320, 380), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1)
    marked[white > 0] = 1.0
    marked[black > 0] = 0.0
    assert detect_corner_text(marked) == ["top-left", "bottom-right"]
    masked = mask_corners(marked, ["top-left", "bottom-right"])
    assert detect_corner_text(masked) == []
    np.testing.assert_array_equal(masked[100:300, 100:300], marked[100:300, 100:300])
