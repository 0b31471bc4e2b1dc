"""xfer.batches' rotation augmentation: its geometry, its determinism, and that rotate 0 keeps
the exact integer flip-and-shift path (whose own behaviour test_train.py checks); and the resize
modes: nearest replicates pixels as Keras' UpSampling2D does, bilinear blends them."""

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


# --- resize_mode -----------------------------------------------------------------------------------

def test_nearest_upsampling_by_seven_replicates_each_pixel_as_keras_upsampling2d(images):
    """Study 001 brought 32 px up to 224 with Keras' UpSampling2D(size=7), interpolation
    "nearest": every pixel becomes a 7x7 block."""
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    nearest = BatchPrep(MEAN, STD, 224, device=CPU, resize_mode="nearest")(images)
    expected = plain.repeat_interleave(7, dim=-2).repeat_interleave(7, dim=-1)
    assert nearest.shape == (6, 3, 224, 224) and torch.equal(nearest, expected)
    bilinear = BatchPrep(MEAN, STD, 224, device=CPU)(images)  # the default blends neighbours
    assert bilinear.shape == nearest.shape and not torch.equal(bilinear, nearest)
    torch.testing.assert_close(bilinear[..., 3::7, 3::7], plain, rtol=0, atol=1e-4)  # centres agree


def test_nearest_downsampling_picks_pixels_and_invents_no_values(images):
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    half = BatchPrep(MEAN, STD, 16, device=CPU, resize_mode="nearest")(images)
    # "nearest-exact": output pixel i reads input floor((i + 0.5) * 2) = 2i + 1
    assert torch.equal(half, plain[..., 1::2, 1::2])
    odd = BatchPrep(MEAN, STD, 20, device=CPU, resize_mode="nearest")(images)
    assert set(odd.unique().tolist()) <= set(plain.unique().tolist())


def test_nearest_at_the_stored_size_is_the_identity_and_augments_after_resizing(images):
    plain = BatchPrep(MEAN, STD, 32, device=CPU)(images)
    assert torch.equal(BatchPrep(MEAN, STD, 32, device=CPU, resize_mode="nearest")(images), plain)
    big = BatchPrep(MEAN, STD, 64, device=CPU, resize_mode="nearest", augment=True)
    out = big(images, augment_generator(0, 1, CPU))
    assert out.shape == (6, 3, 64, 64)  # the shift is 64/16 = 4 px, of the resized image
    upsampled = BatchPrep(MEAN, STD, 64, device=CPU, resize_mode="nearest")(images)
    assert torch.equal(out, random_flip_and_shift(upsampled, 4, augment_generator(0, 1, CPU)))


def test_unknown_resize_mode_is_refused():
    with pytest.raises(ValueError, match="resize_mode must be one of bilinear, nearest, got 'bicubic'"):
        BatchPrep(MEAN, STD, 64, device=CPU, resize_mode="bicubic")
    assert batches.RESIZE_MODES == ("bilinear", "nearest")
