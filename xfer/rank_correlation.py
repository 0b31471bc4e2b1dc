"""Whether one ranking of a few items agrees with another: Spearman's rho with a 95% interval,
and whether a score's top item is the measured best.

Pure numpy; scipy (``spearmanr``) is imported inside :func:`spearman`, so importing this module
costs nothing where only the report's text is built.

The use: a transferability score (LogME, k-NN accuracy; ``xfer.transferability``) is worth its
forward pass only if it ranks backbones as fine-tuning them does. Only the ranking matters (a
LogME value alone means little), so the measure is a rank correlation across backbones.

The methods, and why:
- Spearman's rho (Spearman 1904): Pearson's correlation of the ranks, tied values given the
  average of the ranks they span, as ``scipy.stats.spearmanr`` does; its p-value is
  scipy's (a t approximation, rough at small n).
- Its interval: Fisher's z-transform, z = atanh(rho), taken as normal with the standard error
  sqrt((1 + rho^2 / 2) / (n - 3)) of Bonett & Wright (2000, Psychometrika 65:23-28), and the
  bounds transformed back with tanh. Pearson's 1 / sqrt(n - 3) is too narrow for Spearman's rho
  (its sampling variance is larger). Bonett & Wright's simulations support it for n >= 10 and
  |rho| <= 0.9; below that, which is where a handful of backbones falls, it is an approximation
  of unchecked coverage. It needs n >= 4 (n - 3 > 0).
- A top pick (:func:`picks_best`): whether the item a score ranks first is the measured best,
  any of the best when several tie.

What the interval means: the range of population rank correlations (over backbones like these
on data like this) that the n observed are consistent with, at 95%. With the 4 to 6 backbones a
sweep scores it is wide, honestly so: rho = 0.9 from 5 backbones gives about [-0.17, +1.00], not
even excluding zero, and a perfect ranking of 5 about [+0.16, +1.00] (of 4: [-0.69, +1.00]).
A report can then say the ranking agrees only loosely; with n <= 3 no interval is given at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xfer.stats import CONFIDENCE, z_value

MIN_FOR_INTERVAL = 4  # n - 3 > 0 in the Fisher-z standard error


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of ``n`` pairs with its interval (``low``, ``high``; NaN when there is
    none, and ``method`` says why), and scipy's two-sided p-value for rho = 0 (NaN without)."""
    rho: float
    low: float
    high: float
    n: int
    method: str  # how rho and the interval were made, or why they were not, in words a report prints
    p_value: float = math.nan
    confidence: float = CONFIDENCE

    def text(self) -> str:
        """"ρ = +0.80 [−0.46, +0.99]", "ρ = +1.00 (needs at least 4 items for an interval)"."""
        if not math.isfinite(self.rho):
            return f"ρ undefined ({self.method})"
        text = f"ρ = {self.rho:+.2f}"
        if math.isfinite(self.low) and math.isfinite(self.high):
            return text + f" [{self.low:+.2f}, {self.high:+.2f}]"
        return text + f" ({self.method})"


def _pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The two as float arrays, pairs with a missing (non-finite) value on either side left out."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"need two equally long lists, one value per item, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def spearman(x, y, confidence: float = CONFIDENCE) -> RankCorrelation:
    """Spearman's rho between ``x`` and ``y`` (one value each per item, same order) with its
    Fisher-z interval (Bonett & Wright's standard error; see the module docstring).

    Pairs with a NaN on either side are left out and ``n`` counts the rest. Fewer than 2 pairs,
    or a constant side (no ranking to compare), give rho NaN; fewer than 4, no interval. Neither
    raises: a report prints ``method``. Cost: two sorts, O(n log n)."""
    from scipy.stats import spearmanr

    x, y = _pairs(x, y)
    n = len(x)
    if n < 2:
        return RankCorrelation(math.nan, math.nan, math.nan, n, f"needs at least 2 items, got {n}",
                               confidence=confidence)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        # spearmanr would warn and return NaN; say which side gives no ranking instead
        side = "the score" if np.ptp(x) == 0 else "the accuracy"
        return RankCorrelation(math.nan, math.nan, math.nan, n,
                               f"{side} is the same for all {n} items, so it ranks nothing",
                               confidence=confidence)
    result = spearmanr(x, y)
    rho = float(np.clip(result.statistic, -1.0, 1.0))  # rounding can put a perfect rho a hair past 1
    p_value = float(result.pvalue)
    if n < MIN_FOR_INTERVAL:
        return RankCorrelation(rho, math.nan, math.nan, n,
                               f"Spearman; needs at least {MIN_FOR_INTERVAL} items for an interval, got {n}",
                               p_value, confidence)
    low, high = _fisher_interval(rho, n, confidence)
    return RankCorrelation(rho, low, high, n,
                           f"Spearman, Fisher-z {confidence:.0%} interval (Bonett-Wright SE), n = {n}",
                           p_value, confidence)


def _fisher_interval(rho: float, n: int, confidence: float) -> tuple[float, float]:
    """tanh(atanh(rho) -+ z * SE). atanh(+-1) is infinite, so |rho| is first capped at
    :func:`_largest_transformable`: capped at 1 - 1e-12 instead, a perfect ranking of 5 items
    would get the interval [1.00, 1.00], a certainty 5 items cannot give."""
    edge = _largest_transformable(n)
    clipped = min(max(rho, -edge), edge)
    z = math.atanh(clipped)
    half = z_value(confidence) * math.sqrt((1 + clipped ** 2 / 2) / (n - 3))
    # tanh keeps both bounds inside [-1, 1]; min/max keep rho inside them despite the clipping
    return min(math.tanh(z - half), rho), max(math.tanh(z + half), rho)


def _largest_transformable(n: int) -> float:
    """Halfway between 1 and the largest Spearman rho below 1 that n untied items can give
    (one adjacent pair swapped: 1 - 12 / (n^3 - n)), i.e. 1 - 6 / (n^3 - n): a perfect rho is
    treated as the most it could be, short of certain, at this n. A convention (rho = 1 has no
    Fisher-z interval), and a conservative one: n = 5 gives 0.95, so [+0.16, +1.00]."""
    return 1 - 6 / (n ** 3 - n)


def picks_best(scores, accuracies) -> bool:
    """Whether the item with the highest score has the highest accuracy (any of the best when
    several tie). Items with a NaN on either side are left out. Several items tied at the top
    of the scores: it counts only when every one of them is a best, since the score does not
    choose between them. Raises ValueError when no item has both values."""
    scores, accuracies = _pairs(scores, accuracies)
    if len(scores) == 0:
        raise ValueError("picks_best needs at least one item with both a score and an accuracy")
    top = scores == scores.max()
    best = accuracies == accuracies.max()
    return bool(np.all(best[top]))
