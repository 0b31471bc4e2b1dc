"""Cost versus accuracy: the Pareto frontier and "the cheapest configuration that reaches A".

Pure pandas/numpy. The input is the runs table, one row per finished run with the columns SPEC
names (params such as ``init``, ``batch_size``; final metrics such as ``test_accuracy``,
``train_macs``). No MLflow and no plotting here: ``xfer.tracking.runs`` builds the table and
``xfer.report`` draws it.

Vocabulary.
- A *configuration* is everything a run was asked to do except its seed, with ``epochs_run`` in
  place of the budget alone: a trial that ASHA stopped at epoch 3 is a 3-epoch configuration and
  costs what 3 epochs cost. Runs of one configuration with several seeds become one *point*:
  mean accuracies and cost, with their spread.
- A *condition* is the init, plus ``train_layers`` when the sweep varied it ("pretrained/head").
- A point is on the frontier when no other point is at most as costly and at least as accurate
  on validation, with one of the two strictly: the non-dominated set. Exact ties are all kept.

Selection reads validation only. "Best", the frontier's membership, the pretraining-gain pairs
and "the cheapest configuration reaching A" rank by ``val_accuracy`` (each run's final value).
``test_accuracy`` is scored on images no choice ever saw and is only reported, beside the choice,
with its 95% interval: a point of several seeds carries mean ± Student's t across its seeds, a
point of one run the Wilson interval of its test accuracy over ``n_test`` images (the logged
``test_accuracy_ci_low``/``_high`` when present). Maximising test accuracy would select on the
test set and report the winner's luck as its skill.

Uncertainty in conclusions (``xfer.stats``). Two points are compared on the same test images
when both logged ``test_predictions.json`` for one ``test_set_sha256`` (paired: exact McNemar
for single runs, a paired bootstrap of seed-averaged correctness otherwise); without that,
Newcombe's interval from the two Wilson intervals (unpaired, wider). A difference whose interval
includes zero is "not separable": the report then names no winner. A configuration whose test
interval straddles a target "reaches it within noise".

Pretraining cost. ``pretrain_macs`` (0 for scratch) is what producing the starting weights cost.
By default it is not counted on the cost axis; amortised over N uses (``amortize_pretraining``)
the axis becomes ``train_macs + pretrain_macs / N``. The break-even N, past which a pretrained
fine-tune plus its share of pretraining is cheaper than training from scratch to the same
validation accuracy, is pretrain_macs / (scratch train_macs - pretrained train_macs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from xfer import stats
from xfer.errors import UsageError, choice_error
from xfer.uncertainty import (ACCURACY, CI_HIGH, CI_LOW, CI_METHOD, REACH_TOLERANCE, SELECTION,  # noqa: F401
                              accuracy_text, compare_points, difference_text, guards, percent,
                              point_accuracy_text, reach_on_test, reach_words, accuracy_interval)

PRETRAIN = "pretrain_macs"
COST_METRICS = ("train_macs", "wall_time_s", "gpu_seconds", "macs_epochs_per_batch")
DEFAULT_COST = "train_macs"  # hardware-independent, so sweeps on different clusters compare
AMORTIZED = "train_macs_amortized"  # train_macs + pretrain_macs / N: the axis with --amortize-pretraining
COST_UNITS = {
    "train_macs": "training MACs (forward + backward through the trained layers, x images processed)",
    AMORTIZED: "training MACs + pretraining MACs / N uses",
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
# numeric, but averaging them means nothing (a point's own interval is recomputed)
NOT_NUMERIC_SUMMARY = ("seed", CI_LOW, CI_HIGH)
# Label pieces in reading order: (column, prefix). `init` is the marker, so short labels omit it.
_LABEL_PARTS = (("model", ""), ("init", ""), ("train_layers", ""), ("weights", "w:"),
                ("head", ""), ("dataset", ""), ("dataset_size", "n"), ("image_size", "px"),
                ("batch_size", "bs"), ("epochs_run", "ep"), ("lr", "lr"), ("optimizer", ""),
                ("weight_decay", "wd"), ("schedule", ""), ("early_stopping_patience", "pat"),
                ("label_smoothing", "ls"), ("augment", "aug"))
_ALWAYS_IN_NAME = ("model", "init", "train_layers", "dataset_size", "batch_size", "epochs_run")


# --- checks at the edge ---------------------------------------------------------------------

def check_cost(cost: str) -> str:
    if cost not in COST_METRICS:
        raise choice_error("cost metric", cost, COST_METRICS)
    return cost


def _check_axis(cost: str) -> str:
    """A user's cost metric, or the amortised axis analyse() derives from train_macs."""
    return cost if cost == AMORTIZED else check_cost(cost)


def check_amortize(uses, cost: str = DEFAULT_COST) -> int | None:
    """``None`` (pretraining not counted) or a whole number of uses >= 1, on train_macs only:
    pretraining is counted in MACs, and adding MACs to seconds would mean nothing."""
    if uses is None:
        return None
    if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 1:
        raise UsageError(f"--amortize-pretraining must be a whole number of uses >= 1, got {uses!r}")
    if cost != "train_macs":
        raise UsageError(f"--amortize-pretraining counts pretraining in MACs, so it needs --cost "
                         f"train_macs, got --cost {cost}")
    return int(uses)


def check_target(target: float | None) -> float | None:
    if target is None:
        return None
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise UsageError(f"target accuracy must be in (0, 1], got {target!r}")
    return float(target)


def clean_runs(runs: pd.DataFrame, cost: str = DEFAULT_COST) -> tuple[pd.DataFrame, dict[str, int]]:
    """Runs usable on the cost axis, and how many were dropped for which reason.

    A run is dropped (never a crash) when its validation accuracy (what selects), its test
    accuracy (what is reported) or its cost is missing or not finite, or its cost is not
    positive (``gpu_seconds`` is 0 on CPU; a log axis cannot show it). A run that appears twice
    (same ``run_id``) counts once. Raises UsageError when nothing is left.
    """
    _check_axis(cost)
    if "run_id" in runs:
        runs = runs.drop_duplicates("run_id")
    dropped: dict[str, int] = {}
    keep = pd.Series(True, index=runs.index)
    for column, positive in ((SELECTION, False), (ACCURACY, False), (cost, True)):
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
        raise UsageError(f"no finished run has a finite {SELECTION}, a finite {ACCURACY} and a "
                         f"positive {cost}{why}{hint}")
    for column in (SELECTION, ACCURACY, cost):
        kept[column] = kept[column].astype(float)
    return kept, dropped


def format_dropped(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} with {why}" for why, n in dropped.items())


# --- configurations and their seeds ----------------------------------------------------------

def aggregate_seeds(runs: pd.DataFrame, config_columns: tuple[str, ...] | list[str] | None = None,
                    ) -> pd.DataFrame:
    """One row (point) per configuration: numeric columns averaged over its runs, plus
    ``test_accuracy_std`` / ``_min`` / ``_max``, ``test_accuracies`` (per seed), the test
    interval ``test_accuracy_ci_low`` / ``_high`` / ``_method`` (module docstring), ``n_runs``,
    ``seeds``, ``run_ids``, ``representative_run_id`` (the run closest to the mean validation
    accuracy, for learning curves and confusion matrices), ``condition``, ``config`` (a full
    name) and ``label`` (only what varies in the sweep, init left to the marker).

    ``runs`` must hold finite ``val_accuracy`` and ``test_accuracy`` values (:func:`clean_runs`).
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
        row["test_accuracies"] = tuple(order[ACCURACY])
        row.update(accuracy_interval(order))
        if "run_id" in group:
            row["run_ids"] = tuple(order["run_id"])
            closest = (order[SELECTION] - row[SELECTION]).abs().to_numpy().argmin()
            row["representative_run_id"] = order["run_id"].iloc[closest]
        rows.append(row)
    points = pd.DataFrame(rows)
    points["condition"] = condition_names(points)
    points["config"] = _labels(points, short=False)
    points["label"] = _labels(points, short=True)
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


def frontiers(points: pd.DataFrame, cost: str = DEFAULT_COST, predictions: dict | None = None
              ) -> pd.DataFrame:
    """The frontier overall (scope ``all``) and per condition: membership by validation accuracy
    (never test), long format sorted by scope then cost, with ``not_separable_from``: the
    configs on the same frontier whose test accuracy this one's cannot be told apart from (the
    interval of the difference includes zero; "; "-joined, empty when none)."""
    front = _frontier_members(points, cost)
    return _with_separation(front, frontier_pairs(front, cost, predictions))


def _frontier_members(points: pd.DataFrame, cost: str) -> pd.DataFrame:
    _check_axis(cost)
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


def _with_separation(front: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    close = pairs[~pairs["separable"].astype(bool)]
    neighbours = []
    for _, row in front.iterrows():
        mine = close[close["scope"] == row["scope"]]
        others = list(mine.loc[mine["cheaper"] == row["config"], "costlier"]) + \
            list(mine.loc[mine["costlier"] == row["config"], "cheaper"])
        neighbours.append("; ".join(sorted(others)))
    return front.assign(not_separable_from=neighbours)


# --- questions ---------------------------------------------------------------------------------

def best_per_group(points: pd.DataFrame, by: str | list[str] = "init",
                   cost: str = DEFAULT_COST) -> pd.DataFrame:
    """The point of each group with the best validation accuracy (ties: the cheaper, then by
    name). Test accuracy plays no part: it is reported beside the choice."""
    ranked = points.sort_values([SELECTION, cost, "config"], ascending=[False, True, True])
    return ranked.groupby(by, sort=True, dropna=False).head(1).sort_values(by).reset_index(drop=True)


@dataclass(frozen=True)
class BreakEven:
    """How many uses of the pretrained weights pay for their pretraining, at ``target``:
    ``uses`` = pretrain_macs / (scratch train_macs - pretrained train_macs); inf: never (the
    pretrained fine-tune is not cheaper); nan: unknown."""
    target: float
    uses: float
    pretrain_macs: float
    pretrained_cost: float
    scratch_cost: float
    pretrained_config: str
    scratch_config: str
    sentence: str


# Pretraining spread over N uses of the same weights. Here, not in xfer.cost, because importing
# xfer.cost loads torch and the model zoo (~5 s): the report must not need them.
def amortized_cost(train_macs, pretrain_macs, uses: int):
    """Per-use cost with pretraining shared over ``uses`` fine-tunes: train_macs + pretrain_macs /
    uses (numbers or pandas Series)."""
    return train_macs + pretrain_macs / uses


def break_even_uses(pretrain_macs: float, pretrained_cost: float, scratch_cost: float) -> float:
    """The N at which N pretrained fine-tunes plus one pretraining cost what N scratch runs
    cost: pretrain_macs / (scratch - pretrained); inf when pretrained is not cheaper per use,
    so no number of uses pays the pretraining back."""
    saving = scratch_cost - pretrained_cost
    return pretrain_macs / saving if saving > 0 else math.inf


@dataclass(frozen=True)
class TargetAnswer:
    """Per init: the cheapest point reaching the target on validation (``reached`` False when
    none does, with the init's best), its test accuracy and interval with ``on_test`` (reaches /
    within noise / falls short), the break-even uses, and the sentences that say so."""
    target: float
    cost: str
    reference: str  # the init the ratios divide by: scratch when present
    table: pd.DataFrame  # init, reached, config, cost, val/test accuracy, interval, on_test, cost_ratio
    sentences: list[str]
    break_even: BreakEven | None = None


def cheapest_reaching(points: pd.DataFrame, target: float, cost: str = DEFAULT_COST,
                      by: str = "init") -> TargetAnswer:
    """For each value of ``by``, the cheapest point whose mean validation accuracy is >= ``target``
    (ties: the more accurate on validation), its cost over the reference init's, and whether
    its test interval confirms the target."""
    target = check_target(target)
    _check_axis(cost)
    rows = []
    for name, group in points.groupby(by, sort=True):
        reached = group[group[SELECTION] >= target - REACH_TOLERANCE]
        best = group.sort_values([SELECTION, cost], ascending=[False, True]).iloc[0]
        row = {by: name, "reached": not reached.empty, "best_val_accuracy": best[SELECTION],
               "best_config": best["config"]}
        if not reached.empty:
            hit = reached.sort_values([cost, SELECTION], ascending=[True, False]).iloc[0]
            row.update(config=hit["config"], cost=hit[cost], val_accuracy=hit[SELECTION],
                       test_accuracy=hit[ACCURACY], **{c: hit.get(c, np.nan) for c in (CI_LOW, CI_HIGH)},
                       on_test=reach_on_test(hit[ACCURACY], hit.get(CI_LOW, np.nan),
                                             hit.get(CI_HIGH, np.nan), target),
                       n_runs=hit["n_runs"], train_macs=hit.get("train_macs", np.nan),
                       pretrain_macs=hit.get(PRETRAIN, np.nan))
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=[by, "reached", "config", "cost", "val_accuracy",
                                                "test_accuracy", CI_LOW, CI_HIGH, "on_test", "n_runs",
                                                "train_macs", PRETRAIN, "best_val_accuracy", "best_config"])
    names = list(table[by])
    reference = "scratch" if "scratch" in names else names[0]
    ref = table[table[by] == reference].iloc[0]
    table["cost_ratio"] = table["cost"] / ref["cost"] if ref["reached"] else np.nan
    return TargetAnswer(target, cost, reference, table, _target_sentences(table, by, reference, target, cost),
                        break_even(table, target, by))


def _target_sentences(table: pd.DataFrame, by: str, reference: str, target: float,
                      cost: str) -> list[str]:
    goal = percent(target)
    reached = table[table["reached"]]
    if reached.empty:
        bests = ", ".join(f"{r[by]} {percent(r['best_val_accuracy'])}" for _, r in table.iterrows())
        return [f"No {by} reaches {goal} validation accuracy (best: {bests})."]
    sentences = []
    ref = table[table[by] == reference].iloc[0]
    compared = ref["reached"] and len(reached) > 1  # the ratio sentences name the reference's cost
    for _, row in table.iterrows():
        if not row["reached"]:
            sentences.append(f"{row[by]} never reaches {goal} validation accuracy (its best is "
                             f"{percent(row['best_val_accuracy'])}, {row['best_config']}).")
            continue
        if row[by] == reference and compared:
            continue
        on_test = f"test {_test_words(row, goal)}"
        if row[by] != reference and ref["reached"]:
            sentences.append(f"{row[by]} reaches {goal} validation accuracy at {row['cost_ratio']:.2g}x the "
                             f"{cost} of {reference} ({row['cost']:.3g} vs {ref['cost']:.3g}: "
                             f"{row['config']}, {on_test}; vs {ref['config']}, test {_test_words(ref, goal)}).")
            if not row["on_test"] == ref["on_test"] == "reaches":
                sentences.append(f"The test set does not confirm that both reach {goal}, so the "
                                 f"{row['cost_ratio']:.2g}x holds only within its noise.")
        else:
            sentences.append(f"{row[by]} reaches {goal} validation accuracy at {cost} {row['cost']:.3g} "
                             f"({row['config']}, {on_test}).")
    return sentences


def _test_words(row, goal: str) -> str:
    return (f"{accuracy_text(row['test_accuracy'], row[CI_LOW], row[CI_HIGH])}: "
            f"{reach_words(row['on_test'], goal)}")


def break_even(table: pd.DataFrame, target: float, by: str = "init") -> BreakEven | None:
    """Break-even uses of the pretraining for the pair the target query chose (None unless
    both pretrained and scratch are in ``table``); the sentence says why when there is none."""
    if by != "init" or not {"pretrained", "scratch"} <= set(table[by]):
        return None
    rows = table.set_index(by)
    pre, scr = rows.loc["pretrained"], rows.loc["scratch"]
    goal = percent(target)
    nan = math.nan
    if not (pre["reached"] and scr["reached"]):
        who = " and ".join(n for n, r in (("pretrained", pre), ("scratch", scr)) if not r["reached"])
        return BreakEven(target, nan, nan, nan, nan, "", "", f"No break-even at {goal}: {who} never "
                         "reaches it on validation.")
    pretrain, p_cost, s_cost = float(pre[PRETRAIN]), float(pre["train_macs"]), float(scr["train_macs"])
    base = BreakEven(target, nan, pretrain, p_cost, s_cost, pre["config"], scr["config"], "")
    if not (math.isfinite(p_cost) and math.isfinite(s_cost)):
        return replace(base, sentence=f"No break-even at {goal}: train_macs was not logged.")
    if not math.isfinite(pretrain):
        return replace(base, sentence=f"No break-even at {goal}: the pretrained runs logged no "
                                      "pretrain_macs, so what their weights cost is unknown.")
    uses = break_even_uses(pretrain, p_cost, s_cost)
    if math.isinf(uses):
        words = (f"Break-even at {goal}: never. A pretrained fine-tune reaching it costs {p_cost:.3g} "
                 f"train_macs ({pre['config']}), no less than training from scratch ({s_cost:.3g}, "
                 f"{scr['config']}), so its pretraining ({pretrain:.3g} MACs) is never paid back.")
    else:
        first = math.floor(uses) + 1  # the first whole N at which pretrained is strictly cheaper
        words = (f"Break-even at {goal}: N = {uses:.3g} uses. Pretraining ({pretrain:.3g} MACs) is paid "
                 f"back by fine-tunes that each save {s_cost - p_cost:.3g} train_macs ({pre['config']} at "
                 f"{p_cost:.3g} vs {scr['config']} at {s_cost:.3g}); counting it, pretrained is cheaper "
                 f"from {first:,} use{'s' if first > 1 else ''} of the weights on.")
    return replace(base, uses=uses, sentence=words)


def common_target(points: pd.DataFrame, by: str = "init") -> float | None:
    """The highest validation accuracy every group reaches (the weakest group's best), None with
    one group or when some group never got a validation image right (every group "reaches" 0:
    nothing to say): the level at which "how much cheaper" has an answer for all of them."""
    bests = points.groupby(by)[SELECTION].max()
    return float(bests.min()) if len(bests) > 1 and bests.min() > 0 else None


def budget_column(points: pd.DataFrame) -> str | None:
    """The epochs a point trained for: ``epochs_run`` (an ASHA-stopped or milestone run counts
    at what it ran), else ``epochs``."""
    return next((c for c in ("epochs_run", "epochs") if c in points), None)


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


# --- everything at once ------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """What the report shows, computed once from the finished runs."""
    cost: str  # the cost axis: a COST_METRICS name, or AMORTIZED
    runs: pd.DataFrame  # the usable runs (clean_runs), with their condition
    dropped: dict[str, int]  # reason -> runs left out
    points: pd.DataFrame  # one row per configuration (aggregate_seeds)
    frontier: pd.DataFrame  # frontiers(): scope "all" and one per condition
    pairs: pd.DataFrame  # frontier_pairs(): can the test set separate two frontier points?
    best: pd.DataFrame  # best_per_group(points, "condition"), by validation accuracy
    target: TargetAnswer | None  # cheapest_reaching at the requested target, else None
    common: TargetAnswer | None  # the same at common_target(): the level every init reaches
    gains: pd.DataFrame  # pretraining_gains(): pretrained - scratch per (size, budget)
    predictions: dict  # run id -> test_predictions.json, as given
    amortize_pretraining: int | None = None  # N uses, when pretraining is counted on the axis
    unknown_pretrain_macs: int = 0  # pretrained runs without pretrain_macs, counted as 0


def analyse(runs: pd.DataFrame, cost: str = DEFAULT_COST, target: float | None = None,
            config_columns=None, *, predictions: dict | None = None,
            amortize_pretraining: int | None = None) -> Analysis:
    """Everything the report needs. ``predictions``: run id -> test_predictions.json (pairs the
    test comparisons; optional); ``amortize_pretraining``: N uses, which makes the cost axis
    train_macs + pretrain_macs / N (train_macs only)."""
    check_cost(cost)
    target = check_target(target)
    uses = check_amortize(amortize_pretraining, cost)
    unknown = 0
    if uses is not None:
        runs = runs.copy()
        pretrain = pd.to_numeric(runs[PRETRAIN], errors="coerce") if PRETRAIN in runs else \
            pd.Series(np.nan, index=runs.index)
        is_pretrained = runs["init"] == "pretrained" if "init" in runs else pd.Series(True, index=runs.index)
        unknown = int((pretrain.isna() & is_pretrained).sum())
        runs[AMORTIZED] = amortized_cost(pd.to_numeric(runs.get("train_macs"), errors="coerce"),
                                         pretrain.fillna(0.0), uses)
        cost = AMORTIZED
    kept, dropped = clean_runs(runs, cost)
    kept["condition"] = condition_names(kept)
    points = aggregate_seeds(kept, config_columns)
    members = _frontier_members(points, cost)
    pairs = frontier_pairs(members, cost, predictions)
    level = common_target(points)
    return Analysis(
        cost=cost, runs=kept, dropped=dropped, points=points, frontier=_with_separation(members, pairs),
        pairs=pairs, best=best_per_group(points, "condition", cost),
        target=cheapest_reaching(points, target, cost) if target is not None else None,
        common=cheapest_reaching(points, level, cost) if level is not None else None,
        gains=pretraining_gains(points, predictions), predictions=dict(predictions or {}),
        amortize_pretraining=uses, unknown_pretrain_macs=unknown)
