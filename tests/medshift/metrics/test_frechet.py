import numpy as np
import pytest
from scipy import linalg
from scipy.stats import ortho_group

from medshift.metrics import feature_statistics, frechet_distance, frechet_distance_from_features


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _closed_form(mu_a, sigma_a, mu_b, sigma_b):
    # W2^2 between Gaussians, written with the symmetric form Tr(sqrt(S_a^1/2 S_b S_a^1/2))
    root_a = _psd_sqrt(sigma_a)
    cross = _psd_sqrt(root_a @ sigma_b @ root_a)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(cross))


def test_diagonal_gaussians_match_hand_formula():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    # ||dmu||^2 + sum (sqrt(va) - sqrt(vb))^2 = (1 + 0 + 4) + (1 + 1 + 0) = 7
    assert frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(7.0, abs=1e-9)


def test_non_commuting_covariances_match_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    sigma_a, sigma_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu_a, mu_b = rng.standard_normal(5), rng.standard_normal(5)
    expected = _closed_form(mu_a, sigma_a, mu_b, sigma_b)
    assert frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(expected, rel=1e-8)


def test_trace_term_matches_clean_fids_sqrtm():
    # Clean-FID evaluates Tr(sqrtm(S_a @ S_b)) with scipy's sqrtm; our eigenvalue route must agree
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((200, 64)), rng.standard_normal((200, 64)) * 2 + 1
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    covmean = linalg.sqrtm(sigma_a @ sigma_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean)
    assert frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(expected, rel=1e-9)


def test_from_samples_approaches_the_population_distance():
    rng = np.random.default_rng(1)
    rotation = ortho_group.rvs(3, random_state=2)
    sigma_b = rotation @ np.diag([0.5, 2.0, 3.0]) @ rotation.T
    mu_b = np.array([1.0, -1.0, 0.5])
    a = rng.standard_normal((40000, 3))
    b = rng.multivariate_normal(mu_b, sigma_b, size=40000)
    expected = _closed_form(np.zeros(3), np.eye(3), mu_b, sigma_b)
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=0.03)


def test_identical_sets_and_statistics_conventions():
    features = np.random.default_rng(3).standard_normal((50, 4))
    mu, sigma = feature_statistics(features)
    np.testing.assert_allclose(sigma, np.cov(features.T, ddof=1))  # N - 1, as Clean-FID
    assert frechet_distance_from_features(features, features) == pytest.approx(0.0, abs=1e-8)


def test_rank_deficient_covariances_stay_finite():
    # fewer samples than dimensions: singular covariances still give a finite distance
    rng = np.random.default_rng(4)
    value = frechet_distance_from_features(rng.standard_normal((5, 16)), rng.standard_normal((5, 16)) + 1)
    assert np.isfinite(value) and value > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_few_samples_route_matches_the_covariance_route():
    # fewer samples than dimensions (the evaluation's 16-32 images, 2048-d features) go through the
    # singular values of the centred cross product: the same number as the d x d covariance route
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((12, 40)), rng.standard_normal((9, 40)) * 1.5 + 0.3
    value = frechet_distance_from_features(a, b)
    # (the eigenvalue route adds square roots of rounding noise on the zero eigenvalues: ~1e-8 relative)
    assert value == pytest.approx(frechet_distance(*feature_statistics(a), *feature_statistics(b)), rel=1e-7)
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    covmean = linalg.sqrtm(sigma_a @ sigma_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean)
    assert value == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
