"""The Pareto frontier of cost against validation accuracy, overall and per condition, and which
frontier points the test set can tell apart.

Works on points (``xfer.configurations.aggregate_seeds``); membership reads validation only,
test accuracy is compared afterwards (``xfer.uncertainty.compare_points``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xfer import stats
from xfer.cost_axis import DEFAULT_COST, check_axis
from xfer.uncertainty import SELECTION, compare_points


def pareto_mask(cost, accuracy) -> np.ndarray:
    """True where a point is non-dominated (lower cost and higher accuracy are better).

    O(n log n): sort by cost; a point survives when it has the best accuracy at its cost and
    beats every strictly cheaper point. Equal points are all kept.
    """
    cost, accuracy = np.asarray(cost, float), np.asarray(accuracy, float)
    if not (np.isfinite(cost).all() and np.isfinite(accuracy).all()):
        raise ValueError("pareto_mask needs finite values; drop NaN runs first (clean_runs)")
    order = np.lexsort((-accuracy, cost))
    mask = np.zeros(len(cost), bool)
    best_cheaper = -np.inf
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and cost[order[stop]] == cost[order[start]]:
            stop += 1
        group = order[start:stop]
        top = accuracy[group].max()
        if top > best_cheaper:
            mask[group[accuracy[group] == top]] = True
            best_cheaper = top
        start = stop
    return mask


def frontiers(points: pd.DataFrame, cost: str = DEFAULT_COST, predictions: dict | None = None
              ) -> pd.DataFrame:
    """The frontier overall (scope ``all``) and per condition: membership by validation accuracy
    (never test), long format sorted by scope then cost, with ``not_separable_from``: the
    configs on the same frontier whose test accuracy this one's cannot be told apart from (the
    interval of the difference includes zero; "; "-joined, empty when none)."""
    front = frontier_members(points, cost)
    return with_separation(front, frontier_pairs(front, cost, predictions))


def frontier_members(points: pd.DataFrame, cost: str) -> pd.DataFrame:
    check_axis(cost)
    scopes = [("all", points)] + [(name, group) for name, group in points.groupby("condition", sort=True)]
    tables = []
    for scope, group in scopes:
        front = group[pareto_mask(group[cost], group[SELECTION])].sort_values([cost, SELECTION])
        tables.append(front.assign(scope=scope))
    table = pd.concat(tables, ignore_index=True)
    return table[["scope"] + [c for c in table.columns if c != "scope"]]


def frontier_pairs(frontier_table: pd.DataFrame, cost: str = DEFAULT_COST,
                   predictions: dict | None = None) -> pd.DataFrame:
    """Every pair of points on each frontier: the costlier's test accuracy minus the cheaper's,
    its 95% interval, the method, and whether the test set ``separable`` them (the interval
    excludes zero). O(frontier size^2) comparisons; a pair seen on two scopes is compared once."""
    rows, done = [], {}
    for scope, front in frontier_table.groupby("scope", sort=False):
        front = front.sort_values([cost, SELECTION]).reset_index(drop=True)
        for i in range(len(front)):
            for j in range(i + 1, len(front)):
                cheaper, costlier = front.iloc[i], front.iloc[j]
                key = (cheaper["config"], costlier["config"])
                if key not in done:
                    done[key] = compare_points(costlier, cheaper, predictions, names=("costlier", "cheaper"))
                result = done[key]
                rows.append({"scope": scope, "cheaper": key[0], "costlier": key[1],
                             "cost_ratio": costlier[cost] / cheaper[cost],
                             "accuracy_difference": result.difference, "low": result.low,
                             "high": result.high, "method": result.method,
                             "separable": result.verdict != stats.NO_DIFFERENCE})
    return pd.DataFrame(rows, columns=["scope", "cheaper", "costlier", "cost_ratio", "accuracy_difference",
                                       "low", "high", "method", "separable"])


def with_separation(front: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    close = pairs[~pairs["separable"].astype(bool)]
    neighbours = []
    for _, row in front.iterrows():
        mine = close[close["scope"] == row["scope"]]
        others = list(mine.loc[mine["cheaper"] == row["config"], "costlier"]) + \
            list(mine.loc[mine["costlier"] == row["config"], "cheaper"])
        neighbours.append("; ".join(sorted(others)))
    return front.assign(not_separable_from=neighbours)


def best_per_group(points: pd.DataFrame, by: str | list[str] = "init",
                   cost: str = DEFAULT_COST) -> pd.DataFrame:
    """The point of each group with the best validation accuracy (ties: the cheaper, then by
    name). Test accuracy plays no part: it is reported beside the choice."""
    ranked = points.sort_values([SELECTION, cost, "config"], ascending=[False, True, True])
    return ranked.groupby(by, sort=True, dropna=False).head(1).sort_values(by).reset_index(drop=True)
