"""xfer.batches' rotation augmentation: its geometry, its determinism, and that rotate 0 keeps
the exact integer flip-and-shift path (whose own behaviour test_train.py checks)."""

import math

import pytest
import torch

from xfer import batches
from xfer.batches import (BatchPrep, affine_warp, augment_generator, random_flip_and_shift,
                          random_flip_shift_rotate)

CPU = torch.device("cpu")
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture
def images():
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def prep(rotate_degrees: float, **kwargs) -> BatchPrep:
    return BatchPrep(MEAN, STD, 32, device=CPU, augment=True, rotate_degrees=rotate_degrees, **kwargs)


def test_rotate_zero_is_the_integer_flip_and_shift_path(images):
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    expected = random_flip_and_shift(plain, 2, augment_generator(0, 1, CPU))
    assert torch.equal(prep(0.0)(images, augment_generator(0, 1, CPU)), expected)


def test_a_vanishing_rotation_makes_the_same_flips_and_shifts(images):
    """The warp draws the flips and shifts exactly as the integer path and moves pixels the
    same way; only the border differs (the two paths reflect about different edges)."""
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    integer = random_flip_and_shift(plain, 2, augment_generator(0, 1, CPU))
    warped = random_flip_shift_rotate(plain, 2, 1e-6, augment_generator(0, 1, CPU))
    torch.testing.assert_close(warped[..., 2:-2, 2:-2], integer[..., 2:-2, 2:-2])


def test_same_seed_and_epoch_same_batch_other_epoch_differs(images):
    rotate = prep(15.0)
    first = rotate(images, augment_generator(3, 2, CPU))
    assert torch.equal(first, rotate(images, augment_generator(3, 2, CPU)))
    assert not torch.equal(first, rotate(images, augment_generator(3, 4, CPU)))


def test_rotation_changes_pixels_and_keeps_shape_and_dtype(images):
    rotated = prep(30.0)(images, augment_generator(0, 1, CPU))
    flipped_and_shifted = prep(0.0)(images, augment_generator(0, 1, CPU))
    assert rotated.shape == (6, 3, 32, 32) and rotated.dtype == torch.float32
    assert torch.isfinite(rotated).all()
    for i in range(6):  # every image, not just the batch as a whole
        assert not torch.equal(rotated[i], flipped_and_shifted[i])
    # Bilinear weights are convex and reflection fills the corners from the image itself:
    # the value range cannot grow (the constant-image case below checks the padding).
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    assert rotated.min() >= plain.min() - 1e-5 and rotated.max() <= plain.max() + 1e-5
    last = prep(30.0, channels_last=True)(images, augment_generator(0, 1, CPU))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, rotated)


def test_angles_flips_and_shifts_are_drawn_in_range(monkeypatch):
    drawn = {}

    def spy(x, flip, dx, dy, angles):
        drawn.update(flip=flip, dx=dx, dy=dy, angles=angles)
        return x

    monkeypatch.setattr(batches, "affine_warp", spy)
    x = torch.zeros(4000, 1, 32, 32)
    random_flip_shift_rotate(x, 2, 10.0, torch.Generator().manual_seed(0))
    angles = torch.rad2deg(drawn["angles"])
    assert angles.abs().max() <= 10.0 and angles.min() < -9.5 and angles.max() > 9.5
    assert abs(angles.mean()) < 0.5  # uniform on [-10, 10]: mean 0, sd 5.8/sqrt(4000)
    assert set(drawn["dx"].tolist()) == set(drawn["dy"].tolist()) == {-2, -1, 0, 1, 2}
    assert 0.45 < drawn["flip"].float().mean() < 0.55


def test_affine_warp_geometry():
    x = torch.randn(2, 3, 8, 8)
    no = torch.zeros(2, dtype=torch.bool)
    zero = torch.zeros(2, dtype=torch.long)
    quarter = torch.full((2,), math.pi / 2)
    # +90 degrees is counter-clockwise as displayed: torch.rot90 from rows towards columns.
    torch.testing.assert_close(affine_warp(x, no, zero, zero, quarter), torch.rot90(x, 1, (-2, -1)))
    torch.testing.assert_close(affine_warp(x, no, zero, zero, 2 * quarter), x.flip(-1).flip(-2))
    torch.testing.assert_close(affine_warp(x, torch.ones(2, dtype=torch.bool), zero, zero,
                                           torch.zeros(2)), x.flip(-1))
    # A shift of (dx, dy) = (1, 2) moves the content right by 1 and down by 2.
    moved = affine_warp(x, no, torch.ones(2, dtype=torch.long), torch.full((2,), 2), torch.zeros(2))
    torch.testing.assert_close(moved[..., 2:, 1:], x[..., :-2, :-1])
    # A constant image stays constant at any angle: reflection, not zeros, fills the corners.
    constant = torch.full((1, 3, 16, 16), 0.7)
    spun = affine_warp(constant, no[:1], zero[:1], zero[:1], torch.tensor([0.6]))
    torch.testing.assert_close(spun, constant)


def test_rotate_degrees_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"rotate_degrees must be in \[0, 180\]"):
        prep(181.0)
