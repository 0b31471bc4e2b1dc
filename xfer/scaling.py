"""Learning curves over dataset size: fit accuracy(n), forecast it, and find where scratch
catches up with pretrained.

Pure numpy.

The model, and why:
- Accuracy against the number of training images n follows a saturating power law,
  acc(n) = a - b n^(-c): a is the accuracy the curve tends to with unlimited data, b the gap
  to it at n = 1, and c how fast the gap closes. Hestness et al. ("Deep Learning Scaling is
  Predictable, Empirically", 2017) find power-law error curves across domains once past the
  small-data region; Rosenfeld et al. ("A Constructive Prediction of the Generalization Error
  Across Scales", ICLR 2020) fit the same form; Viering & Loog ("The Shape of Learning Curves:
  a Review", TPAMI 2022) survey where it holds and where it does not (curves that are not
  monotone, or that change regime). Three parameters need at least three sizes
  (:data:`MIN_SIZES`); checking a forecast against a size it did not see needs a fourth
  (:data:`MIN_SIZES_HOLDOUT`).
- The fit is weighted least squares, by variable projection (for a fixed c the model is linear
  in a and b; see :func:`_fit_rows`): each point weighted by the inverse of its binomial
  variance p (1 - p) / m (m images evaluated), so a size measured on more images, or nearer
  0% or 100%, counts for more. p is the Agresti-Coull estimate (k + 2) / (m + 4) (Agresti &
  Coull 1998: two right and two wrong added), not k / m: a size at exactly 0% or 100% would
  otherwise have zero variance, infinite weight, and force the curve through itself.
- Bounds: 0 <= a <= 1, or <= the ceiling when the data set's audit knows the best achievable
  accuracy; b >= 0 (in this model accuracy never falls with more data); c in [0.01, 3]
  (flatter than 0.01 is indistinguishable from constant over any measured range; steeper than
  3 is beyond what learning curves show). n is divided by the smallest size inside the fit,
  so that b is the gap at that size and the three parameters are of order one.
- Intervals come from the bootstrap over evaluation images (Efron & Tibshirani 1993): a size
  with k of m images right, resampled m times with replacement, has Binomial(m, k / m) right,
  exactly, not as an approximation. So a resample draws one binomial count per size,
  independently, and refits (all resamples in one vectorised search: 400 take ~30 ms);
  forecasts and crossovers take the percentile interval over the refits. This sees the noise
  of a finite validation set only: with seeds pooled into m it treats every (seed, image)
  evaluation as its own draw, it does not see training noise (seed to seed, or the sampling of
  the n training images), and it cannot see a curve that leaves the power law beyond the
  measured range, which is what :func:`holdout_check` probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xfer.stats import CONFIDENCE

MIN_SIZES = 3  # a forecast needs at least three sizes: the power law has three parameters
MIN_SIZES_HOLDOUT = 4  # three to fit, one held out to check the forecast against
MIN_RESAMPLES = 100
C_BOUNDS = (0.01, 3.0)
C_GRID = 61  # exponents tried per fit, log-spaced over C_BOUNDS (10% apart), before polishing
GOLDEN_STEPS = 40  # golden-section steps in log c: the cell shrinks by 0.618^40, to ~1e-9
GRID_PER_DECADE = 100  # crossover grid: 2.3% steps in n, then linear interpolation in log n


@dataclass(frozen=True)
class PowerLaw:
    """acc(n) = a - b n^(-c)."""
    a: float
    b: float
    c: float

    def __call__(self, n) -> np.ndarray:
        return self.a - self.b * np.asarray(n, dtype=float) ** -self.c


@dataclass(frozen=True)
class Forecast:
    """The fitted accuracy at ``n`` and its bootstrap percentile interval."""
    n: float
    accuracy: float
    low: float
    high: float


@dataclass(frozen=True)
class Curve:
    """Measured points (one per dataset size), the power law fitted to them, and the fits to
    ``len(bootstrap)`` bootstrap resamples of their evaluation images."""
    n: tuple[float, ...]
    accuracy: tuple[float, ...]
    evaluated: tuple[int, ...]
    fit: PowerLaw
    bootstrap: tuple[PowerLaw, ...]
    confidence: float = CONFIDENCE
    ceiling: float | None = None

    @property
    def smallest_n(self) -> float:
        return min(self.n)

    @property
    def largest_n(self) -> float:
        return max(self.n)

    def draws(self, n) -> np.ndarray:
        """Every bootstrap fit's accuracy at each of ``n``: resamples x len(n)."""
        a, b, c = (np.array([getattr(p, k) for p in self.bootstrap])[:, None] for k in "abc")
        return a - b * np.atleast_1d(np.asarray(n, dtype=float))[None, :] ** -c

    def predict(self, n: float) -> Forecast:
        """The fit at ``n`` with the percentile interval of the bootstrap fits there."""
        tail = (1 - self.confidence) / 2
        low, high = np.quantile(self.draws(n)[:, 0], [tail, 1 - tail])
        return Forecast(float(n), float(self.fit(n)), float(low), float(high))


def _points(n, accuracy, evaluated, minimum: int, purpose: str) -> tuple[np.ndarray, ...]:
    n, accuracy, evaluated = (np.asarray(v, dtype=float) for v in (n, accuracy, evaluated))
    if not (n.ndim == accuracy.ndim == evaluated.ndim == 1 and len(n) == len(accuracy) == len(evaluated)):
        raise ValueError(f"n, accuracy and evaluated must be 1-D and equally long, got shapes "
                         f"{n.shape}, {accuracy.shape}, {evaluated.shape}")
    sizes = len(np.unique(n))
    if sizes < minimum:
        raise ValueError(f"{purpose} needs at least {minimum} distinct dataset sizes, got {sizes}")
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"dataset sizes n must be positive and finite, got {n.tolist()}")
    if not np.all((accuracy >= 0) & (accuracy <= 1)):  # NaN fails both comparisons too
        raise ValueError(f"accuracy must lie in [0, 1] (a fraction, not a percentage), got {accuracy.tolist()}")
    if not np.all((evaluated >= 1) & (evaluated == np.round(evaluated))):
        raise ValueError(f"evaluated must be whole numbers of validation images >= 1, got {evaluated.tolist()}")
    return n, accuracy, evaluated


def _upper_a(ceiling: float | None) -> float:
    if ceiling is None:
        return 1.0
    if not 0 < ceiling <= 1:
        raise ValueError(f"ceiling is an accuracy in (0, 1] (the audit's best achievable), got {ceiling!r}")
    return float(ceiling)


def _weights(accuracy: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """1 / variance per point, from the Agresti-Coull p (see the module docstring). Works on a
    resamples x sizes array as well as on one row."""
    p = (accuracy * evaluated + 2) / (evaluated + 4)
    return evaluated / (p * (1 - p))


def _profile(z: np.ndarray, y: np.ndarray, w: np.ndarray, upper_a: float) -> tuple[np.ndarray, ...]:
    """The best (a, b) and its cost for y ~ a - b z with z = x^-c fixed, per row (any leading
    shape; the last axis is the sizes): weighted least squares in two variables, in closed
    form. When the unconstrained solution leaves the box 0 <= a <= upper_a, b >= 0, the
    (convex) problem's minimum lies on the box's edge, so the best of the three edges' own
    one-variable solutions is it."""
    def total(v):
        return (w * v).sum(axis=-1)

    sw, sz, szz, sy, szy = total(1.0), total(z), total(z * z), total(y), total(z * y)
    det = sw * szz - sz * sz  # > 0: z takes >= 2 distinct values (>= 3 distinct sizes, c > 0)
    candidates = [((sy * szz - sz * szy) / det, (sy * sz - sw * szy) / det),  # unconstrained
                  (np.clip(sy / sw, 0.0, upper_a), np.zeros_like(sw)),  # b = 0
                  (np.zeros_like(sw), np.maximum(-szy / szz, 0.0)),  # a = 0
                  (np.full_like(sw, upper_a), np.maximum((upper_a * sz - szy) / szz, 0.0))]  # a = upper
    best_a, best_b, best_cost = (np.full_like(sw, np.nan) for _ in range(3))
    best_cost[:] = np.inf
    for i, (a, b) in enumerate(candidates):
        cost = total((y - a[..., None] + b[..., None] * z) ** 2)
        feasible = (a >= 0) & (a <= upper_a) & (b >= 0) if i == 0 else True
        better = feasible & (cost < best_cost)
        best_a, best_b, best_cost = (np.where(better, new, old) for new, old in
                                     ((a, best_a), (b, best_b), (cost, best_cost)))
        if i == 0 and np.all(feasible):
            break  # every row's unconstrained minimum is inside the box: it is the minimum
    return best_a, best_b, best_cost


def _fit_rows(x: np.ndarray, y: np.ndarray, w: np.ndarray, upper_a: float) -> np.ndarray:
    """Weighted least squares of a - b x^-c for every row of y (rows x sizes) at once: rows x 3.

    Variable projection (Golub & Pereyra 1973): for fixed c the model is linear in (a, b), so
    the fit is a search over c alone, of the profile cost min over (a, b). A grid of
    :data:`C_GRID` exponents, log-spaced over the bounds, finds each row's best basin (the cost
    need not be convex in c, which defeats a single local start), and a golden-section search
    on log c inside the grid cells either side polishes it to ~1e-9. All rows together, in
    numpy: 400 resamples take ~30 ms, where one scipy least_squares call per resample took
    about 1.5 s for three sizes."""
    log_c = np.linspace(math.log(C_BOUNDS[0]), math.log(C_BOUNDS[1]), C_GRID)
    y, w = y[:, None, :], w[:, None, :]

    def cost(log_cs: np.ndarray) -> np.ndarray:  # rows x k exponents -> rows x k costs
        return _profile(x ** -np.exp(log_cs)[..., None], y, w, upper_a)[2]

    best = np.argmin(cost(np.broadcast_to(log_c, (len(y), C_GRID))), axis=1)
    low, high = log_c[np.maximum(best - 1, 0)][:, None], log_c[np.minimum(best + 1, C_GRID - 1)][:, None]
    ratio = (math.sqrt(5) - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    cost_left, cost_right = cost(left), cost(right)
    for _ in range(GOLDEN_STEPS):
        # keep [low, right] where left is lower, else [left, high]; the kept inner point is
        # reused, so each step costs one new profile per row
        move = cost_left < cost_right
        low, high = np.where(move, low, left), np.where(move, right, high)
        inner, inner_cost = np.where(move, left, right), np.where(move, cost_left, cost_right)
        new = np.where(move, high - ratio * (high - low), low + ratio * (high - low))
        new_cost = cost(new)
        left, right = np.where(move, new, inner), np.where(move, inner, new)
        cost_left, cost_right = np.where(move, new_cost, inner_cost), np.where(move, inner_cost, new_cost)
    c = np.exp((low + high) / 2)
    a, b, _ = _profile(x ** -c[..., None], y, w, upper_a)
    return np.column_stack([a[:, 0], b[:, 0], c[:, 0]])


def _power_law(parameters: np.ndarray, reference: float) -> PowerLaw:
    """Undo the scaling of n: a - b' (n / ref)^-c = a - (b' ref^c) n^-c."""
    a, b, c = (float(v) for v in parameters)
    return PowerLaw(a, b * reference ** c, c)


def fit_power_law(n, accuracy, evaluated, *, ceiling: float | None = None) -> PowerLaw:
    """The weighted least-squares power law through the points (see the module docstring).

    ``n``: training images per size; ``accuracy``: validation accuracy there (a fraction, the
    mean over seeds); ``evaluated``: validation images that accuracy is over (seeds summed);
    ``ceiling``: the best achievable accuracy, when known, bounds a."""
    n, accuracy, evaluated = _points(n, accuracy, evaluated, MIN_SIZES, "a power-law fit (three parameters)")
    reference = float(n.min())
    parameters = _fit_rows(n / reference, accuracy[None, :], _weights(accuracy, evaluated)[None, :],
                           _upper_a(ceiling))
    return _power_law(parameters[0], reference)


def fit_curve(n, accuracy, evaluated, *, ceiling: float | None = None, resamples: int = 400,
              confidence: float = CONFIDENCE, seed: int = 0) -> Curve:
    """:func:`fit_power_law` plus ``resamples`` bootstrap refits (binomial redraws of each
    size's correct count, generator seeded with ``seed``, so a report is reproducible).
    The point fit and the refits run as one vectorised search: 400 take about 30 ms."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples must be >= {MIN_RESAMPLES} for a percentile interval, got {resamples}")
    n, accuracy, evaluated = _points(n, accuracy, evaluated, MIN_SIZES, "a power-law fit (three parameters)")
    upper_a, reference = _upper_a(ceiling), float(n.min())
    x = n / reference
    rng = np.random.default_rng(seed)
    resampled = rng.binomial(evaluated.astype(np.int64), accuracy, size=(resamples, len(n))) / evaluated
    # the point fit is row 0: one call, and the same search as every resample's
    rows = np.vstack([accuracy, resampled])
    fits = [_power_law(p, reference) for p in _fit_rows(x, rows, _weights(rows, evaluated), upper_a)]
    return Curve(tuple(n.tolist()), tuple(accuracy.tolist()), tuple(int(m) for m in evaluated),
                 fits[0], tuple(fits[1:]), confidence, ceiling)


def forecast_at(curve: Curve, multiples=(2, 10)) -> list[Forecast]:
    """Forecasts at each multiple of the largest measured size (2x and 10x by default)."""
    return [curve.predict(m * curve.largest_n) for m in multiples]


@dataclass(frozen=True)
class Crossover:
    """The smallest n from which scratch stays within ``delta`` of pretrained up to the
    horizon: ``n`` (inf when not within it), its bootstrap percentile interval (``high`` inf
    when more than the upper tail of the draws never get there), and what the text needs."""
    n: float
    low: float
    high: float
    within_horizon: bool
    already_within: bool  # within delta from the smallest measured size on
    horizon: float  # the multiple of the largest measured size searched up to
    horizon_n: float
    delta: float
    names: tuple[str, str] = ("scratch", "pretrained")

    def text(self) -> str:
        """One line for a report, e.g. "scratch comes within 1 point of pretrained at
        n ≈ 3,100 [1,200, 9,800]"."""
        a, b = self.names
        points = f"{100 * self.delta:g} point{'' if 100 * self.delta == 1 else 's'}"
        interval = f"[{_count(self.low)}, {_count(self.high)}]"
        if self.already_within:
            return f"{a} is already within {points} of {b} at the smallest size (n = {_count(self.n)}) {interval}"
        if self.within_horizon:
            return f"{a} comes within {points} of {b} at n ≈ {_count(self.n)} {interval}"
        low = f"≥ {_count(self.low)}" if math.isfinite(self.low) else "—"
        return (f"{a} does not come within {points} of {b} up to {self.horizon:g}× the largest size "
                f"(n = {_count(self.horizon_n)}) [{low}, —]")


def _count(n: float) -> str:
    """Two significant figures with thousands separators (3,100); a dash for inf."""
    return "—" if not math.isfinite(n) else f"{float(f'{n:.2g}'):,.0f}"


def _first_within(gap: np.ndarray, grid: np.ndarray, delta: float) -> np.ndarray:
    """Per row of ``gap`` (rows x grid points): the n from which gap <= delta to the end of
    the grid. Interpolated linearly in log n inside the step where the gap last crosses delta;
    the smallest grid n when it never exceeds delta; inf when it still does at the end."""
    above = gap > delta
    last = gap.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)  # last grid index above delta
    out = np.full(len(gap), grid[0])
    crossing = above.any(axis=1) & (last < gap.shape[1] - 1)
    out[above[:, -1]] = math.inf
    rows, i = np.nonzero(crossing)[0], last[crossing]
    share = (gap[rows, i] - delta) / (gap[rows, i] - gap[rows, i + 1])
    log_grid = np.log(grid)
    out[rows] = np.exp(log_grid[i] + share * (log_grid[i + 1] - log_grid[i]))
    return out


def crossover(scratch: Curve, pretrained: Curve, *, delta: float = 0.01, horizon: float = 10.0,
              names: tuple[str, str] = ("scratch", "pretrained")) -> Crossover:
    """Where the gap pretrained(n) - scratch(n) falls to ``delta`` for good: the smallest n on
    a log grid from the smallest measured size to ``horizon`` x the largest beyond which the
    gap stays <= delta. The interval pairs the two curves' bootstrap fits index by index (they
    are independent resamples, so any pairing is a valid draw of the pair); a draw that never
    gets within delta counts as inf. Percentiles are taken on the sorted draws without
    interpolation (numpy's "lower"/"higher"), so an inf never gets averaged into a number."""
    if not delta >= 0:
        raise ValueError(f"delta is an accuracy gap >= 0 (0.01 = 1 point), got {delta!r}")
    if not horizon >= 1:
        raise ValueError(f"horizon is a multiple of the largest measured size, >= 1, got {horizon!r}")
    if len(scratch.bootstrap) != len(pretrained.bootstrap) or scratch.confidence != pretrained.confidence:
        raise ValueError("fit both curves with the same resamples and confidence: their bootstrap fits are paired")
    start = min(scratch.smallest_n, pretrained.smallest_n)
    horizon_n = horizon * max(scratch.largest_n, pretrained.largest_n)
    grid = np.geomspace(start, horizon_n, max(2, math.ceil(GRID_PER_DECADE * math.log10(horizon_n / start)) + 1))
    point = _first_within((pretrained.fit(grid) - scratch.fit(grid))[None, :], grid, delta)[0]
    draws = _first_within(pretrained.draws(grid) - scratch.draws(grid), grid, delta)
    tail = (1 - scratch.confidence) / 2
    low = float(np.quantile(draws, tail, method="lower"))
    high = float(np.quantile(draws, 1 - tail, method="higher"))
    already = bool(np.all(pretrained.fit(grid) - scratch.fit(grid) <= delta))
    return Crossover(float(point), low, high, math.isfinite(point), already, float(horizon), float(horizon_n),
                     float(delta), tuple(names))


@dataclass(frozen=True)
class Holdout:
    """The forecast for the largest size from the others, against its measurement."""
    n: float
    measured: float
    predicted: float
    low: float
    high: float
    abs_error: float
    covered: bool  # measured inside [low, high]


def holdout_check(n, accuracy, evaluated, *, ceiling: float | None = None, resamples: int = 400,
                  confidence: float = CONFIDENCE, seed: int = 0) -> Holdout:
    """Refit without the largest size and forecast it: the one check of a learning curve's
    extrapolation that the data themselves can make. [low, high] is the interval of the
    forecast (the fit's uncertainty), not of the measurement, whose own noise it leaves out.
    With several points at the largest size, the measurement is their pooled accuracy."""
    n, accuracy, evaluated = _points(n, accuracy, evaluated, MIN_SIZES_HOLDOUT,
                                     "a hold-out check (three sizes to fit, one to check)")
    held = n == n.max()
    curve = fit_curve(n[~held], accuracy[~held], evaluated[~held], ceiling=ceiling,
                      resamples=resamples, confidence=confidence, seed=seed)
    measured = float((accuracy[held] * evaluated[held]).sum() / evaluated[held].sum())
    forecast = curve.predict(float(n.max()))
    return Holdout(forecast.n, measured, forecast.accuracy, forecast.low, forecast.high,
                   abs(measured - forecast.accuracy), forecast.low <= measured <= forecast.high)
