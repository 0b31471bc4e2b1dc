"""No parent run is ever left RUNNING by a failed sweep (issue 17). Interrupted sweeps are
tests/test_interrupts.py's; here, on one MLflow store: a sweep whose every trial fails, and
sweeps that fail their checks before anything starts (those must not create a run at all).
"""

from __future__ import annotations

import pytest

from conftest import run_sweep, sweep_env, sweep_store

pytestmark = pytest.mark.slow


def test_failed_sweeps_leave_no_run_running(tmp_path, shared_cache):
    env = sweep_env(tmp_path)
    # 1. before anything starts: an experiment name that would be a path, a closed S3 endpoint
    bad_name = run_sweep("pdf_grid.py", ["--smoke-test", "--experiment", "../escape"], tmp_path,
                         shared_cache, env=env)
    assert bad_name.returncode == 2 and len(bad_name.stderr.strip().splitlines()) == 1
    closed_s3 = run_sweep("pdf_grid.py", ["--smoke-test", "--storage", "s3://bucket/runs"], tmp_path,
                          shared_cache, env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                                             "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                                             "AWS_DEFAULT_REGION": "us-east-1"})
    assert closed_s3.returncode == 1 and "Traceback" not in closed_s3.stderr, closed_s3.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists()  # no run, no store: nothing was started

    # 2. after the parent exists: every trial fails (a simulated CUDA out-of-memory), no retry
    faults = {**env, "XFER_INJECT_FAULT": "resnet10@1", "XFER_INJECT_FAULT_DIR": str(tmp_path / "faults")}
    failed = run_sweep("pdf_grid.py", ["--smoke-test", "--max-failures", "0", "--no-report"],
                       tmp_path, shared_cache, env=faults)
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    # the driver ends the sweep itself (Ray prints each failed trial's traceback on stderr; the
    # runs keep its last line as xfer.error)
    assert "0 trials finished, 8 failed" in failed.stdout, failed.stdout[-3000:]

    client, experiment_id, parent, children = sweep_store(tmp_path)
    every_run = client.search_runs([experiment_id], max_results=1000)
    assert [r.info.status for r in every_run if r.info.status == "RUNNING"] == []
    assert parent.info.status == "FAILED"
    assert len(children) == 8 and {c.info.status for c in children} == {"FAILED"}
    assert all("injected fault" in c.data.tags["xfer.error"] for c in children)
