"""A trial's result as of its last epoch trained: the dict ``fit`` returns and that its scored
reports carry. Built from the test split's scores, the progress counters and the facts of the
trial's setup (:class:`TrialFacts`); no model, no device. Plain Python and numpy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from xfer import cost
from xfer.metrics import classification_metrics
from xfer.provenance import git_sha, package_versions
from xfer.stats import wilson_interval

DEFAULT_SPLIT = "80:10:10"  # what a dataset without a "split" in its identity was split by


@dataclass(frozen=True)
class TrialFacts:
    """What a result says about its trial's setup, fixed once ``fit`` has set the trial up."""
    sizes: dict[str, int]          # images per split: train, val, test
    input_size: int                # px fed to the model
    classes: list[str]
    dataset: dict                  # the dataset's identity (what produced it)
    test_set_sha256: str           # pairs runs scored on the same test images
    weights: dict | None           # source, sha256, meta of the starting weights; None: scratch
    normalization: dict            # mean, std, and where they came from: weights | dataset
    device: str                    # human-readable, e.g. "cpu", "cuda:0 (NVIDIA H200)"
    on_gpu: bool                   # wall time counts as GPU seconds
    macs_per_image: int            # forward (xfer.cost)
    backward_macs_per_image: int   # from the first trained layer to the loss (xfer.cost)
    pretrain_macs: int | None      # what producing the starting weights cost (0 from scratch)
    pretrain_macs_basis: str       # how that was known


def trial_result(config, facts: TrialFacts, progress: dict, test: dict, test_labels: np.ndarray,
                 wall_time_s: float) -> dict:
    """The result of trial ``config`` as of its last epoch in ``progress`` (fit's counters,
    history and milestones), scored by ``test`` (``evaluate``'s loss and class probabilities on
    the test split, whose labels are ``test_labels``). JSON-serialisable."""
    test_metrics = classification_metrics(test_labels, test["probs"], len(facts.classes))
    predicted = test["probs"].argmax(axis=1)
    ci_low, ci_high = wilson_interval(int((predicted == test_labels).sum()), len(test_labels))
    history = progress["history"]
    epochs_run = len(history)
    last = history[-1] if history else {}
    macs, backward_macs = facts.macs_per_image, facts.backward_macs_per_image
    return {
        "test_accuracy": test_metrics["accuracy"],
        "test_accuracy_ci_low": ci_low, "test_accuracy_ci_high": ci_high,  # Wilson 95%
        "test_precision_macro": test_metrics["precision_macro"],
        "test_recall_macro": test_metrics["recall_macro"],
        "test_f1_macro": test_metrics["f1_macro"],
        "test_auc_roc_ovr": test_metrics["auc_roc_ovr"],
        "test_loss": test["loss"],
        "epochs_run": epochs_run,
        "wall_time_s": wall_time_s,
        "train_time_s": progress["train_time_s"],
        "macs_per_image": macs,
        "train_macs": cost.train_macs(macs, progress["images_processed"],
                                      backward_macs_per_image=backward_macs),
        "backward_macs_per_image": backward_macs,
        "pretrain_macs": facts.pretrain_macs, "pretrain_macs_basis": facts.pretrain_macs_basis,
        "macs_epochs_per_batch": cost.macs_epochs_per_batch(macs, epochs_run, config.batch_size),
        "gpu_seconds": wall_time_s * (1 if facts.on_gpu else 0),
        "n_train": facts.sizes["train"], "n_val": facts.sizes["val"], "n_test": facts.sizes["test"],
        "split": facts.dataset.get("split") or DEFAULT_SPLIT,
        "test_set_sha256": facts.test_set_sha256,
        # per test image, in the split's fixed order: what paired comparisons of two runs on
        # the same test images need (a few bytes per image)
        "test_predictions": {"test_set_sha256": facts.test_set_sha256,
                             "labels": test_labels.tolist(), "predicted": predicted.tolist()},
        "images_processed": progress["images_processed"],
        "input_size": facts.input_size,
        **{key: last.get(key, math.nan) for key in ("train_loss", "train_accuracy",
                                                     "val_loss", "val_accuracy")},
        "history": [dict(h) for h in history],
        "confusion_matrix": test_metrics["confusion_matrix"],
        "roc_curve": test_metrics["roc_macro"],  # macro-average one-vs-rest, 101 points
        "classes": list(facts.classes),
        "config": asdict(config),
        "weights": jsonable(facts.weights),
        "normalization": {"mean": [float(v) for v in facts.normalization["mean"]],
                          "std": [float(v) for v in facts.normalization["std"]],
                          "from": facts.normalization["from"]},
        "dataset": jsonable(facts.dataset),
        "milestones": {epoch: dict(entry) for epoch, entry in progress["milestones"].items()},
        "device": facts.device,
        "git_sha": git_sha(),
        "packages": package_versions(),
    }


def jsonable(obj):
    """Paths, numpy scalars and tuples as JSON types; unknown objects as their repr."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return str(obj)
