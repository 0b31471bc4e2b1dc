"""What the MLflow UI shows of a sweep's child runs (issue 16): the dataset as an input, the
standard source tags, final metrics as values (one point at step 0), and MLflow's system
metrics per epoch. Store checks read the shared smoke sweep (``smoke_sweep``, run with
``--system-metrics on``); the rest are unit tests of the pieces."""

from __future__ import annotations

import json
import re
import time

import pytest

from conftest import sweep_store

SOURCE_TAGS = ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit", "mlflow.user")


# --- the shared smoke sweep's store ---------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_store(smoke_sweep):
    client, _, parent, children = sweep_store(smoke_sweep[0])
    assert children
    return client, parent, children


def test_every_child_run_has_its_dataset_as_a_training_input(smoke_store):
    _, _, children = smoke_store
    digests = set()
    for child in children:
        inputs = child.inputs.dataset_inputs
        assert len(inputs) == 1, (child.info.run_name, inputs)
        dataset, tags = inputs[0].dataset, {t.key: t.value for t in inputs[0].tags}
        assert re.fullmatch(r"pdf-\w+-seed\d+-\d+px", dataset.name), dataset.name
        assert re.fullmatch(r"[0-9a-f]{16}", dataset.digest)
        assert dataset.source_type == "local" and dataset.source == child.data.params["dataset_path"]
        assert json.loads(dataset.profile)["num_classes"] > 1
        assert tags == {"mlflow.data.context": "training"}
        digests.add(dataset.digest)
    assert len(digests) == 1  # one dataset for the whole sweep


def test_parent_and_children_carry_the_standard_source_tags(smoke_store):
    _, parent, children = smoke_store
    commit = parent.data.tags["xfer.git_sha"].removesuffix("-dirty")  # the sweep's checkout
    for run in [parent, *children]:
        tags = run.data.tags
        assert {k: tags.get(k) for k in SOURCE_TAGS} == {
            "mlflow.source.name": "sweeps/pdf_grid.py", "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": commit, "mlflow.user": tags["mlflow.user"]}, run.info.run_name
        assert tags["mlflow.user"] and run.info.user_id == tags["mlflow.user"]
        assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])


def test_final_metrics_are_one_point_at_step_0_and_epoch_metrics_keep_their_epochs(smoke_store):
    from xfer.sweep.mlflow_logger import FINAL_METRICS

    client, _, children = smoke_store
    for child in children:
        epochs_run = int(child.data.metrics["epochs_run"])
        finals = [k for k in FINAL_METRICS if k in child.data.metrics]
        assert {"test_accuracy", "epochs_run", "train_macs", "wall_time_s"} <= set(finals)
        for key in finals:
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [0], key
        val_steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert val_steps == list(range(1, epochs_run + 1))


def test_system_metrics_are_logged_per_epoch_under_mlflow_names(smoke_store):
    client, _, children = smoke_store
    for child in children:
        epochs_run = int(child.data.metrics["epochs_run"])
        system = {k for k in child.data.metrics if k.startswith("system/")}
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/system_memory_usage_percentage", "system/disk_usage_percentage",
                "system/network_receive_megabytes"} <= system, (child.info.run_name, system)
        assert not any(k.startswith("system/gpu_") for k in system)  # no NVIDIA driver here
        for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
            points = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in points) == list(range(1, epochs_run + 1)), key
            assert all(m.value >= 0 for m in points)
        memory = client.get_metric_history(child.info.run_id, "system/system_memory_usage_megabytes")
        assert all(m.value > 10 for m in memory)  # a machine that runs Ray uses more than 10 MB


# --- the spool's log_inputs record ----------------------------------------------------------

def _dataset_record(run: str) -> dict:
    return {"op": "log_inputs", "run": run, "datasets": [{
        "name": "pdf-smoke-seed0-64px", "digest": "0123456789abcdef", "source_type": "local",
        "source": "/data/pdf", "profile": json.dumps({"num_images": 8}),
        "tags": {"mlflow.data.context": "training"}}]}


def test_a_spooled_log_inputs_replays_once_and_again_without_a_second_input(tmp_path):
    from mlflow.tracking import MlflowClient

    from xfer.tracking.journal import Spool, placeholder
    from xfer.tracking.replay import ReplayState, apply_record, replay_spool

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("spool-inputs")
    spool = Spool(tmp_path / "spool")
    run = placeholder("trial_1")
    records = [{"seq": 0, "op": "header", "version": 1, "sweep_id": "s"},
               {"seq": 1, "op": "open_run", "run": run, "experiment_id": experiment_id,
                "match_tags": {"xfer.trial_id": "trial_1"}, "run_name": "t1", "start_time": 1000,
                "tags": {"xfer.trial_id": "trial_1"}, "params": {}},
               {"seq": 2, **_dataset_record(run)}]
    for record in records:
        spool.append(record)

    outcome = replay_spool(spool.folder, uri, echo=lambda _: None)
    assert (outcome.applied, outcome.rejected, outcome.left) == (2, 0, 0)
    [found] = client.search_runs([experiment_id])
    [given] = found.inputs.dataset_inputs
    assert (given.dataset.name, given.dataset.digest, given.dataset.source) == (
        "pdf-smoke-seed0-64px", "0123456789abcdef", "/data/pdf")
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}

    # the server applied it and the acknowledgement was lost: applying it again adds nothing
    state = ReplayState(resolved={run: found.info.run_id})
    assert apply_record(client, records[2], state) == {"run_id": found.info.run_id}
    assert len(client.get_run(found.info.run_id).inputs.dataset_inputs) == 1
    # a second replay of the spool is a no-op
    assert replay_spool(spool.folder, uri, echo=lambda _: None).applied == 0


def test_log_inputs_goes_through_the_spool_while_mlflow_is_down(tmp_path):
    """A refused connection: the record waits in the journal with the others, in order."""
    from xfer.tracking.outage import set_driver_client_env
    from xfer.tracking.spool import SpoolingWriter

    set_driver_client_env()
    writer = SpoolingWriter("http://127.0.0.1:9", tmp_path / "spool", echo=lambda _: None)
    assert writer.submit(_dataset_record("0123abcd")) is None
    assert [r["op"] for r in writer.spool.records()] == ["header", "log_inputs"]


# --- the pieces -----------------------------------------------------------------------------

def test_dataset_input_digest_is_the_datasets_content_not_its_place_or_timings():
    import numpy as np

    from xfer.sweep.mlflow_logger import dataset_input

    images, labels = np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 0, 1])
    meta = {"kind": "pdf", "preset": "smoke", "seed": 0, "image_size": 64, "families": ["a", "b"],
            "packed": {"images_sha256": "ab" * 32}, "path": "/cache/one", "render_seconds": 0.8,
            "created_by": {"git_sha": "1"}}
    first = dataset_input(meta, images, labels)
    moved = dataset_input({**meta, "path": "/cache/two", "render_seconds": 1.5}, images, labels)
    assert first["name"] == "pdf-smoke-seed0-64px" and first["source"] == "/cache/one"
    assert first["digest"] == moved["digest"]
    assert json.loads(first["profile"]) == {"num_images": 4, "num_classes": 2, "image_size": 64}
    other_pixels = dataset_input({**meta, "packed": {"images_sha256": "cd" * 32}}, images, labels)
    other_labels = dataset_input(meta, images, labels[::-1])
    assert len({first["digest"], other_pixels["digest"], other_labels["digest"]}) == 3
    # no recorded fingerprint: the arrays are hashed
    unpacked = {k: v for k, v in meta.items() if k != "packed"}
    assert dataset_input(unpacked, images, labels)["digest"] != dataset_input(unpacked, images + 1, labels)["digest"]


def test_source_tags_say_job_under_ray_job_submit_and_drop_an_unknown_commit(monkeypatch):
    from xfer.sweep.mlflow_logger import source_tags, study_script

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    local = source_tags(study_script("pdf_grid"), "a" * 40 + "-dirty")
    assert local["mlflow.source.type"] == "LOCAL" and local["mlflow.source.git.commit"] == "a" * 40
    assert local["mlflow.source.name"] == "sweeps/pdf_grid.py"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    job = source_tags("sweeps/pdf_grid.py", "unknown")
    assert job["mlflow.source.type"] == "JOB" and "mlflow.source.git.commit" not in job


def test_system_metrics_option_auto_follows_the_gpus_and_bad_values_exit_2(capsys):
    from xfer.sweep.options import build_parser, parse_options
    from xfer.sweep.system_metrics import wanted

    assert (wanted("auto", 0), wanted("auto", 0.5), wanted("on", 0), wanted("off", 1)) == (
        False, True, True, False)
    parser = build_parser("sweeps/x.py", "x", ["smoke"], "smoke", "x")
    assert parse_options(parser, []).system_metrics == "auto"
    assert parse_options(parser, []).samples_system_metrics is False  # no GPU here
    assert parse_options(parser, ["--system-metrics", "on"]).samples_system_metrics is True
    with pytest.raises(SystemExit) as exit_:
        parse_options(parser, ["--system-metrics", "sometimes"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'sometimes'" in err[0]


class _FakeMonitor:
    """MLflow's monitor interface (collect_metrics / aggregate_metrics / clear_metrics)."""

    def __init__(self):
        self.samples = []

    def collect_metrics(self):
        self.samples.append(len(self.samples) + 1.0)

    def aggregate_metrics(self):
        return {"cpu_utilization_percentage": sum(self.samples) / len(self.samples)} if self.samples else {}

    def clear_metrics(self):
        self.samples = []


def test_sampler_aggregates_each_epoch_under_mlflow_system_names():
    from xfer.sweep.system_metrics import EpochSampler, epoch_metrics

    monitor = _FakeMonitor()
    sampler = EpochSampler([monitor], interval_s=3600)  # no thread samples: only epoch ends
    first = sampler.close_epoch(1)
    monitor.collect_metrics()  # a sample the thread took during epoch 2
    second = sampler.close_epoch(2)
    assert first == [{"epoch": 1, "system/cpu_utilization_percentage": 1.0}]
    assert second == [first[0], {"epoch": 2, "system/cpu_utilization_percentage": 1.5}]
    assert epoch_metrics(second, {2}, now=5) == [["system/cpu_utilization_percentage", 1.5, 5, 2]]


def test_sampler_thread_samples_real_monitors_and_no_gpu_is_no_gpu_monitor():
    from xfer.sweep.system_metrics import monitors, start_sampler

    kinds = {type(m).__name__ for m in monitors()}
    assert kinds == {"CPUMonitor", "DiskMonitor", "NetworkMonitor"}  # no NVML, no ROCm here
    sampler = start_sampler(interval_s=0.05)
    try:
        time.sleep(0.3)
        [entry] = sampler.close_epoch(1)
    finally:
        sampler.stop()
    assert entry["epoch"] == 1 and 0 <= entry["system/cpu_utilization_percentage"] <= 100
    assert entry["system/system_memory_usage_megabytes"] > 0
    assert "system/network_transmit_megabytes" in entry


def test_gpu_monitor_is_narrowed_to_the_trials_gpus():
    from xfer.sweep.system_metrics import _narrow

    class Gpus:
        gpu_handles, num_gpus = ["h0", "h1", "h2", "h3"], 4

    monitor = Gpus()
    _narrow(monitor, [2])
    assert (monitor.gpu_handles, monitor.num_gpus) == (["h2"], 1)  # named gpu_0: the trial's cuda:0
    untouched = Gpus()
    _narrow(untouched, ["GPU-1b2c"])  # a UUID: keep every handle rather than guess
    assert untouched.gpu_handles == ["h0", "h1", "h2", "h3"]


class _FakeNvml:
    """NVML as MLflow's GPUMonitor calls it, for a node with two GPUs (none can be here)."""

    NVMLError = RuntimeError

    @staticmethod
    def nvmlInit():
        pass

    @staticmethod
    def nvmlDeviceGetCount():
        return 2

    @staticmethod
    def nvmlDeviceGetHandleByIndex(i):
        return f"gpu{i}"

    @staticmethod
    def nvmlDeviceGetMemoryInfo(handle):
        from types import SimpleNamespace

        return SimpleNamespace(used=2e9, total=8e9)

    @staticmethod
    def nvmlDeviceGetUtilizationRates(handle):
        from types import SimpleNamespace

        return SimpleNamespace(gpu={"gpu0": 10, "gpu1": 70}[handle])

    @staticmethod
    def nvmlDeviceGetPowerUsage(handle):
        return 100_000

    @staticmethod
    def nvmlDeviceGetEnforcedPowerLimit(handle):
        return 400_000


def test_on_a_gpu_node_the_trials_gpu_is_sampled_as_gpu_0(monkeypatch):
    """MLflow's own GPUMonitor over a fake NVML: Ray gave the trial the node's GPU 1, which the
    run shows as gpu_0 (its cuda:0); the node's GPU 0, another trial's, is not logged."""
    from mlflow.system_metrics.metrics import gpu_monitor

    from xfer.sweep.system_metrics import EpochSampler, monitors

    monkeypatch.setattr(gpu_monitor, "pynvml", _FakeNvml, raising=False)
    found = monitors(gpu_ids=[1])
    assert "GPUMonitor" in {type(m).__name__ for m in found}
    [entry] = EpochSampler(found, interval_s=3600).close_epoch(1)
    assert entry["system/gpu_0_utilization_percentage"] == 70
    assert entry["system/gpu_0_memory_usage_percentage"] == 25
    assert entry["system/gpu_0_power_usage_watts"] == 100
    assert not any(k.startswith("system/gpu_1_") for k in entry)
