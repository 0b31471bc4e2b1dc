"""``--score-transferability``: before the trials, score every backbone the sweep fine-tunes on
every dataset size it trains on, and log each score as a child run of the sweep.

A backbone is a (model, init, weights) the grid trains; scratch backbones are scored too, as the
control. Each (backbone, size) is one Ray task holding what a trial holds (``--cpus-per-trial``,
``--gpus-per-trial``), on the trials' shared copy of the dataset
(``xfer.transferability.score_transferability``: one forward pass, LogME and k-NN accuracy).
The runs carry ``xfer.role=transferability`` and are found again by ``xfer.transferability_of``,
so a replayed spool or a second report never doubles them; the report's transferability section
reads them beside the fine-tuned results (``xfer.report.transferability_section``). Scores run
once per sweep: a resumed sweep keeps the ones its first driver logged. Cost: one forward pass
over each size's train and validation split per backbone, a small fraction of one epoch.
"""

from __future__ import annotations

import time

from xfer import names
from xfer.sweep.study import WEIGHTS_BY_MODEL, Preset, resolve_trial

_JOB_KEYS = ("model", "init", "weights", "dataset_size", "image_size", "resize_mode")


def scoring_jobs(preset: Preset, weights: dict[str, str], default_size: int | None) -> list[dict]:
    """The distinct (model, init, weights, dataset size, image size, resize mode) of the grid's
    trials, in grid order; weights None for scratch."""
    jobs: dict[tuple, dict] = {}
    for trial in preset.trials():
        config = resolve_trial({**trial, WEIGHTS_BY_MODEL: weights})
        job = {"model": config["model"], "init": config["init"],
               "weights": config.get("weights") if config["init"] == "pretrained" else None,
               "dataset_size": config.get("dataset_size", default_size),
               "image_size": config.get("image_size"), "resize_mode": config.get("resize_mode", "bilinear"),
               "seed": config.get("seed", 0)}
        jobs.setdefault(tuple(job[k] for k in _JOB_KEYS), job)
    return list(jobs.values())


def job_key(job: dict) -> str:
    """What finds a score's run again: ``efficientnet_lite0|pretrained|imagenet|n400``."""
    return f"{job['model']}|{job['init']}|{job['weights'] or 'none'}|n{job['dataset_size']}"


def _score_job(job: dict, shared, cpus: float) -> dict:
    """In a Ray worker: the job's TrialConfig on the shared dataset, scored."""
    import torch

    from xfer.data.tensors import from_arrays
    from xfer.sweep.trial import local_weights
    from xfer.train import TrialConfig
    from xfer.transferability import score_transferability

    torch.set_num_threads(max(1, int(cpus)))
    config = TrialConfig(data=shared.meta["path"], model=job["model"], init=job["init"],
                         weights=local_weights(job["weights"], shared), image_size=job["image_size"],
                         resize_mode=job["resize_mode"], n=job["dataset_size"], seed=job["seed"])
    data = from_arrays(shared.images, shared.labels, shared.meta, n=job["dataset_size"])
    return score_transferability(config, data=data)


def score_backbones(record, jobs: list[dict], shared, options, run_tags: dict, echo=print) -> int:
    """Run the jobs as Ray tasks and log each result as a child run; returns how many were
    logged. A job that fails is named on one line and skipped: a score is advice, the sweep's
    trials are what it was asked for."""
    import ray

    task = ray.remote(_score_job).options(num_cpus=options.cpus_per_trial, num_gpus=options.gpus_per_trial,
                                          max_retries=0)
    shared_ref = ray.put(shared)
    started = time.perf_counter()
    pending = {task.remote(job, shared_ref, options.cpus_per_trial): job for job in jobs}
    writer, logged = record.writer(), 0
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - one backbone's failure must not stop the sweep
            echo(f"transferability of {job_key(job)} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        _log_score(writer, record, job, result, run_tags)
        logged += 1
        echo(f"transferability {job_key(job)}: LogME {result['logme']:.3f}, kNN accuracy "
             f"{result['knn_accuracy']:.3f} ({result['embed_seconds']:.1f} s)")
    echo(f"transferability: {logged} of {len(jobs)} backbone scores in {time.perf_counter() - started:.0f} s")
    return logged


def _log_score(writer, record, job: dict, result: dict, run_tags: dict) -> None:
    now = int(time.time() * 1000)
    key = job_key(job)
    run = f"transferability:{key}"
    opened = writer.submit({
        "op": "open_run", "run": run, "experiment_id": record.experiment_id,
        "match_tags": {names.SWEEP_TAG: record.sweep_id, names.TRANSFER_KEY_TAG: key},
        "run_name": f"transferability-{job['model']}-{job['init']}-n{job['dataset_size']}",
        "start_time": now, "tags": {**run_tags, names.PARENT_TAG: record.parent_run_id,
                                    names.SWEEP_TAG: record.sweep_id, names.TRANSFER_KEY_TAG: key,
                                    names.ROLE_TAG: names.ROLE_TRANSFERABILITY},
        "params": {"model": job["model"], "init": job["init"], names.WEIGHTS: job["weights"] or "none",
                   names.DATASET_SIZE: job["dataset_size"], names.INPUT_SIZE: result["input_size"]}})
    if opened is not None and opened["closed"]:
        return  # logged whole by an earlier driver
    run_id = opened["run_id"] if opened else run
    metrics = [[k, float(result[k]), now, 0] for k in names.TRANSFER_METRICS
               if isinstance(result.get(k), (int, float)) and not isinstance(result.get(k), bool)]
    writer.submit({"op": "log_batch", "run": run_id, "metrics": metrics})
    writer.submit({"op": "set_terminated", "run": run_id, "status": "FINISHED", "end_time": now})
