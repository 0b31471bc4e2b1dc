"""The sweep-level data-scaling forecast (xfer.forecast) and its report section, on points built
from known curves."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xfer import forecast as fc
from xfer.errors import UsageError
from xfer.report.scaling_section import CSV_NAME, FILE_NAME, forecast_section
from xfer.scaling import PowerLaw

SIZES = (50, 100, 200, 400, 800)
N_VAL = 0.2  # validation is 20% of a dataset size


def _points(sizes=SIZES, budgets=(6,), curves=None, worse_batch=True) -> pd.DataFrame:
    """Noise-free points: pretrained 0.9 - 0.05 (50/n)^0.5 and scratch 0.9 - 0.4 (50/n)^0.5, plus a worse batch-size-16 point at each size that must never be chosen."""
    curves = curves or {"pretrained": PowerLaw(0.9, 0.05 * 50 ** 0.5, 0.5),
                        "scratch": PowerLaw(0.9, 0.4 * 50 ** 0.5, 0.5)}
    rows = []
    for budget in budgets:
        for init, law in curves.items():
            for n in sizes:
                for batch, drop in ((8, 0.0), (16, 0.2)) if worse_batch else ((8, 0.0),):
                    rows.append({"model": "efficientnet_lite0", "init": init, "condition": init,
                                 "dataset_size": n, "epochs_run": budget, "batch_size": batch,
                                 "val_accuracy": float(law(n)) - drop, "test_accuracy": float(law(n)) - drop,
                                 "n_val": N_VAL * n, "n_runs": 1,
                                 "config": f"efficientnet_lite0 {init} n{n} bs{batch} ep{budget}"})
    return pd.DataFrame(rows)


def test_one_curve_per_model_condition_and_budget_through_the_best_point_by_validation():
    result = fc.scaling_forecast(_points(budgets=(2, 6)))
    assert sorted((c.condition, c.budget) for c in result.curves) == [
        ("pretrained", 2.0), ("pretrained", 6.0), ("scratch", 2.0), ("scratch", 6.0)]
    for c in result.curves:
        assert all("bs8" in config for config in c.configs)
        assert c.curve.evaluated == tuple(int(N_VAL * n) for n in SIZES)
    assert len(result.catch_ups) == 2 and result.sizes == SIZES


def test_noise_free_curves_are_recovered_and_forecast_beyond_the_grid():
    result = fc.scaling_forecast(_points())
    pre = next(c for c in result.curves if c.condition == "pretrained")
    assert pre.curve.fit.a == pytest.approx(0.9, abs=1e-3)
    at_10x = next(f for f in pre.forecasts if f.n == 8000)
    assert at_10x.accuracy == pytest.approx(0.9 - 0.05 * (50 / 8000) ** 0.5, abs=1e-3)
    assert at_10x.low <= at_10x.accuracy <= at_10x.high


def test_crossover_matches_the_known_gap_and_the_holdout_check_is_small_on_exact_points():
    # gap = 0.35 * sqrt(50 / n) <= 0.01  <=>  n >= 50 * 35^2 = 61,250: beyond 10x 800, within 100x
    far = fc.scaling_forecast(_points())
    assert not far.catch_ups[0].crossover.within_horizon
    near = fc.scaling_forecast(_points(), horizon=100)
    assert near.catch_ups[0].crossover.n == pytest.approx(61_250, rel=0.03)
    for c in near.curves:
        assert c.holdout is not None and c.holdout.abs_error < 1e-3 and c.holdout.covered


def test_a_curve_with_too_few_sizes_is_named_and_left_out():
    points = _points()
    extra = points[(points["init"] == "scratch") & (points["dataset_size"] <= 100)].assign(epochs_run=2)
    result = fc.scaling_forecast(pd.concat([points, extra], ignore_index=True))
    assert any("2 epochs: 2 sizes, a curve needs 3" in s for s in result.skipped)
    assert len(result.curves) == 2


def test_fewer_than_three_sizes_is_a_usage_error_naming_how_many():
    with pytest.raises(UsageError, match=r"at least 3 dataset sizes .* measured 2 \(50, 100\)"):
        fc.scaling_forecast(_points(sizes=(50, 100)))


def test_three_sizes_forecast_without_a_holdout_check():
    result = fc.scaling_forecast(_points(sizes=(50, 100, 200)))
    assert all(c.holdout is None for c in result.curves)


def test_the_ceiling_caps_the_asymptote():
    result = fc.scaling_forecast(_points(), ceiling=0.85)
    assert all(c.curve.fit.a <= 0.85 + 1e-12 for c in result.curves)


def test_the_report_section_has_the_figure_the_table_the_crossover_and_the_holdout(tmp_path):
    result = fc.scaling_forecast(_points(budgets=(2, 6)), ceiling=0.95)
    lines = forecast_section(result, tmp_path)
    text = "\n".join(lines)
    assert "## Data-scaling forecast" in text and f"![forecast]({FILE_NAME})" in text
    assert (tmp_path / FILE_NAME).stat().st_size > 10_000
    table = pd.read_csv(tmp_path / CSV_NAME)
    assert len(table) == 4 and {"forecast_10x", "forecast_10x_low", "holdout_abs_error"} <= set(table.columns)
    assert "does not come within 1 point" in text
    assert text.count("Hold-out check") == 1 and "off by 0.0 points, inside" in text


def test_no_section_without_curves(tmp_path):
    assert forecast_section(None, tmp_path) == []
    assert not (tmp_path / FILE_NAME).exists()


def test_headline_is_the_largest_budget():
    result = fc.scaling_forecast(_points(budgets=(2, 6)))
    assert fc.headline(result).pretrained.budget == 6
    assert math.isinf(fc.headline(result).crossover.n)
    assert np.isfinite(fc.headline(result).crossover.low)


def test_a_forecast_at_a_larger_grids_size_gives_both_inits_and_the_gain_with_its_interval():
    result = fc.scaling_forecast(_points(sizes=(50, 100, 150, 200)), targets=(400,))
    (catch_up,) = result.catch_ups
    (gain,) = catch_up.at_targets
    truth = 0.35 * (50 / 400) ** 0.5  # pretrained - scratch of the noise-free curves at 400
    assert gain.n == 400 and gain.gain == pytest.approx(truth, abs=2e-3)
    assert gain.low <= gain.gain <= gain.high
    assert gain.pretrained.accuracy == pytest.approx(0.9 - 0.05 * (50 / 400) ** 0.5, abs=2e-3)
    assert any(f.n == 400 for c in result.curves for f in c.forecasts)
    assert "gain_at_400" in result.crossover_table()
    text = "\n".join(fc.summary_lines(result))
    assert "n=400 (forecast)" in text and "gain +" in text


def test_bad_forecast_sizes_and_the_parent_param_round_trip():
    with pytest.raises(UsageError, match="positive numbers of images"):
        fc.scaling_forecast(_points(), targets=(0,))
    assert fc.targets_param("400,1000") == (400.0, 1000.0)
    assert fc.targets_param(None) == () and fc.targets_param("x") == ()


def test_the_parent_run_gets_the_catch_up_and_the_largest_holdout_error():
    from xfer.names import CATCH_UP_N, CATCH_UP_WITHIN, FORECAST_HOLDOUT_ERROR
    from xfer.report.parent_summary import forecast_metrics

    near = forecast_metrics(fc.scaling_forecast(_points(), horizon=100))
    assert near[CATCH_UP_N] == pytest.approx(61_250, rel=0.03) and near[CATCH_UP_WITHIN] == 1.0
    assert near[FORECAST_HOLDOUT_ERROR] < 1e-3
    far = forecast_metrics(fc.scaling_forecast(_points()))
    assert far[CATCH_UP_WITHIN] == 0.0 and all(math.isfinite(v) for v in far.values())
    assert forecast_metrics(None) == {}


def test_a_curve_still_at_chance_at_a_measured_size_carries_a_caution():
    chance_curve = {"pretrained": PowerLaw(0.9, 0.05 * 50 ** 0.5, 0.5), "scratch": PowerLaw(0.125, 0.0, 0.5)}
    result = fc.scaling_forecast(_points(curves=chance_curve, worse_batch=False), chance=0.125)
    scratch = next(c for c in result.curves if c.condition == "scratch")
    pretrained = next(c for c in result.curves if c.condition == "pretrained")
    assert scratch.at_chance == SIZES and "at chance at n = 50, 100" in scratch.caveat
    assert pretrained.caveat == ""
    assert "caution: at chance" in "\n".join(fc.summary_lines(result))
    assert fc.scaling_forecast(_points()).curves[0].caveat == ""  # no chance level given: no caution
