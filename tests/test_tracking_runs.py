"""Reading a sweep back from a real MLflow store (sqlite), laid out as the sweep layer logs it.

``build_store`` is also used by test_cli_frontier.py: creating the sqlite schema costs ~7 s, so
each module builds one store for all its tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from xfer.errors import UsageError
from xfer.tracking import runs as tracking_runs

FAMILIES = ["beta", "chi2", "exponential", "gamma", "laplace", "normal", "uniform", "weibull"]
MACS_PER_IMAGE = 37_000_000
T0_MS = 1_700_000_000_000

# The latest sweep: 2 inits x 2 sizes, a 2-seed configuration, an ASHA-stopped trial, a failure.
# (init, dataset_size, batch_size, epochs, epochs_run, seed, test_accuracy, status)
LATEST = [
    ("scratch", 100, 4, 4, 4, 0, 0.55, "FINISHED"),
    ("scratch", 100, 4, 4, 4, 1, 0.60, "FINISHED"),
    ("scratch", 100, 8, 4, 4, 0, 0.52, "FINISHED"),
    ("scratch", 400, 4, 4, 4, 0, 0.70, "FINISHED"),
    ("scratch", 400, 8, 4, 2, 0, 0.50, "FINISHED"),  # stopped by ASHA after 2 of 4 epochs
    ("pretrained", 100, 4, 4, 4, 0, 0.80, "FINISHED"),
    ("pretrained", 100, 8, 4, 4, 0, 0.75, "FINISHED"),
    ("pretrained", 400, 4, 4, 4, 0, 0.92, "FINISHED"),
    ("pretrained", 400, 8, 4, 4, 0, 0.90, "FINISHED"),
    ("pretrained", 400, 16, 4, 1, 0, None, "FAILED"),
]
OLDER = [("scratch", 100, 4, 2, 2, 0, 0.40, "FINISHED"), ("pretrained", 100, 4, 2, 2, 0, 0.70, "FINISHED")]
ALL_FAILED = [("scratch", 100, 4, 2, 0, 0, None, "FAILED"), ("pretrained", 100, 4, 2, 0, 0, None, "FAILED")]
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


@dataclass
class Store:
    uri: str
    dataset: Path
    parents: dict[str, str] = field(default_factory=dict)  # sweep id -> parent run id
    runs: dict[str, list[dict]] = field(default_factory=dict)  # sweep id -> what each child logged


def final_metrics(size: int, batch: int, epochs_run: int, accuracy: float) -> dict[str, float]:
    n_train = int(size * 0.8)
    wall = 2.0 + 0.05 * n_train * epochs_run / batch
    return {"test_accuracy": accuracy, "test_precision_macro": accuracy - 0.01,
            "test_recall_macro": accuracy - 0.02, "test_f1_macro": accuracy - 0.015,
            "test_auc_roc_ovr": min(1.0, accuracy + 0.05), "test_loss": 2.0 * (1 - accuracy),
            "epochs_run": float(epochs_run), "wall_time_s": wall, "train_time_s": wall - 1.5,
            "macs_per_image": float(MACS_PER_IMAGE),
            "train_macs": 3.0 * MACS_PER_IMAGE * n_train * epochs_run,
            "macs_epochs_per_batch": MACS_PER_IMAGE * epochs_run / batch, "gpu_seconds": 0.0}


def history(epochs_run: int, accuracy: float) -> dict[str, list[float]]:
    """Per-epoch values that end at ``accuracy`` (val) and a bit above (train)."""
    steps = range(1, epochs_run + 1)
    return {"train_accuracy": [min(1.0, accuracy + 0.05) * e / epochs_run for e in steps],
            "val_accuracy": [accuracy * e / epochs_run for e in steps],
            "train_loss": [2.0 / e for e in steps], "val_loss": [2.2 / e for e in steps],
            "epoch_time_s": [0.5 for _ in steps]}


def confusion(accuracy: float) -> dict:
    """Eight classes of 10 test images; exponential and gamma swap half of theirs."""
    matrix = [[10 if i == j else 0 for j in range(8)] for i in range(8)]
    e, g = FAMILIES.index("exponential"), FAMILIES.index("gamma")
    matrix[e][e] = matrix[g][g] = 5
    matrix[e][g] = matrix[g][e] = 5
    return {"classes": FAMILIES, "matrix": matrix}


def log_sweep(client: MlflowClient, experiment_id: str, sweep_id: str, trials: list, start_ms: int,
              dataset: Path, tmp: Path, roles: bool = True) -> tuple[str, list[dict]]:
    """Log a parent run and one child per trial; ``roles=False`` leaves out the xfer.role tags
    (SPEC's minimal layout: a parent is a run with the sweep tag and no parent of its own)."""
    role = (lambda r: {tracking_runs.ROLE_TAG: r}) if roles else (lambda r: {})
    parent = client.create_run(experiment_id, start_time=start_ms, run_name=f"sweep-{sweep_id}",
                               tags={tracking_runs.SWEEP_TAG: sweep_id, **role("parent")})
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[Param("preset", "smoke"), Param("git_sha", "abc123")])
    logged = []
    for i, (init, size, batch, epochs, epochs_run, seed, accuracy, status) in enumerate(trials):
        name = f"resnet18-{init}-all-n{size}-bs{batch}-ep{epochs}"
        start = start_ms + 1000 * (i + 1)
        run = client.create_run(experiment_id, start_time=start, run_name=name, tags={
            tracking_runs.PARENT_TAG: parent_id, tracking_runs.SWEEP_TAG: sweep_id,
            tracking_runs.TRIAL_TAG: f"t{i:03d}", **role("trial")})
        run_id = run.info.run_id
        params = {"model": "resnet18", "init": init, "train_layers": "all",
                  "weights": "imagenet" if init == "pretrained" else "None", "dataset": "pdf-seed",
                  "dataset_size": size, "n_train": int(size * 0.8), "image_size": 64, "epochs": epochs,
                  "batch_size": batch, "lr": 0.01, "optimizer": "sgd", "seed": seed,
                  "dataset_path": str(dataset)}
        metrics = []
        if status == "FINISHED":
            for key, values in history(epochs_run, accuracy).items():
                metrics += [Metric(key, v, start + e, e + 1) for e, v in enumerate(values)]
            metrics += [Metric(k, v, start + 500, 0) for k, v in final_metrics(size, batch, epochs_run, accuracy).items()]
            path = tmp / run_id / tracking_runs.CONFUSION_ARTIFACT
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(confusion(accuracy)))
            client.log_artifact(run_id, str(path))
        else:
            client.set_tag(run_id, tracking_runs.ERROR_TAG, OOM)
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(run_id, status, end_time=start + 900)
        logged.append({"run_id": run_id, "run_name": name, "status": status, **params,
                       "epochs_run": epochs_run, "test_accuracy": accuracy})
    return parent_id, logged


def build_store(root: Path) -> Store:
    """A sqlite store with experiment ``pdf_grid`` holding three sweeps (all-failed ``s0``,
    ``s1``, and the latest ``s2``) and a stray run without a sweep, an experiment ``empty``, and
    an experiment ``untagged`` whose sweep ``u1`` has no xfer.role tags."""
    dataset = root / "dataset"
    dataset.mkdir()
    (dataset / "audit.json").write_text(json.dumps({
        "confusable": [{"classes": ["exponential", "gamma"], "reason": "same distribution", "distance": 0.0}],
        "bayes_accuracy_ceiling": 0.9375, "method": "test"}))
    store = Store(uri=f"sqlite:///{root}/mlflow.db", dataset=dataset)
    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("pdf_grid", artifact_location=(root / "artifacts").as_uri())
    client.create_experiment("empty", artifact_location=(root / "artifacts-empty").as_uri())
    for offset, (sweep_id, trials) in enumerate([("s0", ALL_FAILED), ("s1", OLDER), ("s2", LATEST)]):
        store.parents[sweep_id], store.runs[sweep_id] = log_sweep(
            client, experiment_id, sweep_id, trials, T0_MS + offset * 100_000, dataset, root / "logged")
    untagged = client.create_experiment("untagged", artifact_location=(root / "artifacts-u").as_uri())
    store.parents["u1"], store.runs["u1"] = log_sweep(client, untagged, "u1", OLDER, T0_MS, dataset,
                                                      root / "logged-u", roles=False)
    stray = client.create_run(experiment_id, start_time=T0_MS + 999_999, run_name="stray")
    client.set_terminated(stray.info.run_id, "FINISHED")
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return build_store(tmp_path_factory.mktemp("mlflow"))


def test_latest_sweep_by_default_splits_finished_and_failed(store):
    sweep = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri)
    assert (sweep.sweep_id, sweep.parent_run_id) == ("s2", store.parents["s2"])
    assert len(sweep.runs) == 9 and (sweep.runs["status"] == "FINISHED").all()
    expected = {r["run_id"]: r for r in store.runs["s2"] if r["status"] == "FINISHED"}
    assert set(sweep.runs["run_id"]) == set(expected)
    for _, row in sweep.runs.iterrows():
        logged = expected[row["run_id"]]
        assert row["test_accuracy"] == logged["test_accuracy"]
        assert row["run_name"] == logged["run_name"]
        assert row["train_macs"] == 3 * MACS_PER_IMAGE * logged["n_train"] * logged["epochs_run"]
    assert sweep.failed[["status", "error"]].values.tolist() == [["FAILED", OOM]]
    assert sweep.failed["batch_size"].tolist() == [16]


def test_asha_stopped_run_is_finished_and_counts_at_its_epochs_run(store):
    runs = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri).runs
    stopped = runs[runs["stopped_early"]]
    assert len(stopped) == 1
    assert (stopped["epochs_run"].item(), stopped["epochs"].item()) == (2, 4)
    assert stopped["train_macs"].item() == 3 * MACS_PER_IMAGE * 320 * 2


def test_params_are_typed_and_config_columns_leave_out_seed_and_inputs(store):
    sweep = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri)
    runs = sweep.runs
    assert runs["batch_size"].dtype == "int64" and runs["lr"].dtype == "float64"
    assert set(runs["weights"]) == {"None", "imagenet"}
    assert "seed" not in sweep.config_columns and "dataset_path" not in sweep.config_columns
    assert {"init", "batch_size", "dataset_size", "epochs_run"} <= set(sweep.config_columns)
    assert str(runs["start_time"].dtype).startswith("datetime64")


def test_a_sweep_by_id(store):
    sweep = tracking_runs.load_sweep("pdf_grid", "s1", tracking_uri=store.uri)
    assert sweep.parent_run_id == store.parents["s1"]
    assert sorted(sweep.runs["test_accuracy"]) == [0.40, 0.70] and sweep.failed.empty


def test_a_parent_without_role_tag_is_found_as_the_run_without_a_parent(store):
    sweep = tracking_runs.load_sweep("untagged", tracking_uri=store.uri)
    assert (sweep.sweep_id, sweep.parent_run_id) == ("u1", store.parents["u1"])
    assert len(sweep.runs) == 2


def test_results_are_the_same_when_paged(store, monkeypatch):
    monkeypatch.setattr(tracking_runs, "_PAGE", 2)
    sweep = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri)
    assert sweep.sweep_id == "s2" and len(sweep.runs) == 9 and len(sweep.failed) == 1


@pytest.mark.parametrize("experiment, sweep_id, message", [
    ("nope", None, r"unknown experiment 'nope' in MLflow at sqlite:///.*\(valid: Default, empty, pdf_grid, untagged\)"),
    ("pdf_grid", "s9", r"unknown sweep id 's9' in experiment 'pdf_grid' \(latest: s2, s1, s0\)"),
    ("pdf_grid", "it's", r"unknown sweep id"),
    ("pdf_grid", "s0", r"sweep 's0' in experiment 'pdf_grid' has no finished runs \(2 failed\)"),
    ("empty", None, r"experiment 'empty' has no sweep"),
])
def test_bad_requests_are_one_line_usage_errors(store, experiment, sweep_id, message):
    with pytest.raises(UsageError, match=message) as error:
        tracking_runs.load_sweep(experiment, sweep_id, tracking_uri=store.uri)
    assert "\n" not in str(error.value)


def test_default_tracking_uri_is_mlflows(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    mlflow.set_tracking_uri(None)
    assert tracking_runs.load_sweep("pdf_grid").tracking_uri == store.uri


def test_histories_per_epoch_for_chosen_runs(store):
    sweep = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri)
    stopped = sweep.runs[sweep.runs["stopped_early"]]["run_id"].item()
    full = sweep.runs[sweep.runs["test_accuracy"] == 0.92]["run_id"].item()
    failed = sweep.failed["run_id"].item()
    histories = tracking_runs.load_histories([stopped, full, failed], tracking_uri=store.uri)
    assert set(histories) == {stopped, full}  # the failed run logged no epoch
    assert histories[stopped].index.tolist() == [1, 2]
    assert list(histories[full].columns) == list(tracking_runs.HISTORY_METRICS)
    assert histories[full]["val_accuracy"].tolist() == pytest.approx(history(4, 0.92)["val_accuracy"])


def test_confusion_matrices_are_downloaded_and_missing_ones_left_out(store):
    sweep = tracking_runs.load_sweep("pdf_grid", tracking_uri=store.uri)
    ids = [sweep.runs["run_id"].iloc[0], sweep.failed["run_id"].item()]
    confusions = tracking_runs.load_confusions(ids, tracking_uri=store.uri)
    assert list(confusions) == [ids[0]]
    assert confusions[ids[0]] == confusion(0.0)
