"""A durable local spool of MLflow writes: what a sweep's driver records while the tracking server
does not answer, replayed in order as soon as it answers again, or later by ``xfer replay``.

Why: the driver is the only MLflow writer (``xfer.sweep.mlflow_logger``). Without a spool an
outage either stops the sweep (a Tune callback that raises ends ``Tuner.fit``) or, with
MLflow's default HTTP retries, stalls it for minutes at every callback.

Retry bounds (``set_driver_client_env``): MLflow's client retries a failed HTTP call 7 times with
backoff factor 2 and a 120 s timeout, about 4 minutes per failed call. The driver and
``xfer replay`` use 2 retries, backoff factor 1 (urllib3 sleeps 0 s, then 2 s + up to 1 s of
jitter) and a 10 s connect/read timeout: a refused connection costs at most ~3 s, a server that
accepts and never answers at most ~33 s (3 x 10 s + 3 s). That is paid once, when an outage
begins: from then on writes go straight to the spool, and every ``RETRY_INTERVAL_S`` (at the
next callback after it) one probe, without retries and with a ``PROBE_TIMEOUT_S`` timeout,
asks whether the server answers again; only then is the spool replayed. An outage costs the
driver at most 3 s per 10 s, and nothing for a refused connection. Each variable is only set
if the user has not set it.

A spool folder, one per sweep:

    journal.jsonl     append-only, one JSON record per line, fsynced before the write returns.
                      seq 0 is a header (sweep id, experiment, parent run, tracking URI without
                      password); then every MLflow write the sweep made while records were
                      waiting, in the order it made them
    artifacts/<seq>/  the files of a spooled log_artifacts record, copied and fsynced
    replayed.jsonl    append-only acknowledgements, {"seq": n} once record n is in MLflow, with
                      the run id its placeholder resolved to
    rejected.jsonl    records MLflow refused for good (not an outage), with the error
    replay.lock       held by whoever replays

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

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from xfer.errors import UsageError, exception_line
from xfer.tracking import env_overrides, redacted_uri

JOURNAL, ACKS, REJECTED, ARTIFACTS, LOCK = ("journal.jsonl", "replayed.jsonl", "rejected.jsonl",
                                            "artifacts", "replay.lock")
PLACEHOLDER = "pending:"
SPOOL_VERSION = 1
DRIVER_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # MLflow's default: 7
                     "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # s; MLflow's default: 2
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # s per connect and per read; default: 120
                     # set_terminated on a server prints two "View run" lines per run (and
                     # reads the run back to do it): a sweep ends hundreds of runs
                     "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
RETRY_INTERVAL_S = 10.0  # after a failed call, writes are spooled without trying for this long
PROBE_TIMEOUT_S = 3  # s: is the server back? one request, no retries


def set_driver_client_env() -> dict[str, str]:
    """Cap what one failed MLflow HTTP call costs this process, the sweep's driver or `xfer
    replay` (see the module docstring); variables the user set are kept. Returns the values
    in force."""
    for key, value in DRIVER_CLIENT_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in DRIVER_CLIENT_ENV}


def is_unavailable(exc: BaseException) -> bool:
    """True for a tracking server that did not answer or failed on its side (connection refused
    or reset, timeout, HTTP 5xx, a database that went away), as opposed to a request it refused
    (a bad value, an unknown run), which would fail again the same way."""
    import requests
    import urllib3

    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        OperationalError = ()  # noqa: N806
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError, requests.exceptions.ConnectionError,
                            requests.exceptions.Timeout, requests.exceptions.RetryError,
                            urllib3.exceptions.HTTPError, OperationalError)):
            return True
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            return exc.response.status_code >= 500
        if isinstance(exc, RestException) and exc.get_http_status_code() >= 500:
            return True
        if isinstance(exc, MlflowException) and exc.error_code == "TEMPORARILY_UNAVAILABLE":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def placeholder(trial_id: str) -> str:
    """The run id a trial's records carry until its run exists (deterministic: a restarted
    driver that spools the same trial again names the same run)."""
    return f"{PLACEHOLDER}{trial_id}"


# --- the files ------------------------------------------------------------------------------

class Spool:
    """The spool folder's files. One appender at a time (the sweep's driver); replays hold the
    lock; reads tolerate a torn last line (a driver killed mid-write: that record was never
    reported written, so its trial's state did not move on)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.journal = self.folder / JOURNAL

    def exists(self) -> bool:
        return self.journal.is_file()

    def records(self) -> list[dict]:
        if not self.exists():
            return []
        complete = self.journal.read_bytes().split(b"\n")[:-1]  # the last piece has no newline
        return _checked_lines(self.journal, complete, ("seq", "op"))

    def header(self) -> dict:
        records = self.records()
        if not records or records[0].get("op") != "header":
            raise FileNotFoundError(f"{self.journal} is not an xfer MLflow spool (no header)")
        wrong = sorted(key for key in ("tracking_uri", "sweep_id", "experiment", "parent_run_id")
                       if records[0].get(key) is not None and not isinstance(records[0][key], str))
        if wrong:
            raise corrupt_spool(self.journal, f"the header's {', '.join(wrong)} must be text")
        return records[0]

    def repair_tail(self) -> None:
        """Cut a torn last line before appending after it."""
        if not self.exists():
            return
        data = self.journal.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.journal, "r+b") as out:
                out.truncate(data.rfind(b"\n") + 1)
                _fsync(out)

    def append(self, record: dict) -> None:
        new = not self.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        _append_line(self.journal, record)
        if new:
            _fsync_dir(self.folder)

    def acks(self) -> tuple[set[int], dict[str, str], set[str]]:
        """Replayed seqs, placeholder -> run id, and runs found FINISHED (not written again)."""
        done, resolved, closed = set(), {}, set()
        path = self.folder / ACKS
        if path.is_file():
            for ack in _checked_lines(path, path.read_bytes().split(b"\n")[:-1], ("seq",)):
                if not isinstance(ack.get("resolved", {}), dict) or not isinstance(ack.get("closed", []), list):
                    raise corrupt_spool(path, f"record {ack['seq']}: 'resolved' must be an object "
                                              "and 'closed' a list")
                done.add(ack["seq"])
                resolved.update(ack.get("resolved", {}))
                closed.update(ack.get("closed", []))
        return done, resolved, closed

    def ack(self, seq: int, **extra) -> None:
        _append_line(self.folder / ACKS, {"seq": seq, **{k: v for k, v in extra.items() if v}})

    def reject(self, record: dict, error: str) -> None:
        _append_line(self.folder / REJECTED, {"seq": record["seq"], "op": record["op"],
                                              "run": record.get("run"), "error": error})

    def stash(self, seq: int, files: str | Path) -> str:
        """Copy a log_artifacts record's files into the spool (fsynced); their relative path."""
        relative = f"{ARTIFACTS}/{seq:08d}"
        target = self.folder / relative
        if target.exists():  # a copy a killed driver left half-done
            shutil.rmtree(target)
        shutil.copytree(files, target)
        for path in sorted(target.rglob("*"), reverse=True):
            if path.is_file():
                with open(path, "rb") as src:
                    os.fsync(src.fileno())
            else:
                _fsync_dir(path)
        _fsync_dir(target)
        _fsync_dir(target.parent)
        return relative


def corrupt_spool(path: Path, why: str) -> UsageError:
    """The one-line error for a damaged spool file (exit 2: nothing was replayed from it)."""
    return UsageError(f"corrupt spool: {path}: {why}; nothing was replayed from it")


def _checked_lines(path: Path, lines: list[bytes], keys: tuple[str, ...]) -> list[dict]:
    """Every complete line of a spool file as a JSON object carrying ``keys`` (``seq`` an
    integer, ``op`` a string), checked as it is read: a damaged line (garbage bytes, a foreign
    file) is named with its line number instead of failing later inside a replay."""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise corrupt_spool(path, f"line {number} is not JSON "
                                      f"({getattr(exc, 'msg', None) or type(exc).__name__})") from None
        if not isinstance(record, dict):
            raise corrupt_spool(path, f"line {number} is not a JSON object")
        if "seq" in keys and (not isinstance(record.get("seq"), int) or isinstance(record["seq"], bool)):
            raise corrupt_spool(path, f"line {number} has no integer 'seq'")
        if "op" in keys and not isinstance(record.get("op"), str):
            raise corrupt_spool(path, f"line {number} has no 'op'")
        records.append(record)
    return records


def _append_line(path: Path, record: dict) -> None:
    # One write of one line, with O_APPEND: the line lands whole after the last one.
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    with open(path, "ab") as out:
        out.write(line)
        _fsync(out)


def _fsync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- applying one record -------------------------------------------------------------------

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
                outcome.unavailable = _one_line(exc)
                return outcome
            spool.reject(record, f"{type(exc).__name__}: {exc}")
            spool.ack(record["seq"], rejected=True)
            outcome.rejected += 1
            outcome.left -= 1
            echo(f"MLflow refused spooled record {record['seq']} ({record['op']} "
                 f"{record.get('run', '')}): {_one_line(exc)}; kept in {spool.folder / REJECTED}")
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


def _one_line(exc: BaseException) -> str:
    """The root cause, on one line ("ConnectionRefusedError: [Errno 111] Connection refused"),
    not MLflow's wrapper, which repeats the URL and urllib3's retry summary."""
    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__
        seen.add(id(exc))
    return exception_line(exc, 300)


class SpoolingWriter:
    """One sweep's MLflow writes: straight to MLflow while it answers and nothing is waiting,
    else appended to the spool, so that records reach MLflow in the order they were made.
    ``submit`` returns the record's result when it was applied, None when it was spooled."""

    def __init__(self, tracking_uri: str, folder: str | Path, header: dict | None = None,
                 echo: Callable[[str], None] = print, retry_interval_s: float = RETRY_INTERVAL_S):
        self.tracking_uri = tracking_uri
        self.folder = Path(folder)
        self.header = dict(header or {})
        self.echo = echo
        self.retry_interval_s = retry_interval_s
        self._load()

    def _load(self) -> None:
        self.spool = Spool(self.folder)
        self.spool.repair_tail()
        records = self.spool.records()
        done, resolved, closed = self.spool.acks()
        self.state = ReplayState(resolved=resolved, closed=closed)
        self._next_seq = max((r["seq"] for r in records), default=-1) + 1
        self.pending = sum(1 for r in records if r["op"] != "header" and r["seq"] not in done)
        self.spooled = sum(1 for r in records if r["op"] != "header")  # ever, replayed or not
        self._retry_at = 0.0  # time.monotonic() before which MLflow is not tried again
        self._down = self.pending > 0  # an outage was announced (by whoever spooled) and has not ended
        self._client = None

    # Ray pickles the sweep's callbacks (this writer inside the logger) for Tuner.restore.
    def __getstate__(self):
        return {"tracking_uri": self.tracking_uri, "folder": str(self.folder), "header": self.header,
                "retry_interval_s": self.retry_interval_s}

    def __setstate__(self, state):
        self.__init__(state["tracking_uri"], state["folder"], state["header"],
                      retry_interval_s=state["retry_interval_s"])

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def online(self) -> bool:
        """True when writes go straight to MLflow. With records waiting, first replays them
        (at most one try per retry interval)."""
        if self.pending and time.monotonic() >= self._retry_at:
            self.drain()
        return not self.pending and time.monotonic() >= self._retry_at

    def submit(self, record: dict, files: str | Path | None = None) -> dict | None:
        if self.online():
            try:
                return apply_record(self.client, record, self.state, files=files)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._went_down(exc)
        self._append(record, files)
        return None

    def drain(self) -> bool:
        """Replay what is waiting, now; True when nothing is left. Skipped (False) while another
        process (``xfer replay``) holds the spool."""
        from filelock import FileLock, Timeout

        if not self.pending:
            return True
        try:
            with _one_quick_try():
                self.client.search_experiments(max_results=1)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._went_down(exc)
            return False
        lock = FileLock(str(self.folder / LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        try:
            outcome = replay_pending(self.client, self.spool, self.state, self.echo)
        finally:
            lock.release()
        self.pending = outcome.left
        if outcome.unavailable:
            self._went_down(outcome.unavailable)
            return False
        self._retry_at, self._down = 0.0, False
        self.echo(f"MLflow at {redacted_uri(self.tracking_uri)} answers again: replayed "
                  f"{outcome.applied} spooled records ({outcome.runs_created} runs created"
                  f"{f', {outcome.rejected} refused' if outcome.rejected else ''}) from {self.folder}")
        return True

    def _went_down(self, why: BaseException | str) -> None:
        if not self._down:  # said once per outage
            self.echo(f"MLflow at {redacted_uri(self.tracking_uri)} is unavailable "
                      f"({why if isinstance(why, str) else _one_line(why)}): spooling its records "
                      f"to {self.folder}; retrying every {self.retry_interval_s:.0f} s")
            self._down = True
        self._retry_at = time.monotonic() + self.retry_interval_s

    def _append(self, record: dict, files: str | Path | None) -> None:
        if not self.spool.exists():
            self.spool.append({"seq": 0, "op": "header", "version": SPOOL_VERSION,
                               "created": time.time(), **self.header})
            self._next_seq = max(self._next_seq, 1)
        record = {**record, "seq": self._next_seq}
        if record["op"] == "log_artifacts":
            record["dir"] = self.spool.stash(record["seq"], files)
        self.spool.append(record)
        self._next_seq += 1
        self.pending += 1
        self.spooled += 1


@contextlib.contextmanager
def _one_quick_try():
    """MLflow reads its HTTP settings at every request: this process's next requests get no
    retries and a PROBE_TIMEOUT_S timeout. The driver makes its MLflow calls from one thread."""
    with env_overrides({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}):
        yield


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
        outcome = ReplayOutcome(left=left, unavailable=_one_line(exc))
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
