"""Which runs the report reads more than its final metrics of, chosen before anything is loaded.

The report details (learning curves, confusion matrices), compares on the test set (paired
test predictions) and groups (ROC curves, feature embeddings) only some runs; their artifacts
cost one download each, so ``xfer.tracking.sweep_report`` asks here which to fetch. Every
choice reads validation accuracy, never the artifacts themselves.
"""

from __future__ import annotations

import pandas as pd

from xfer import frontier as fr
from xfer.report.sections import group_label


def detail_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None) -> list[str]:
    """The runs whose learning curves and confusion matrices the report shows: for the best
    configuration (by validation accuracy) of each condition, and of each model and condition
    when the sweep has several models, the seed closest to its mean."""
    analysis = fr.analyse(runs, cost, None, config_columns)
    return list(dict.fromkeys([*best_runs(analysis).values(), *_model_curve_runs(analysis).values()]))


def comparison_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, target_accuracy=None,
                       config_columns=None, amortize_pretraining: int | None = None) -> list[str]:
    """Every run of the configurations the report compares on the test set (frontier points,
    the pretraining-gain pairs, the best of each condition and size): whose
    ``test_predictions.json`` pair the comparisons. Which these are never depends on the
    predictions (selection reads validation), so they can be chosen before loading any."""
    analysis = fr.analyse(runs, cost, target_accuracy, config_columns,
                          amortize_pretraining=amortize_pretraining)
    configs = set(analysis.frontier["config"]) | set(analysis.best["config"])
    if not analysis.gains.empty:
        configs |= set(analysis.gains["scratch_config"]) | set(analysis.gains["pretrained_config"])
    if "dataset_size" in analysis.points:
        configs |= set(fr.best_per_group(analysis.points, ["condition", "dataset_size"], analysis.cost)["config"])
    chosen = analysis.points[analysis.points["config"].isin(configs)]
    return [r for ids in chosen.get("run_ids", []) for r in ids]


def group_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None
                  ) -> dict[str, str]:
    """Group label (``model condition``) -> the run standing for the best configuration of
    each model and condition: whose ROC curves and feature embeddings the report shows."""
    best = best_per_model(fr.analyse(runs, cost, None, config_columns))
    if "representative_run_id" not in best:
        return {}
    return {group_label(row): row["representative_run_id"] for _, row in best.iterrows()}


def best_per_model(analysis: fr.Analysis) -> pd.DataFrame:
    """The best configuration (by validation accuracy) of each model and condition."""
    keys = ["model", "condition"] if "model" in analysis.points else ["condition"]
    return fr.best_per_group(analysis.points, keys, analysis.cost)


def best_runs(analysis: fr.Analysis) -> dict[str, str]:
    """Condition -> the run standing for its best configuration."""
    if "representative_run_id" not in analysis.best:  # a table without run ids has no details
        return {}
    return dict(zip(analysis.best["condition"], analysis.best["representative_run_id"]))


def model_rows(analysis: fr.Analysis) -> dict[str, pd.Series]:
    """Group label (``model condition``) -> the best configuration of each model and condition,
    when the sweep has several models (the CIFAR-100 study's three architectures); else empty."""
    points = analysis.points
    if "model" not in points or points["model"].nunique() < 2 or "representative_run_id" not in points:
        return {}
    return {group_label(row): row for _, row in best_per_model(analysis).iterrows()}


def _model_curve_runs(analysis: fr.Analysis) -> dict[str, str]:
    return {g: row["representative_run_id"] for g, row in model_rows(analysis).items()}
