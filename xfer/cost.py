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
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io

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


def train_macs(macs_per_image: int, images_processed: int) -> int:
    """MACs spent training: 3 x forward MACs x training images actually processed.

    The backward pass costs about twice the forward one: one product for the gradient with
    respect to the activations and one for the gradient with respect to the weights, each the
    size of the forward product (the 2N forward + 4N backward FLOPs per example of Kaplan et
    al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1). With a frozen backbone the
    true backward is cheaper, so for train_layers head/last_block this is an upper bound; it is
    kept as the fixed convention so costs stay comparable across configurations.
    """
    if macs_per_image < 0 or images_processed < 0:
        raise ValueError(f"train_macs needs non-negative counts, got macs_per_image="
                         f"{macs_per_image}, images_processed={images_processed}")
    return 3 * int(macs_per_image) * int(images_processed)


def macs_epochs_per_batch(macs_per_image: int, epochs_run: int, batch_size: int) -> float:
    """The design card's cost figure: ``macs_per_image x epochs_run / batch_size``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    return macs_per_image * epochs_run / batch_size
