"""Spearman's rho and its Fisher-z interval against hand computations and scipy, its edge cases
(ties, too few items, constant input, a perfect ranking), its coverage on bivariate normal
samples whose population rank correlation is known, and the top-pick check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from xfer.rank_correlation import RankCorrelation, picks_best, spearman

Z95 = 1.959963984540054


def test_a_monotone_ranking_is_one_and_a_reversed_one_minus_one():
    x = [0.1, 0.5, 2.0, 7.0, 30.0, 31.0]
    assert spearman(x, [1, 2, 3, 4, 5, 6]).rho == pytest.approx(1.0)
    assert spearman(x, np.exp(x)).rho == pytest.approx(1.0)  # any increasing function: rank only
    assert spearman(x, [6, 5, 4, 3, 2, 1]).rho == pytest.approx(-1.0)


def test_a_small_case_by_hand():
    """Rank differences d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8. Interval:
    z = atanh(0.8) = 1.0986, SE = sqrt((1 + 0.8^2 / 2) / (5 - 3)) = 0.8124, so
    tanh(1.0986 -+ 1.96 * 0.8124) = (-0.457, 0.991)."""
    result = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert result.rho == pytest.approx(0.8)
    assert result.n == 5
    se = math.sqrt((1 + 0.8 ** 2 / 2) / 2)
    assert se == pytest.approx(0.81240, abs=1e-5)
    assert result.low == pytest.approx(math.tanh(math.atanh(0.8) - Z95 * se))
    assert result.high == pytest.approx(math.tanh(math.atanh(0.8) + Z95 * se))
    assert (result.low, result.high) == pytest.approx((-0.4571, 0.9908), abs=1e-4)
    assert result.p_value == pytest.approx(spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).pvalue)
    assert result.text() == "ρ = +0.80 [-0.46, +0.99]"


def test_ties_get_average_ranks():
    """x's tied pair both get rank 1.5: ranks (1.5, 1.5, 3, 4, 5) against (1, 2, 3, 5, 4);
    Pearson of those is 0.8721, which scipy agrees with."""
    x, y = [1, 1, 2, 3, 4], [10, 20, 30, 50, 40]
    result = spearman(x, y)
    ranks_x = np.array([1.5, 1.5, 3, 4, 5])
    ranks_y = np.array([1, 2, 3, 5, 4])
    assert result.rho == pytest.approx(np.corrcoef(ranks_x, ranks_y)[0, 1])
    assert result.rho == pytest.approx(spearmanr(x, y).statistic)
    assert result.rho == pytest.approx(0.8721, abs=1e-4)


def test_three_items_give_rho_but_no_interval():
    result = spearman([1, 2, 3], [1, 3, 2])
    assert result.rho == pytest.approx(0.5)
    assert math.isnan(result.low) and math.isnan(result.high)
    assert "needs at least 4 items for an interval" in result.method
    assert "needs at least 4" in result.text()


def test_constant_input_gives_nan_without_raising(recwarn):
    for x, y, side in (([1, 1, 1, 1], [1, 2, 3, 4], "score"), ([1, 2, 3, 4], [0.5] * 4, "accuracy")):
        result = spearman(x, y)
        assert math.isnan(result.rho) and math.isnan(result.low) and math.isnan(result.high)
        assert "same for all 4" in result.method and side in result.method
    assert not [w for w in recwarn if "constant" in str(w.message).lower()]  # no scipy warning either
    assert math.isnan(spearman([1], [2]).rho)  # one item ranks nothing


def test_missing_pairs_are_left_out_and_lengths_must_match():
    result = spearman([1, 2, np.nan, 3, 4, 5], [2, 1, 9, 4, 3, 5])
    assert result.n == 5 and result.rho == pytest.approx(0.8)
    with pytest.raises(ValueError, match="equally long"):
        spearman([1, 2, 3], [1, 2])


@pytest.mark.parametrize("n", [4, 5, 6, 10, 50])
def test_a_perfect_ranking_has_a_finite_interval_that_is_not_a_point(n):
    """atanh(1) is infinite: rho is capped below 1 before transforming, so the interval is
    finite, ends at 1 and reaches down (at n = 5, to about +0.16: five items cannot prove more)."""
    up, down = spearman(range(n), range(n)), spearman(range(n), range(n)[::-1])
    assert up.high == pytest.approx(1.0) and -1 <= up.low < 1
    assert down.low == pytest.approx(-1.0) and -1 < down.high <= 1
    assert up.low == pytest.approx(-down.high)
    if n == 5:
        assert up.low == pytest.approx(0.16, abs=0.01)


def test_the_interval_contains_rho_and_lies_in_minus_one_to_one():
    rng = np.random.default_rng(0)
    for n in (4, 5, 6, 8, 20):
        for _ in range(30):
            x = rng.normal(size=n)
            y = x * rng.uniform(-2, 2) + rng.normal(size=n)
            r = spearman(x, y)
            assert isinstance(r, RankCorrelation)
            assert -1 <= r.low <= r.rho <= r.high <= 1


def test_the_interval_covers_the_population_rank_correlation():
    """Bivariate normal with Pearson r = 0.6: the population Spearman rho is
    6 / pi * asin(r / 2) = 0.580. n = 30 is inside the range Bonett & Wright checked; 200 seeds
    give a coverage estimate within about 3 points of the truth, so >= 88% leaves room for
    both that noise and the approximation, while a too-narrow (Pearson SE) or broken interval
    would fall well short."""
    r, n = 0.6, 30
    truth = 6 / math.pi * math.asin(r / 2)
    covariance = [[1, r], [r, 1]]
    covered = 0
    for seed in range(200):
        sample = np.random.default_rng(seed).multivariate_normal([0, 0], covariance, size=n)
        result = spearman(sample[:, 0], sample[:, 1])
        covered += result.low <= truth <= result.high
    assert covered / 200 >= 0.88


def test_picks_best():
    accuracy = [0.6, 0.9, 0.7, 0.8]
    assert picks_best([1.0, 3.0, 2.0, 0.5], accuracy)
    assert not picks_best([3.0, 1.0, 2.0, 0.5], accuracy)
    # a tie in accuracy: either of the tied best counts
    assert picks_best([1.0, 2.0, 3.0], [0.5, 0.8, 0.8])
    assert picks_best([1.0, 3.0, 2.0], [0.5, 0.8, 0.8])
    # a tie at the top of the scores counts only when every tied backbone is a best
    assert not picks_best([3.0, 3.0, 1.0], [0.9, 0.5, 0.7])
    assert picks_best([3.0, 3.0, 1.0], [0.9, 0.9, 0.7])
    # a backbone without an accuracy is left out, even when its score is highest
    assert picks_best([9.0, 1.0, 2.0], [np.nan, 0.5, 0.7])
    with pytest.raises(ValueError, match="at least one item"):
        picks_best([1.0], [np.nan])
