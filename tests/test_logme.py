"""LogME against the Gaussian marginal likelihood written out with numpy, its two eigenvalue
paths against each other, and its ranking of synthetic features whose information is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from xfer import logme as lm

# four images, two dimensions, two classes (written out so the case can be checked by hand)
F = np.array([[1.0, 0.2],
              [0.8, -0.3],
              [0.1, 1.1],
              [-0.2, 0.7]])
LABELS = np.array([0, 0, 1, 1])


def log_marginal(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I / beta + F F^T / alpha): w ~ N(0, I / alpha) integrated out of
    y = F w + N(0, I / beta), with no eigendecomposition and no fixed point."""
    n = len(y)
    covariance = np.eye(n) / beta + features @ features.T / alpha
    sign, log_det = np.linalg.slogdet(covariance)
    assert sign > 0
    return -0.5 * (n * math.log(2 * math.pi) + log_det + y @ np.linalg.solve(covariance, y))


@pytest.mark.parametrize("label", [0, 1])
def test_evidence_is_the_gaussian_log_marginal_at_its_alpha_and_beta(label):
    result = {c.label: c for c in lm.logme_per_class(F, LABELS)}[label]
    y = (LABELS == label).astype(float)
    assert 0 < result.alpha < math.inf and 0 < result.beta < math.inf
    assert 1 <= result.iterations < lm.MAX_ITERATIONS  # converged, not cut off
    assert result.evidence_per_sample * 4 == pytest.approx(log_marginal(F, y, result.alpha, result.beta),
                                                           abs=1e-8)


@pytest.mark.parametrize("label", [0, 1])
def test_the_fixed_point_is_the_maximum_of_the_marginal(label):
    """Maximise the exact marginal over (log alpha, log beta) from elsewhere (alpha = e^3,
    beta = e^-2, far from LogME's start at 1, 1): same maximum, at the same alpha and beta."""
    result = {c.label: c for c in lm.logme_per_class(F, LABELS)}[label]
    y = (LABELS == label).astype(float)
    best = minimize(lambda p: -log_marginal(F, y, math.exp(p[0]), math.exp(p[1])), x0=[3.0, -2.0],
                    method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
    assert best.success
    assert -best.fun / 4 == pytest.approx(result.evidence_per_sample, abs=1e-4)
    assert math.exp(best.x[0]) == pytest.approx(result.alpha, rel=1e-2)
    assert math.exp(best.x[1]) == pytest.approx(result.beta, rel=1e-2)


def test_logme_is_the_mean_over_classes_of_the_evidence_per_sample():
    per_class = lm.logme_per_class(F, LABELS)
    assert [c.label for c in per_class] == [0, 1]
    assert lm.logme(F, LABELS) == pytest.approx(np.mean([c.evidence_per_sample for c in per_class]), abs=1e-15)
    # any integer ids: the same classes under other names score the same
    assert lm.logme(F, np.array([7, 7, -3, -3])) == pytest.approx(lm.logme(F, LABELS), abs=1e-12)


@pytest.mark.parametrize("n, d", [(12, 40), (40, 12), (25, 25)])
def test_the_feature_and_sample_gram_paths_agree(n, d):
    rng = np.random.default_rng(n * 100 + d)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, d)) + 0.8 * np.eye(3)[labels] @ rng.normal(size=(3, d))
    by_features = lm.logme_per_class(features, labels, gram="features")
    by_samples = lm.logme_per_class(features, labels, gram="samples")
    for a, b in zip(by_features, by_samples, strict=True):
        assert a.evidence_per_sample == pytest.approx(b.evidence_per_sample, abs=1e-8)
        assert a.alpha == pytest.approx(b.alpha, rel=1e-6) and a.beta == pytest.approx(b.beta, rel=1e-6)
    assert lm.logme(features, labels) == pytest.approx(lm.logme(features, labels, gram="features"), abs=1e-8)


def test_rank_deficient_features_count_their_zero_eigenvalues():
    """A duplicated column adds a zero eigenvalue to F^T F; both paths must still agree with
    the exact marginal (where the zero eigenvalue's log alpha terms cancel)."""
    features = np.hstack([F, F[:, :1]])
    result = lm.logme_per_class(features, LABELS, gram="features")[0]
    other = lm.logme_per_class(features, LABELS, gram="samples")[0]
    y = (LABELS == 0).astype(float)
    exact = log_marginal(features, y, result.alpha, result.beta)
    assert result.evidence_per_sample * 4 == pytest.approx(exact, abs=1e-8)
    assert other.evidence_per_sample == pytest.approx(result.evidence_per_sample, abs=1e-8)


N, CLASSES, D = 300, 3, 32


def synthetic(seed: int = 0):
    """Labels, and three feature sets: one-hot of the class + small noise (separates the
    classes perfectly), 3 weakly informative dimensions among 32 (partly informative), and
    Gaussian noise independent of the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, N)
    onehot = np.eye(CLASSES)[labels]
    perfect = np.hstack([onehot, np.zeros((N, D - CLASSES))]) + 0.1 * rng.normal(size=(N, D))
    partial = rng.normal(size=(N, D))
    partial[:, :CLASSES] += onehot
    return labels, perfect, partial, rng.normal(size=(N, D))


def shuffle_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Permute the labels of a random ``fraction`` of the images among themselves."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    out[chosen] = rng.permutation(out[chosen])
    return out


def test_more_informative_features_score_higher():
    labels, perfect, partial, noise = synthetic()
    scores = [lm.logme(f, labels) for f in (perfect, partial, noise)]
    assert scores[0] > scores[1] + 0.5 and scores[1] > scores[2] + 0.05, scores
    # half the labels shuffled: the perfect features become partly informative, in between
    half = lm.logme(perfect, shuffle_labels(labels, 0.5, seed=3))
    assert scores[0] > half > scores[2], (scores, half)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_score_falls_as_more_labels_are_shuffled(seed):
    labels, perfect, _, _ = synthetic()
    scores = [lm.logme(perfect, shuffle_labels(labels, f, seed)) for f in (0.0, 0.3, 0.6, 1.0)]
    assert all(a > b + 0.02 for a, b in zip(scores, scores[1:])), scores


def test_permuting_the_images_and_scaling_the_features_change_nothing():
    labels, _, partial, _ = synthetic()
    order = np.random.default_rng(9).permutation(N)
    base = lm.logme(partial, labels)
    assert lm.logme(partial[order], labels[order]) == pytest.approx(base, abs=1e-10)
    # alpha absorbs a feature scale (w -> w / c), so the maximised evidence does not move
    assert lm.logme(1000.0 * partial, labels) == pytest.approx(base, abs=1e-6)


def test_features_orthogonal_to_a_class_take_the_infinite_alpha_limit():
    """F^T y = 0 for class 0 (its two images cancel): the weights are best pinned at zero, the
    evidence is that of y ~ N(0, I / beta) at beta = N / ||y||^2, i.e. -(1 + log(2 pi / 2)) / 2
    per image for 2 ones among 4."""
    features = np.array([[1.0], [-1.0], [0.5], [2.0]])
    result = lm.logme_per_class(features, [0, 0, 1, 1])[0]
    assert result.alpha == math.inf and result.beta == pytest.approx(2.0)
    assert result.evidence_per_sample == pytest.approx(-(1 + math.log(math.pi)) / 2, abs=1e-12)
    assert math.isfinite(lm.logme(np.zeros((6, 3)), [0, 1, 2, 0, 1, 2]))


def test_fewer_images_than_dimensions_every_class_matches_the_exact_marginal():
    """N < D: F has rank N, every class can be fitted exactly, and for some the maximum lies
    at beta = inf (seeded so that class 0 does): there the evidence is the limit
    log N(y; 0, F F^T / alpha), elsewhere the marginal at the reported alpha and beta."""
    rng = np.random.default_rng(1240)
    labels = rng.integers(0, 3, 12)
    features = rng.normal(size=(12, 40)) + 0.8 * np.eye(3)[labels] @ rng.normal(size=(3, 40))
    results = lm.logme_per_class(features, labels)
    assert results[0].beta == math.inf
    for result in results:
        y = (labels == result.label).astype(float)
        exact = log_marginal(features, y, result.alpha, min(result.beta, 1e13))
        assert result.evidence_per_sample * 12 == pytest.approx(exact, abs=1e-6)


def test_labels_exactly_linear_in_few_features_score_finite_at_the_noise_cap_and_highest():
    """One-hot features with more images than classes (or duplicated images): y = F e_c with no
    noise, where the density at y grows without bound as beta -> inf. beta stops at BETA_MAX,
    so the score is finite, the same by either Gram matrix, and above the same features with
    a little noise."""
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    features = np.eye(3)[labels]
    scores = []
    for gram in ("features", "samples"):
        results = lm.logme_per_class(features, labels, gram=gram)
        assert all(math.isfinite(r.evidence_per_sample) and r.beta == lm.BETA_MAX for r in results)
        scores.append(lm.logme(features, labels, gram=gram))
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)
    noisy = features + 0.05 * np.random.default_rng(0).normal(size=features.shape)
    assert scores[0] > lm.logme(noisy, labels)


@pytest.mark.parametrize("features, labels, words", [
    (np.ones(4), [0, 1, 0, 1], "2-D"),
    (np.ones((4, 2)), [0, 1, 0], "one class id per row"),
    (np.ones((4, 2)), [[0, 1], [0, 1]], "one class id per row"),
    (np.ones((4, 2)), [0, 0, 0, 0], "at least 2 classes"),
    (np.ones((4, 2)), [0.0, 1.0, 0.0, 1.0], "integer class ids"),
    (np.array([[1.0, np.nan], [0, 1], [1, 1], [2, 0]]), [0, 1, 0, 1], "NaN or infinite"),
    (np.array([[1.0, np.inf], [0, 1], [1, 1], [2, 0]]), [0, 1, 0, 1], "NaN or infinite"),
    (np.ones((4, 0)), [0, 1, 0, 1], "no dimensions"),
])
def test_bad_input_raises_a_value_error_that_says_what_is_wrong(features, labels, words):
    with pytest.raises(ValueError, match=words):
        lm.logme(features, labels)
    with pytest.raises(ValueError, match="unknown gram"):
        lm.logme(F, LABELS, gram="both")
