"""The function each Ray trial runs: ``fit`` with Tune reports and per-epoch checkpoints.

Under a scheduler that stops trials (ASHA), every epoch the trial reports its complete result
so far (validation and test metrics, costs, the confusion matrix, the history) together with a
checkpoint, so a trial that ASHA stops after any epoch already holds final numbers for the
epochs it ran; ASHA and the searchers read only ``val_accuracy``. Under FIFO the test split is
scored once, at the last epoch (and at epoch milestones). A trial that crashes resumes from its
last epoch with its RNG state, so the retry continues the same run. Costs: a test-split
evaluation per scored epoch (forward only) and one state_dict copy + write per epoch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xfer import names

CHECKPOINT_FILE = "trial_state.pt"
# Fault injection, for the tests that prove retries and failures are recorded right:
# XFER_INJECT_FAULT="<run-name substring>@<epoch>[*<attempts>],..." makes matching trials raise
# an injected out-of-memory error right after reporting (and checkpointing) that epoch, or the
# first epoch of an attempt resumed past it; on every attempt, or on the first <attempts> only,
# counted in files under XFER_INJECT_FAULT_DIR (each attempt is a new process).
FAULT_ENV = "XFER_INJECT_FAULT"
FAULT_DIR_ENV = f"{FAULT_ENV}_DIR"
# TrialConfig fields a sweep never sets per trial: the trial sets them itself
_NOT_FROM_SWEEP = ("data", "n", "device", "report_test_each_epoch")
# Set by tune_run: True when a scheduler may stop trials early (ASHA) or a searcher checks its
# metrics in every result (Optuna), so every epoch's report must carry the result so far; with
# FIFO and a grid a trial scores its test split once, at the end (and at epoch milestones).
SCORE_TEST_EACH_EPOCH = "score_test_each_epoch"


@dataclass(frozen=True)
class SharedData:
    """The packed dataset, put into Ray's object store once by ``tune.with_parameters``:
    trials on a node read the same shared-memory pages (numpy arrays come back zero-copy).
    ``weight_files`` carries the bytes of weights files the driver made (offline pretraining
    writes them into the driver's cache), so trials on other nodes load the same bytes; see
    :func:`shareable_weights`."""
    images: np.ndarray  # N×H×W×3 uint8
    labels: np.ndarray  # N int64
    meta: dict  # dataset.json, with "path"
    weight_files: dict = field(default_factory=dict)  # driver-side path -> file bytes


def shareable_weights(sources) -> dict[str, bytes]:
    """The bytes of every weights source that is a file on the driver's machine (a
    ``#sha256=`` pin allowed), keyed by the source as trials receive it. ImageNet, s3:// and
    MLflow sources are readable from any node and are not copied. Cost: the files travel once
    through Ray's object store (~45 MB for an offline ResNet-10, ~100 MB for a ResNet-50)."""
    from xfer.weights import split_sha256_pin

    files = {}
    for source in set(filter(None, sources)):
        path = Path(split_sha256_pin(source)[0])
        if path.is_file():
            files[source] = path.read_bytes()
    return files


def local_weights(source: str | None, shared: SharedData) -> str | None:
    """``source`` as a path this node can read: a driver-side weights file missing here is
    written once into this node's temp folder from the shared bytes (same bytes, same sha256,
    so the run records the same weights either way)."""
    if not source or source not in shared.weight_files:
        return source
    import hashlib
    import os

    from xfer.weights import SHA256_PIN, split_sha256_pin

    file, pin = split_sha256_pin(source)
    if Path(file).is_file():
        return source
    data = shared.weight_files[source]
    folder = Path(tempfile.gettempdir()) / "xfer-weights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{Path(file).name}"
    if not path.is_file():
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_bytes(data)
        os.replace(partial, path)  # atomic: concurrent trials on a node never read half a file
    return str(path) + (f"{SHA256_PIN}{pin}" if pin else "")


def run_trial(config: dict, shared: SharedData, system_metrics: bool = False) -> None:
    """Train one trial, reporting every epoch to Tune. ``system_metrics``: sample the node's
    CPU, memory, disk, network and the trial's GPUs (``xfer.sweep.system_metrics``) and carry
    one aggregate per epoch in the reports, for the driver to log."""
    from dataclasses import fields

    import ray
    import torch
    from ray import tune

    from xfer.data.tensors import from_arrays
    from xfer.sweep.faults import stall_point
    from xfer.sweep.study import resolve_trial
    from xfer.train import TrialConfig, fit
    from xfer.weights import load_state_file, origin_note

    config = resolve_trial(config)
    config["weights"] = local_weights(config.get("weights"), shared)
    torch.set_num_threads(max(1, int(config.get("cpus_per_trial", 1))))
    keys = {f.name for f in fields(TrialConfig)} - set(_NOT_FROM_SWEEP)
    trial_config = TrialConfig(
        data=shared.meta["path"], n=config["dataset_size"],
        report_test_each_epoch=bool(config.get(SCORE_TEST_EACH_EPOCH, True)),
        **{k: config[k] for k in keys if k in config})
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = load_state_file(Path(folder) / CHECKPOINT_FILE)
    data = from_arrays(shared.images, shared.labels, shared.meta, n=config["dataset_size"])
    gpus = float(config.get("gpus_per_trial", 0))
    dataset_name = f"{shared.meta.get('kind', 'pdf')}-{shared.meta.get('preset')}-seed{shared.meta.get('seed')}"
    latest: dict = {}
    node_ip = ray.util.get_node_ip_address()
    sampler = None
    if system_metrics:
        from xfer.sweep.system_metrics import start_sampler

        sampler = start_sampler(gpu_ids=ray.get_gpu_ids() if gpus > 0 else None)

    def keep(state: dict) -> None:
        latest["state"] = state

    def report(metrics: dict) -> None:
        metrics = dict(metrics)
        # the GPUs this trial held (a fraction when trials share one), not the device's count
        metrics[names.GPU_SECONDS] = metrics.get(names.WALL_TIME_S, 0.0) * gpus
        metrics[names.MILESTONES] = {
            epoch: {**entry, names.GPU_SECONDS: entry.get(names.WALL_TIME_S, 0.0) * gpus}
            for epoch, entry in (metrics.get(names.MILESTONES) or {}).items()}
        metrics[names.DATASET_PATH] = shared.meta["path"]
        metrics[names.NODE_IP] = node_ip  # where the epoch ran: a retried trial may move nodes
        metrics[names.DATASET] = dataset_name
        metrics[names.IMAGE_SIZE] = config.get("image_size") or shared.meta["image_size"]
        if shared.meta.get("skipped_count") is not None:  # an image folder's unreadable files
            metrics[names.DATA_SKIPPED_FILES] = shared.meta["skipped_count"]
        weights = metrics.pop(names.WEIGHTS, None) or {}
        if weights.get("sha256"):
            metrics[names.WEIGHTS_SHA256] = weights["sha256"]
            metrics[names.WEIGHTS_ORIGIN] = origin_note(weights.get("meta") or {})
        if sampler is not None:
            metrics[names.SYSTEM_METRICS] = sampler.close_epoch(metrics[names.EPOCH])
        with tempfile.TemporaryDirectory() as folder:
            torch.save(latest.pop("state"), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        _maybe_inject_fault(config, metrics[names.EPOCH])
        stall_point("epoch")

    try:
        fit(trial_config, report, data=data, resume=resume, checkpoint=keep)
    finally:
        if sampler is not None:  # Tune reuses the worker for the next trial
            sampler.stop()


def _maybe_inject_fault(config: dict, epoch: int) -> None:
    import os

    from xfer.sweep.study import trial_name

    name = trial_name(config)  # config is already resolved (run_trial)
    for item in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        target, _, when = item.rpartition("@")
        at_epoch, _, attempts = when.partition("*")
        if target not in name or epoch < int(at_epoch):
            continue
        if attempts:
            folder = Path(os.environ[FAULT_DIR_ENV])
            folder.mkdir(parents=True, exist_ok=True)
            done = len(list(folder.glob(f"{name}.*")))
            if done >= int(attempts):
                continue
            (folder / f"{name}.{done}").touch()
        raise RuntimeError(f"injected fault in {name} after epoch {epoch}: CUDA out of memory "
                           f"(simulated by {FAULT_ENV})")
