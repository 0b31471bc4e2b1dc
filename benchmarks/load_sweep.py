"""Load: hundreds of very short trials through the real stack (Ray Tune, the MlflowSweepLogger,
an MLflow SQLite store), to see whether the orchestration, and the driver as the only MLflow
writer, keeps up when trials are cheap.

The study is pdf_grid's machinery with a tiny preset built here: a small CNN at 32 px, 1 epoch,
dataset_size 40 (32 training images), FIFO, and a ``seed`` axis with one value per trial, so
every trial is a distinct configuration with its own child run. The sweep runs in this process
(``xfer.sweep.driver.main``), so the MLflow store's methods can be wrapped and counted:

    store calls    every call of the tracking store's methods (SqlAlchemyStore), reads included
    write calls    create_run, log_batch, set_tag, update_run_info (status changes), ...
    records        rows written: each param, metric value and tag, plus one per created run
    write rate     write calls (and records) per second of the sweep's trials phase
    store time     seconds spent inside store calls, and their share of the trials phase
    logger time    seconds in the logger's Tune hooks (store calls, the confusion-matrix figure,
                   artifact copies), all on the driver's one control loop

Afterwards it reads the store back and checks that every trial has exactly one child run, with
the right params, finished. Exits 1 if not.

    python benchmarks/load_sweep.py [--trials 200] [--model small_cnn] [--report]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import io
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xfer.sweep.sources import PdfData  # noqa: E402
from xfer.sweep.study import Preset, Study  # noqa: E402

DATASET_SIZE = 40  # 5 per class, the smallest the split takes: 24 train, 8 val, 8 test
FIXED = {"init": "scratch", "epochs": 1, "batch_size": 16, "lr": 0.05, "optimizer": "sgd",
         "dataset_size": DATASET_SIZE}
# helpers on the store class that do not touch the database
NOT_DB = ("sanitize_metric_value", "shut_down_async_logging", "flush_async_logging",
          "end_async_logging")
WRITES = ("create_experiment", "restore_experiment", "create_run", "log_batch", "log_param",
          "log_metric", "set_tag", "delete_tag", "update_run_info")


def load_study(trials: int, model: str) -> Study:
    return Study(name="load_sweep", default_preset="load", report_title="load benchmark", presets={
        "load": Preset(space={"seed": list(range(trials))}, fixed={**FIXED, "model": model},
                       data=PdfData(preset="seed", image_size=32), scheduler="fifo",
                       description=f"{trials} one-epoch trials")})


class StoreCounter:
    """Wraps every public method of MLflow's SQL tracking store: calls, records, seconds."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.records = 0
        self.seconds = 0.0
        self._originals = {}

    def __enter__(self):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        for name, method in inspect.getmembers(SqlAlchemyStore, inspect.isfunction):
            if not name.startswith("_") and name not in NOT_DB:
                self._originals[name] = method
                setattr(SqlAlchemyStore, name, self._wrap(name, method))
        return self

    def __exit__(self, *exc):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        for name, method in self._originals.items():
            setattr(SqlAlchemyStore, name, method)

    def _wrap(self, name, method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def counted(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls[name] += 1
                if name in WRITES:
                    self.records += self._rows(name, signature.bind(*args, **kwargs).arguments)
        return counted

    @staticmethod
    def _rows(name: str, arguments: dict) -> int:
        if name == "log_batch":
            return sum(len(arguments.get(k) or ()) for k in ("metrics", "params", "tags"))
        if name == "create_run":
            return 1 + len(arguments.get("tags") or ())
        return 1

    @property
    def write_calls(self) -> int:
        return sum(self.calls[name] for name in WRITES)


class LoggerClock:
    """Seconds the driver spends inside the MlflowSweepLogger's Tune hooks (store calls,
    confusion-matrix figures, artifact copies): Tune runs callbacks on the driver's one
    control loop, so this time is not spent scheduling trials."""

    HOOKS = ("on_trial_start", "on_trial_restore", "on_trial_result", "on_trial_complete",
             "on_trial_error")

    def __init__(self):
        self.seconds = 0.0
        self._originals = {}

    def __enter__(self):
        from xfer.sweep.mlflow_logger import MlflowSweepLogger

        for name in self.HOOKS:
            method = getattr(MlflowSweepLogger, name)
            self._originals[name] = method

            @functools.wraps(method)
            def timed(*args, _method=method, **kwargs):
                started = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - started
            setattr(MlflowSweepLogger, name, timed)
        return self

    def __exit__(self, *exc):
        from xfer.sweep.mlflow_logger import MlflowSweepLogger

        for name, method in self._originals.items():
            setattr(MlflowSweepLogger, name, method)


def check_runs(uri: str, trials: int, model: str) -> tuple[list[str], float]:
    """Every seed has exactly one FINISHED child run under the one parent, with its params."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("load_sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=50_000)
    parents = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    problems = []
    trial_seconds = sum(r.data.metrics.get("wall_time_s", 0.0) for r in children)
    if len(parents) != 1:
        return [f"{len(parents)} parent runs, expected 1"], trial_seconds
    parent = parents[0]
    seeds = Counter(r.data.params.get("seed") for r in children)
    if sorted(seeds) != sorted(str(s) for s in range(trials)) or set(seeds.values()) != {1}:
        duplicated = sorted(s for s, n in seeds.items() if n > 1)
        missing = sorted({str(s) for s in range(trials)} - set(seeds))
        problems.append(f"{len(children)} child runs for {trials} trials; seeds duplicated "
                        f"{duplicated[:10]}, missing {missing[:10]}")
    import numpy as np

    from xfer.data.splits import stratified_split

    # 5 images per class split 3:1:1 (val and test round up to one each), not 80:10:10
    n_train = len(stratified_split(np.arange(DATASET_SIZE) % 8, 0)["train"])
    expected = {"model": model, "init": "scratch", "dataset_size": str(DATASET_SIZE),
                "n_train": str(n_train), "epochs": "1", "batch_size": "16",
                "lr": "0.05", "optimizer": "sgd", "image_size": "32", "weights": "none",
                "dataset": "pdf-seed-seed0"}
    for run in children:
        wrong = {k: run.data.params.get(k) for k, v in expected.items() if run.data.params.get(k) != v}
        if wrong:
            problems.append(f"run {run.info.run_name}: params {wrong}, expected {expected}")
        if run.info.status != "FINISHED" or run.data.metrics.get("epochs_run") != 1.0:
            problems.append(f"run {run.info.run_name}: {run.info.status}, "
                            f"epochs_run {run.data.metrics.get('epochs_run')}")
        if (run.data.tags.get("mlflow.parentRunId") != parent.info.run_id
                or run.data.tags.get("xfer.sweep_id") != parent.data.tags["xfer.sweep_id"]):
            problems.append(f"run {run.info.run_name}: not tagged with the parent run and sweep id")
        if "test_accuracy" not in run.data.metrics or "val_accuracy" not in run.data.metrics:
            problems.append(f"run {run.info.run_name}: no test_accuracy / val_accuracy")
    if len({r.data.tags.get("xfer.trial_id") for r in children}) != len(children):
        problems.append("two child runs share a trial id")
    return problems, trial_seconds


def _start_private_ray() -> float:
    """A new local Ray for this process only, started before the driver (which then uses it).
    ``ray.init()`` without an address joins the latest ``ray start`` cluster on the machine,
    if there is one: on a shared machine that is someone else's, which may have no CPUs or be
    stopped mid-run. ``address="local"`` always starts a private one. Returns its start time."""
    import logging

    import ray

    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials, one per seed (default: 200)")
    parser.add_argument("--model", default="small_cnn", help="small_cnn or resnet10 (default: small_cnn)")
    parser.add_argument("--report", action="store_true",
                        help="also build the frontier report at the end (timed as its own phase)")
    args = parser.parse_args()
    from xfer.sweep.driver import main as sweep_main

    with tempfile.TemporaryDirectory(prefix="xfer-load-") as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ.update(MLFLOW_TRACKING_URI=uri, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                          MLFLOW_DISABLE_TELEMETRY="true")
        os.environ.pop("RAY_ADDRESS", None)
        argv = ["--storage", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
                "--cpus-per-trial", "1", "--gpus-per-trial", "0"] + ([] if args.report else ["--no-report"])
        output = io.StringIO()
        started = time.perf_counter()
        ray_start_s = _start_private_ray()
        old_cwd = os.getcwd()
        os.chdir(tmp)  # the report and any MLflow default paths land in the temp folder
        try:
            with StoreCounter() as store, LoggerClock() as logger, contextlib.redirect_stdout(output):
                code = sweep_main(load_study(args.trials, args.model), argv)
        finally:
            os.chdir(old_cwd)
            import ray

            ray.shutdown()
        wall = time.perf_counter() - started
        text = output.getvalue()
        if code != 0:
            print(text[-3000:])
            return 1
        summary = re.search(r"(\d+) trials finished, (\d+) failed, in \d+ s \((.*)\)", text)
        phases = {name.strip(): float(s) for name, s in re.findall(r"([a-z ]+) ([\d.]+) s", summary.group(3))}
        parallel = int(re.search(r"with (\d+) trials at once", text).group(1))
        problems, trial_seconds = check_runs(uri, args.trials, args.model)

    trials_s = phases["trials"]
    finished = int(summary.group(1))
    print(f"load_sweep: {args.trials} trials ({args.model}, 32 px, 1 epoch, dataset_size "
          f"{DATASET_SIZE}), {parallel} at once, {os.cpu_count()} cores, FIFO, "
          f"report {'on' if args.report else 'off'}; 1-min load average after: "
          f"{os.getloadavg()[0]:.1f}")
    print(f"finished {finished}, failed {summary.group(2)}; wall {wall:.1f} s; phases: ray start "
          f"{ray_start_s:.1f} s, {summary.group(3)}")
    print(f"throughput: {finished / trials_s * 60:.1f} trials/min in the trials phase, "
          f"{finished / wall * 60:.1f} trials/min end to end")
    print(f"trials' own wall_time_s: {trial_seconds / max(1, finished):.2f} s each on average; "
          f"{trial_seconds / (trials_s * parallel):.0%} of the {parallel} trial slots' time")
    print(f"MLflow store: {sum(store.calls.values())} calls ({store.write_calls} writes: "
          + ", ".join(f"{n} {store.calls[n]}" for n in WRITES if store.calls[n]) + "; reads: "
          + ", ".join(f"{n} {c}" for n, c in store.calls.most_common() if n not in WRITES) + ")")
    print(f"MLflow write rate: {store.write_calls / trials_s:.1f} write calls/s, "
          f"{store.records / trials_s:.1f} records/s ({store.records} records, "
          f"{store.records / max(1, finished):.1f} per trial); time in the store "
          f"{store.seconds:.1f} s = {store.seconds / trials_s:.1%} of the trials phase; "
          f"in the MlflowSweepLogger's hooks (store, figures, artifacts) {logger.seconds:.1f} s = "
          f"{logger.seconds / trials_s:.1%}")
    if problems:
        print(f"MLflow check FAILED ({len(problems)} problems):")
        for line in problems[:20]:
            print(f"  {line}")
        return 1
    print(f"MLflow check: 1 parent run, {args.trials} child runs, one per seed, FINISHED, "
          "params as configured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
