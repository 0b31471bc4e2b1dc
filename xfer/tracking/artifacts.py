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
    UsageError. Both are one line that names the URI and the tracking server. A local store that
    does not exist is a FileNotFoundError, checked before MLflow would create an empty one
    (``./mlflow.db``) just to look the run up; a server that does not answer is Unavailable
    (exit 1), after the sweep driver's bounded retries."""
    from xfer.tracking.endpoints import local_store_path, tracking_calls

    store = mlflow.get_tracking_uri()
    local = local_store_path(store)
    if local is not None and not local.expanduser().exists():
        raise FileNotFoundError(f"{uri} not found: no MLflow store at {local} (tracking URI "
                                f"{redacted_uri(store)}); set MLFLOW_TRACKING_URI to the store that "
                                "holds the run")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        with tracking_calls(store):
            return Path(download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as exc:
        reason = (str(exc.message).strip().splitlines() or [""])[0]
        where = f"MLflow at {redacted_uri(mlflow.get_tracking_uri())}"
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise FileNotFoundError(f"{uri} not found in {where}: {reason}") from exc
        raise UsageError(f"cannot download {uri} from {where}: {reason}") from exc
