"""The report's sections on fidelity to the study: the study script's departures, the replication
card (the study's published numbers beside this sweep's) and what the dataset audit found.

Input: the sweep's ``study_card.json`` (logged on its parent run when the sweep starts:
study, preset, the study's preset, departures, published numbers, the data's provenance, the
hardware), the finished runs and the frontier's points (one per configuration). Pure pandas; no
MLflow, no figures.

A published result is compared with the configuration of this sweep that ``match`` names
(config values, at ``dataset_size``; null: the sweep's largest size), the best of them by
validation accuracy, as everywhere in the report. Its test accuracy carries its 95% interval;
the published number is a point (the studies give none), so the difference's interval is the
run's interval shifted by the published value: it says whether the published number is a value
this run's test set allows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from xfer import frontier as fr
from xfer.frontier import ACCURACY, CI_HIGH, CI_LOW, SELECTION
from xfer.report.conclusions import SPLITS

ARTIFACT = "study_card.json"  # on the sweep's parent run
FILE_NAME = "replication_card.csv"
VAL_IS_TEST = ("validation was the test set, as in the study: selection saw the test set, so test "
               "accuracies are optimistic")
_ACCURACIES = ("test_accuracy", "val_accuracy")  # the headline metric: the first one published
_TIMES = ("train_time_s", "wall_time_s")  # shown side by side: the first one published


# --- departures -------------------------------------------------------------------------------------

def departures_lines(card: dict | None) -> list[str]:
    """"## Departures from the study": the study script's list, verbatim."""
    if not card or "departures" not in card:
        return []
    departures = card.get("departures") or []
    lines = ["", "## Departures from the study", "",
             "Where this sweep departs from the study it reproduces, on purpose or from necessity, as "
             f"its script (`sweeps/{card.get('study', '?')}.py`) lists them:", ""]
    return lines + ([f"- {d}" for d in departures] or ["- none listed"])


# --- the replication card ----------------------------------------------------------------------------

def comparability(card: dict) -> tuple[bool, list[str]]:
    """Whether the differences mean anything, and the lines that say why not or with what caveat:
    stand-in data makes them meaningless; another dataset, a scaled-down preset or a validation
    set that is the test set qualify them."""
    data = card.get("data") or {}
    lines, meaningful = [], True
    if data.get("genuine") is False:
        meaningful = False
        lines.append(f"not meaningful: {data.get('note') or 'stand-in data, not the study dataset'}")
    elif data.get("genuine") is None and data.get("note"):
        lines.append(f"the data is not the study's ({data['note']}): differences compare different data")
    preset, study_preset = card.get("preset"), card.get("study_preset")
    if preset and study_preset and preset != study_preset:
        lines.append(f"preset {preset} scales the study down; differences are not a replication "
                     f"(the study's setting is preset {study_preset})")
    if data.get("val_is_test"):
        lines.append(VAL_IS_TEST)
    return meaningful, lines


def card_table(card: dict, runs: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """One row per published result: its numbers, this sweep's matching configuration (best by
    validation accuracy) and the difference (this run - study) in accuracy, with the run's
    interval shifted by the published value; empty when nothing was published."""
    published = (card.get("published") or {}).get("results") or []
    meaningful, _ = comparability(card)
    largest = runs["dataset_size"].max() if "dataset_size" in runs else None
    rows = []
    for result in published:
        metrics = result.get("metrics") or {}
        size = result.get("dataset_size")
        size = largest if size is None else size
        point, ignored = _matching_point(result.get("match") or {}, size, runs, points)
        metric = next((m for m in _ACCURACIES if _finite(metrics.get(m))), None)
        row = {"label": result.get("label", ""), "match": json.dumps(result.get("match") or {}, sort_keys=True),
               "dataset_size": size, "metric": metric or "",
               "time_metric": next((m for m in _TIMES if _finite(metrics.get(m))), ""),
               "approximate": bool(result.get("approximate")), "note": result.get("note", ""),
               **{f"published_{k}": v for k, v in metrics.items()},
               "run_config": "" if point is None else point["config"],
               "run_n_runs": np.nan if point is None else point.get("n_runs", 1),
               "match_ignored": ", ".join(ignored)}
        if point is not None:
            row.update({"run_val_accuracy": point.get(SELECTION, np.nan), "run_test_accuracy": point[ACCURACY],
                        "run_test_accuracy_ci_low": point.get(CI_LOW, np.nan),
                        "run_test_accuracy_ci_high": point.get(CI_HIGH, np.nan),
                        **{f"run_{k}": point[k] for k in metrics if k not in _ACCURACIES and k in point}})
        if point is not None and metric:
            run_value = point.get(SELECTION if metric == "val_accuracy" else ACCURACY, np.nan)
            low, high = ((point.get(CI_LOW, np.nan), point.get(CI_HIGH, np.nan)) if metric == ACCURACY
                         else (np.nan, np.nan))
            row.update({"difference": run_value - metrics[metric],
                        "difference_low": low - metrics[metric], "difference_high": high - metrics[metric]})
        row["comparison"] = ("no matching configuration in this sweep" if point is None
                             else "not meaningful" if not meaningful else "compared")
        rows.append(row)
    return pd.DataFrame(rows)


def _matching_point(match: dict, size, runs: pd.DataFrame, points: pd.DataFrame):
    """The best configuration (by validation accuracy) among the runs whose values equal
    ``match`` at ``size``, and the match keys this sweep did not record (ignored: a preset
    without arms logs no ``arm``)."""
    ignored = sorted(k for k in match if k not in runs)
    chosen = pd.Series(True, index=runs.index)
    for key, value in match.items():
        if key in runs:
            chosen &= runs[key].map(lambda v, want=value: _same(v, want))
    if size is not None and "dataset_size" in runs:
        chosen &= runs["dataset_size"].map(lambda v: _same(v, size))
    if not chosen.any() or "run_id" not in runs or "run_ids" not in points:
        return None, ignored
    ids = set(runs.loc[chosen, "run_id"])
    candidates = points[points["run_ids"].map(lambda rs: bool(ids & set(rs)))]
    if candidates.empty:
        return None, ignored
    return candidates.sort_values([SELECTION, ACCURACY], ascending=False).iloc[0], ignored


def _same(value, want) -> bool:
    """Config values compare as numbers when both are ("0.01" == 0.01), else as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return want is None
    try:
        return math.isclose(float(value), float(want), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(value) == str(want)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def card_lines(card: dict | None, runs: pd.DataFrame, points: pd.DataFrame, out: Path) -> list[str]:
    """"## Replication card": the setting side by side, the published results beside this
    sweep's, and the published tables as printed; writes ``replication_card.csv`` into ``out``
    when anything was published."""
    if not card:
        return []
    published = card.get("published") or {}
    meaningful, caveats = comparability(card)
    lines = ["", "## Replication card", ""]
    if not published:
        lines.append(f"The study script `{card.get('study', '?')}` records no published numbers.")
    else:
        title = f": {published['title']}" if published.get("title") else ""
        lines.append(f"Study: `{published.get('study', '?')}`{title}.")
    lines += ["", _setting_table(card, published, runs), ""]
    lines += [f"- {'Warning: ' if c == VAL_IS_TEST else ''}{c}" for c in caveats]
    table = card_table(card, runs, points)
    if not table.empty:
        table.to_csv(out / FILE_NAME, index=False)
        lines += ["", "Published results beside this sweep's matching configuration (the best by validation "
                  "accuracy among the runs with the result's values; images: the study's set = this sweep's "
                  "largest size). Difference: this sweep - the study, in points; its interval is this "
                  "sweep's 95% interval shifted by the published value (the study gives none).", "",
                  _results_markdown(table, meaningful), "", f"File: `{FILE_NAME}` (every published number "
                  "beside this sweep's)."]
    notes = [f"{r['label']}: {r['note']}" for r in published.get("results") or [] if r.get("note")]
    notes += list(published.get("notes") or [])
    if notes:
        lines += ["", "What the study says about its numbers:", "", *[f"- {n}" for n in notes]]
    for printed in published.get("tables") or []:
        lines += ["", f"Published: {printed.get('title', '')}", "", _printed_table(printed)]
    return lines


def _setting_table(card: dict, published: dict, runs: pd.DataFrame) -> str:
    data = card.get("data") or {}
    ours_data = data.get("describe") or "not recorded"
    if data.get("note"):
        ours_data += f" ({data['note']})"
    preset = card.get("preset", "?")
    rows = [("hardware", published.get("source_hardware", ""), card.get("hardware") or "not recorded"),
            ("dataset", published.get("dataset", ""), ours_data),
            ("split", published.get("split", ""), _our_split(runs, data)),
            ("preset", f"{card.get('study_preset', '?')} (the study's setting)",
             preset + ("" if preset == card.get("study_preset") else " (scaled down)"))]
    for key, value in (published.get("recipe") or {}).items():
        rows.append((f"recipe: {key}", _text(value), _values_in(runs, key)))
    lines = ["| setting | the study | this sweep |", "|---|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} | {_cell(c)} |" for a, b, c in rows]
    return "\n".join(lines)


def _our_split(runs: pd.DataFrame, data: dict) -> str:
    splits = sorted(runs["split"].dropna().astype(str).unique()) if "split" in runs else []
    text = "; ".join(f"`{s}`: {SPLITS.get(s, s)}" for s in splits) or "not recorded"
    sizes = [f"{name} {_values_in(runs, column)} images" for name, column in (("validation", "n_val"),
                                                                              ("test", "n_test"))
             if column in runs]
    if sizes:
        text += " (" + ", ".join(sizes) + ")"
    if data.get("val_is_test"):
        text += "; validation = the test set"
    return text


def _values_in(runs: pd.DataFrame, column: str) -> str:
    """The distinct values this sweep's runs had for a setting, "-" when not logged."""
    if column not in runs:
        return "-"
    values = runs[column].dropna().unique()
    return ", ".join(sorted(_text(v) for v in values)) or "-"


def _text(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _results_markdown(table: pd.DataFrame, meaningful: bool) -> str:
    timed = table["time_metric"].astype(bool).any()
    header = ["published result", "images", "the study", "this sweep: configuration",
              "this sweep [95% CI]", "difference (points)"] + (["study: time", "this sweep: time"]
                                                               if timed else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        metric, clock = row["metric"], row["time_metric"]
        about = "≈ " if row["approximate"] else ""  # the study's own "about", "around"
        study = (f"{about}{'test' if metric == ACCURACY else 'val'} {row[f'published_{metric}'] * 100:.2f}%"
                 if metric else "-")
        others = [f"{k[len('published_'):]} {_text(row[k])}" for k in row.index
                  if k.startswith("published_") and k[len("published_"):] not in (metric, clock)
                  and pd.notna(row[k])]
        if others:
            study += " (" + ", ".join(others) + ")"
        if not row["run_config"]:
            ours, difference = "-", "no matching configuration"
        else:
            seeds = f" ({row['run_n_runs']:g} seeds)" if row["run_n_runs"] > 1 else ""
            ours = (fr.accuracy_text(row["run_test_accuracy"], row["run_test_accuracy_ci_low"],
                                     row["run_test_accuracy_ci_high"]) if metric != "val_accuracy"
                    else f"val {row['run_val_accuracy'] * 100:.1f}%") + seeds
            difference = "not meaningful" if not meaningful else _difference_text(row)
        cells = [row["label"], _text(row["dataset_size"]) if pd.notna(row["dataset_size"]) else "-", study,
                 f"`{row['run_config']}`" if row["run_config"] else "-", ours, difference]
        if timed:
            cells += [(about if clock else "") + _seconds(row.get(f"published_{clock}"), clock),
                      _seconds(row.get(f"run_{clock}"), clock)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _difference_text(row) -> str:
    if not _finite(row.get("difference")):
        return "-"
    text = f"{row['difference'] * 100:+.1f}"
    if _finite(row.get("difference_low")) and _finite(row.get("difference_high")):
        inside = row["difference_low"] <= 0 <= row["difference_high"]
        text += (f" [{row['difference_low'] * 100:+.1f}, {row['difference_high'] * 100:+.1f}]: "
                 + ("the study's value lies inside this sweep's interval" if inside
                    else "the study's value lies outside this sweep's interval"))
    return text


def _seconds(value, metric: str = "") -> str:
    """"80 s (wall_time_s)": a time and which one it is (training only, or load to last test)."""
    return f"{float(value):.4g} s" + (f" ({metric})" if metric else "") if _finite(value) else "-"


def _printed_table(printed: dict) -> str:
    columns = [str(c) for c in printed.get("columns") or []]
    rows = printed.get("rows") or []
    width = max([len(columns), *(len(r) for r in rows)] or [0])
    columns += [""] * (width - len(columns))
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * width]
    for row in rows:
        cells = [_text(c) for c in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


# --- the dataset audit --------------------------------------------------------------------------------

def ceiling_rendering(audit: dict | None) -> str:
    """"with tick labels 75%, without 100%; this dataset: with tick labels", or "" when the audit
    predates the two renderings (no ``ceilings``)."""
    ceilings = (audit or {}).get("ceilings") or {}
    with_, without = ceilings.get("with_tick_labels"), ceilings.get("without_tick_labels")
    if with_ is None or without is None:
        return ""
    mine = "with" if (audit or {}).get("tick_labels", True) else "without"
    if math.isclose(with_, without):
        return f"the same with or without tick labels; this dataset is rendered {mine} them"
    return (f"with tick labels {fr.percent(with_)}, without {fr.percent(without)}; this dataset is "
            f"rendered {mine} them")


def ceiling_levels(audit: dict | None) -> list[tuple[float, str, bool]]:
    """The reference lines a figure draws: (level, label, configured). The configured ceiling
    first; the other rendering's, when it differs, as the second."""
    audit = audit or {}
    ceiling = audit.get("bayes_accuracy_ceiling")
    if ceiling is None:
        return []
    ceilings = audit.get("ceilings") or {}
    mine = bool(audit.get("tick_labels", True))
    other = ceilings.get("without_tick_labels" if mine else "with_tick_labels")
    if not ceilings:
        return [(ceiling, "Bayes ceiling (audit)", True)]
    levels = [(ceiling, f"Bayes ceiling (audit; {'with' if mine else 'without'} tick labels, as rendered)", True)]
    if other is not None and not math.isclose(other, ceiling):
        levels.append((other, f"ceiling {'without' if mine else 'with'} tick labels (not this dataset's rendering)",
                       False))
    return levels


def audit_lines(audit: dict | None) -> list[str]:
    """"## Dataset audit": the ceiling under each rendering, the identical and the scale-only
    pairs, and the empirical check, its disagreements flagged. Nothing for an audit that has
    none of these (an older dataset or one without an audit)."""
    audit = audit or {}
    keys = ("ceilings", "identical", "scale_only", "empirical")
    if audit.get("bayes_accuracy_ceiling") is None or not any(k in audit for k in keys):
        return []
    lines = ["", "## Dataset audit", "",
             f"- Bayes accuracy ceiling: {fr.percent(audit['bayes_accuracy_ceiling'])}"
             + (f" ({rendering})" if (rendering := ceiling_rendering(audit)) else "") + "."]
    for key, what in (("identical", "Identical densities (indistinguishable in any rendering)"),
                      ("scale_only", "Same shape up to location or scale (only the tick labels tell them apart)")):
        if key in audit:
            pairs = "; ".join(_pair_text(p) for p in audit[key]) or "none"
            lines.append(f"- {what}: {pairs}.")
    if "confusable" in audit:
        pairs = ", ".join(" ~ ".join(p["classes"]) for p in audit["confusable"]) or "none"
        lines.append(f"- Confusable as rendered (outlined in the confusion matrices): {pairs}.")
    empirical = audit.get("empirical")
    if "empirical" in audit and not empirical:
        lines.append("- Empirical check: skipped.")
    elif empirical:
        pairs, wrong = empirical.get("pairs") or [], disagreements(audit)
        lines.append(f"- Empirical check ({empirical.get('method', '?')}, {empirical.get('per_class', '?')} images "
                     f"per class at {empirical.get('image_size', '?')} px, {_seconds(empirical.get('seconds'))}): "
                     f"{len(pairs)} pair{'' if len(pairs) == 1 else 's'}, "
                     + ("every verdict agrees with the analytic categories." if not wrong
                        else f"{len(wrong)} disagree with the analytic categories:"))
        lines += [f"  - Warning: {_disagreement_text(p)}" for p in wrong]
    return lines


def disagreements(audit: dict | None) -> list[dict]:
    empirical = (audit or {}).get("empirical") or {}
    found = empirical.get("disagreements")
    if found is None:
        found = [p for p in empirical.get("pairs") or [] if p.get("agrees") is False]
    return list(found)


def _pair_text(pair: dict) -> str:
    text = " ~ ".join(pair.get("classes", []))
    if pair.get("reason"):
        text += f" ({pair['reason']})"
    if _finite(pair.get("affected_fraction")):
        text += f", {pair['affected_fraction'] * 100:.3g}% of images"
    return text


def _disagreement_text(pair: dict) -> str:
    accuracy = (fr.accuracy_text(pair["accuracy"], pair.get("ci_low", math.nan), pair.get("ci_high", math.nan))
                if _finite(pair.get("accuracy")) else "?")
    return (f"{' ~ '.join(pair.get('classes', []))}: pairwise accuracy {accuracy}, verdict "
            f"{pair.get('verdict', '?')}, the analytic category expects {pair.get('expected', '?')}")
