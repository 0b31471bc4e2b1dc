"""xfer.metrics against hand-computed toy cases and against scikit-learn."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from xfer.metrics import binary_auc, binary_roc_curve, classification_metrics, roc_curve_macro


def one_hot_probs(pred, num_classes, confidence=0.9):
    probs = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_hand_computed_three_classes():
    # true: 0 0 1 1 2 2, predicted: 0 1 1 1 2 0
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = one_hot_probs(np.array([0, 1, 1, 1, 2, 0]), 3)
    m = classification_metrics(y, probs, 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision: class0 1/2, class1 2/3, class2 1/1; recall: 1/2, 2/2, 1/2
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    f1 = [2 * 1 / (2 * 1 + 1 + 1), 2 * 2 / (2 * 2 + 1 + 0), 2 * 1 / (2 * 1 + 0 + 1)]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3)


def test_zero_division_and_absent_classes():
    # 4 classes; class 3 never occurs and is never predicted -> left out of the averages.
    # class 2 is predicted but never occurs -> precision 0, recall 0, f1 0 (counted).
    # class 1 occurs but is never predicted -> precision 0 (zero division), recall 0.
    y = np.array([0, 0, 1])
    probs = one_hot_probs(np.array([0, 2, 0]), 4)
    m = classification_metrics(y, probs, 4)
    # class 0: tp 1, fp 1, fn 1 -> p 1/2, r 1/2, f1 1/2
    assert m["precision_macro"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert m["f1_macro"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert len(m["confusion_matrix"]) == 4 and m["confusion_matrix"][3] == [0, 0, 0, 0]


def test_binary_auc_with_ties_by_hand():
    # positives score 0.8, 0.5; negatives 0.5, 0.2. Pairs: (0.8>0.5) 1, (0.8>0.2) 1,
    # (0.5=0.5) 1/2, (0.5>0.2) 1 -> 3.5 / 4.
    assert binary_auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.5, 0.5, 0.2])) == pytest.approx(0.875)
    assert binary_auc(np.array([1, 0]), np.array([0.3, 0.3])) == pytest.approx(0.5)
    assert binary_auc(np.array([0, 1]), np.array([0.9, 0.1])) == pytest.approx(0.0)
    assert math.isnan(binary_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_auc_skips_classes_without_positives_or_negatives():
    # class 2 never occurs: its AUC is undefined and skipped; NaN when no class qualifies.
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.3, 0.3, 0.4], [0.2, 0.6, 0.2]])
    m = classification_metrics(y, probs, 3)
    expected = np.mean([binary_auc(y == 0, probs[:, 0]), binary_auc(y == 1, probs[:, 1])])
    assert m["auc_roc_ovr"] == pytest.approx(expected)
    assert math.isnan(classification_metrics(np.array([1, 1]), probs[:2], 3)["auc_roc_ovr"])


def test_empty_split_is_nan_not_an_error():
    m = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 3)), 3)
    assert math.isnan(m["accuracy"]) and m["confusion_matrix"] == [[0] * 3] * 3


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="N×num_classes"):
        classification_metrics(np.array([0, 1]), np.zeros((2, 3)), 4)


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    num_classes = 5
    n = int(rng.integers(20, 200))
    # Missing classes in y_true (seed-dependent) and coarse scores (many ties) on purpose.
    y = rng.integers(0, num_classes - (seed % 2), size=n)
    logits = rng.normal(size=(n, num_classes)) + 1.5 * np.eye(num_classes)[y] * (seed % 3)
    logits = np.round(logits, 1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, probs, num_classes)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for ours, average_of in [("precision_macro", skm.precision_score),
                             ("recall_macro", skm.recall_score), ("f1_macro", skm.f1_score)]:
        assert m[ours] == pytest.approx(average_of(y, pred, average="macro", zero_division=0)), ours
    np.testing.assert_array_equal(
        m["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(num_classes)))
    per_class = [skm.roc_auc_score(y == c, probs[:, c]) for c in range(num_classes)
                 if 0 < (y == c).sum() < n]
    assert m["auc_roc_ovr"] == pytest.approx(np.mean(per_class))
    if len(np.unique(y)) == num_classes:
        assert m["auc_roc_ovr"] == pytest.approx(
            skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))


# --- the macro-average ROC curve ---------------------------------------------------------------

def coarse_probs(rng, y, num_classes, signal):
    """Softmax of rounded logits: many tied scores, some separation."""
    logits = np.round(rng.normal(size=(len(y), num_classes)) + signal * np.eye(num_classes)[y], 1)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(4))
def test_binary_roc_curve_is_sklearns_full_curve(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=80).astype(bool)
    y[:2] = [True, False]
    scores = np.round(rng.normal(size=80) + y, 1)  # ties
    fpr, tpr = binary_roc_curve(y, scores)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    with pytest.raises(ValueError, match="positives and negatives"):
        binary_roc_curve(np.ones(3, dtype=bool), np.zeros(3))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("points", [2, 11, 101])
def test_roc_curve_macro_matches_sklearns_macro_average_recipe(seed, points):
    rng = np.random.default_rng(seed)
    num_classes = 5
    y = rng.integers(0, num_classes - (seed % 2), size=int(rng.integers(20, 200)))  # maybe a class absent
    probs = coarse_probs(rng, y, num_classes, signal=seed % 3)
    # scikit-learn's "macro-average ROC" example: roc_curve per class, np.interp, mean, auc.
    grid = np.linspace(0.0, 1.0, points)
    curves = []
    for c in range(num_classes):
        if 0 < (y == c).sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(y == c, probs[:, c])
            curves.append(np.interp(grid, fpr, tpr))
    expected = np.mean(curves, axis=0)
    roc = roc_curve_macro(y, probs, num_classes, points=points)
    np.testing.assert_allclose(roc["fpr"], grid)
    np.testing.assert_allclose(roc["tpr"], expected, atol=1e-12)
    assert roc["auc"] == pytest.approx(skm.auc(grid, expected), abs=1e-12)


def test_roc_curve_macro_by_hand_and_its_area_approaches_the_exact_auc():
    y = np.array([0, 0, 1, 1])
    perfect = one_hot_probs(y, 2)
    assert roc_curve_macro(y, perfect, 2, points=3) == {"fpr": [0.0, 0.5, 1.0], "tpr": [1.0, 1.0, 1.0],
                                                        "auc": 1.0}
    tied = np.full((4, 2), 0.5)  # every threshold takes all or nothing: the diagonal
    assert roc_curve_macro(y, tied, 2, points=5)["tpr"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)
    probs = coarse_probs(rng, y, 4, signal=1)
    exact = classification_metrics(y, probs, 4)["auc_roc_ovr"]
    assert abs(roc_curve_macro(y, probs, 4, points=10_001)["auc"] - exact) < 1e-3
    assert classification_metrics(y, probs, 4)["roc_macro"] == roc_curve_macro(y, probs, 4)


def test_roc_curve_macro_without_any_curve_and_bad_points():
    empty = roc_curve_macro(np.array([1, 1]), np.full((2, 3), 1 / 3), 3)
    assert empty["fpr"] == empty["tpr"] == [] and math.isnan(empty["auc"])
    assert classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 3)), 3)["roc_macro"]["fpr"] == []
    for points in (1, 2.5, True):
        with pytest.raises(ValueError, match="points must be an integer >= 2"):
            roc_curve_macro(np.array([0, 1]), np.eye(2), 2, points=points)
