"""Where a sweep keeps its Ray state, checkpoints and ``xfer_sweep.json``: a local folder or S3.

Layout: ``<storage>/<experiment>/<sweep_id>/`` is Ray Tune's experiment folder (trial
checkpoints, experiment state) plus ``xfer_sweep.json`` (sweep id, parent run, options), which
is what ``--resume`` looks for. S3 goes through pyarrow's S3 filesystem, the one Ray uses, with
``AWS_ENDPOINT_URL`` as the endpoint override so S3-compatible stores (MinIO, moto) work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from xfer.errors import Unavailable, UsageError

META_FILE = "xfer_sweep.json"


@dataclass
class SweepStore:
    uri: str  # as the user gave it
    fs: pafs.FileSystem
    root: str  # the root as a path inside fs ("bucket/prefix" for S3)
    is_s3: bool

    @classmethod
    def open(cls, uri: str) -> "SweepStore":
        if uri.startswith("s3://"):
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            kwargs = {}
            if endpoint:
                kwargs["endpoint_override"] = endpoint
                kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if region:
                kwargs["region"] = region
            return cls(uri, pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/"), True)
        root = str(Path(uri).expanduser().resolve())
        return cls(uri, pafs.LocalFileSystem(), root, False)

    def experiment_root(self, experiment: str) -> str:
        """``storage_path`` for Ray's RunConfig (with ``storage_filesystem=self.fs``)."""
        return f"{self.root}/{experiment}"

    def sweep_path(self, experiment: str, sweep_id: str) -> str:
        return f"{self.root}/{experiment}/{sweep_id}"

    def display(self, experiment: str, sweep_id: str) -> str:
        path = self.sweep_path(experiment, sweep_id)
        return f"s3://{path}" if self.is_s3 else path

    def write_meta(self, experiment: str, sweep_id: str, meta: dict) -> None:
        folder = self.sweep_path(experiment, sweep_id)
        self.fs.create_dir(folder, recursive=True)
        with self.fs.open_output_stream(f"{folder}/{META_FILE}") as out:
            out.write(json.dumps(meta, indent=2).encode())

    def read_meta(self, experiment: str, sweep_id: str) -> dict:
        """The sweep's record, checked as it is read: a damaged one (a torn write, a bad copy)
        is a UsageError "corrupt sweep record: PATH: why", never a traceback and never
        silently skipped (``--resume`` would then pick an older sweep)."""
        path = f"{self.sweep_path(experiment, sweep_id)}/{META_FILE}"
        with self.fs.open_input_stream(path) as src:
            data = src.read()
        try:
            meta = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self._corrupt(path, "empty" if not data.strip() else
                                f"not JSON ({getattr(exc, 'msg', None) or type(exc).__name__})") from None
        if not isinstance(meta, dict):
            raise self._corrupt(path, f"not a JSON object (a {type(meta).__name__})")
        if not isinstance(meta.get("sweep_id"), str) or not meta["sweep_id"]:
            raise self._corrupt(path, f"no sweep_id (got {meta.get('sweep_id')!r})")
        if not isinstance(meta.get("started_at"), (int, float)) or isinstance(meta["started_at"], bool):
            raise self._corrupt(path, f"started_at must be a time in seconds, got {meta.get('started_at')!r}")
        return meta

    def _corrupt(self, path: str, why: str) -> UsageError:
        shown = f"s3://{path}" if self.is_s3 else path
        return UsageError(f"corrupt sweep record: {shown}: {why}; move that sweep's folder away to "
                          "resume another sweep, or run without --resume to start a new one")

    def tune_state_saved(self, experiment: str, sweep_id: str) -> bool:
        """Whether Tune saved its experiment state (``experiment_state-*.json``) for this sweep.
        A driver stopped before Tune's first save leaves only ``tuner.pkl``: Tuner.can_restore
        says yes, and the restored run has no state and one trial with an empty config."""
        selector = pafs.FileSelector(self.sweep_path(experiment, sweep_id), allow_not_found=True)
        return any(info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json")
                   for info in self.fs.get_file_info(selector))

    def latest_unfinished(self, experiment: str) -> dict | None:
        """The most recently started sweep of ``experiment`` that did not finish. The record's
        ``state`` says how it stopped (``tune_run.launch``): "running" (its driver was killed),
        "interrupted" (SIGINT or SIGTERM, also in ``interrupted``), "failed" (``error``); all
        three keep ``finished`` false, so ``--resume`` continues any of them."""
        selector = pafs.FileSelector(self.experiment_root(experiment), allow_not_found=True)
        try:
            listing = self.fs.get_file_info(selector)
        except OSError as exc:  # pyarrow: endpoint down, no or wrong credentials, no such bucket
            if not self.is_s3:
                raise
            reason = str(exc).split("; Details:")[0].strip()
            raise Unavailable(f"--resume: cannot list s3://{self.experiment_root(experiment)}/ "
                              f"({reason}); check AWS_ENDPOINT_URL and the AWS credentials") from None
        metas = []
        for info in listing:
            if info.type != pafs.FileType.Directory:
                continue
            try:
                meta = self.read_meta(experiment, info.base_name)
            except UsageError:
                raise  # a damaged record is named, not skipped
            except (FileNotFoundError, OSError):
                continue  # a folder that is not a sweep's (or not yet: no record written)
            if not meta.get("finished"):
                metas.append(meta)
        return max(metas, key=lambda m: m["started_at"], default=None)
