"""`xfer frontier` as a user runs it, against a real MLflow store laid out as the sweeps log it,
and `xfer.aggregate.build_report` as the sweep scripts call it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from test_tracking_runs import MACS_PER_IMAGE, build_store  # one store layout for both modules
from xfer import aggregate, cli, report


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("mlflow"))


def xfer(*args: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-m", "xfer.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_frontier_command_end_to_end_writes_the_report_and_logs_it_on_the_parent(store, tmp_path):
    out = tmp_path / "report"
    done = xfer("frontier", "--experiment", "pdf_grid", "--target-accuracy", "0.9", "--out", str(out),
                "--log-to-parent", uri=store.uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"report: {out / 'report.md'}")
    assert "scratch never reaches 90%" in done.stdout
    assert done.stderr == ""  # no MLflow progress bars or warnings
    written = {p.name for p in out.iterdir()}
    # no run logged a ROC curve or embeddings, so those two sections and figures stay out
    assert written == set(report.FILE_NAMES) - {"roc_curves.png", "embeddings.png"}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    logged = {a.path for a in MlflowClient(store.uri).list_artifacts(store.parents["s2"])}
    assert logged == written
    text = (out / "report.md").read_text()
    assert text.startswith("# pdf_grid: sweep s2")
    # the real numbers of the logged runs: pretrained's cheapest 90% is n400 bs4 (0.92; bs8's 0.90
    # costs the same train_macs, so the more accurate wins), the 2-seed scratch mean is 0.575
    assert f"pretrained reaches 90% at train_macs {3 * MACS_PER_IMAGE * 320 * 4:.3g}" in text
    assert "(resnet18-pretrained-all-n400-bs4-ep4)" in text
    assert "0.575 ± 0.035 over 2 seeds" in text
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


def test_bad_input_in_a_real_process_has_no_traceback(store, tmp_path):
    done = xfer("frontier", "--experiment", "pdf_grid", "--sweep-id", "s0", "--out", str(tmp_path / "out"),
                uri=store.uri, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "xfer frontier: error: sweep 's0' in experiment 'pdf_grid' has no finished runs (2 failed)"]
    assert not (tmp_path / "out").exists()
