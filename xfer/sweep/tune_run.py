"""The Ray Tune part of a sweep: start or join Ray, open the parent run, build the Tuner (or
restore it), run it, close the parent run.

ASHA and trials of different epoch budgets. ASHA's time unit is the epoch and ``max_t`` the
largest budget in the space; its first rung is at the smallest budget (``grace_period``), so
no trial is stopped before every budget's first point is measured. A trial whose budget is
smaller than a rung simply finishes there and is never compared at that rung. At each rung
trials are compared at the *same* epoch count, and with the constant learning rate the PDF
presets use, a 10-epoch trial and a 50-epoch trial of the same configuration are identical
through epoch 10, so comparing them there is fair. With a schedule that depends on the total
budget (cosine), a short trial anneals earlier and would look better at an early rung than a
long one; use ``--scheduler fifo`` for such spaces (the plan says which scheduler is in force).
Rungs compare a trial only with trials of its own dataset size, init and seed
(``xfer.sweep.schedulers.GroupedASHA``), and only on validation accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from xfer.errors import exception_line
from xfer.sweep import interrupts
from xfer.sweep.options import SweepOptions
from xfer.tracking import redacted_uri
from xfer.sweep.storage import SweepStore
from xfer.sweep.study import (ARMS_TABLE, WEIGHTS_BY_MODEL, Preset, SchedulerPlan, Study,
                              resolve_trial, trial_name)
from xfer.sweep.trial import SCORE_TEST_EACH_EPOCH, SharedData, run_trial, shareable_weights


def launch(*, study: Study, preset: Preset, options: SweepOptions, store: SweepStore,
           sweep_id: str, previous: dict | None, data_dir, weights: dict[str, str], tracking: str,
           local_ray: bool, phases, default_size: int | None = None,
           study_card: dict | None = None, plan=None) -> dict:
    """Run the sweep's trials under Ray Tune, logging to MLflow through the spool. ``study_card``
    (``xfer.sweep.driver.study_card``) is logged on the parent run it creates as
    ``study_card.json``, for the report's replication card. ``plan`` (``xfer.sweep.plan.Plan``)
    feeds the live progress line's ETA (``xfer.sweep.progress``); without it, no progress line."""
    import mlflow
    import ray
    from ray import tune

    from xfer.data.tensors import read_packed_arrays
    from xfer.provenance import git_sha, package_versions
    from xfer.sweep.mlflow_logger import MlflowSweepLogger, dataset_input, source_tags, study_script
    from xfer.sweep.progress import SweepProgress, lines_above_bar
    from xfer.tracking.spool import SpoolingWriter, set_driver_client_env

    _keep_credentials_out_of_runtime_envs()
    # Tune's own CSV/JSON/TensorBoard loggers duplicate what MLflow records; skip their I/O
    # (and the warning that the results they would have written cannot be read back).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Checkpoints come every epoch and epochs can take a second: Tune's state snapshots
    # follow them by design (num_to_keep forces one), so its "too frequent" warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    env = _trial_env(tracking)
    started_ray = not ray.is_initialized()
    # Set as the sweep gets them, for the ending an interrupt or a failure gives it (below):
    # a parent run that exists is never left RUNNING, a record that exists says why it stopped.
    parent_run_id = meta = spool_header = None
    done = False  # the parent FINISHED/FAILED and the record finished: nothing left to mark
    spool_dir = spool_folder(store, options.experiment, sweep_id)
    remove_hook = lambda: None  # noqa: E731
    try:
        if started_ray:
            # a signal during ray.init is held until it returns: Ray half-started cannot be stopped
            with phases("ray start"), interrupts.deferred():
                _start_ray(local_ray, env)
        _check_cluster_resources(options)
        # A failed MLflow call costs seconds, not MLflow's default ~4 minutes of retries; the
        # sweep needs the server to start, then rides out outages with the spool.
        set_driver_client_env()
        client = mlflow.tracking.MlflowClient(tracking)
        experiment_id = _experiment_id(client, options.experiment)
        run_tags = source_tags(study_script(study.name), git_sha())  # MLflow's, on every run
        # the parent run and the sweep's record: both or neither (a signal waits for the block)
        with interrupts.deferred():
            if previous:
                parent_run_id = previous["parent_run_id"]
            else:
                parent_run_id = _create_parent(client, experiment_id, sweep_id, options, preset,
                                               git_sha(), package_versions(), weights,
                                               _scheduler_plan(preset, options), run_tags)
            # a second signal ends the driver at once: the parent still ends KILLED (best effort)
            remove_hook = interrupts.on_hard_exit(
                lambda: _end_parent_now(tracking, parent_run_id, "KILLED",
                                        {INTERRUPTED_TAG: interrupts.received() or "signal"}))
            view_url = _runs_view_url(client, tracking, experiment_id, sweep_id)
            spool_dir = spool_folder(store, options.experiment, sweep_id)
            spool_header = {"sweep_id": sweep_id, "experiment": options.experiment,
                            "experiment_id": experiment_id, "parent_run_id": parent_run_id,
                            "tracking_uri": redacted_uri(tracking)}
            if previous:  # after what a killed driver left in the spool, if anything
                SpoolingWriter(tracking, spool_dir, spool_header).submit(
                    {"op": "update_run", "run": parent_run_id, "status": "RUNNING"})
            elif study_card is not None:
                log_study_card(SpoolingWriter(tracking, spool_dir, spool_header), parent_run_id, study_card)
            meta = {"sweep_id": sweep_id, "parent_run_id": parent_run_id, "experiment": options.experiment,
                    "experiment_id": experiment_id, "tracking_uri": redacted_uri(tracking),
                    "preset": options.preset,
                    "started_at": previous["started_at"] if previous else time.time(),
                    "options": {k: str(v) for k, v in vars(options).items()}, "finished": False,
                    "state": "running"}
            store.write_meta(options.experiment, sweep_id, meta)
            interrupts.set_resumable(True)

        images, labels, dataset_meta = read_packed_arrays(data_dir)
        # offline-pretrained weights live in this machine's cache: ship their bytes to every node
        shared = SharedData(images=images, labels=labels, meta=dataset_meta,
                            weight_files=shareable_weights(weights.values()))
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, shared=shared,
                                 system_metrics=options.samples_system_metrics),
            {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
        swept = [axis for axis, values in preset.axes().items() if len(values) > 1]
        audit_path = Path(data_dir) / "audit.json"
        confusable = ([p["classes"] for p in json.loads(audit_path.read_text())["confusable"]]
                      if audit_path.is_file() else [])
        logger = MlflowSweepLogger(tracking, experiment_id, parent_run_id, sweep_id, swept,
                                   confusable=confusable, spool_dir=str(spool_dir),
                                   spool_header=spool_header,
                                   dataset=dataset_input(dataset_meta, images, labels),
                                   run_tags=run_tags)
        # the live progress line (xfer.sweep.plan.Plan ``plan``: its ETA starts from the estimate)
        progress = ([SweepProgress.from_plan(plan, options.progress_interval)]
                    if plan is not None and options.progress_interval > 0 else [])
        run_config = tune.RunConfig(
            name=sweep_id, storage_path=store.experiment_root(options.experiment),
            storage_filesystem=store.fs if store.is_s3 else None,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[logger, *progress], verbose=0)
        path = store.display(options.experiment, sweep_id)
        ray_path = store.sweep_path(options.experiment, sweep_id)
        filesystem = store.fs if store.is_s3 else None
        if previous and tune.Tuner.can_restore(ray_path, storage_filesystem=filesystem):
            tuner = tune.Tuner.restore(ray_path, trainable, resume_unfinished=True,
                                       resume_errored=True, storage_filesystem=filesystem)
            print(f"resuming sweep {sweep_id} from {path}")
        else:
            param_space, tune_config = _search(preset, options, study, weights, default_size)
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                               run_config=run_config)
        with interrupts.tune_loop(), phases("trials"), lines_above_bar(enabled=bool(progress)):
            results = tuner.fit()  # a signal stops it like Tune's Ctrl-C, then raises Interrupted

        finished = [r for r in results if r.error is None]
        failed = [r for r in results if r.error is not None]
        # The callback that logged the trials may be a copy Tuner.restore unpickled; the
        # spool on disk is the one truth. Replay what waits, now, whatever the retry interval.
        writer = SpoolingWriter(tracking, spool_dir, spool_header)
        writer.drain()
        report = None
        with phases("report"):
            if finished and options.report and writer.pending:
                print(f"report skipped: MLflow does not have the sweep's records yet; after the replay "
                      f"below, run: xfer frontier --experiment {options.experiment} --sweep-id "
                      f"{sweep_id} --out {_report_dir(sweep_id)} --log-to-parent")
            elif finished and options.report:
                report = _report(options, study, sweep_id, tracking)
        with interrupts.deferred():  # the parent's end and the record's: both or neither
            writer.submit({"op": "set_terminated", "run": parent_run_id,
                           "status": "FINISHED" if finished else "FAILED",
                           "end_time": int(time.time() * 1000),
                           "report_missing": bool(finished and options.report and report is None)})
            store.write_meta(options.experiment, sweep_id, {**meta, "finished": True, "state": "finished"})
            done = True
            interrupts.set_resumable(False)
        _print_spool(writer, store.display(options.experiment, sweep_id))
        return {"finished": len(finished), "failed": len(failed), "parent_run_id": parent_run_id,
                "best": _best_per_init(finished, swept), "report": report, "runs_url": view_url}
    except interrupts.Interrupted as exc:
        if not done:
            _end_sweep(store, options.experiment, sweep_id, meta, tracking, spool_dir, spool_header,
                       parent_run_id, "KILLED", {INTERRUPTED_TAG: exc.name}, state="interrupted")
        raise
    except Exception as exc:
        if not done:
            _end_sweep(store, options.experiment, sweep_id, meta, tracking, spool_dir, spool_header,
                       parent_run_id, "FAILED", {"xfer.error": exception_line(exc, 500)}, state="failed")
        raise
    finally:
        remove_hook()
        if started_ray:
            ray.shutdown()
            if local_ray and not done:
                # an interrupted or failed sweep leaves nothing running: Ray's agents and
                # workers can outlive ray.shutdown by seconds; what is left then is killed
                interrupts.kill_children()


INTERRUPTED_TAG = interrupts.INTERRUPTED_TAG


def _end_sweep(store: SweepStore, experiment: str, sweep_id: str, meta: dict | None, tracking: str,
               spool_dir: Path, spool_header: dict | None, parent_run_id: str | None, status: str,
               tags: dict, state: str) -> None:
    """An interrupted or failed sweep's ending: the parent run KILLED or FAILED with the reason
    as a tag (through the spool, like every write), the record ``state`` and not finished, so
    that ``--resume`` finds it. Best effort: the exception on its way out is the news."""
    import contextlib

    from xfer.tracking.spool import SpoolingWriter

    if parent_run_id is not None:
        with contextlib.suppress(Exception):
            header = spool_header or {"sweep_id": sweep_id, "experiment": experiment,
                                      "parent_run_id": parent_run_id, "tracking_uri": redacted_uri(tracking)}
            writer = SpoolingWriter(tracking, spool_dir, header, echo=lambda line: None)
            writer.submit({"op": "log_batch", "run": parent_run_id, "tags": tags})
            writer.submit({"op": "set_terminated", "run": parent_run_id, "status": status,
                           "end_time": int(time.time() * 1000)})
    if meta is not None:
        with contextlib.suppress(Exception):
            store.write_meta(experiment, sweep_id, {**meta, "finished": False, "state": state,
                                                    **{k.removeprefix("xfer."): v for k, v in tags.items()}})


def _end_parent_now(tracking: str, parent_run_id: str, status: str, tags: dict) -> None:
    """The parent's end straight to MLflow (a second signal's last act: no spool, no retries
    beyond what the driver's client allows; bounded by the caller)."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking)
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value)
    client.set_terminated(parent_run_id, status)


def _runs_view_url(client, tracking: str, experiment_id: str, sweep_id: str) -> str:
    """The URL of this sweep's runs table (``xfer.tracking.ui``). The view is a convenience: if
    saving it fails, the URL of the experiment's runs table stands in, and the sweep goes on."""
    from xfer.tracking import ui

    try:
        key = ui.publish_sweep_view(client, experiment_id, sweep_id)
    except Exception:  # noqa: BLE001 - see the docstring
        key = None
    return ui.runs_url(ui.ui_base(tracking), experiment_id, key)


def spool_folder(store: SweepStore, experiment: str, sweep_id: str) -> Path:
    """Where MLflow records wait while the tracking server is down: next to the sweep's Ray
    state for local storage; for S3, ``xfer_spool/<sweep id>`` in the driver's working
    directory, since an S3 object cannot be appended to and fsynced line by line."""
    if store.is_s3:
        return Path("xfer_spool", sweep_id).resolve()
    return Path(store.sweep_path(experiment, sweep_id)) / "mlflow_spool"


def _print_spool(writer, ray_storage: str) -> None:
    if writer.pending:
        uri = redacted_uri(writer.tracking_uri)
        print(f"MLflow at {uri} is unavailable: {writer.pending} records of this sweep (runs, params, "
              f"metrics, artifacts, statuses) are spooled at {writer.folder}; the trials' results "
              f"and checkpoints are in {ray_storage}. Replay them into MLflow when it answers "
              f"(safe to repeat): xfer replay {writer.folder} --tracking-uri {uri}")
    elif writer.spooled:
        print(f"MLflow was unavailable during the sweep: {writer.spooled} records were spooled at "
              f"{writer.folder} and replayed; none is missing")


# What Ray Tune copies from the driver's environment into every trial's runtime env, and so
# into every node's runtime_env_agent.log, verbatim (seen on a real two-node cluster).
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


def _keep_credentials_out_of_runtime_envs() -> None:
    """Stop Tune from putting the driver's AWS keys into trials' runtime envs. Trials get
    credentials from their node instead: on one machine they inherit the driver's environment
    through the Ray it starts; on a cluster, from an instance role or a credentials file."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(_CREDENTIAL_VARS)


def bind_to_loopback() -> None:
    """Make the local Ray this process starts listen on 127.0.0.1 only, whatever imported ray
    before. Ray decides its node address from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, which it
    reads once, into ``ray_constants.ENABLE_RAY_CLUSTER``, when ray is imported; with it off,
    ``services.get_node_ip_address`` answers 127.0.0.1, and the GCS, raylet and workers bind
    there instead of on the machine's network interface (measured: ``*:PORT`` without it). So
    both the variable (for the worker processes Ray starts, which import ray afresh) and the
    constant (for this process, which may have imported ray already) are set. The constant is
    private: ``tests/test_ray_loopback.py`` checks the sockets, so a Ray upgrade that moves it
    fails there, not silently. Never for a driver that joins a cluster: its node is not
    127.0.0.1."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _start_ray(local: bool, env: dict) -> None:
    import ray

    if local:
        bind_to_loopback()
        # address="local": always a new instance; a bare init() would join any `ray start`
        # cluster already running on this machine (another user's, with other resources).
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, runtime_env={"env_vars": env})
    else:  # `ray job submit` or RAY_ADDRESS: join the cluster
        missing = _env_not_set_by_job(env)
        ray.init(logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"env_vars": missing} if missing else None)


def _trial_env(tracking: str) -> dict:
    """What every trial on every node gets (SPEC): the tracking URI, without a user:password
    part, since Ray writes runtime envs into every node's logs. Trials do not write to MLflow;
    one that reads from it (runs:/ weights) uses MLFLOW_TRACKING_USERNAME/PASSWORD if its node
    has them."""
    import urllib.parse

    parts = urllib.parse.urlsplit(tracking)
    if parts.username is None and parts.password is None:
        return {"MLFLOW_TRACKING_URI": tracking}
    netloc = parts.netloc.rsplit("@", 1)[1]
    return {"MLFLOW_TRACKING_URI": urllib.parse.urlunsplit(parts._replace(netloc=netloc))}


def _env_not_set_by_job(env: dict) -> dict:
    """The env vars the trials need that a submitted job's runtime env does not already set
    (Ray refuses a ray.init runtime env that sets the same variable as the job's). A driver
    that joins with RAY_ADDRESS outside a job has no runtime env: without this its trials on
    other nodes would not see MLFLOW_TRACKING_URI."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    job_env = (job.get("runtime_env") or {}).get("env_vars") or {}
    return {key: value for key, value in env.items() if key not in job_env}


def _report(options: SweepOptions, study: Study, sweep_id: str, tracking: str):
    """The frontier report, written locally and logged to the parent run. A report failure
    is printed, not raised: the sweep's runs are safe in MLflow and `xfer frontier` redoes it."""
    from xfer.aggregate import build_report

    out = _report_dir(sweep_id)
    try:
        return build_report(options.experiment, sweep_id, cost=study.cost_metric, out_dir=out,
                            tracking_uri=tracking, log_to_parent=True,
                            amortize_pretraining=options.amortize_pretraining)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"report failed ({type(exc).__name__}: {exc}); rerun: xfer frontier "
              f"--experiment {options.experiment} --sweep-id {sweep_id} --out {out}")
        return None


def _report_dir(sweep_id: str) -> str:
    return os.path.abspath(os.path.join("xfer_reports", sweep_id))


def _check_cluster_resources(options: SweepOptions) -> None:
    import ray

    from xfer.errors import UsageError

    total = ray.cluster_resources()
    if options.gpus_per_trial > total.get("GPU", 0):
        raise UsageError(f"--gpus-per-trial {options.gpus_per_trial:g} but the cluster has "
                         f"{total.get('GPU', 0):g} GPU(s)")
    if options.cpus_per_trial > total.get("CPU", 0):
        raise UsageError(f"--cpus-per-trial {options.cpus_per_trial:g} but the cluster has "
                         f"{total.get('CPU', 0):g} CPU(s)")


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name)


def _create_parent(client, experiment_id: str, sweep_id: str, options: SweepOptions,
                   preset: Preset, sha: str, packages: dict, weights: dict[str, str],
                   scheduler: SchedulerPlan, run_tags: dict | None = None) -> str:
    """The sweep's parent run. ``run_tags``: MLflow's source tags (``mlflow_logger.source_tags``),
    the same as every child's."""
    from mlflow.entities import Param

    run = client.create_run(experiment_id, run_name=f"sweep-{options.preset}-{sweep_id[-20:]}",
                            tags={**(run_tags or {}), "xfer.sweep_id": sweep_id, "xfer.role": "parent",
                                  "xfer.preset": options.preset, "xfer.git_sha": sha})
    params = {"preset": options.preset, "search": options.search, "scheduler": options.scheduler,
              "scheduler_detail": scheduler.describe(),
              "search_space": json.dumps(preset.space), "fixed": json.dumps(preset.fixed, default=str),
              "num_samples": options.num_samples, "max_concurrent": options.max_concurrent,
              "gpus_per_trial": options.gpus_per_trial, "cpus_per_trial": options.cpus_per_trial,
              "storage": options.storage, "git_sha": sha,
              "pretrained_weights": _weights_param(weights), "arms": json.dumps(preset.arms),
              "data": options.data or "preset", "system_metrics": options.system_metrics,
              "packages": json.dumps(packages)}
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def log_study_card(writer, parent_run_id: str, card: dict) -> None:
    """The card as the parent's ``study_card.json``, through the spool like every other write:
    a tracking outage right after the parent was created delays it, never loses it (the spool
    copies the file before the temporary folder goes)."""
    import tempfile

    from xfer.report_card import ARTIFACT

    with tempfile.TemporaryDirectory(prefix="xfer-study-card-") as folder:
        (Path(folder) / ARTIFACT).write_text(json.dumps(card, indent=2, default=str))
        writer.submit({"op": "log_artifacts", "run": parent_run_id}, files=folder)


def _weights_param(weights: dict[str, str]) -> str | None:
    """One source for every model (the usual case) reads as that source."""
    sources = set(weights.values())
    if not sources:
        return None
    return next(iter(sources)) if len(sources) == 1 else json.dumps(weights)


def _search(preset: Preset, options: SweepOptions, study: Study, weights: dict[str, str],
            default_size: int | None = None):
    """Ray's param_space and TuneConfig for --search and --scheduler. Trials see the axes as
    plain values and the rest as constants; ``resolve_trial`` turns a config into its values."""
    from ray import tune

    from xfer.sweep.schedulers import build_scheduler

    fixed = {**preset.base(), ARMS_TABLE: preset.arms, WEIGHTS_BY_MODEL: weights,
             "cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial}
    if default_size is not None:
        fixed.setdefault("dataset_size", default_size)
    plan = _scheduler_plan(preset, options)
    # FIFO runs every trial to its budget, so a trial scores its test split once, at the end;
    # a scheduler that stops trials needs every epoch's report to carry the result so far, and
    # so do Optuna's searchers, whose metrics (val_accuracy and the cost) Tune checks in every
    # result. Nothing selects on the test metrics those reports also carry.
    fixed[SCORE_TEST_EACH_EPOCH] = plan.kind != "fifo" or options.search != "grid"
    scheduler = build_scheduler(plan)
    if options.search == "grid":
        space = {axis: tune.grid_search(values) for axis, values in preset.axes().items()}
        if (options.num_samples or 1) > 1 and "seed" not in preset.space:
            space["seed"] = tune.grid_search(list(range(options.num_samples)))
        return ({**fixed, **space}, tune.TuneConfig(scheduler=scheduler, num_samples=1,
                                                    max_concurrent_trials=options.max_concurrent,
                                                    trial_dirname_creator=_short_dirname,
                                                reuse_actors=True))
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = {axis: tune.choice(values) for axis, values in preset.axes().items()}
    if options.search == "tpe":
        searcher = OptunaSearch(metric="val_accuracy", mode="max",
                                sampler=optuna.samplers.TPESampler(seed=0))
    else:  # nsga2: the cost-vs-validation-accuracy frontier; test accuracy is only reported
        searcher = OptunaSearch(metric=["val_accuracy", study.cost_metric], mode=["max", "min"],
                                sampler=optuna.samplers.NSGAIISampler(seed=0))
    num_samples = options.num_samples or len(preset.grid())
    return ({**fixed, **space}, tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                num_samples=num_samples,
                                                max_concurrent_trials=options.max_concurrent,
                                                trial_dirname_creator=_short_dirname,
                                                reuse_actors=True))


def _scheduler_plan(preset: Preset, options: SweepOptions) -> SchedulerPlan:
    """The scheduler this sweep runs; seeds count as grid replicates (``--num-samples``)."""
    seeds = (options.num_samples or 1) if options.search == "grid" and "seed" not in preset.space else 1
    return preset.scheduler_plan(options.scheduler, seeds=seeds)


def _short_dirname(trial) -> str:
    return trial.trial_id


def _best_per_init(results, swept: list[str]) -> list[str]:
    """The closing "best" line per init: chosen on validation accuracy; the test accuracy
    beside it is reported, never compared."""
    best: dict[str, tuple] = {}
    for result in results:
        if not result.config:  # a trial that never started has no config
            continue
        metrics, config = result.metrics or {}, resolve_trial(result.config)
        score = metrics.get("val_accuracy", -math.inf)
        if config["init"] not in best or score > best[config["init"]][0]:
            best[config["init"]] = (score, metrics, config)
    lines = []
    for init, (_, metrics, config) in sorted(best.items()):
        lines.append(f"best {init}: {trial_name(config, swept)}  val_acc {metrics.get('val_accuracy', math.nan):.3f}"
                     f"  test_acc {metrics.get('test_accuracy', math.nan):.3f}"
                     f"  train_time {metrics.get('train_time_s', math.nan):.1f} s")
    return lines
