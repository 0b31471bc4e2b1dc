"""The production topology on one machine (issue 7): `ray job submit` of the smoke sweep to a
two-node Ray cluster (one network namespace per node, token auth), tracking to an MLflow server
on PostgreSQL with artifacts proxied into S3 (moto's server), checkpoints in the same bucket.

Everything is started and torn down by infra/local/topology.py, the same code a developer runs
by hand (`infra/local/topology.py up|status|down`). Needs root and `ip netns`; skipped without.
Wall time on the 2-core dev machine, with other test suites running at the same time: 102 s
and 130 s measured (topology up ~45 s, the job ~45-60 s, teardown ~10 s).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, load_topology

pytestmark = pytest.mark.slow

topology = load_topology()

RAY = str(Path(sys.executable).with_name("ray"))
JOB_TIMEOUT_S = 420
TRIALS = 8  # the smoke preset's grid: init 2 x epochs 2 x dataset_size 2


@pytest.fixture
def topo():
    reason = topology.unavailable_reason()
    if reason:
        pytest.skip(f"multi-host topology: {reason}")
    state_dir = tempfile.mkdtemp(prefix="xt", dir="/tmp")  # short: Ray's unix socket paths
    try:
        yield topology.up(state_dir, nodes=2)
    finally:
        recorded = topology.Topology.load(state_dir)  # None when a failed `up` cleaned up itself
        problems = topology.down(state_dir)
        if not problems:
            shutil.rmtree(state_dir, ignore_errors=True)
        assert not problems, problems
        if recorded is not None:
            assert not set(recorded.namespaces) & set(topology.netns_list()), "namespaces left"
            assert not topology.leftovers(recorded)


def _bucket_keys(topo) -> list[str]:
    credentials = topo.aws_credentials()
    client = boto3.client("s3", endpoint_url=topo.s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=topology.BUCKET)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def test_smoke_sweep_runs_on_two_ray_nodes_with_mlflow_on_postgres_and_s3(topo, shared_cache):
    # Nothing started in the host namespace listens beyond the test's own bridge address.
    host = topology.host_pids(topo)
    assert host and not topology.wildcard_listeners(host)
    assert {addr for pid in host for addr, _ in topology.listening_sockets(pid)} == {topo.host_ip}
    status = "\n".join(topology.status(topo))
    assert "Ray nodes alive: 2 of 2" in status, status

    env = topo.ray_cli_env()
    token = subprocess.run([RAY, "get-auth-token"], env=env, capture_output=True, text=True,
                           timeout=60).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token), "no Ray auth token"
    job_env = dict(env, RAY_AUTH_TOKEN=token)  # as the README does: $(ray get-auth-token)
    submission = f"xfer-topology-{topo.run_id}"
    storage = f"s3://{topology.BUCKET}/runs"
    submit = topo.submit_command(["sweeps/pdf_grid.py", "--preset", "smoke", "--storage", storage,
                                  "--cache-dir", str(shared_cache)], submission_id=submission)
    try:
        done = subprocess.run(submit, cwd=REPO, env=job_env, capture_output=True, text=True,
                              timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logs = subprocess.run([RAY, "job", "logs", "--address", topo.dashboard_url, submission],
                              env=job_env, capture_output=True, text=True, timeout=60)
        pytest.fail(f"job still running after {JOB_TIMEOUT_S} s; its log:\n{logs.stdout[-4000:]}")
    output = done.stdout + done.stderr
    assert done.returncode == 0 and f"Job '{submission}' succeeded" in output, output[-5000:]
    # the study script has no sys.path line: the job imported xfer from the working dir Ray
    # shipped, not from the checkout the nodes' environment was installed from
    code = re.search(r"code: xfer from (\S+)", output)
    assert code and "working_dir_files" in code.group(1) and not code.group(1).startswith(str(REPO)), output[-5000:]
    job_status = subprocess.run([RAY, "job", "status", "--address", topo.dashboard_url, submission],
                                env=job_env, capture_output=True, text=True, timeout=60)
    assert "succeeded" in (job_status.stdout + job_status.stderr).lower()

    client = MlflowClient(topo.tracking_uri)
    experiment = client.get_experiment_by_name("pdf_grid")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    assert len(parents) == 1 and len(children) == TRIALS
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}

    # (1) trials ran on both Ray nodes: each child run names the node of its latest epoch
    nodes = {c.data.tags.get("xfer.node_ip") for c in children}
    assert nodes <= set(topo.node_ips) and len(nodes) >= 2, nodes

    # (2) every child run's artifacts are on the tracking server, and the server put them in S3
    keys = set(_bucket_keys(topo))

    def s3_prefix(run) -> str:  # mlflow-artifacts:/<exp>/<run>/artifacts -> mlflow/<exp>/<run>/artifacts/
        uri = run.info.artifact_uri
        assert uri.startswith("mlflow-artifacts:/"), uri  # proxied through the server
        return f"mlflow/{uri[len('mlflow-artifacts:/'):].strip('/')}/"

    for child in children:
        listed = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"confusion_matrix.json", "confusion_matrix.png"} <= listed, listed
        for name in ("confusion_matrix.json", "confusion_matrix.png"):
            assert s3_prefix(child) + name in keys, (child.info.run_name, name)

    # (3) every trial checkpointed into the bucket under the sweep's storage prefix
    sweep_id = parent.data.tags["xfer.sweep_id"]
    pattern = re.compile(rf"runs/pdf_grid/{re.escape(sweep_id)}/([^/]+)/checkpoint_\d+/trial_state\.pt")
    checkpointed = {m.group(1) for k in keys if (m := pattern.fullmatch(k))}
    assert checkpointed == {c.data.tags["xfer.trial_id"] for c in children}, checkpointed
    assert f"runs/pdf_grid/{sweep_id}/xfer_sweep.json" in keys

    # (4) the frontier report is attached to the parent run, and so in the bucket
    listed = {a.path for a in client.list_artifacts(parent.info.run_id)}
    for name in ("report.md", "frontier.png", "frontier.csv"):
        assert name in listed and s3_prefix(parent) + name in keys, name

    # The tracking server's backend really is the PostgreSQL database made for this run.
    conn = topology.pg_connect(topo.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s",
                        (int(experiment.experiment_id),))
            assert cur.fetchone()[0] == TRIALS + 1
    finally:
        conn.close()

    # The S3 secret lives in its credentials file only: not in MLflow params or tags, not in the
    # job's output, not in any log or file of Ray (either node), MLflow or moto.
    secret = topo.aws_credentials()["AWS_SECRET_ACCESS_KEY"]
    for run in runs:
        assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if secret in v]
    assert secret not in output
    assert _files_containing(Path(topo.state_dir), secret) == [topo.credentials_file]
