"""xfer.cost: MAC counts match published figures and hand arithmetic; the cache really caches."""

import pytest
import torch
from torchvision.models import ResNet50_Weights

import xfer.cost
from xfer.cost import macs_epochs_per_batch, macs_per_image, macs_per_image_for, train_macs
from xfer.errors import UsageError
from xfer.models import create_model


def test_resnet50_matches_torchvision_published_macs():
    published = ResNet50_Weights.IMAGENET1K_V2.meta["_ops"] * 1e9  # 4.089 "GFLOPS", i.e. GMACs
    macs = macs_per_image_for("resnet50", 1000, "linear", 224)
    assert abs(macs - published) / published < 0.01  # measured: 4,089,185,256


def test_small_cnn_macs_by_hand():
    # Each conv: output pixels x C_out x (C_in x 3 x 3) MACs, plus one add per output for the
    # bias; each dense layer: in x out + out. 32 -> 30 -> pool 15 -> 13 -> pool 6 (SmallCNN).
    convs = [(32 * 32, 32, 3), (30 * 30, 32, 32), (15 * 15, 64, 32), (13 * 13, 64, 64)]
    expected = sum(pixels * c_out * (c_in * 9 + 1) for pixels, c_out, c_in in convs)
    expected += (2304 * 512 + 512) + (512 * 10 + 10)
    assert expected == 20_828_426
    assert macs_per_image(create_model("small_cnn", 10), 32) == expected


def test_macs_per_image_leaves_the_callers_model_alone(capsys):
    model = create_model("resnet10", 10)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert macs_per_image(model, 32) > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert capsys.readouterr() == ("", "")  # ptflops stays quiet


def test_a_failed_count_raises_instead_of_returning_none(capsys):
    with pytest.raises(RuntimeError, match="ptflops could not count MACs at 32 px"):
        macs_per_image(create_model("alexnet", 10), 32)  # alexnet needs >= 63 px
    assert capsys.readouterr() == ("", "")
    with pytest.raises(UsageError, match="too small for alexnet"):
        macs_per_image_for("alexnet", 10, "linear", 32)


def test_macs_per_image_for_builds_each_architecture_once(monkeypatch):
    builds = []

    def counting_create_model(*args, **kwargs):
        builds.append(args)
        return create_model(*args, **kwargs)

    monkeypatch.setattr(xfer.cost, "create_model", counting_create_model)
    macs_per_image_for.cache_clear()
    first = macs_per_image_for("small_cnn", 10, "gap_mlp", 32)
    assert macs_per_image_for("small_cnn", 10, "gap_mlp", 32) == first
    assert builds == [("small_cnn", 10)]
    assert macs_per_image_for("small_cnn", 10, "linear", 32) != first  # the head is in the key
    assert len(builds) == 2 and macs_per_image_for.cache_info().hits == 1


def test_train_macs_is_three_forward_passes_per_image():
    assert train_macs(20_828_426, 50_000) == 3 * 20_828_426 * 50_000
    assert train_macs(0, 10) == 0
    with pytest.raises(ValueError):
        train_macs(-1, 10)


def test_macs_epochs_per_batch():
    assert macs_epochs_per_batch(4_089_185_256, 20, 4) == pytest.approx(20_445_926_280.0)
    assert macs_epochs_per_batch(100, 3, 8) == 37.5
    with pytest.raises(ValueError, match="batch_size"):
        macs_epochs_per_batch(100, 3, 0)
