"""From a sweep in MLflow to its report on disk and on the sweep's parent run.

The glue the ``xfer frontier`` command and the sweep scripts share: read the runs
(``xfer.tracking.runs``), write the report (``xfer.report``), then log the files as artifacts of
the parent run so the MLflow UI shows them next to the runs. Every check on the user's input
happens before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from xfer import frontier, report
from xfer.tracking import runs as tracking_runs


def build_report(experiment: str, sweep_id: str | None = None, cost: str = frontier.DEFAULT_COST,
                 target_accuracy: float | None = None, out_dir: str | Path = "xfer_report",
                 tracking_uri: str | None = None, log_to_parent: bool = True) -> Path:
    """Write the report of ``sweep_id`` (default: the latest sweep of ``experiment``) into
    ``out_dir`` and return the path of its report.md. UsageError, before anything is written,
    for an unknown cost metric, a target outside (0, 1], an unknown experiment or sweep id, or a
    sweep without a usable finished run."""
    frontier.check_cost(cost)
    frontier.check_target(target_accuracy)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    sweep = tracking_runs.load_sweep(experiment, sweep_id, tracking_uri=tracking_uri)
    detail = report.detail_run_ids(sweep.runs, cost=cost, config_columns=sweep.config_columns)
    groups = list(report.group_run_ids(sweep.runs, cost=cost, config_columns=sweep.config_columns).values())
    uri = sweep.tracking_uri
    path = report.write_report(
        sweep.runs, sweep.failed,
        tracking_runs.load_histories(detail, tracking_uri=uri),
        tracking_runs.load_confusions(detail, tracking_uri=uri),
        out, cost=cost, target_accuracy=target_accuracy, audit=dataset_audit(sweep.runs),
        title=f"{experiment}: sweep {sweep.sweep_id}", config_columns=sweep.config_columns,
        rocs=tracking_runs.load_artifact_json(groups, tracking_runs.ROC_ARTIFACT, tracking_uri=uri),
        embeddings=tracking_runs.load_artifact_json(groups, tracking_runs.EMBEDDINGS_ARTIFACT,
                                                    tracking_uri=uri))
    if log_to_parent:
        client = MlflowClient(sweep.tracking_uri)
        for name in report.FILE_NAMES:
            if (out / name).is_file():
                client.log_artifact(sweep.parent_run_id, str(out / name))
    return path


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
