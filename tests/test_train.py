"""fit() on a tiny learnable dataset, on CPU: reporting, metrics, determinism, resume,
early stopping, pretrained weights and their normalisation, momentum, resize modes, the
classifier regime and the embedding options (a fit with both methods is in test_embeddings.py,
beside the UMAP test that shares its numba compilation)."""

import io
import json
import math
import pathlib
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from xfer import models
from xfer.batches import BatchPrep, batch_slices, epoch_order
from xfer.data.tensors import load_packed
from xfer.errors import UsageError
from xfer.optim import learning_rate, make_optimizer, plateau_start, plateau_update
from xfer.train import _SWEEP_REPORT_KEYS, EMBEDDING_METHODS, EPOCH_METRICS, TrialConfig, fit
from xfer.trial_result import TrialFacts, trial_result
from xfer.weights import save_weights

SPEC_FINAL = ("test_accuracy", "test_precision_macro", "test_recall_macro", "test_f1_macro",
              "test_auc_roc_ovr", "epochs_run", "wall_time_s", "train_time_s", "macs_per_image",
              "train_macs", "macs_epochs_per_batch", "gpu_seconds")
TIMES = ("epoch_time_s", "wall_time_s", "train_time_s")


@pytest.fixture
def config(blobs):
    return TrialConfig(data=str(blobs), model="resnet10", epochs=2, batch_size=16, lr=0.05,
                       device="cpu")


def shuffled_val(path):
    """The dataset with its validation labels shuffled: as the model fits the training set,
    val_loss must rise (what early stopping and the plateau schedule react to)."""
    data = load_packed(path)
    val = torch.from_numpy(data.splits["val"])
    data.labels = data.labels.clone()
    data.labels[val] = data.labels[val].roll(1)
    return data


class Killed(Exception):
    pass


def killed_and_resumed(config, kill_after: int, data=None):
    """Run ``config``, kill it inside ``report`` after epoch ``kill_after`` (as Ray would),
    round-trip the last checkpoint through torch.save/torch.load(weights_only=True) (as a Ray
    checkpoint must survive) and resume it in a fresh-looking process. Returns the resumed
    result, its reports and the checkpoints taken before the kill."""
    states = []

    def report(metrics):
        if metrics["epoch"] == kill_after:
            raise Killed

    with pytest.raises(Killed):
        fit(config, report, checkpoint=states.append, data=data)
    assert [s["progress"]["epoch"] for s in states] == list(range(1, kill_after + 1))
    buffer = io.BytesIO()
    torch.save(states[-1], buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    torch.manual_seed(12345)  # a fresh process would have other RNG state: resume must restore it
    reports = []
    resumed = fit(config, reports.append, resume=state, data=data)
    return resumed, reports, states


def untimed(result):
    """Everything in a result that must be reproducible (timings are not)."""
    out = {k: v for k, v in result.items() if k not in TIMES + ("history", "git_sha")}
    out["history"] = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in result["history"]]
    return out


@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
def test_fit_reports_each_epoch_and_learns(config):
    reports = []
    result = fit(replace(config, epochs=3), reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    # the test split is scored once, at the end: only the last report carries the result
    assert all(set(r) == set(EPOCH_METRICS) for r in reports[:-1])
    assert set(EPOCH_METRICS) < set(reports[-1])
    assert reports[-1]["test_accuracy"] == result["test_accuracy"]
    assert [r["images_processed"] for r in reports] == [128, 256, 384]  # 4 x 32 train images
    for key in SPEC_FINAL:
        assert isinstance(result[key], (int, float)) and not math.isnan(result[key]), key
    assert result["test_accuracy"] >= 0.75  # chance is 0.25
    assert result["epochs_run"] == 3
    assert result["history"] == [{k: r[k] for k in EPOCH_METRICS} for r in reports]
    low, high = result["test_accuracy_ci_low"], result["test_accuracy_ci_high"]
    assert low < result["test_accuracy"] <= high  # Wilson 95% of 16 test images
    predictions = result["test_predictions"]
    assert len(predictions["labels"]) == len(predictions["predicted"]) == result["n_test"]
    correct = sum(a == b for a, b in zip(predictions["labels"], predictions["predicted"]))
    assert correct / result["n_test"] == result["test_accuracy"]
    assert predictions["test_set_sha256"] == result["test_set_sha256"]
    assert result["pretrain_macs"] == 0 and result["split"] == "80:10:10"
    assert (result["n_train"], result["n_val"], result["n_test"]) == (128, 16, 16)
    assert result["train_macs"] == 3 * result["macs_per_image"] * 384
    assert result["macs_epochs_per_batch"] == pytest.approx(result["macs_per_image"] * 3 / 16)
    assert result["gpu_seconds"] == 0 and result["device"] == "cpu"
    assert 0 < result["train_time_s"] <= result["wall_time_s"]
    assert sum(sum(row) for row in result["confusion_matrix"]) == 16
    assert result["weights"] is None and result["normalization"]["from"] == "dataset"
    mean, std = load_packed(config.data).channel_stats()
    assert result["normalization"]["mean"] == pytest.approx(mean)
    assert result["normalization"]["std"] == pytest.approx(std)
    assert result["dataset"]["dataset"] == "blobs" and result["dataset"]["n"] == 160
    assert result["config"]["device"] == "cpu" and result["config"]["model"] == "resnet10"
    assert "torch" in result["packages"] and result["git_sha"]
    json.loads(json.dumps(result))  # JSON-serialisable


def test_same_seed_same_result_other_seed_differs(config):
    config = replace(config, model="small_cnn", augment=True)  # dropout + augmentation RNG
    first, second = fit(config, lambda m: None), fit(config, lambda m: None)
    assert untimed(first) == untimed(second)
    other = fit(replace(config, seed=1), lambda m: None)
    assert other["history"][0]["train_loss"] != first["history"][0]["train_loss"]


@pytest.mark.parametrize("model, schedule, augment", [("resnet10", "cosine", True),
                                                      ("small_cnn", "constant", False)])
@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
def test_interrupted_and_resumed_equals_uninterrupted(config, model, schedule, augment):
    """A trial killed after epoch 2 (inside report, as Ray would) and resumed from the last
    checkpoint ends bit-identical to one that ran 4 epochs in one go."""
    config = replace(config, model=model, schedule=schedule, augment=augment, epochs=4,
                     optimizer="adam", lr=0.002)
    whole = fit(config, lambda m: None)
    resumed, reports, _ = killed_and_resumed(config, kill_after=2)
    assert [r["epoch"] for r in reports] == [3, 4]
    assert untimed(resumed) == untimed(whole)


@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
@pytest.mark.parametrize("case", ["exp_decay", "plateau", "rotation"])
def test_resume_is_exact_for_epoch_schedules_and_rotation(config, blobs, case):
    """The new per-epoch schedules and the rotation augmentation resume bit-exactly too. The
    plateau run is built so that its lr cut at the end of epoch 3 needs the bad-epoch count
    of epoch 2, which only the checkpoint carries."""
    data = None
    if case == "exp_decay":
        config = replace(config, model="small_cnn", schedule="exp_decay", lr_constant_epochs=1,
                         lr_decay_rate=0.5)
    elif case == "plateau":
        # lr 0.01: val_loss rises in every epoch by a wide margin (2.5, 7.4, 10.8, 11.1 on
        # this data); at 0.05 it overshoots and its ups and downs depend on the CPU's float order
        config = replace(config, schedule="plateau", plateau_patience=2, lr=0.01)
        data = shuffled_val(config.data)
    else:
        config = replace(config, model="small_cnn", augment=True, rotate_degrees=20.0,
                         optimizer="adam", lr=0.002)
    config = replace(config, epochs=4)
    whole = fit(config, lambda m: None, data=data)
    resumed, reports, states = killed_and_resumed(config, kill_after=2, data=data)
    assert [r["epoch"] for r in reports] == [3, 4]
    assert untimed(resumed) == untimed(whole)
    lrs = [h["lr"] for h in whole["history"]]
    if case == "exp_decay":
        assert lrs == [0.05 * math.exp(-0.5 * k) for k in range(4)]
    if case == "plateau":
        assert states[-1]["progress"]["plateau"]["bad_epochs"] == 1  # val_loss rose in epoch 2
        assert lrs == [0.01, 0.01, 0.01, 0.005]


@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
def test_two_epochs_then_a_longer_budget_continues_like_one_run(config):
    states = []
    fit(config, lambda m: None, checkpoint=states.append)  # epochs=2
    longer = replace(config, epochs=4)
    assert untimed(fit(longer, lambda m: None, resume=states[-1])) == \
        untimed(fit(longer, lambda m: None))


def test_resume_refuses_another_trial(config):
    states = []
    fit(replace(config, epochs=1), lambda m: None, checkpoint=states.append)
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        fit(replace(config, lr=0.1), lambda m: None, resume=states[-1])


def test_early_stopping_stops_when_val_loss_stops_improving(config):
    data = shuffled_val(config.data)
    result = fit(replace(config, epochs=15, early_stopping_patience=2), lambda m: None, data=data)
    losses = [h["val_loss"] for h in result["history"]]
    assert 3 <= result["epochs_run"] < 15
    assert min(losses[-2:]) >= min(losses[:-2])  # the last 2 epochs did not improve
    assert result["train_macs"] == 3 * result["macs_per_image"] * 128 * result["epochs_run"]


def test_preloaded_data_with_n_equals_loading_n(config):
    config = replace(config, epochs=1, n=80)
    from_disk = fit(config, lambda m: None)
    shared = fit(config, lambda m: None, data=load_packed(config.data))
    assert untimed(shared) == untimed(from_disk)
    assert from_disk["n_train"] + from_disk["n_val"] + from_disk["n_test"] == 80


def test_pretrained_from_an_xfer_weights_file(config, tmp_path):
    source = models.create_model("resnet10", 7)  # another class count: the head is dropped
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    path = tmp_path / "w.pt"
    sha = save_weights(path, "resnet10", source.state_dict(), mean=mean, std=std,
                       source_task={"preset": "varied", "seed": 1, "test_accuracy": 0.5})
    states = []
    result = fit(replace(config, epochs=1, init="pretrained", weights=str(path),
                         train_layers="head"), lambda m: None, checkpoint=states.append)
    assert result["normalization"] == {"mean": list(mean), "std": list(std), "from": "weights"}
    assert result["weights"]["sha256"] == sha and str(path.resolve()) in result["weights"]["source"]
    assert result["weights"]["meta"]["source_task"]["preset"] == "varied"
    # The frozen backbone is the file's, unchanged by training; the head is new (4 classes).
    trained = states[-1]["model"]
    assert torch.equal(trained["layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])
    assert torch.equal(trained["bn1.running_mean"], source.state_dict()["bn1.running_mean"])
    assert trained["fc.weight"].shape == (4, 512)
    json.loads(json.dumps(result))


def test_pretrained_from_a_bare_state_dict_uses_dataset_statistics(config, tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(models.create_model("resnet10", 4).state_dict(), path)
    result = fit(replace(config, epochs=1, init="pretrained", weights=str(path)), lambda m: None)
    assert result["normalization"]["from"] == "dataset"
    assert result["weights"]["source"].endswith("bare.pt") and len(result["weights"]["sha256"]) == 64


def test_pretrained_weights_of_another_architecture_are_a_usage_error(config, tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(models.create_model("small_cnn", 4).state_dict(), path)
    with pytest.raises(UsageError, match="do not fit resnet10"):
        fit(replace(config, init="pretrained", weights=str(path)), lambda m: None)


@pytest.mark.parametrize("field, value, message", [
    ("model", "resnet9000", "unknown model 'resnet9000' (valid: alexnet"),
    ("init", "warm", "unknown init"), ("train_layers", "some", "unknown train_layers"),
    ("optimizer", "lion", "unknown optimizer 'lion' (valid: sgd, adam, adamw)"),
    ("schedule", "step", "unknown schedule"), ("head", "mlp", "unknown head"),
    ("epochs", 0, "epochs must be a positive integer"),
    ("batch_size", -4, "batch_size must be a positive integer"),
    ("lr", 0.0, "lr must be"), ("lr", float("nan"), "lr must be"),
    ("label_smoothing", 1.0, "label_smoothing must be in"),
    ("early_stopping_patience", -1, "early_stopping_patience"),
    ("weights", "imagenet", "init 'scratch'"), ("image_size", 8, "too small for small_cnn"),
    ("n", 0, "n must be"), ("device", "tpu", "unknown device"),
])
def test_validate_names_the_field(config, field, value, message):
    bad = replace(config, **{"model": "small_cnn", field: value})
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bad.validate()


def test_too_few_images_to_split_is_a_usage_error(config):
    with pytest.raises(UsageError, match="too small to split"):
        fit(replace(config, n=8), lambda m: None)


def test_batch_prep_normalises_resizes_and_augments():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    prep = BatchPrep([0.5, 0.4, 0.3], [0.2, 0.25, 0.3], 48, device=torch.device("cpu"))
    x = prep(images)
    assert x.shape == (6, 3, 48, 48) and x.dtype == torch.float32
    plain = BatchPrep([0.5, 0.4, 0.3], [0.2, 0.25, 0.3], 32, device=torch.device("cpu"))(images)
    expected = (images.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, expected)
    augment = BatchPrep([0.5] * 3, [0.25] * 3, 32, device=torch.device("cpu"), augment=True)
    first = augment(images, torch.Generator().manual_seed(0))
    again = augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and not torch.equal(first, augment(images, torch.Generator()))
    # Flips and shifts move pixels (reflected at the border), they never invent values.
    unaugmented = BatchPrep([0.5] * 3, [0.25] * 3, 32, device=torch.device("cpu"))(images)
    assert first.shape == (6, 3, 32, 32) and not torch.equal(first, unaugmented)
    assert set(first.unique().tolist()) <= set(unaugmented.unique().tolist())
    shift = augment.max_shift  # 2 px at 32 px
    for i in range(6):  # each image is its (maybe flipped) self, shifted with reflected borders
        candidates = []
        for flipped in (unaugmented[i], unaugmented[i].flip(-1)):
            padded = torch.nn.functional.pad(flipped[None], (shift,) * 4, mode="reflect")[0]
            candidates += [padded[:, dy:dy + 32, dx:dx + 32] for dy in range(2 * shift + 1)
                           for dx in range(2 * shift + 1)]
        assert any(torch.equal(first[i], c) for c in candidates)


def test_epoch_order_is_a_seeded_permutation_and_batches_avoid_size_one():
    cpu = torch.device("cpu")
    a, b = epoch_order(50, 0, 1, cpu), epoch_order(50, 0, 1, cpu)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, 0, 2, cpu))
    assert [s.stop - s.start for s in batch_slices(33, 16)] == [16, 16]
    assert [s.stop - s.start for s in batch_slices(34, 16)] == [16, 16, 2]
    assert [s.stop - s.start for s in batch_slices(5, 16)] == [5]


# --- learning-rate schedules ---------------------------------------------------------------

def test_exp_decay_lr_sequence_is_exact_and_is_what_the_optimizer_used(config):
    config = replace(config, model="small_cnn", epochs=5, schedule="exp_decay",
                     lr_constant_epochs=2, lr_decay_rate=0.3)
    states = []
    result = fit(config, lambda m: None, checkpoint=states.append)
    lrs = [h["lr"] for h in result["history"]]
    # Keras' recipe: the full lr for lr_constant_epochs epochs, then x exp(-rate) per epoch.
    assert lrs == [0.05 * math.exp(-0.3 * k) for k in (0, 0, 1, 2, 3)]
    assert [s["optimizer"]["param_groups"][0]["lr"] for s in states] == lrs


def test_epoch_schedules_do_not_depend_on_the_budget(config):
    """exp_decay and plateau give the first k epochs the same lr whatever the epochs budget
    (fair under ASHA); cosine, which decays over the budget, does not."""
    for schedule in ("exp_decay", "plateau"):
        c = replace(config, schedule=schedule, lr_constant_epochs=1)
        for step, epoch in [(0, 1), (9, 2), (25, 3)]:
            assert learning_rate(c, step, 30, epoch, 0.5) == learning_rate(c, step, 3000, epoch, 0.5)
    cosine = replace(config, schedule="cosine")
    assert learning_rate(cosine, 25, 30, 3) != learning_rate(cosine, 25, 3000, 3)
    # A field of another schedule is ignored: constant stays constant.
    constant = replace(config, lr_decay_rate=5.0, lr_constant_epochs=0, plateau_factor=0.1)
    assert {learning_rate(constant, s, 30, e, 0.25) for s, e in [(0, 1), (29, 3)]} == {0.05}


def test_plateau_update_by_hand():
    losses = [1.0, 0.9, 0.95, 0.9, 0.89995, 0.5, math.nan, math.nan]
    # 1.0, 0.9 improve; 0.95 bad 1; 0.9 is not below 0.9*(1-1e-4): bad 2 -> cut; 0.89995 is
    # not below 0.89991 either: bad 1; 0.5 improves; NaN never improves: bad 1, bad 2 -> cut.
    state, scales, bad = plateau_start(), [], []
    for loss in losses:
        state = plateau_update(state, loss, patience=2, factor=0.5)
        scales.append(state["scale"])
        bad.append(state["bad_epochs"])
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert bad == [0, 0, 1, 0, 1, 0, 1, 0]
    assert state["best_val_loss"] == 0.5


@pytest.mark.parametrize("patience", [1, 2])
def test_plateau_halves_the_lr_like_torch_reduce_lr_on_plateau(config, patience):
    """The lrs fit used equal what torch's ReduceLROnPlateau (rel threshold 1e-4) gives for the
    same validation losses, with torch's patience one lower (it cuts one epoch later)."""
    config = replace(config, epochs=6, schedule="plateau", plateau_patience=patience, lr=0.01)
    result = fit(config, lambda m: None, data=shuffled_val(config.data))
    lrs = [h["lr"] for h in result["history"]]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=patience - 1, threshold=1e-4, threshold_mode="rel")
    expected = []
    for h in result["history"]:
        expected.append(optimizer.param_groups[0]["lr"])
        reference.step(h["val_loss"])
    assert lrs == expected
    assert min(lrs) < config.lr  # the shuffled validation labels did make it cut


def test_each_report_carries_the_lr_and_the_roc_curve_for_sweeps(config):
    reports = []
    result = fit(replace(config, epochs=2, report_test_each_epoch=True), reports.append)
    for report in reports:
        # embeddings come only with TrialConfig.embeddings, in the last epoch's report
        assert set(report) == set(EPOCH_METRICS) | set(_SWEEP_REPORT_KEYS) - {"embeddings"}
        assert report["lr"] == config.lr
        roc = report["roc_curve"]
        assert len(roc["fpr"]) == len(roc["tpr"]) == 101 and roc["fpr"][0] == 0 and roc["fpr"][-1] == 1
        assert 0 <= roc["auc"] <= 1
    assert reports[-1]["roc_curve"] == result["roc_curve"]
    assert abs(result["roc_curve"]["auc"] - result["test_auc_roc_ovr"]) < 0.05


@pytest.mark.parametrize("field, value, message", [
    ("lr_constant_epochs", -1, "lr_constant_epochs must be an integer >= 0"),
    ("lr_constant_epochs", 1.5, "lr_constant_epochs must be an integer"),
    ("lr_decay_rate", -0.1, "lr_decay_rate must be a finite number >= 0"),
    ("lr_decay_rate", math.inf, "lr_decay_rate must be a finite number >= 0"),
    ("plateau_patience", 0, "plateau_patience must be an integer >= 1"),
    ("plateau_patience", True, "plateau_patience must be an integer >= 1"),
    ("plateau_factor", 1.0, r"plateau_factor must be in \(0, 1\)"),
    ("plateau_factor", 0, r"plateau_factor must be in \(0, 1\)"),
    ("rotate_degrees", 180.5, r"rotate_degrees must be in \[0, 180\]"),
    ("rotate_degrees", -1, r"rotate_degrees must be in \[0, 180\]"),
    ("rotate_degrees", math.nan, r"rotate_degrees must be in \[0, 180\]"),
])
def test_validate_names_the_new_fields(config, field, value, message):
    # Checked whatever the schedule: a bad value is a mistake even where it is not used yet.
    with pytest.raises(UsageError, match=message):
        replace(config, **{field: value}).validate()


def test_embeddings_come_once_with_the_last_epochs_report(config):
    reports = []
    result = fit(replace(config, epochs=2, report_test_each_epoch=True, embeddings="tsne",
                         embedding_points=40), reports.append)
    assert "embeddings" not in reports[0] and "embeddings" in reports[-1]
    embedded = result["embeddings"]
    assert set(embedded["stages"]) == {"early", "middle", "late"}
    n_test = result["n_test"]
    for stage in embedded["stages"].values():
        assert len(stage["points"]) == len(stage["labels"]) == min(40, n_test)
    with pytest.raises(UsageError, match="embeddings"):
        replace(config, embeddings="pca").validate()


# --- momentum, resize_mode, the classifier regime, both embeddings (issue 15) -----------------

@pytest.mark.parametrize("value", [1.0, -0.1, math.nan, math.inf, True, "0.9", None])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_momentum_outside_0_1_is_a_usage_error_whatever_the_optimizer(config, value, optimizer):
    with pytest.raises(UsageError, match=r"^momentum must be in \[0, 1\), got " + re.escape(repr(value))):
        replace(config, momentum=value, optimizer=optimizer).validate()


def test_valid_momentum_resize_mode_train_layers_and_embeddings(config):
    for momentum in (0, 0.0, 0.5, 0.99):
        replace(config, momentum=momentum).validate()
    for mode in ("bilinear", "nearest"):
        replace(config, resize_mode=mode).validate()
    replace(config, train_layers="classifier").validate()
    replace(config, embeddings="tsne+umap").validate()
    with pytest.raises(UsageError, match=r"unknown resize_mode 'bicubic' \(valid: bilinear, nearest\)"):
        replace(config, resize_mode="bicubic").validate()
    with pytest.raises(UsageError, match=r"unknown embeddings 'umap\+tsne' \(valid: .*tsne\+umap"):
        replace(config, embeddings="umap+tsne").validate()
    assert TrialConfig(data="d").momentum == 0.9 and TrialConfig(data="d").resize_mode == "bilinear"
    from xfer.embeddings import METHOD_CHOICES  # the trainer's list is the embedder's, plus off
    assert EMBEDDING_METHODS == ("",) + METHOD_CHOICES


def test_the_optimizer_gets_the_configured_momentum(config):
    params = [torch.nn.Parameter(torch.zeros(3))]
    for momentum in (0.0, 0.5):
        sgd = make_optimizer(replace(config, momentum=momentum), params)
        assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == momentum
    adam = make_optimizer(replace(config, optimizer="adam", momentum=0.0), params)
    assert isinstance(adam, torch.optim.Adam) and "momentum" not in adam.param_groups[0]


@pytest.fixture
def small(config):
    """small_cnn for one epoch: a few seconds a fit on 2 cores."""
    return replace(config, model="small_cnn", epochs=1)


def test_momentum_changes_training_and_is_recorded(small):
    plain = fit(replace(small, momentum=0.0), lambda m: None)
    heavy = fit(small, lambda m: None)  # the default, 0.9
    assert plain["config"]["momentum"] == 0.0 and heavy["config"]["momentum"] == 0.9
    # The first step is the same either way (the buffer starts as the gradient); the other
    # seven of the epoch differ.
    assert plain["history"][0]["train_loss"] != heavy["history"][0]["train_loss"]


def test_resize_mode_reaches_every_batch_and_is_recorded(small, monkeypatch):
    import xfer.train as train_module

    built = []

    class Spy(BatchPrep):
        def __init__(self, *args, **kwargs):
            built.append(kwargs.get("resize_mode"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(train_module, "BatchPrep", Spy)
    nearest = fit(replace(small, image_size=48, resize_mode="nearest"), lambda m: None)
    assert built == ["nearest", "nearest"]  # training and evaluation
    assert nearest["config"]["resize_mode"] == "nearest" and nearest["input_size"] == 48
    bilinear = fit(replace(small, image_size=48), lambda m: None)
    assert bilinear["config"]["resize_mode"] == "bilinear"
    assert bilinear["history"][0]["train_loss"] != nearest["history"][0]["train_loss"]


def test_classifier_regime_trains(small):
    result = fit(replace(small, train_layers="classifier"), lambda m: None)
    assert result["config"]["train_layers"] == "classifier" and result["epochs_run"] == 1
    # forward + 2 x the classifier's MACs only: less than the 3 x forward of training everything
    assert 0 < result["backward_macs_per_image"] < 2 * result["macs_per_image"]


# --- the result dict on its own -----------------------------------------------------------------

def result_facts(**changes) -> TrialFacts:
    facts = dict(sizes={"train": 8, "val": 2, "test": 4}, input_size=32, classes=["a", "b"],
                 dataset={"kind": "pdf", "seed": 0, "folder": pathlib.Path("/data/pdf")},
                 test_set_sha256="ab12", weights=None,
                 normalization={"mean": np.array([0.5] * 3), "std": [0.25] * 3, "from": "dataset"},
                 device="cpu", on_gpu=False, macs_per_image=100, backward_macs_per_image=40,
                 pretrain_macs=0, pretrain_macs_basis="none: trained from scratch")
    return TrialFacts(**{**facts, **changes})


def test_trial_result_is_built_from_the_test_scores_the_progress_and_the_facts():
    """No model and no data: every number of the result checked by hand."""
    config = TrialConfig(data="d", model="small_cnn", batch_size=4, epochs=3)
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_loss": 2.0 / e,
                "val_accuracy": 0.25 * e, "lr": 0.01, "epoch_time_s": 1.0, "images_processed": 8 * e}
               for e in (1, 2)]
    progress = {"history": history, "train_time_s": 3.0, "images_processed": 16,
                "milestones": {"1": {"test_accuracy": 0.5}}}
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]], dtype=np.float32)  # 3 right
    result = trial_result(config, result_facts(), progress, {"loss": 0.5, "probs": probs}, labels,
                          wall_time_s=10.0)

    assert set(_SWEEP_REPORT_KEYS) - set(result) == {"embeddings"}  # added by fit when asked
    assert result["test_accuracy"] == 0.75 and result["test_loss"] == 0.5
    assert result["test_accuracy_ci_low"] < 0.75 < result["test_accuracy_ci_high"]
    assert result["test_predictions"] == {"test_set_sha256": "ab12", "labels": [0, 1, 1, 0],
                                          "predicted": [0, 1, 0, 0]}
    assert result["confusion_matrix"] == [[2, 0], [1, 1]]
    assert (result["epochs_run"], result["wall_time_s"], result["train_time_s"]) == (2, 10.0, 3.0)
    assert result["train_macs"] == (100 + 40) * 16  # forward + backward per image processed
    assert result["macs_epochs_per_batch"] == 100 * 2 / 4 and result["gpu_seconds"] == 0
    assert (result["train_loss"], result["val_loss"], result["val_accuracy"]) == (0.5, 1.0, 0.5)
    assert (result["n_train"], result["n_val"], result["n_test"]) == (8, 2, 4)
    assert result["split"] == "80:10:10" and result["input_size"] == 32
    assert result["history"] == history and result["history"][0] is not history[0]
    assert result["milestones"] == {"1": {"test_accuracy": 0.5}}
    assert result["milestones"]["1"] is not progress["milestones"]["1"]
    assert result["normalization"] == {"mean": [0.5] * 3, "std": [0.25] * 3, "from": "dataset"}
    assert result["dataset"] == {"kind": "pdf", "seed": 0, "folder": "/data/pdf"}
    assert result["config"]["batch_size"] == 4 and result["weights"] is None
    assert result["classes"] == ["a", "b"] and result["device"] == "cpu"
    json.dumps(result, allow_nan=False)


def test_trial_result_before_any_epoch_and_on_a_gpu():
    """A result with no epoch trained has NaN epoch metrics; on a GPU the wall time is GPU
    time; the weights' meta and the dataset's split come through as plain types."""
    weights = {"source": "file:/w.pt", "sha256": "ff", "meta": {"epochs": np.int64(3)}}
    facts = result_facts(on_gpu=True, weights=weights, dataset={"split": "fixed"})
    progress = {"history": [], "train_time_s": 0.0, "images_processed": 0, "milestones": {}}
    probs = np.array([[0.5, 0.5], [0.1, 0.9]], dtype=np.float32)
    result = trial_result(TrialConfig(data="d"), facts, progress, {"loss": 0.7, "probs": probs},
                          np.array([0, 1]), wall_time_s=4.0)
    assert result["epochs_run"] == 0 and result["train_macs"] == 0
    assert all(math.isnan(result[k]) for k in ("train_loss", "train_accuracy", "val_loss",
                                                "val_accuracy"))
    assert result["gpu_seconds"] == 4.0 and result["split"] == "fixed"
    assert result["weights"] == {"source": "file:/w.pt", "sha256": "ff", "meta": {"epochs": 3}}
    assert type(result["weights"]["meta"]["epochs"]) is int
