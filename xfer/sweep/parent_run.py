"""The sweep's parent run and its record: opened together, ended together.

``open_sweep`` creates (or, on ``--resume``, reopens) the parent run and writes the sweep's
record (``xfer_sweep.json``) as one step that a signal cannot split. ``SweepRecord`` keeps what
exists so far, so that the way out of a sweep (finished, failed, interrupted) can end it: a
parent run that exists is never left RUNNING, a record that exists says why it stopped.
Every write after the parent exists goes through the spool (``xfer.tracking.spool``), so a
tracking outage delays it and never loses it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from xfer.names import (DRIVER_LOST, FORECAST_AT, GIT_SHA_TAG, INTERRUPTED_TAG, PARENT_TAG, PRESET_TAG,
                        ROLE_PARENT, ROLE_TAG, SWEEP_TAG, TAG_PREFIX)
from xfer.sweep import interrupts
from xfer.sweep.options import SweepOptions
from xfer.sweep.storage import SweepStore
from xfer.sweep.study import Preset, SchedulerPlan
from xfer.tracking import redacted_uri

@dataclass
class SweepRecord:
    """What a sweep has made so far. ``experiment_id``, ``parent_run_id`` and ``meta`` are set by
    ``open_sweep``; ``done`` once the parent is FINISHED/FAILED and the record finished."""
    store: SweepStore
    experiment: str
    sweep_id: str
    tracking: str
    spool_dir: Path
    experiment_id: str | None = None
    parent_run_id: str | None = None
    meta: dict | None = None
    view_url: str = ""
    done: bool = False

    @property
    def spool_header(self) -> dict:
        """What the spool's journal names first: enough for ``xfer replay`` to find the sweep."""
        return {"sweep_id": self.sweep_id, "experiment": self.experiment,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                "tracking_uri": redacted_uri(self.tracking)}

    def writer(self, **kwargs):
        from xfer.tracking.spool import SpoolingWriter

        return SpoolingWriter(self.tracking, self.spool_dir, self.spool_header, **kwargs)

    def finish(self, writer, status: str, report_missing: bool) -> None:
        """The parent's end and the record's: both or neither (a signal waits for the block)."""
        with interrupts.deferred():
            writer.submit({"op": "set_terminated", "run": self.parent_run_id, "status": status,
                           "end_time": int(time.time() * 1000), "report_missing": report_missing})
            self.store.write_meta(self.experiment, self.sweep_id,
                                  {**self.meta, "finished": True, "state": "finished"})
            self.done = True
            interrupts.set_resumable(False)

    def end(self, status: str, tags: dict, state: str) -> None:
        """An interrupted or failed sweep's ending: the parent run KILLED or FAILED with the
        reason as a tag, the record ``state`` and not finished, so that ``--resume`` finds it.
        Best effort: the exception on its way out is the news."""
        if self.done:
            return
        if self.parent_run_id is not None:
            with contextlib.suppress(Exception):
                writer = self.writer(echo=lambda line: None)
                writer.submit({"op": "log_batch", "run": self.parent_run_id, "tags": tags})
                writer.submit({"op": "set_terminated", "run": self.parent_run_id, "status": status,
                               "end_time": int(time.time() * 1000)})
        if self.meta is not None:
            with contextlib.suppress(Exception):
                self.store.write_meta(self.experiment, self.sweep_id,
                                      {**self.meta, "finished": False, "state": state,
                                       **{k.removeprefix(TAG_PREFIX): v for k, v in tags.items()}})


def open_sweep(record: SweepRecord, client, options: SweepOptions, preset: Preset,
               scheduler: SchedulerPlan, previous: dict | None, weights: dict[str, str],
               study_card: dict | None, run_tags: dict):
    """Create (or reopen) the parent run and write the sweep's record, as one block a signal
    waits for. Returns the function that unregisters the second signal's hook (which ends the
    parent and its open child runs KILLED straight in MLflow)."""
    from xfer.provenance import git_sha, package_versions

    record.experiment_id = experiment_id(client, options.experiment)
    with interrupts.deferred():
        if previous:
            record.parent_run_id = previous["parent_run_id"]
        else:
            record.parent_run_id = create_parent(client, record.experiment_id, record.sweep_id, options,
                                                 preset, git_sha(), package_versions(), weights,
                                                 scheduler, run_tags)
        remove_hook = interrupts.on_hard_exit(lambda: end_open_runs_now(
            record.tracking, record.parent_run_id, {INTERRUPTED_TAG: interrupts.received() or "signal"}))
        record.view_url = runs_view_url(client, record.tracking, record.experiment_id, record.sweep_id)
        if previous:  # after what a killed driver left in the spool, if anything
            writer = record.writer()
            writer.submit({"op": "update_run", "run": record.parent_run_id, "status": "RUNNING"})
            end_runs_of_a_lost_driver(client, writer, record.experiment_id, record.parent_run_id)
        elif study_card is not None:
            log_study_card(record.writer(), record.parent_run_id, study_card)
        record.meta = {**record.spool_header, "preset": options.preset,
                       "started_at": previous["started_at"] if previous else time.time(),
                       "options": {k: str(v) for k, v in vars(options).items()}, "finished": False,
                       "state": "running"}
        record.store.write_meta(options.experiment, record.sweep_id, record.meta)
        interrupts.set_resumable(True)
    return remove_hook


def experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name)


def create_parent(client, experiment_id: str, sweep_id: str, options: SweepOptions,
                  preset: Preset, sha: str, packages: dict, weights: dict[str, str],
                  scheduler: SchedulerPlan, run_tags: dict | None = None) -> str:
    """The sweep's parent run. ``run_tags``: MLflow's source tags (``mlflow_logger.source_tags``),
    the same as every child's."""
    from mlflow.entities import Param

    run = client.create_run(experiment_id, run_name=f"sweep-{options.preset}-{sweep_id[-20:]}",
                            tags={**(run_tags or {}), SWEEP_TAG: sweep_id, ROLE_TAG: ROLE_PARENT,
                                  PRESET_TAG: options.preset, GIT_SHA_TAG: sha})
    params = {"preset": options.preset, "search": options.search, "scheduler": options.scheduler,
              "scheduler_detail": scheduler.describe(),
              "search_space": json.dumps(preset.space), "fixed": json.dumps(preset.fixed, default=str),
              "num_samples": options.num_samples, "max_concurrent": options.max_concurrent,
              "gpus_per_trial": options.gpus_per_trial, "cpus_per_trial": options.cpus_per_trial,
              "storage": options.storage, "git_sha": sha,
              "pretrained_weights": weights_param(weights), "arms": json.dumps(preset.arms),
              "data": options.data or "preset", "system_metrics": options.system_metrics,
              "packages": json.dumps(packages),
              "score_transferability": options.score_transferability}
    if preset.forecast_at:
        params[FORECAST_AT] = ",".join(str(n) for n in preset.forecast_at)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def log_study_card(writer, parent_run_id: str, card: dict) -> None:
    """The card as the parent's ``study_card.json``, through the spool like every other write:
    a tracking outage right after the parent was created delays it, never loses it (the spool
    copies the file before the temporary folder goes)."""
    from xfer.report.card import ARTIFACT

    with tempfile.TemporaryDirectory(prefix="xfer-study-card-") as folder:
        (Path(folder) / ARTIFACT).write_text(json.dumps(card, indent=2, default=str))
        writer.submit({"op": "log_artifacts", "run": parent_run_id}, files=folder)


def weights_param(weights: dict[str, str]) -> str | None:
    """One source for every model (the usual case) reads as that source."""
    sources = set(weights.values())
    if not sources:
        return None
    return next(iter(sources)) if len(sources) == 1 else json.dumps(weights)


def runs_view_url(client, tracking: str, experiment_id: str, sweep_id: str) -> str:
    """The URL of this sweep's runs table (``xfer.tracking.ui``). The view is a convenience: if
    saving it fails, the URL of the experiment's runs table stands in, and the sweep goes on."""
    from xfer.tracking import ui

    try:
        key = ui.publish_sweep_view(client, experiment_id, sweep_id)
    except Exception:  # noqa: BLE001 - see the docstring
        key = None
    return ui.runs_url(ui.ui_base(tracking), experiment_id, key)


def _open_children(client, experiment_id: str, parent_run_id: str) -> list:
    """The parent's child runs still RUNNING."""
    return client.search_runs(
        [experiment_id], max_results=1000,
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'")


def end_runs_of_a_lost_driver(client, writer, experiment_id: str, parent_run_id: str) -> None:
    """``--resume``'s first act on the child runs: those still RUNNING belong to a driver that
    ended without a handler (SIGKILL, a lost machine), since every other way out ends them. They
    end KILLED, tagged ``xfer.interrupted: driver lost``, and each is reopened (RUNNING) when its
    trial reports again. Left RUNNING, a run whose trial has not reported again when this driver
    is interrupted would stay RUNNING: the interrupt ends only the runs this driver opened."""
    for child in _open_children(client, experiment_id, parent_run_id):
        writer.submit({"op": "log_batch", "run": child.info.run_id, "tags": {INTERRUPTED_TAG: DRIVER_LOST}})
        writer.submit({"op": "set_terminated", "run": child.info.run_id, "status": "KILLED",
                       "end_time": int(time.time() * 1000)})


def end_open_runs_now(tracking: str, parent_run_id: str, tags: dict) -> None:
    """A second signal's last act: the parent and its child runs still RUNNING end KILLED,
    straight in MLflow (no spool, no retries beyond what the driver's client allows; the caller
    bounds the time). A child run still in the spool stays there, and ``--resume`` or
    ``xfer replay`` closes it."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking)
    open_children = _open_children(client, client.get_run(parent_run_id).info.experiment_id, parent_run_id)
    for run_id in [parent_run_id, *(child.info.run_id for child in open_children)]:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.set_terminated(run_id, "KILLED")
