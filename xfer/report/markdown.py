"""report.md's text: its sections in order, the generated summary and the tables.

Inputs: the ``xfer.frontier.Analysis`` the report is written from, the runs that did not
finish, which figures were drawn (their sections link them) and the lines other modules wrote:
the optional sections (``xfer.report.sections``) and the fidelity ones (``xfer.report.card``).
The sentences that conclude come from ``xfer.report.conclusions``. Text only: nothing here draws
or writes a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xfer import frontier as fr
from xfer.frontier import ACCURACY, CI_HIGH, CI_LOW, SELECTION
from xfer.report import card, conclusions
from xfer.report.conclusions import markdown_table as _table


def report_markdown(analysis: fr.Analysis, failed: pd.DataFrame, figures: dict[str, Path], title: str,
                    ceiling: float | None, audit: dict | None, *, weights: list[str] | None = None,
                    extra: list[str] | None = None, sweep_params: dict | None = None,
                    num_classes: int | None = None, fidelity: list[str] | None = None) -> str:
    """The whole of report.md. ``figures``: which of ``frontier``, ``size``, ``curves`` and
    ``confusion`` were drawn; ``weights``: :func:`weights_lines`; ``extra``: the optional
    sections; ``fidelity``: the departures, the replication card and the dataset audit."""
    points = _with_display_columns(analysis.points)
    by_size = "dataset_size" in points and points["dataset_size"].nunique() > 1
    lines = [f"# {title}", "", "## Summary", ""]
    lines += [f"- {s}" for s in summary(analysis, failed, ceiling, num_classes, audit=audit)]
    lines += ["", "## How it was measured", "", *conclusions.how_measured_lines(analysis.runs, sweep_params)]
    lines += fidelity or []
    cost_lines = conclusions.pretraining_cost_lines(analysis, analysis.runs)
    if weights or cost_lines:
        lines += ["", "## Pretrained weights and what they cost", "", *(weights or []), *cost_lines]
    lines += _frontier_lines(analysis)
    lines += _table_lines(analysis, points, figures, by_size)
    lines += extra or []
    lines += _detail_lines(points, figures, audit)
    lines += ["", "## Runs left out", ""] + _left_out_lines(analysis, failed)
    lines += ["", "Files: `frontier.csv` (every frontier, scope `all` and one per condition), "
              "`configurations.csv` (every configuration)"
              + (", `pretraining_gain.csv` (pretrained - scratch per size and budget)" if not analysis.gains.empty
                 else "") + ", each with its test accuracy's 95% interval (`test_accuracy_ci_low`, "
              "`test_accuracy_ci_high`).", ""]
    return "\n".join(lines)


def _frontier_lines(analysis: fr.Analysis) -> list[str]:
    """The frontier figure and table, whether the test set separates its points, the target."""
    cost = analysis.cost
    lines = ["", f"## Cost vs accuracy (cost: `{cost}`)", "", "![frontier](frontier.png)", "",
             f"The overall frontier: no other configuration is at most as costly in `{cost}` "
             f"[{fr.COST_UNITS[cost]}] and at least as accurate on validation. Test accuracy: mean over "
             "seeds [95% interval].", ""]
    overall = _with_display_columns(analysis.frontier[analysis.frontier["scope"] == "all"])
    lines += [_table(overall, {"config": "configuration", "condition": "condition", cost: cost,
                               fr.PRETRAIN: "pretrain_macs", SELECTION: "val acc",
                               "test_accuracy_text": "test accuracy [95% CI]",
                               "not_separable_from": "not separable on test from"}), ""]
    lines += conclusions.separation_lines(analysis)
    if analysis.target is not None or analysis.common is not None:
        lines += ["", "## Cheapest configuration reaching a target accuracy", "",
                  "Reached on validation accuracy (what chooses); the test interval says whether the test "
                  "set confirms it (\"within noise\": the interval straddles the target).", ""]
        if analysis.target is not None:
            lines += [f"- {s}" for s in analysis.target.sentences]
        if analysis.common is not None and (analysis.target is None or analysis.common.target != analysis.target.target):
            lines += [f"- {conclusions.common_sentence(analysis.common)}"]
    return lines


def _table_lines(analysis: fr.Analysis, points: pd.DataFrame, figures: dict[str, Path],
                 by_size: bool) -> list[str]:
    """The size figure, the best configuration per condition, the test metrics per model and
    the training time per model."""
    cost = analysis.cost
    lines = []
    if "size" in figures:
        lines += ["", "## Accuracy, time and MACs vs dataset size", "", "![by size](size.png)"]
    group = ["condition", "dataset_size"] if by_size else ["condition"]
    best = _with_display_columns(fr.best_per_group(analysis.points, group, cost))
    lines += ["", "## Best configuration per condition" + (" and dataset size" if by_size else ""), "",
              "Best by validation accuracy.", "",
              _table(best, {"condition": "condition", "dataset_size": "images", "model": "model",
                            "epochs_text": "epochs", "batch_size": "batch size", "lr": "lr",
                            "train_accuracy": "train acc", SELECTION: "val acc",
                            "test_accuracy_text": "test acc [95% CI]", "test_loss": "test loss",
                            cost: cost, "config": "configuration"})]
    per_model = _with_display_columns(fr.best_per_group(analysis.points, ["model", *group]
                                                        if "model" in points else group, cost))
    lines += ["", "## Test metrics per model and condition (best configuration of each by validation)", "",
              _table(per_model, {"model": "model", "condition": "condition", "dataset_size": "images",
                                 "test_accuracy_text": "accuracy [95% CI]",
                                 "test_precision_macro": "precision (macro)",
                                 "test_recall_macro": "recall (macro)", "test_f1_macro": "F1 (macro)",
                                 "test_auc_roc_ovr": "AUC-ROC (OvR)"})]
    lines += ["", "## Training time per model", "",
              "Mean over every finished run; test accuracy and recall of the run with the best validation "
              "accuracy; \"× s / epoch\" is relative to the fastest row.", "",
              _table(training_time(analysis.runs, by_size), {
                  "model": "model", "condition": "condition", "dataset_size": "images", "runs": "runs",
                  "train_time_s": "mean train_time_s", "time_per_epoch_s": "mean s / epoch",
                  "relative_time_per_epoch": "× s / epoch", "wall_time_s": "mean wall_time_s",
                  "chosen_test_accuracy_text": "its test acc [95% CI]",
                  "chosen_test_recall_macro": "its recall (macro)"})]
    return lines


def _detail_lines(points: pd.DataFrame, figures: dict[str, Path], audit: dict | None) -> list[str]:
    """The learning curves, the confusion matrices and the spread across seeds."""
    lines = []
    if "curves" in figures:
        per_model = "model" in points and points["model"].nunique() > 1
        lines += ["", "## Learning curves", "", "Best configuration of each "
                  + ("model and condition by validation accuracy, one row of panels per model" if per_model
                     else "condition by validation accuracy")
                  + " (the seed closest to its mean): train solid, validation dashed.", "",
                  "![learning curves](learning_curves.png)"]
    if "confusion" in figures:
        lines += ["", "## Confusion matrices", "", "![confusion matrices](confusion_matrices.png)"]
        for pair in (audit or {}).get("confusable", []):
            lines.append(f"- audit: {' ~ '.join(pair['classes'])}: {pair.get('reason', '')}")
    repeated = points[points["n_runs"] > 1]
    if len(repeated):
        lines += ["", "## Seed spread", "", "Test accuracy across the seeds of each configuration run more "
                  "than once; the interval is mean ± Student's t across the seeds, widened in quadrature by "
                  "the Wilson interval of the test images they share.", "",
                  _table(repeated, {"config": "configuration", "n_runs": "runs", "seeds": "seeds",
                                    ACCURACY: "mean", CI_LOW: "95% CI low", CI_HIGH: "95% CI high",
                                    f"{ACCURACY}_std": "std", f"{ACCURACY}_min": "min",
                                    f"{ACCURACY}_max": "max"})]
    return lines


def _accuracy_text(row) -> str:
    """"93.0% [88.0, 98.0] (3 seeds)": test accuracy, its 95% interval, how many seeds."""
    text = fr.point_accuracy_text(row)
    return text + (f" ({row['n_runs']} seeds)" if row.get("n_runs", 1) > 1 else "")


def _with_display_columns(points: pd.DataFrame) -> pd.DataFrame:
    table = points.copy()
    table["test_accuracy_text"] = table.apply(_accuracy_text, axis=1)
    if "epochs_run" in table:
        table["epochs_text"] = [f"{r:g}" if "epochs" not in table or r == e else f"{r:g} of {e:g}"
                                for r, e in zip(table["epochs_run"], table.get("epochs", table["epochs_run"]))]
    return table


def weights_lines(runs: pd.DataFrame) -> list[str]:
    """Which weights each pretrained condition started from: a report must never leave a reader
    assuming ImageNet when the weights came from xfer's own offline source task."""
    if "weights" not in runs or "init" not in runs:
        return []
    pretrained = runs[runs["init"] == "pretrained"]
    columns = [c for c in ("weights", "weights_origin", "weights_sha256") if c in pretrained]
    lines = []
    for _, row in pretrained[columns].drop_duplicates().iterrows():
        origin = row.get("weights_origin", "")
        sha = str(row.get("weights_sha256", ""))[:12]
        lines.append(f"- pretrained: `{row['weights']}`" + (f" (sha256 {sha}…)" if sha else "")
                     + (f": {origin}" if isinstance(origin, str) and origin else ""))
    return lines


def _left_out_lines(analysis: fr.Analysis, failed: pd.DataFrame) -> list[str]:
    lines = []
    if analysis.dropped:
        lines.append(f"Finished runs without usable numbers: {fr.format_dropped(analysis.dropped)}.")
    if failed is None or failed.empty:
        return lines + ["Every run finished."]
    lines += [f"{conclusions.runs_word(len(failed))} did not finish:", "",
              _table(failed.assign(error=failed.get("error", pd.Series(index=failed.index, dtype=object))
                                   .fillna("").astype(str).map(_last_line).str.slice(0, 160)),
                     {"run_name": "run", "status": "status", "error": "error"})]
    return lines


def _last_line(error: str) -> str:
    """A traceback's last line is the exception itself: the part a table has room for."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def training_time(runs: pd.DataFrame, by_size: bool) -> pd.DataFrame:
    """Mean training time per model and condition (and size): over every finished run; the test
    accuracy (with its interval) and recall of the run with the best validation accuracy."""
    keys = [k for k in ("model", "condition") if k in runs] + (["dataset_size"] if by_size else [])
    if "train_time_s" not in runs or not keys:
        return pd.DataFrame()
    runs = runs.assign(time_per_epoch_s=runs["train_time_s"] / runs.get("epochs_run", np.nan))
    table = runs.groupby(keys, dropna=False).agg(
        runs=("train_time_s", "size"), train_time_s=("train_time_s", "mean"),
        time_per_epoch_s=("time_per_epoch_s", "mean"),
        **({"wall_time_s": ("wall_time_s", "mean")} if "wall_time_s" in runs else {})).reset_index()
    table["relative_time_per_epoch"] = table["time_per_epoch_s"] / table["time_per_epoch_s"].min()
    chosen = runs.sort_values([SELECTION, ACCURACY], ascending=[False, False]).groupby(keys, dropna=False).head(1)
    chosen = chosen.assign(chosen_test_accuracy_text=[
        fr.point_accuracy_text({ACCURACY: row[ACCURACY], **fr.accuracy_interval(chosen.loc[[i]])})
        for i, row in chosen.iterrows()])
    chosen = chosen[keys + [c for c in ("chosen_test_accuracy_text", "test_recall_macro") if c in chosen]].rename(
        columns={"test_recall_macro": "chosen_test_recall_macro"})
    return table.merge(chosen, on=keys, how="left")


# --- the generated summary -----------------------------------------------------------------------

def summary(analysis: fr.Analysis, failed: pd.DataFrame | None, ceiling: float | None,
            num_classes: int | None = None, *, audit: dict | None = None) -> list[str]:
    """Factual sentences: counts, warnings, the comparison of conditions at each size (with
    interval and verdict), who holds which budget on the overall frontier and whether the test
    set separates it, the target answers, the break-even and the ceiling. Only numbers from the
    tables; a win only where its interval excludes zero."""
    runs, points, cost = analysis.runs, analysis.points, analysis.cost
    stopped = int(runs["stopped_early"].sum()) if "stopped_early" in runs else 0
    n_failed = 0 if failed is None else len(failed)
    sentences = [f"{conclusions.runs_word(len(runs))} finished ({stopped} stopped early by the scheduler) in "
                 f"{len(points)} configurations; {conclusions.runs_word(n_failed)} did not finish; conditions: "
                 f"{', '.join(sorted(points['condition'].unique()))}. Every choice reads validation "
                 "accuracy; test accuracy is reported with its 95% interval.", _milestone_sentence(runs)]
    sentences += [f"Warning: {line}" for line in fr.guards(points, ceiling, num_classes)]
    wrong = card.disagreements(audit)
    if wrong:
        sentences.append(f"Warning: the dataset audit's pixel check disagrees with its analytic categories "
                         f"for {len(wrong)} class pair{'s' if len(wrong) > 1 else ''} "
                         f"({', '.join(' ~ '.join(p.get('classes', [])) for p in wrong)}): its ceiling may be "
                         "wrong (see Dataset audit).")
    sizes = sorted(points["dataset_size"].unique()) if "dataset_size" in points else [None]
    for size in sizes:
        here = points if size is None else points[points["dataset_size"] == size]
        sentences.append(conclusions.comparison_sentence(here, cost, size, analysis.predictions))
    overall = analysis.frontier[analysis.frontier["scope"] == "all"]
    sentences.append(conclusions.budget_sentence(overall, cost))
    separation = conclusions.separation_lines(analysis)
    if separation and len(separation) == 1:
        sentences.append(separation[0])
    if analysis.target is not None:
        sentences += analysis.target.sentences
    if analysis.common is not None and (analysis.target is None or analysis.common.target != analysis.target.target):
        sentences.append(conclusions.common_sentence(analysis.common))
    if "init" in runs and (runs["init"] == "pretrained").any():
        sentences += conclusions.break_even_sentences(analysis)
    sentences.append(conclusions.ceiling_sentence(analysis, ceiling, card.ceiling_rendering(audit)))
    return [s for s in sentences if s]


def _milestone_sentence(runs: pd.DataFrame) -> str:
    """Say which runs were measured inside longer ones (``--epoch-milestones``)."""
    milestones = int(runs["milestone_of"].notna().sum()) if "milestone_of" in runs else 0
    if not milestones:
        return ""
    plural = milestones > 1
    return (f"{conclusions.runs_word(milestones)} of these {'are epoch milestones' if plural else 'is an epoch milestone'}: "
            "the result as of epoch m inside a longer run of the same configuration "
            "(--epoch-milestones), which, with an lr schedule that ignores the budget, is exactly "
            f"what the m-epoch run gives; {'their' if plural else 'its'} times and costs count up "
            "to epoch m.")
