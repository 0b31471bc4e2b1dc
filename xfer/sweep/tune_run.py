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
from pathlib import Path

from xfer.errors import exception_line
from xfer.names import ERROR_TAG, INTERRUPTED_TAG
from xfer.sweep import interrupts
from xfer.sweep.faults import STALL_DIR_ENV, STALL_ENV, stall_point
from xfer.sweep.options import SweepOptions
from xfer.sweep.parent_run import SweepRecord, open_sweep
from xfer.sweep.storage import SweepStore
from xfer.sweep.study import (ARMS_TABLE, WEIGHTS_BY_MODEL, Preset, SchedulerPlan, Study,
                              grid_seeds, resolve_trial, trial_name)
from xfer.sweep.trial import (FAULT_DIR_ENV, FAULT_ENV, SCORE_TEST_EACH_EPOCH, SharedData, run_trial,
                              shareable_weights)
from xfer.tracking import redacted_uri


def launch(*, study: Study, preset: Preset, options: SweepOptions, store: SweepStore,
           sweep_id: str, previous: dict | None, data_dir, weights: dict[str, str], tracking: str,
           local_ray: bool, phases, default_size: int | None = None,
           study_card: dict | None = None, plan=None) -> dict:
    """Run the sweep's trials under Ray Tune, logging to MLflow through the spool: start Ray,
    open the parent run, build the Tuner, run it, finish. ``study_card``
    (``xfer.sweep.driver.study_card``) is logged on the parent run as ``study_card.json``, for
    the report's replication card. ``plan`` (``xfer.sweep.plan.Plan``) feeds the live progress
    line's ETA (``xfer.sweep.progress``); without it, no progress line."""
    import ray

    from xfer.provenance import git_sha
    from xfer.sweep.mlflow_logger import source_tags, study_script
    from xfer.sweep.progress import lines_above_bar

    _quiet_tune()
    run_tags = source_tags(study_script(study.name), git_sha())  # MLflow's, on every run
    started_ray = not ray.is_initialized()
    record = SweepRecord(store, options.experiment, sweep_id, tracking,
                         spool_folder(store, options.experiment, sweep_id))
    remove_hook = lambda: None  # noqa: E731
    try:
        if started_ray:
            # a signal during ray.init is held until it returns: Ray half-started cannot be stopped
            with phases("ray start"), interrupts.deferred():
                stall_point("ray_start")
                _start_ray(local_ray, _trial_env(tracking))
        _check_cluster_resources(options)
        remove_hook = _open_parent(record, preset, options, previous, weights, study_card, run_tags)
        shared = _shared_data(data_dir, weights)
        if options.score_transferability and not previous:
            from xfer.sweep.transfer_scores import score_backbones, scoring_jobs

            with phases("transferability"):
                score_backbones(record, scoring_jobs(preset, weights, default_size), shared, options, run_tags)
        tuner, swept, progress = _build_tuner(record, study, preset, options, previous, shared, weights,
                                              default_size, plan, run_tags)
        with interrupts.tune_loop(), phases("trials"), lines_above_bar(enabled=progress):
            results = tuner.fit()  # a signal stops it like Tune's Ctrl-C, then raises Interrupted
        return _finish(record, results, study, options, swept, phases)
    except interrupts.Interrupted as exc:
        record.end("KILLED", {INTERRUPTED_TAG: exc.name}, state="interrupted")
        raise
    except Exception as exc:
        record.end("FAILED", {ERROR_TAG: exception_line(exc, 500)}, state="failed")
        raise
    finally:
        remove_hook()
        if started_ray:
            ray.shutdown()
            if local_ray and not record.done:
                # an interrupted or failed sweep leaves nothing running: Ray's agents and
                # workers can outlive ray.shutdown by seconds; what is left then is killed
                interrupts.kill_children()


def _quiet_tune() -> None:
    """Tune's settings for a sweep driver, before the Tuner exists."""
    import logging

    _keep_credentials_out_of_runtime_envs()
    # Tune's own CSV/JSON/TensorBoard loggers duplicate what MLflow records; skip their I/O
    # (and the warning that the results they would have written cannot be read back).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Checkpoints come every epoch and epochs can take a second: Tune's state snapshots
    # follow them by design (num_to_keep forces one), so its "too frequent" warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _open_parent(record: SweepRecord, preset: Preset, options: SweepOptions, previous: dict | None,
                 weights: dict[str, str], study_card: dict | None, run_tags: dict):
    """The parent run and the sweep's record (``parent_run.open_sweep``), after the tracking
    client is set to fail in seconds: a failed MLflow call costs seconds, not MLflow's default
    ~4 minutes of retries; the sweep needs the server to start, then rides out outages with
    the spool."""
    import mlflow

    from xfer.tracking.outage import set_driver_client_env

    set_driver_client_env()
    client = mlflow.tracking.MlflowClient(record.tracking)
    return open_sweep(record, client, options, preset, _scheduler_plan(preset, options), previous,
                      weights, study_card, run_tags)


def _shared_data(data_dir, weights: dict[str, str]) -> SharedData:
    """The packed dataset and the driver-side weights files, for every trial (and score)."""
    from xfer.data.tensors import read_packed_arrays

    images, labels, dataset_meta = read_packed_arrays(data_dir)
    # offline-pretrained weights live in this machine's cache: ship their bytes to every node
    return SharedData(images=images, labels=labels, meta=dataset_meta,
                      weight_files=shareable_weights(weights.values()))


def _build_tuner(record: SweepRecord, study: Study, preset: Preset, options: SweepOptions,
                 previous: dict | None, shared: SharedData, weights: dict[str, str],
                 default_size: int | None, plan, run_tags: dict):
    """The Tuner (restored on ``--resume`` where Tune saved its state, callbacks included), the
    swept axes, and whether a live progress line is drawn."""
    from ray import tune

    from xfer.sweep.mlflow_logger import MlflowSweepLogger, dataset_input
    from xfer.sweep.progress import SweepProgress

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, shared=shared, system_metrics=options.samples_system_metrics),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    swept = [axis for axis, values in preset.axes().items() if len(values) > 1]
    # the live progress line (xfer.sweep.plan.Plan ``plan``: its ETA starts from the estimate)
    progress = ([SweepProgress.from_plan(plan, options.progress_interval)]
                if plan is not None and options.progress_interval > 0 else [])
    store = record.store
    ray_path = store.sweep_path(options.experiment, record.sweep_id)
    filesystem = store.fs if store.is_s3 else None
    if (previous and store.tune_state_saved(options.experiment, record.sweep_id)
            and tune.Tuner.can_restore(ray_path, storage_filesystem=filesystem)):
        tuner = tune.Tuner.restore(ray_path, trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=filesystem)
        print(f"resuming sweep {record.sweep_id} from {store.display(options.experiment, record.sweep_id)}")
        return tuner, swept, bool(progress)
    if previous:
        print(f"resuming sweep {record.sweep_id}: Ray Tune saved no state to restore (the sweep "
              "stopped before its first save), so its trials start from the beginning")
    audit_path = Path(shared.meta["path"]) / "audit.json"
    confusable = ([p["classes"] for p in json.loads(audit_path.read_text())["confusable"]]
                  if audit_path.is_file() else [])
    logger = MlflowSweepLogger(record.tracking, record.experiment_id, record.parent_run_id,
                               record.sweep_id, swept, confusable=confusable,
                               spool_dir=str(record.spool_dir), spool_header=record.spool_header,
                               dataset=dataset_input(shared.meta, shared.images, shared.labels),
                               run_tags=run_tags)
    run_config = tune.RunConfig(
        name=record.sweep_id, storage_path=store.experiment_root(options.experiment),
        storage_filesystem=filesystem,
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[logger, *progress], verbose=0)
    param_space, tune_config = _search(preset, options, study, weights, default_size)
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                       run_config=run_config)
    return tuner, swept, bool(progress)


def _finish(record: SweepRecord, results, study: Study, options: SweepOptions, swept: list[str],
            phases) -> dict:
    """After the trials: what the spool holds replayed, the report, the parent and the record
    ended, and the outcome the driver prints."""
    finished = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    # The callback that logged the trials may be a copy Tuner.restore unpickled; the
    # spool on disk is the one truth. Replay what waits, now, whatever the retry interval.
    writer = record.writer()
    writer.drain()
    report = None
    with phases("report"):
        stall_point("report")
        if finished and options.report and writer.pending:
            print(f"report skipped: MLflow does not have the sweep's records yet; after the replay "
                  f"below, run: xfer frontier --experiment {options.experiment} --sweep-id "
                  f"{record.sweep_id} --out {_report_dir(record.sweep_id)} --log-to-parent")
        elif finished and options.report:
            report = _report(options, study, record.sweep_id, record.tracking)
    record.finish(writer, "FINISHED" if finished else "FAILED",
                  report_missing=bool(finished and options.report and report is None))
    _print_spool(writer, record.store.display(options.experiment, record.sweep_id))
    return {"finished": len(finished), "failed": len(failed), "parent_run_id": record.parent_run_id,
            "best": _best_per_init(finished, swept), "report": report, "runs_url": record.view_url}


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


# A local Ray prestarts one idle Python worker per CPU for tasks without a runtime env. Every
# trial runs in the sweep's runtime env (the tracking URI), so Ray starts workers of its own for
# them and the prestarted ones only import ray and wait: ~0.5 CPU-s and 80 MB RSS each, for
# nothing (measured 2026-12-02, 2-core machine: the smoke preset's 43 CPU-s had 1.0-1.2 of idle
# workers; with these off there were none, and the sweep's wall time was the same).
NO_PRESTART = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}


def _start_ray(local: bool, env: dict) -> None:
    import ray

    if local:
        bind_to_loopback()
        # address="local": always a new instance; a bare init() would join any `ray start`
        # cluster already running on this machine (another user's, with other resources).
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, runtime_env={"env_vars": env}, _system_config=NO_PRESTART)
    else:  # `ray job submit` or RAY_ADDRESS: join the cluster
        missing = _env_not_set_by_job(env)
        ray.init(logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"env_vars": missing} if missing else None)


# The test hooks a driver may be given (stall points, xfer.sweep.faults; injected trial
# failures, xfer.sweep.trial). A local Ray's trials inherit them from the driver; trials of a
# driver that joins a cluster get them from the runtime env, so a sweep is held or failed the
# same way on both.
TEST_HOOK_VARS = (STALL_ENV, STALL_DIR_ENV, FAULT_ENV, FAULT_DIR_ENV)


def _trial_env(tracking: str) -> dict:
    """What every trial on every node gets: the tracking URI, without a user:password
    part, since Ray writes runtime envs into every node's logs, and the test hooks the driver
    has (``TEST_HOOK_VARS``). Trials do not write to MLflow; one that reads from it (runs:/
    weights) uses MLFLOW_TRACKING_USERNAME/PASSWORD if its node has them."""
    import urllib.parse

    hooks = {key: os.environ[key] for key in TEST_HOOK_VARS if key in os.environ}
    parts = urllib.parse.urlsplit(tracking)
    if parts.username is not None or parts.password is not None:
        tracking = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return {"MLFLOW_TRACKING_URI": tracking, **hooks}


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
    from xfer.tracking.sweep_report import build_report

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


def _search(preset: Preset, options: SweepOptions, study: Study, weights: dict[str, str],
            default_size: int | None = None):
    """Ray's param_space and the sweep's one TuneConfig, for --search and --scheduler. Trials
    see the axes as plain values and the rest as constants; ``resolve_trial`` turns a config
    into its values."""
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
    if options.search == "grid":
        seeds = grid_seeds(options.search, options.num_samples)
        space = {axis: tune.grid_search(values) for axis, values in preset.grid_axes(seeds).items()}
        searcher, num_samples = None, 1
    else:
        space = {axis: tune.choice(values) for axis, values in preset.axes().items()}
        searcher = _optuna_searcher(options.search, study.cost_metric)
        num_samples = options.num_samples or len(preset.grid())
    return {**fixed, **space}, tune.TuneConfig(
        search_alg=searcher, scheduler=build_scheduler(plan), num_samples=num_samples,
        max_concurrent_trials=options.max_concurrent, trial_dirname_creator=_short_dirname,
        reuse_actors=True)


def _optuna_searcher(search: str, cost_metric: str):
    """tpe: validation accuracy alone; nsga2: the cost-vs-validation-accuracy frontier (test
    accuracy is only reported, never searched on)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if search == "tpe":
        return OptunaSearch(metric="val_accuracy", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
    return OptunaSearch(metric=["val_accuracy", cost_metric], mode=["max", "min"],
                        sampler=optuna.samplers.NSGAIISampler(seed=0))


def _scheduler_plan(preset: Preset, options: SweepOptions) -> SchedulerPlan:
    """The scheduler this sweep runs; seeds count as grid replicates (``--num-samples``)."""
    return preset.scheduler_plan(options.scheduler, seeds=grid_seeds(options.search, options.num_samples))


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
