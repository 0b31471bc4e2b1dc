"""The sweep report: ``report.md``, its PNG figures, ``frontier.csv``, ``configurations.csv`` and
``pretraining_gain.csv``; ``report.html`` is report.md with its figures embedded (``xfer.report_html``).

Files in, files out: the inputs are the DataFrames and dicts that ``xfer.tracking.runs`` reads
(no MLflow here), the numbers come from ``xfer.frontier``, the figures from
``xfer.report_figures`` and the sentences that conclude from ``xfer.report_conclusions``, each
as sure as its 95% interval allows. Every choice (best, frontier membership, the configurations
compared, the target query) reads validation accuracy; test accuracy is reported beside it with
its interval, in every table and figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xfer import frontier as fr
from xfer import report_card as card_sections
from xfer import report_conclusions as conclusions
from xfer import report_html
from xfer import report_sections as sections
from xfer.frontier import ACCURACY, CI_HIGH, CI_LOW, SELECTION
from xfer.report_conclusions import markdown_table as _table
from xfer.report_figures import (LABEL_ALL_POINTS_UP_TO, frontier_figure, plot_by_size,  # noqa: F401
                                 plot_confusions, plot_frontier, plot_learning_curves)

FILE_NAMES = ("report.md", report_html.FILE_NAME, "frontier.csv", "configurations.csv", "pretraining_gain.csv",
              "frontier.png", "size.png", "learning_curves.png", "confusion_matrices.png",
              card_sections.FILE_NAME, *sections.FILE_NAMES)  # everything write_report may write


# --- entry points --------------------------------------------------------------------------------

def detail_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None) -> list[str]:
    """The runs whose learning curves and confusion matrices the report shows: for the best
    configuration (by validation accuracy) of each condition, and of each model and condition
    when the sweep has several models, the seed closest to its mean."""
    analysis = fr.analyse(runs, cost, None, config_columns)
    return list(dict.fromkeys([*_best_runs(analysis).values(), *_model_curve_runs(analysis).values()]))


def comparison_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, target_accuracy=None,
                       config_columns=None, amortize_pretraining: int | None = None) -> list[str]:
    """Every run of the configurations the report compares on the test set (frontier points,
    the pretraining-gain pairs, the best of each condition and size): whose
    ``test_predictions.json`` pair the comparisons. Which these are never depends on the
    predictions (selection reads validation), so they can be chosen before loading any."""
    analysis = fr.analyse(runs, cost, target_accuracy, config_columns,
                          amortize_pretraining=amortize_pretraining)
    configs = set(analysis.frontier["config"]) | set(analysis.best["config"])
    if not analysis.gains.empty:
        configs |= set(analysis.gains["scratch_config"]) | set(analysis.gains["pretrained_config"])
    if "dataset_size" in analysis.points:
        configs |= set(fr.best_per_group(analysis.points, ["condition", "dataset_size"], analysis.cost)["config"])
    chosen = analysis.points[analysis.points["config"].isin(configs)]
    return [r for ids in chosen.get("run_ids", []) for r in ids]


def group_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None
                  ) -> dict[str, str]:
    """Group label (``model condition``) -> the run standing for the best configuration of
    each model and condition: whose ROC curves and feature embeddings the report shows."""
    best = _best_per_model(fr.analyse(runs, cost, None, config_columns))
    if "representative_run_id" not in best:
        return {}
    return {sections.group_label(row): row["representative_run_id"] for _, row in best.iterrows()}


def _best_per_model(analysis: fr.Analysis) -> pd.DataFrame:
    keys = ["model", "condition"] if "model" in analysis.points else ["condition"]
    return fr.best_per_group(analysis.points, keys, analysis.cost)


def write_report(runs: pd.DataFrame, failed: pd.DataFrame, histories: dict[str, pd.DataFrame],
                 confusions: dict[str, dict], out_dir: str | Path, *, cost: str = fr.DEFAULT_COST,
                 target_accuracy: float | None = None, audit: dict | None = None,
                 title: str = "Sweep report", config_columns=None,
                 rocs: dict[str, dict] | None = None, embeddings: dict[str, dict] | None = None,
                 predictions: dict[str, dict] | None = None, amortize_pretraining: int | None = None,
                 sweep_params: dict | None = None, num_classes: int | None = None,
                 study_card: dict | None = None) -> Path:
    """Write the report into ``out_dir`` and return the path of ``report.md``.

    ``runs``: finished runs, one row each; ``failed``: the runs that did not finish (listed,
    never plotted), with ``status`` and ``error``; ``histories``: run id -> per-epoch DataFrame;
    ``confusions``: run id -> {"classes", "matrix"}; ``audit``: the dataset's audit.json, for
    the accuracy ceiling and the confusable pairs; ``rocs`` and ``embeddings``: run id -> the
    run's ``roc_curve.json`` / ``embeddings.json`` (for the runs of :func:`group_run_ids`);
    ``predictions``: run id -> its ``test_predictions.json`` (for the runs of
    :func:`comparison_run_ids`; pairs the test comparisons); ``amortize_pretraining``: N uses
    over which pretraining is counted on the cost axis (train_macs only; default not counted);
    ``sweep_params``: the parent run's params (``scheduler``, ``scheduler_detail``, ``search``);
    ``num_classes``: for the chance-level guard (default: from the confusion matrices or the
    predictions); ``study_card``: the parent run's ``study_card.json`` (departures, published
    numbers, the data's provenance, the hardware), for the replication card (none: no card,
    an older sweep). Raises UsageError (before writing anything) for an unknown cost, a target
    outside (0, 1], a bad amortisation or no usable run.
    """
    analysis = fr.analyse(runs, cost, target_accuracy, config_columns, predictions=predictions,
                          amortize_pretraining=amortize_pretraining)
    cost = analysis.cost
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILE_NAMES:  # a figure this sweep cannot draw must not survive from an older report
        (out / name).unlink(missing_ok=True)
    ceiling = (audit or {}).get("bayes_accuracy_ceiling")
    levels = card_sections.ceiling_levels(audit)  # the configured ceiling, and the other rendering's
    _csv(analysis.frontier, out / "frontier.csv")
    _csv(analysis.points, out / "configurations.csv")
    if not analysis.gains.empty:
        _csv(analysis.gains.drop(columns="difference"), out / "pretraining_gain.csv")
    figures = {"frontier": plot_frontier(analysis, out / "frontier.png", ceiling=ceiling,
                                         target=target_accuracy, ceilings=levels)}
    if "dataset_size" in analysis.points:
        figures["size"] = plot_by_size(analysis, out / "size.png", ceiling=ceiling, ceilings=levels)
    best_runs, names = _best_runs(analysis), _best_names(analysis)
    by_model = _model_rows(analysis)
    if by_model:  # several models: one row of panels per model, not only the best model's curves
        curves = {g: histories[row["representative_run_id"]] for g, row in by_model.items()
                  if row["representative_run_id"] in histories}
        models = {g: str(row["model"]) for g, row in by_model.items()}
        curve_names = {g: f"{row['config']}, test accuracy {fr.point_accuracy_text(row)}"
                       for g, row in by_model.items()}
    else:
        curves, models, curve_names = {c: histories[r] for c, r in best_runs.items() if r in histories}, None, names
    if curves:
        figures["curves"] = plot_learning_curves(curves, out / "learning_curves.png", names=curve_names,
                                                 models=models)
    matrices = {c: confusions[r] for c, r in best_runs.items() if r in confusions}
    if matrices:
        pairs = [tuple(p["classes"]) for p in (audit or {}).get("confusable", [])]
        figures["confusion"] = plot_confusions(matrices, pairs, out / "confusion_matrices.png", names=names)
    best = _best_per_model(analysis)
    labels = {r: sections.group_label(row) for _, row in best.iterrows()
              for r in [row.get("representative_run_id")] if isinstance(r, str)}
    classes = next(iter(confusions.values()))["classes"] if confusions else []
    num_classes = num_classes or len(classes) or _classes_in(predictions)
    extra = sections.pretraining_gain(analysis.gains)
    extra += sections.roc_section({labels[r]: c for r, c in (rocs or {}).items() if r in labels}, out)
    extra += sections.separation_section(
        best, {labels[r]: e for r, e in (embeddings or {}).items() if r in labels}, classes, out)
    fidelity = card_sections.departures_lines(study_card)
    fidelity += card_sections.card_lines(study_card, analysis.runs, analysis.points, out)
    fidelity += card_sections.audit_lines(audit)
    path = out / "report.md"
    path.write_text(_markdown(analysis, failed, figures, title, ceiling, target_accuracy, audit,
                              weights=_weights_lines(runs), extra=extra, sweep_params=sweep_params,
                              num_classes=num_classes, fidelity=fidelity))
    report_html.write_html(path)  # the same report with its figures inside, for MLflow's artifact viewer
    return path


def _classes_in(predictions: dict | None) -> int | None:
    """The number of classes, from the largest label in the test predictions: a test set of
    hundreds of stratified images holds every class."""
    labels = [max(p["labels"]) for p in (predictions or {}).values() if isinstance(p, dict) and p.get("labels")]
    return int(max(labels)) + 1 if labels else None


def _best_runs(analysis: fr.Analysis) -> dict[str, str]:
    if "representative_run_id" not in analysis.best:  # a table without run ids has no details
        return {}
    return dict(zip(analysis.best["condition"], analysis.best["representative_run_id"]))


def _model_rows(analysis: fr.Analysis) -> dict[str, pd.Series]:
    """Group label (``model condition``) -> the best configuration of each model and condition,
    when the sweep has several models (the CIFAR-100 study's three architectures); else empty."""
    points = analysis.points
    if "model" not in points or points["model"].nunique() < 2 or "representative_run_id" not in points:
        return {}
    return {sections.group_label(row): row for _, row in _best_per_model(analysis).iterrows()}


def _model_curve_runs(analysis: fr.Analysis) -> dict[str, str]:
    return {g: row["representative_run_id"] for g, row in _model_rows(analysis).items()}


def _best_names(analysis: fr.Analysis) -> dict[str, str]:
    return {row["condition"]: f"{row['config']}, test accuracy {fr.point_accuracy_text(row)}"
            for _, row in analysis.best.iterrows()}


_CSV_LEAD = ("scope", "dataset_size", "epochs_run", "condition", "config", "label", SELECTION, ACCURACY,
             CI_LOW, CI_HIGH, fr.CI_METHOD, f"{ACCURACY}_std", f"{ACCURACY}_min", f"{ACCURACY}_max", "n_test",
             "n_runs", "seeds", "not_separable_from", *fr.COST_METRICS, fr.PRETRAIN, fr.AMORTIZED)


def _csv(table: pd.DataFrame, path: Path) -> None:
    """The table with the columns a reader looks for first; run ids and per-seed accuracies
    ';'-joined."""
    table = table.copy()
    for column in ("run_ids", "test_accuracies"):
        if column in table:
            table[column] = table[column].map(lambda values: ";".join(map(str, values)))
    lead = [c for c in _CSV_LEAD if c in table]
    table[lead + [c for c in table.columns if c not in lead]].to_csv(path, index=False)


# --- report.md -----------------------------------------------------------------------------------

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


def _weights_lines(runs: pd.DataFrame) -> list[str]:
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


def _markdown(analysis: fr.Analysis, failed: pd.DataFrame, figures: dict[str, Path], title: str,
              ceiling: float | None, target: float | None, audit: dict | None,
              weights: list[str] | None = None, extra: list[str] | None = None,
              sweep_params: dict | None = None, num_classes: int | None = None,
              fidelity: list[str] | None = None) -> str:
    cost = analysis.cost
    points = _with_display_columns(analysis.points)
    by_size = "dataset_size" in points and points["dataset_size"].nunique() > 1
    lines = [f"# {title}", "", "## Summary", ""]
    lines += [f"- {s}" for s in summary(analysis, failed, ceiling, num_classes, audit=audit)]
    lines += ["", "## How it was measured", "", *conclusions.how_measured_lines(analysis.runs, sweep_params)]
    lines += fidelity or []
    cost_lines = conclusions.pretraining_cost_lines(analysis, analysis.runs)
    if weights or cost_lines:
        lines += ["", "## Pretrained weights and what they cost", "", *(weights or []), *cost_lines]
    lines += ["", f"## Cost vs accuracy (cost: `{cost}`)", "", "![frontier](frontier.png)", "",
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
    lines += extra or []
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
    lines += ["", "## Runs left out", ""] + _left_out_lines(analysis, failed)
    lines += ["", "Files: `frontier.csv` (every frontier, scope `all` and one per condition), "
              "`configurations.csv` (every configuration)"
              + (", `pretraining_gain.csv` (pretrained - scratch per size and budget)" if not analysis.gains.empty
                 else "") + ", each with its test accuracy's 95% interval (`test_accuracy_ci_low`, "
              "`test_accuracy_ci_high`).", ""]
    return "\n".join(lines)


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
    wrong = card_sections.disagreements(audit)
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
    sentences.append(conclusions.ceiling_sentence(analysis, ceiling, card_sections.ceiling_rendering(audit)))
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
