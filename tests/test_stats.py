"""Intervals and verdicts against values computed by hand (formulas written out in each test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xfer import stats

Z = 1.959963984540054  # the 97.5% standard normal quantile


def wilson_by_hand(k: float, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_7_of_8_is_about_53_to_98_percent():
    low, high = stats.wilson_interval(7, 8)
    assert (round(low, 3), round(high, 3)) == (0.529, 0.978)
    assert (low, high) == pytest.approx(wilson_by_hand(7, 8))


@pytest.mark.parametrize("k, n", [(6, 8), (1, 8), (50, 100), (870, 1000), (3.5, 8)])
def test_wilson_matches_the_formula(k, n):
    assert stats.wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n))


def test_wilson_edges_stay_in_0_1_and_n_0_has_no_interval():
    assert stats.wilson_interval(0, 8) == (0.0, pytest.approx(Z * Z / (8 + Z * Z)))  # (0, z²/(n+z²))
    assert stats.wilson_interval(8, 8) == (pytest.approx(8 / (8 + Z * Z)), 1.0)
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        stats.wilson_interval(9, 8)
    # wider at 90%? narrower: the 90% interval sits inside the 95% one
    low90, high90 = stats.wilson_interval(7, 8, 0.90)
    assert 0.529 < low90 and high90 < 0.978


def test_seed_interval_is_mean_plus_minus_t_times_standard_error():
    mean, low, high = stats.seed_interval([0.93, 0.95, 0.91])
    # s = 0.02, t(0.975, 2) = 4.302653, half = 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert mean == pytest.approx(0.93)
    assert (low, high) == pytest.approx((0.93 - 0.049683, 0.93 + 0.049683), abs=1e-6)
    one = stats.seed_interval([0.8])
    assert one[0] == 0.8 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in stats.seed_interval([]))


def test_verdict_names_a_winner_only_when_the_interval_excludes_zero():
    assert stats.verdict(0.01, 0.2) == "pretrained better"
    assert stats.verdict(-0.2, -0.01) == "scratch better"
    assert stats.verdict(-0.01, 0.2) == "no detectable difference"
    assert stats.verdict(0.0, 0.2) == "no detectable difference"  # zero included
    assert stats.verdict(math.nan, math.nan) == "no detectable difference"
    assert stats.verdict(0.1, 0.2, names=("lite0", "resnet10")) == "lite0 better"


def pair(a_only: int, b_only: int, both: int, neither: int) -> tuple[list[int], list[int]]:
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return a, b


def test_paired_mcnemar_gain_matches_the_hand_count():
    # 100 images: a alone right on 10, b alone on 2. Difference (10 - 2) / 100 = 0.08.
    # p = 2 * P(X >= 10 | Bin(12, 1/2)) = 2 * (C(12,10) + C(12,11) + C(12,12)) / 2^12 = 158 / 4096.
    # Clopper-Pearson for 10 of 12: the pi with P(X >= 10 | pi) = 0.025 and P(X <= 10 | pi) =
    # 0.025, i.e. (0.515862, 0.979137); the difference is (2 pi - 1) * 12 / 100.
    result = stats.paired_difference(*pair(10, 2, 50, 38))
    low_pi, high_pi = 0.5158623, 0.9791375
    assert sum(math.comb(12, k) * low_pi ** k * (1 - low_pi) ** (12 - k) for k in (10, 11, 12)) == \
        pytest.approx(0.025, abs=1e-6)
    assert 1 - sum(math.comb(12, k) * high_pi ** k * (1 - high_pi) ** (12 - k) for k in (11, 12)) == \
        pytest.approx(0.025, abs=1e-6)
    assert result.difference == pytest.approx(0.08)
    assert result.p_value == pytest.approx(158 / 4096)
    assert (result.a_only, result.b_only, result.n) == (10, 2, 100)
    assert result.low == pytest.approx((2 * low_pi - 1) * 0.12, abs=1e-6)
    assert result.high == pytest.approx((2 * high_pi - 1) * 0.12, abs=1e-6)
    assert result.verdict == "pretrained better" and result.paired


def test_paired_interval_and_p_value_agree_and_swap_signs():
    close = stats.paired_difference(*pair(6, 2, 50, 42))  # p = 2 * 37/256 = 0.289
    assert close.p_value == pytest.approx(2 * (28 + 8 + 1) / 256)
    assert close.low < 0 < close.high and close.verdict == "no detectable difference"
    flipped = stats.paired_difference(*pair(2, 10, 50, 38))
    assert flipped.verdict == "scratch better"
    assert (flipped.low, flipped.high) == pytest.approx((-0.11499299, -0.00380694), abs=1e-6)
    for a_only, b_only in [(5, 0), (6, 0), (9, 2), (10, 2), (20, 9), (21, 9)]:
        result = stats.paired_difference(*pair(a_only, b_only, 40, 40))
        assert (result.p_value < 0.05) == (result.low > 0), (a_only, b_only)


def test_paired_with_no_disagreement_is_bounded_by_the_discordance_rate():
    # 8 images, both right on 6 and wrong on 2: |difference| <= 1 - 0.025^(1/8) = 0.369
    result = stats.paired_difference(*pair(0, 0, 6, 2))
    assert result.difference == 0 and result.p_value == 1.0
    assert (result.low, result.high) == pytest.approx((-(1 - 0.025 ** (1 / 8)), 1 - 0.025 ** (1 / 8)))
    assert result.verdict == "no detectable difference"


def test_paired_bootstrap_is_seeded_and_close_to_the_normal_approximation():
    a, b = pair(30, 10, 500, 460)
    first = stats.paired_difference(a, b, method="bootstrap", seed=3)
    assert first == stats.paired_difference(a, b, method="bootstrap", seed=3)
    # mean 0.02; per-image differences: 30 of +1, 10 of -1: var = 0.04 - 0.0004 = 0.0396;
    # se = sqrt(0.0396 / 1000) = 0.006293; normal 95%: 0.02 ± 0.012334
    assert first.difference == pytest.approx(0.02)
    assert first.low == pytest.approx(0.02 - 0.012334, abs=0.0025)
    assert first.high == pytest.approx(0.02 + 0.012334, abs=0.0025)
    assert first.p_value == pytest.approx(stats.mcnemar_p_value(30, 10))
    # seed-averaged correctness (fractions): bootstrap only
    fractions = np.array([0.5, 1.0, 0.0, 1.0] * 25)
    assert stats.paired_difference(fractions, np.full(100, 0.5), method="bootstrap").paired
    with pytest.raises(ValueError, match="bootstrap"):
        stats.paired_difference(fractions, np.full(100, 0.5))
    with pytest.raises(ValueError, match="equally long"):
        stats.paired_difference([1, 0], [1])


def test_unpaired_difference_is_newcombes_from_the_wilson_intervals():
    result = stats.unpaired_difference(0.875, 8, 0.75, 8)
    la, ua = wilson_by_hand(7, 8)
    lb, ub = wilson_by_hand(6, 8)
    assert result.difference == pytest.approx(0.125)
    assert result.low == pytest.approx(0.125 - math.hypot(0.875 - la, ub - 0.75))
    assert result.high == pytest.approx(0.125 + math.hypot(ua - 0.875, 0.75 - lb))
    assert result.verdict == "no detectable difference" and not result.paired
    assert stats.unpaired_difference(0.95, 1000, 0.85, 1000).verdict == "pretrained better"


def test_seeds_difference_is_welch():
    result = stats.seeds_difference([0.93, 0.95, 0.91], [0.70, 0.72])
    # var/n: 0.0004/3 and 0.0002/2; se = sqrt(0.000233333) = 0.015275;
    # Welch dof = 0.000233333² / (0.000133333² / 2 + 0.0001² / 1) = 2.88235
    assert result.difference == pytest.approx(0.22)
    from scipy.stats import t
    half = t.ppf(0.975, 2.88235) * 0.0152753
    assert (result.low, result.high) == pytest.approx((0.22 - half, 0.22 + half), abs=1e-4)
    assert result.verdict == "pretrained better"


def test_correctness_of_a_predictions_artifact():
    assert stats.correctness({"labels": [0, 1, 2], "predicted": [0, 2, 2]}).tolist() == [1.0, 0.0, 1.0]


def test_seed_noise_widens_a_paired_bootstrap_that_only_saw_the_test_images():
    # Three seeds of a per arm: 25%, 38%, 73% on one 1,000-image test set; b: 51%, 50%, 38%.
    # Averaged per image, a paired bootstrap sees only test-sampling noise (a couple of points);
    # the seeds disagree by tens of points, and the interval must say so.
    rng = np.random.default_rng(0)
    a = [(rng.random(1000) < p).astype(float) for p in (0.25, 0.38, 0.73)]
    b = [(rng.random(1000) < p).astype(float) for p in (0.51, 0.50, 0.38)]
    paired = stats.paired_difference(np.mean(a, 0), np.mean(b, 0), method="bootstrap")
    widened = stats.with_seed_noise(paired, [x.mean() for x in a], [x.mean() for x in b])
    assert widened.difference == paired.difference
    assert widened.low < paired.low - 0.2 and widened.high > paired.high + 0.2
    assert widened.verdict == stats.NO_DIFFERENCE and "seed noise" in widened.method
    # identical seeds add nothing: the paired interval stands
    same = [a[0]] * 3
    assert stats.with_seed_noise(paired, [x.mean() for x in same], [x.mean() for x in same]) == paired


def test_seed_noise_keeps_a_real_win_when_the_seeds_agree():
    rng = np.random.default_rng(1)
    a = [(rng.random(1000) < p).astype(float) for p in (0.80, 0.81, 0.79)]
    b = [(rng.random(1000) < p).astype(float) for p in (0.60, 0.61, 0.59)]
    paired = stats.paired_difference(np.mean(a, 0), np.mean(b, 0), method="bootstrap")
    widened = stats.with_seed_noise(paired, [x.mean() for x in a], [x.mean() for x in b])
    assert widened.low > 0.1 and widened.verdict == "pretrained better"
