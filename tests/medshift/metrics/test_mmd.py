import numpy as np
import pytest

from medshift.metrics import cmmd, mmd_rbf


def test_single_points_by_hand():
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])  # squared distance 25
    expected = 1000 * (1 + 1 - 2 * np.exp(-25 / (2 * 10**2)))
    assert mmd_rbf(a, b) == pytest.approx(expected)


def test_cmmd_normalises_then_uses_the_biased_estimator():
    # x = {e1, e2}, y = {e1} after L2 normalisation; ||e1 - e2||^2 = 2, e = exp(-2 / 200)
    # k_xx = (2 + 2e) / 4, k_yy = 1, k_xy = (1 + e) / 2  ->  MMD^2 = (1 - e) / 2
    x = np.array([[3.0, 0.0], [0.0, 5.0]])
    y = np.array([[2.0, 0.0]])
    e = np.exp(-2 / 200)
    assert cmmd(x, y) == pytest.approx(1000 * (1 - e) / 2)
    assert cmmd(y, x) == pytest.approx(cmmd(x, y))


def test_identical_sets_score_zero():
    x = np.random.default_rng(0).standard_normal((20, 8))
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="equal dim"):
        mmd_rbf(np.zeros((2, 3)), np.zeros((2, 4)))
