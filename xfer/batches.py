"""Device-side batching: no DataLoader, no worker processes (airbench style).

A whole split sits on the training device as uint8 (N×3×H×W, 1 byte per channel: 8,000 PDF
plots at 256 px are 1.6 GB). Each batch is gathered there by index, converted to float,
normalised, resized to the model's input size and optionally augmented, all as a handful of
kernels on the device. The only host work per step is slicing an index tensor.

Randomness comes from generators seeded by ``(seed, epoch)``, never from the global RNG, so
the batch order and the augmentation of epoch e are the same whether a run got there in one go
or was resumed from a checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_SHUFFLE, _AUGMENT = 0, 1  # streams of per-epoch randomness


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A well-mixed 32-bit seed for one (run seed, epoch, purpose): ``seed`` and ``seed + 1``
    give unrelated streams, unlike ``seed * k + epoch``."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """A permutation of ``range(n)`` for one epoch, drawn on the CPU (O(n), microseconds) and
    copied to the device once per epoch."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch, _SHUFFLE))
    return torch.randperm(n, generator=generator).to(device, non_blocking=True)


def augment_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator that draws one epoch's flips and shifts, on the training device."""
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch, _AUGMENT))


def batch_slices(n: int, batch_size: int, *, drop_single: bool = True) -> list[slice]:
    """Consecutive batches covering ``range(n)``. For training (``drop_single``) a last batch
    of a single image is dropped: batch norm cannot train on one sample (its variance over a
    1×1 feature map is undefined)."""
    slices = [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if drop_single and len(slices) > 1 and slices[-1].stop - slices[-1].start == 1:
        slices.pop()
    return slices


class BatchPrep:
    """uint8 images on the device → the model's float input: normalise, resize, augment.

    ``mean``/``std`` are per channel in [0, 1] units (ImageNet's for torchvision weights, the
    dataset's own for scratch). Normalisation is folded into one multiply-add,
    ``x·(1/(255·std)) − mean/std``. Resizing is bilinear without antialiasing (F.interpolate),
    which is what a sweep over input sizes wants to be cheap; it runs only when the stored size
    differs from ``input_size``. Augmentation is a random horizontal flip and a random shift of
    up to ``input_size/16`` px with reflected borders (2 px at 32 px, as in airbench).
    """

    def __init__(self, mean: list[float], std: list[float], input_size: int, *,
                 device: torch.device, channels_last: bool = False, augment: bool = False):
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * std_t)).to(device)
        self.shift = (-mean_t / std_t).to(device)
        self.input_size = int(input_size)
        self.channels_last = channels_last
        self.augment = augment
        self.max_shift = max(1, self.input_size // 16)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        x = torch.addcmul(self.shift, images.float(), self.scale)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=False)
        if self.augment:
            x = random_flip_and_shift(x, self.max_shift, generator)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)


def random_flip_and_shift(x: torch.Tensor, max_shift: int,
                          generator: torch.Generator | None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 and shift it by a uniform integer
    offset in [-max_shift, max_shift] per axis, filling the border by reflection. One gather
    over the padded batch: O(B·C·H·W), no per-image Python loop.

    Note: a horizontal flip is not label-preserving for every dataset (a mirrored density plot
    can be another family's), which is why augmentation is off by default.
    """
    b, _, h, w = x.shape
    device = x.device
    flip = torch.rand(b, generator=generator, device=device) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    shift = min(max_shift, h - 1, w - 1)
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    offsets = torch.randint(0, 2 * shift + 1, (2, b), generator=generator, device=device)
    rows = torch.arange(h, device=device) + offsets[0].view(b, 1)  # B×H
    cols = torch.arange(w, device=device) + offsets[1].view(b, 1)  # B×W
    batch = torch.arange(b, device=device).view(b, 1, 1)
    # Advanced indices around a slice put the indexed dims first: B×H×W×C, i.e. NCHW with
    # channels-last strides after the permute.
    return padded[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
