"""Writing a sweep's report: ``report.md``, its PNG figures, ``frontier.csv``,
``configurations.csv``, ``pretraining_gain.csv`` and ``replication_card.csv``, and for a sweep of
three or more dataset sizes the data-scaling forecast (``forecast.png``, ``forecast.csv``);
``report.html`` is report.md with its figures embedded (``xfer.report.html``).

Files in, files out: the inputs are the DataFrames and dicts that ``xfer.tracking.runs`` reads
(no MLflow here), the numbers come from ``xfer.frontier``, the figures from
``xfer.report.figures``, the text from ``xfer.report.markdown``. Every choice (best, frontier
membership, the configurations compared, the target query) reads validation accuracy; test
accuracy is reported beside it with its interval, in every table and figure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xfer import frontier as fr
from xfer.frontier import ACCURACY, CI_HIGH, CI_LOW, SELECTION
from xfer import forecast as fc
from xfer.report import card, html, scaling_section, sections, transferability_section
from xfer.report.chosen_runs import best_per_model, best_runs, model_rows
from xfer.report.figures import plot_by_size, plot_confusions, plot_frontier, plot_learning_curves
from xfer.report.markdown import report_markdown, weights_lines

FILE_NAMES = ("report.md", html.FILE_NAME, "frontier.csv", "configurations.csv", "pretraining_gain.csv",
              "frontier.png", "size.png", "learning_curves.png", "confusion_matrices.png",
              card.FILE_NAME, *sections.FILE_NAMES, scaling_section.FILE_NAME,
              scaling_section.CSV_NAME, *transferability_section.FILE_NAMES)  # everything write_report may write


def write_report(runs: pd.DataFrame, failed: pd.DataFrame, histories: dict[str, pd.DataFrame],
                 confusions: dict[str, dict], out_dir: str | Path, *, cost: str = fr.DEFAULT_COST,
                 target_accuracy: float | None = None, audit: dict | None = None,
                 title: str = "Sweep report", config_columns=None,
                 rocs: dict[str, dict] | None = None, embeddings: dict[str, dict] | None = None,
                 predictions: dict[str, dict] | None = None, amortize_pretraining: int | None = None,
                 sweep_params: dict | None = None, num_classes: int | None = None,
                 study_card: dict | None = None, scores: pd.DataFrame | None = None) -> Path:
    """Write the report into ``out_dir`` and return the path of ``report.md``.

    ``runs``: finished runs, one row each; ``failed``: the runs that did not finish (listed,
    never plotted), with ``status`` and ``error``; ``histories``: run id -> per-epoch DataFrame;
    ``confusions``: run id -> {"classes", "matrix"}; ``audit``: the dataset's audit.json, for
    the accuracy ceiling and the confusable pairs; ``rocs`` and ``embeddings``: run id -> the
    run's ``roc_curve.json`` / ``embeddings.json`` (for the runs of ``group_run_ids``);
    ``predictions``: run id -> its ``test_predictions.json`` (for the runs of
    ``comparison_run_ids``; pairs the test comparisons); ``amortize_pretraining``: N uses
    over which pretraining is counted on the cost axis (train_macs only; default not counted);
    ``sweep_params``: the parent run's params (``scheduler``, ``scheduler_detail``, ``search``);
    ``num_classes``: for the chance-level guard (default: from the confusion matrices or the
    predictions); ``study_card``: the parent run's ``study_card.json`` (departures, published
    numbers, the data's provenance, the hardware), for the replication card (None: no card);
    ``scores``: the sweep's transferability runs (``--score-transferability``), one row each,
    set against the fine-tuned results in their own section.
    Raises UsageError (before writing anything) for an unknown cost, a target outside (0, 1],
    a bad amortisation or no usable run.
    """
    analysis = fr.analyse(runs, cost, target_accuracy, config_columns, predictions=predictions,
                          amortize_pretraining=amortize_pretraining)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILE_NAMES:  # a figure this sweep cannot draw must not survive from an older report
        (out / name).unlink(missing_ok=True)
    ceiling = (audit or {}).get("bayes_accuracy_ceiling")
    _csv(analysis.frontier, out / "frontier.csv")
    _csv(analysis.points, out / "configurations.csv")
    if not analysis.gains.empty:
        _csv(analysis.gains.drop(columns="difference"), out / "pretraining_gain.csv")
    figures = _draw_figures(analysis, histories, confusions, out, ceiling=ceiling, target=target_accuracy,
                            audit=audit)
    best = best_per_model(analysis)
    labels = {r: sections.group_label(row) for _, row in best.iterrows()
              for r in [row.get("representative_run_id")] if isinstance(r, str)}
    classes = next(iter(confusions.values()))["classes"] if confusions else []
    num_classes = num_classes or len(classes) or _classes_in(predictions)
    extra = sections.pretraining_gain(analysis.gains)
    extra += scaling_section.forecast_section(fc.forecast_if_possible(
        analysis.points, ceiling=ceiling, chance=1 / num_classes if num_classes else None,
        sweep_params=sweep_params), out)
    extra += transferability_section.transferability_section(scores, analysis.points, out)
    extra += sections.roc_section({labels[r]: c for r, c in (rocs or {}).items() if r in labels}, out)
    extra += sections.separation_section(
        best, {labels[r]: e for r, e in (embeddings or {}).items() if r in labels}, classes, out)
    fidelity = card.departures_lines(study_card)
    fidelity += card.card_lines(study_card, analysis.runs, analysis.points, out)
    fidelity += card.audit_lines(audit)
    path = out / "report.md"
    path.write_text(report_markdown(analysis, failed, figures, title, ceiling, audit,
                                    weights=weights_lines(runs), extra=extra, sweep_params=sweep_params,
                                    num_classes=num_classes, fidelity=fidelity))
    html.write_html(path)  # the same report with its figures inside, for MLflow's artifact viewer
    return path


def _draw_figures(analysis: fr.Analysis, histories: dict[str, pd.DataFrame], confusions: dict[str, dict],
                  out: Path, *, ceiling: float | None, target: float | None, audit: dict | None
                  ) -> dict[str, Path]:
    """The frontier, size, learning-curve and confusion figures this sweep has data for:
    name (``frontier``, ``size``, ``curves``, ``confusion``) -> the PNG drawn."""
    levels = card.ceiling_levels(audit)  # the configured ceiling, and the other rendering's
    figures = {"frontier": plot_frontier(analysis, out / "frontier.png", ceiling=ceiling,
                                         target=target, ceilings=levels)}
    if "dataset_size" in analysis.points:
        figures["size"] = plot_by_size(analysis, out / "size.png", ceiling=ceiling, ceilings=levels)
    best, names = best_runs(analysis), _best_names(analysis)
    by_model = model_rows(analysis)
    if by_model:  # several models: one row of panels per model, not only the best model's curves
        curves = {g: histories[row["representative_run_id"]] for g, row in by_model.items()
                  if row["representative_run_id"] in histories}
        models = {g: str(row["model"]) for g, row in by_model.items()}
        curve_names = {g: f"{row['config']}, test accuracy {fr.point_accuracy_text(row)}"
                       for g, row in by_model.items()}
    else:
        curves, models, curve_names = {c: histories[r] for c, r in best.items() if r in histories}, None, names
    if curves:
        figures["curves"] = plot_learning_curves(curves, out / "learning_curves.png", names=curve_names,
                                                 models=models)
    matrices = {c: confusions[r] for c, r in best.items() if r in confusions}
    if matrices:
        pairs = [tuple(p["classes"]) for p in (audit or {}).get("confusable", [])]
        figures["confusion"] = plot_confusions(matrices, pairs, out / "confusion_matrices.png", names=names)
    return figures


def _best_names(analysis: fr.Analysis) -> dict[str, str]:
    return {row["condition"]: f"{row['config']}, test accuracy {fr.point_accuracy_text(row)}"
            for _, row in analysis.best.iterrows()}


def _classes_in(predictions: dict | None) -> int | None:
    """The number of classes, from the largest label in the test predictions: a test set of
    hundreds of stratified images holds every class."""
    labels = [max(p["labels"]) for p in (predictions or {}).values() if isinstance(p, dict) and p.get("labels")]
    return int(max(labels)) + 1 if labels else None


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
