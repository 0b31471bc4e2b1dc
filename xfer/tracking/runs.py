"""Read one sweep back from MLflow: its child runs as DataFrames, their per-epoch histories and
their confusion matrices. Reading only; the frontier and the report never see MLflow.

The layout every sweep writes: a parent run tagged ``xfer.sweep_id`` (and ``xfer.role=parent``), one
child run per trial tagged ``mlflow.parentRunId`` = the parent and the same ``xfer.sweep_id``.
A trial that ASHA stopped is FINISHED with ``epochs_run`` < ``epochs``; a trial that raised is
FAILED with the tag ``xfer.error``.

Cost: one ``search_runs`` query per 1,000 runs to find the sweep and its children, then one
query per metric and run for histories, so fetch histories only for the runs you plot.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException

from xfer.errors import UsageError
from xfer.names import (EPOCH, EPOCHS_RUN, ERROR_TAG, HISTORY_METRICS, MILESTONE_OF_TAG, PARENT_TAG,
                        ROLE_PARENT, ROLE_TAG, ROLE_TRANSFERABILITY, RUN_IDENTITY_PARAMS, SWEEP_TAG,
                        TRIAL_TAG)
from xfer.tracking import redacted_uri

CONFUSION_ARTIFACT = "confusion_matrix.json"
ROC_ARTIFACT = "roc_curve.json"  # written by the sweep's logger: {"fpr", "tpr", "auc"}
EMBEDDINGS_ARTIFACT = "embeddings.json"  # xfer.embeddings.embed_stages' result
# {"test_set_sha256", "labels", "predicted"}: per test image, in the test split's order
PREDICTIONS_ARTIFACT = "test_predictions.json"
_PAGE = 1000  # search_runs' page size; the store's maximum is 50,000


@dataclass(frozen=True)
class SweepRuns:
    """One sweep's child runs. ``runs``: the FINISHED ones, one row each (run_id, run_name,
    status, trial_id, start_time, end_time, every param, typed, and every final metric).
    ``failed``: every child that did not finish (FAILED, KILLED, still RUNNING), same columns
    plus ``error`` (the ``xfer.error`` tag). ``config_columns``: the params that define a
    configuration, i.e. every param except seed and the run's input identities.
    ``parent_params``: the parent run's params as logged (strings: ``preset``, ``search``,
    ``scheduler``, ``scheduler_detail`` when the sweep logged it, ...)."""
    experiment: str
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    runs: pd.DataFrame
    failed: pd.DataFrame
    config_columns: tuple[str, ...]
    tracking_uri: str
    parent_params: dict[str, str] = field(default_factory=dict)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # transferability runs, one row each


def load_sweep(experiment: str, sweep_id: str | None = None, *,
               tracking_uri: str | None = None) -> SweepRuns:
    """The sweep ``sweep_id`` of ``experiment`` (default: the latest one, i.e. the most recent
    parent run). UsageError, one line, for an unknown experiment or sweep id and for a sweep
    without a finished run."""
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    _check_local_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    where = f"MLflow at {redacted_uri(tracking_uri)}"
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments(max_results=_PAGE))
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise UsageError(f"unknown experiment {experiment!r} in {where} (valid: {shown or 'none'})")
    parent = _find_parent(client, exp.experiment_id, experiment, sweep_id)
    sweep_id = parent.data.tags[SWEEP_TAG]
    children = _search(client, exp.experiment_id,
                       f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and tags.`{SWEEP_TAG}` = '{sweep_id}'")
    # a backbone's transferability scores are runs of the sweep, not trials: kept apart
    is_score = [run.data.tags.get(ROLE_TAG) == ROLE_TRANSFERABILITY for run in children]
    scores = _runs_table([run for run, score in zip(children, is_score) if score])
    children = [run for run, score in zip(children, is_score) if not score]
    scores = scores[scores["status"] == "FINISHED"].reset_index(drop=True)
    table = _runs_table(children)
    finished = table[table["status"] == "FINISHED"].drop(columns="error").reset_index(drop=True)
    failed = table[table["status"] != "FINISHED"].reset_index(drop=True)
    if finished.empty:
        counts = failed["status"].str.lower().value_counts()
        what = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no trial runs at all"
        raise UsageError(f"sweep {sweep_id!r} in experiment {experiment!r} has no finished runs ({what})")
    params = {key for run in children for key in run.data.params}
    config = tuple(sorted(params - set(RUN_IDENTITY_PARAMS))) + (EPOCHS_RUN,)
    return SweepRuns(experiment, exp.experiment_id, sweep_id, parent.info.run_id, finished, failed,
                     config, tracking_uri, dict(parent.data.params), scores)


def _check_local_store(tracking_uri: str) -> None:
    """A local store that does not exist is a typo, not an empty store: MLflow would create it
    (a new mlflow.db or mlruns/ in the working directory) and then report an unknown experiment."""
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.scheme == "sqlite":
        path = tracking_uri[len("sqlite:///"):].split("?")[0]
        missing = path not in ("", ":memory:") and not Path(path).is_file()
    elif parts.scheme in ("", "file"):
        path = urllib.parse.unquote(parts.path) if parts.scheme == "file" else tracking_uri
        missing = not Path(path).is_dir()
    else:
        return
    if missing:
        raise UsageError(f"no MLflow store at {path} (tracking URI {tracking_uri}; set "
                         "MLFLOW_TRACKING_URI to the sweep's)")


def _find_parent(client: MlflowClient, experiment_id: str, experiment: str, sweep_id: str | None):
    if sweep_id is not None and ("'" in sweep_id or not sweep_id):
        raise UsageError(f"unknown sweep id {sweep_id!r}")
    sweep_filter = f"tags.`{SWEEP_TAG}` " + (f"= '{sweep_id}'" if sweep_id is not None else "LIKE '%'")
    parents = _parents(client, experiment_id, sweep_filter)
    if parents:
        return parents[0]
    if sweep_id is None:
        raise UsageError(f"experiment {experiment!r} has no sweep (no parent run tagged {SWEEP_TAG})")
    known = list(dict.fromkeys(r.data.tags[SWEEP_TAG]
                               for r in _parents(client, experiment_id, f"tags.`{SWEEP_TAG}` LIKE '%'")))
    raise UsageError(f"unknown sweep id {sweep_id!r} in experiment {experiment!r} "
                     f"(latest: {', '.join(known[:5]) or 'none'})")


def _parents(client: MlflowClient, experiment_id: str, sweep_filter: str) -> list:
    """Parent runs matching ``sweep_filter``, newest first. One small query for the runs tagged
    xfer.role=parent; only when there are none, a scan of every run of the sweeps (children
    included) for the ones without a parent: runs logged by other tools with only the sweep tag
    and ``mlflow.parentRunId``."""
    tagged = _search(client, experiment_id, f"{sweep_filter} and tags.`{ROLE_TAG}` = '{ROLE_PARENT}'")
    return tagged or [r for r in _search(client, experiment_id, sweep_filter) if _is_parent(r)]


def _is_parent(run) -> bool:
    role = run.data.tags.get(ROLE_TAG)
    return role == ROLE_PARENT or (role is None and PARENT_TAG not in run.data.tags)


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    """Every active run matching ``filter_string``, newest first, paging through the results."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string,
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


_BASE_COLUMNS = ("run_id", "run_name", "status", "trial_id", "milestone_of", "error", "start_time",
                 "end_time")


def _runs_table(runs: list) -> pd.DataFrame:
    if not runs:
        return pd.DataFrame(columns=list(_BASE_COLUMNS))
    rows = []
    for run in runs:
        info, data = run.info, run.data
        rows.append({"run_id": info.run_id, "run_name": info.run_name, "status": info.status,
                     "trial_id": data.tags.get(TRIAL_TAG), "error": data.tags.get(ERROR_TAG),
                     "milestone_of": data.tags.get(MILESTONE_OF_TAG),
                     "start_time": info.start_time, "end_time": info.end_time,
                     **data.params, **data.metrics})
    table = pd.DataFrame(rows)
    params = {key for run in runs for key in run.data.params}
    for column in params:
        table[column] = _typed(table[column])
    for column in ("start_time", "end_time"):
        table[column] = pd.to_datetime(table[column], unit="ms")
    if EPOCHS_RUN in table and "epochs" in table:
        table["stopped_early"] = table[EPOCHS_RUN] < table["epochs"]
    return table.sort_values("start_time", kind="stable").reset_index(drop=True)


def _typed(values: pd.Series) -> pd.Series:
    """MLflow params are strings: numbers become numbers when every value of the column is one
    ("0.01" -> 0.01, "4" -> 4); anything else ("None", "imagenet", "True") stays text."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers[values.notna()].notna().all():
        integral = not values.dropna().astype(str).str.contains(r"[.eEnN]").any()  # no ".", exponent, nan, inf
        return numbers.astype("int64") if integral and numbers.notna().all() else numbers
    return values


def load_histories(run_ids, *, tracking_uri: str | None = None,
                   metrics=HISTORY_METRICS) -> dict[str, pd.DataFrame]:
    """Per run, its per-epoch metrics: a DataFrame indexed by ``epoch`` (the logged step), one
    column per metric that the run logged. A step logged twice (a resumed trial) keeps the last
    value. Runs without any of ``metrics`` are left out."""
    client = MlflowClient(tracking_uri)
    histories = {}
    for run_id in dict.fromkeys(run_ids):
        columns = {}
        for key in metrics:
            points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
            if points:
                columns[key] = pd.Series({m.step: m.value for m in points}, dtype=float)
        if columns:
            histories[run_id] = pd.DataFrame(columns).rename_axis(EPOCH).sort_index()
    return histories


def load_artifact_json(run_ids, name: str, *, tracking_uri: str | None = None) -> dict[str, object]:
    """Per run, the parsed JSON artifact ``name``; runs without a readable one are left out.
    Cost: one artifact download per run, so pass only the runs a report shows."""
    client = MlflowClient(tracking_uri)
    found = {}
    with tempfile.TemporaryDirectory(prefix="xfer-artifact-") as tmp, _no_progress_bars():
        for run_id in dict.fromkeys(run_ids):
            try:
                path = client.download_artifacts(run_id, name, str(Path(tmp) / run_id))
                found[run_id] = json.loads(Path(path).read_text())
            except (MlflowException, OSError, ValueError):
                continue
    return found


def load_confusions(run_ids, *, tracking_uri: str | None = None) -> dict[str, dict]:
    """Per run, its ``confusion_matrix.json`` ({"classes": [...], "matrix": [[...]]}, rows = true
    class). Runs without a readable, square one are left out."""
    confusions = {}
    for run_id, content in load_artifact_json(run_ids, CONFUSION_ARTIFACT, tracking_uri=tracking_uri).items():
        classes, matrix = content.get("classes"), content.get("matrix")
        if (isinstance(classes, list) and isinstance(matrix, list) and len(matrix) == len(classes)
                and all(isinstance(row, list) and len(row) == len(classes) for row in matrix)):
            confusions[run_id] = {"classes": classes, "matrix": matrix}
    return confusions


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow draws a progress bar on stderr for every download; a report fetches a handful."""
    key = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
