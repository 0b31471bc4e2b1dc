"""Cost versus accuracy: the Pareto frontier and "the cheapest configuration that reaches A".

Pure pandas/numpy. The input is the runs table, one row per finished run with the columns SPEC
names (params such as ``init``, ``batch_size``; final metrics such as ``test_accuracy``,
``train_macs``). No MLflow and no plotting here: ``xfer.tracking.runs`` builds the table and
``xfer.report`` draws it.

Vocabulary.
- A *configuration* is everything a run was asked to do except its seed, with ``epochs_run`` in
  place of the budget alone: a trial that ASHA stopped at epoch 3 is a 3-epoch configuration and
  costs what 3 epochs cost. Runs of one configuration with several seeds become one *point*:
  mean accuracy and cost, with their spread.
- A *condition* is the init, plus ``train_layers`` when the sweep varied it ("pretrained/head").
- A point is on the frontier when no other point is at most as costly and at least as accurate,
  with one of the two strictly: the non-dominated set. Exact ties are all kept.

Honest uncertainty. Each point carries a seed spread: the sample standard deviation of its own
seeds' test accuracy when it has several runs, otherwise the pooled seed standard deviation of the
sweep (seed noise measured on the configurations that had repeats, assumed to apply to the rest),
otherwise none. Two frontier points are *not distinguishable* when their accuracy difference is
below sqrt(s_a^2 + s_b^2), the standard deviation of the difference of two single-seed results;
for means of several seeds this is conservative (it flags more, never fewer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xfer.errors import UsageError, choice_error

ACCURACY = "test_accuracy"
COST_METRICS = ("train_macs", "wall_time_s", "gpu_seconds", "macs_epochs_per_batch")
DEFAULT_COST = "train_macs"  # hardware-independent, so sweeps on different clusters compare
COST_UNITS = {
    "train_macs": "training MACs (3 x forward MACs x images processed)",
    "wall_time_s": "wall time per trial [s]",
    "gpu_seconds": "GPU-seconds (wall time x GPUs held)",
    "macs_epochs_per_batch": "MACs x epochs / batch size (design card)",
}
# What defines a configuration when the caller does not say; whichever are in the table count.
# `seed` is left out on purpose (it is what gets aggregated), and so are params that only
# identify a run's inputs (dataset_path, weights_sha256).
CONFIG_PARAMS = ("model", "init", "train_layers", "weights", "head", "dataset", "dataset_size",
                 "n_train", "image_size", "epochs", "epochs_run", "batch_size", "lr", "optimizer",
                 "weight_decay", "schedule", "early_stopping_patience", "label_smoothing",
                 "augment")
NOT_NUMERIC_SUMMARY = ("seed",)  # numeric, but averaging it means nothing
# Label pieces in reading order: (column, prefix). `init` is the marker, so short labels omit it.
_LABEL_PARTS = (("model", ""), ("init", ""), ("train_layers", ""), ("weights", "w:"),
                ("head", ""), ("dataset", ""), ("dataset_size", "n"), ("image_size", "px"),
                ("batch_size", "bs"), ("epochs_run", "ep"), ("lr", "lr"), ("optimizer", ""),
                ("weight_decay", "wd"), ("schedule", ""), ("early_stopping_patience", "pat"),
                ("label_smoothing", "ls"), ("augment", "aug"))
_ALWAYS_IN_NAME = ("model", "init", "train_layers", "dataset_size", "batch_size", "epochs_run")
REACH_TOLERANCE = 1e-9  # 0.9 reached by 90/100 must not fail on the last float bit


# --- checks at the edge ---------------------------------------------------------------------

def check_cost(cost: str) -> str:
    if cost not in COST_METRICS:
        raise choice_error("cost metric", cost, COST_METRICS)
    return cost


def check_target(target: float | None) -> float | None:
    if target is None:
        return None
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise UsageError(f"target accuracy must be in (0, 1], got {target!r}")
    return float(target)


def clean_runs(runs: pd.DataFrame, cost: str = DEFAULT_COST) -> tuple[pd.DataFrame, dict[str, int]]:
    """Runs usable on the cost axis, and how many were dropped for which reason.

    A run is dropped (never a crash) when its test accuracy or cost is missing or not finite, or
    its cost is not positive (``gpu_seconds`` is 0 on CPU; a log axis cannot show it). A run that
    appears twice (same ``run_id``) counts once. Raises UsageError when nothing is left.
    """
    check_cost(cost)
    if "run_id" in runs:
        runs = runs.drop_duplicates("run_id")
    dropped: dict[str, int] = {}
    keep = pd.Series(True, index=runs.index)
    for column, positive in ((ACCURACY, False), (cost, True)):
        values = pd.to_numeric(runs[column], errors="coerce") if column in runs else \
            pd.Series(np.nan, index=runs.index)
        bad = keep & ~np.isfinite(values.astype(float))
        if bad.any():
            dropped[f"no finite {column}"] = int(bad.sum())
        keep &= ~bad
        if positive:
            bad = keep & (values <= 0)
            if bad.any():
                dropped[f"{column} <= 0"] = int(bad.sum())
            keep &= ~bad
    kept = runs[keep].copy()
    if kept.empty:
        why = f" (dropped: {format_dropped(dropped)})" if dropped else ""
        hint = "; gpu_seconds is 0 for CPU trials, try --cost train_macs" if cost == "gpu_seconds" else ""
        raise UsageError(f"no finished run has a finite {ACCURACY} and a positive {cost}{why}{hint}")
    kept[ACCURACY] = kept[ACCURACY].astype(float)
    kept[cost] = kept[cost].astype(float)
    return kept, dropped


def format_dropped(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} with {why}" for why, n in dropped.items())


# --- configurations and their seeds ----------------------------------------------------------

def aggregate_seeds(runs: pd.DataFrame, config_columns: tuple[str, ...] | list[str] | None = None,
                    ) -> pd.DataFrame:
    """One row (point) per configuration: numeric columns averaged over its runs, plus
    ``test_accuracy_std`` / ``_min`` / ``_max``, ``n_runs``, ``seeds``, ``run_ids``,
    ``representative_run_id`` (the run closest to the mean accuracy, for learning curves and
    confusion matrices), ``condition``, ``config`` (a full name), ``label`` (only what varies
    in the sweep, init left to the marker) and the seed spread (module docstring).

    ``runs`` must hold finite ``test_accuracy`` values (see :func:`clean_runs`).
    """
    columns = [c for c in (config_columns or CONFIG_PARAMS) if c in runs.columns]
    if not columns:
        raise ValueError(f"the runs table has none of the configuration columns {CONFIG_PARAMS}")
    runs = runs.reset_index(drop=True)
    numeric = [c for c in runs.select_dtypes("number").columns
               if c not in columns and c not in NOT_NUMERIC_SUMMARY]
    rows = []
    for key, group in runs.groupby(columns, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        accuracy = group[ACCURACY].to_numpy(float)
        row = dict(zip(columns, key))
        row.update(group[numeric].mean(numeric_only=True).to_dict())
        row.update({
            f"{ACCURACY}_std": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else np.nan,
            f"{ACCURACY}_min": float(accuracy.min()), f"{ACCURACY}_max": float(accuracy.max()),
            "n_runs": len(group),
        })
        order = group.sort_values("seed") if "seed" in group else group
        row["seeds"] = ",".join(str(s) for s in order["seed"]) if "seed" in group else ""
        if "run_id" in group:
            row["run_ids"] = tuple(order["run_id"])
            closest = (order[ACCURACY] - row[ACCURACY]).abs().to_numpy().argmin()
            row["representative_run_id"] = order["run_id"].iloc[closest]
        rows.append(row)
    points = pd.DataFrame(rows)
    points["condition"] = condition_names(points)
    points["config"] = _labels(points, short=False)
    points["label"] = _labels(points, short=True)
    _add_spread(points)
    return points


def condition_names(points: pd.DataFrame) -> pd.Series:
    """``init``, plus ``/train_layers`` when the sweep varied it: "pretrained/head"."""
    if "init" not in points:
        return pd.Series("(no init)", index=points.index)
    names = points["init"].astype(str)
    if "train_layers" in points and points["train_layers"].nunique(dropna=False) > 1:
        names = names + "/" + points["train_layers"].astype(str)
    return names


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:g}" if math.isfinite(value) else "?"
    return str(value)


def _labels(points: pd.DataFrame, *, short: bool) -> list[str]:
    """Full names look like the run names (resnet18-pretrained-all-n1000-bs4-ep20) plus whatever
    else varies; short labels keep only what varies, without init. ``ep3/20`` = ASHA stopped a
    20-epoch budget at 3."""
    parts = []
    for column, prefix in _LABEL_PARTS:
        if column not in points:
            continue
        varies = _varies(points, column)
        if short and (column == "init" or not varies):
            continue
        if short or varies or column in _ALWAYS_IN_NAME:
            parts.append((column, prefix))
    labels = []
    for _, row in points.iterrows():
        pieces = []
        for column, prefix in parts:
            text = prefix + _format(row[column])
            if column == "epochs_run" and "epochs" in row and _format(row["epochs"]) != _format(row[column]):
                text += "/" + _format(row["epochs"])
            pieces.append(text)
        labels.append(("-" if not short else " ").join(pieces) or str(row.get("init", "")))
    return labels


def _varies(points: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` tells configurations apart. ``weights`` that follow from the init
    (None for scratch, imagenet for pretrained) do not."""
    if column == "weights" and "init" in points:
        return bool((points.groupby("init")[column].nunique(dropna=False) > 1).any())
    return points[column].nunique(dropna=False) > 1


def pooled_seed_std(points: pd.DataFrame) -> float:
    """Pooled sample std of test accuracy over configurations with >= 2 runs, NaN if none:
    sum((n_i - 1) s_i^2) / sum(n_i - 1)."""
    repeated = points[points["n_runs"] > 1]
    if repeated.empty:
        return float("nan")
    dof = repeated["n_runs"] - 1
    return float(np.sqrt((dof * repeated[f"{ACCURACY}_std"] ** 2).sum() / dof.sum()))


def _add_spread(points: pd.DataFrame) -> None:
    pooled = pooled_seed_std(points)
    own = points["n_runs"] > 1
    points["accuracy_spread"] = np.where(own, points[f"{ACCURACY}_std"], pooled)
    points["spread_source"] = np.where(own, "seeds", "pooled" if math.isfinite(pooled) else "none")


# --- the frontier ----------------------------------------------------------------------------

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


def frontiers(points: pd.DataFrame, cost: str = DEFAULT_COST) -> pd.DataFrame:
    """The frontier overall (scope ``all``) and per condition, long format sorted by scope then
    cost, with ``not_distinguishable_from``: the configs on the same frontier whose accuracy is
    within seed noise of this one ("; "-joined, empty when none)."""
    check_cost(cost)
    scopes = [("all", points)] + [(name, group) for name, group in points.groupby("condition", sort=True)]
    tables = []
    for scope, group in scopes:
        front = group[pareto_mask(group[cost], group[ACCURACY])].sort_values([cost, ACCURACY])
        front = front.assign(scope=scope, not_distinguishable_from=_noise_neighbours(front))
        tables.append(front)
    table = pd.concat(tables, ignore_index=True)
    return table[["scope"] + [c for c in table.columns if c != "scope"]]


def _noise_neighbours(front: pd.DataFrame) -> list[str]:
    accuracy = front[ACCURACY].to_numpy(float)
    spread = front["accuracy_spread"].to_numpy(float)
    difference = np.abs(accuracy[:, None] - accuracy[None, :])
    noise = np.sqrt(spread[:, None] ** 2 + spread[None, :] ** 2)  # NaN (no estimate) never flags
    close = (difference < noise) & ~np.eye(len(front), dtype=bool)
    names = front["config"].to_numpy()
    return ["; ".join(names[row]) for row in close]


def noise_pairs(frontier_table: pd.DataFrame, cost: str = DEFAULT_COST) -> pd.DataFrame:
    """Each flagged pair once: scope, cheaper and costlier config, accuracy difference (costlier
    minus cheaper) and the noise it is compared with."""
    rows = []
    for scope, front in frontier_table.groupby("scope", sort=False):
        front = front.sort_values(cost).reset_index(drop=True)
        for i in range(len(front)):
            for j in range(i + 1, len(front)):
                a, b = front.iloc[i], front.iloc[j]
                noise = math.hypot(a["accuracy_spread"], b["accuracy_spread"])
                difference = b[ACCURACY] - a[ACCURACY]
                if abs(difference) < noise:
                    rows.append({"scope": scope, "cheaper": a["config"], "costlier": b["config"],
                                 "accuracy_difference": difference, "noise": noise})
    return pd.DataFrame(rows, columns=["scope", "cheaper", "costlier", "accuracy_difference", "noise"])


# --- questions ---------------------------------------------------------------------------------

def best_per_group(points: pd.DataFrame, by: str | list[str] = "init",
                   cost: str = DEFAULT_COST) -> pd.DataFrame:
    """The most accurate point of each group (ties: the cheaper, then by name)."""
    ranked = points.sort_values([ACCURACY, cost, "config"], ascending=[False, True, True])
    return ranked.groupby(by, sort=True, dropna=False).head(1).sort_values(by).reset_index(drop=True)


@dataclass(frozen=True)
class TargetAnswer:
    """Per init: the cheapest point reaching the target (``reached`` False when none does, with
    the init's best accuracy), and the sentences that say so."""
    target: float
    cost: str
    reference: str  # the init the ratios divide by: scratch when present
    table: pd.DataFrame  # init, reached, config, cost, test_accuracy, best_test_accuracy, cost_ratio
    sentences: list[str]


def cheapest_reaching(points: pd.DataFrame, target: float, cost: str = DEFAULT_COST,
                      by: str = "init") -> TargetAnswer:
    """For each value of ``by``, the cheapest point whose mean test accuracy is >= ``target``
    (ties: the more accurate), and its cost over the reference init's."""
    target = check_target(target)
    check_cost(cost)
    rows = []
    for name, group in points.groupby(by, sort=True):
        reached = group[group[ACCURACY] >= target - REACH_TOLERANCE]
        best = group.sort_values([ACCURACY, cost], ascending=[False, True]).iloc[0]
        row = {by: name, "reached": not reached.empty, "best_test_accuracy": best[ACCURACY],
               "best_config": best["config"]}
        if not reached.empty:
            hit = reached.sort_values([cost, ACCURACY], ascending=[True, False]).iloc[0]
            row.update(config=hit["config"], cost=hit[cost], test_accuracy=hit[ACCURACY],
                       n_runs=hit["n_runs"])
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=[by, "reached", "config", "cost", "test_accuracy",
                                                "n_runs", "best_test_accuracy", "best_config"])
    names = list(table[by])
    reference = "scratch" if "scratch" in names else names[0]
    ref = table[table[by] == reference].iloc[0]
    table["cost_ratio"] = table["cost"] / ref["cost"] if ref["reached"] else np.nan
    return TargetAnswer(target, cost, reference, table, _target_sentences(table, by, reference, target, cost))


def percent(accuracy: float) -> str:
    return f"{accuracy * 100:.4g}%"


def _target_sentences(table: pd.DataFrame, by: str, reference: str, target: float,
                      cost: str) -> list[str]:
    goal = percent(target)
    reached = table[table["reached"]]
    if reached.empty:
        bests = ", ".join(f"{r[by]} {percent(r['best_test_accuracy'])}" for _, r in table.iterrows())
        return [f"No {by} reaches {goal} test accuracy (best: {bests})."]
    sentences = []
    ref = table[table[by] == reference].iloc[0]
    compared = ref["reached"] and len(reached) > 1  # the ratio sentences name the reference's cost
    for _, row in table.iterrows():
        if not row["reached"]:
            sentences.append(f"{row[by]} never reaches {goal} (its best is "
                             f"{percent(row['best_test_accuracy'])}, {row['best_config']}).")
        elif row[by] == reference and compared:
            continue
        elif row[by] != reference and ref["reached"]:
            sentences.append(f"{row[by]} reaches {goal} at {row['cost_ratio']:.2g}x the {cost} of "
                             f"{reference} ({row['cost']:.3g} vs {ref['cost']:.3g}: "
                             f"{row['config']} vs {ref['config']}).")
        else:
            sentences.append(f"{row[by]} reaches {goal} at {cost} {row['cost']:.3g} ({row['config']}).")
    return sentences


def common_target(points: pd.DataFrame, by: str = "init") -> float | None:
    """The highest accuracy every group reaches (the weakest group's best), None with one group
    or when some group never got a test image right (every group "reaches" 0: nothing to say):
    the level at which "how much cheaper" has an answer for all of them."""
    bests = points.groupby(by)[ACCURACY].max()
    return float(bests.min()) if len(bests) > 1 and bests.min() > 0 else None


# --- everything at once ------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """What the report shows, computed once from the finished runs."""
    cost: str
    runs: pd.DataFrame  # the usable runs (clean_runs), with their condition
    dropped: dict[str, int]  # reason -> runs left out
    points: pd.DataFrame  # one row per configuration (aggregate_seeds)
    frontier: pd.DataFrame  # frontiers(): scope "all" and one per condition
    noise: pd.DataFrame  # noise_pairs()
    best: pd.DataFrame  # best_per_group(points, "condition")
    target: TargetAnswer | None  # cheapest_reaching at the requested target, else None
    common: TargetAnswer | None  # the same at common_target(): the level every init reaches


def analyse(runs: pd.DataFrame, cost: str = DEFAULT_COST, target: float | None = None,
            config_columns=None) -> Analysis:
    check_cost(cost)
    target = check_target(target)
    kept, dropped = clean_runs(runs, cost)
    kept["condition"] = condition_names(kept)
    points = aggregate_seeds(kept, config_columns)
    front = frontiers(points, cost)
    level = common_target(points)
    return Analysis(
        cost=cost, runs=kept, dropped=dropped, points=points, frontier=front,
        noise=noise_pairs(front, cost), best=best_per_group(points, "condition", cost),
        target=cheapest_reaching(points, target, cost) if target is not None else None,
        common=cheapest_reaching(points, level, cost) if level is not None else None)
