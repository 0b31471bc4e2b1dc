"""The report's "Transferability scores before fine-tuning" section and its figure.

The question it answers: could the sweep have been spared? A transferability score
(``xfer.transferability``: LogME and k-NN accuracy of a backbone's frozen features, one forward
pass, no training) is worth computing only if it ranks the backbones as fine-tuning them does.
So, per dataset size, each scored backbone is set beside its own fine-tuned result, and the two
rankings are compared:

- A backbone's fine-tuned result is the configuration with the best *validation* accuracy among
  the sweep's points of the same model, init and (pretrained) weights at that size; its test
  accuracy is reported with its 95% interval and never used to choose (as everywhere in the
  report, ``xfer.report.conclusions``).
- Agreement: Spearman's rho across backbones of each score against the fine-tuned test accuracy,
  with its 95% interval (``xfer.rank_correlation``: with 4 to 6 backbones it is wide, and says
  so), and whether each score's top backbone is the fine-tuned best. That check means little when
  the fine-tuned best cannot be told from the runner-up on the test set (their 95% intervals
  overlap: a conservative reading, but the report's intervals are per point, not paired), and the
  section says so rather than count it as a hit. The fine-tuned best backbone is the one with the
  highest test accuracy: what a score is meant to predict, measured, not a choice the report makes.
- Cost: the scores' forward MACs and seconds against the fine-tuning MACs of the sweep, the
  saving a score would buy if it were trusted.

Inputs are DataFrames (the scores as ``xfer.transferability.score_transferability`` returns
them, one row per backbone and size; the report's points, seeds averaged); writes
``transferability.csv`` and ``transferability.png``. No MLflow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xfer.rank_correlation import RankCorrelation, picks_best, spearman
from xfer.report.conclusions import markdown_table
from xfer.report.figures import new_figure, save_figure
from xfer.uncertainty import accuracy_text, percent

FIGURE_NAME = "transferability.png"
CSV_NAME = "transferability.csv"
FILE_NAMES = (FIGURE_NAME, CSV_NAME)
SCORES = {"logme": "LogME", "knn_accuracy": "kNN accuracy"}
DEFAULT_WEIGHTS = "imagenet"  # what a pretrained trial without a weights param used (TrialConfig.resolved)
_SCORE_COLUMNS = ("logme", "knn_accuracy")
_COST_COLUMNS = ("embed_macs", "embed_seconds", "score_seconds")
_MISSING = {"", "none", "nan", "null"}  # how a missing weights param can come back from MLflow
_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "h", "<", ">")


def backbone_label(model: str, init: str, weights=None) -> str:
    """``efficientnet_lite0 imagenet``, ``resnet10 scratch``: what a backbone is called here."""
    return f"{model} {_weights_key(init, weights) or init}"


def _weights_key(init: str, weights) -> str:
    """The pretrained weights' name ("" for scratch): a missing one is the default, as the
    trial resolved it, so a point logged without the param still matches its backbone."""
    if init != "pretrained":
        return ""
    text = "" if weights is None or (isinstance(weights, float) and math.isnan(weights)) else str(weights)
    return DEFAULT_WEIGHTS if text.strip().lower() in _MISSING else text


# --- the table -------------------------------------------------------------------------------------

def _scores_by_backbone(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, dataset size), numbers as numbers (MLflow gives params as text).
    A backbone scored twice at one size (two seeds of a scratch init) gets its scores averaged
    and its costs summed: both runs were paid for."""
    frame = scores.copy()
    if "dataset_size" not in frame and "n" in frame:  # score_transferability's own name for it
        frame["dataset_size"] = frame["n"]
    missing = [c for c in ("model", "init", "dataset_size", *_SCORE_COLUMNS) if c not in frame]
    if missing:
        raise ValueError(f"transferability scores lack column(s) {', '.join(missing)}; pass the rows "
                         "xfer.transferability.score_transferability returns, with dataset_size")
    for column in ("dataset_size", *_SCORE_COLUMNS, *_COST_COLUMNS):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["weights"] = [_weights_key(i, w) or None for i, w in
                        zip(frame["init"], frame["weights"] if "weights" in frame else [None] * len(frame))]
    frame["backbone"] = [backbone_label(m, i, w) for m, i, w in zip(frame["model"], frame["init"], frame["weights"])]
    keys = ["backbone", "dataset_size"]
    how = {"model": "first", "init": "first", "weights": "first",
           **{c: "mean" for c in _SCORE_COLUMNS}, **{c: "sum" for c in _COST_COLUMNS if c in frame}}
    return frame.groupby(keys, sort=True, dropna=False).agg(how).reset_index()


def _fine_tuned(points: pd.DataFrame, backbone: pd.Series) -> pd.Series | None:
    """The point of ``backbone`` at its size with the best validation accuracy (ties: the
    cheaper by train_macs, then the config name, so the choice is reproducible); None when none
    finished there."""
    same = ((points["model"] == backbone["model"]) & (points["init"] == backbone["init"])
            & np.isclose(points["dataset_size"], backbone["dataset_size"]) & points["val_accuracy"].notna())
    if backbone["init"] == "pretrained" and "weights" in points:
        same &= points["_weights"] == _weights_key("pretrained", backbone["weights"])
    mine = points[same]
    if mine.empty:
        return None
    order = [c for c in ("val_accuracy", "train_macs", "config") if c in mine]
    return mine.sort_values(order, ascending=[False] + [True] * (len(order) - 1), kind="stable").iloc[0]


def backbone_table(scores: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, dataset size): its scores and costs, and its fine-tuned result (the
    configuration chosen on validation accuracy, ``config``; its ``val_accuracy``, and its
    ``test_accuracy`` with ``test_accuracy_ci_low`` / ``_high``). No finished configuration at
    that size: the scores stay, the fine-tuned columns are NaN. Sorted by size, then backbone."""
    table = _scores_by_backbone(scores)
    points = points.copy() if points is not None else pd.DataFrame(columns=["model", "init", "dataset_size"])
    for column in ("dataset_size", "val_accuracy", "test_accuracy", "test_accuracy_ci_low",
                   "test_accuracy_ci_high", "train_macs"):
        points[column] = pd.to_numeric(points[column], errors="coerce") if column in points else np.nan
    if "weights" in points:
        points["_weights"] = [_weights_key(i, w) for i, w in zip(points["init"], points["weights"])]
    taken = {"config": "config", "val_accuracy": "val_accuracy", "test_accuracy": "test_accuracy",
             "test_accuracy_ci_low": "test_accuracy_ci_low", "test_accuracy_ci_high": "test_accuracy_ci_high",
             "train_layers": "train_layers"}
    rows = []
    for _, backbone in table.iterrows():
        chosen = _fine_tuned(points, backbone)
        rows.append({column: (chosen.get(source, np.nan) if chosen is not None else np.nan)
                     for column, source in taken.items()})
    table = pd.concat([table, pd.DataFrame(rows, index=table.index)], axis=1)
    return table.sort_values(["dataset_size", "backbone"], kind="stable").reset_index(drop=True)


# --- agreement -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    """At one dataset size, across the backbones with a fine-tuned result: each score's rank
    correlation with the fine-tuned test accuracy, its top backbone and whether that is the
    fine-tuned best (any of the best when tied), and whether that best is separable from the
    runner-up (their 95% test intervals do not overlap; None: no runner-up or no intervals)."""
    dataset_size: float
    backbones: int  # with both scores and a fine-tuned test accuracy
    correlations: dict[str, RankCorrelation]  # score column -> rho against fine-tuned test accuracy
    tops: dict[str, str]  # score column -> its top backbone ("a = b" when tied)
    picks: dict[str, bool | None]  # score column -> picks_best; None: nothing to compare
    best: str  # fine-tuned best by test accuracy ("" when none)
    runner_up: str
    separable: bool | None
    unscored: tuple[str, ...] = ()  # scored backbones without a fine-tuned result at this size


def agreement(table: pd.DataFrame) -> list[Agreement]:
    """:class:`Agreement` per dataset size of a :func:`backbone_table`, smallest size first."""
    results = []
    for size, rows in table.groupby("dataset_size", sort=True):
        done = rows[rows["test_accuracy"].notna()].sort_values(["test_accuracy", "backbone"],
                                                                ascending=[False, True], kind="stable")
        accuracy = done["test_accuracy"].to_numpy(float)
        correlations, tops, picks = {}, {}, {}
        for column in _SCORE_COLUMNS:
            score = done[column].to_numpy(float)
            correlations[column] = spearman(score, accuracy)
            has = np.isfinite(score)
            top = done["backbone"][has & (score == np.nanmax(score))] if has.any() else pd.Series([], dtype=str)
            tops[column] = " = ".join(top)
            picks[column] = picks_best(score, accuracy) if has.any() else None
        best = done.iloc[0] if len(done) else None
        runner = done.iloc[1] if len(done) > 1 else None
        results.append(Agreement(float(size), len(done), correlations, tops, picks,
                                 best["backbone"] if best is not None else "",
                                 runner["backbone"] if runner is not None else "",
                                 _separable(best, runner),
                                 tuple(rows.loc[rows["test_accuracy"].isna(), "backbone"])))
    return results


def _separable(best: pd.Series | None, runner: pd.Series | None) -> bool | None:
    if best is None or runner is None:
        return None
    low, high = best["test_accuracy_ci_low"], runner["test_accuracy_ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return bool(low > high)


# --- the section ------------------------------------------------------------------------------------

def transferability_section(scores: pd.DataFrame | None, points: pd.DataFrame | None, out: Path) -> list[str]:
    """The section's lines; writes ``transferability.csv`` and draws ``transferability.png``
    into ``out``. Empty when no backbone was scored."""
    if scores is None or scores.empty:
        return []
    table = backbone_table(scores, points)
    table.to_csv(out / CSV_NAME, index=False)
    plot_transferability(table, out / FIGURE_NAME)
    k, shown = _knn_k(scores), _display(table)
    lines = ["", "## Transferability scores before fine-tuning", "",
             "LogME (You et al., ICML 2021) is the evidence of a Bayesian linear model from a backbone's "
             "frozen features to the labels, on the training split: higher means the labels are closer "
             "to a linear function of the features; only its ranking across backbones on the same images "
             f"means anything. kNN accuracy is the validation accuracy of a {k}-nearest-neighbour "
             "classifier (cosine similarity) on the same features, in accuracy units. Both take one "
             "forward pass over the training and validation images and no training: "
             + _cost_text(table, points) + " A scratch backbone is the randomly initialised control.", "",
             markdown_table(shown, {c: c for c in shown.columns}), "",
             "Fine-tuned: the configuration of the same backbone with the best validation accuracy at "
             "that size; its test accuracy [95% interval] is reported, never used to choose. "
             "ρ: Spearman's rank correlation across backbones of the score with the fine-tuned test "
             "accuracy [95% interval, Fisher z with Bonett & Wright's standard error]; with a handful "
             "of backbones it is wide, and an interval that reaches zero does not show agreement.", ""]
    for result in agreement(table):
        lines += _agreement_lines(result)
    lines += ["", f"![transferability]({FIGURE_NAME})", "", f"Table: `{CSV_NAME}`."]
    return lines


def _knn_k(scores: pd.DataFrame) -> str:
    ks = sorted(pd.to_numeric(scores["knn_k"], errors="coerce").dropna().astype(int).unique()) \
        if "knn_k" in scores else []
    return "/".join(str(k) for k in ks) if ks else "k"


def _cost_text(table: pd.DataFrame, points: pd.DataFrame | None) -> str:
    """The scores' total cost, set against the sweep's fine-tuning MACs when they are known."""
    macs = table["embed_macs"].sum() if "embed_macs" in table else math.nan
    seconds = sum(table[c].sum() for c in ("embed_seconds", "score_seconds") if c in table)
    text = f"{len(table)} scorings cost {macs:.3g} forward MACs and {seconds:.3g} s in all"
    if points is not None and "train_macs" in points:
        per_point = pd.to_numeric(points["train_macs"], errors="coerce")
        runs = pd.to_numeric(points["n_runs"], errors="coerce").fillna(1) if "n_runs" in points else 1
        total = float((per_point * runs).sum())
        if total > 0 and math.isfinite(macs):
            text += (f", against {total:.3g} MACs to fine-tune the sweep's {len(points)} configurations "
                     f"({100 * macs / total:.2g}% of it)")
    return text + "."


def _display(table: pd.DataFrame) -> pd.DataFrame:
    def cost(row) -> str:
        parts = [f"{row[c]:.3g} {unit}" for c, unit in (("embed_macs", "MACs"), ("embed_seconds", "s"))
                 if c in row and math.isfinite(row[c])]
        return ", ".join(parts) or "–"

    return pd.DataFrame({
        "backbone": table["backbone"],
        "n": [f"{v:g}" for v in table["dataset_size"]],
        "LogME": [f"{v:.3f}" if math.isfinite(v) else "–" for v in table["logme"]],
        "kNN acc": [percent(v) if math.isfinite(v) else "–" for v in table["knn_accuracy"]],
        "fine-tuned config": [f"`{c}`" if isinstance(c, str) else "none finished" for c in table["config"]],
        "val acc": [percent(v) if math.isfinite(v) else "–" for v in table["val_accuracy"]],
        "test acc [95% CI]": [accuracy_text(a, lo, hi) if math.isfinite(a) else "–" for a, lo, hi in
                              zip(table["test_accuracy"], table["test_accuracy_ci_low"],
                                  table["test_accuracy_ci_high"])],
        "embed cost": [cost(row) for _, row in table.iterrows()],
    })


def _agreement_lines(result: Agreement) -> list[str]:
    head = f"- {result.dataset_size:g} images, {result.backbones} backbones with a fine-tuned result"
    if result.unscored:
        head += f" (none finished for {', '.join(result.unscored)})"
    if result.backbones == 0:
        return [head + ": nothing to compare."]
    lines = [head + ": " + "; ".join(f"{SCORES[c]} {r.text()}" for c, r in result.correlations.items()) + "."]
    for column, top in result.tops.items():
        pick = result.picks[column]
        if pick is None:
            continue
        if " = " in top:  # tied at the top: the score does not single one out
            lines.append(f"  - {SCORES[column]} ties {top.replace(' = ', ' and ')} at the top, so it does not "
                         f"single out the fine-tuned best ({result.best}).")
            continue
        verdict = "the fine-tuned best" if pick else f"not the fine-tuned best ({result.best})"
        lines.append(f"  - {SCORES[column]}'s top backbone, {top}, is {verdict}.")
    if result.separable is False:
        lines.append(f"  - The fine-tuned best, {result.best}, is not separable from {result.runner_up} (their 95% "
                     "test intervals overlap), so whether a score picked the best means little here.")
    elif result.separable is None and result.runner_up:
        lines.append(f"  - No test intervals to tell the fine-tuned best, {result.best}, from {result.runner_up}.")
    return lines


# --- the figure -------------------------------------------------------------------------------------

def plot_transferability(table: pd.DataFrame, path: Path) -> Path:
    """One panel per score: the score (x) against the fine-tuned test accuracy (y, bars: its 95%
    interval), one marker per backbone, labelled, one colour per dataset size."""
    sizes = sorted(table["dataset_size"].unique())
    colours = {size: f"C{i % 10}" for i, size in enumerate(sizes)}
    markers = {b: _MARKERS[i % len(_MARKERS)] for i, b in enumerate(sorted(table["backbone"].unique()))}
    figure = new_figure(6.0 * len(SCORES), 4.8)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.86, wspace=0.25)
    panels = np.atleast_1d(figure.subplots(1, len(SCORES)))
    for ax, (column, name) in zip(panels, SCORES.items()):
        values = pd.to_numeric(table[column], errors="coerce")
        shown = table[table["test_accuracy"].notna() & np.isfinite(values)]
        for _, row in shown.iterrows():
            accuracy, low, high = row["test_accuracy"], row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]
            yerr = ([[max(accuracy - low, 0)], [max(high - accuracy, 0)]]
                    if math.isfinite(low) and math.isfinite(high) else None)
            ax.errorbar([row[column]], [accuracy], yerr=yerr, fmt=markers[row["backbone"]],
                        color=colours[row["dataset_size"]], capsize=3, ms=6)
            ax.annotate(row["backbone"], (row[column], accuracy), xytext=(5, 4), textcoords="offset points",
                        fontsize=7, color="0.2")
        if len(shown):  # room on the right for the last marker's label (about 25 characters)
            low, high = shown[column].min(), shown[column].max()
            span = (high - low) or max(abs(high), 1.0) * 0.1
            ax.set_xlim(low - 0.08 * span, high + 0.45 * span)
        else:
            ax.text(0.5, 0.5, "no backbone with both the score and a fine-tuned result", ha="center",
                    transform=ax.transAxes, fontsize=8, color="0.35")
        ax.set_xlabel(name + (" (evidence per image)" if column == "logme" else " (validation)"))
        ax.set_ylabel("fine-tuned test accuracy, bars: 95% interval")
        ax.set_title(f"{name} vs fine-tuned test accuracy")
        ax.grid(True, alpha=0.3)
    for size in sizes:
        panels[0].plot([], [], ls="none", marker="o", color=colours[size], label=f"{size:g} images")
    if len(sizes):
        figure.legend(*panels[0].get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.02),
                      ncol=min(6, len(sizes)), fontsize=8, frameon=False)
    figure.suptitle("Scores of frozen features before fine-tuning vs the fine-tuned result (the configuration "
                    "best on validation)", fontsize=10)
    return save_figure(figure, path)
