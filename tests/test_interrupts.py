"""Ctrl-C and SIGTERM stop a sweep resumably (issue 17, ``xfer.sweep.interrupts``).

One store, one chain of real driver processes (a sweep costs ~1 min here, so the cases share
it): SIGTERM during start-up, then ``--resume`` and SIGINT after the first trial epoch, then
``--resume`` and two SIGINTs (the second during the shutdown), then ``--resume`` to the end.
After each interrupt: one line on stderr naming the command, exit 143 / 130, no process of
the sweep's own Ray left, the parent run and every open child run KILLED with the signal as a
tag, the record interrupted, never finished. At the end: one run per trial, all FINISHED.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, kill_group, pids_naming, sweep_env, sweep_store
from xfer.sweep import interrupts

SMOKE_TRIALS = 8


def test_a_signal_outside_tune_raises_interrupted_with_the_shells_exit_code():
    with interrupts.catching():
        with pytest.raises(interrupts.Interrupted) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs between bytecodes: never reached
    assert raised.value.name == "SIGTERM" and raised.value.exit_code == 143
    assert interrupts.exit_code(signal.SIGINT) == 130
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handle  # handlers restored


def test_a_deferred_block_finishes_before_the_signal_is_raised():
    finished = False
    with interrupts.catching():
        with pytest.raises(interrupts.Interrupted):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
                finished = True
    assert finished


def test_open_child_runs_end_killed_with_the_signal_when_tune_stops(tmp_path):
    """The logger's on_experiment_end on a real SQLite store: the trial Tune stopped mid-way ends
    KILLED and tagged; a finished trial's run is not touched."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from xfer.sweep.mlflow_logger import MlflowSweepLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("interrupts")
    parent = client.create_run(experiment_id).info.run_id
    running, finished = (client.create_run(experiment_id).info.run_id for _ in range(2))
    client.set_terminated(finished, "FINISHED")
    logger = MlflowSweepLogger(uri, experiment_id, parent, "sweep-1", [], echo=lambda line: None,
                               spool_dir=str(tmp_path / "spool"))
    logger.runs.update({"t-running": running, "t-done": finished})
    logger.ended.add("t-done")  # on_trial_complete ended it
    # Tune's stop marks a stopped trial TERMINATED, like a completed one
    trials = [SimpleNamespace(trial_id="t-running", status="TERMINATED"),
              SimpleNamespace(trial_id="t-done", status="TERMINATED"),
              SimpleNamespace(trial_id="t-never", status="PENDING")]
    interrupts._state.received = signal.SIGINT
    try:
        logger.on_experiment_end(trials=trials)
    finally:
        interrupts._state.received = None
    killed = client.get_run(running)
    assert killed.info.status == "KILLED" and killed.data.tags["xfer.interrupted"] == "SIGINT"
    assert client.get_run(finished).info.status == "FINISHED"
    assert "t-running" not in logger.runs  # a restarted trial looks its run up again (reopened)


def _start(cmd, tmp, env, log_name):
    log = open(tmp / log_name, "w")
    process = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    return process, log


def _wait_for(predicate, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _finish(process, log, timeout=120):
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise
    finally:
        log.close()
    return process.returncode, stderr


def _meta(tmp: Path) -> dict:
    [path] = (tmp / "runs").rglob("xfer_sweep.json")
    return json.loads(path.read_text())


def _one_line(stderr: str, name: str) -> str:
    """The interrupt's one line: the last on stderr, the only one from the sweep script, and
    nothing from Tune's own Ctrl-C handling or a traceback (what Ray and MLflow log at start-up,
    every sweep's stderr has, is left aside)."""
    lines = stderr.strip().splitlines()
    ours = [line for line in lines if line.startswith("sweeps/pdf_grid.py:")]
    assert ours == lines[-1:] and name in ours[0] and "--resume" in ours[0], stderr
    for noise in ("Traceback", "KeyboardInterrupt", "Stop signal received", "Trials did not complete",
                  "Tuner.restore"):
        assert noise not in stderr, stderr
    return ours[0]


def _check_interrupted(tmp: Path, ray_tmp: Path, code: int, stderr: str, expected: int, name: str):
    assert code == expected, stderr[-3000:] + (tmp / "sweep.log").read_text()[-3000:]
    _one_line(stderr, name)
    time.sleep(1)
    assert pids_naming(str(ray_tmp)) == [], "the sweep's Ray outlived its driver"
    meta = _meta(tmp)
    assert meta["finished"] is False and meta["state"] in ("interrupted", "running")
    _, _, parent, children = sweep_store(tmp)
    assert parent.info.status == "KILLED" and parent.data.tags["xfer.interrupted"] == name
    assert all(c.info.status != "RUNNING" for c in children), [c.info.status for c in children]
    return children


@pytest.mark.slow
def test_sigterm_and_sigint_stop_a_sweep_that_resume_then_finishes(tmp_path, shared_cache):
    ray_tmp = Path(tempfile.mkdtemp(prefix="xi", dir="/tmp"))  # short: Ray's socket paths are capped
    env = {**sweep_env(tmp_path), "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp)}
    cmd = [sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--preset", "smoke",
           "--scheduler", "fifo", "--max-concurrent", "1", "--progress-interval", "0",
           "--storage", str(tmp_path / "runs"), "--cache-dir", str(shared_cache)]
    log_text = lambda: (tmp_path / "sweep.log").read_text()  # noqa: E731
    try:
        # 1. SIGTERM (a preemption) during start-up: the parent run and the record exist, no
        #    trial has reported yet
        process, log = _start(cmd, tmp_path, env, "sweep.log")
        assert _wait_for(lambda: any((tmp_path / "runs").rglob("xfer_sweep.json")), process)
        os.kill(process.pid, signal.SIGTERM)
        code, stderr = _finish(process, log)
        _check_interrupted(tmp_path, ray_tmp, code, stderr, 143, "SIGTERM")
        assert _meta(tmp_path)["state"] == "interrupted"

        # 2. --resume, then Ctrl-C (SIGINT to the process group, as a terminal sends it) after
        #    the first trial epoch: the running trial's run ends KILLED
        process, log = _start(cmd + ["--resume"], tmp_path, env, "sweep.log")
        assert _wait_for(lambda: "] epoch 1/3" in log_text(), process), log_text()[-3000:]
        os.killpg(process.pid, signal.SIGINT)
        code, stderr = _finish(process, log)
        children = _check_interrupted(tmp_path, ray_tmp, code, stderr, 130, "SIGINT")
        # a smoke epoch takes ~0.1 s: the trial may finish before Tune stops it; one that did
        # not is KILLED (the deterministic check: test_open_child_runs_end_killed_...)
        for child in children:
            assert child.info.status == "FINISHED" or (
                child.info.status == "KILLED" and child.data.tags.get("xfer.interrupted") in ("SIGINT", "SIGTERM"))

        # 3. --resume, Ctrl-C, and Ctrl-C again during the shutdown: exits at once, resumable
        process, log = _start(cmd + ["--resume"], tmp_path, env, "sweep.log")
        assert _wait_for(lambda: log_text().count("] epoch ") >= 1, process), log_text()[-3000:]
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.5)
        second = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        code, stderr = _finish(process, log)
        assert time.monotonic() - second < 10, "the second Ctrl-C did not exit at once"
        assert code == 130 and "second SIGINT" in _one_line(stderr, "SIGINT"), stderr
        time.sleep(1)
        assert pids_naming(str(ray_tmp)) == []
        assert _meta(tmp_path)["finished"] is False

        # 4. --resume to the end: one run per trial, every one FINISHED, the parent too
        done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert _meta(tmp_path)["finished"] is True
        _, _, parent, children = sweep_store(tmp_path)
        trials = [c for c in children if c.data.tags.get("xfer.role") == "trial"]
        assert parent.info.status == "FINISHED"
        assert len(trials) == SMOKE_TRIALS
        assert Counter(c.data.tags["xfer.trial_id"] for c in trials).most_common(1)[0][1] == 1
        assert all(c.info.status == "FINISHED" for c in trials), [c.info.status for c in trials]
    finally:
        for pid in pids_naming(str(ray_tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
