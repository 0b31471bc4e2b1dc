"""A Tune callback, run in the sweep's driver, that records every trial in MLflow exactly once.

Why not Ray's MLflowLoggerCallback: it keeps its trial -> run map in memory only, so a
restored sweep opens a second run for every trial, and it has no parent run. Here:

- one parent run per sweep (created by the driver, reused on ``--resume``);
- one child run per trial, found again by its tags (``xfer.sweep_id`` + ``xfer.trial_id``)
  whenever this driver has not seen the trial yet: after a retry, a restore, a driver restart;
- per-epoch metrics are logged from the trial's ``history`` (every report carries it, a few
  hundred bytes), for the epochs MLflow does not have yet. A retried trial resumes from its
  last checkpoint and reports only later epochs, and epochs reported while no driver was
  listening are back-filled: each step is logged once.
- the driver is the only MLflow writer, so trials on worker nodes need no route to the
  tracking server, and a SQLite store never sees concurrent writers.
- every write goes through a ``SpoolingWriter`` (``xfer.tracking.spool``): while the tracking
  server does not answer, records go to a durable local journal, and a trial seen for the first
  time gets a placeholder run id; the journal is replayed in order, placeholders resolved by the
  same tag search, as soon as the server answers (checked at the next callback, at most every
  10 s) and at the sweep's end. An outage neither stops nor stalls the sweep, and nothing is
  dropped or logged twice.

Epoch milestones (``--epoch-milestones``): a trial that also keeps its result as of epochs
m < E gets one more child run per milestone, as soon as a report carries it: named and
param'd as the m-epoch trial it stands for (``epochs`` = m), with that run's epochs, final
metrics and artifacts, tagged ``xfer.milestone_of`` (the trial's id) and
``xfer.milestone_epoch``, ``xfer.role=milestone``, and FINISHED at once. Every report carries
every milestone reached so far, so a milestone missed while no driver listened is logged from
a later report; found again by those tags, it is written once.

What the MLflow UI shows of a child run (trial or milestone):

- its dataset as an input (``log_inputs``: name, digest, source, context "training"), which fills
  the runs table's Dataset column (``dataset_input``);
- the standard source tags, set at creation like ``mlflow.start_run`` sets them: the study
  script, LOCAL or JOB, the git commit, the user (``source_tags``; the parent gets the same);
- final metrics (test scores, costs, silhouettes) at step 0: the UI draws a metric whose steps
  reach 1 or more as a line chart, and a single point at step = epochs_run as a one-dot chart;
  at step 0 it shows a value. Nothing reads their step: a run's epoch count is the metric
  ``epochs_run``, the epochs' own metrics keep step = epoch;
- with ``--system-metrics`` on, MLflow's system metrics per epoch (``system/...``, step = epoch;
  sampled in the trial, ``xfer.sweep.system_metrics``), in the UI's "System metrics" tab.

Statuses: a trial that completes, including one ASHA stopped early (``epochs_run`` <
``epochs``), is FINISHED; one that exhausts its retries is FAILED with its error as the tag
``xfer.error``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from ray.tune import Callback

from xfer import names
from xfer.names import (DEFAULTED_PARAMS, EPOCH_STEP_METRICS, FINAL_METRICS, METRIC_RENAMES,
                        PARAMS_KNOWN_AFTER_START, STEP_MARKER, TRIAL_PARAMS)
from xfer.sweep import system_metrics
from xfer.sweep.study import resolve_trial, trial_name
from xfer.tracking.journal import placeholder
from xfer.tracking.runs import EMBEDDINGS_ARTIFACT, PREDICTIONS_ARTIFACT, ROC_ARTIFACT
from xfer.tracking.spool import SpoolingWriter

FINAL_STEP = 0  # final metrics: one value each, shown as a value, not a one-dot chart (docstring)
DATASET_CONTEXT = "training"  # the input tag mlflow.data.context of every child's dataset
_MAX_ERROR_TAG = 5000  # MLflow tag values are capped (8000 chars in MLflow 3)


class MlflowSweepLogger(Callback):
    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_id: str,
                 swept_axes: list[str], echo=print, confusable=(), spool_dir: str | None = None,
                 spool_header: dict | None = None, dataset: dict | None = None,
                 run_tags: dict | None = None):
        self.tracking_uri = tracking_uri
        # spool_dir: where records wait while MLflow is down (tune_run: the sweep's storage folder)
        self.writer = SpoolingWriter(tracking_uri, spool_dir or Path("xfer_spool", sweep_id).resolve(),
                                     header=spool_header, echo=echo)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.swept_axes = list(swept_axes)
        self.confusable = [tuple(pair) for pair in confusable]  # the dataset audit's pairs
        self.dataset = dataset  # dataset_input(...): every child run's input
        self.run_tags = dict(run_tags or {})  # source_tags(...): set on every child run
        self.echo = echo
        self.runs: dict[str, str] = {}  # trial_id -> run_id
        self.logged_through: dict[str, int] = {}  # trial_id -> last epoch logged
        # trial_id -> param keys logged: params that only the trial knows arrive with its
        # results (under FIFO most of them with the last one), each key is logged once
        self.param_keys: dict[str, set[str]] = {}
        self.nodes: dict[str, str] = {}  # trial_id -> node ip of its latest reported epoch
        # trials whose run was already FINISHED when this driver found it: a restored sweep
        # can restart a trial whose completion Ray's last state snapshot missed; its run is
        # final and is neither reopened nor written again
        self.closed: set[str] = set()
        self.milestones_logged: set[tuple[str, str]] = set()  # (trial_id, epoch)
        # trials this driver ended (FINISHED, FAILED) and has not seen start again: the others
        # with a run are open when Tune stops, and on_experiment_end ends them
        self.ended: set[str] = set()

    # Ray pickles the RunConfig, callbacks included, into the sweep's state so that
    # Tuner.restore brings this logger back; the writer reopens its spool from disk.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("client", None)
        state["echo"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("dataset", None)
        self.__dict__.setdefault("run_tags", {})
        self.__dict__.setdefault("ended", set())
        self.echo = self.echo or print
        if "writer" not in self.__dict__:  # pickled by an xfer without the spool
            self.writer = SpoolingWriter(self.tracking_uri, Path("xfer_spool", self.sweep_id).resolve())
        self.writer.echo = self.echo

    # --- Tune hooks ---------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        self.ended.discard(trial.trial_id)
        self._run_for(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.ended.discard(trial.trial_id)
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._run_for(trial)
        if trial.trial_id in self.closed:
            return
        self._log_epochs(trial, run_id, result)
        self._log_milestones(trial, result)
        if result.get(names.EPOCH):
            self.echo(f"[{trial_name(_values(trial), self.swept_axes)}] epoch {result[names.EPOCH]}/"
                      f"{_values(trial)['epochs']}  train_acc {result.get(names.TRAIN_ACCURACY, math.nan):.3f}  "
                      f"val_acc {result.get(names.VAL_ACCURACY, math.nan):.3f}  "
                      f"{result.get(names.EPOCH_TIME_S, math.nan):.1f} s")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = self._close(trial, "FINISHED")
        if result is not None:
            stopped = result.get(names.EPOCHS_RUN, 0) < _values(trial)["epochs"]
            self.echo(f"[{trial_name(_values(trial), self.swept_axes)}] done: test_acc "
                      f"{result.get(names.TEST_ACCURACY, math.nan):.3f} after {result.get(names.EPOCHS_RUN, 0)} "
                      f"epochs{' (stopped early by the scheduler)' if stopped else ''}")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = _error_text(trial)
        if self._close(trial, "FAILED", error) is not None:
            last_line = error.strip().splitlines()[-1] if error.strip() else "unknown error"
            self.echo(f"[{trial_name(_values(trial), self.swept_axes)}] FAILED: {last_line}")

    def on_experiment_end(self, trials, **info):
        """Tune stopped with trials unfinished (it calls this on every stop): interrupted
        (``xfer.sweep.interrupts``: their runs end KILLED, tagged ``xfer.interrupted`` with the
        signal) or Tune itself failed (FAILED, tagged ``xfer.error``). Either way no child run is
        left RUNNING, and ``--resume`` reopens them (a KILLED or FAILED run is found again and set
        RUNNING). Trials whose runs this driver never opened have nothing open here. Not by
        ``trial.status``: Tune's stop sets a stopped trial TERMINATED, as if it had completed."""
        from xfer.sweep.interrupts import received

        why = received()
        for trial in trials:
            if (trial.trial_id not in self.runs or trial.trial_id in self.closed
                    or trial.trial_id in self.ended):
                continue
            run_id = self.runs.pop(trial.trial_id)  # a restarted trial looks its run up again
            tags = ({names.INTERRUPTED_TAG: why} if why else
                    {names.ERROR_TAG: "the sweep stopped before this trial finished"})
            try:
                self.writer.submit({"op": "log_batch", "run": run_id, "tags": tags})
                self.writer.submit({"op": "set_terminated", "run": run_id,
                                    "status": "KILLED" if why else "FAILED", "end_time": _now_ms()})
            except Exception as exc:  # noqa: BLE001 - the sweep's own ending must go on
                self.echo(f"could not end run {run_id}: {type(exc).__name__}: {exc}")

    def _close(self, trial, status: str, error: str | None = None) -> dict | None:
        """Log what the trial's last result holds and end its run; None if already final."""
        run_id = self._run_for(trial)
        if trial.trial_id in self.closed:
            return None
        result = trial.last_result or {}
        self._log_epochs(trial, run_id, result)
        self._log_milestones(trial, result)
        if result:
            self._log_final(run_id, result)
        if error is not None:
            self.writer.submit({"op": "log_batch", "run": run_id,
                                "tags": {names.ERROR_TAG: _tail(error, _MAX_ERROR_TAG)}})
        self.writer.submit({"op": "set_terminated", "run": run_id, "status": status,
                            "end_time": _now_ms()})
        self.ended.add(trial.trial_id)
        return result

    # --- runs ---------------------------------------------------------------------------------

    def _run_for(self, trial) -> str:
        """This trial's child run: cached, else found by tags, else created (exactly once). A
        FAILED run (a failed trial retried) is reopened; a FINISHED one is final. While MLflow
        is down: a placeholder id, resolved by the same search when the spool is replayed."""
        if trial.trial_id in self.runs:
            return self.runs[trial.trial_id]
        values = _values(trial)
        tags = {names.TRIAL_TAG: trial.trial_id, names.ROLE_TAG: names.ROLE_TRIAL}
        if values.get("epoch_milestones"):
            tags[names.EPOCH_MILESTONES_TAG] = ",".join(str(m) for m in values["epoch_milestones"])
        opened = self._open(placeholder(trial.trial_id), values, tags,
                            match={names.TRIAL_TAG: trial.trial_id})
        if opened is None:  # spooled: the run is new as far as this driver can tell
            run_id, self.logged_through[trial.trial_id] = placeholder(trial.trial_id), 0
        else:
            run_id, self.logged_through[trial.trial_id] = opened["run_id"], opened["through"]
            if opened["closed"]:
                self.closed.add(trial.trial_id)
        self.runs[trial.trial_id] = run_id
        return run_id

    def _open(self, run: str, values: dict, tags: dict, match: dict) -> dict | None:
        """Find or create the child run for ``values`` (see ``_run_for``); None when spooled."""
        params = {k: values[k] for k in TRIAL_PARAMS if k in values}
        for key, value in _trial_defaults(DEFAULTED_PARAMS).items():
            params.setdefault(key, value)
        if values.get("init") == "scratch":
            params[names.WEIGHTS] = "none"  # the sweep's weights apply to the pretrained arm only
        opened = self.writer.submit({
            "op": "open_run", "run": run, "experiment_id": self.experiment_id,
            "match_tags": {names.SWEEP_TAG: self.sweep_id, **match},
            "run_name": trial_name(values, self.swept_axes), "start_time": _now_ms(),
            "tags": {**self.run_tags, names.PARENT_TAG: self.parent_run_id,
                     names.SWEEP_TAG: self.sweep_id, **tags},
            "params": params, "marker": STEP_MARKER})
        if self.dataset and not (opened and opened["closed"]):
            # a run found again may have it already: the replay skips an input the run has
            self.writer.submit({"op": "log_inputs", "run": opened["run_id"] if opened else run,
                                "datasets": [{**self.dataset, "tags": {names.DATASET_CONTEXT_TAG: DATASET_CONTEXT}}]})
        return opened

    def _log_milestones(self, trial, result: dict) -> None:
        """One finished child run per milestone the result carries and this driver has not
        logged: the m-epoch trial's run, measured inside this one (module docstring)."""
        for epoch, entry in sorted((result.get(names.MILESTONES) or {}).items(), key=lambda kv: int(kv[0])):
            if (trial.trial_id, epoch) in self.milestones_logged:
                continue
            self.milestones_logged.add((trial.trial_id, epoch))
            values = {**_values(trial), "epochs": int(epoch)}
            values.pop("epoch_milestones", None)
            match = {names.MILESTONE_OF_TAG: trial.trial_id, names.MILESTONE_EPOCH_TAG: epoch}
            run = placeholder(f"{trial.trial_id}@ep{epoch}")
            opened = self._open(run, values, {**match, names.ROLE_TAG: names.ROLE_MILESTONE}, match)
            if opened is not None:
                if opened["closed"]:
                    continue  # logged whole by an earlier driver
                run = opened["run_id"]
            history = [h for h in result.get(names.HISTORY, [])
                       if h[names.EPOCH] <= entry.get(names.EPOCHS_RUN, 0)]
            now = _now_ms()
            self.writer.submit({
                "op": "log_batch", "run": run, "after_step_of": STEP_MARKER,
                "metrics": _epoch_metrics(history, now) + _system_metrics(result, history, now),
                "params": {k: str(v) for k, v in _params_known_after_start(result).items()}})
            self._log_final(run, {**entry, names.CLASSES: result.get(names.CLASSES, [])})
            self.writer.submit({"op": "set_terminated", "run": run, "status": "FINISHED", "end_time": now})

    def _log_epochs(self, trial, run_id: str, result: dict) -> None:
        """Per-epoch metrics (step = epoch) for epochs MLflow does not have yet."""
        done = self.logged_through.get(trial.trial_id, 0)
        history, now = [h for h in _history(result) if h[names.EPOCH] > done], _now_ms()
        # system metrics ride in the same batch as their epochs' val_accuracy (the replay's
        # after_step_of keeps or skips an epoch whole)
        metrics = _epoch_metrics(history, now) + _system_metrics(result, history, now)
        logged = self.param_keys.setdefault(trial.trial_id, set())
        params = {k: str(v) for k, v in _params_known_after_start(result).items() if k not in logged}
        logged.update(params)
        tags = {}
        node = result.get(names.NODE_IP)
        if node and self.nodes.get(trial.trial_id) != node:
            # the node of the latest epoch; a trial retried on another node says so here
            self.nodes[trial.trial_id] = node
            tags = {names.NODE_TAG: node}
        if metrics or params or tags:
            # after_step_of: a replay skips epochs the run already has (a run found again)
            self.writer.submit({"op": "log_batch", "run": run_id, "metrics": metrics, "params": params,
                                "tags": tags, "after_step_of": STEP_MARKER})
        if history:  # in MLflow or in the spool, which replays it: either way, logged
            self.logged_through[trial.trial_id] = max(int(h[names.EPOCH]) for h in history)

    def _log_final(self, run_id: str, result: dict) -> None:
        now = _now_ms()
        step = FINAL_STEP
        metrics = [[key, float(result[key]), now, step] for key in FINAL_METRICS
                   if isinstance(result.get(key), (int, float)) and not isinstance(result.get(key), bool)]
        with tempfile.TemporaryDirectory() as tmp:
            classes = result.get(names.CLASSES, [])
            if result.get(names.CONFUSION_MATRIX) is not None:
                write_confusion_artifacts(result[names.CONFUSION_MATRIX], classes, Path(tmp), self.confusable)
            if result.get(names.ROC_CURVE):
                (Path(tmp) / ROC_ARTIFACT).write_text(json.dumps(result[names.ROC_CURVE]))
            if result.get(names.TEST_PREDICTIONS):
                (Path(tmp) / PREDICTIONS_ARTIFACT).write_text(json.dumps(result[names.TEST_PREDICTIONS]))
            if result.get(names.EMBEDDINGS):
                silhouettes = write_embedding_artifacts(result[names.EMBEDDINGS], classes, Path(tmp))
                metrics += [[k, v, now, step] for k, v in silhouettes.items()]
            self.writer.submit({"op": "log_batch", "run": run_id, "metrics": metrics})
            if any(Path(tmp).iterdir()):
                self.writer.submit({"op": "log_artifacts", "run": run_id}, files=tmp)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _epoch_metrics(history: list[dict], now: int) -> list[list]:
    """MLflow metric records (key, value, timestamp, step = epoch) for these epochs."""
    return [[METRIC_RENAMES.get(key, key), float(entry[key]), now, int(entry[names.EPOCH])]
            for entry in history for key in EPOCH_STEP_METRICS if key in entry]


def _system_metrics(result: dict, history: list[dict], now: int) -> list[list]:
    """The trial's ``system/`` metrics (step = epoch) for the epochs of ``history``."""
    epochs = {int(h[names.EPOCH]) for h in history}
    return system_metrics.epoch_metrics(result.get(names.SYSTEM_METRICS) or [], epochs, now)


def _history(result: dict) -> list[dict]:
    """The epochs a result holds: its ``history`` (a result with the test scores carries every
    epoch so far, which back-fills epochs no driver heard), else the one epoch it reports
    (under FIFO a trial's reports carry only their epoch until the last)."""
    if result.get(names.HISTORY):
        return result[names.HISTORY]
    return [result] if result.get(names.EPOCH) else []


def _values(trial) -> dict:
    return resolve_trial(trial.config)


def study_script(study_name: str) -> str:
    """The script a study runs as, relative to the repository (``python sweeps/<study>.py``,
    locally and as ``ray job submit``'s entrypoint)."""
    return f"sweeps/{study_name}.py"


def source_tags(script: str, sha: str) -> dict[str, str]:
    """MLflow's standard source tags, which ``mlflow.start_run`` would set and ``create_run``
    does not: the study script (sweeps/<study>.py, as run locally and by ``ray job submit``), how
    it ran (JOB under ``ray job submit``, whose driver has RAY_JOB_CONFIG_JSON_ENV_VAR, else
    LOCAL), the commit (without xfer.git_sha's "-dirty", which the runs keep in that tag; left out
    when unknown), the OS user (also the run's user_id)."""
    tags = {names.SOURCE_NAME_TAG: script,
            names.SOURCE_TYPE_TAG: "JOB" if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") else "LOCAL",
            names.USER_TAG: _os_user()}
    commit = sha.removesuffix("-dirty")
    if commit and commit != "unknown":
        tags[names.SOURCE_COMMIT_TAG] = commit
    return tags


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container user with no passwd entry and no $USER
        return "unknown"


def dataset_input(meta: dict, images, labels) -> dict:
    """The packed dataset (its dataset.json, with "path", and its arrays) as an MLflow dataset
    input: a name that says what it is (kind, preset, seed, image size), a digest of its content
    (the images' sha256 that dataset.json records, else computed here, and the labels' sha256:
    equal digests mean equal pixels and labels; dataset.json itself is no key, it holds timings
    and where it was built), the folder as its source."""
    images_sha256 = (meta.get("packed") or {}).get("images_sha256")
    if not images_sha256:  # a dataset packed before the fingerprint: one pass over the array
        images_sha256 = hashlib.sha256(memoryview(np.ascontiguousarray(images)).cast("B")).hexdigest()
    labels_sha256 = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()
    digest = hashlib.sha256(f"{images_sha256}:{labels_sha256}".encode()).hexdigest()
    classes = meta.get("classes", meta.get("families")) or []
    profile = {"num_images": int(len(labels)), "num_classes": len(classes) or None,
               "image_size": meta.get("image_size")}
    return {"name": f"{meta.get('kind', 'pdf')}-{meta.get('preset')}-seed{meta.get('seed')}-"
                    f"{meta.get('image_size')}px",
            "digest": digest[:16], "source_type": "local", "source": str(meta.get("path", "")),
            "profile": json.dumps({k: v for k, v in profile.items() if v is not None})}


def _trial_defaults(keys: tuple[str, ...]) -> dict:
    """TrialConfig's defaults for ``keys`` (xfer.train is imported by the driver already)."""
    from dataclasses import fields

    from xfer.train import TrialConfig

    return {f.name: f.default for f in fields(TrialConfig) if f.name in keys}


def _params_known_after_start(result: dict) -> dict:
    """Params that only the trial knows (resolved weights, split sizes, input size)."""
    return {key: result[key] for key in PARAMS_KNOWN_AFTER_START if result.get(key) is not None}


def write_embedding_artifacts(embeddings: dict, classes: list[str], out: Path) -> dict[str, float]:
    """``embeddings.json`` (2-D points, labels and silhouettes per stage) and one
    ``embedding_<stage>.png`` each; returns the silhouette metrics to log with the run."""
    from xfer.report.trial_figures import plot_stages

    (out / EMBEDDINGS_ARTIFACT).write_text(json.dumps(embeddings))
    plot_stages(embeddings, classes, out)
    metrics = {}
    for stage, entry in embeddings.get("stages", {}).items():
        for kind in ("features", "2d"):
            value = entry.get(f"silhouette_{kind}")
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics[names.SILHOUETTE_METRIC.format(stage=stage, kind=kind)] = float(value)
    return metrics


def write_confusion_artifacts(matrix: list[list[int]], classes: list[str], out: Path,
                              confusable=()) -> None:
    """``confusion_matrix.json`` and ``confusion_matrix.png`` (rows: true class; the audit's
    indistinguishable pairs outlined)."""
    (out / "confusion_matrix.json").write_text(json.dumps({"classes": classes, "matrix": matrix}))
    from xfer.report.trial_figures import plot_confusion_matrix

    plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png", confusable=confusable)


def _tail(text: str, limit: int) -> str:
    """The end of a long traceback: the exception itself is its last line."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    try:
        if path and Path(path).is_file():
            return Path(path).read_text()
    except OSError:
        pass
    return str(getattr(trial, "error_msg", "") or "trial failed (no error text from Ray)")
