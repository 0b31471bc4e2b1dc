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

from xfer.errors import Unavailable

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
        with self.fs.open_input_stream(f"{self.sweep_path(experiment, sweep_id)}/{META_FILE}") as src:
            return json.loads(src.read().decode())

    def latest_unfinished(self, experiment: str) -> dict | None:
        """The most recently started sweep of ``experiment`` that did not finish."""
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
            except (FileNotFoundError, OSError, ValueError):
                continue
            if not meta.get("finished"):
                metas.append(meta)
        return max(metas, key=lambda m: m["started_at"], default=None)
