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
- The macro-average ROC curve (:func:`roc_curve_macro`, for the one-vs-rest AUC-ROC figure)
  averages the same classes' exact ROC curves, each linearly interpolated onto a common grid
  of false-positive rates: scikit-learn's "macro-average ROC" recipe (``roc_curve`` per class,
  ``np.interp`` onto ``linspace(0, 1, points)``, mean). Its ``auc`` is the trapezoidal area
  under that averaged curve, which differs from ``auc_roc_ovr`` (the mean of exact per-class
  areas) by the grid's interpolation error, O(1/points) at each vertical jump of a curve.
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


def binary_roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC curve ``(fpr, tpr)`` of ``scores`` for a boolean target, from (0, 0) to
    (1, 1): one point per distinct score, thresholding at ``score >= s``, so tied scores move
    the curve diagonally (as ``sklearn.metrics.roc_curve``). O(n log n).
    Needs at least one positive and one negative."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"a ROC curve needs positives and negatives, got {n_pos} and {n_neg}")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], is_positive[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold takes a whole tie run
    tps = np.cumsum(hits)[last_of_tie]
    fps = np.cumsum(~hits)[last_of_tie]
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def roc_curve_macro(y_true: np.ndarray, probs: np.ndarray, num_classes: int,
                    points: int = 101) -> dict:
    """The macro-average one-vs-rest ROC curve on ``points`` false-positive rates in [0, 1].

    Returns ``{"fpr": [...], "tpr": [...], "auc": float}`` (lists of ``points`` floats; see the
    module docstring). Classes without a positive or without a negative in ``y_true`` have no
    ROC curve and are left out; with none left, ``fpr``/``tpr`` are empty and ``auc`` is NaN.
    Cost: one sort per class, O(C·N log N).
    """
    if not isinstance(points, int) or isinstance(points, bool) or points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), num_classes):
        raise ValueError(f"probs must be N×num_classes = {len(y_true)}×{num_classes}, "
                         f"got shape {probs.shape}")
    grid = np.linspace(0.0, 1.0, points)
    curves = []
    for c in range(num_classes):
        positives = int((y_true == c).sum())
        if 0 < positives < len(y_true):
            fpr, tpr = binary_roc_curve(y_true == c, probs[:, c])
            # At a vertical jump (several points at one fpr) np.interp takes the last, highest one.
            curves.append(np.interp(grid, fpr, tpr))
    if not curves:
        return {"fpr": [], "tpr": [], "auc": math.nan}
    mean_tpr = np.mean(curves, axis=0)
    area = np.sum(np.diff(grid) * (mean_tpr[1:] + mean_tpr[:-1]) / 2)  # np.trapezoid (numpy>=2)
    return {"fpr": grid.tolist(), "tpr": mean_tpr.tolist(), "auc": float(area)}


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Test-split metrics from true labels (N ints) and class probabilities (N × num_classes).

    Returns ``accuracy, precision_macro, recall_macro, f1_macro, auc_roc_ovr`` (floats, NaN
    for an empty split), ``confusion_matrix`` (list of lists, rows = true class) and
    ``roc_macro`` (:func:`roc_curve_macro` with 101 points). See the module docstring for the
    averaging and zero-division rules.
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
                "auc_roc_ovr": nan, "confusion_matrix": counts.tolist(),
                "roc_macro": roc_curve_macro(y_true, probs, num_classes)}

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
        "roc_macro": roc_curve_macro(y_true, probs, num_classes),
    }
