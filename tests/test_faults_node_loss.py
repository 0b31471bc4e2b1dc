"""Issue 8, a worker node lost mid-trial: the trial is retried from its last epoch checkpoint on
a surviving node, and MLflow still holds exactly one run per trial with every epoch once.

A real multi-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``, started in the test
process): a head with 0 CPUs, so every trial runs on a worker node, and one 1-CPU worker. The
sweep's driver joins it as a subprocess with RAY_ADDRESS, as a driver on a cluster's head
would. Mid-trial the worker node is killed (its raylet and agents, SIGKILL; its worker
processes die with it) and a replacement node joins. All nodes share this machine's
filesystem, so the local --storage is reachable from every node, as S3 would be on a cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, kill_group, kill_naming, pids_naming, sweep_env, warm_runner

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s")
SMOKE_TRIALS = 8


def _children(pid: int) -> list[int]:
    """Every descendant of pid (a raylet's trial workers are its children)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _lose_node(cluster, node) -> None:
    """The node disappears at once, as a machine that loses power: SIGKILL its raylet and every
    process it started (the trial's worker first), then let the cluster reap its agents."""
    import ray._private.ray_constants as ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    for pid in [*_children(raylet), raylet]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.remove_node(node, allow_graceful=False)


@pytest.fixture
def ray_cluster(monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node on 127.0.0.1
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # trials must get it from the driver
    from ray.cluster_utils import Cluster

    # Ray's socket paths must stay under 108 bytes: a short private temp dir, which also names
    # every process of this cluster for the teardown.
    temp_dir = tempfile.mkdtemp(prefix="xn", dir="/tmp")
    node_args = {"temp_dir": temp_dir, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
            **node_args, "num_cpus": 0,
            # a dead node is declared dead after ~3 missed 1 s health checks, not ~15 s
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3,
                               "health_check_timeout_ms": 1000}})
        worker = cluster.add_node(num_cpus=1, **node_args)
        cluster.wait_for_nodes()
        yield cluster, worker, node_args
    finally:
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception as exc:  # noqa: BLE001 - the sweep above failed; kill what is left
                print(f"cluster.shutdown: {exc!r}")
        kill_naming(temp_dir)
        time.sleep(1)
        left = pids_naming(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes survived the teardown: {left}"


def test_the_driver_passes_the_tracking_uri_to_trials_when_it_joins_a_cluster(monkeypatch):
    """Outside `ray job submit` (plain RAY_ADDRESS) nothing else would give trials on other
    nodes MLFLOW_TRACKING_URI; inside a job, the job's own env vars must not be set twice
    (Ray refuses a ray.init runtime env that repeats one)."""
    import json

    import ray

    from xfer.sweep import tune_run

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"}
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    tune_run._start_ray(False, env)
    assert calls[-1]["runtime_env"] == {"env_vars": env}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"env_vars": env}}))
    tune_run._start_ray(False, env)
    assert calls[-1]["runtime_env"] is None
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "."}}))
    tune_run._start_ray(False, env)
    assert calls[-1]["runtime_env"] == {"env_vars": env}
    # Ray logs runtime envs on every node: a basic-auth password never goes in one
    assert tune_run._trial_env("https://driver:s3cret@mlflow.internal/") == {
        "MLFLOW_TRACKING_URI": "https://mlflow.internal/"}
    assert tune_run._trial_env("sqlite:///mlflow.db") == {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    # the test hooks the driver was given reach trials on other nodes too
    monkeypatch.setenv("XFER_INJECT_FAULT", "n96-bs16-ep3@2*1")
    monkeypatch.setenv("XFER_INJECT_STALL", "epoch@2.5")
    assert tune_run._trial_env("sqlite:///mlflow.db") == {
        "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "XFER_INJECT_FAULT": "n96-bs16-ep3@2*1",
        "XFER_INJECT_STALL": "epoch@2.5"}


def _epochs(log: str, trial: str) -> list[int]:
    return [int(e) for e in re.findall(rf"\[{re.escape(trial)}\] epoch (\d+)/", log)]


@pytest.mark.faults
@pytest.mark.slow
def test_a_worker_node_lost_mid_trial_is_retried_from_its_checkpoint_and_logged_once(
        ray_cluster, tmp_path, shared_cache):
    # Measured on the shared 2-core machine: 40-60 s (cluster start ~10 s, sweep ~35 s).
    cluster, worker, node_args = ray_cluster
    env = {**sweep_env(tmp_path), "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "sweep.log"
    # fifo: every trial runs its whole budget, so a 3-epoch trial has epochs left to lose
    cmd = [sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--preset", "smoke",
           "--scheduler", "fifo", "--storage", str(tmp_path / "runs"), "--cache-dir", str(shared_cache)]
    # forked warm (conftest.warm_runner); its output to a file, not a pipe nobody drains
    process = warm_runner().start(cmd, cwd=tmp_path, env=env, stdout=log_path, stderr=log_path,
                                  new_session=True)
    try:
        # The victim: the first 3-epoch trial on 96 images (the slowest epochs) to report epoch 1.
        deadline, victim = time.monotonic() + 300, None
        while victim is None and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-4000:]
            found = re.search(r"\[(\S+-n96-\S+-ep3)\] epoch 1/3", log_path.read_text())
            victim = found[1] if found else None
            time.sleep(0.02)
        assert victim, log_path.read_text()[-4000:]
        killed_at = len(log_path.read_text())
        _lose_node(cluster, worker)
        print(f"killed the worker node while {victim} ran")
        time.sleep(2)
        cluster.add_node(num_cpus=1, **node_args)  # the replacement, as an autoscaler would add
        process.wait(timeout=420)
    finally:
        kill_group(process)
    output = log_path.read_text()
    assert process.returncode == 0, output[-5000:]
    assert "8 trials finished, 0 failed" in output, output[-5000:]
    assert f"[{victim}] done" not in output[:killed_at], f"{victim} finished before the node died"

    # Tune saw the node loss as the victim's failure (one result per epoch), and retried it.
    failures = list(re.finditer(r"Trial \S+ errored after (\d+) iterations", output))
    assert len(failures) == 1, output[-5000:]
    reported = int(failures[0][1])  # epochs the lost attempt reported, each with its checkpoint
    retry = _epochs(output[failures[0].end():], victim)
    assert retry and retry == list(range(reported + 1, 4)), (reported, retry)
    print(f"{victim}: the node died in epoch {reported + 1}/3 after {reported} reported epoch(s); "
          f"the retry restored the epoch-{reported} checkpoint on the new node and trained epochs "
          f"{retry[0]}..3. Epochs redone: 1 (epoch {reported + 1}: in progress, or done but not yet "
          "reported, when the node died); reported epochs redone: 0")
    assert _epochs(output, victim) == [1, 2, 3][:reported] + retry  # each epoch reported once

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pdf_grid")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == SMOKE_TRIALS
    assert Counter(c.data.tags["xfer.trial_id"] for c in children).most_common(1)[0][1] == 1
    for child in children:
        assert child.info.status == "FINISHED", (child.info.run_name, child.info.status)
        epochs_run = int(child.data.metrics["epochs_run"])
        assert epochs_run == int(child.data.params["epochs"])  # fifo: the whole budget
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert steps == list(range(1, epochs_run + 1)), (child.info.run_name, key, steps)
    victim_run = next(c for c in children if c.info.run_name == victim)
    assert victim_run.data.metrics["epochs_run"] == 3
