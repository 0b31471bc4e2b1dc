"""What a trial costs in multiply-accumulates (MACs): per image, per training run, per the card.

``macs_per_image`` counts one forward pass with ptflops' ``aten`` backend, which intercepts the
convolution and matmul kernels actually dispatched (``aten.convolution``, ``aten.addmm``, ...).
ptflops 0.7.x defaults to its module-hook backend, which over-counts, so the backend is always
passed explicitly. Element-wise work (BatchNorm, ReLU, pooling) is not counted; that is the
usual convention and matches torchvision's published figures (resnet50 at 224 px: 4.089 GMACs,
``ResNet50_Weights.IMAGENET1K_V2.meta["_ops"]``, which torchvision labels GFLOPS).

The count runs the model in eval mode, so inception_v3's aux classifier, which only runs in
training, is excluded: about 5 MMACs at 299 px (a 1x1 conv 768->128 and a 5x5 conv 128->768 on
a 5x5 map), under 0.1% of its 5.7 GMACs, so ``train_macs`` under-counts inception by that much.

Training MACs per image (the rule for partly frozen models)
-----------------------------------------------------------
One forward pass over everything, plus a backward pass only over what gradients must flow
through: from the first trained layer to the loss. Per MAC-counted module (conv, linear) with
forward MACs ``f``, the backward pass costs

- ``2 f`` when the module's own weights are trained: ``f`` for the gradient with respect to its
  weights and ``f`` for the gradient with respect to its input;
- ``f`` when its weights are frozen but its input carries a gradient (a frozen module after a
  trained one; none of xfer's train_layers settings builds one, they train a suffix);
- ``0`` when neither: the frozen backbone below the first trained layer, and any frozen branch
  off the gradient path.

So ``train_layers=all`` is exactly 3 x forward (the fixed convention of ``train_macs``, Kaplan et
al. 2020, sec. 2.1), ``head`` is forward + 2 x the head's MACs, and ``last_block`` is forward + 2 x
(last stage + head). Which module is on the gradient path is not guessed from names or order: a
forward pass with autograd on records, per module, whether its input requires a gradient.

The input gradient of a trained module whose input needs none (the first trained layer) is
still counted: that keeps ``all`` at exactly 3 x forward, and over-counts a partly frozen model
by those modules' forward MACs. For a head-only model that is the head itself (resnet50, 10
classes: 20,490 MACs); for resnet ``last_block`` it is ``layer4.0``'s ``conv1`` and its
``downsample`` conv, the two that read ``layer3``'s output: for resnet50 16.8 MMACs of a
466 MMAC training image at 64 px, 206 MMACs of 5.71 GMACs at 224 px, 3.6% either way.
Element-wise work (BatchNorm, activations) is not counted, forward or backward, as above. MACs
that ptflops counts outside a conv/linear module (none in xfer's models: for each of them the
conv/linear MACs sum to ptflops' count exactly) are treated as trained.

For resnet50 with 10 classes the rule gives, per training image: head-only 1.000 x forward
(0.33 x the old 3 x forward convention), last_block 1.40 x forward (0.47 x).

Pretraining cost
----------------
What producing the starting weights cost is its own number, never added to ``train_macs``:
:func:`pretraining_macs` gives the measured ``train_macs`` of an ``xfer pretrain`` run (stored
in the weights file) or, for ImageNet weights, the estimate of :func:`imagenet_pretraining_macs`:
the recipe's epochs x 1,281,167 images x 3 x forward MACs at the recipe's training resolution
(:data:`IMAGENET_RECIPES` names each recipe and its source). ``xfer.frontier`` spreads it over
N uses of the same weights (``amortized_cost``, ``break_even_uses``): the report needs that math
without torch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from xfer.errors import UsageError
from xfer.models import create_model, min_image_size


def macs_per_image(model: nn.Module, input_size: int) -> int:
    """Forward MACs for one 3 x input_size x input_size image.

    Counts on a CPU deep copy in eval mode, so the caller's model, its device and its BatchNorm
    statistics are untouched. Costs one model copy and one CPU forward pass (about 0.3 s for
    resnet50 at 224 px on 2 cores); the trainer uses the cached :func:`macs_per_image_for`.
    """
    from ptflops import get_model_complexity_info  # here: `import xfer.train` works without it

    counted = copy.deepcopy(model).cpu().eval()
    log = io.StringIO()
    # ptflops prints (and swallows) errors; keep its output off the console and in our error.
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), torch.no_grad():
        macs, _ = get_model_complexity_info(counted, (3, input_size, input_size),
                                            as_strings=False, print_per_layer_stat=False,
                                            backend="aten", ost=log)
    if macs is None:
        raise RuntimeError(f"ptflops could not count MACs at {input_size} px:\n{log.getvalue()}")
    return int(macs)


@functools.lru_cache(maxsize=None)
def macs_per_image_for(name: str, num_classes: int, head: str, input_size: int) -> int:
    """:func:`macs_per_image` of a scratch ``name``, computed once per process and key.

    init and train_layers do not change the forward pass, so they are not part of the key.
    ``input_size`` is the size the model is fed (``xfer.models.input_size_for``).
    """
    if input_size < min_image_size(name):
        raise UsageError(f"input_size {input_size} is too small for {name}: it needs >= "
                         f"{min_image_size(name)} px")
    # Building the model draws random weights; fork the RNG so that asking for a cost never
    # changes what a seeded trial trains (the first call in a process would, the cached ones not).
    with torch.random.fork_rng(devices=[]):
        return macs_per_image(create_model(name, num_classes, head=head), input_size)


def _counted_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    """Forward MACs of one conv or linear call, as ptflops' aten backend counts them: one per
    weight use, plus one add per output for the bias (0 for any other module)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        # batch x weight elements x output positions (input positions for a transposed conv):
        # output elements x in_channels/groups x kernel size, ptflops' conv_flop_count.
        x = inputs[0]
        spatial = (x if module.transposed else output).shape[2:]
        macs = x.shape[0] * module.weight.numel() * math.prod(spatial)
    elif isinstance(module, nn.Linear):
        macs = output.numel() * module.in_features  # output elements x in_features
    else:
        return 0
    if module.bias is not None:
        macs += output.numel()
    return int(macs)


@dataclass(frozen=True)
class ModuleMacs:
    """One conv/linear call of a forward pass (see :func:`mac_trace`)."""
    name: str              # the module's qualified name, e.g. "layer4.0.conv1"
    macs: int              # its forward MACs, as ptflops counts them
    trained: bool          # it has a parameter with requires_grad
    input_needs_grad: bool  # its input requires a gradient (something below it is trained)


def mac_trace(model: nn.Module, input_size: int) -> list[ModuleMacs]:
    """Every conv/linear call of one forward pass on a 3 x input_size x input_size image, in
    execution order, with its MACs and whether it sits on the gradient path.

    Runs a CPU deep copy in eval mode with autograd on (activations' ``requires_grad`` is what
    says which modules a gradient reaches), one forward pass with batch 1, so the caller's model
    is untouched. For xfer's models the MACs sum to :func:`macs_per_image` exactly.
    """
    counted = copy.deepcopy(model).cpu().eval()
    names = {module: name for name, module in counted.named_modules()}
    trace: list[ModuleMacs] = []

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        x = inputs[0] if inputs else None
        trace.append(ModuleMacs(
            name=names[module], macs=_counted_macs(module, inputs, output),
            trained=any(p.requires_grad for p in module.parameters(recurse=False)),
            input_needs_grad=isinstance(x, torch.Tensor) and x.requires_grad))

    handles = [m.register_forward_hook(hook) for m in counted.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.enable_grad():
            counted(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
    return trace


def backward_macs_per_image(model: nn.Module, input_size: int,
                            forward_macs: int | None = None) -> int:
    """Backward MACs for one 3 x input_size x input_size image under the rule in the module
    docstring, with the model's own ``requires_grad`` flags saying what is trained.

    ``forward_macs`` is :func:`macs_per_image` of the same model (computed when None). The
    result is 2 x that, less what the frozen part skips (from :func:`mac_trace`): 2 x the MACs
    of each conv/linear whose weights are frozen and whose input needs no gradient, 1 x those
    of a frozen one whose input does. Costs a model copy and one CPU forward pass.
    """
    if forward_macs is None:
        forward_macs = macs_per_image(model, input_size)
    skipped = sum(call.macs if call.input_needs_grad else 2 * call.macs
                  for call in mac_trace(model, input_size) if not call.trained)
    backward = 2 * int(forward_macs) - skipped
    if backward < 0:
        raise RuntimeError(f"backward MACs came out negative ({backward}): forward_macs "
                           f"{forward_macs} is not this model's forward count at {input_size} px")
    return backward


@functools.lru_cache(maxsize=None)
def backward_macs_per_image_for(name: str, num_classes: int, head: str, train_layers: str,
                                input_size: int) -> int:
    """:func:`backward_macs_per_image` of a scratch ``name`` with ``train_layers`` trained,
    computed once per process and key (the init does not change which layers train).
    ``train_layers="all"`` is exactly 2 x :func:`macs_per_image_for`."""
    forward = macs_per_image_for(name, num_classes, head, input_size)  # also checks the size
    if train_layers == "all":  # everything trained: nothing skipped, no model to build
        return 2 * forward
    with torch.random.fork_rng(devices=[]):  # as in macs_per_image_for: costs draw no numbers
        model = create_model(name, num_classes, head=head, train_layers=train_layers)
        return backward_macs_per_image(model, input_size, forward_macs=forward)


def training_macs_per_image_for(name: str, num_classes: int, head: str, train_layers: str,
                                input_size: int) -> int:
    """Forward + backward MACs of one training image: what :func:`train_macs` charges per
    image processed (3 x forward for ``train_layers="all"``)."""
    return (macs_per_image_for(name, num_classes, head, input_size)
            + backward_macs_per_image_for(name, num_classes, head, train_layers, input_size))


def train_macs(macs_per_image: int, images_processed: int,
               backward_macs_per_image: int | None = None) -> int:
    """MACs spent training: (forward + backward MACs per image) x training images processed.

    ``backward_macs_per_image`` comes from :func:`backward_macs_per_image_for` and follows the
    rule in the module docstring: backward only from the first trained layer to the loss. None
    means everything is trained: the backward pass costs twice the forward one (one product for
    the gradient with respect to the activations, one for the weights, each the size of the
    forward product; the 2N forward + 4N backward FLOPs per example of Kaplan et al. 2020,
    "Scaling Laws for Neural Language Models", sec. 2.1), so 3 x forward in all.
    Evaluation passes (validation, test) are not training and are not counted.
    """
    backward = (2 * int(macs_per_image) if backward_macs_per_image is None
                else int(backward_macs_per_image))
    if macs_per_image < 0 or images_processed < 0 or backward < 0:
        raise ValueError(f"train_macs needs non-negative counts, got macs_per_image="
                         f"{macs_per_image}, images_processed={images_processed}, "
                         f"backward_macs_per_image={backward_macs_per_image}")
    return (int(macs_per_image) + backward) * int(images_processed)


def macs_epochs_per_batch(macs_per_image: int, epochs_run: int, batch_size: int) -> float:
    """The design card's cost figure: ``macs_per_image x epochs_run / batch_size``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    return macs_per_image * epochs_run / batch_size


# --- pretraining ----------------------------------------------------------------------------

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC 2012 (ImageNet-1k) training set


@dataclass(frozen=True)
class ImagenetRecipe:
    """How a model's ImageNet weights were trained, as far as its publisher documents it."""
    weights: str     # the checkpoint xfer loads for ``--weights imagenet``
    recipe: str      # who trained it, how, in a few words
    epochs: int      # passes over the 1,281,167 training images
    train_size: int  # px, the training crop (the forward MACs are counted at this size)
    source: str      # where the epochs and the crop size are written down


# One entry per model with ImageNet weights. Epochs x images is the number of training images
# processed; repeated augmentation (torchvision's --ra-sampler) keeps an epoch at one dataset's
# worth of images (references/classification/sampler.py: num_selected_samples), so it changes
# nothing here. Not counted: the recipe authors' hyperparameter searches, EMA copies, evaluation
# passes, and for inception_v3 its aux classifier (under 0.1%, see the module docstring).
_TORCHVISION_V1 = "torchvision's classic recipe"  # SGD, lr / 10 every 30 epochs
_TORCHVISION_V2 = "torchvision's new recipe"  # TrivialAugment, mixup, cutmix, EMA, long training
IMAGENET_RECIPES: dict[str, ImagenetRecipe] = {
    # torchvision references/classification/README.md, "AlexNet and VGG": the defaults (90
    # epochs, 224 px crop) with --lr 1e-2. The weights' meta["recipe"] links that section.
    "alexnet": ImagenetRecipe("AlexNet_Weights.IMAGENET1K_V1", _TORCHVISION_V1, 90, 224,
                              "github.com/pytorch/vision/tree/main/references/classification"
                              "#alexnet-and-vgg"),
    "vgg19": ImagenetRecipe("VGG19_Weights.IMAGENET1K_V1", _TORCHVISION_V1, 90, 224,
                            "github.com/pytorch/vision/tree/main/references/classification"
                            "#alexnet-and-vgg"),
    # Same README, "ResNet": the defaults, 90 epochs at 224 px (the "Baseline" recipe of the
    # torchvision blog post below: epochs=90, train_crop_size=224).
    "resnet18": ImagenetRecipe("ResNet18_Weights.IMAGENET1K_V1", _TORCHVISION_V1, 90, 224,
                               "github.com/pytorch/vision/tree/main/references/classification"
                               "#resnet"),
    # V2 weights: torchvision's new recipe, pytorch.org/blog/how-to-train-state-of-the-art-
    # models-using-torchvision-latest-primitives ("epochs=600", "train_crop_size=176", FixRes
    # mitigation: evaluated at 224 after a 232 resize); meta["recipe"] links
    # github.com/pytorch/vision/issues/3995. The blog applies the one recipe to resnet152 too.
    "resnet50": ImagenetRecipe("ResNet50_Weights.IMAGENET1K_V2", _TORCHVISION_V2, 600, 176,
                               "pytorch.org/blog/how-to-train-state-of-the-art-models-using-"
                               "torchvision-latest-primitives"),
    "resnet152": ImagenetRecipe("ResNet152_Weights.IMAGENET1K_V2", _TORCHVISION_V2, 600, 176,
                                "pytorch.org/blog/how-to-train-state-of-the-art-models-using-"
                                "torchvision-latest-primitives"),
    # torchvision ported these weights (file efficientnet_b0_rwightman-7f5810bc.pth; vision PR
    # 4293: "ported from the repos of @rwightman and @lukemelas"); their 77.692% top-1 is timm's
    # own efficientnet_b0 ("EfficientNet-B0 with RandAugment - 77.7 top-1", timm's training
    # docs: --epochs 450, RMSProp-TF, at timm's 224 px default), not Google's TF checkpoint.
    "efficientnet_b0": ImagenetRecipe("EfficientNet_B0_Weights.IMAGENET1K_V1",
                                      "timm's RandAugment recipe, ported by torchvision", 450, 224,
                                      "github.com/huggingface/pytorch-image-models, docs "
                                      "'Training Examples'; github.com/pytorch/vision/pull/4293"),
    # Ported from Google: Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 8:
    # "batch size 32 for 100 epochs", at the 299 px input the paper uses.
    "inception_v3": ImagenetRecipe("Inception_V3_Weights.IMAGENET1K_V1",
                                   "Google's original recipe, ported by torchvision", 100, 299,
                                   "arxiv.org/abs/1512.00567, sec. 8"),
    # Google's TF TPU EfficientNet trainer (tensorflow/tpu models/official/efficientnet/main.py:
    # train_steps default 218949, "approximately 350 epochs at batch size 2048"), which also
    # trains the Lite models (efficientnet/lite/README.md); resolutions from
    # lite/efficientnet_lite_builder.py: lite0 224, lite1 240, lite2 260 px.
    **{f"efficientnet_lite{i}": ImagenetRecipe(
        f"Google's TF EfficientNet-Lite{i} checkpoint", "the TF TPU EfficientNet recipe", 350, size,
        "github.com/tensorflow/tpu/tree/master/models/official/efficientnet (main.py, "
        "lite/efficientnet_lite_builder.py)")
       for i, size in ((0, 224), (1, 240), (2, 260))},
}


def imagenet_pretraining_macs(model: str) -> tuple[int, str]:
    """``(MACs, basis)``: an estimate of what training ``model``'s ImageNet weights cost, the
    recipe's epochs x 1,281,167 images x 3 x forward MACs at the recipe's training resolution,
    with 1,000 classes. ``basis`` is one sentence naming the recipe. UsageError for a model
    without an entry in :data:`IMAGENET_RECIPES`. Costs one MAC count per model (cached).
    """
    recipe = IMAGENET_RECIPES.get(model)
    if recipe is None:
        raise UsageError(f"no ImageNet pretraining recipe is recorded for {model} (recorded "
                         f"for: {', '.join(sorted(IMAGENET_RECIPES))})")
    forward = macs_per_image_for(model, 1000, "linear", recipe.train_size)
    macs = recipe.epochs * IMAGENET_TRAIN_IMAGES * 3 * forward
    basis = (f"estimate: {recipe.weights}, {recipe.recipe}: {recipe.epochs} epochs x "
             f"{IMAGENET_TRAIN_IMAGES / 1e6:.2f} M images at {recipe.train_size} px, "
             "3 x forward MACs")
    return macs, basis


# Keys of LoadedWeights.meta that say "ImageNet weights": torchvision's enum name
# (xfer.imagenet_weights.read_imagenet), or a marker of ImageNet weights that do not come from
# torchvision (the EfficientNet-Lite checkpoints).
_IMAGENET_META_KEYS = ("torchvision_weights", "imagenet_source", "imagenet_weights")
UNKNOWN_ORIGIN = "unknown: a weights file of undeclared origin"


def pretraining_macs(weights_meta: Mapping, model: str) -> tuple[int | None, str]:
    """``(MACs, basis)`` spent producing a set of starting weights, from ``LoadedWeights.meta``.

    - a file written by ``xfer pretrain``: the ``train_macs`` it measured (plus, if that run
      itself started from pretrained weights, their cost as it recorded it); basis "measured: ...";
    - ImageNet weights: :func:`imagenet_pretraining_macs`; basis "estimate: ...";
    - anything else: ``(None, "unknown: ...")``, never a guess.
    """
    meta = weights_meta if isinstance(weights_meta, Mapping) else {}
    task = meta.get("source_task")
    if isinstance(task, Mapping):
        return _measured_pretraining(task)
    marker = next((str(meta[key]) for key in _IMAGENET_META_KEYS if meta.get(key)), None)
    if marker is not None:
        recipe = IMAGENET_RECIPES.get(model)
        declared = meta.get("torchvision_weights")
        if recipe is None or (declared and declared != recipe.weights):
            return None, (f"unknown: ImageNet weights {marker} for {model}, whose training "
                          f"recipe is not recorded")
        return imagenet_pretraining_macs(model)
    return None, UNKNOWN_ORIGIN


def _measured_pretraining(task: Mapping) -> tuple[int | None, str]:
    """The cost an ``xfer pretrain`` file recorded in its ``source_task``."""
    where = (f"{task.get('n')} `{task.get('preset')}` PDF plots (seed {task.get('seed')}, "
             f"{task.get('image_size')} px)" if task.get("preset") else "its source task")
    measured = task.get("train_macs")
    if not isinstance(measured, (int, float)) or isinstance(measured, bool) or measured < 0:
        return None, (f"unknown: an xfer pretrain file on {where} that does not record its "
                      "training MACs (written before they were recorded)")
    total = int(measured)
    epochs = task.get("epochs_run", "?")
    basis = (f"measured: xfer pretrain (source-task pretraining) on {where}, "
             f"{task.get('images_processed', '?')} images processed over {epochs} "
             f"epoch{'' if epochs == 1 else 's'}")
    upstream = task.get("pretrain_macs")
    config = task.get("config") if isinstance(task.get("config"), Mapping) else {}
    if isinstance(upstream, (int, float)) and not isinstance(upstream, bool) and upstream > 0:
        total += int(upstream)
        basis += f", plus {upstream:.3g} MACs for its own starting weights"
    elif config.get("init") == "pretrained":
        basis += "; the cost of its own pretrained starting weights is not recorded"
    return total, basis


def trial_costs(model: str, num_classes: int, head: str, train_layers: str, input_size: int,
                weights_meta: Mapping | None) -> dict:
    """A trial's cost figures as its result records them: forward and backward MACs per
    training image (cached per process; counting draws nothing from the global RNG) and what
    its starting weights cost (``weights_meta`` None: trained from scratch, 0)."""
    pretrain_macs, basis = ((0, "none: trained from scratch") if weights_meta is None
                            else pretraining_macs(weights_meta, model))
    return {"macs_per_image": macs_per_image_for(model, num_classes, head, input_size),
            "backward_macs_per_image": backward_macs_per_image_for(
                model, num_classes, head, train_layers, input_size),
            "pretrain_macs": pretrain_macs, "pretrain_macs_basis": basis}
