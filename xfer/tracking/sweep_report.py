"""From a sweep in MLflow to its report on disk and on the sweep's parent run.

The glue the ``xfer frontier`` command and the sweep scripts share: read the runs
(``xfer.tracking.runs``), write the report (``xfer.report``), then log the files as artifacts of
the parent run, with its summary metrics and description (``xfer.report.parent_summary``), so the MLflow
UI shows the sweep's outcome on the parent next to the runs. Every check on the user's input
happens before anything is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from xfer import forecast, frontier, report
from xfer.names import GAIN_AT_TAG, NOTE_TAG
from xfer.report import card as report_card
from xfer.report import parent_summary
from xfer.tracking import runs as tracking_runs


def build_report(experiment: str, sweep_id: str | None = None, cost: str = frontier.DEFAULT_COST,
                 target_accuracy: float | None = None, out_dir: str | Path = "xfer_report",
                 tracking_uri: str | None = None, log_to_parent: bool = True,
                 amortize_pretraining: int | None = None) -> Path:
    """Write the report of ``sweep_id`` (default: the latest sweep of ``experiment``) into
    ``out_dir`` and return the path of its report.md. UsageError, before anything is written,
    for an unknown cost metric, a target outside (0, 1], an amortisation that is not a whole
    number >= 1 (or not on train_macs), an unknown experiment or sweep id, or a sweep without a
    usable finished run.

    Reads from MLflow: the child runs' params and final metrics (val_accuracy selects;
    test_accuracy, test_accuracy_ci_low/high, n_test, n_val, pretrain_macs are reported; params
    split, test_set_sha256, pretrain_macs_basis), the parent run's params (scheduler,
    scheduler_detail, search), and the artifacts test_predictions.json (of the runs the report
    compares), confusion_matrix.json and the history of the runs it details, roc_curve.json and
    embeddings.json of the best run of each model and condition, and the parent's
    study_card.json (the replication card; a sweep that logged none gets no card).

    ``log_to_parent``: also attach the report's files (report.html included) to the parent run
    and log its summary metrics and description (:func:`log_summary`)."""
    frontier.check_cost(cost)
    frontier.check_target(target_accuracy)
    frontier.check_amortize(amortize_pretraining, cost)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    sweep = tracking_runs.load_sweep(experiment, sweep_id, tracking_uri=tracking_uri)
    audit = dataset_audit(sweep.runs)
    detail = report.detail_run_ids(sweep.runs, cost=cost, config_columns=sweep.config_columns)
    groups = list(report.group_run_ids(sweep.runs, cost=cost, config_columns=sweep.config_columns).values())
    compared = report.comparison_run_ids(sweep.runs, cost=cost, target_accuracy=target_accuracy,
                                         config_columns=sweep.config_columns,
                                         amortize_pretraining=amortize_pretraining)
    uri = sweep.tracking_uri
    predictions = tracking_runs.load_artifact_json(compared, tracking_runs.PREDICTIONS_ARTIFACT, tracking_uri=uri)
    card = tracking_runs.load_artifact_json([sweep.parent_run_id], report_card.ARTIFACT,
                                            tracking_uri=uri).get(sweep.parent_run_id)
    path = report.write_report(
        sweep.runs, sweep.failed,
        tracking_runs.load_histories(detail, tracking_uri=uri),
        tracking_runs.load_confusions(detail, tracking_uri=uri),
        out, cost=cost, target_accuracy=target_accuracy, audit=audit,
        title=f"{experiment}: sweep {sweep.sweep_id}", config_columns=sweep.config_columns,
        rocs=tracking_runs.load_artifact_json(groups, tracking_runs.ROC_ARTIFACT, tracking_uri=uri),
        embeddings=tracking_runs.load_artifact_json(groups, tracking_runs.EMBEDDINGS_ARTIFACT,
                                                    tracking_uri=uri),
        predictions=predictions,
        amortize_pretraining=amortize_pretraining, sweep_params=sweep.parent_params,
        num_classes=dataset_num_classes(sweep.runs), study_card=card if isinstance(card, dict) else None,
        scores=sweep.scores)
    if log_to_parent:
        client = MlflowClient(sweep.tracking_uri)
        for name in report.FILE_NAMES:
            if (out / name).is_file():
                client.log_artifact(sweep.parent_run_id, str(out / name))
        # the same analysis write_report drew from (the bootstrap is seeded: identical numbers)
        analysis = frontier.analyse(sweep.runs, cost, target_accuracy, sweep.config_columns,
                                    predictions=predictions, amortize_pretraining=amortize_pretraining)
        ceiling = (audit or {}).get("bayes_accuracy_ceiling")
        scaling = forecast.forecast_if_possible(analysis.points, ceiling=ceiling,
                                                 sweep_params=sweep.parent_params)
        log_summary(client, sweep.parent_run_id, analysis, sweep.runs, sweep.failed, path, scaling)
    return path


def log_summary(client: MlflowClient, run_id: str, analysis: frontier.Analysis, runs: pd.DataFrame,
                failed: pd.DataFrame, report_md: Path, scaling: forecast.ScalingForecast | None = None) -> None:
    """One batch on the parent run: the summary metrics at step 0 (MLflow draws a metric whose
    history has a step >= 1 as a line chart; at step 0 the UI shows its value), the description
    (report.md's summary) and where the pretraining gain was read. Logging again (``xfer
    frontier --log-to-parent`` after the sweep) adds a newer point at step 0, which the UI shows."""
    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, 0)
               for key, value in parent_summary.summary_metrics(analysis, runs, failed, scaling).items()]
    tags = [RunTag(NOTE_TAG, parent_summary.description(report_md, MAX_TAG_VAL_LENGTH))]
    where = parent_summary.gain_location(analysis.gains)
    if where:
        tags.append(RunTag(GAIN_AT_TAG, where))
    client.log_batch(run_id, metrics=metrics, tags=tags)


def dataset_num_classes(runs: pd.DataFrame) -> int | None:
    """How many classes the runs' dataset has (its dataset.json's ``classes``, or ``families``
    for the PDF plots), for the chance-level guard; None when it is not readable here."""
    if "dataset_path" not in runs:
        return None
    for folder in runs["dataset_path"].dropna().unique():
        try:
            meta = json.loads((Path(str(folder)) / "dataset.json").read_text())
            return len(meta.get("classes") or meta["families"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def dataset_audit(runs: pd.DataFrame) -> dict | None:
    """The audit.json of the dataset the runs trained on (param ``dataset_path``), None when the
    param is absent or the file is not readable here (a dataset on a cluster node). With several
    datasets, the largest one's: smaller sizes are subsets of it."""
    if "dataset_path" not in runs:
        return None
    order = runs.sort_values("dataset_size", ascending=False) if "dataset_size" in runs else runs
    for folder in order["dataset_path"].dropna().unique():
        try:
            return json.loads((Path(str(folder)) / "audit.json").read_text())
        except (OSError, ValueError):
            continue
    return None
