"""Storage integrity: weights and trial checkpoints are either the bytes that were written or a
clear error; never loaded as garbage.

- A weights source can pin its content hash, ``SOURCE#sha256=HEX``, for every kind of source
  (a file, ``s3://``, an MLflow artifact), from ``xfer train --weights`` and from a sweep
  preset's ``pretrained`` (checked by the driver, and again by every trial that loads them).
  A wrong pin is refused before the bytes are unpickled.
- Without a pin, damage is still caught: torch.save's zip archive records a CRC-32 per entry,
  which ``xfer.weights`` checks (torch.load does not: a flipped byte in a tensor loads as a
  wrong number). Truncation removes the archive's central directory and is caught too.
- A trial's checkpoint (``xfer.trial_state`` via ``torch.save``) is read back through the same
  loader: a truncated or damaged one is a UsageError naming the file, in ``load_state_file``,
  in the trial function's resume path, and in a real sweep whose checkpoint is cut between a
  crash and the retry (the retry fails with that message; Ray resumes from the latest
  checkpoint only, so the trial ends FAILED rather than falling back to an older one).

No network: S3 is moto's server on loopback, MLflow a sqlite file in a temp folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, sweep_env, sweep_store, warm_runner
from xfer import models
from xfer.errors import UsageError
from xfer.weights import load_state_file, resolve_weights, save_weights, split_sha256_pin

MODEL = "small_cnn"
NORM = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def small_cnn_state(seed: int = 0, num_classes: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return models.create_model(MODEL, num_classes).state_dict()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def weights_file(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "w.pt"
    sha = save_weights(path, MODEL, small_cnn_state(), source_task={"preset": "test"}, **NORM)
    return path, sha


# --- pinned sources --------------------------------------------------------------------------

def test_a_pinned_file_loads_and_a_wrong_pin_is_refused(weights_file):
    path, sha = weights_file
    loaded = resolve_weights(f"{path}#sha256={sha}", MODEL)
    assert loaded.sha256 == sha and loaded.source == f"file:{path.resolve()}"
    expected = small_cnn_state()
    assert list(loaded.state_dict) == list(expected)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in expected.items())
    assert resolve_weights(f"file://{path}#sha256={sha.upper()}", MODEL).sha256 == sha

    wrong = "0" * 64
    with pytest.raises(UsageError) as excinfo:
        resolve_weights(f"{path}#sha256={wrong}", MODEL)
    assert str(excinfo.value) == f"file:{path.resolve()} has sha256 {sha}, expected {wrong}"


EXECUTED: list[str] = []


class Payload:
    def __reduce__(self):
        return (EXECUTED.append, ("payload ran",))


def test_the_pin_is_checked_before_anything_is_unpickled(tmp_path):
    """A damaged or hostile file with a wrong pin fails on the hash: its bytes are never parsed."""
    hostile = tmp_path / "hostile.pt"
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2), "payload": Payload()}, buffer)
    hostile.write_bytes(buffer.getvalue())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(buffer.getvalue()[:100])
    for path in (hostile, truncated):
        with pytest.raises(UsageError, match=f"has sha256 {sha256(path.read_bytes())}, expected 1{'0' * 63}"):
            resolve_weights(f"{path}#sha256=1{'0' * 63}", MODEL)
    assert EXECUTED == []


@pytest.mark.parametrize("source, message", [
    ("w.pt#sha256=abc", "the sha256 pinned in 'w.pt#sha256=abc' must be 64 hex digits"),
    (f"w.pt#sha256={'g' * 64}", "must be 64 hex digits"),
    (f"#sha256={'0' * 64}", "pins a hash but names no weights"),
])
def test_a_malformed_pin_is_a_usage_error(source, message):
    with pytest.raises(UsageError, match=message):
        resolve_weights(source, MODEL)


def test_only_a_trailing_sha256_fragment_is_a_pin(tmp_path, weights_file):
    path, sha = weights_file
    odd = tmp_path / "run#2.pt"  # '#' is legal in file names and S3 keys
    odd.write_bytes(path.read_bytes())
    assert split_sha256_pin(str(odd)) == (str(odd), None)
    assert resolve_weights(str(odd), MODEL).sha256 == sha
    assert resolve_weights(f"{odd}#sha256={sha}", MODEL).sha256 == sha
    # a pin and an explicit expected_sha256 must agree
    assert resolve_weights(f"{path}#sha256={sha}", MODEL, expected_sha256=sha).sha256 == sha
    with pytest.raises(UsageError, match="is pinned to sha256"):
        resolve_weights(f"{path}#sha256={sha}", MODEL, expected_sha256="f" * 64)


def test_a_pinned_s3_object(s3_endpoint, weights_file, monkeypatch, tmp_path):
    import boto3

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path, sha = weights_file
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="pins")
    client.put_object(Bucket="pins", Key="w.pt", Body=path.read_bytes())
    assert resolve_weights(f"s3://pins/w.pt#sha256={sha}", MODEL).source == "s3://pins/w.pt"
    client.put_object(Bucket="pins", Key="w.pt", Body=path.read_bytes() + b"\0")  # replaced: one byte more
    with pytest.raises(UsageError, match=f"s3://pins/w.pt has sha256 .*, expected {sha}"):
        resolve_weights(f"s3://pins/w.pt#sha256={sha}", MODEL)


def test_a_pinned_mlflow_artifact(weights_file, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("pins", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    path, sha = weights_file
    client.log_artifact(run_id, str(path), artifact_path="weights")
    assert resolve_weights(f"runs:/{run_id}/weights/w.pt#sha256={sha}", MODEL).sha256 == sha
    with pytest.raises(UsageError, match=f"expected {'e' * 64}"):
        resolve_weights(f"runs:/{run_id}/weights/w.pt#sha256={'e' * 64}", MODEL)


def test_xfer_train_takes_a_pinned_weights_source(weights_file, tmp_path, capsys):
    from helpers_data import write_blob_dataset
    from xfer.cli import main

    path, sha = weights_file
    data = write_blob_dataset(tmp_path / "blobs", n=80, num_classes=4)
    out = tmp_path / "result.json"
    argv = ["train", "--data", str(data), "--model", MODEL, "--init", "pretrained", "--weights",
            f"{path}#sha256={sha}", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--json-out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["weights"]["sha256"] == sha
    assert result["config"]["weights"] == f"{path}#sha256={sha}"  # the pin is recorded with the run

    path.write_bytes(path.read_bytes() + b"\0")  # the file changed after it was pinned
    out.unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"expected {sha}" in err and not out.exists()


# --- damaged weights files, no pin ------------------------------------------------------------

def _damaged(data: bytes, how: str) -> bytes:
    if how.startswith("cut"):
        return data[: {"cut_1": len(data) - 1, "cut_eocd": len(data) - 22, "cut_half": len(data) // 2,
                       "cut_header": 30}[how]]
    damaged = bytearray(data)
    if how == "flip_tensor":  # a byte inside a tensor's payload
        damaged[data.index(struct.pack("<f", 1234.5)) + 1] ^= 0x01
    else:  # flip_pickle: a byte inside the pickled structure (a parameter name)
        damaged[data.index(b"conv_stack") + 2] ^= 0x20
    return bytes(damaged)


@pytest.mark.parametrize("how", ["cut_1", "cut_eocd", "cut_half", "cut_header", "flip_tensor", "flip_pickle"])
def test_a_damaged_weights_file_is_an_error_never_garbage(how, tmp_path):
    state = {"conv_stack.weight": torch.full((64,), 1234.5), "conv_stack.bias": torch.zeros(3)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = _damaged(buffer.getvalue(), how)
    if how == "flip_tensor":  # what makes this test necessary: torch itself loads it silently
        assert torch.load(io.BytesIO(data), weights_only=True)["conv_stack.weight"][0] != 1234.5
    (tmp_path / "w.pt").write_bytes(data)
    with pytest.raises(UsageError, match=r"is (truncated or not a PyTorch weights file|corrupt)") as excinfo:
        resolve_weights(str(tmp_path / "w.pt"), MODEL)
    assert str(tmp_path / "w.pt") in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_archives_written_without_crcs_still_load(tmp_path):
    """torch.serialization.set_crc32_options(False) writes CRC 0: nothing to check, no false alarm."""
    state = small_cnn_state()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, tmp_path / "w.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    loaded = resolve_weights(str(tmp_path / "w.pt"), MODEL)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in state.items())


# --- trial checkpoints --------------------------------------------------------------------------

@pytest.fixture
def trial_checkpoint(tmp_path) -> Path:
    """A real trial state, as xfer.sweep.trial writes it each epoch (torch.save of snapshot)."""
    from xfer import trial_state
    from xfer.train import TrialConfig

    config = TrialConfig(data="d", model=MODEL, epochs=2, batch_size=16, device="cpu")
    model = models.create_model(MODEL, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # momentum buffers exist
    progress = {"epoch": 1, "history": [{"epoch": 1, "val_loss": 1.0}], "images_processed": 64}
    folder = tmp_path / "checkpoint_000000"
    folder.mkdir()
    torch.save(trial_state.snapshot(config, model, optimizer, progress), folder / "trial_state.pt")
    return folder / "trial_state.pt"


def test_an_intact_trial_checkpoint_restores(trial_checkpoint):
    from xfer import trial_state
    from xfer.train import TrialConfig

    config = TrialConfig(data="d", model=MODEL, epochs=3, batch_size=16, device="cpu")  # longer budget
    model = models.create_model(MODEL, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    progress = trial_state.restore(load_state_file(trial_checkpoint), config, model, optimizer)
    assert progress["epoch"] == 1 and progress["images_processed"] == 64


@pytest.mark.parametrize("cut", [1, 22, 0.5, 0.99])
def test_a_truncated_trial_checkpoint_names_the_file(trial_checkpoint, cut):
    data = trial_checkpoint.read_bytes()
    keep = len(data) - cut if isinstance(cut, int) else int(len(data) * cut)
    trial_checkpoint.write_bytes(data[:keep])
    with pytest.raises(UsageError) as excinfo:
        load_state_file(trial_checkpoint)
    assert f"checkpoint {trial_checkpoint} is truncated" in str(excinfo.value)


def test_a_damaged_trial_checkpoint_names_the_file(trial_checkpoint):
    data = bytearray(trial_checkpoint.read_bytes())
    data[len(data) // 3] ^= 0x10  # somewhere in the tensors
    trial_checkpoint.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=f"checkpoint {trial_checkpoint} is (corrupt|truncated)"):
        load_state_file(trial_checkpoint)


def test_the_trial_function_refuses_a_truncated_checkpoint_on_resume(trial_checkpoint, tmp_path,
                                                                     monkeypatch):
    """xfer.sweep.trial.run_trial's resume path, with Ray's own Checkpoint object: the error
    names the file and comes before any training."""
    from ray import tune

    from helpers_data import write_blob_dataset
    from xfer.data.tensors import read_packed_arrays
    from xfer.sweep.trial import SharedData, run_trial

    data = trial_checkpoint.read_bytes()
    trial_checkpoint.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(tune, "get_checkpoint",
                        lambda: tune.Checkpoint.from_directory(str(trial_checkpoint.parent)))
    reports = []
    monkeypatch.setattr(tune, "report", lambda *a, **k: reports.append(a))
    images, labels, meta = read_packed_arrays(write_blob_dataset(tmp_path / "blobs", n=40))
    config = {"model": MODEL, "init": "scratch", "epochs": 2, "batch_size": 16, "lr": 0.05,
              "dataset_size": 40, "seed": 0, "cpus_per_trial": torch.get_num_threads()}
    with pytest.raises(UsageError, match=f"checkpoint {trial_checkpoint} is truncated"):
        run_trial(config, SharedData(images=images, labels=labels, meta=meta))
    assert reports == []


# --- through a real sweep ----------------------------------------------------------------------

STUDY_SCRIPT = '''
import json, sys
sys.path.insert(0, {repo!r})
from xfer.sweep.driver import main
from xfer.sweep.sources import PdfData
from xfer.sweep.study import Preset, Study
spec = json.loads(sys.argv[1])
preset = Preset(space={{"seed": [0]}}, fixed=spec["fixed"],
                data=PdfData(preset="seed", image_size=32, test_size=200),
                pretrained=spec.get("pretrained", "imagenet"), scheduler="fifo")
if __name__ == "__main__":  # the dataset is rendered in worker processes that import this file
    sys.exit(main(Study(name="integrity", default_preset="p", presets={{"p": preset}}), sys.argv[2:]))
'''
FIXED = {"model": MODEL, "epochs": 1, "batch_size": 16, "lr": 0.05, "dataset_size": 40}


def run_study(tmp: Path, spec: dict, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    script = tmp / "integrity_study.py"
    script.write_text(STUDY_SCRIPT.format(repo=str(REPO)))
    env = {**sweep_env(tmp), **(env or {})}
    return warm_runner().run([sys.executable, str(script), json.dumps(spec), "--storage", str(tmp / "runs"),
                              "--cache-dir", str(cache), "--no-report"], timeout=300, cwd=tmp, env=env)


def child_runs(tmp: Path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("integrity")
    return [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("xfer.role") == "trial"]


@pytest.mark.slow
def test_a_sweep_checks_its_pinned_weights_in_the_driver_and_in_every_trial(tmp_path, shared_cache,
                                                                            one_node_ray):
    path = tmp_path / "source.pt"
    sha = save_weights(path, MODEL, small_cnn_state(num_classes=4), source_task={"preset": "test"}, **NORM)
    good = run_study(tmp_path, {"fixed": {**FIXED, "init": "pretrained"},
                                "pretrained": f"{path}#sha256={sha}"}, shared_cache,
                     env={"RAY_ADDRESS": one_node_ray})
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    [child] = child_runs(tmp_path)
    assert child.data.params["weights"] == f"{path}#sha256={sha}"
    assert child.data.params["weights_sha256"] == sha and child.info.status == "FINISHED"

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="xfer-ray-"))
    try:
        bad = run_study(wrong, {"fixed": {**FIXED, "init": "pretrained"},
                                "pretrained": f"{path}#sha256={'0' * 64}"}, shared_cache,
                        env={"RAY_TMPDIR": str(ray_tmp)})
        assert bad.returncode == 2, bad.stdout[-3000:] + bad.stderr[-3000:]
        assert bad.stderr.strip().splitlines() == [
            f"sweeps/integrity.py: error: file:{path.resolve()} has sha256 {sha}, expected {'0' * 64}"]
        assert list(ray_tmp.iterdir()) == []  # refused before Ray started
        assert not (wrong / "mlflow.db").exists()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.faults
def test_a_checkpoint_truncated_before_the_retry_fails_the_trial_naming_the_file(tmp_path, shared_cache,
                                                                                 one_node_ray):
    """The trial crashes after epoch 1 (injected) and Ray retries it from that epoch's
    checkpoint; a watcher truncates every checkpoint file once it is complete, so the retry
    reads a truncated one. The retry must fail with the one-line reason naming the file, and
    the trial's MLflow run must end FAILED with it: never resume from garbage. Its one trial
    failing, the sweep is also the one whose every trial fails: exit 1, the parent FAILED, no
    run left RUNNING."""
    stop = threading.Event()
    cut: list[Path] = []

    def truncate_complete_checkpoints():
        sizes: dict[Path, int] = {}
        while not stop.is_set():
            for path in (tmp_path / "runs").rglob("trial_state.pt"):
                size = path.stat().st_size
                if path not in cut and size and sizes.get(path) == size:  # unchanged for 50 ms
                    with open(path, "r+b") as handle:
                        handle.truncate(size // 2)
                    cut.append(path)
                sizes[path] = size
            time.sleep(0.05)

    watcher = threading.Thread(target=truncate_complete_checkpoints, daemon=True)
    watcher.start()
    try:
        done = run_study(tmp_path, {"fixed": {**FIXED, "init": "scratch", "epochs": 3}}, shared_cache,
                         env={"XFER_INJECT_FAULT": f"{MODEL}@1*1", "RAY_ADDRESS": one_node_ray,
                              "XFER_INJECT_FAULT_DIR": str(tmp_path / "faults")})
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # no trial finished
    assert "0 trials finished, 1 failed" in done.stdout, done.stdout[-3000:]
    assert cut, "no checkpoint was written"
    # the driver's one line per failed trial is the last line of Ray's error text
    [failed] = [line for line in done.stdout.splitlines() if "] FAILED: " in line]
    reason = failed.split("] FAILED: ", 1)[1]
    assert reason.startswith("xfer.errors.UsageError: checkpoint "), failed
    assert "trial_state.pt is truncated or not a PyTorch weights file" in reason
    assert any(f"checkpoint {path} is truncated" in reason for path in cut), (reason, cut)
    [child] = child_runs(tmp_path)
    assert child.info.status == "FAILED" and child.data.tags.get("xfer.error")
    _, _, parent, children = sweep_store(tmp_path, "integrity")
    assert parent.info.status == "FAILED" and [c.info.run_id for c in children] == [child.info.run_id]
    # what the first attempt did, kept: its epoch. Under FIFO the test split is scored only at
    # the end, which this trial never reached, so it has no final metrics.
    assert "val_accuracy" in child.data.metrics and child.data.metrics.get("epochs_run", 1) == 1
