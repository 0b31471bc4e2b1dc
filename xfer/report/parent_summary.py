"""What a sweep's parent run shows in the MLflow UI besides the report's files: a handful of
summary metrics and a description.

MLflow's runs table and run page show a run's metrics and its description
(``mlflow.note.content``, markdown); without these the parent of a sweep looks empty there. The
numbers come from the same ``xfer.frontier`` analysis the report is written from (so the UI and
report.md never disagree), the description from report.md's own "## Summary" bullets. Pure
pandas, no MLflow: ``xfer.tracking.sweep_report`` logs what this returns.
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import pandas as pd

from xfer import forecast as fc
from xfer import frontier as fr
from xfer.names import (BEST_VAL_PREFIX, CATCH_UP_N, CATCH_UP_WITHIN, CHOSEN_TEST_PREFIX, FAILED_TRIALS,
                        FINISHED_TRIALS, FORECAST_HOLDOUT_ERROR, FRONTIER_SIZE, GAIN, TOTAL_TRAIN_MACS,
                        TOTAL_TRIAL_SECONDS)
from xfer.names import GAIN_AT_TAG, NOTE_TAG  # noqa: F401 - the tags the summary goes under


def report_summary(report: str | Path) -> list[str]:
    """The bullets of a report.md's "## Summary" section, as printed lines (``- ...``)."""
    lines, inside = [], False
    for line in Path(report).read_text().splitlines():
        if line.startswith("## "):
            if inside:
                break
            inside = line.strip() == "## Summary"
        elif inside and line.startswith("- "):
            lines.append(line)
    return lines


def description(report: str | Path, limit: int) -> str:
    """The parent run's description: the report's summary bullets and where the full report
    is, at most ``limit`` characters (MLflow's tag value limit). Bullets that do not fit are
    counted, never cut mid-sentence."""
    bullets = report_summary(report)
    footer = ("\n\nFull report: `report.html` (figures embedded) and `report.md` in this run's "
              "artifacts.")
    kept: list[str] = []
    for i, bullet in enumerate(bullets):
        left_after = len(bullets) - i - 1  # room is kept for the "... N more" line they would need
        reserve = len(f"\n- ... {left_after} more in report.md") if left_after else 0
        if len("\n".join([*kept, bullet])) + reserve + len(footer) > limit:
            kept.append(f"- ... {len(bullets) - i} more in report.md")
            break
        kept.append(bullet)
    return ("\n".join(kept) + footer)[:limit]


def summary_metrics(analysis: fr.Analysis, runs: pd.DataFrame, failed: pd.DataFrame | None,
                    forecast: fc.ScalingForecast | None = None) -> dict[str, float]:
    """Metric name -> value for the parent run. ``analysis``: the report's (``fr.analyse`` of
    the finished runs); ``runs`` / ``failed``: the sweep's finished and unfinished child runs as
    ``xfer.tracking.runs.load_sweep`` reads them; ``forecast``: the report's data-scaling
    forecast, whose catch-up at the largest budget and largest hold-out error are logged. Totals count trial runs only: an epoch
    milestone's run is a measurement inside its trial, whose cost the trial's own run already
    holds. A run that died before logging its final metrics adds nothing to the totals.
    Non-finite values (a gain without an interval) are left out."""
    metrics: dict[str, float] = {}
    for _, row in analysis.best.iterrows():
        key = metric_suffix(row["condition"])
        metrics[BEST_VAL_PREFIX + key] = row[fr.SELECTION]
        metrics[CHOSEN_TEST_PREFIX + key] = row[fr.ACCURACY]
    gain = gain_at_largest_budget(analysis.gains)
    if gain is not None:
        metrics.update({GAIN: gain["gain"], f"{GAIN}_ci_low": gain["gain_low"],
                        f"{GAIN}_ci_high": gain["gain_high"]})
    metrics[FRONTIER_SIZE] = int((analysis.frontier["scope"] == "all").sum())
    metrics.update(forecast_metrics(forecast))
    finished = _trials_only(runs)
    unfinished = _trials_only(failed) if failed is not None else finished.iloc[:0]
    metrics[FINISHED_TRIALS], metrics[FAILED_TRIALS] = len(finished), len(unfinished)
    trials = pd.concat([finished, unfinished], ignore_index=True)
    for name, column in ((TOTAL_TRAIN_MACS, "train_macs"), (TOTAL_TRIAL_SECONDS, "wall_time_s")):
        values = pd.to_numeric(trials[column], errors="coerce") if column in trials else None
        if values is not None and values.notna().any():
            metrics[name] = values.sum()
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def forecast_metrics(forecast: fc.ScalingForecast | None) -> dict[str, float]:
    """The catch-up dataset size at the largest budget with its interval (an infinite bound, or
    a crossover beyond the horizon, is left out: MLflow would store it as a float max), whether
    it is within the horizon, and the largest hold-out error."""
    if forecast is None:
        return {}
    metrics: dict[str, float] = {}
    top = fc.headline(forecast)
    if top is not None:
        cross = top.crossover
        metrics.update({CATCH_UP_N: cross.n, f"{CATCH_UP_N}_ci_low": cross.low,
                        f"{CATCH_UP_N}_ci_high": cross.high, CATCH_UP_WITHIN: float(cross.within_horizon)})
    errors = [c.holdout.abs_error for c in forecast.curves if c.holdout is not None]
    if errors:
        metrics[FORECAST_HOLDOUT_ERROR] = max(errors)
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def gain_at_largest_budget(gains: pd.DataFrame) -> pd.Series | None:
    """The row of ``fr.pretraining_gains`` at the largest budget (epochs run), and at the
    largest training-set size among those: where a study's question ("is pretraining still worth
    it when scratch gets the most training?") is answered. A size where the inits share no budget
    ("6 vs 50") counts at its larger budget. None without a gain table."""
    if gains is None or gains.empty:
        return None
    budget = fr.budget_column(gains)
    order = pd.DataFrame({
        "budget": gains[budget].map(_largest_number) if budget else 0.0,
        "size": pd.to_numeric(gains["dataset_size"], errors="coerce") if "dataset_size" in gains else 0.0,
    }, index=gains.index).fillna(-math.inf)
    return gains.loc[order.sort_values(["budget", "size"], kind="stable").index[-1]]


def gain_location(gains: pd.DataFrame) -> str:
    """Where :func:`gain_at_largest_budget`'s row is, for the GAIN_AT_TAG: e.g.
    ``dataset_size=400, epochs_run=6``; empty without one."""
    row = gain_at_largest_budget(gains)
    if row is None:
        return ""
    keys = [k for k in ("dataset_size", fr.budget_column(gains)) if k and k in row]
    return ", ".join(f"{k}={_plain(row[k])}" for k in keys)


def metric_suffix(condition: str) -> str:
    """A condition as a metric-name suffix: ``pretrained/head`` -> ``pretrained_head`` (a '/'
    would make the UI file the metric under a group of its own)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(condition)).strip("_") or "all"


def _trials_only(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["milestone_of"].isna()] if "milestone_of" in runs else runs


def _largest_number(value) -> float:
    """A budget cell as a number: 6 -> 6.0; "6 vs 50" (pretrained vs scratch) -> 50.0."""
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", str(value))]
    return max(numbers) if numbers else math.nan


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, numbers.Real) and not isinstance(value, bool) else str(value)
