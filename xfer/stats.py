"""How sure a reported accuracy, or a difference of two, is: 95% intervals and verdicts.

Pure numpy. scipy (the t, beta and binomial distributions) is imported inside the functions that
need it, so ``xfer.train``, which only needs :func:`wilson_interval`, runs where only torch is
installed.

The methods, and why:
- One accuracy, k of n test images right: the Wilson score interval (Wilson 1927). Unlike the
  normal approximation it never leaves [0, 1] and keeps close to its nominal coverage at the
  small n (8 test images) where the difference matters; Brown, Cai & DasGupta (2001) recommend
  it for n < 40.
- Several seeds of one configuration: mean ± Student's t interval of the seeds' values. It
  measures seed noise only (every seed is scored on the same test images), so
  ``xfer.uncertainty`` widens it by the test set's Wilson interval, and a paired difference of
  seed averages by the seeds' Welch interval (:func:`with_seed_noise`); one seed: none.
- Two models on the same test images (:func:`paired_difference`): the default is the exact
  interval that goes with McNemar's test. Only the images where exactly one model is right
  carry information; given their number d, the count b that model a alone got right is
  Binomial(d, pi), so a Clopper-Pearson interval for pi maps to the difference
  (b - c) / n = (2 pi - 1) d / n. Conditioning on d is McNemar's own framing, and with
  pi0 = 1/2 the binomial is symmetric, so the interval excludes 0 exactly when the exact
  two-sided McNemar p-value is below 1 - confidence: the verdict and the p-value never disagree.
  It needs 0/1 correctness; for seed-averaged correctness (fractions) use
  ``method="bootstrap"``: the percentile interval of the mean difference over images resampled
  with replacement (Efron & Tibshirani 1993, ch. 13), seeded, so a report is reproducible.
- Two accuracies on different test images (:func:`unpaired_difference`): Newcombe's hybrid
  score interval, built from the two Wilson intervals (Newcombe 1998, method 10).
- A verdict names a winner only when the interval excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
NO_DIFFERENCE = "no detectable difference"
PAIRED_METHODS = ("mcnemar", "bootstrap")


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided standard normal quantile: 1.959964 for 95%."""
    return NormalDist().inv_cdf(1 - (1 - _check_confidence(confidence)) / 2)


def wilson_interval(successes: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n``; (nan, nan) when n is 0.

    ``successes`` may be fractional (a mean accuracy times n). 7 of 8: about (0.529, 0.978).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes!r}, n={n!r}")
    if n == 0:
        return math.nan, math.nan
    z2 = z_value(confidence) ** 2
    p = successes / n
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(z2) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at p = 0 or 1 the bound is exactly 0 or 1; float rounding must not put it a hair inside
    return (0.0 if successes == 0 else max(0.0, centre - half),
            1.0 if successes == n else min(1.0, centre + half))


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion; (nan, nan) when n is 0."""
    from scipy.stats import beta

    alpha = 1 - _check_confidence(confidence)
    if n == 0:
        return math.nan, math.nan
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


def seed_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds ± Student's t interval; one value: no interval
    (low and high NaN); none: all NaN."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) == 1:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(1 - (1 - _check_confidence(confidence)) / 2, len(values) - 1)
                 * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def verdict(low: float, high: float, names: tuple[str, str] = ("pretrained", "scratch")) -> str:
    """"<a> better" when the interval of a - b lies above zero, "<b> better" below it,
    otherwise (zero inside, or no interval) "no detectable difference"."""
    if math.isfinite(low) and low > 0:
        return f"{names[0]} better"
    if math.isfinite(high) and high < 0:
        return f"{names[1]} better"
    return NO_DIFFERENCE


@dataclass(frozen=True)
class Difference:
    """a - b in accuracy with its interval. ``a_only`` / ``b_only``: images only a / only b got
    right (paired 0/1 inputs only); ``p_value``: exact McNemar (paired 0/1 inputs only)."""
    difference: float
    low: float
    high: float
    method: str  # how the interval was made, in words a report can print
    paired: bool
    verdict: str
    confidence: float = CONFIDENCE
    p_value: float = math.nan
    n: int = 0  # test images (paired) or the smaller test set (unpaired)
    a_only: int | None = None
    b_only: int | None = None


def mcnemar_p_value(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: the binomial test of a_only out of the discordant
    images at 1/2 (1.0 when no image is discordant)."""
    from scipy.stats import binomtest

    discordant = a_only + b_only
    return 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)


def paired_difference(correct_a, correct_b, confidence: float = CONFIDENCE, *, method: str = "mcnemar",
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                      names: tuple[str, str] = ("pretrained", "scratch")) -> Difference:
    """Accuracy of a minus accuracy of b on the same test images, in the same order.

    ``correct_a``, ``correct_b``: per image, 1/0 (or True/False) for right/wrong, or a fraction
    in [0, 1] (the share of a configuration's seeds that got the image right; bootstrap only).
    ``method``: "mcnemar" (default, exact, 0/1 only) or "bootstrap" (``resamples`` resamples of
    the images, generator seeded with ``seed``). See the module docstring for both.
    """
    confidence = _check_confidence(confidence)
    a, b = np.asarray(correct_a, dtype=float).ravel(), np.asarray(correct_b, dtype=float).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"paired_difference needs two equally long, non-empty lists, got {len(a)} and {len(b)}")
    if not (np.all((a >= 0) & (a <= 1)) and np.all((b >= 0) & (b <= 1))):
        raise ValueError("correctness must lie in [0, 1] per image")
    if method not in PAIRED_METHODS:
        raise ValueError(f"unknown method {method!r} (valid: {', '.join(PAIRED_METHODS)})")
    binary = bool(np.all((a == 0) | (a == 1)) and np.all((b == 0) | (b == 1)))
    n = len(a)
    difference = float(a.mean() - b.mean())
    a_only = int(((a == 1) & (b == 0)).sum()) if binary else None
    b_only = int(((a == 0) & (b == 1)).sum()) if binary else None
    p_value = mcnemar_p_value(a_only, b_only) if binary else math.nan
    if method == "mcnemar":
        if not binary:
            raise ValueError("method='mcnemar' needs 0/1 correctness; use method='bootstrap' for "
                             "seed-averaged correctness")
        low, high = _mcnemar_interval(a_only, b_only, n, confidence)
        words = "paired: exact McNemar"
    else:
        low, high = _bootstrap_interval(a - b, confidence, resamples, seed)
        words = f"paired: bootstrap, {resamples} resamples of the {n} test images"
    return Difference(difference, low, high, words, True, verdict(low, high, names), confidence,
                      p_value, n, a_only, b_only)


def _mcnemar_interval(a_only: int, b_only: int, n: int, confidence: float) -> tuple[float, float]:
    discordant = a_only + b_only
    if discordant == 0:
        # Both right or both wrong on every image: conditionally the difference is exactly 0,
        # which overstates what n images can show; bound it instead by the largest discordance
        # rate consistent with none seen (the Clopper-Pearson upper bound of 0 of n).
        largest = clopper_pearson(0, n, confidence)[1]
        return -largest, largest
    low, high = clopper_pearson(a_only, discordant, confidence)
    share = discordant / n
    return (2 * low - 1) * share, (2 * high - 1) * share


def _bootstrap_interval(differences: np.ndarray, confidence: float, resamples: int,
                        seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``differences`` over images resampled with
    replacement. The per-image differences take few distinct values, so a resample is a
    multinomial draw of how often each value comes up: the same distribution as drawing image
    indices, at O(resamples x distinct values) instead of O(resamples x n)."""
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100, got {resamples}")
    values, counts = np.unique(differences, return_counts=True)
    n = len(differences)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    means = draws @ values / n
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def unpaired_difference(accuracy_a: float, n_a: int, accuracy_b: float, n_b: int,
                        confidence: float = CONFIDENCE, *,
                        names: tuple[str, str] = ("pretrained", "scratch")) -> Difference:
    """a - b for accuracies measured on different test images: Newcombe's interval from the
    two Wilson intervals. Wider than a paired interval on the same images."""
    low_a, high_a = wilson_interval(accuracy_a * n_a, n_a, confidence)
    low_b, high_b = wilson_interval(accuracy_b * n_b, n_b, confidence)
    difference = accuracy_a - accuracy_b
    low = difference - math.hypot(accuracy_a - low_a, high_b - accuracy_b)
    high = difference + math.hypot(high_a - accuracy_a, accuracy_b - low_b)
    return Difference(difference, low, high, "unpaired: Newcombe, from the two Wilson intervals",
                      False, verdict(low, high, names), confidence, n=min(n_a, n_b))


def seeds_difference(values_a, values_b, confidence: float = CONFIDENCE, *,
                     names: tuple[str, str] = ("pretrained", "scratch")) -> Difference:
    """a - b between the seed means of two configurations (>= 2 seeds each): Welch's t
    interval. It measures seed noise, not test-set sampling noise."""
    from scipy.stats import t

    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"seeds_difference needs >= 2 values on each side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        low = high = difference
    else:
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(t.ppf(1 - (1 - _check_confidence(confidence)) / 2, dof)) * se
        low, high = difference - half, difference + half
    return Difference(difference, low, high, f"unpaired: Welch, across {len(a)} and {len(b)} seeds",
                      False, verdict(low, high, names), confidence)


def with_seed_noise(paired: Difference, values_a, values_b, confidence: float = CONFIDENCE, *,
                    names: tuple[str, str] = ("pretrained", "scratch")) -> Difference:
    """``paired`` (a paired bootstrap over the test images of seed-averaged correctness, which
    sees test-sampling noise only) widened by the seed noise of the per-seed accuracies
    ``values_a`` / ``values_b``: each side's half-width is the two combined in quadrature, the
    seed part a t half-width (Welch when both sides have >= 2 seeds; one-sample on the side
    that has, when the other has one seed, whose seed noise is then unknown and not counted).

    Why: seeds of one configuration scored on one test set can differ by far more than that
    test set's sampling noise (25% to 73% for three seeds of one 80-image fine-tune), and an
    interval that ignores it calls differences that a new seed would reverse."""
    from scipy.stats import t

    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    va = a.var(ddof=1) / len(a) if len(a) > 1 else 0.0
    vb = b.var(ddof=1) / len(b) if len(b) > 1 else 0.0
    if va + vb == 0:
        return paired
    if len(a) > 1 and len(b) > 1:
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        seeds = f"Welch across {len(a)} and {len(b)} seeds"
    else:
        dof = max(len(a), len(b)) - 1
        seeds = f"t across the {max(len(a), len(b))} seeds of one side (the other has one)"
    seed_half = float(t.ppf(1 - (1 - _check_confidence(confidence)) / 2, dof)) * math.sqrt(va + vb)
    difference = paired.difference
    low = difference - math.hypot(difference - paired.low, seed_half)
    high = difference + math.hypot(paired.high - difference, seed_half)
    return replace(paired, low=low, high=high, verdict=verdict(low, high, names),
                   method=f"{paired.method}, widened by seed noise ({seeds}), in quadrature")


def correctness(predictions: dict) -> np.ndarray:
    """1.0 where ``predicted`` equals ``labels``, per test image (a test_predictions.json)."""
    labels = np.asarray(predictions["labels"])
    predicted = np.asarray(predictions["predicted"])
    if labels.shape != predicted.shape:
        raise ValueError(f"labels and predicted differ in length: {labels.shape} vs {predicted.shape}")
    return (labels == predicted).astype(float)
