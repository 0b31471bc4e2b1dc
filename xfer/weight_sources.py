"""Where a ``--weights`` source's bytes come from: what kind of source a string names, its
``#sha256=`` pin, and reading the exact bytes of a local file, an ``s3://`` object or an MLflow
artifact (``runs:/``, ``models:/``, ``mlflow-artifacts:``).

Each reader returns the raw bytes and a resolved, human-readable label; hashing and unpickling
them is ``xfer.weights``' job, the same for every source. ImageNet is a source of its own
(``xfer.imagenet_weights``): it has a cache, a download and a pre-flight check. Neither boto3
nor MLflow is imported until a source of that kind is read.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from xfer.errors import Unavailable, UsageError

SOURCE_KINDS = ("imagenet", "file", "s3", "mlflow")
SOURCE_FORMS = ("imagenet, a file path (or file://PATH), s3://BUCKET/KEY, runs:/RUN_ID/PATH, "
                "models:/NAME/VERSION, mlflow-artifacts:/PATH")
MLFLOW_PREFIXES = ("runs:/", "models:/", "mlflow-artifacts:")
SHA256_PIN = "#sha256="  # SOURCE#sha256=HEX: the sha256 the loaded bytes must have

_S3_CREDENTIALS_HELP = ("{uri} needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or AWS_PROFILE, or an instance role)")


def describe_source(source: str) -> str:
    """The kind of a weights source, one of ``SOURCE_KINDS``: ``imagenet``, ``file``, ``s3`` or
    ``mlflow``. An empty source or an unsupported URI scheme (http, gs, hf, ...) is a UsageError
    that lists the accepted forms. ``imagenet`` wins over a file of that name; write ``./imagenet``
    for the file."""
    text = split_sha256_pin(source)[0] if isinstance(source, str) else ""
    if not text:
        raise UsageError(f"empty weights source (valid: {SOURCE_FORMS})")
    if text.lower() == "imagenet":
        return "imagenet"
    if text.startswith("s3://"):
        return "s3"
    if text.startswith(MLFLOW_PREFIXES):
        return "mlflow"
    if text.startswith("file://"):
        return "file"
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise UsageError(f"unsupported weights source {source!r}: scheme {scheme.group(1)}:// "
                         f"(valid: {SOURCE_FORMS})")
    return "file"


def split_sha256_pin(source: str) -> tuple[str, str | None]:
    """``("SOURCE", "hex")`` from ``"SOURCE#sha256=HEX"``; ``(SOURCE, None)`` without a pin. The
    pin must be 64 hex digits (UsageError otherwise). Only a trailing ``#sha256=`` counts: S3
    keys and file names may contain ``#`` elsewhere."""
    text = source.strip()
    head, sep, pin = text.rpartition(SHA256_PIN)
    if not sep:
        return text, None
    if not head:
        raise UsageError(f"weights source {source!r} pins a hash but names no weights "
                         f"(valid: SOURCE{SHA256_PIN}HEX, SOURCE one of {SOURCE_FORMS})")
    return head, check_sha256_arg(pin, f"the sha256 pinned in {source!r}")


def check_sha256_arg(expected: str | None, what: str = "expected sha256") -> str | None:
    if expected is None:
        return None
    normalized = expected.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", normalized):
        raise UsageError(f"{what} must be 64 hex digits, got {expected!r}")
    return normalized


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def read_file(source: str) -> tuple[bytes, str]:
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise UsageError(f"weights source {path} is a folder; pass the weights file inside it")
    if not path.is_file():  # a FIFO would block the read forever, a device never end
        raise UsageError(f"weights source {path} is not a regular file (a FIFO, socket or "
                         "device); pass the weights file")
    return path.read_bytes(), f"file:{path.resolve()}"


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    # Split by hand, not with urlsplit: S3 keys may legally contain '?' and '#'.
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise UsageError(f"malformed S3 URI {uri!r}: expected s3://BUCKET/KEY naming one object")
    return bucket, key


def read_s3(uri: str) -> bytes:
    bucket, key = _parse_s3_uri(uri)
    import boto3  # lazy: only s3:// sources need boto3, and it costs ~0.3 s to import
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                     EndpointConnectionError, NoCredentialsError, ReadTimeoutError)

    # A fresh session reads the environment now (the default session caches credentials).
    # boto3 >= 1.34 honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself (MinIO, Ceph, moto).
    session = boto3.session.Session()
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise UsageError(f"{_S3_CREDENTIALS_HELP.format(uri=uri)} ({exc})") from exc
    if credentials is None:
        raise UsageError(_S3_CREDENTIALS_HELP.format(uri=uri))
    client = session.client("s3")
    try:
        # Reads the whole object into memory: weights are loaded from bytes anyway (see xfer.weights._torch_load).
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except NoCredentialsError as exc:
        raise UsageError(_S3_CREDENTIALS_HELP.format(uri=uri)) from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        # a service that does not answer: exit 1 (xfer.errors), the input may be fine
        raise Unavailable(f"cannot reach the S3 endpoint for {uri} ({exc}); "
                          "check AWS_ENDPOINT_URL and the network") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "unknown"), error.get("Message", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise FileNotFoundError(f"{uri} not found: no object {key!r} in bucket {bucket!r}") from exc
        if code == "NoSuchBucket":
            raise FileNotFoundError(f"{uri} not found: no bucket {bucket!r}") from exc
        raise UsageError(f"S3 refused {uri} ({code}: {message})") from exc


def read_mlflow(uri: str) -> tuple[bytes, str]:
    # Lazy import: this module is the pure core and must import (and run) without MLflow;
    # xfer.tracking is the one place xfer talks to MLflow, and only these URIs need it.
    from xfer.tracking.artifacts import download_artifact

    with tempfile.TemporaryDirectory(prefix="xfer-weights-") as tmp:
        path = download_artifact(uri, tmp)
        label = uri
        if path.is_dir():  # runs:/<id>/weights is fine when the folder holds one file
            files = sorted(p for p in path.rglob("*") if p.is_file())
            if len(files) != 1:
                names = ", ".join(str(p.relative_to(path)) for p in files[:5]) or "nothing"
                raise UsageError(f"{uri} is an artifact folder holding {len(files)} files "
                                 f"({names}); name the weights file, e.g. {uri.rstrip('/')}/model.pt")
            label = f"{uri.rstrip('/')}/{files[0].relative_to(path).as_posix()}"
            path = files[0]
        return path.read_bytes(), label
