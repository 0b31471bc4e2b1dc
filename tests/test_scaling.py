"""Learning-curve fits against power laws whose parameters are known, crossovers against their
closed forms, and the hold-out check against points on and off the curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xfer import scaling

SIZES = np.array([50, 100, 200, 400, 800, 1600], dtype=float)
TRUTH = scaling.PowerLaw(0.9, 2.0, 0.5)
IMAGES = np.full(len(SIZES), 2000)


def noisy(law: scaling.PowerLaw, seed: int = 0) -> np.ndarray:
    """Accuracy at SIZES as 2,000 validation images would measure it: binomial noise."""
    return np.random.default_rng(seed).binomial(IMAGES, law(SIZES)) / IMAGES


def test_power_law_is_vectorised():
    assert TRUTH(100) == pytest.approx(0.9 - 2.0 / 10)
    assert TRUTH([1, 4, 10_000]).tolist() == pytest.approx([-1.1, -0.1, 0.88])


def test_noise_free_points_give_back_the_parameters():
    fit = scaling.fit_power_law(SIZES, TRUTH(SIZES), IMAGES)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.9, 2.0, 0.5), abs=1e-4)
    # from a steep curve (c = 1.5) too: the multi-start reaches it from far off
    steep = scaling.PowerLaw(0.8, 40.0, 1.5)
    fit = scaling.fit_power_law(SIZES, steep(SIZES), IMAGES)
    assert (fit.a, fit.b / 40, fit.c) == pytest.approx((0.8, 1.0, 1.5), abs=1e-4)


def test_noisy_points_recover_the_curve_and_its_forecast():
    """Binomial noise of 2,000 images per size (about 1 point): a within 0.03, the forecast at
    10x the largest size within 0.03, and the truth at 2x and 10x inside the 95% intervals.
    (Over seeds 0-19, a lands within 0.03 in 16 and the 10x truth inside its interval in 19:
    the asymptote is the least determined parameter; this is seed 0.)"""
    curve = scaling.fit_curve(SIZES, noisy(TRUTH), IMAGES)
    assert curve.fit.a == pytest.approx(0.9, abs=0.03)
    assert len(curve.bootstrap) == 400 and curve.confidence == 0.95
    at_2x, at_10x = scaling.forecast_at(curve)
    assert (at_2x.n, at_10x.n) == (3200, 16000)
    assert at_10x.accuracy == pytest.approx(TRUTH(16000), abs=0.03)
    for forecast in (at_2x, at_10x):
        assert forecast.low < TRUTH(forecast.n) < forecast.high
        assert forecast.low < forecast.accuracy < forecast.high
    # the interval widens the further the forecast reaches
    assert at_10x.high - at_10x.low > at_2x.high - at_2x.low > 0


@pytest.mark.parametrize("seed, ceiling", [(0, None), (3, None), (6, None), (6, 0.92), (11, 0.85)])
def test_the_fit_is_the_weighted_least_squares_minimum(seed, ceiling):
    """Against scipy's least_squares from five starting exponents, on the same weighted
    residuals (Agresti-Coull variances, written out here): never a higher cost."""
    from scipy.optimize import least_squares

    accuracy = noisy(TRUTH, seed)
    p = (accuracy * IMAGES + 2) / (IMAGES + 4)
    root_w = np.sqrt(IMAGES / (p * (1 - p)))

    def residual(q):
        return root_w * (accuracy - scaling.PowerLaw(*q)(SIZES))

    upper = [1.0 if ceiling is None else ceiling, np.inf, 3.0]
    best = min((least_squares(residual, [min(0.8, upper[0]), 1.0, c], bounds=([0, 0, 0.01], upper),
                              x_scale=[0.1, 1.0, 0.1]) for c in (0.05, 0.2, 0.5, 1.0, 2.0)),
               key=lambda r: r.cost)
    fit = scaling.fit_power_law(SIZES, accuracy, IMAGES, ceiling=ceiling)
    ours = 0.5 * float((residual([fit.a, fit.b, fit.c]) ** 2).sum())
    assert ours <= best.cost * (1 + 1e-6) + 1e-9
    if ceiling is not None:
        assert fit.a <= ceiling


def test_the_intervals_cover_the_truth_across_data_sets():
    """Twenty seeded data sets from the same curve: the 95% interval at 10x the largest size
    holds the true accuracy in at least 17 (19 expected; extrapolating the percentile
    bootstrap has no exact guarantee), and a lands within 0.03 in at least 14."""
    covered = close = 0
    for seed in range(20):
        curve = scaling.fit_curve(SIZES, noisy(TRUTH, seed), IMAGES, seed=seed)
        forecast = curve.predict(16000)
        covered += forecast.low <= TRUTH(16000) <= forecast.high
        close += abs(curve.fit.a - 0.9) <= 0.03
    assert covered >= 17 and close >= 14, (covered, close)


def test_the_ceiling_bounds_the_asymptote():
    fit = scaling.fit_power_law(SIZES, noisy(TRUTH), IMAGES, ceiling=0.85)
    assert fit.a <= 0.85
    curve = scaling.fit_curve(SIZES, noisy(TRUTH), IMAGES, ceiling=0.85, resamples=100)
    assert max(p.a for p in curve.bootstrap) <= 0.85 and curve.ceiling == 0.85


def test_points_at_0_and_100_percent_keep_a_finite_weight():
    """With p(1 - p) unfloored the 100% point would pin the curve: the fit would have to pass
    through it exactly. With the Agresti-Coull floor it is one (heavy) point among others."""
    accuracy = np.array([0.0, 0.5, 0.8, 0.9, 0.97, 1.0])
    fit = scaling.fit_power_law(SIZES, accuracy, IMAGES)
    assert all(math.isfinite(v) for v in (fit.a, fit.b, fit.c)) and fit.a <= 1.0
    assert fit(1600) != 1.0 and fit(1600) == pytest.approx(1.0, abs=0.02)


def analytic_curve(law: scaling.PowerLaw, bs) -> scaling.Curve:
    """A Curve built directly: ``law`` as the fit, and one bootstrap fit per b in ``bs``."""
    return scaling.Curve(tuple(SIZES.tolist()), tuple(law(SIZES).tolist()), tuple(IMAGES.tolist()), law,
                         tuple(scaling.PowerLaw(law.a, b, law.c) for b in bs))


PRETRAINED = scaling.PowerLaw(0.9, 1.0, 0.5)
SCRATCH = scaling.PowerLaw(0.9, 4.0, 0.5)  # gap 3 / sqrt(n) <= 0.01 from n = 90,000


def test_crossover_matches_the_closed_form():
    scratch_bs = np.linspace(3.5, 4.5, 101)
    result = scaling.crossover(analytic_curve(SCRATCH, scratch_bs), analytic_curve(PRETRAINED, [1.0] * 101),
                               horizon=100)
    assert result.within_horizon and not result.already_within
    assert result.n == pytest.approx(90_000, rel=1e-3)  # interpolated inside a 2.3% grid step
    # each draw's crossover is (100 (b - 1))^2; the 2.5% / 97.5% draws of 101 sorted are the
    # 3rd (lower) and the 99th (higher)
    each = np.sort((100 * (scratch_bs - 1)) ** 2)
    assert result.low == pytest.approx(each[2], rel=1e-3) and result.high == pytest.approx(each[98], rel=1e-3)
    # (100 x 2.52)^2 = 63,504 and (100 x 3.48)^2 = 121,104, to two significant figures
    assert result.text() == "scratch comes within 1 point of pretrained at n ≈ 90,000 [64,000, 120,000]"


def test_crossover_beyond_the_horizon_is_inf_with_a_censored_interval():
    result = scaling.crossover(analytic_curve(SCRATCH, np.linspace(3.5, 4.5, 101)),
                               analytic_curve(PRETRAINED, [1.0] * 101), horizon=10)
    assert not result.within_horizon and result.n == math.inf and result.high == math.inf
    assert result.horizon_n == 16_000 and result.low == math.inf
    assert result.text() == ("scratch does not come within 1 point of pretrained up to 10× the largest "
                             "size (n = 16,000) [—, —]")
    # some draws get there within 40x (64,000): a finite lower bound, the 3rd of 101 draws,
    # b = 2.05 -> (100 x 1.05)^2 = 11,025, and an open upper one
    result = scaling.crossover(analytic_curve(SCRATCH, np.linspace(2.0, 4.5, 101)),
                               analytic_curve(PRETRAINED, [1.0] * 101), horizon=40)
    assert result.n == math.inf and math.isfinite(result.low) and result.high == math.inf
    assert result.low == pytest.approx(11_025, rel=1e-3)
    assert result.text().endswith("(n = 64,000) [≥ 11,000, —]")


def test_scratch_already_within_delta_crosses_at_the_smallest_size():
    better = scaling.PowerLaw(0.95, 1.0, 0.5)
    result = scaling.crossover(analytic_curve(better, [1.0] * 100), analytic_curve(PRETRAINED, [1.0] * 100))
    assert result.already_within and result.within_horizon
    assert result.n == result.low == result.high == 50
    assert result.text() == "scratch is already within 1 point of pretrained at the smallest size (n = 50) [50, 50]"


def test_a_gap_that_dips_below_delta_and_reopens_has_not_crossed():
    """Pretrained converges slower but to a higher asymptote: the gap
    0.05 - n^-0.2 + 4 n^-0.5 falls below 1 point near n = 300, then climbs back above it
    near n = 1e7. Up to 10x the largest size it has crossed; up to 1e5x it has not."""
    slow_high = scaling.PowerLaw(0.95, 1.0, 0.2)
    scratch, pretrained = analytic_curve(SCRATCH, [4.0] * 100), analytic_curve(slow_high, [1.0] * 100)
    near = scaling.crossover(scratch, pretrained, horizon=10)
    gap = lambda n: slow_high(n) - SCRATCH(n)  # noqa: E731
    assert near.within_horizon and gap(near.n) == pytest.approx(0.01, abs=1e-4)
    assert 100 < near.n < 1000 and gap(near.n * 0.9) > 0.01 > gap(near.n * 1.1)
    far = scaling.crossover(scratch, pretrained, horizon=1e5)
    assert not far.within_horizon and far.n == math.inf and gap(far.horizon_n) > 0.01


def test_crossover_from_fitted_curves():
    """The same pair measured with noise and fitted: the crossover lands near 90,000 and
    its interval contains it."""
    scratch = scaling.fit_curve(SIZES, noisy(SCRATCH, 1), IMAGES, resamples=200, seed=1)
    pretrained = scaling.fit_curve(SIZES, noisy(PRETRAINED, 2), IMAGES, resamples=200, seed=2)
    result = scaling.crossover(scratch, pretrained, horizon=1000, delta=0.01)
    assert result.within_horizon and result.low <= 90_000 <= result.high
    with pytest.raises(ValueError, match="same resamples"):
        scaling.crossover(scratch, scaling.fit_curve(SIZES, noisy(PRETRAINED), IMAGES, resamples=100))


def test_the_holdout_check_on_a_curve_is_exact_and_covered():
    result = scaling.holdout_check(SIZES, TRUTH(SIZES), IMAGES, resamples=200)
    assert result.n == 1600 and result.measured == pytest.approx(TRUTH(1600))
    assert result.abs_error < 1e-4 and result.covered
    assert result.low < result.predicted < result.high


def test_the_holdout_check_flags_a_largest_size_off_the_curve():
    accuracy = TRUTH(SIZES)
    accuracy[-1] -= 0.2
    result = scaling.holdout_check(SIZES, accuracy, IMAGES, resamples=200)
    assert not result.covered
    assert result.abs_error == pytest.approx(0.2, abs=1e-3)
    assert result.predicted == pytest.approx(TRUTH(1600), abs=1e-3)


def test_the_holdout_check_needs_four_sizes():
    with pytest.raises(ValueError, match="at least 4 distinct dataset sizes"):
        scaling.holdout_check(SIZES[:3], TRUTH(SIZES[:3]), IMAGES[:3])
    assert scaling.MIN_SIZES_HOLDOUT == 4


def test_a_fit_needs_three_distinct_sizes():
    assert scaling.MIN_SIZES == 3
    for fit in (scaling.fit_power_law, scaling.fit_curve):
        with pytest.raises(ValueError, match="at least 3 distinct dataset sizes, got 2"):
            fit([100, 200], [0.5, 0.6], [1000, 1000])
        with pytest.raises(ValueError, match="at least 3 distinct dataset sizes, got 2"):
            fit([100, 200, 200], [0.5, 0.6, 0.62], [1000, 1000, 1000])  # a repeated size is not a new one


@pytest.mark.parametrize("n, accuracy, evaluated, words", [
    ([100, 200, 0], [0.5, 0.6, 0.7], [10, 10, 10], "positive"),
    ([100, 200, -400], [0.5, 0.6, 0.7], [10, 10, 10], "positive"),
    ([100, 200, math.inf], [0.5, 0.6, 0.7], [10, 10, 10], "positive"),
    ([100, 200, 400], [50, 60, 70], [10, 10, 10], "not a percentage"),
    ([100, 200, 400], [0.5, math.nan, 0.7], [10, 10, 10], r"\[0, 1\]"),
    ([100, 200, 400], [0.5, 0.6, -0.1], [10, 10, 10], r"\[0, 1\]"),
    ([100, 200, 400], [0.5, 0.6, 0.7], [10, 0, 10], "whole numbers"),
    ([100, 200, 400], [0.5, 0.6, 0.7], [10, 2.5, 10], "whole numbers"),
    ([100, 200, 400], [0.5, 0.6], [10, 10, 10], "equally long"),
])
def test_bad_points_raise(n, accuracy, evaluated, words):
    with pytest.raises(ValueError, match=words):
        scaling.fit_power_law(n, accuracy, evaluated)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="ceiling"):
        scaling.fit_power_law(SIZES, TRUTH(SIZES), IMAGES, ceiling=85)
    with pytest.raises(ValueError, match="resamples"):
        scaling.fit_curve(SIZES, TRUTH(SIZES), IMAGES, resamples=10)
    with pytest.raises(ValueError, match="confidence"):
        scaling.fit_curve(SIZES, TRUTH(SIZES), IMAGES, confidence=95)
    curve = analytic_curve(TRUTH, [2.0] * 100)
    with pytest.raises(ValueError, match="delta"):
        scaling.crossover(curve, curve, delta=-0.01)
    with pytest.raises(ValueError, match="horizon"):
        scaling.crossover(curve, curve, horizon=0.5)


def test_the_same_seed_gives_the_same_intervals():
    accuracy = noisy(TRUTH)
    one, two = (scaling.fit_curve(SIZES, accuracy, IMAGES, resamples=100, seed=7) for _ in range(2))
    assert one == two and one.predict(16000) == two.predict(16000)
    other = scaling.fit_curve(SIZES, accuracy, IMAGES, resamples=100, seed=8)
    assert other.fit == one.fit and other.predict(16000) != one.predict(16000)
