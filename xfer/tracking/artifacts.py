"""Download one MLflow artifact (``runs:/``, ``models:/``, ``mlflow-artifacts:``) to a folder.

The tracking server is ``MLFLOW_TRACKING_URI`` if set, else MLflow's own default
(``sqlite:///mlflow.db`` in the working directory), exactly as every other MLflow call in xfer.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from xfer.errors import UsageError
from xfer.tracking import redacted_uri


def download_artifact(uri: str, dst_dir: str | Path) -> Path:
    """Download the artifact ``uri`` (a file or a folder) into ``dst_dir`` and return its local
    path. An unknown run, model or artifact path is a FileNotFoundError; any other MLflow refusal
    (a malformed URI, an ``mlflow-artifacts:`` URI without an HTTP tracking server) is a
    UsageError. Both are one line that names the URI and the tracking server."""
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as exc:
        reason = (str(exc.message).strip().splitlines() or [""])[0]
        where = f"MLflow at {redacted_uri(mlflow.get_tracking_uri())}"
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise FileNotFoundError(f"{uri} not found in {where}: {reason}") from exc
        raise UsageError(f"cannot download {uri} from {where}: {reason}") from exc
