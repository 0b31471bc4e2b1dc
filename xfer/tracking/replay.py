"""Replaying a spool into MLflow: applying one record, idempotently, and replaying every record
not yet acknowledged (what the driver does when the server answers again, and ``xfer replay``).

Records (all carry "seq" and "op"):

    open_run        the trial's run: found by its ``match_tags``, else created with its tags,
                    params and original start time. "run" is a placeholder
                    (``pending:<trial id>``) that later records name until replay resolves it
    log_batch       metrics ``[[key, value, timestamp_ms, step], ...]``, params, tags; with
                    "after_step_of": KEY, metrics at steps the run already has for KEY are left out
    set_terminated  status and end_time (of the event, not of the replay)
    update_run      status
    log_artifacts   "dir", relative to the spool folder
    log_inputs      "datasets": [{name, digest, source_type, source, schema?, profile?, tags}],
                    MlflowClient.log_inputs; a dataset the run already has (same name, digest
                    and tags) is left out

Exactly once. A replayed record may already be in MLflow (the server applied it and died
before answering), and ``xfer replay`` may run twice; every record is safe to apply again: runs
are found by tags before one is created, a FINISHED run found again is not written to,
per-epoch metrics skip steps the run has, metrics keep their original timestamps (MLflow keeps
one row per key, step, timestamp and value), params and tags are set to the same values,
statuses to the same status and end time, artifacts overwritten by the same files, dataset
inputs left out when the run has them (MLflow's SQL store also merges them itself). The
acknowledgements make a second replay a no-op without relying on that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xfer.errors import UsageError
from xfer.tracking import redacted_uri
from xfer.tracking.journal import JOURNAL, LOCK, PLACEHOLDER, REJECTED, Spool
from xfer.tracking.outage import is_unavailable, one_line, set_driver_client_env


@dataclass
class ReplayState:
    resolved: dict[str, str] = field(default_factory=dict)  # placeholder -> run id
    closed: set[str] = field(default_factory=set)  # placeholders and run ids found FINISHED
    through: dict[str, int] = field(default_factory=dict)  # run id -> latest marker step in MLflow

    def run_id(self, run: str) -> str:
        if run.startswith(PLACEHOLDER):
            if run not in self.resolved:
                raise ValueError(f"run {run} was never opened (its open_run record is missing)")
            return self.resolved[run]
        return run


def apply_record(client: MlflowClient, record: dict, state: ReplayState,
                 folder: Path | None = None, files: str | Path | None = None) -> dict:
    """Make one record's MLflow calls; idempotent (module docstring). ``files``: a live
    log_artifacts' source folder (a spooled one's is under ``folder``)."""
    op = record["op"]
    if op == "open_run":
        return _open_run(client, record, state)
    if record["run"] in state.closed:
        return {"skipped": "run was already FINISHED"}
    run_id = state.run_id(record["run"])
    if run_id in state.closed:
        return {"skipped": "run was already FINISHED"}
    if op == "log_batch":
        metrics = record.get("metrics", [])
        marker = record.get("after_step_of")
        if marker and metrics:
            if run_id not in state.through:
                state.through[run_id] = max((m.step for m in client.get_metric_history(run_id, marker)),
                                            default=0)
            metrics = [m for m in metrics if m[3] > state.through[run_id]]
        params, tags = record.get("params", {}), record.get("tags", {})
        if metrics or params or tags:
            client.log_batch(run_id, metrics=[Metric(k, float(v), int(t), int(s)) for k, v, t, s in metrics],
                             params=[Param(k, str(v)) for k, v in params.items()],
                             tags=[RunTag(k, str(v)) for k, v in tags.items()])
        if marker and metrics:
            state.through[run_id] = max(state.through[run_id], max(m[3] for m in metrics))
    elif op == "set_terminated":
        client.set_terminated(run_id, record["status"], end_time=record.get("end_time"))
    elif op == "update_run":
        client.update_run(run_id, status=record["status"])
    elif op == "log_artifacts":
        client.log_artifacts(run_id, str(files if files is not None else Path(folder) / record["dir"]))
    elif op == "log_inputs":
        datasets = _inputs_not_logged(client, run_id, record.get("datasets", []))
        if datasets:
            client.log_inputs(run_id, datasets=datasets)
    else:
        raise ValueError(f"unknown spool record op {op!r}")
    return {"run_id": run_id}


def _inputs_not_logged(client: MlflowClient, run_id: str, datasets: list[dict]) -> list[DatasetInput]:
    """The record's dataset inputs the run does not have yet (one get_run: its inputs)."""
    def key(name, digest, tags: dict) -> tuple:
        return name, digest, tuple(sorted(tags.items()))

    inputs = client.get_run(run_id).inputs
    have = {key(i.dataset.name, i.dataset.digest, {t.key: t.value for t in i.tags})
            for i in (inputs.dataset_inputs if inputs else [])}
    wanted = []
    for entry in datasets:
        tags = {k: str(v) for k, v in (entry.get("tags") or {}).items()}
        if key(entry["name"], entry["digest"], tags) in have:
            continue
        dataset = Dataset(name=entry["name"], digest=entry["digest"], source_type=entry["source_type"],
                          source=entry["source"], schema=entry.get("schema"), profile=entry.get("profile"))
        wanted.append(DatasetInput(dataset, tags=[InputTag(k, v) for k, v in tags.items()]))
    return wanted


def _open_run(client: MlflowClient, record: dict, state: ReplayState) -> dict:
    """Find the run by its tags (a retry, a restored driver, a create whose answer was lost),
    else create it. A FAILED or KILLED run is reopened; a FINISHED one is final."""
    match = " and ".join(f"tags.`{k}` = '{v}'" for k, v in record["match_tags"].items())
    found = client.search_runs([record["experiment_id"]], filter_string=match, max_results=1)
    closed = False
    if found:
        run_id, status = found[0].info.run_id, found[0].info.status
        if status == "FINISHED":
            closed = True
        elif status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        marker = record.get("marker")
        through = (max((m.step for m in client.get_metric_history(run_id, marker)), default=0)
                   if marker else 0)
    else:
        run = client.create_run(record["experiment_id"], start_time=record.get("start_time"),
                                run_name=record.get("run_name"), tags=record.get("tags", {}))
        run_id, through = run.info.run_id, 0
        params = record.get("params", {})
        if params:
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    state.resolved[record["run"]] = run_id
    state.through[run_id] = through
    if closed:
        state.closed |= {record["run"], run_id}
    return {"run_id": run_id, "created": not found, "closed": closed, "through": through}


# --- replaying ------------------------------------------------------------------------------

@dataclass
class ReplayOutcome:
    applied: int = 0
    skipped: int = 0  # records for a run found FINISHED: already in MLflow
    runs_created: int = 0
    runs_found: int = 0
    rejected: int = 0
    left: int = 0  # records still waiting
    unavailable: str | None = None  # why the replay stopped early
    report_missing: bool = False  # replayed the end of a sweep that could not write its report
    header: dict = field(default_factory=dict)  # the spool's: sweep id, experiment, parent run


def replay_pending(client: MlflowClient, spool: Spool, state: ReplayState,
                   echo: Callable[[str], None] = print) -> ReplayOutcome:
    """Apply every record not yet acknowledged, in order, acknowledging each. Stops at the first
    outage (``unavailable``); a record MLflow refuses for good goes to rejected.jsonl, loudly.
    The caller holds the lock."""
    done, resolved, closed = spool.acks()
    state.resolved.update(resolved)
    state.closed |= closed
    pending = [r for r in spool.records() if r["op"] != "header" and r["seq"] not in done]
    outcome = ReplayOutcome(left=len(pending))
    for record in pending:
        try:
            result = apply_record(client, record, state, folder=spool.folder)
        except Exception as exc:  # noqa: BLE001 - sorted into outage / refusal right here
            if is_unavailable(exc):
                outcome.unavailable = one_line(exc)
                return outcome
            spool.reject(record, f"{type(exc).__name__}: {exc}")
            spool.ack(record["seq"], rejected=True)
            outcome.rejected += 1
            outcome.left -= 1
            echo(f"MLflow refused spooled record {record['seq']} ({record['op']} "
                 f"{record.get('run', '')}): {one_line(exc)}; kept in {spool.folder / REJECTED}")
            continue
        if record["op"] == "open_run":
            outcome.runs_created += result["created"]
            outcome.runs_found += not result["created"]
        outcome.skipped += "skipped" in result
        spool.ack(record["seq"], resolved={record["run"]: result["run_id"]} if record["op"] == "open_run" else None,
                  closed=[record["run"]] if result.get("closed") else None)
        outcome.applied += 1
        outcome.left -= 1
        outcome.report_missing |= bool(record.get("report_missing"))
    return outcome


def replay_spool(path: str | Path, tracking_uri: str | None = None,
                 echo: Callable[[str], None] = print) -> ReplayOutcome:
    """``xfer replay``: apply a spool's waiting records to MLflow. The tracking URI is
    ``tracking_uri``, else MLFLOW_TRACKING_URI, else the one the sweep logged to (recorded in
    the spool without its password). FileNotFoundError for a path without a spool, UsageError
    when the URI is unknown or another process is replaying the spool."""
    from filelock import FileLock, Timeout

    path = Path(path).expanduser()
    folder = path.parent if path.name == JOURNAL else path
    spool = Spool(folder)
    if not spool.exists():
        raise FileNotFoundError(f"no MLflow spool at {path} (expected {folder / JOURNAL}, the folder "
                                "a sweep prints when MLflow was unavailable)")
    header = spool.header()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or header.get("tracking_uri")
    if not uri:
        raise UsageError(f"{folder} does not say which MLflow it was for; pass --tracking-uri")
    if "***" in uri:
        raise UsageError(f"the spool's tracking URI {uri} had a password; pass --tracking-uri, or "
                         "set MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_USERNAME/PASSWORD)")
    from xfer.tracking.endpoints import check_tracking_uri

    check_tracking_uri(uri)  # malformed or unknown scheme: one line, exit 2
    set_driver_client_env()
    lock = FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=5)
    except Timeout:
        raise UsageError(f"another process is replaying {folder} (the sweep's driver?); "
                         "try again when it is done") from None
    try:
        client = MlflowClient(uri)
        _check_parent(client, header, uri)
        outcome = replay_pending(client, spool, ReplayState(), echo)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        done, _, _ = spool.acks()  # the server went away before the replay began
        left = sum(1 for r in spool.records() if r["op"] != "header" and r["seq"] not in done)
        outcome = ReplayOutcome(left=left, unavailable=one_line(exc))
    finally:
        lock.release()
    outcome.header = header
    return outcome


def _check_parent(client: MlflowClient, header: dict, uri: str) -> None:
    """The records name runs and an experiment of the server the sweep logged to: replaying
    them anywhere else would fail record by record, so say it once."""
    if not header.get("parent_run_id"):
        return
    try:
        client.get_run(header["parent_run_id"])
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UsageError(f"MLflow at {redacted_uri(uri)} has no run {header['parent_run_id']}, the parent "
                         f"run of sweep {header.get('sweep_id')}: replay into the tracking server the "
                         "sweep logged to (--tracking-uri)") from None
