"""Report sections that appear when a sweep's runs carry what they need.

Each study reuses the one report (``xfer.report.write``); these sections are how each adds its own
table without a per-study code path: a sweep that varies the init gets the pretraining gain by
training-set size (the CIFAR-10 and PDF studies' question), runs that logged a ROC curve get the
one-vs-rest ROC figure (the image-folder study), and runs that embedded their features get the
separation table and the embedding grid (the probe-regimes study). Inputs are DataFrames and
dicts, as ``xfer.tracking.runs`` reads them; no MLflow here. The figures are drawn by
``xfer.report.figures``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from xfer.frontier import accuracy_text, difference_text, point_accuracy_text
from xfer.report.figures import METHOD_NAMES, STAGES, embedding_methods, plot_embedding_grid, plot_roc

FILE_NAMES = ("roc_curves.png", "embeddings.png")


def group_label(row) -> str:
    """How a (model, condition) group is named in these sections: ``resnet18 pretrained/head``."""
    return f"{row['model']} {row['condition']}" if "model" in row else str(row["condition"])


# --- pretraining gain ---------------------------------------------------------------------------

def pretraining_gain(gains: pd.DataFrame) -> list[str]:
    """The table of :func:`xfer.frontier.pretraining_gains`: at each training-set size and
    budget, the best-by-validation scratch and pretrained configurations, their test accuracy
    with its 95% interval, and the gain pretrained - scratch with its interval, the method
    (paired on the same test images, or not and why) and the verdict. Empty without rows."""
    if gains is None or gains.empty:
        return []
    budget = next((c for c in ("epochs_run", "epochs") if c in gains), None)
    rows = []
    for _, row in gains.iterrows():
        cells = [format_value(row.get("dataset_size")), format_value(row.get(budget)) if budget else ""]
        for prefix in ("scratch", "pretrained"):
            cells.append(f"{accuracy_text(row[f'{prefix}_test_accuracy'], row[f'{prefix}_ci_low'], row[f'{prefix}_ci_high'])}"
                         f" (val {row[f'{prefix}_val_accuracy'] * 100:.1f}%; `{row[f'{prefix}_config']}`)")
        cells += [difference_text(row["difference"]), row["verdict"], row["method"]]
        rows.append("| " + " | ".join(cells) + " |")
    return ["", "## What pretraining is worth, by training-set size and budget", "",
            "At each size and budget (epochs run): the scratch and the pretrained configuration with the "
            "best validation accuracy (of the same model and trained layers where both inits ran one), "
            "their test accuracy [95% interval], and the gain pretrained − scratch in test accuracy "
            "[95% interval]. The verdict names a winner only when the interval excludes zero.", "",
            "| training images | epochs | scratch | pretrained | gain (points) [95% CI] | verdict | method |",
            "|---|---|---|---|---|---|---|", *rows]


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:g}" if isinstance(value, (int, float, np.integer, np.floating)) else str(value)


# --- ROC curves ---------------------------------------------------------------------------------

def roc_section(curves: dict[str, dict], out: Path) -> list[str]:
    """``curves``: group label -> {"fpr", "tpr", "auc"} (macro-averaged one-vs-rest). Draws
    ``roc_curves.png``; empty when no run logged a curve."""
    usable = {k: c for k, c in curves.items() if c.get("fpr") and c.get("tpr")}
    if not usable:
        return []
    plot_roc(usable, out / "roc_curves.png")
    return ["", "## One-vs-rest ROC curves", "",
            "Each class against the rest, averaged over classes on a common false-positive-rate "
            "grid; the best configuration of each model and condition.", "",
            "![ROC curves](roc_curves.png)"]


# --- feature separation ---------------------------------------------------------------------------

def separation_section(best: pd.DataFrame, embeddings: dict[str, dict], classes: list[str],
                       out: Path) -> list[str]:
    """The silhouette of each stage's test-set features (and of their 2-D embedding) for the
    best run of each group, and ``embeddings.png``: one row of scatter plots per group and
    embedding method (a run embedded with ``"tsne+umap"`` gets a t-SNE row and a UMAP row)."""
    columns = [f"silhouette_{stage}_{kind}" for stage in STAGES for kind in ("features", "2d")]
    if not any(c in best for c in columns):
        return []
    header = "| model / condition | test accuracy [95% CI] | " + " | ".join(
        f"{stage} (features / 2-D)" for stage in STAGES) + " |"
    lines = ["", "## Feature separation by stage", "",
             "Silhouette score of the test set's globally pooled features at an early, a middle and a "
             "late stage, by true class (−1 to 1; higher: classes form tighter, better separated "
             "clusters), in the feature space and in its 2-D embedding.", "",
             header, "|---|---|" + "---|" * len(STAGES)]
    for _, row in best.iterrows():
        cells = [f"{_value(row, f'silhouette_{s}_features')} / {_value(row, f'silhouette_{s}_2d')}"
                 for s in STAGES]
        lines.append(f"| {group_label(row)} | {point_accuracy_text(row)} | " + " | ".join(cells) + " |")
    if embeddings:
        plot_embedding_grid(embeddings, classes, out / "embeddings.png")
        methods = list(dict.fromkeys(m for e in embeddings.values() for m in embedding_methods(e)))
        names = " and ".join(METHOD_NAMES.get(m, m) for m in methods)
        rows = ("the best run of each model and condition" if len(methods) == 1 else
                "the best run of each model and condition, once per method")
        lines += ["", "![embeddings](embeddings.png)", "",
                  f"Rows: {rows}; columns: stages; {names} of the test-set features, coloured by "
                  "class. Each panel gives the silhouette of the features and of that 2-D "
                  "embedding; the table's 2-D silhouette is the first method's."]
    return lines


def _value(row, column: str) -> str:
    value = row.get(column, math.nan)
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"
