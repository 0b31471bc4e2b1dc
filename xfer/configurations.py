"""From the runs table to configurations: which runs are usable on the cost axis, and one point
per configuration (its seeds averaged, its test interval, its names).

Separate from the frontier and the questions asked of it, which all take points (one row per
configuration) and never look at single runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xfer.cost_axis import DEFAULT_COST, check_axis
from xfer.errors import UsageError
from xfer.names import CONFIG_PARAMS, EPOCHS_RUN, GPU_SECONDS, TRAIN_MACS
from xfer.uncertainty import ACCURACY, CI_HIGH, CI_LOW, SELECTION, accuracy_interval

# numeric, but averaging them means nothing (a point's own interval is recomputed)
NOT_NUMERIC_SUMMARY = ("seed", CI_LOW, CI_HIGH)
# Label pieces in reading order: (column, prefix). `init` is the marker, so short labels omit it.
_LABEL_PARTS = (("model", ""), ("init", ""), ("train_layers", ""), ("weights", "w:"),
                ("head", ""), ("dataset", ""), ("dataset_size", "n"), ("image_size", "px"),
                ("batch_size", "bs"), (EPOCHS_RUN, "ep"), ("lr", "lr"), ("optimizer", ""),
                ("weight_decay", "wd"), ("schedule", ""), ("early_stopping_patience", "pat"),
                ("label_smoothing", "ls"), ("augment", "aug"))
_ALWAYS_IN_NAME = ("model", "init", "train_layers", "dataset_size", "batch_size", EPOCHS_RUN)


def clean_runs(runs: pd.DataFrame, cost: str = DEFAULT_COST) -> tuple[pd.DataFrame, dict[str, int]]:
    """Runs usable on the cost axis, and how many were dropped for which reason.

    A run is dropped (never a crash) when its validation accuracy (what selects), its test
    accuracy (what is reported) or its cost is missing or not finite, or its cost is not
    positive (``gpu_seconds`` is 0 on CPU; a log axis cannot show it). A run that appears twice
    (same ``run_id``) counts once. Raises UsageError when nothing is left.
    """
    check_axis(cost)
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
        hint = f"; {GPU_SECONDS} is 0 for CPU trials, try --cost {TRAIN_MACS}" if cost == GPU_SECONDS else ""
        raise UsageError(f"no finished run has a finite {SELECTION}, a finite {ACCURACY} and a "
                         f"positive {cost}{why}{hint}")
    for column in (SELECTION, ACCURACY, cost):
        kept[column] = kept[column].astype(float)
    return kept, dropped


def format_dropped(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} with {why}" for why, n in dropped.items())


def aggregate_seeds(runs: pd.DataFrame, config_columns: tuple[str, ...] | list[str] | None = None,
                    ) -> pd.DataFrame:
    """One row (point) per configuration: numeric columns averaged over its runs, plus
    ``test_accuracy_std`` / ``_min`` / ``_max``, ``test_accuracies`` (per seed), the test
    interval ``test_accuracy_ci_low`` / ``_high`` / ``_method`` (``xfer.frontier``), ``n_runs``,
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
            if column == EPOCHS_RUN and "epochs" in row and _format(row["epochs"]) != _format(row[column]):
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
