"""LogME: how well a backbone's frozen features suit a labelled data set, without training.

Pure numpy. The method is LogME (You, Liu, Wang & Long, "LogME: Practical Assessment of
Pre-trained Models for Transfer Learning", ICML 2021, Algorithm 1):

- Per class, the one-hot target y (1 for the class's images, 0 otherwise) is modelled as a
  Bayesian linear regression on the features F (N images x D dimensions):
  y = F w + noise, w ~ N(0, I / alpha), noise ~ N(0, I / beta). With w integrated out,
  y ~ N(0, I / beta + F F^T / alpha), and the log of that density at the observed y is the
  *evidence* (marginal likelihood) of the features for that class.
- alpha and beta are not chosen by hand but set to maximise the evidence, by MacKay's
  fixed-point updates (MacKay, "Bayesian Interpolation", 1992; Bishop, "Pattern Recognition and Machine Learning", 2006,
  sec. 3.5.2): gamma = sum_i beta s_i / (alpha + beta s_i) (the effective number of
  parameters, s_i the eigenvalues of F^T F), m = beta A^-1 F^T y with A = alpha I + beta F^T F,
  alpha = gamma / m.m, beta = (N - gamma) / ||y - F m||^2, from alpha = beta = 1 until
  lambda = alpha / beta changes by less than 0.1% (relative), or 100 iterations.
- The score is the evidence divided by N, averaged over the classes.

What a higher score means: features on which a linear model explains the labels with higher
marginal evidence, i.e. the labels are close to a linear function of the features, without
needing large weights or large noise to get there. Across backbones scored on the same data,
the paper finds the LogME ranking tracks the ranking by fine-tuned accuracy (measured by a
weighted Kendall's tau between the two, over ImageNet backbones and several downstream
classification data sets), at a small fraction of the cost of fine-tuning. Only that ranking is meaningful: the absolute value depends on N, D and the number
of classes, so compare backbones on the same images, never scores across data sets.

Cost: one eigendecomposition shared by every class. F^T F (D x D) costs O(N D^2) to form and
O(D^3) to decompose; when N < D, F F^T (N x N) has the same nonzero eigenvalues and costs
O(N^2 D + N^3) instead, so the smaller of the two is used (both give the same score, to
rounding). Projecting the C classes' labels onto the eigenvectors costs O(N D + D^2 C) (class
sums of the features, then a product), or O(N^2) via F F^T (class sums of its eigenvectors). In that eigenbasis every
quantity of an iteration is a sum over the r = rank(F) <= min(N, D) eigenvalues, so an
iteration costs O(r) per class (Algorithm 1 as printed recomputes m, O(D^2); the authors' later
code uses the same diagonal sums as here). Informative features converge in a handful of
iterations; on features that explain a class poorly alpha drifts upwards slowly and the
iteration can run to its cap of 100, which at O(r) each is still cheap. Measured: 50,000
images x 512 dimensions, 100 classes, about 4 s on two cores, most of it forming F^T F.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 100
TOLERANCE = 1e-3  # relative change of lambda = alpha / beta that stops the iteration
# gamma (the effective number of fitted weights), or N - gamma, below this: alpha, or beta, is
# at its infinite limit, and the evidence within about this many nats of the limit's
AT_LIMIT = 1e-9
# the part of ||y||^2 outside F's column space below this share of it is rounding: y is exact
EXACT = 1e-10
GRAMS = ("auto", "features", "samples")
BETA_MAX = 1e6  # noise precision cap: noise sd 0.001 on the 0/1 targets (see _class_evidence)


@dataclass(frozen=True)
class ClassEvidence:
    """One class's result: the log evidence of its one-hot target divided by N, and the alpha
    (prior precision of the weights) and beta (noise precision) that maximise it.

    Either can be inf, where the maximum lies at a limit. alpha is inf when the features
    explain too little of the class (F^T y = 0, or close to it): the evidence is largest with
    every weight pinned at zero. beta is inf when weights exist that fit y exactly with
    rank(F) = N (N <= D): the evidence has a finite limit there. When y lies in the span of
    fewer than N feature directions (one-hot features, duplicated images) the evidence would
    grow without bound; beta stops at ``BETA_MAX`` instead, and the score stays finite."""
    label: int
    evidence_per_sample: float
    alpha: float
    beta: float
    iterations: int


@dataclass(frozen=True)
class _Spectrum:
    """F in the eigenbasis of its Gram matrix: the r positive eigenvalues of F^T F, the labels'
    coordinates on the matching left singular vectors (r x classes), and the squared norm of
    each label column outside F's column space (which no weight can fit)."""
    eigenvalues: np.ndarray
    coordinates: np.ndarray
    outside: np.ndarray
    n: int
    d: int


def logme(features, labels, *, gram: str = "auto") -> float:
    """The LogME score of ``features`` (N x D) for the integer class ids ``labels`` (N,):
    the mean over classes of each class's log evidence per sample. Higher is better; compare
    only backbones scored on the same images (see the module docstring)."""
    return float(np.mean([c.evidence_per_sample for c in logme_per_class(features, labels, gram=gram)]))


def logme_per_class(features, labels, *, gram: str = "auto") -> list[ClassEvidence]:
    """Each class's evidence, alpha and beta, in the order of the sorted class ids present.

    ``gram``: which Gram matrix to decompose: "features" (F^T F, D x D), "samples" (F F^T,
    N x N) or "auto" (the smaller one). They give the same result to rounding."""
    features, classes, index = _check(features, labels, gram)
    use_features = features.shape[0] >= features.shape[1] if gram == "auto" else gram == "features"
    spectrum = (_spectrum_from_features if use_features else _spectrum_from_samples)(features, index, len(classes))
    return [_class_evidence(int(label), spectrum, j) for j, label in enumerate(classes)]


def _check(features, labels, gram: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if gram not in GRAMS:
        raise ValueError(f"unknown gram {gram!r} (valid: {', '.join(GRAMS)})")
    features = np.asarray(features, dtype=np.float64)  # float64 throughout: eigenvalues span decades
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (images x dimensions), got shape {features.shape}")
    if labels.ndim != 1 or len(labels) != features.shape[0]:
        raise ValueError(f"labels must be a 1-D array with one class id per row of features: got shape "
                         f"{labels.shape} for {features.shape[0]} rows")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype} "
                         "(cast with labels.astype(int) if they are whole numbers)")
    if features.shape[1] == 0:
        raise ValueError("features have no dimensions (shape (N, 0))")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"features contain {int((~np.isfinite(features)).sum())} NaN or infinite values")
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"LogME needs at least 2 classes among the labels, got {len(classes)}")
    return features, classes, index.ravel()


def _rank_cut(eigenvalues: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which eigenvalues count as nonzero. A Gram matrix's eigenvalues carry rounding error of
    about max * eps each (forming F^T F squares F's condition number), so those below
    max * max(N, D) * eps are noise, and may even be negative: numpy's matrix_rank rule,
    applied to the Gram matrix itself."""
    return eigenvalues > eigenvalues.max(initial=0.0) * max(shape) * np.finfo(np.float64).eps


def _class_sums(rows: np.ndarray, index: np.ndarray, classes: int) -> np.ndarray:
    """Y^T rows for the one-hot Y of ``index`` (classes x columns), in O(N x columns) without
    building Y, which at 100,000 images and 1,000 classes would be 800 MB."""
    sums = np.zeros((classes, rows.shape[1]))
    np.add.at(sums, index, rows)
    return sums


def _spectrum_from_features(features: np.ndarray, index: np.ndarray, classes: int) -> _Spectrum:
    """Via F^T F (D x D): O(N D^2 + D^3). The left singular vectors are F v / sqrt(s), so a
    label's coordinate is v^T (F^T y) / sqrt(s), and F^T y is the class's sum of features:
    O(N D) for every class together, never an N x D matrix of singular vectors."""
    eigenvalues, vectors = np.linalg.eigh(features.T @ features)
    keep = _rank_cut(eigenvalues, features.shape)
    s = eigenvalues[keep]
    coordinates = (vectors[:, keep].T @ _class_sums(features, index, classes).T) / np.sqrt(s)[:, None]
    # ||y||^2 - ||projection||^2: y is 0/1, so its squared norm is the class count, exactly
    counts = np.bincount(index, minlength=classes).astype(np.float64)
    outside = np.maximum(counts - (coordinates ** 2).sum(axis=0), 0.0)
    if len(s) == features.shape[0]:
        outside[:] = 0.0  # rank N: F's columns span all of R^N, the subtraction left only rounding
    return _Spectrum(s, coordinates, outside, *features.shape)


def _spectrum_from_samples(features: np.ndarray, index: np.ndarray, classes: int) -> _Spectrum:
    """Via F F^T (N x N): O(N^2 D + N^3), cheaper when N < D. Its eigenvectors are the left
    singular vectors themselves, all N of them, so the part of y outside F's column space is a
    sum of squares over the zero eigenvalues' coordinates (no subtraction, no cancellation)."""
    eigenvalues, vectors = np.linalg.eigh(features @ features.T)
    keep = _rank_cut(eigenvalues, features.shape)
    projected = _class_sums(vectors, index, classes).T  # U^T y: the class's sum of U's rows
    outside = (projected[~keep] ** 2).sum(axis=0)
    return _Spectrum(eigenvalues[keep], projected[keep], outside, *features.shape)


def _class_evidence(label: int, spectrum: _Spectrum, column: int) -> ClassEvidence:
    """Algorithm 1 for one class, in the eigenbasis, then the evidence at the final alpha, beta
    (recomputed there, so the value is exactly the log marginal likelihood at the reported
    alpha and beta, not at the iterate before). The two ways the maximum can lie at infinity
    are taken as limits: iterating towards them is slow, and ends in overflow."""
    s, x2 = spectrum.eigenvalues, spectrum.coordinates[:, column] ** 2
    n, outside = spectrum.n, float(spectrum.outside[column])
    if not np.any(x2 > 0):
        return _no_information(label, n, outside, 0)  # F^T y = 0 exactly: nothing to fit
    # When y is a linear function of fewer than N feature directions (one-hot features, or
    # duplicated images with their labels, common among small sets of plots), the evidence grows
    # without bound as beta -> infinity. beta is capped at BETA_MAX instead (noise sd 0.001 on
    # 0/1 targets): every backbone gets a finite, comparable score, where the unbounded limit
    # would rank them all equal at +inf. The authors' code does the same with a 1e-5 in the
    # update's denominator.
    alpha, beta = 1.0, 1.0
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        lam = alpha / beta
        gamma, spare, m2, residual = _moments(s, x2, outside, lam, n)
        if gamma < AT_LIMIT:
            return _no_information(label, n, float(x2.sum()) + outside, iterations)
        if spare < AT_LIMIT and outside == 0 and len(s) == n:
            return _exact_fit(label, s, x2, iterations)
        if not m2 > 0:
            break  # underflow: keep the last pair
        alpha = gamma / m2
        beta = min(spare / residual, BETA_MAX) if residual > 0 else BETA_MAX
        if beta == BETA_MAX and outside == 0 and len(s) == n:
            return _exact_fit(label, s, x2, iterations)  # rank N: the limit is finite, take it
        if abs(alpha / beta - lam) <= TOLERANCE * lam:
            break
    return ClassEvidence(label, _evidence(spectrum, x2, outside, alpha, beta) / n, alpha, beta, iterations)


def _no_information(label: int, n: int, norm2: float, iterations: int) -> ClassEvidence:
    """alpha -> infinity: every weight pinned at zero, y ~ N(0, I / beta), whose evidence is
    largest at beta = N / ||y||^2, where it is -N/2 (1 + log(2 pi ||y||^2 / N))."""
    beta = n / norm2
    evidence = n / 2 * math.log(beta) - n / 2 - n / 2 * math.log(2 * math.pi)
    return ClassEvidence(label, evidence / n, math.inf, beta, iterations)


def _exact_fit(label: int, s: np.ndarray, x2: np.ndarray, iterations: int) -> ClassEvidence:
    """beta -> infinity, possible only when F has rank N (N <= D), so that some weights fit y
    exactly: y ~ N(0, F F^T / alpha), whose evidence is largest at alpha = N / y^T (F F^T)^-1 y,
    where it is -1/2 (N log 2 pi + log |F F^T| - N log alpha + N)."""
    n = len(s)
    alpha = n / float((x2 / s).sum())
    evidence = -0.5 * (n * math.log(2 * math.pi) + float(np.log(s).sum()) - n * math.log(alpha) + n)
    return ClassEvidence(label, evidence / n, alpha, math.inf, iterations)


def _moments(s: np.ndarray, x2: np.ndarray, outside: float, lam: float,
             n: int) -> tuple[float, float, float, float]:
    """gamma, N - gamma, m.m and ||y - F m||^2 at lambda = alpha / beta, as sums over the
    eigenvalues (m_i = sqrt(s_i) x_i / (lambda + s_i) in the eigenbasis, the residual's
    component lambda x_i / (lambda + s_i)): O(r) instead of forming m and F m. N - gamma is
    summed directly, not subtracted, so that it keeps its digits as gamma approaches N."""
    shrink = lam / (lam + s)
    gamma = float((s / (lam + s)).sum())
    spare = float(shrink.sum()) + (n - len(s))
    m2 = float((s * x2 / (lam + s) ** 2).sum())
    residual = float((x2 * shrink ** 2).sum() + outside)
    return gamma, spare, m2, residual


def _evidence(spectrum: _Spectrum, x2: np.ndarray, outside: float, alpha: float, beta: float) -> float:
    """log p(y | alpha, beta) (Bishop eq. 3.86): the D - r zero eigenvalues of F^T F each add
    log alpha to log |A|, which is where D enters."""
    s, n, d = spectrum.eigenvalues, spectrum.n, spectrum.d
    _, _, m2, residual = _moments(s, x2, outside, alpha / beta, n)
    log_det = float(np.log(alpha + beta * s).sum()) + (d - len(s)) * math.log(alpha)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - log_det / 2
            - beta / 2 * residual - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi))
