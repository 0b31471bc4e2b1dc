"""Endpoints first: the tracking store and the sweep's S3 storage checked before anything starts.

Why: a sweep that finds out about a dead tracking server or S3 endpoint only when it creates its
parent run has already built the dataset, pretrained, started Ray and opened runs, and then
dies with a long traceback (or leaves the parent RUNNING). These checks run after the options
are validated and before the dataset, the weights or Ray, and say what is wrong in one line:

- ``check_tracking_uri``: the URI parses, its scheme has an MLflow tracking store, a server URI
  names a host and a numeric port. Malformed is bad input: ``UsageError``, exit 2.
- ``probe_tracking_store``: the store answers and takes a write (the experiment is found or
  created, then tagged ``xfer.store_checked``). No answer, refused, or read-only:
  ``Unavailable``, exit 1 (a retry may work; the input may be fine). With ``write=False`` (a
  ``--dry-run``) nothing is written: a server is asked for the experiment. A local store (SQLite
  file, folder) that does not exist yet, or any local store in a dry run, is checked on disk
  only (os.access sees a read-only filesystem even for root), so no probe creates ``mlflow.db``.
- ``probe_s3_storage``: the bucket answers and a probe object can be written and deleted.
- ``tracking_calls``: the same bounded retries for ``xfer frontier`` and ``xfer replay``, and
  any "did not answer" failure inside turned into one line, exit 1.

Cost: the probe is one or two MLflow calls. A refused connection fails in about 1 s, a server
that accepts and never answers in about ``2 x PROBE_TIMEOUT_S + 1`` s (one retry, backoff 1 s),
instead of MLflow's ~4 minutes of default retries. Variables the user set are kept.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
import uuid
from pathlib import Path

from xfer.errors import Unavailable, UsageError
from xfer.names import STORE_CHECKED_TAG
from xfer.tracking import env_overrides, redacted_uri

PROBE_TIMEOUT_S = 5  # s per connect and per read of a probe request
PROBE_RETRIES = 1  # one retry: a server restarting right now still gets a second chance
_SERVER_SCHEMES = ("http", "https")
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def tracking_schemes() -> list[str]:
    """The URI schemes this MLflow has a tracking store for (plugins included)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        schemes = set(_tracking_store_registry._registry)  # private, but the one true list
    except (ImportError, AttributeError):  # pragma: no cover - a future MLflow moved it
        schemes = {"", "file", "databricks", "databricks-uc", "uc", *_SERVER_SCHEMES, *_SQL_SCHEMES}
    return sorted(s for s in schemes if s)


def check_tracking_uri(uri: str) -> str:
    """``uri`` if MLflow can open a tracking store from it, else a one-line UsageError saying
    what is wrong. Nothing is contacted or created."""
    shown = redacted_uri(uri)
    if not uri.strip() or any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise UsageError(f"malformed tracking URI {shown!r} (MLFLOW_TRACKING_URI): empty or with "
                         "control characters")
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0].lower()  # postgresql+psycopg2 -> postgresql
    if len(scheme) == 1:  # C:\path on Windows reads as scheme "c"
        scheme = ""
    if scheme and scheme not in tracking_schemes():
        raise UsageError(f"unknown tracking URI scheme {parts.scheme!r} in {shown!r} "
                         f"(MLFLOW_TRACKING_URI; valid: {', '.join(tracking_schemes())}, or a folder path)")
    if scheme in _SERVER_SCHEMES:
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"malformed tracking URI {shown!r}: the port is not a number "
                             "(MLFLOW_TRACKING_URI, e.g. http://host:5000)") from None
        if not parts.hostname or port == 0:
            raise UsageError(f"malformed tracking URI {shown!r}: no host (MLFLOW_TRACKING_URI, "
                             "e.g. http://host:5000)")
    if scheme == "sqlite" and not (uri.startswith("sqlite:///") or uri == "sqlite://"):
        raise UsageError(f"malformed tracking URI {shown!r}: a SQLite URI is sqlite:///relative/path.db "
                         "or sqlite:////absolute/path.db")
    return uri


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) a local tracking URI names; None for servers,
    other databases and in-memory SQLite."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "sqlite":
        path = uri[len("sqlite:///"):].split("?")[0]
        return None if path in ("", ":memory:") else Path(path)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme == "" or len(parts.scheme) == 1:
        return Path(uri)
    return None


@contextlib.contextmanager
def _probe_settings():
    """MLflow reads its HTTP settings at every request: the probe's requests get one retry and a
    PROBE_TIMEOUT_S timeout, unless the user set their own."""
    from xfer.tracking.outage import DRIVER_CLIENT_ENV

    probe = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(PROBE_RETRIES),
             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}
    mine = {key: value for key, value in probe.items()  # a setting the user made stays theirs
            if os.environ.get(key) is None or os.environ.get(key) == DRIVER_CLIENT_ENV.get(key)}
    with env_overrides(mine):
        yield


def _unavailable(uri: str, exc: BaseException) -> Unavailable:
    from xfer.tracking.outage import one_line

    return Unavailable(f"MLflow at {redacted_uri(uri)} did not answer or refused a write "
                       f"({one_line(exc)}); check MLFLOW_TRACKING_URI and that the tracking "
                       "server (or database) is up and writable")


def probe_tracking_store(uri: str, experiment: str, *, write: bool = True) -> None:
    """The store at ``uri`` answers and (``write``) takes a write: ``experiment`` is found, or
    created (restored if deleted), then tagged ``STORE_CHECKED_TAG``. Unavailable, one line, if not."""
    check_tracking_uri(uri)
    path = local_store_path(uri)
    if path is not None:
        _check_local_writable(uri, path)  # a clear message before SQLite's "readonly database"
        if not write or not path.expanduser().exists():
            # a dry run never creates the store; nor does the probe of a store that does not
            # exist yet (a writable folder is all it needs), so a check that fails later
            # leaves no stray mlflow.db
            return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from xfer.tracking.outage import is_unavailable

    with _probe_settings():
        try:
            client = MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if not write:
                return
            if found is None:
                experiment_id = client.create_experiment(experiment)
            else:
                experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment_id)
            client.set_experiment_tag(experiment_id, STORE_CHECKED_TAG, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                time.gmtime()))
        except MlflowException as exc:
            if is_unavailable(exc) or _is_read_only(exc):
                raise _unavailable(uri, exc) from None
            raise UsageError(f"MLflow at {redacted_uri(uri)} refused the sweep's experiment "
                             f"{experiment!r}: {_first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy, requests, OS errors: all "no answer"
            if isinstance(exc, UsageError):
                raise
            raise _unavailable(uri, exc) from None


def _check_local_writable(uri: str, path: Path) -> None:
    """A local store's file (or, before it exists, the nearest existing folder above it) must be
    writable. os.access sees a read-only filesystem (EROFS) even for root."""
    path = path.expanduser().absolute()
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    if existing is None:
        return
    targets = [existing] + ([existing.parent] if existing == path and path.is_file() else [])
    for target in targets:  # SQLite writes its journal next to the file
        if not os.access(target, os.W_OK):
            raise Unavailable(f"MLflow store {path} is not writable ({target} is read-only; "
                              f"tracking URI {redacted_uri(uri)}): point MLFLOW_TRACKING_URI at a "
                              "writable place")


def _is_read_only(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if "readonly database" in text or "read-only file system" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


@contextlib.contextmanager
def tracking_calls(uri: str | None = None):
    """What ``xfer frontier`` and ``xfer replay`` do around their MLflow calls: the URI (default:
    MLflow's, from MLFLOW_TRACKING_URI) checked, the sweep driver's bounded retries
    (``set_driver_client_env``), and a tracking store that does not answer turned into one
    line, ``Unavailable`` (exit 1), instead of minutes of silence and a traceback."""
    import mlflow

    from xfer.tracking.outage import is_unavailable, set_driver_client_env

    uri = uri or mlflow.get_tracking_uri()
    check_tracking_uri(uri)
    set_driver_client_env()
    try:
        yield
    except (UsageError, Unavailable, FileNotFoundError):
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(uri, exc) from None
        raise


def probe_s3_storage(store, experiment: str, *, write: bool = True) -> None:
    """A sweep's S3 storage (``xfer.sweep.storage.SweepStore``) answers and (``write``) takes a
    probe object under ``<root>/<experiment>/``, deleted right after. Unavailable, one line, if
    not. Local storage is checked by creating its folders when the sweep starts."""
    if not store.is_s3:
        return
    folder = store.experiment_root(experiment)
    probe = f"{folder}/.xfer-probe-{uuid.uuid4().hex[:12]}"
    try:
        if write:
            with store.fs.open_output_stream(probe) as out:
                out.write(b"xfer storage probe\n")
            store.fs.delete_file(probe)
        else:
            import pyarrow.fs as pafs

            store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except OSError as exc:  # pyarrow: endpoint down, no or wrong credentials, no bucket, denied
        reason = " ".join(str(exc).split("; Details:")[0].split())
        raise Unavailable(f"--storage s3://{folder}/ is not {'writable' if write else 'readable'} "
                          f"({reason}); check AWS_ENDPOINT_URL, the bucket and the AWS credentials") from None
