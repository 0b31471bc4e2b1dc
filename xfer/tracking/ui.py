"""The MLflow UI link a sweep prints: a URL that lands on *this sweep's* runs table.

Two things stand between a bare experiment URL and the runs. MLflow 3's UI opens an experiment
in its GenAI view (traces, token usage) unless the URL says ``workflowType=machine_learning``
(the experiment tag ``mlflow.experimentKind`` did not change that, measured on 3.17). And the
runs table nests child runs under a collapsed parent, unless a search filter is set and the
table is sorted by something other than the start time; whether a parent is expanded cannot be
put in a URL. So the sweep saves a *shared view* the way the UI's own "share" button does: an
experiment tag ``mlflow.sharedViewState.<key>`` holding the view's JSON state, here a filter on
the sweep's id, sorted by validation accuracy (best first; the parent, which has no such
metric, comes last), with the columns that answer the study's question; the URL names the key
(``viewStateShareKey``). tests/test_mlflow_ui.py opens it in a headless Chromium and checks
the parent and its children are in the table.
"""

from __future__ import annotations

import json
import urllib.parse

from xfer import names

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default

# The runs table's columns: how each run was configured and what it measured and cost.
_COLUMNS = (["attributes.`Source`", "attributes.`User`", "attributes.`Dataset`"]
            + [f"params.`{p}`" for p in ("model", "init", names.DATASET_SIZE, "epochs", "batch_size")]
            + [f"metrics.`{m}`" for m in (names.VAL_ACCURACY, names.TEST_ACCURACY, names.TRAIN_MACS,
                                          names.WALL_TIME_S)])


def view_key(sweep_id: str) -> str:
    return f"xfer-{sweep_id}"


def sweep_view_state(sweep_id: str) -> dict:
    """The shared view's state: this sweep's runs, flat, best validation accuracy first."""
    return {"searchFilter": f"tags.`{names.SWEEP_TAG}` = '{sweep_id}'",
            "orderByKey": f"metrics.`{names.VAL_ACCURACY}`", "orderByAsc": False,
            "selectedColumns": list(_COLUMNS)}


def publish_sweep_view(client, experiment_id: str, sweep_id: str) -> str:
    """Save the sweep's shared view on its experiment (idempotent: same key, same state) and
    return the key for ``runs_url``."""
    key = view_key(sweep_id)
    client.set_experiment_tag(experiment_id, names.SHARED_VIEW_TAG_PREFIX + key,
                              json.dumps(sweep_view_state(sweep_id)))
    return key


def ui_base(tracking_uri: str) -> str:
    """The UI's address: a tracking server serves its own UI; a local store (sqlite:///,
    a folder) is browsed with ``mlflow ui``, on 127.0.0.1:5000 unless told otherwise.
    Credentials in the URI are left out of what is printed."""
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return LOCAL_UI


def runs_url(base: str, experiment_id: str, key: str | None = None) -> str:
    """The experiment's runs table in the "Model training" workflow, in the shared view ``key``
    when given."""
    query = {"workflowType": "machine_learning"}
    if key:
        query = {"viewStateShareKey": key, **query}
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"
