"""The spool folder on disk: its files, their line format, and the checks that name a damaged
file instead of failing inside a replay.

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

No MLflow here: the files are plain JSON lines, read by the replay (``xfer.tracking.replay``)
and written by the driver's writer (``xfer.tracking.spool``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from xfer.errors import UsageError

JOURNAL, ACKS, REJECTED, ARTIFACTS, LOCK = ("journal.jsonl", "replayed.jsonl", "rejected.jsonl",
                                            "artifacts", "replay.lock")
PLACEHOLDER = "pending:"
SPOOL_VERSION = 1


def placeholder(trial_id: str) -> str:
    """The run id a trial's records carry until its run exists (deterministic: a restarted
    driver that spools the same trial again names the same run)."""
    return f"{PLACEHOLDER}{trial_id}"


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
