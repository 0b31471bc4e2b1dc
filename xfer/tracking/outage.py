"""How the sweep's driver and ``xfer replay`` talk to a tracking server that may be down: the
bounded HTTP retries, the quick probe, and which exceptions mean "unavailable" (spool and retry)
rather than "refused" (would fail again the same way).

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

Separate from the spool's files and its replay because the endpoint checks
(``xfer.tracking.endpoints``) classify errors the same way without spooling anything.
"""

from __future__ import annotations

import contextlib
import os

from mlflow.exceptions import MlflowException, RestException

from xfer.errors import exception_line
from xfer.tracking import env_overrides

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


def one_line(exc: BaseException) -> str:
    """The root cause, on one line ("ConnectionRefusedError: [Errno 111] Connection refused"),
    not MLflow's wrapper, which repeats the URL and urllib3's retry summary."""
    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__
        seen.add(id(exc))
    return exception_line(exc, 300)


@contextlib.contextmanager
def one_quick_try():
    """MLflow reads its HTTP settings at every request: this process's next requests get no
    retries and a PROBE_TIMEOUT_S timeout. The driver makes its MLflow calls from one thread."""
    with env_overrides({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}):
        yield
