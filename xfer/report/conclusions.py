"""The report's sentences that draw a conclusion, each one as sure as its interval allows.

What was chosen on what (validation) and measured on what (the test split, its size, which
scheduler ran); the warnings; the pretrained-vs-scratch comparison at each size; whether the test
set can tell the frontier's configurations apart; the target answers; what the pretrained
weights cost and after how many uses that is paid back. Inputs: ``xfer.frontier.Analysis`` and
plain tables; no MLflow, no figures. No sentence here calls a difference a win ("better",
"winner") unless its 95% interval excludes zero.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xfer import frontier as fr
from xfer import stats
from xfer.frontier import ACCURACY, SELECTION

SPLITS = {
    "heldout": "a fixed held-out test set, generated apart from every training size and shared by "
               "every trial",
    "80:10:10": "the study's 80:10:10 split of each dataset size, so the test images differ between "
                "sizes (and are few at small sizes)",
    "fixed": "the dataset's official or fixed held-out test set, shared by every trial",
}
_AS_GIVEN = ("lr", "weight_decay", "label_smoothing", "dataset_size", "batch_size", "n_runs", "epochs_run")


# --- markdown --------------------------------------------------------------------------------------

def format_number(value, digits: int = 3, as_given: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)) and as_given:
        return f"{value:g}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def markdown_table(rows: pd.DataFrame, columns: dict[str, str]) -> str:
    """A markdown table of ``rows``' columns (key) under their headers (value)."""
    present = {c: h for c, h in columns.items() if c in rows}
    lines = ["| " + " | ".join(present.values()) + " |", "|" + "---|" * len(present)]
    for _, row in rows.iterrows():
        lines.append("| " + " | ".join(format_number(row[c], as_given=c in _AS_GIVEN).replace("|", "\\|")
                                       for c in present) + " |")
    return "\n".join(lines)


def runs_word(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


# --- what was chosen on what -------------------------------------------------------------------------

def how_measured_lines(runs: pd.DataFrame, sweep_params: dict | None) -> list[str]:
    """The section that says how every number was obtained: selection, split, n_test, scheduler,
    interval methods."""
    lines = ["- Selection: every choice in this report (the best configuration, frontier membership, "
             "the pretrained and scratch configurations compared, the cheapest configuration reaching "
             f"a target) reads validation accuracy{_range_of(runs, 'n_val', ' images per run')}. Test "
             "accuracy is only reported beside it, with its 95% interval, never maximised."]
    split = sorted(runs["split"].dropna().astype(str).unique()) if "split" in runs else []
    if split:
        described = "; ".join(f"`{s}`: {SPLITS.get(s, 'a split this report does not know')}" for s in split)
        lines.append(f"- Test split: {described}.")
    else:
        lines.append("- Test split: not recorded by these runs (param `split`).")
    sizes = _range_of(runs, "n_test", " images per run").strip(" ()")
    sets = runs["test_set_sha256"].dropna().nunique() if "test_set_sha256" in runs else 0
    lines.append(f"- Test set size: {sizes or 'not recorded (metric `n_test`)'}"
                 + (f"; {sets} distinct test set{'s' if sets > 1 else ''} by sha256" if sets else "") + ".")
    params = sweep_params or {}
    scheduler = params.get("scheduler")
    if scheduler:
        detail = params.get("scheduler_detail")
        lines.append(f"- Scheduler: `{scheduler}`" + (f" ({detail})" if detail else "")
                     + (f"; search: `{params['search']}`" if params.get("search") else "") + ".")
    else:
        lines.append("- Scheduler: not recorded on the sweep's parent run.")
    lines.append("- Intervals: one run: the Wilson 95% interval of its test accuracy over its test "
                 "images; several seeds: mean ± Student's t 95% across the seeds, widened in quadrature "
                 "by the Wilson interval of the test images every seed shares. A difference of two "
                 "configurations: paired on the same test images when both logged "
                 "`test_predictions.json` for one test set (exact McNemar interval; for seed averages "
                 "a paired bootstrap over the images, widened in quadrature by the seeds' Welch t "
                 "interval), else "
                 "unpaired (Newcombe's interval from the two Wilson intervals). A difference is "
                 "called a win only when its interval excludes zero.")
    return lines


def _range_of(runs: pd.DataFrame, column: str, unit: str) -> str:
    if column not in runs:
        return ""
    values = pd.to_numeric(runs[column], errors="coerce").dropna()
    if values.empty:
        return ""
    low, high = values.min(), values.max()
    return f" ({low:g}{unit})" if low == high else f" ({low:g} to {high:g}{unit})"


# --- the comparisons ---------------------------------------------------------------------------------

def comparison_sentence(points: pd.DataFrame, cost: str, size, predictions: dict) -> str:
    """At one dataset size: the best configuration of each condition by validation accuracy and
    the test difference between the leading one and each other, with interval and verdict."""
    best = fr.best_per_group(points, "condition", cost).sort_values([SELECTION, cost], ascending=[False, True])
    where = f"At {size:g} images" if size is not None else "Overall"
    top = best.iloc[0]
    if len(best) == 1:
        return (f"{where}, only {top['condition']} ran: its best configuration by validation accuracy, "
                f"{top['config']}, scores {fr.point_accuracy_text(top)} on the test set.")
    parts = []
    for _, other in best.iloc[1:].iterrows():
        names = (top["condition"], other["condition"])
        difference = fr.compare_points(top, other, predictions, names=names)
        ratio = top[cost] / other[cost]
        at = f"the same {cost}" if abs(ratio - 1) < 0.005 else f"{ratio:.2g}x the {cost}"
        parts.append(f"vs {other['condition']} ({other['config']}, test {fr.point_accuracy_text(other)}): "
                     f"{fr.difference_text(difference)} ({difference.method}): {difference.verdict}, "
                     f"at {at}")
    return (f"{where}, best by validation accuracy: {top['condition']} ({top['config']}, test "
            f"{fr.point_accuracy_text(top)}) " + "; ".join(parts) + ".")


def budget_sentence(overall: pd.DataFrame, cost: str) -> str:
    """Which condition holds the overall frontier over which range of cost."""
    overall = overall.sort_values(cost)
    segments, start = [], 0
    conditions = overall["condition"].tolist()
    for i in range(1, len(conditions) + 1):
        if i == len(conditions) or conditions[i] != conditions[start]:
            part = overall.iloc[start:i]
            first, last = part.iloc[0], part.iloc[-1]
            if len(part) == 1:
                segments.append(f"{conditions[start]} at {cost} {first[cost]:.3g} "
                                f"(test {fr.point_accuracy_text(first)})")
            else:
                segments.append(f"{conditions[start]} from {cost} {first[cost]:.3g} to {last[cost]:.3g} "
                                f"(test {fr.point_accuracy_text(first)} to {fr.point_accuracy_text(last)})")
            start = i
    return ("Cheapest to costliest, the overall frontier (membership by validation accuracy) is held by "
            + ", then ".join(segments) + ".")


def separation_lines(analysis: fr.Analysis) -> list[str]:
    """Can the test set tell the overall frontier's configurations apart? All of them not:
    one sentence that names no winner. Otherwise each step along the frontier, detectable or not."""
    overall = analysis.frontier[analysis.frontier["scope"] == "all"].sort_values(analysis.cost)
    pairs = analysis.pairs[analysis.pairs["scope"] == "all"]
    if len(overall) < 2:
        return []
    if not pairs["separable"].any():
        cheapest = overall.iloc[0]
        return [f"The test set cannot separate the {len(overall)} configurations on the overall "
                "frontier: the 95% interval of every difference between them includes zero, so the "
                "frontier names no winner. Within that noise the cheapest, "
                f"{cheapest['config']} (test {fr.point_accuracy_text(cheapest)}), is as accurate as any."]
    lines = ["Each step along the overall frontier (the costlier configuration's test accuracy minus the "
             "cheaper one's):"]
    configs = overall["config"].tolist()
    for cheaper, costlier in zip(configs, configs[1:]):
        pair = pairs[(pairs["cheaper"] == cheaper) & (pairs["costlier"] == costlier)].iloc[0]
        result = stats.Difference(pair["accuracy_difference"], pair["low"], pair["high"], pair["method"],
                                  False, "")
        word = "detectable" if pair["separable"] else "not detectable on this test set"
        lines.append(f"- {cheaper} -> {costlier}: {pair['cost_ratio']:.2g}x the {analysis.cost} for "
                     f"{fr.difference_text(result)} ({pair['method']}): {word}")
    return lines


def common_sentence(common: fr.TargetAnswer) -> str:
    return (f"At {fr.percent(common.target)} validation accuracy, the highest every init reaches: "
            + " ".join(common.sentences))


def ceiling_sentence(analysis: fr.Analysis, ceiling: float | None, rendering: str = "") -> str:
    """The best configuration against the audit's ceiling; ``rendering``: what each rendering's
    ceiling is ("with tick labels 75%, without 100%; ..."), from the audit, when it knows both."""
    if ceiling is None:
        return ""
    points, cost = analysis.points, analysis.cost
    best = points.sort_values([SELECTION, cost], ascending=[False, True]).iloc[0]
    low = best.get(fr.CI_LOW, math.nan)
    if math.isfinite(low) and low > ceiling:
        relation = "above it beyond noise: see the warning"
    elif best[ACCURACY] > ceiling:
        relation = "above it, but within the interval's noise"
    else:
        relation = "at or below it"
    said = f" ({rendering})" if rendering else ""
    return (f"The dataset audit's Bayes accuracy ceiling is {fr.percent(ceiling)}{said}; the best configuration "
            f"by validation accuracy, {best['config']}, scores {fr.point_accuracy_text(best)} on the test "
            f"set: {relation}.")


# --- pretraining: what it cost, when it pays ------------------------------------------------------------

def pretraining_cost_lines(analysis: fr.Analysis, runs: pd.DataFrame) -> list[str]:
    """Per pretrained weights: pretrain_macs and how it was obtained; whether the cost axis counts
    it; the break-even uses at the common and the requested target."""
    if "init" not in runs or not (runs["init"] == "pretrained").any():
        return []
    pretrained = runs[runs["init"] == "pretrained"]
    lines = []
    keys = [c for c in ("weights", "model") if c in pretrained]
    for key, group in (pretrained.groupby(keys, dropna=False, sort=True) if keys else [((), pretrained)]):
        key = key if isinstance(key, tuple) else (key,)
        macs = pd.to_numeric(group[fr.PRETRAIN], errors="coerce").dropna() if fr.PRETRAIN in group else pd.Series()
        basis = group["pretrain_macs_basis"].dropna().astype(str).unique() if "pretrain_macs_basis" in group else []
        what = " ".join(f"`{k}`" for k in key) or "pretrained"
        amount = f"{macs.iloc[0]:.3g} MACs" if len(macs) and macs.nunique() == 1 else \
            f"{macs.min():.3g} to {macs.max():.3g} MACs" if len(macs) else "not logged (metric pretrain_macs)"
        lines.append(f"- Pretraining cost of {what}: {amount}; basis: "
                     + ("; ".join(basis) if len(basis) else "unknown (param pretrain_macs_basis not logged)") + ".")
    if analysis.amortize_pretraining:
        unknown = (f" {runs_word(analysis.unknown_pretrain_macs)} without pretrain_macs count it as 0."
                   if analysis.unknown_pretrain_macs else "")
        lines.append(f"- Counted on the cost axis: each pretrained run costs train_macs + pretrain_macs / "
                     f"{analysis.amortize_pretraining} (the pretraining shared over "
                     f"{analysis.amortize_pretraining} uses).{unknown}")
    else:
        lines.append("- Not counted on the cost axis (the default): costs are fine-tuning only. "
                     "`xfer frontier --amortize-pretraining N` adds pretrain_macs / N to every pretrained run.")
    lines += [f"- {sentence}" for sentence in break_even_sentences(analysis)]
    return lines


def break_even_sentences(analysis: fr.Analysis) -> list[str]:
    answers = [a for a in (analysis.common, analysis.target) if a is not None and a.break_even is not None]
    if not answers:
        return ["No break-even: it needs pretrained and scratch runs that both reach a common "
                "validation accuracy."]
    sentences = []
    for answer in answers:
        if answer.break_even.sentence not in sentences:
            sentences.append(answer.break_even.sentence)
    return sentences
