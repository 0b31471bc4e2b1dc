"""A durable local spool of MLflow writes: what a sweep's driver records while the tracking server
does not answer, replayed in order as soon as it answers again, or later by ``xfer replay``.

Why: the driver is the only MLflow writer (``xfer.sweep.mlflow_logger``). Without a spool an
outage either stops the sweep (a Tune callback that raises ends ``Tuner.fit``) or, with
MLflow's default HTTP retries, stalls it for minutes at every callback.

This module holds the driver's writer (``SpoolingWriter``); the pieces it stands on are
modules of their own: what an outage is and what it costs (``xfer.tracking.outage``), the
spool folder's files (``xfer.tracking.journal``) and the replay, record by record, that
``xfer replay`` also runs (``xfer.tracking.replay``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from xfer.tracking import redacted_uri
from xfer.tracking.journal import LOCK, SPOOL_VERSION, Spool
from xfer.tracking.outage import RETRY_INTERVAL_S, is_unavailable, one_line, one_quick_try
from xfer.tracking.replay import ReplayState, apply_record, replay_pending


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
            with one_quick_try():
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
                      f"({why if isinstance(why, str) else one_line(why)}): spooling its records "
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
