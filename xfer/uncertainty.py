"""What the test set can and cannot conclude: a point's 95% interval, the difference between two
points, whether a target is reached beyond noise, and the warnings (ceiling, chance level).

Pure pandas/numpy on the frontier's points (``xfer.frontier.aggregate_seeds``) or on a runs
table; the statistics are ``xfer.stats``'. Text helpers here give every sentence and table the
same form: "87.5% [52.9, 97.8]" for an accuracy, "+12.5 points [-26.4, 48.1]" for a difference.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from xfer import stats
# ACCURACY is reported with its interval, never maximised; SELECTION (the run's final value) is
# what every choice reads
from xfer.names import TEST_ACCURACY as ACCURACY
from xfer.names import TEST_ACCURACY_CI_HIGH as CI_HIGH
from xfer.names import TEST_ACCURACY_CI_LOW as CI_LOW
from xfer.names import VAL_ACCURACY as SELECTION
CI_METHOD = f"{ACCURACY}_ci_method"  # "seeds (t, k seeds)", "Wilson" or "none"
REACH_TOLERANCE = 1e-9  # 0.9 reached by 90/100 must not fail on the last float bit


def accuracy_interval(runs: pd.DataFrame) -> dict:
    """Several seeds: mean ± t across them, widened in quadrature by the Wilson interval of the
    mean on n_test images when n_test is logged (every seed is scored on the same test images,
    so the seeds' spread cannot show that test set's own sampling noise). One run: its logged
    Wilson bounds, else Wilson from test_accuracy and n_test. Neither: no interval."""
    accuracy = runs[ACCURACY].to_numpy(float)
    if len(accuracy) > 1:
        mean, low, high = stats.seed_interval(accuracy)
        method = f"seeds (t, {len(accuracy)} seeds)"
        n_test = _number(runs["n_test"].max()) if "n_test" in runs else math.nan
        if math.isfinite(n_test) and n_test > 0:
            n = int(round(n_test))
            w_low, w_high = stats.wilson_interval(min(max(mean * n, 0.0), n), n)
            low, high = mean - math.hypot(mean - low, mean - w_low), mean + math.hypot(high - mean, w_high - mean)
            method += " and test images (Wilson), in quadrature"
        return {CI_LOW: max(low, 0.0), CI_HIGH: min(high, 1.0), CI_METHOD: method}  # t knows nothing of [0, 1]
    run = runs.iloc[0]
    logged = [_number(run.get(c)) for c in (CI_LOW, CI_HIGH)]
    if all(math.isfinite(v) for v in logged):
        return {CI_LOW: logged[0], CI_HIGH: logged[1], CI_METHOD: "Wilson"}
    n_test = _number(run.get("n_test"))
    if math.isfinite(n_test) and n_test > 0:
        n = int(round(n_test))
        low, high = stats.wilson_interval(min(max(accuracy[0] * n, 0.0), n), n)  # clip float dust
        return {CI_LOW: low, CI_HIGH: high, CI_METHOD: "Wilson"}
    return {CI_LOW: np.nan, CI_HIGH: np.nan, CI_METHOD: "none"}


def _number(value) -> float:
    """A float, NaN for anything missing or not a number (None, "", NaN from a sparse table)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def percent(accuracy: float) -> str:
    return f"{accuracy * 100:.4g}%"


def accuracy_text(accuracy: float, low: float = math.nan, high: float = math.nan) -> str:
    """"87.5% [52.9, 97.8]": the accuracy and its 95% interval in percent (none: "87.5%")."""
    text = f"{accuracy * 100:.1f}%"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low * 100:.1f}, {high * 100:.1f}]"
    return text


def point_accuracy_text(row) -> str:
    return accuracy_text(row[ACCURACY], row.get(CI_LOW, math.nan), row.get(CI_HIGH, math.nan))


def difference_text(difference: stats.Difference) -> str:
    """"+12.5 points [-26.4, 48.1]": a difference of accuracies in percentage points."""
    text = f"{difference.difference * 100:+.1f} points"
    if math.isfinite(difference.low) and math.isfinite(difference.high):
        text += f" [{difference.low * 100:+.1f}, {difference.high * 100:+.1f}]"
    return text


def compare_points(a, b, predictions: dict | None = None, *, names: tuple[str, str] = ("a", "b"),
                   confidence: float = stats.CONFIDENCE) -> stats.Difference:
    """Test accuracy of point ``a`` minus point ``b`` with its interval and verdict.

    Paired on the same images when every run of both has test predictions (``predictions``:
    run id -> test_predictions.json) with one ``test_set_sha256``: exact McNemar for one run
    each, else a paired bootstrap of the share of seeds right per image, widened by the seeds'
    own spread (``stats.with_seed_noise``). Otherwise Newcombe's
    unpaired interval from n_test (the method says why it is not paired); without n_test,
    Welch across seeds when both have several, else no interval.
    """
    predictions = predictions or {}
    found_a = [predictions.get(r) for r in a.get("run_ids", ())]
    found_b = [predictions.get(r) for r in b.get("run_ids", ())]
    found = found_a + found_b
    note = ""
    if found_a and found_b and all(isinstance(p, dict) for p in found):
        test_sets = {p.get("test_set_sha256") for p in found}
        sizes = {len(p.get("labels") or ()) for p in found}
        if len(test_sets) == 1 and None not in test_sets and len(sizes) == 1 and 0 not in sizes:
            correct_a = np.mean([stats.correctness(p) for p in found_a], axis=0)
            correct_b = np.mean([stats.correctness(p) for p in found_b], axis=0)
            if len(found_a) == len(found_b) == 1:
                return stats.paired_difference(correct_a, correct_b, confidence, method="mcnemar", names=names)
            paired = stats.paired_difference(correct_a, correct_b, confidence, method="bootstrap", names=names)
            return stats.with_seed_noise(paired, [stats.correctness(p).mean() for p in found_a],
                                         [stats.correctness(p).mean() for p in found_b], confidence, names=names)
        note = "not paired: different test sets; "
    elif any(isinstance(p, dict) for p in found):
        note = "not paired: test predictions missing for some runs; "
    accuracy_a, accuracy_b = float(a[ACCURACY]), float(b[ACCURACY])
    n_a, n_b = _number(a.get("n_test")), _number(b.get("n_test"))
    if math.isfinite(n_a) and math.isfinite(n_b) and n_a > 0 and n_b > 0:
        result = stats.unpaired_difference(accuracy_a, int(round(n_a)), accuracy_b, int(round(n_b)),
                                           confidence, names=names)
    elif a.get("n_runs", 1) > 1 and b.get("n_runs", 1) > 1:
        result = stats.seeds_difference(a["test_accuracies"], b["test_accuracies"], confidence, names=names)
    else:
        result = stats.Difference(accuracy_a - accuracy_b, math.nan, math.nan,
                                  "no interval (n_test not logged)", False, stats.NO_DIFFERENCE, confidence)
    return replace(result, method=note + result.method)


def reach_on_test(accuracy: float, low: float, high: float, target: float) -> str:
    """Whether the test set confirms a configuration reaches ``target``: "reaches" (its whole
    interval is at or above), "within noise" (the interval straddles it), "falls short"
    (entirely below), "no interval" (only the point estimate is known)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval"
    if low >= target - REACH_TOLERANCE:
        return "reaches"
    return "falls short" if high < target - REACH_TOLERANCE else "within noise"


def reach_words(status: str, goal: str) -> str:
    return {"reaches": f"reaches {goal}", "within noise": f"reaches {goal} within noise",
            "falls short": f"falls short of {goal}", "no interval": "no interval"}[status]


def guards(points: pd.DataFrame, ceiling: float | None = None, num_classes: int | None = None,
           *, most: int = 6) -> list[str]:
    """Warnings, one line each, for a table of runs or points (``test_accuracy`` and its
    interval, or ``n_test`` to make one): an accuracy whose interval lies entirely above the
    audit's Bayes ``ceiling``; one seed per configuration (points with ``n_runs``), whose
    intervals cannot show seed noise; and (one line each) the configurations at chance level
    (1/``num_classes`` inside the interval) and significantly below it. Up to ``most`` names per
    line. Empty when nothing is wrong."""
    if points is None or len(points) == 0 or ACCURACY not in points:
        return []
    rows = points.reset_index(drop=True)
    if CI_LOW not in rows or CI_HIGH not in rows or rows[CI_LOW].isna().any():
        filled = pd.DataFrame([accuracy_interval(rows.iloc[[i]]) for i in range(len(rows))])
        for column in (CI_LOW, CI_HIGH):
            given = rows[column] if column in rows else pd.Series(np.nan, index=rows.index)
            rows[column] = given.astype(float).fillna(filled[column])
    name_column = next((c for c in ("config", "run_name", "run_id") if c in rows), None)
    names = rows[name_column].astype(str) if name_column else rows.index.astype(str)
    lines = []
    if ceiling is not None and math.isfinite(ceiling):
        for i in np.flatnonzero((rows[CI_LOW] > ceiling + REACH_TOLERANCE).to_numpy()):
            lines.append(f"{names[i]}: test accuracy {point_accuracy_text(rows.iloc[i])} lies entirely "
                         f"above the dataset audit's Bayes accuracy ceiling of {percent(ceiling)}. Likely "
                         "causes: a test set too small to measure it, test images leaking into "
                         "training, or an audit whose ceiling is wrong for this renderer.")
    if "n_runs" in rows and len(rows) > 1 and (rows["n_runs"] == 1).all():
        lines.append("One seed per configuration: every interval here is the test set's sampling noise "
                     "only. Seed-to-seed variation is not measured and can be larger, enough to "
                     "reverse a verdict on a small training set; --num-samples K runs K seeds.")
    if num_classes:
        chance = 1 / num_classes
        at = (rows[CI_LOW] <= chance) & (rows[CI_HIGH] >= chance)
        below = rows[CI_HIGH] < chance
        for mask, what in ((at, f"At chance level (1/{num_classes} = {percent(chance)} lies inside the "
                                 "95% interval)"),
                           (below, f"Below chance level ({percent(chance)}) beyond noise, which points at "
                                   "mismatched labels")):
            hits = np.flatnonzero(mask.to_numpy())
            if len(hits):
                shown = [f"{names[i]} {point_accuracy_text(rows.iloc[i])}" for i in hits[:most]]
                more = f" and {len(hits) - most} more" if len(hits) > most else ""
                lines.append(f"{what}: {len(hits)} of {len(rows)}: " + "; ".join(shown) + more + ".")
    return lines
