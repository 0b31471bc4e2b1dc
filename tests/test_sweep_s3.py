"""Sweep storage on S3: a real S3-compatible HTTP endpoint (moto's server) on loopback,
reached through AWS_ENDPOINT_URL, as a MinIO or AWS bucket would be."""

from __future__ import annotations

import socket

import boto3
import pytest

from conftest import run_sweep, sweep_env

pytestmark = pytest.mark.slow

BUCKET = "xfer-sweeps"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test-key", aws_secret_access_key="test-secret")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint, client
    finally:
        server.stop()


def _keys(client) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_a_sweep_keeps_its_state_and_checkpoints_in_s3(s3_endpoint, tmp_path, shared_cache):
    endpoint, client = s3_endpoint
    env = {**sweep_env(tmp_path), **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    storage = f"s3://{BUCKET}/sweeps"
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--storage", storage, "--no-report",
                                     "--max-concurrent", "1"],
                     tmp_path, shared_cache, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    keys = _keys(client)
    sweep_files = [k for k in keys if k.endswith("/xfer_sweep.json")]
    assert len(sweep_files) == 1 and sweep_files[0].startswith("sweeps/pdf_grid/")
    checkpoints = {k.split("/")[3] for k in keys if k.endswith("/trial_state.pt")}
    assert len(checkpoints) == 8  # every trial checkpointed into the bucket
    assert not (tmp_path / "runs").exists()  # nothing went to local storage

    # --resume lists sweeps in the bucket: the one there finished, so nothing to resume
    again = run_sweep("pdf_grid.py", ["--preset", "smoke", "--storage", storage, "--resume"],
                      tmp_path, shared_cache, env=env)
    assert again.returncode == 2 and "no interrupted sweep" in again.stderr
