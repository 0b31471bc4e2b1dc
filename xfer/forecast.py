"""A sweep's data-scaling forecast: accuracy against dataset size per (model, condition, budget),
extrapolated beyond the grid, and where scratch catches up with pretrained.

Pure pandas/numpy; the curve fitting is ``xfer.scaling``. The input is the report's points (one
per configuration, seeds averaged: ``xfer.frontier.analyse``), so the forecast reads the same
numbers as every other section.

What is fitted, and why:
- One curve per (model, condition, epochs run). At each dataset size the point with the best
  validation accuracy among the other axes (batch size, learning rate, ...) is taken, as the
  pretraining gain does: the curve is "the best this model reaches with n images at this
  budget", chosen on validation.
- The y values are validation accuracies (what selects), never test accuracies: a forecast of
  the test score from the test score would be selection on the test set by another route.
  Each point weighs as many images as it was evaluated on (``n_val`` times its seeds).
- The x values are the dataset size a user asks for (``dataset_size``): train and validation
  are fixed fractions of it, so forecasting in dataset size or in training images differs by a
  constant factor only.
- The asymptote is capped by the dataset audit's ceiling (the best any classifier can do on
  these plots) when the sweep has one.
- A curve with four or more sizes also gets the hold-out check: refit without its largest size
  and forecast that size, against what was measured. It is the forecast's own measured error.

The intervals see the validation set's sampling noise only (``xfer.scaling``): not seed to seed
training noise, and not a curve that leaves the power law beyond the measured sizes. The hold-out
error is the honest measure of the latter; the report shows both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from xfer import scaling, stats
from xfer.errors import UsageError
from xfer.names import FORECAST_AT, N_VAL
from xfer.pretraining_gain import budget_column
from xfer.uncertainty import SELECTION

DELTA = 0.01  # "scratch catches up": within 1 point of pretrained
HORIZON = 10.0  # the crossover is searched up to 10x the largest measured size
MULTIPLES = (2, 10)  # forecasts at 2x and 10x the largest measured size
RESAMPLES = 400


@dataclass(frozen=True)
class SizeCurve:
    """One fitted learning curve: whose it is, the fit, its forecasts and its hold-out check."""
    model: str
    condition: str
    budget: float  # epochs run
    configs: tuple[str, ...]  # the configuration chosen at each size, smallest first
    curve: scaling.Curve
    forecasts: tuple[scaling.Forecast, ...]
    holdout: scaling.Holdout | None  # None with fewer than four sizes
    at_chance: tuple[float, ...] = ()  # the measured sizes whose accuracy is at chance level

    @property
    def label(self) -> str:
        return f"{self.model} {self.condition}, {self.budget:g} epochs"

    @property
    def caveat(self) -> str:
        """Why this curve's forecast may be far off, or "": a curve that is still at chance at
        some measured sizes has not started to learn there, and where learning starts is not a
        power law (measured: the quick preset's 2-epoch curves, at chance up to 150 images,
        forecast 12-34% at 400 images where 70-78% was measured)."""
        if not self.at_chance:
            return ""
        sizes = ", ".join(f"{n:g}" for n in self.at_chance)
        return (f"at chance at n = {sizes}: where learning starts is not a power law, so the forecast "
                "can be far off")


@dataclass(frozen=True)
class GainForecast:
    """Pretrained - scratch forecast at one size: both curves' forecasts and the difference,
    with the percentile interval of the difference over index-paired bootstrap fits."""
    n: float
    scratch: scaling.Forecast
    pretrained: scaling.Forecast
    gain: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        return stats.verdict(self.low, self.high)


@dataclass(frozen=True)
class CatchUp:
    """Where a scratch curve comes within ``delta`` of a pretrained one at the same budget, and
    the gain forecast at the sizes asked for (``targets``)."""
    scratch: SizeCurve
    pretrained: SizeCurve
    crossover: scaling.Crossover
    at_targets: tuple[GainForecast, ...] = ()

    @property
    def caveat(self) -> bool:
        """Either curve was at chance at some measured size (:attr:`SizeCurve.caveat`)."""
        return bool(self.scratch.caveat or self.pretrained.caveat)

    @property
    def label(self) -> str:
        models = self.pretrained.model if self.pretrained.model == self.scratch.model else \
            f"{self.pretrained.model} vs {self.scratch.model}"
        return f"{models}, {self.pretrained.budget:g} epochs"


@dataclass(frozen=True)
class ScalingForecast:
    curves: tuple[SizeCurve, ...]
    catch_ups: tuple[CatchUp, ...]
    sizes: tuple[int, ...]  # every dataset size the sweep measured
    skipped: tuple[str, ...]  # curves left out, and why
    ceiling: float | None
    delta: float
    horizon: float
    targets: tuple[float, ...] = ()  # sizes forecast on request (a larger grid's), beyond 2x and 10x

    def table(self) -> pd.DataFrame:
        """One row per curve: the fit, the forecasts with their intervals, the hold-out check."""
        rows = []
        for c in self.curves:
            row = {"model": c.model, "condition": c.condition, "epochs_run": c.budget,
                   "sizes": ";".join(f"{n:g}" for n in c.curve.n),
                   "val_accuracies": ";".join(f"{a:.4f}" for a in c.curve.accuracy),
                   "a": c.curve.fit.a, "b": c.curve.fit.b, "c": c.curve.fit.c}
            for f in c.forecasts:
                key = f"forecast_{f.n / c.curve.largest_n:g}x"
                row.update({f"{key}_n": f.n, key: f.accuracy, f"{key}_low": f.low, f"{key}_high": f.high})
            if c.holdout is not None:
                h = c.holdout
                row.update(holdout_n=h.n, holdout_measured=h.measured, holdout_predicted=h.predicted,
                           holdout_low=h.low, holdout_high=h.high, holdout_abs_error=h.abs_error,
                           holdout_covered=h.covered)
            rows.append(row)
        return pd.DataFrame(rows)

    def crossover_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"model": u.pretrained.model, "scratch_model": u.scratch.model,
                              "condition": u.pretrained.condition, "epochs_run": u.pretrained.budget,
                              "crossover_n": u.crossover.n, "crossover_low": u.crossover.low,
                              "crossover_high": u.crossover.high,
                              "within_horizon": u.crossover.within_horizon, "horizon_n": u.crossover.horizon_n,
                              "delta": u.crossover.delta, "text": u.crossover.text(),
                              **{f"gain_at_{g.n:g}{k}": v for g in u.at_targets
                                 for k, v in (("", g.gain), ("_low", g.low), ("_high", g.high))}}
                             for u in self.catch_ups])


def dataset_sizes(points: pd.DataFrame) -> tuple[int, ...]:
    if "dataset_size" not in points:
        return ()
    sizes = pd.to_numeric(points["dataset_size"], errors="coerce").dropna()
    return tuple(sorted({int(s) for s in sizes}))


def check_sizes(points: pd.DataFrame) -> None:
    """UsageError unless the sweep measured at least ``scaling.MIN_SIZES`` dataset sizes."""
    sizes = dataset_sizes(points)
    if len(sizes) < scaling.MIN_SIZES:
        had = f" ({', '.join(map(str, sizes))})" if sizes else ""
        raise UsageError(f"a data-scaling forecast needs at least {scaling.MIN_SIZES} dataset sizes "
                         f"(a curve has three parameters); this sweep measured {len(sizes)}{had}")


def scaling_forecast(points: pd.DataFrame, *, ceiling: float | None = None, chance: float | None = None,
                     delta: float = DELTA,
                     horizon: float = HORIZON, multiples: tuple[float, ...] = MULTIPLES,
                     targets: tuple[float, ...] = (), resamples: int = RESAMPLES,
                     seed: int = 0) -> ScalingForecast:
    """The forecast of a sweep's points (:func:`xfer.frontier.analyse`'s ``points``), at
    ``multiples`` of each curve's largest size and at the sizes ``targets`` (a larger grid this
    sweep stands in for). ``chance``: 1 / classes, to flag sizes a curve is still at chance at
    (:attr:`SizeCurve.caveat`). UsageError when the sweep has fewer than three dataset sizes; a curve
    with fewer (a model or budget that ran at only some sizes) is left out and named in
    ``skipped``."""
    targets = tuple(sorted({float(t) for t in targets}))
    if any(not (math.isfinite(t) and t > 0) for t in targets):
        raise UsageError(f"forecast sizes must be positive numbers of images, got {list(targets)}")
    check_sizes(points)
    if N_VAL not in points:
        raise UsageError(f"the runs carry no {N_VAL} metric (how many validation images each "
                         "accuracy is over), which the forecast's intervals need")
    curves, skipped = [], []
    for (model, condition, budget), by_size in _groups(points):
        label = f"{model} {condition}, {budget:g} epochs"
        if len(by_size) < scaling.MIN_SIZES:
            skipped.append(f"{label}: {len(by_size)} size{'s' if len(by_size) != 1 else ''}, "
                           f"a curve needs {scaling.MIN_SIZES}")
            continue
        curve = _size_curve(model, condition, budget, by_size, ceiling, multiples, targets, resamples, seed)
        curves.append(replace(curve, at_chance=_at_chance(curve.curve, chance)))
    pairs = _catch_ups(curves, delta, horizon, targets)
    return ScalingForecast(tuple(curves), tuple(pairs), dataset_sizes(points), tuple(skipped), ceiling,
                           float(delta), float(horizon), targets)


def _groups(points: pd.DataFrame):
    """((model, condition, budget), the best-by-validation point per size, smallest size first)."""
    budget = budget_column(points)
    table = points.assign(
        _model=points["model"].astype(str) if "model" in points else "model",
        _budget=pd.to_numeric(points[budget], errors="coerce") if budget else math.nan,
        _size=pd.to_numeric(points["dataset_size"], errors="coerce"))
    table = table[np.isfinite(table["_size"].astype(float))]
    # An epoch milestone's run logs no n_val; every run of a dataset size validates on the
    # same split, so its trial's count stands for it.
    n_val = pd.to_numeric(table[N_VAL], errors="coerce")
    table[N_VAL] = n_val.fillna(n_val.groupby(table["_size"]).transform("max"))
    for key, group in table.groupby(["_model", "condition", "_budget"], sort=True, dropna=False):
        best = (group.sort_values([SELECTION, "config"], ascending=[False, True])
                .drop_duplicates("_size").sort_values("_size"))
        yield (str(key[0]), str(key[1]), float(key[2])), best


def _at_chance(curve: scaling.Curve, chance: float | None) -> tuple[float, ...]:
    """The sizes whose validation accuracy's Wilson interval contains the chance level."""
    if chance is None:
        return ()
    return tuple(n for n, a, m in zip(curve.n, curve.accuracy, curve.evaluated)
                 if (lambda low, high: low <= chance <= high)(*stats.wilson_interval(a * m, m)))


def _size_curve(model: str, condition: str, budget: float, by_size: pd.DataFrame, ceiling: float | None,
                multiples: tuple[float, ...], targets: tuple[float, ...], resamples: int,
                seed: int) -> SizeCurve:
    n = by_size["_size"].to_numpy(float)
    accuracy = by_size[SELECTION].to_numpy(float)
    runs = by_size["n_runs"].to_numpy(float) if "n_runs" in by_size else np.ones(len(by_size))
    evaluated = np.maximum(1, np.round(pd.to_numeric(by_size[N_VAL], errors="coerce").to_numpy(float) * runs))
    if not np.isfinite(evaluated).all():
        raise UsageError(f"{model} {condition}: a run has no {N_VAL}, which the forecast's intervals need")
    curve = scaling.fit_curve(n, accuracy, evaluated, ceiling=ceiling, resamples=resamples, seed=seed)
    holdout = scaling.holdout_check(n, accuracy, evaluated, ceiling=ceiling, resamples=resamples, seed=seed) \
        if len(n) >= scaling.MIN_SIZES_HOLDOUT else None
    sizes = sorted({m * curve.largest_n for m in multiples} | set(targets))
    return SizeCurve(model, condition, budget, tuple(by_size["config"].astype(str)), curve,
                     tuple(curve.predict(n) for n in sizes), holdout)


def _catch_ups(curves: list[SizeCurve], delta: float, horizon: float,
               targets: tuple[float, ...]) -> list[CatchUp]:
    """Each pretrained curve against the scratch curve of the same model and budget, else (arms
    whose scratch model differs, as CIFAR-10's small CNN) the scratch curve at that budget that
    is most accurate at its largest size."""
    out = []
    for pre in (c for c in curves if c.condition.startswith("pretrained")):
        rivals = [c for c in curves if c.condition == "scratch" and c.budget == pre.budget]
        same = [c for c in rivals if c.model == pre.model]
        if not rivals:
            continue
        scratch = same[0] if same else max(rivals, key=lambda c: c.curve.accuracy[-1])
        cross = scaling.crossover(scratch.curve, pre.curve, delta=delta, horizon=horizon,
                                  names=(f"{scratch.model} scratch", f"{pre.model} {pre.condition}"))
        out.append(CatchUp(scratch, pre, cross, tuple(gain_forecast(scratch.curve, pre.curve, t)
                                                      for t in targets)))
    return out


def gain_forecast(scratch: scaling.Curve, pretrained: scaling.Curve, n: float) -> GainForecast:
    """Pretrained - scratch at ``n``: the point fits' difference and the percentile interval of
    the difference of index-paired bootstrap fits (independent resamples, so any pairing is a
    draw of the pair)."""
    draws = pretrained.draws([n])[:, 0] - scratch.draws([n])[:, 0]
    tail = (1 - scratch.confidence) / 2
    return GainForecast(float(n), scratch.predict(n), pretrained.predict(n),
                        float(pretrained.fit(n) - scratch.fit(n)),
                        float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)))


def forecast_if_possible(points: pd.DataFrame, *, ceiling: float | None = None, chance: float | None = None,
                         sweep_params: dict | None = None) -> ScalingForecast | None:
    """The forecast a report adds when it can: None for a sweep with fewer than three sizes or
    without ``n_val`` (no forecast is asked of it, and the report says nothing). The sizes the
    sweep's preset forecasts at (the parent's ``forecast_at`` param) come from ``sweep_params``."""
    if len(dataset_sizes(points)) < scaling.MIN_SIZES or N_VAL not in points:
        return None
    return scaling_forecast(points, ceiling=ceiling, chance=chance,
                            targets=targets_param((sweep_params or {}).get(FORECAST_AT)))


def targets_param(value) -> tuple[float, ...]:
    """The parent's ``forecast_at`` param ("400,1000") as sizes; () when absent or unreadable."""
    try:
        return tuple(float(v) for v in str(value).split(",") if v.strip()) if value else ()
    except ValueError:
        return ()


def summary_lines(forecast: ScalingForecast) -> list[str]:
    """The forecast in plain lines, for a terminal: per curve its forecasts and hold-out check,
    then where scratch catches up."""
    pct = lambda a: f"{100 * a:.1f}%"  # noqa: E731
    lines = []
    for c in forecast.curves:
        ahead = ", ".join(f"n={f.n:,.0f}: {pct(f.accuracy)} [{pct(f.low)}, {pct(f.high)}]" for f in c.forecasts)
        measured = ", ".join(f"{n:g}: {pct(a)}" for n, a in zip(c.curve.n, c.curve.accuracy))
        lines.append(f"{c.label}: measured (val) {measured}; forecast {ahead}")
        if c.caveat:
            lines.append(f"  caution: {c.caveat}")
        if c.holdout is not None:
            h = c.holdout
            lines.append(f"  hold-out: n={h.n:,.0f} forecast from the smaller sizes {pct(h.predicted)} "
                         f"[{pct(h.low)}, {pct(h.high)}], measured {pct(h.measured)}, off by "
                         f"{100 * h.abs_error:.1f} points ({'inside' if h.covered else 'outside'} the interval)")
    lines += [f"{u.pretrained.budget:g} epochs: {u.crossover.text()}" for u in forecast.catch_ups]
    for u in forecast.catch_ups:
        for g in u.at_targets:
            lines.append(f"{u.label}, n={g.n:,.0f} (forecast): {u.pretrained.condition} {pct(g.pretrained.accuracy)} "
                         f"[{pct(g.pretrained.low)}, {pct(g.pretrained.high)}], scratch {pct(g.scratch.accuracy)} "
                         f"[{pct(g.scratch.low)}, {pct(g.scratch.high)}], gain {100 * g.gain:+.1f} points "
                         f"[{100 * g.low:+.1f}, {100 * g.high:+.1f}]: {g.verdict}"
                         + (" (caution: a curve was at chance at some measured sizes)" if u.caveat else ""))
    lines += [f"not fitted: {s}" for s in forecast.skipped]
    return lines


def headline(forecast: ScalingForecast) -> CatchUp | None:
    """The catch-up at the largest budget (then the most accurate pretrained curve): where a
    study's question, "how much data before scratch catches up?", is answered."""
    if not forecast.catch_ups:
        return None
    return max(forecast.catch_ups, key=lambda u: (u.pretrained.budget, u.pretrained.curve.accuracy[-1]))
