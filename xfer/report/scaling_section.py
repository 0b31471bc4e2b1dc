"""The report's "Data-scaling forecast" section and its figure, from ``xfer.forecast``.

A sweep with at least three dataset sizes gets it: per (model, condition, budget) the fitted
learning curve with its forecasts at 2x and 10x the largest size, the hold-out check (the
forecast's measured error), and where scratch comes within a point of pretrained. Text and one
figure (``forecast.png``); no MLflow here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from xfer import forecast as fc
from xfer.report.conclusions import markdown_table
from xfer.report.figures import condition_style, new_figure, save_figure
from xfer.stats import wilson_interval
from xfer.uncertainty import percent

FILE_NAME = "forecast.png"
CSV_NAME = "forecast.csv"


def forecast_section(forecast: fc.ScalingForecast | None, out: Path) -> list[str]:
    """The section's lines; draws ``forecast.png`` and writes ``forecast.csv`` into ``out``.
    Empty without a forecast (fewer than three sizes)."""
    if forecast is None or not forecast.curves:
        return []
    plot_forecast(forecast, out / FILE_NAME)
    forecast.table().to_csv(out / CSV_NAME, index=False)
    lines = ["", "## Data-scaling forecast", "",
             f"![forecast]({FILE_NAME})", "",
             "Validation accuracy against dataset size, fitted per model, condition and budget with a "
             "saturating power law acc(n) = a − b·n^(−c) (the best configuration by validation at each "
             "size), then extrapolated (dashed). Intervals: 95%, bootstrap over the validation images; "
             "they leave out seed-to-seed noise and a curve that bends away from the power law beyond "
             "the measured sizes, which the hold-out check measures." +
             (f" The asymptote a is capped at the dataset's ceiling, {percent(forecast.ceiling)}."
              if forecast.ceiling is not None else ""), ""]
    rows = pd.DataFrame(_rows(forecast))
    lines += [markdown_table(rows, {c: c for c in rows.columns}), ""]
    lines += _target_lines(forecast)
    lines += _catch_up_lines(forecast)
    lines += _holdout_lines(forecast)
    if forecast.skipped:
        lines += ["", "Not fitted: " + "; ".join(forecast.skipped) + "."]
    lines += ["", f"Table: `{CSV_NAME}`."]
    return lines


def _interval(value: float, low: float, high: float) -> str:
    return f"{percent(value)} [{percent(low)}, {percent(high)}]"


def _rows(forecast: fc.ScalingForecast) -> list[dict]:
    rows = []
    for c in forecast.curves:
        row = {"curve": c.label, "sizes measured": ", ".join(f"{n:g}" for n in c.curve.n),
               "val accuracy at the largest": percent(c.curve.accuracy[-1]),
               "asymptote a": percent(c.curve.fit.a)}
        for f in c.forecasts:
            row[f"forecast at n = {f.n:,.0f}"] = _interval(f.accuracy, f.low, f.high)
        row["hold-out error"] = (f"{100 * c.holdout.abs_error:.1f} pts"
                                 f"{'' if c.holdout.covered else ' (outside)'}" if c.holdout else "needs 4 sizes")
        row["caution"] = c.caveat or "—"
        rows.append(row)
    return rows


def _target_lines(forecast: fc.ScalingForecast) -> list[str]:
    """What the larger grid this sweep stands in for would show: at each of its sizes, both
    inits' forecasts and the gain with its interval and verdict."""
    gains = [(u, g) for u in forecast.catch_ups for g in u.at_targets]
    if not gains:
        return []
    lines = ["What the full grid would show at its sizes (forecast from the sizes measured here, "
             "not measured):", ""]
    lines += [gain_sentence(u, g) for u, g in gains]
    return lines + [""]


def gain_sentence(u: fc.CatchUp, g: fc.GainForecast) -> str:
    return (f"- {u.label}, n = {g.n:,.0f}: {u.pretrained.condition} {_interval(g.pretrained.accuracy, g.pretrained.low, g.pretrained.high)}, "
            f"scratch {_interval(g.scratch.accuracy, g.scratch.low, g.scratch.high)}; gain "
            f"{100 * g.gain:+.1f} points [{100 * g.low:+.1f}, {100 * g.high:+.1f}]: {g.verdict}"
            + (" (caution: a curve was at chance at some measured sizes)" if u.caveat else "") + ".")


def _catch_up_lines(forecast: fc.ScalingForecast) -> list[str]:
    if not forecast.catch_ups:
        return ["Where scratch catches up: not asked, the sweep has no scratch and pretrained curves "
                "at a shared budget."]
    lines = [f"Where scratch catches up (within {100 * forecast.delta:g} point of pretrained, searched up to "
             f"{forecast.horizon:g}× the largest size):", ""]
    lines += [f"- {u.pretrained.budget:g} epochs: {u.crossover.text()}." for u in forecast.catch_ups]
    return lines


def _holdout_lines(forecast: fc.ScalingForecast) -> list[str]:
    checked = [c for c in forecast.curves if c.holdout is not None]
    if not checked:
        return ["", "Hold-out check: not possible, it needs four sizes (three to fit, one to check)."]
    lines = ["", "Hold-out check: each curve refitted without its largest size, forecasting it:", ""]
    for c in checked:
        h = c.holdout
        lines.append(f"- {c.label}: forecast {_interval(h.predicted, h.low, h.high)} at n = {h.n:,.0f}, "
                     f"measured {percent(h.measured)}: off by {100 * h.abs_error:.1f} points, "
                     f"{'inside' if h.covered else 'outside'} the forecast's interval.")
    return lines


def plot_forecast(forecast: fc.ScalingForecast, path: Path) -> Path:
    """One panel per budget: measured validation accuracies (bars: Wilson 95%), the fitted curves
    (solid over the measured sizes, dashed beyond) with their bootstrap bands, the crossover."""
    budgets = sorted({c.budget for c in forecast.curves})
    style = condition_style(sorted({c.condition for c in forecast.curves}))
    models = sorted({c.model for c in forecast.curves})
    dashes = {m: ls for m, ls in zip(models, ("-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))))}
    figure = new_figure(6.2 * len(budgets), 4.8)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.88, wspace=0.25)
    panels = np.atleast_1d(figure.subplots(1, len(budgets)))
    for ax, budget in zip(panels, budgets):
        for c in (c for c in forecast.curves if c.budget == budget):
            _draw_curve(ax, c, forecast.horizon, style[c.condition]["color"], style[c.condition]["marker"],
                        dashes[c.model], len(models) > 1)
        for u in (u for u in forecast.catch_ups if u.pretrained.budget == budget and u.crossover.within_horizon
                  and not u.crossover.already_within):
            ax.axvline(u.crossover.n, color="grey", ls=":", lw=1)
            ax.annotate(f"within {100 * forecast.delta:g} pt\nn≈{u.crossover.n:,.0f}", (u.crossover.n, 0.02),
                        xycoords=("data", "axes fraction"), fontsize=7, color="grey", ha="left")
        if forecast.ceiling is not None:
            ax.axhline(forecast.ceiling, color="black", ls="--", lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("dataset size (images), log scale")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"{budget:g} epochs: measured, fitted, extrapolated (dashed)")
        ax.grid(True, alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.02), ncol=min(4, len(labels)),
                  fontsize=8, frameon=False)
    figure.suptitle("Data-scaling forecast (bands: 95% bootstrap over validation images; ×: the largest size "
                     "forecast from the others, the hold-out check)", fontsize=10)
    return save_figure(figure, path)


def _draw_curve(ax, c: fc.SizeCurve, horizon: float, colour: str, marker: str, line_style, name_model: bool):
    n = np.asarray(c.curve.n, float)
    measured = np.geomspace(n.min(), n.max(), 60)
    beyond = np.geomspace(n.max(), horizon * n.max(), 60)
    both = np.concatenate([measured, beyond])
    draws = c.curve.draws(both)
    tail = (1 - c.curve.confidence) / 2
    ax.fill_between(both, np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0),
                    color=colour, alpha=0.12, lw=0)
    label = f"{c.model} {c.condition}" if name_model else c.condition
    ax.plot(measured, c.curve.fit(measured), color=colour, ls=line_style, lw=1.5)
    ax.plot(beyond, c.curve.fit(beyond), color=colour, ls="--", lw=1.2)
    bounds = np.array([wilson_interval(a * m, m) for a, m in zip(c.curve.accuracy, c.curve.evaluated)])
    accuracy = np.asarray(c.curve.accuracy)
    yerr = np.vstack([accuracy - bounds[:, 0], bounds[:, 1] - accuracy]).clip(min=0)
    ax.errorbar(n, accuracy, yerr=yerr, fmt=marker, color=colour, capsize=3, ms=5, label=label)
    if c.holdout is not None and math.isfinite(c.holdout.predicted):
        h = c.holdout
        ax.errorbar([h.n], [h.predicted], yerr=[[h.predicted - h.low], [h.high - h.predicted]], fmt="x",
                    color=colour, capsize=2, ms=6, alpha=0.7)
