"""Cost versus accuracy: the Pareto frontier and "the cheapest configuration that reaches A".

Pure pandas/numpy. The input is the runs table, one row per finished run with the columns the
child runs carry (params such as ``init``, ``batch_size``; final metrics such as ``test_accuracy``,
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

from dataclasses import dataclass

import numpy as np
import pandas as pd

# The facade every reader of the frontier imports (`from xfer import frontier as fr`: the report,
# the tracking layer, the CLI, the tests): the pieces live in the modules below, one question each,
# and are re-exported here so callers keep one name for "the frontier's vocabulary".
from xfer.configurations import (NOT_NUMERIC_SUMMARY, aggregate_seeds, clean_runs,
                                 condition_names, format_dropped)
from xfer.cost_axis import (AMORTIZED, COST_UNITS, DEFAULT_COST, PRETRAIN, amortized_cost,
                            break_even_uses, check_amortize, check_axis, check_cost)
from xfer.names import CONFIG_PARAMS, COST_METRICS, TRAIN_MACS
from xfer.pareto import (best_per_group, frontier_members, frontier_pairs, frontiers,
                         pareto_mask, with_separation)
from xfer.pretraining_gain import budget_column, pretraining_gains
from xfer.reach import (BreakEven, TargetAnswer, break_even, cheapest_reaching,
                        check_target, common_target)
from xfer.uncertainty import (ACCURACY, CI_HIGH, CI_LOW, CI_METHOD, REACH_TOLERANCE, SELECTION,
                              accuracy_interval, accuracy_text, compare_points, difference_text,
                              guards, percent, point_accuracy_text, reach_on_test, reach_words)

__all__ = ["ACCURACY", "AMORTIZED", "Analysis", "BreakEven", "CI_HIGH", "CI_LOW", "CI_METHOD",
           "CONFIG_PARAMS", "COST_METRICS", "COST_UNITS", "DEFAULT_COST", "NOT_NUMERIC_SUMMARY",
           "PRETRAIN", "REACH_TOLERANCE", "SELECTION", "TRAIN_MACS", "TargetAnswer",
           "accuracy_interval", "accuracy_text", "aggregate_seeds", "amortized_cost", "analyse",
           "best_per_group", "break_even", "break_even_uses", "budget_column", "cheapest_reaching",
           "check_amortize", "check_axis", "check_cost", "check_target", "clean_runs",
           "common_target", "compare_points", "condition_names", "difference_text",
           "format_dropped", "frontier_members", "frontier_pairs", "frontiers", "guards",
           "pareto_mask", "percent", "point_accuracy_text", "pretraining_gains", "reach_on_test",
           "reach_words", "with_separation"]


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
        runs[AMORTIZED] = amortized_cost(pd.to_numeric(runs.get(TRAIN_MACS), errors="coerce"),
                                         pretrain.fillna(0.0), uses)
        cost = AMORTIZED
    kept, dropped = clean_runs(runs, cost)
    kept["condition"] = condition_names(kept)
    points = aggregate_seeds(kept, config_columns)
    members = frontier_members(points, cost)
    pairs = frontier_pairs(members, cost, predictions)
    level = common_target(points)
    return Analysis(
        cost=cost, runs=kept, dropped=dropped, points=points, frontier=with_separation(members, pairs),
        pairs=pairs, best=best_per_group(points, "condition", cost),
        target=cheapest_reaching(points, target, cost) if target is not None else None,
        common=cheapest_reaching(points, level, cost) if level is not None else None,
        gains=pretraining_gains(points, predictions), predictions=dict(predictions or {}),
        amortize_pretraining=uses, unknown_pretrain_macs=unknown)
