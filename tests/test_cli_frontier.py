"""`xfer frontier` as a user runs it, against a real MLflow store laid out as the sweeps log it,
and `xfer.tracking.sweep_report.build_report` as the sweep scripts call it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import run_xfer
from test_tracking_runs import MACS_PER_IMAGE, build_store  # one store layout for both modules
from xfer import cli, report
from xfer.tracking import sweep_report as aggregate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("mlflow"))


def xfer(*args: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return run_xfer(*args, cwd=cwd, env=env)


@pytest.mark.slow
def test_frontier_command_end_to_end_writes_the_report_and_logs_it_on_the_parent(store, tmp_path):
    out = tmp_path / "report"
    done = xfer("frontier", "--experiment", "pdf_grid", "--target-accuracy", "0.9", "--out", str(out),
                "--log-to-parent", uri=store.uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"report: {out / 'report.md'}")
    assert "scratch never reaches 90% validation accuracy" in done.stdout
    assert done.stderr == ""  # no MLflow progress bars or warnings
    written = {p.name for p in out.iterdir()}
    # no run logged a ROC curve or embeddings, so those two sections and figures stay out; the
    # sweep predates study_card.json, so there is no replication card; two sizes and no
    # transferability scores: no forecast and no scores section
    assert written == set(report.FILE_NAMES) - {"roc_curves.png", "embeddings.png", "replication_card.csv",
                                                "forecast.png", "forecast.csv", "transferability.png",
                                                "transferability.csv"}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    logged = {a.path for a in MlflowClient(store.uri).list_artifacts(store.parents["s2"])}
    assert logged == written
    text = (out / "report.md").read_text()
    assert text.startswith("# pdf_grid: sweep s2")
    # the real numbers of the logged runs (their final val_accuracy equals their test accuracy):
    # pretrained's cheapest 90% is n400 bs4 (0.92; bs8's 0.90 costs the same train_macs, so the
    # more accurate on validation wins), the 2-seed scratch mean is 0.575 ± t across 2 seeds
    assert f"pretrained reaches 90% validation accuracy at train_macs {3 * MACS_PER_IMAGE * 320 * 4:.3g}" in text
    assert "(resnet18-pretrained-all-n400-bs4-ep4, test 92.0%: no interval)" in text  # no n_test logged
    assert "57.5% [25.7, 89.3] (2 seeds)" in text  # 0.575 ± t(0.975, 1) s / sqrt(2) = 12.706 x 0.0354 / 1.414
    assert "- Scheduler: not recorded on the sweep's parent run." in text
    assert "| resnet18-pretrained-all-n400-bs16-ep4 | FAILED | RuntimeError: CUDA out of memory" in text
    assert "1 stopped early by the scheduler" in text and "Bayes accuracy ceiling is 93.75%" in text
    configs = pd.read_csv(out / "configurations.csv")
    assert len(configs) == 8 and configs["n_runs"].sum() == 9
    assert "n400 bs8 ep2/4" in set(configs["label"])  # the ASHA-stopped trial, at its epochs_run


def test_build_report_of_an_older_sweep_on_another_cost_axis(store, tmp_path):
    path = aggregate.build_report("pdf_grid", "s1", cost="wall_time_s", out_dir=tmp_path,
                                  tracking_uri=store.uri, log_to_parent=False)
    front = pd.read_csv(tmp_path / "frontier.csv")
    assert sorted(front[front["scope"] == "all"]["test_accuracy"]) == [0.70]
    assert "(cost: `wall_time_s`)" in path.read_text()
    assert MlflowClient(store.uri).list_artifacts(store.parents["s1"]) == []


def test_the_audit_comes_from_the_runs_dataset_path(store):
    runs = pd.DataFrame({"dataset_path": [str(store.dataset), "/nowhere"], "dataset_size": [100, 400]})
    assert aggregate.dataset_audit(runs)["bayes_accuracy_ceiling"] == 0.9375
    assert aggregate.dataset_audit(runs.drop(columns="dataset_path")) is None
    assert aggregate.dataset_audit(runs.iloc[1:]) is None


BAD_INPUTS = {
    "unknown experiment": (["--experiment", "nope"], "unknown experiment 'nope'"),
    "unknown sweep id": (["--experiment", "pdf_grid", "--sweep-id", "s9"], "unknown sweep id 's9'"),
    "no finished runs": (["--experiment", "pdf_grid", "--sweep-id", "s0"], "has no finished runs (2 failed)"),
    "experiment without sweeps": (["--experiment", "empty"], "has no sweep"),
    "unknown cost": (["--experiment", "pdf_grid", "--cost", "flops"], "unknown cost metric 'flops' (valid: "),
    "cost that is 0 on CPU": (["--experiment", "pdf_grid", "--cost", "gpu_seconds"], "try --cost train_macs"),
    "target 0": (["--experiment", "pdf_grid", "--target-accuracy", "0"], "must be in (0, 1]"),
    "target above 1": (["--experiment", "pdf_grid", "--target-accuracy", "1.5"], "must be in (0, 1]"),
    "target not a number": (["--experiment", "pdf_grid", "--target-accuracy", "high"], "--target-accuracy"),
    "out is a file": (["--experiment", "pdf_grid", "--out", "{file}"], "is not a folder"),
    "no such store": (["--experiment", "pdf_grid", "--uri", "missing"], "no MLflow store at"),
    "amortise over 0 uses": (["--experiment", "pdf_grid", "--amortize-pretraining", "0"],
                             "--amortize-pretraining: must be a positive integer, got 0"),
    "amortise over half a use": (["--experiment", "pdf_grid", "--amortize-pretraining", "0.5"],
                                 "--amortize-pretraining: must be an integer"),
    "amortise seconds": (["--experiment", "pdf_grid", "--cost", "wall_time_s", "--amortize-pretraining", "3"],
                         "needs --cost train_macs, got --cost wall_time_s"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, store, tmp_path, monkeypatch, capsys):
    args, expected = BAD_INPUTS[case]
    file = tmp_path / "a_file"
    file.write_text("x")
    uri = store.uri
    if "--uri" in args:
        args, uri = args[:-2], f"sqlite:///{tmp_path}/missing.db"
    args = [a.replace("{file}", str(file)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    try:
        code = cli.main(["frontier", *args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no report, no new mlflow.db


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(store, tmp_path):
    done = xfer("frontier", "--experiment", "pdf_grid", "--sweep-id", "s0", "--out", str(tmp_path / "out"),
                uri=store.uri, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "xfer frontier: error: sweep 's0' in experiment 'pdf_grid' has no finished runs (2 failed)"]
    assert not (tmp_path / "out").exists()


def test_build_report_pairs_the_logged_test_predictions_and_names_the_scheduler(store, tmp_path):
    """The older sweep s1 (scratch 0.40, pretrained 0.70 at n100) gains what the trainer now logs:
    test_predictions.json per run and the parent's scheduler params."""
    client = MlflowClient(store.uri)
    client.log_param(store.parents["s1"], "scheduler", "asha")
    client.log_param(store.parents["s1"], "scheduler_detail", "rungs per dataset size and init")
    for logged in store.runs["s1"]:
        right = round(logged["test_accuracy"] * 10)
        folder = tmp_path / logged["run_id"]
        folder.mkdir()
        (folder / "test_predictions.json").write_text(json.dumps(
            {"test_set_sha256": "abc", "labels": [1] * 10, "predicted": [1] * right + [0] * (10 - right)}))
        client.log_artifact(logged["run_id"], str(folder / "test_predictions.json"))
    path = aggregate.build_report("pdf_grid", "s1", out_dir=tmp_path / "out", tracking_uri=store.uri,
                                  log_to_parent=False, amortize_pretraining=3)
    text = path.read_text()
    assert "- Scheduler: `asha` (rungs per dataset size and init)." in text
    gains = pd.read_csv(tmp_path / "out" / "pretraining_gain.csv")
    # pretrained right on 7 of 10, scratch on 4, scratch's 4 among pretrained's 7: a_only 3,
    # b_only 0; exact McNemar p = 2 / 2^3
    assert gains["method"].tolist() == ["paired: exact McNemar"]
    assert gains["gain"].tolist() == pytest.approx([0.3]) and gains["p_value"].tolist() == pytest.approx([0.25])
    assert gains["verdict"].tolist() == ["no detectable difference"]
    assert "(cost: `train_macs_amortized`)" in text and "pretrain_macs / 3" in text
