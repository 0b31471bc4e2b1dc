"""Epoch milestones: one E-epoch run also reports its result as of epochs m < E, and that
result IS the m-epoch run's (on CPU, where fit is bit-reproducible, exactly equal), for every
schedule that ignores the budget; a budget-dependent schedule is refused."""

import io
import json
import re
from dataclasses import replace

import pytest
import torch

from xfer.cli import main
from xfer.errors import UsageError
from xfer.train import MILESTONE_KEYS, TrialConfig, fit
from test_train import shuffled_val

# Timings differ between any two runs; everything else of a milestone must match exactly.
TIMED = ("wall_time_s", "train_time_s", "gpu_seconds")


@pytest.fixture
def config(blobs):
    return TrialConfig(data=str(blobs), model="resnet10", epochs=4, batch_size=16, lr=0.05,
                       device="cpu")


def untimed(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in TIMED}


def as_milestone(result: dict) -> dict:
    """A whole run's result cut to what a milestone keeps, through the same JSON types."""
    return untimed(json.loads(json.dumps({k: result[k] for k in MILESTONE_KEYS})))


@pytest.mark.parametrize("schedule", [
    {"schedule": "constant"},
    {"schedule": "exp_decay", "lr_constant_epochs": 1, "lr_decay_rate": 0.7},
    {"schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5},
])
@pytest.mark.slow  # over 4 s of CPU
def test_each_milestone_is_the_run_with_that_budget(config, schedule):
    config = replace(config, **schedule)
    data = shuffled_val(config.data) if schedule["schedule"] == "plateau" else None  # lr cuts
    long = fit(replace(config, epoch_milestones=(1, 3)), lambda m: None, data=data)
    assert sorted(long["milestones"]) == ["1", "3"]
    for m in (1, 3):
        alone = fit(replace(config, epochs=m), lambda m: None, data=data)
        assert untimed(long["milestones"][str(m)]) == as_milestone(alone)
        entry = long["milestones"][str(m)]
        assert entry["epochs_run"] == m and entry["train_time_s"] <= long["train_time_s"]
    if schedule["schedule"] == "plateau":  # the schedule did act before the last milestone
        assert [h["lr"] for h in long["history"]][:3] != [0.05] * 3
    # the full run itself is unchanged by keeping milestones
    plain = fit(config, lambda m: None, data=data)
    assert {k: v for k, v in untimed(long).items() if k not in ("milestones", "config", "history", "git_sha")} == \
        {k: v for k, v in untimed(plain).items() if k not in ("milestones", "config", "history", "git_sha")}
    assert plain["milestones"] == {}


@pytest.mark.slow  # over 4 s of CPU
def test_an_early_stop_before_a_milestone_is_that_milestones_result(config):
    data = shuffled_val(config.data)  # val_loss rises: early stopping fires within a few epochs
    config = replace(config, epochs=15, early_stopping_patience=2)
    long = fit(replace(config, epoch_milestones=(2, 12)), lambda m: None, data=data)
    stopped_at = long["epochs_run"]
    assert 3 <= stopped_at < 12
    alone = fit(replace(config, epochs=12), lambda m: None, data=data)  # stops at the same epoch
    assert alone["epochs_run"] == stopped_at
    assert untimed(long["milestones"]["12"]) == as_milestone(alone)
    assert untimed(long["milestones"]["2"]) == as_milestone(fit(replace(config, epochs=2), lambda m: None,
                                                                data=data))


@pytest.mark.slow  # over 4 s of CPU
def test_milestones_survive_a_kill_and_resume(config):
    config = replace(config, epoch_milestones=(1, 3))
    states = []

    class Killed(Exception):
        pass

    def report(metrics):
        if metrics["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(config, report, checkpoint=states.append)
    buffer = io.BytesIO()
    torch.save(states[-1], buffer)  # a checkpoint must load back with weights_only=True
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert list(state["progress"]["milestones"]) == ["1"]
    resumed = fit(config, lambda m: None, resume=state)
    whole = fit(config, lambda m: None)
    assert {m: untimed(e) for m, e in resumed["milestones"].items()} == \
        {m: untimed(e) for m, e in whole["milestones"].items()}


@pytest.mark.slow  # over 4 s of CPU
def test_sweep_reports_carry_the_milestones_reached_so_far(config):
    reports = []
    fit(replace(config, epoch_milestones=(1, 3), report_test_each_epoch=True), reports.append)
    assert [sorted(r["milestones"]) for r in reports] == [["1"], ["1"], ["1", "3"], ["1", "3"]]
    # the milestone is the epoch's own report, test metrics and all
    assert reports[0]["milestones"]["1"]["test_accuracy"] == reports[0]["test_accuracy"]
    assert reports[2]["milestones"]["3"]["confusion_matrix"] == reports[2]["confusion_matrix"]


@pytest.mark.parametrize("changes, message", [
    ({"epoch_milestones": (1, 2), "schedule": "cosine"}, "depends on the 4-epoch budget"),
    ({"epoch_milestones": (2, 1)}, r"must increase, each in 1\.\.3"),
    ({"epoch_milestones": (1, 1)}, "must increase"),
    ({"epoch_milestones": (4,)}, r"each in 1\.\.3 \(below epochs 4\)"),
    ({"epoch_milestones": (0,)}, "must increase"),
    ({"epoch_milestones": (1.5,)}, "list of whole epochs"),
    ({"epoch_milestones": "10,20"}, "list of whole epochs"),
    ({"epoch_milestones": (2,), "embeddings": "tsne"}, "embeddings are computed after the last epoch"),
])
def test_milestones_that_would_not_be_those_runs_are_refused(config, changes, message):
    with pytest.raises(UsageError, match=message):
        replace(config, **changes).validate()


@pytest.mark.slow  # over 3 s of CPU
def test_train_command_prints_and_writes_the_milestones(blobs, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["train", "--data", str(blobs), "--model", "resnet10", "--init", "scratch",
                 "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--device", "cpu",
                 "--epoch-milestones", "1,2", "--json-out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert re.findall(r"^milestone epoch (\d+): test_accuracy [01]\.\d{4} \(95% CI [01]\.\d{3}-[01]\.\d{3}\)"
                      r"  epochs_run (\d+)", stdout,
                      flags=re.M) == [("1", "1"), ("2", "2")]
    result = json.loads(out.read_text())
    assert sorted(result["milestones"]) == ["1", "2"]
    assert result["config"]["epoch_milestones"] == [1, 2]


# --- the sweep: --epoch-milestones through Ray Tune and MLflow --------------------------------

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.mark.slow
def test_sweep_logs_each_milestone_as_the_shorter_trials_run(tmp_path, shared_cache, s3_endpoint):
    """The smoke grid's epochs axis {1, 3} folded: 4 trials of 3 epochs, each also logged as
    its 1-epoch run, so the store holds all 8 configurations of the unfolded grid.

    The sweep keeps its state and checkpoints in S3: a real S3-compatible endpoint (moto's
    server) on loopback, reached through AWS_ENDPOINT_URL as a MinIO or AWS bucket would be.
    (One sweep for both: each is a minute of Ray, MLflow and training on the 2-core machine.)"""
    import boto3
    from mlflow.tracking import MlflowClient

    from conftest import run_sweep, sweep_env

    bucket = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    bucket.create_bucket(Bucket="xfer-sweeps")
    env = {**sweep_env(tmp_path), **S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    storage = "s3://xfer-sweeps/sweeps"
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--epoch-milestones", "--scheduler", "fifo",
                                     "--max-concurrent", "1", "--storage", storage],
                     tmp_path, shared_cache, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    keys = [item["Key"] for page in bucket.get_paginator("list_objects_v2").paginate(Bucket="xfer-sweeps")
            for item in page.get("Contents", [])]
    sweep_files = [k for k in keys if k.endswith("/xfer_sweep.json")]
    assert len(sweep_files) == 1 and sweep_files[0].startswith("sweeps/pdf_grid/")
    checkpoints = {k.split("/")[3] for k in keys if k.endswith("/trial_state.pt")}
    assert len(checkpoints) == 4  # every trial checkpointed into the bucket
    assert not (tmp_path / "runs").exists()  # nothing went to local storage
    # --resume lists sweeps in the bucket: the one there finished, so nothing to resume
    again = run_sweep("pdf_grid.py", ["--preset", "smoke", "--epoch-milestones", "--storage", storage,
                                      "--resume"], tmp_path, shared_cache, env=env)
    assert again.returncode == 2 and "no interrupted sweep" in again.stderr, again.stderr[-3000:]

    assert "plan: preset smoke: 4 trials" in done.stdout
    assert "logged as its 1-epoch run: 8 configurations from 4 trials" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pdf_grid").experiment_id], max_results=100)
    trials = {r.data.tags["xfer.trial_id"]: r for r in runs if r.data.tags.get("xfer.role") == "trial"}
    milestones = [r for r in runs if r.data.tags.get("xfer.role") == "milestone"]
    assert len(trials) == 4 and len(milestones) == 4
    assert {r.info.run_name for r in milestones} == {
        f"resnet10-{init}-all-n{n}-bs16-ep1" for init in ("scratch", "pretrained") for n in (48, 96)}
    parent = next(r for r in runs if r.data.tags.get("xfer.role") == "parent").info.run_id
    for run in milestones:
        trial = trials[run.data.tags["xfer.milestone_of"]]  # each points at a real trial, once
        assert trial.data.tags["xfer.epoch_milestones"] == "1"
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.params["epochs"] == "1" and trial.data.params["epochs"] == "3"
        same = {k: v for k, v in run.data.params.items() if k != "epochs"}
        assert same == {k: v for k, v in trial.data.params.items() if k != "epochs"}
        assert run.data.metrics["epochs_run"] == 1 and trial.data.metrics["epochs_run"] == 3
        assert run.data.metrics["train_macs"] * 3 == trial.data.metrics["train_macs"]
        assert run.data.metrics["wall_time_s"] < trial.data.metrics["wall_time_s"]
        # its epoch is the trial's epoch 1, logged once
        mine = client.get_metric_history(run.info.run_id, "val_accuracy")
        theirs = client.get_metric_history(trial.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in mine] == [(1, theirs[0].value)] and theirs[0].step == 1
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.json", "confusion_matrix.png", "roc_curve.json"} <= artifacts
    reports = list(tmp_path.glob("xfer_reports/*/report.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    assert "8 runs finished" in text and "4 runs of these are epoch milestones" in text


def test_a_preset_folds_its_epochs_axis_into_the_longest_budget():
    from xfer.sweep.study import Preset

    preset = Preset(space={"epochs": [20, 10, 50], "batch_size": [4, 8]}, fixed={"lr": 0.01})
    folded = preset.with_epoch_milestones("seed")
    assert folded.space == {"epochs": [50], "batch_size": [4, 8]}
    assert folded.fixed == {"lr": 0.01, "epoch_milestones": [10, 20]}
    assert [t["epochs"] for t in folded.trials()] == [50, 50]
    with pytest.raises(UsageError, match="preset one does not sweep epochs"):
        Preset(space={"epochs": [10]}).with_epoch_milestones("one")


def test_the_trials_of_a_folded_cosine_preset_fail_validation(blobs):
    """The driver validates every trial's config like this before planning, so a sweep of such
    a preset with --epoch-milestones stops there with this one line."""
    from xfer.sweep.study import Preset

    folded = Preset(space={"epochs": [2, 4]}, fixed={"model": "resnet10", "batch_size": 16,
                                                      "schedule": "cosine"}).with_epoch_milestones("p")
    for trial in folded.trials():
        values = {k: v for k, v in trial.items() if k != "dataset_size"}
        with pytest.raises(UsageError, match="schedule 'cosine'"):
            TrialConfig(data=str(blobs), **values).validate()
