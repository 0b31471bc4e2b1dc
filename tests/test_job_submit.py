"""`ray job submit --working-dir . -- python sweeps/pdf_grid.py --preset smoke` against a real
Ray head started with `ray start --head` on loopback, with Ray 2.60's token auth.

Where the two-node topology can run (root and `ip netns`), tests/test_topology.py submits the
same smoke sweep with the same command to a head and a worker, with token auth and checks far
beyond this one's, so this single-node test is skipped there (it would spend ~40 s of CI on a
subset); it is the job-submit check on machines that cannot build the topology.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, load_topology, pids_naming

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    load_topology().unavailable_reason() is None,
    reason="tests/test_topology.py submits the same sweep to a two-node cluster on this machine")]

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    # Ray's session paths are long; a short temp dir keeps its unix sockets under 108 bytes.
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token")
    # the job's `python` must be this environment's, as on a cluster built from constraints.txt
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    gcs_port, dashboard_port = _free_port(), _free_port()
    start = subprocess.run(
        [RAY, "start", "--head", "--port", str(gcs_port), "--node-ip-address", "127.0.0.1",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
         "--num-cpus", "2", "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        token = subprocess.run([RAY, "get-auth-token"], env=env, capture_output=True, text=True,
                               timeout=60).stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[0-9a-f]{32,}", token), "no Ray auth token"
        yield env, f"http://127.0.0.1:{dashboard_port}", token
    finally:
        pids = pids_naming(temp_dir)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)
        assert not pids_naming(temp_dir), "Ray processes survived the teardown"


def test_ray_job_submit_runs_the_smoke_sweep(ray_head, tmp_path, shared_cache):
    env, address, token = ray_head
    db = tmp_path / "mlflow.db"
    runtime_env = ('{"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///%s", '
                   '"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}}' % db)
    job_env = dict(env, RAY_AUTH_TOKEN=token)
    done = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", ".",
         "--runtime-env-json", runtime_env, "--",
         "python", "sweeps/pdf_grid.py", "--preset", "smoke", "--storage", str(tmp_path / "runs"),
         "--cache-dir", str(shared_cache)],
        cwd=REPO, env=job_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "succeeded" in (done.stdout + done.stderr)
    # no sys.path line in the script: xfer came from the working dir Ray shipped
    code = re.search(r"code: xfer from (\S+)", done.stdout + done.stderr)
    assert code and "working_dir_files" in code.group(1), done.stdout[-4000:]
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("pdf_grid")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    assert len([r for r in runs if r.data.tags.get("xfer.role") == "parent"]) == 1
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children)
