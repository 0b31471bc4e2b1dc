"""Classification metrics on a test split: accuracy, macro P/R/F1, one-vs-rest AUC-ROC, confusion.

Pure numpy, so the numbers do not depend on scikit-learn's version; the tests check them against
scikit-learn. Definitions (they match ``sklearn.metrics`` with ``zero_division=0``):

- Macro averages run over the *labels in play*: every class that occurs in ``y_true`` or in the
  predictions (``argmax`` of ``probs``), the same set scikit-learn uses when ``labels`` is not
  given. A class absent from both says nothing about the model, so it is left out rather than
  counted as a perfect or a zero score.
- Zero division gives 0: precision of a class never predicted is 0, recall of a class that never
  occurs is 0, and F1 is ``2·TP / (2·TP + FP + FN)`` (0 when TP is 0).
- AUC-ROC is one-vs-rest, macro-averaged over the classes that have at least one positive and
  one negative in ``y_true`` (the others have no defined ROC curve), computed as the
  Mann-Whitney U statistic with average ranks for tied scores (Hanley & McNeil, 1982), which
  equals the trapezoidal area under the ROC curve. NaN when no class qualifies.
"""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes × num_classes`` counts, rows = true class, columns = predicted class."""
    flat = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for a boolean target; ties count one half.

    O(n log n): the rank-sum form ``(R₊ − P(P+1)/2) / (P·N)`` with average ranks for ties.
    NaN when there are no positives or no negatives.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ordered = np.sort(scores)
    # 1-based average rank of each score: the mean of the first and last position of its tie run.
    below = np.searchsorted(ordered, scores, side="left")
    through = np.searchsorted(ordered, scores, side="right")
    ranks = (below + through + 1) / 2.0
    rank_sum = ranks[is_positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Test-split metrics from true labels (N ints) and class probabilities (N × num_classes).

    Returns ``accuracy, precision_macro, recall_macro, f1_macro, auc_roc_ovr`` (floats, NaN
    for an empty split) and ``confusion_matrix`` (list of lists, rows = true class). See the
    module docstring for the averaging and zero-division rules.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), num_classes):
        raise ValueError(f"probs must be N×num_classes = {len(y_true)}×{num_classes}, "
                         f"got shape {probs.shape}")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {y_true.min()}..{y_true.max()}")
    y_pred = probs.argmax(axis=1) if len(y_true) else np.empty(0, dtype=np.int64)
    counts = confusion_matrix(y_true, y_pred, num_classes)
    if len(y_true) == 0:
        nan = math.nan
        return {"accuracy": nan, "precision_macro": nan, "recall_macro": nan, "f1_macro": nan,
                "auc_roc_ovr": nan, "confusion_matrix": counts.tolist()}

    tp = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0).astype(np.float64)  # TP + FP per class
    actual = counts.sum(axis=1).astype(np.float64)  # TP + FN per class
    in_play = (predicted > 0) | (actual > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)

    aucs = [binary_auc(y_true == c, probs[:, c]) for c in range(num_classes)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return {
        "accuracy": float(tp.sum() / len(y_true)),
        "precision_macro": float(precision[in_play].mean()),
        "recall_macro": float(recall[in_play].mean()),
        "f1_macro": float(f1[in_play].mean()),
        "auc_roc_ovr": float(np.mean(aucs)) if aucs else math.nan,
        "confusion_matrix": counts.tolist(),
    }
