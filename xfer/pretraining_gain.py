"""The pretraining gain: at each training-set size and budget, the best pretrained point against
the best scratch point, test accuracy pretrained - scratch with its interval and verdict.

Its own module because it pairs points across inits by size and budget, a grouping neither the
frontier nor the target questions use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xfer.names import EPOCHS_RUN
from xfer.uncertainty import ACCURACY, CI_HIGH, CI_LOW, SELECTION, compare_points


def budget_column(points: pd.DataFrame) -> str | None:
    """The epochs a point trained for: ``epochs_run`` (an ASHA-stopped or milestone run counts
    at what it ran), else ``epochs``."""
    return next((c for c in (EPOCHS_RUN, "epochs") if c in points), None)


def pretraining_gains(points: pd.DataFrame, predictions: dict | None = None) -> pd.DataFrame:
    """At each (dataset_size, budget): the best-by-validation pretrained and scratch points (of a
    model both inits ran, the scratch one of the same model and train_layers when there is one)
    and test accuracy pretrained - scratch with its interval and verdict (:func:`compare_points`).
    Where the two inits never share a budget at a size (arms with budgets of their own, as
    CIFAR-10's 6-epoch transfer arm against its 50-epoch scratch CNN), they are compared at that
    size, each at its best budget, and the budget reads "6 vs 50" (pretrained vs scratch).
    Empty unless both inits ran at some size."""
    if "init" not in points or not {"scratch", "pretrained"} <= set(points["init"]):
        return pd.DataFrame()
    budget = budget_column(points)
    keys = [c for c in ("dataset_size", budget) if c and c in points]
    rows = []
    for key, cell in _gain_cells(points, budget):
        pre, scr = cell[cell["init"] == "pretrained"], cell[cell["init"] == "scratch"]
        if pre.empty or scr.empty:
            continue
        if "model" in cell:
            both = set(pre["model"]) & set(scr["model"])
            if both:
                pre, scr = pre[pre["model"].isin(both)], scr[scr["model"].isin(both)]
        chosen = pre.sort_values([SELECTION, "config"], ascending=[False, True]).iloc[0]
        for column in ("model", "train_layers"):
            if column in scr and (scr[column] == chosen[column]).any():
                scr = scr[scr[column] == chosen[column]]
        other = scr.sort_values([SELECTION, "config"], ascending=[False, True]).iloc[0]
        gain = compare_points(chosen, other, predictions, names=("pretrained", "scratch"))
        row = dict(zip(keys, key))
        if budget in row and row[budget] is None:  # a per-size comparison across budgets
            row[budget] = f"{chosen[budget]:g} vs {other[budget]:g}"
        for prefix, point in (("scratch", other), ("pretrained", chosen)):
            row.update({f"{prefix}_config": point["config"], f"{prefix}_val_accuracy": point[SELECTION],
                        f"{prefix}_test_accuracy": point[ACCURACY],
                        f"{prefix}_ci_low": point.get(CI_LOW, np.nan),
                        f"{prefix}_ci_high": point.get(CI_HIGH, np.nan)})
        row.update(gain=gain.difference, gain_low=gain.low, gain_high=gain.high, paired=gain.paired,
                   method=gain.method, p_value=gain.p_value, verdict=gain.verdict, difference=gain)
        rows.append(row)
    return pd.DataFrame(rows)


def _gain_cells(points: pd.DataFrame, budget: str | None):
    """((size, budget), points) per cell compared by :func:`pretraining_gains`; budget None
    where the inits share no budget at that size."""
    sizes = points.groupby("dataset_size", sort=True, dropna=False) if "dataset_size" in points \
        else [(None, points)]
    for size, by_size in sizes:
        size_key = () if "dataset_size" not in points else (size,)
        if budget is None:
            yield size_key, by_size
            continue
        shared = (set(by_size.loc[by_size["init"] == "pretrained", budget])
                  & set(by_size.loc[by_size["init"] == "scratch", budget]))
        if shared:
            for value, cell in by_size.groupby(budget, sort=True, dropna=False):
                yield (*size_key, value), cell
        else:
            yield (*size_key, None), by_size
