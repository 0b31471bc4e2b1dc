"""Transferability scores and their report section.

- The section on synthetic frames whose answers are known: which configuration each backbone's
  fine-tuned result is (chosen on validation, never test; the backbone's own weights), a backbone
  without a finished configuration, the rank correlations (against scipy), the top picks, and the
  "not separable" wording when the fine-tuned best's test interval overlaps the runner-up's.
- ``knn_accuracy`` on features whose answer is known.
- ``head_input_features`` against the model run with its head replaced by the identity.
- ``score_transferability`` end to end on the 160-image blob dataset, on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from xfer import cost, models
from xfer.batches import BatchPrep
from xfer.data.tensors import load_packed
from xfer.report import transferability_section as ts
from xfer.train import TrialConfig
from xfer.transferability import head_input_features, knn_accuracy, score_transferability

EFF, R18, R10, CNN = ("efficientnet_lite0 imagenet", "resnet18 imagenet", "resnet10 scratch", "small_cnn scratch")
BACKBONES = {EFF: ("efficientnet_lite0", "pretrained", "imagenet"), R18: ("resnet18", "pretrained", "imagenet"),
             R10: ("resnet10", "scratch", None), CNN: ("small_cnn", "scratch", None)}
# (backbone, size) -> (logme, knn_accuracy). At 100 images small_cnn has the top LogME but no
# finished configuration, so it must not count; at 400, LogME's top is resnet18, not the best.
SCORES = {(EFF, 100): (2.0, 0.70), (R18, 100): (1.0, 0.50), (R10, 100): (-0.5, 0.60), (CNN, 100): (3.0, 0.40),
          (EFF, 400): (1.0, 0.90), (R18, 400): (2.0, 0.80), (R10, 400): (0.0, 0.60), (CNN, 400): (-1.0, 0.65)}
# (backbone, size) -> the configuration to be chosen: (val, test, low, high). At 100 the best
# (efficientnet) is separable from the runner-up (0.70 > 0.68); at 400 it is not (0.80 < 0.88).
CHOSEN = {(EFF, 100): (0.80, 0.78, 0.70, 0.85), (R18, 100): (0.70, 0.60, 0.50, 0.68),
          (R10, 100): (0.50, 0.40, 0.30, 0.50),
          (EFF, 400): (0.90, 0.85, 0.80, 0.90), (R18, 400): (0.88, 0.83, 0.78, 0.88),
          (R10, 400): (0.70, 0.60, 0.55, 0.65), (CNN, 400): (0.60, 0.50, 0.45, 0.55)}


def _scores() -> pd.DataFrame:
    rows = []
    for (backbone, size), (logme, knn) in SCORES.items():
        model, init, weights = BACKBONES[backbone]
        rows.append({"model": model, "init": init, "weights": weights, "dataset_size": size, "logme": logme,
                     "knn_accuracy": knn, "knn_k": 10, "embed_macs": 1e9, "embed_seconds": 0.5})
    return pd.DataFrame(rows)


def _point(backbone, size, val, test, low, high, name, weights="same") -> dict:
    model, init, own = BACKBONES[backbone]
    return {"model": model, "init": init, "weights": own if weights == "same" else weights,
            "dataset_size": size, "val_accuracy": val, "test_accuracy": test, "test_accuracy_ci_low": low,
            "test_accuracy_ci_high": high, "config": name, "train_layers": "all", "train_macs": 1e11,
            "n_runs": 2}


def _points() -> pd.DataFrame:
    rows = []
    for (backbone, size), (val, test, low, high) in CHOSEN.items():
        rows.append(_point(backbone, size, val, test, low, high, f"{backbone} n{size} chosen"))
        # worse on validation, better on test: choosing it would be choosing on test
        rows.append(_point(backbone, size, val - 0.1, 0.99, 0.95, 1.0, f"{backbone} n{size} worse"))
    # the same model with other weights, best of all on validation: another backbone
    rows.append(_point(R18, 400, 0.99, 0.99, 0.95, 1.0, "resnet18 other weights", weights="other"))
    # efficientnet's chosen point at 100 logged without its weights param: the default, imagenet
    rows[0]["weights"] = None
    return pd.DataFrame(rows)


def test_backbone_table_chooses_on_validation_within_each_backbone():
    table = ts.backbone_table(_scores(), _points())
    assert len(table) == 8
    assert table["dataset_size"].tolist() == [100] * 4 + [400] * 4
    for _, row in table.iterrows():
        key = (row["backbone"], row["dataset_size"])
        assert (row["logme"], row["knn_accuracy"]) == SCORES[key]
        if key not in CHOSEN:
            assert math.isnan(row["test_accuracy"]) and not isinstance(row["config"], str)
            continue
        assert row["config"] == f"{row['backbone']} n{row['dataset_size']:g} chosen"
        assert (row["val_accuracy"], row["test_accuracy"], row["test_accuracy_ci_low"],
                row["test_accuracy_ci_high"]) == CHOSEN[key]
    assert ts.backbone_label("resnet10", "scratch", np.nan) == R10
    assert ts.backbone_label("efficientnet_lite0", "pretrained", "imagenet") == EFF


def test_agreement_per_size():
    table = ts.backbone_table(_scores(), _points())
    small, large = ts.agreement(table)
    assert (small.dataset_size, small.backbones, small.unscored) == (100, 3, (CNN,))
    assert (large.dataset_size, large.backbones, large.unscored) == (400, 4, ())
    for result in (small, large):
        done = [k for k in CHOSEN if k[1] == result.dataset_size]
        accuracy = [CHOSEN[k][1] for k in done]
        for column, index in (("logme", 0), ("knn_accuracy", 1)):
            expected = spearmanr([SCORES[k][index] for k in done], accuracy).statistic
            assert result.correlations[column].rho == pytest.approx(expected)
            assert result.correlations[column].n == len(done)
    # three backbones: rho, but no interval; four: an interval
    assert math.isnan(small.correlations["logme"].low)
    assert -1 <= large.correlations["logme"].low <= large.correlations["logme"].high <= 1
    assert (small.best, small.runner_up, small.separable) == (EFF, R18, True)
    assert small.tops == {"logme": EFF, "knn_accuracy": EFF}  # small_cnn's higher LogME does not count
    assert small.picks == {"logme": True, "knn_accuracy": True}
    assert (large.best, large.runner_up, large.separable) == (EFF, R18, False)
    assert large.tops == {"logme": R18, "knn_accuracy": EFF}
    assert large.picks == {"logme": False, "knn_accuracy": True}


def test_section_text_files_and_figure(tmp_path):
    lines = ts.transferability_section(_scores(), _points(), tmp_path)
    text = "\n".join(lines)
    assert "## Transferability scores before fine-tuning" in text
    assert "10-nearest-neighbour" in text
    # 8 scorings of 1e9 MACs and 0.5 s; fine-tuning: 15 points x 2 seeds x 1e11 MACs
    assert "8 scorings cost 8e+09 forward MACs and 4 s in all" in text
    assert "against 3e+12 MACs to fine-tune the sweep's 15 configurations (0.27% of it)" in text
    assert "| backbone | n | LogME | kNN acc | fine-tuned config | val acc | test acc [95% CI] | embed cost |" in text
    assert "none finished" in text and "85.0% [80.0, 90.0]" in text
    assert "(none finished for small_cnn scratch)" in text
    assert f"LogME's top backbone, {R18}, is not the fine-tuned best ({EFF})" in text
    assert f"kNN accuracy's top backbone, {EFF}, is the fine-tuned best" in text
    assert f"The fine-tuned best, {EFF}, is not separable from {R18}" in text
    assert text.count("is not separable") == 1  # at 100 images the best is separable
    assert "needs at least 4 items for an interval" in text  # 100 images: three backbones
    csv = pd.read_csv(tmp_path / "transferability.csv")
    assert len(csv) == 8 and {"backbone", "logme", "knn_accuracy", "config", "test_accuracy"} <= set(csv)
    assert (tmp_path / "transferability.png").stat().st_size > 10_000
    assert ts.FILE_NAMES == ("transferability.png", "transferability.csv")


def test_section_is_empty_without_scores_and_copes_without_points(tmp_path):
    assert ts.transferability_section(None, _points(), tmp_path) == []
    assert ts.transferability_section(pd.DataFrame(), _points(), tmp_path) == []
    assert not (tmp_path / "transferability.csv").exists()
    text = "\n".join(ts.transferability_section(_scores(), None, tmp_path))
    assert "nothing to compare" in text and "fine-tune the sweep" not in text
    with pytest.raises(ValueError, match="lack column"):
        ts.backbone_table(_scores().drop(columns="logme"), _points())


def test_scores_read_back_as_text_still_match():
    """MLflow returns params as text: "400", "None"; and score_transferability calls the size n."""
    scores = _scores().astype({"dataset_size": str}).rename(columns={"dataset_size": "n"})
    scores["weights"] = scores["weights"].fillna("None")
    table = ts.backbone_table(scores, _points())
    assert table["test_accuracy"].notna().sum() == 7
    assert set(table["backbone"]) == set(BACKBONES)


# --- k-NN accuracy ---------------------------------------------------------------------------------

def test_knn_separated_clusters_are_perfect():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    train_labels, eval_labels = np.repeat(np.arange(4), 20), np.repeat(np.arange(4), 5)
    train = centres[train_labels] + rng.normal(0, 0.5, (80, 4))
    evaluation = centres[eval_labels] + rng.normal(0, 0.5, (20, 4))
    assert knn_accuracy(train, train_labels, evaluation, eval_labels) == 1.0


def test_knn_on_unrelated_labels_is_about_chance():
    rng = np.random.default_rng(1)
    train, evaluation = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    accuracy = knn_accuracy(train, rng.integers(0, 4, 400), evaluation, rng.integers(0, 4, 400))
    assert 0.15 <= accuracy <= 0.35  # chance 0.25; sd of 400 draws about 0.02


def test_knn_caps_k_at_the_training_set():
    """Three training images: the nearest says class 1, the other two (nearly as close) class 0.
    k = 10 must vote with all three, as k = 3 does, not fail or fall back to the nearest."""
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]])
    labels = np.array([1, 0, 0])
    evaluation, truth = np.array([[1.0, 0.0]]), np.array([0])
    assert knn_accuracy(train, labels, evaluation, truth, k=1) == 0.0
    assert knn_accuracy(train, labels, evaluation, truth, k=3) == 1.0
    assert knn_accuracy(train, labels, evaluation, truth, k=10) == 1.0


def test_knn_needs_images():
    with pytest.raises(ValueError, match="at least one"):
        knn_accuracy(np.zeros((0, 4)), np.zeros(0, int), np.ones((3, 4)), np.zeros(3, int))
    with pytest.raises(ValueError, match="at least one"):
        knn_accuracy(np.ones((3, 4)), np.zeros(3, int), np.zeros((0, 4)), np.zeros(0, int))


# --- the features the head sees ----------------------------------------------------------------------

@pytest.mark.parametrize("name,dim", [("resnet10", 512), ("small_cnn", 512)])
def test_head_input_features_are_what_the_head_receives(name, dim):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=4)
    prep = BatchPrep([0.5] * 3, [0.25] * 3, 32, device=torch.device("cpu"))
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    features = head_input_features(model, name, images, prep, batch_size=3)  # batches of 3, 3 and 1
    assert features.shape == (7, dim) and features.dtype == np.float32
    if name == "resnet10":
        model.fc = torch.nn.Identity()
    else:  # small_cnn's linear head is the last layer of its classifier
        model.classifier[3] = torch.nn.Identity()
    model.eval()
    with torch.inference_mode():
        expected = model(prep(images)).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


# --- end to end --------------------------------------------------------------------------------------

def test_score_transferability_end_to_end(blobs):
    config = TrialConfig(data=str(blobs), model="small_cnn", init="scratch", device="cpu", seed=3,
                         eval_batch_size=64)
    result = score_transferability(config)
    assert math.isfinite(result["logme"]) and 0 <= result["knn_accuracy"] <= 1
    data = load_packed(blobs)
    images = len(data.splits["train"]) + len(data.splits["val"])
    assert result["n_train"] + result["n_val"] == images < 160  # the test split is never embedded
    macs = cost.macs_per_image_for("small_cnn", 4, "linear", 32)
    assert result["embed_macs"] == macs * images
    assert (result["feature_dim"], result["knn_k"], result["weights"]) == (512, 10, None)
    again = score_transferability(config)
    assert (again["logme"], again["knn_accuracy"]) == (result["logme"], result["knn_accuracy"])
