import numpy as np
import pytest

from medshift.metrics import density_and_coverage


def test_hand_computed_k2_case():
    # real points 0, 1, 2, 4 on a line; radii to the 2nd nearest other point: 2, 1, 2, 3
    real = np.array([[0.0], [1.0], [2.0], [4.0]])
    fake = np.array([[0.5], [10.0], [11.0]])
    # 0.5 lies in the balls of 0 (0.5<2), 1 (0.5<1) and 2 (1.5<2), not of 4 (3.5<3 fails); the others in none
    result = density_and_coverage(real, fake, k=2)
    assert result["density"] == pytest.approx(3 / (2 * 3))
    assert result["coverage"] == pytest.approx(3 / 4)


def test_hand_computed_k5_case_density_above_one():
    # six real points 0..5: the 5th neighbour of i is the farthest one, radius max(i, 5 - i)
    real = np.arange(6, dtype=float)[:, None]
    fake = np.array([[2.5]])  # distances 2.5, 1.5, .5, .5, 1.5, 2.5 are all inside: 6 balls
    result = density_and_coverage(real, fake)
    assert result["density"] == pytest.approx(6 / 5)
    assert result["coverage"] == pytest.approx(1.0)
    # the ball is open: a point exactly on a radius is outside
    on_edge = density_and_coverage(real, np.array([[-5.0]]))
    assert on_edge == {"density": 0.0, "coverage": 0.0}


def test_needs_more_real_samples_than_k():
    with pytest.raises(ValueError, match="more than 5 real samples"):
        density_and_coverage(np.zeros((5, 2)), np.zeros((3, 2)))
