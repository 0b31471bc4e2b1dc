"""Endpoints first, the exit-code contract, no debris (issue 17, items 3, 7 and 8).

A sweep checks its tracking URI, its tracking store and its S3 storage after the options and
before the dataset, the weights or Ray: a malformed URI is exit 2, a store or endpoint that does
not answer (or will not take a write) is exit 1, one line on stderr, in seconds, and nothing is
built, started or written (no plan printed, an empty --cache-dir, no Ray session folder, no
mlflow.db). `xfer frontier` and `xfer train --weights s3://...` follow the same contract. Each
failed check of the issue's debris list leaves nothing behind.

Real processes, loopback only: "does not answer" is a closed port (refused) or a listening
socket that never accepts (silent); the read-only SQLite store is a read-only bind mount in a
private mount namespace (the tests run as root, for whom file modes block nothing), skipped
where mounts are not allowed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, run_xfer, sweep_env, warm_runner

pytestmark = pytest.mark.timeout(180)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections into its backlog and never answers a request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def _env(work: Path, ray_tmp: Path, **extra: str) -> dict:
    env = sweep_env(work)
    for name in [n for n in env if n.startswith("AWS_") or n.startswith("MLFLOW_HTTP")]:
        del env[name]
    closed = f"http://127.0.0.1:{_closed_port()}"  # no network: proxies lead nowhere
    env.update({"RAY_TMPDIR": str(ray_tmp), "TORCH_HOME": str(work / "torch_home"),
                "MLFLOW_DISABLE_TELEMETRY": "true", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": str(work / "none"), "AWS_CONFIG_FILE": str(work / "none"),
                **{k: closed for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
                "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
    env.update(extra)
    return env


def _sweep(work: Path, env: dict, *args: str, wrap: list[str] = ()) -> tuple[subprocess.CompletedProcess, float]:
    argv = [*wrap, sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test",
            "--cache-dir", str(work / "cache"), *args]
    if "--storage" not in args:
        argv += ["--storage", str(work / "runs")]
    started = time.monotonic()
    done = warm_runner().run(argv, timeout=150, cwd=work, env=env)  # forked unless wrapped
    return done, time.monotonic() - started


def _one_line(done: subprocess.CompletedProcess, code: int, *parts: str) -> str:
    assert done.returncode == code, (done.stdout[-2000:], done.stderr[-3000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _started_nothing(work: Path, ray_tmp: Path) -> None:
    assert list((work / "cache").iterdir()) == []  # no dataset, no weights
    assert not (work / "runs").exists()  # no Ray storage, no xfer_sweep.json
    assert list(ray_tmp.iterdir()) == []  # no Ray session was ever started
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()
    assert not (work / "torch_home").exists()


@pytest.fixture
def work(tmp_path):
    (tmp_path / "cache").mkdir()
    return tmp_path


@pytest.fixture
def ray_tmp():
    path = Path(tempfile.mkdtemp(prefix="xfer-ray-"))  # short: Ray's socket paths are capped
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the URI parsed: exit 2 -------------------------------------------------------------------

@pytest.mark.parametrize("uri, part", [
    ("bogus://x", "unknown tracking URI scheme 'bogus'"),
    ("http://", "no host"),
    ("http://127.0.0.1:port", "the port is not a number"),
    ("sqlite://relative.db", "a SQLite URI is sqlite:///"),
    ("sqlite:///a\nb.db", "control characters"),
])
def test_a_malformed_tracking_uri_is_a_usage_error_before_anything_is_contacted(uri, part):
    from xfer.errors import UsageError
    from xfer.tracking.endpoints import check_tracking_uri

    with pytest.raises(UsageError, match=part.replace("(", r"\(")):
        check_tracking_uri(uri)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:////abs/m.db", "http://host:5000",
                                 "https://user:pw@host/path", "databricks", "file:///srv/xfer/mlruns",
                                 "/srv/xfer/mlruns", "postgresql+psycopg2://u@h/db"])
def test_well_formed_tracking_uris_pass(uri):
    from xfer.tracking.endpoints import check_tracking_uri

    assert check_tracking_uri(uri) == uri


@pytest.mark.slow
def test_sweep_with_an_unknown_tracking_scheme_exits_2_before_the_plan(work, ray_tmp):
    done, _ = _sweep(work, _env(work, ray_tmp, MLFLOW_TRACKING_URI="bogus://x"))
    _one_line(done, 2, "unknown tracking URI scheme 'bogus'", "valid: ")
    assert "plan:" not in done.stdout
    _started_nothing(work, ray_tmp)


# --- the store reached and written to: exit 1, in seconds -------------------------------------

@pytest.mark.slow
def test_sweep_with_the_tracking_server_on_a_closed_port_exits_1_in_seconds(work, ray_tmp):
    uri = f"http://127.0.0.1:{_closed_port()}"
    done, seconds = _sweep(work, _env(work, ray_tmp, MLFLOW_TRACKING_URI=uri))
    _one_line(done, 1, f"MLflow at {uri} did not answer", "Connection refused")
    assert "plan:" not in done.stdout
    _started_nothing(work, ray_tmp)
    assert seconds < 60, seconds  # imports included; the probe itself: about 1 s


def test_a_tracking_server_that_never_answers_fails_the_probe_in_bounded_time(silent_port):
    from xfer.errors import Unavailable
    from xfer.tracking.endpoints import PROBE_RETRIES, PROBE_TIMEOUT_S, probe_tracking_store

    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer"):
        probe_tracking_store(f"http://127.0.0.1:{silent_port}", "exp")
    # one timeout per try plus urllib3's backoff, not MLflow's default ~4 minutes
    assert time.monotonic() - started < (PROBE_RETRIES + 1) * PROBE_TIMEOUT_S + 5


@pytest.mark.slow
def test_sweep_with_a_read_only_sqlite_store_exits_1_and_writes_nothing(work, ray_tmp):
    """The store exists on a read-only filesystem: a read-only bind mount, in a mount namespace
    of the sweep's own, so nothing outside the test sees it. (As root a 0555 folder blocks
    nothing; EROFS blocks everyone.)"""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind {work} {work}"],
            capture_output=True).returncode != 0:
        pytest.skip("no private mount namespaces here (unshare -m needs CAP_SYS_ADMIN)")
    store = work / "store"
    store.mkdir()
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{store / 'mlflow.db'}").create_experiment("pdf_grid")  # an existing store
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in store.iterdir())
    mount = f"mount --bind {store} {store} && mount -o remount,ro,bind {store} {store} && exec \"$@\""
    done, seconds = _sweep(work, _env(work, ray_tmp, MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}"),
                           wrap=["unshare", "-m", "sh", "-c", mount, "sh"])
    _one_line(done, 1, f"MLflow store {store / 'mlflow.db'} is not writable", "read-only")
    _started_nothing(work, ray_tmp)
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in store.iterdir()) == before
    assert seconds < 60, seconds


@pytest.mark.slow
def test_a_dry_run_checks_a_local_store_without_creating_it(work, ray_tmp):
    done, _ = _sweep(work, _env(work, ray_tmp), "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plan:" in done.stdout
    _started_nothing(work, ray_tmp)


# --- S3 storage reached and writable: exit 1 --------------------------------------------------

@pytest.mark.slow
def test_sweep_with_s3_storage_on_a_closed_port_exits_1_before_anything_starts(work, ray_tmp):
    env = _env(work, ray_tmp, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}")
    done, seconds = _sweep(work, env, "--storage", "s3://bucket/sweeps")
    _one_line(done, 1, "--storage s3://bucket/sweeps/pdf_grid/ is not writable", "AWS_ENDPOINT_URL")
    _started_nothing(work, ray_tmp)
    assert seconds < 90, seconds


def test_the_s3_probe_writes_and_deletes_one_object(s3_endpoint, monkeypatch):
    """Against a real S3 API (moto): the probe passes and leaves the bucket as it was."""
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="probe-bucket")
    from xfer.sweep.storage import SweepStore
    from xfer.tracking.endpoints import probe_s3_storage

    probe_s3_storage(SweepStore.open("s3://probe-bucket/sweeps"), "exp")
    # no probe object left; pyarrow keeps the emptied folder as a marker: the experiment's
    # folder, which the sweep writes into next anyway
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="probe-bucket").get("Contents", [])]
    assert keys in ([], ["sweeps/exp/"]), keys


# --- xfer frontier and the weights: the same contract ----------------------------------------

def _xfer(work: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = run_xfer(*args, cwd=work, env=env, timeout=150)
    return done, time.monotonic() - started


@pytest.mark.slow
def test_frontier_against_a_dead_tracking_server_is_one_line_exit_1_in_seconds(work, ray_tmp):
    uri = f"http://127.0.0.1:{_closed_port()}"
    done, seconds = _xfer(work, _env(work, ray_tmp, MLFLOW_TRACKING_URI=uri),
                          "frontier", "--experiment", "pdf_grid", "--out", str(work / "report"))
    _one_line(done, 1, f"MLflow at {uri} did not answer")
    assert not (work / "report").exists()
    assert seconds < 40, seconds  # was 252 s of silence, then a traceback


@pytest.mark.slow
def test_frontier_with_an_unknown_tracking_scheme_exits_2(work, ray_tmp):
    done, _ = _xfer(work, _env(work, ray_tmp, MLFLOW_TRACKING_URI="bogus://x"),
                    "frontier", "--experiment", "pdf_grid", "--out", str(work / "report"))
    _one_line(done, 2, "unknown tracking URI scheme 'bogus'")


def _train(blobs: Path, work: Path, weights: str, *extra: str) -> list[str]:
    return ["train", "--data", str(blobs), "--model", extra[0] if extra else "resnet10",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--init", "pretrained",
            "--weights", weights, "--json-out", str(work / "out" / "result.json")]


@pytest.mark.slow
def test_an_s3_weights_endpoint_that_does_not_answer_is_exit_1(blobs, work, ray_tmp):
    """Was exit 2: a service that does not answer is 1 (xfer.errors), the input may be fine."""
    env = _env(work, ray_tmp, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}")
    done, _ = _xfer(work, env, *_train(blobs, work, "s3://bucket/w.pt"))
    _one_line(done, 1, "cannot reach the S3 endpoint for s3://bucket/w.pt", "AWS_ENDPOINT_URL")
    assert not (work / "out").exists()


# --- debris: the three examples -------------------------------------------------------

@pytest.mark.slow
def test_runs_weights_without_a_store_create_no_mlflow_db(blobs, work, ray_tmp):
    env = _env(work, ray_tmp)
    del env["MLFLOW_TRACKING_URI"]  # MLflow's default: ./mlflow.db, which does not exist
    done, _ = _xfer(work, env, *_train(blobs, work, "runs:/0123456789abcdef/model.pt"))
    _one_line(done, 2, "runs:/0123456789abcdef/model.pt not found: no MLflow store at")
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()


@pytest.mark.slow
def test_offline_imagenet_weights_leave_no_empty_hub_cache_folder(blobs, work, ray_tmp):
    done, _ = _xfer(work, _env(work, ray_tmp), *_train(blobs, work, "imagenet", "resnet18"))
    _one_line(done, 2, "ImageNet weights for resnet18 are not in the torch hub cache")
    assert not (work / "torch_home").exists()  # TORCH_HOME: nothing was there, nothing is


def test_a_failed_cifar_build_leaves_no_lock_file_and_no_empty_cache_folder(tmp_path):
    from xfer.data.cifar import ensure_cifar
    from xfer.errors import UsageError

    cache = tmp_path / "cache" / "datasets"
    with pytest.raises(UsageError, match="downloading is off"):
        ensure_cifar(cache, tmp_path / "no_cifar_here", "cifar10", download=False)
    assert list(tmp_path.iterdir()) == []  # no cache/datasets/<key>.lock, no empty cache/


def test_a_failed_build_in_an_existing_cache_removes_only_its_lock(tmp_path):
    from xfer.data.packing import ensure_packed

    (tmp_path / "other.lock").write_text("")  # someone else's: kept

    def fail(target):
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        ensure_packed(tmp_path, "key", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.lock"]
