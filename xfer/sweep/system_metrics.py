"""System metrics per trial epoch (CPU, memory, disk, network, GPU), with MLflow's own collectors.

Why not ``mlflow.start_run(log_system_metrics=True)``: MLflow's monitor thread logs to the run
itself, from the process it runs in. A trial runs in a Ray worker, maybe on a node with no route
to the tracking server, and the sweep's driver is the only MLflow writer
(``xfer.sweep.mlflow_logger``). So the trial samples MLflow's monitors (``CPUMonitor``,
``DiskMonitor``, ``NetworkMonitor``, and ``GPUMonitor`` or ``ROCMMonitor`` where NVML or ROCm
answers) in a thread of its own, puts one aggregate per epoch in its reports, and the driver logs
them under MLflow's names (``system/cpu_utilization_percentage``,
``system/gpu_0_utilization_percentage``, ...) at step = epoch, which the UI's "System metrics"
tab shows.

What the numbers are: MLflow's. CPU, memory, disk and network are the whole node's (MLflow
measures the machine, not a process), so trials that share a node share those figures; network
is cumulative since the trial started. GPU figures are the device's: with
``--gpus-per-trial`` below 1 the trials sharing a GPU see each other's load. ``gpu_<i>`` is the
trial's i-th GPU (torch's ``cuda:<i>``), not the node's i-th: the NVML handles are narrowed to
the GPUs Ray gave the trial.

Cost: one sample every ``SAMPLE_INTERVAL_S`` (psutil calls, microseconds; NVML queries,
about a millisecond per GPU) plus one at every epoch's end, so an epoch shorter than the
interval still has a sample; about 12 numbers per epoch in each report. Importing MLflow's
monitors imports mlflow in the trial's worker (once per worker, ~1-2 s), only when on.
"""

from __future__ import annotations

import logging
import threading

# PREFIX is MLflow's: the UI's "System metrics" tab shows metrics named so. RESULT_KEY holds
# them in a trial's report: [{"epoch": e, "system/...": value, ...}]
from xfer.names import SYSTEM_METRIC_PREFIX as PREFIX
from xfer.names import SYSTEM_METRICS as RESULT_KEY

SAMPLE_INTERVAL_S = 2.0  # MLflow's default is 10 s: epochs on a GPU often take less
CHOICES = ("auto", "on", "off")

_logger = logging.getLogger(__name__)


def wanted(choice: str, gpus_per_trial: float) -> bool:
    """``--system-metrics``: auto samples where trials hold a GPU (where utilisation is the
    question: is the GPU kept busy?), on and off say it outright."""
    if choice == "auto":
        return gpus_per_trial > 0
    return choice == "on"


def monitors(gpu_ids=None) -> list:
    """MLflow's default monitors, as ``mlflow.system_metrics.SystemMetricsMonitor`` builds them;
    the GPU one only where a GPU answers (no NVIDIA driver or ROCm: absent, not an error),
    narrowed to ``gpu_ids`` (the node's GPU indices Ray assigned) when given."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    found = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    gpu = _gpu_monitor()
    if gpu is not None:
        _narrow(gpu, gpu_ids)
        found.append(gpu)
    return found


def _gpu_monitor():
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor

    for kind in (GPUMonitor, ROCMMonitor):  # NVIDIA first, then AMD, as MLflow tries them
        try:
            return kind()
        except Exception:  # noqa: BLE001 - no driver, no library, no device: no GPU metrics
            _logger.debug("no %s", kind.__name__, exc_info=True)
    return None


def _narrow(monitor, gpu_ids) -> None:
    """Keep the handles of the trial's GPUs only. Ray's GPU ids are the node's device indices
    (what it puts in CUDA_VISIBLE_DEVICES); NVML enumerates in PCI order, which CUDA follows
    on nodes of one GPU model. Ids that are not plain indices (UUIDs, MIG) leave all handles."""
    handles = getattr(monitor, "gpu_handles", None)
    if handles is None or not gpu_ids:
        return
    try:
        indices = [int(i) for i in gpu_ids]
    except (TypeError, ValueError):
        return
    if all(0 <= i < len(handles) for i in indices):
        monitor.gpu_handles = [handles[i] for i in indices]
        monitor.num_gpus = len(monitor.gpu_handles)


class EpochSampler:
    """Samples ``monitors`` every ``interval_s`` in a daemon thread; ``close_epoch(e)`` takes one
    more sample, aggregates the epoch's samples under MLflow's ``system/`` names and starts the
    next epoch. ``epochs`` keeps every epoch of this attempt, carried in each report like the
    trial's history, so a driver that missed a report still logs them."""

    def __init__(self, monitors_: list, interval_s: float = SAMPLE_INTERVAL_S):
        self.monitors = monitors_
        self.interval_s = interval_s
        self.epochs: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sample()  # psutil's CPU percentage is since the previous call: start the clock
        for monitor in self.monitors:
            monitor.clear_metrics()

    def start(self) -> "EpochSampler":
        self._thread = threading.Thread(target=self._run, name="xfer-system-metrics", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            for monitor in self.monitors:
                try:
                    monitor.collect_metrics()
                except Exception:  # noqa: BLE001 - a failed sample is a gap, not a failed trial
                    _logger.debug("system metrics sample failed", exc_info=True)

    def close_epoch(self, epoch: int) -> list[dict]:
        """The epochs so far, this one's aggregate added."""
        self._sample()
        with self._lock:
            entry = {"epoch": int(epoch)}
            for monitor in self.monitors:
                try:
                    values = monitor.aggregate_metrics()
                except Exception:  # noqa: BLE001 - e.g. a monitor with no sample
                    values = {}
                entry.update({PREFIX + k: float(v) for k, v in values.items()})
                monitor.clear_metrics()
        self.epochs.append(entry)
        return [dict(e) for e in self.epochs]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None


def start_sampler(gpu_ids=None, interval_s: float = SAMPLE_INTERVAL_S) -> EpochSampler | None:
    """A running sampler for this trial, or None (with a warning) where MLflow's monitors
    cannot start: the trial trains either way."""
    try:
        return EpochSampler(monitors(gpu_ids), interval_s).start()
    except Exception as exc:  # noqa: BLE001 - system metrics are never worth a failed trial
        _logger.warning("system metrics off for this trial: %s: %s", type(exc).__name__, exc)
        return None


def epoch_metrics(entries: list[dict], epochs: set[int], now: int) -> list[list]:
    """MLflow metric records (key, value, timestamp, step = epoch) of the ``system/`` values
    of ``entries`` whose epoch is in ``epochs``."""
    return [[key, float(value), now, int(entry["epoch"])]
            for entry in entries if int(entry.get("epoch", 0)) in epochs
            for key, value in entry.items() if key.startswith(PREFIX)]
