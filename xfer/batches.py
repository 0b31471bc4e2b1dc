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

import math

import numpy as np
import torch
import torch.nn.functional as F

_SHUFFLE, _AUGMENT = 0, 1  # streams of per-epoch randomness
# BatchPrep's resize_mode -> F.interpolate's mode. "nearest" is torch's "nearest-exact"
# (source pixel floor((i + 0.5)·in/out)), which matches PIL's and scikit-image's nearest; torch's
# legacy "nearest" (floor(i·in/out)) shifts the image by up to half a pixel at non-integer
# ratios. At an integer upsampling factor (32 -> 224, x7) both replicate each pixel k x k times,
# exactly Keras' UpSampling2D default (interpolation="nearest").
_INTERPOLATE_MODES = {"bilinear": "bilinear", "nearest": "nearest-exact"}
RESIZE_MODES = tuple(_INTERPOLATE_MODES)


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
    """The generator that draws one epoch's flips, shifts and rotations, on the training device."""
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
    ``x·(1/(255·std)) − mean/std``. Resizing (F.interpolate) runs only when the stored size
    differs from ``input_size``; ``resize_mode`` is ``bilinear`` (default; without antialiasing,
    which is what a sweep over input sizes wants to be cheap) or ``nearest`` (pixel replication
    when upsampling by an integer factor: Keras' ``UpSampling2D``, as the CIFAR-10 study used to
    bring 32 px up to 224; see ``_INTERPOLATE_MODES``). Both cost one kernel per batch.
    Augmentation is a random horizontal flip and a random shift of up to ``input_size/16`` px
    with reflected borders (2 px at 32 px, as in airbench), plus, when ``rotate_degrees > 0``,
    a random rotation in ±``rotate_degrees``.

    The shift is the "random crop" of the CIFAR recipes: pad the image, then crop a window of
    the original size at a random offset, i.e. translate it by a random integer offset. Ours
    pads by reflection rather than with zeros, and by 1/16 of the side (the common CIFAR recipe
    pads 4 px of 32, i.e. 1/8), so no black border teaches the model anything about the frame.
    """

    def __init__(self, mean: list[float], std: list[float], input_size: int, *,
                 device: torch.device, channels_last: bool = False, augment: bool = False,
                 rotate_degrees: float = 0.0, resize_mode: str = "bilinear"):
        if not 0 <= rotate_degrees <= 180:
            raise ValueError(f"rotate_degrees must be in [0, 180], got {rotate_degrees!r}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}")
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * std_t)).to(device)
        self.shift = (-mean_t / std_t).to(device)
        self.input_size = int(input_size)
        self.channels_last = channels_last
        self.augment = augment
        self.rotate_degrees = float(rotate_degrees)
        self.max_shift = max(1, self.input_size // 16)
        self.resize_mode = resize_mode

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        x = torch.addcmul(self.shift, images.float(), self.scale)
        if x.shape[-2:] != (self.input_size, self.input_size):
            if self.resize_mode == "bilinear":
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                  align_corners=False, antialias=False)
            else:  # nearest takes neither align_corners nor antialias
                x = F.interpolate(x, size=(self.input_size, self.input_size),
                                  mode=_INTERPOLATE_MODES[self.resize_mode])
        if self.augment and self.rotate_degrees > 0:
            x = random_flip_shift_rotate(x, self.max_shift, self.rotate_degrees, generator)
        elif self.augment:  # the exact integer gather: cheaper, and no interpolation blur
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


def random_flip_shift_rotate(x: torch.Tensor, max_shift: int, max_degrees: float,
                             generator: torch.Generator | None) -> torch.Tensor:
    """:func:`random_flip_and_shift` plus a rotation by an angle uniform in ±``max_degrees``
    about the image centre, all in one bilinear resampling (:func:`affine_warp`).

    Draws, in order: the flips and the integer shifts exactly as :func:`random_flip_and_shift`
    does, then the angles, all from ``generator`` (so an epoch's augmentation is a function of
    the run seed and the epoch, and resume is exact).
    """
    b, _, h, w = x.shape
    device = x.device
    flip = torch.rand(b, generator=generator, device=device) < 0.5
    shift = min(max_shift, h - 1, w - 1)
    offsets = torch.randint(0, 2 * shift + 1, (2, b), generator=generator, device=device) - shift
    unit = torch.rand(b, generator=generator, device=device)  # U[0, 1)
    angles = (2 * unit - 1) * math.radians(max_degrees)
    # random_flip_and_shift's output pixel p reads input p + offset: a move by -offset.
    return affine_warp(x, flip, -offsets[1], -offsets[0], angles)


def affine_warp(x: torch.Tensor, flip: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
                angles: torch.Tensor) -> torch.Tensor:
    """Per image: flip horizontally where ``flip``, then rotate by ``angles`` (radians, counter-
    clockwise as displayed) about the centre and translate by ``(dx, dy)`` px (right, down).

    Output pixel p samples the flipped input at ``R(angle)·p − (dx, dy)`` (pixel units from the
    centre), bilinearly, with the border filled by reflection. One ``affine_grid`` +
    ``grid_sample``: O(B·H·W·C) with 4 taps per output value, a few kernels for the whole batch.
    grid_sample reflects about the border's edge (``abc|cba``), where the integer path's
    ``F.pad(mode="reflect")`` reflects about the edge pixel (``abc|ba``); either invents no
    values beyond interpolation.
    """
    b, _, h, w = x.shape
    cos, sin = angles.float().cos(), angles.float().sin()
    # In normalised coordinates ([-1, 1] across each side, align_corners=False) a pixel is 2/w
    # wide and 2/h high, so a rotation in pixel space is S·R·S⁻¹ with S = diag(2/w, 2/h).
    theta = torch.stack([torch.stack([cos, -sin * (h / w), -2 * dx.float() / w], dim=1),
                         torch.stack([sin * (w / h), cos, -2 * dy.float() / h], dim=1)], dim=1)
    # A horizontal flip of the input negates its x coordinate: the first row of the map.
    sign = 1 - 2 * flip.float()  # -1 where flipped
    theta = theta * torch.stack([sign, torch.ones_like(sign)], dim=1).view(b, 2, 1)
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
