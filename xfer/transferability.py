"""How well a backbone's frozen features suit a dataset, in one forward pass and no fine-tuning.

Two scores from the same features, both computed on a trial's own split (the first n images,
train and validation as fit would split them), so they can be set against what fine-tuning the
same backbone on the same data reaches:

- LogME (You et al., ICML 2021; ``xfer.logme``) on the training split: the evidence of a
  Bayesian linear model from the features to the labels. Its ranking across backbones tracks
  their fine-tuned accuracy; its value alone means little.
- k-nearest-neighbour accuracy on the validation split, neighbours drawn from the training
  split (cosine similarity, votes weighted by it, k = 10; the k-NN evaluation of self-supervised
  features, Wu et al. 2018, Caron et al. 2021): a number in accuracy units, directly comparable
  with a trained model's validation accuracy.

The features are the input of the model's linear head (penultimate, pooled as the head sees
them), recorded by a forward pre-hook, with the model in eval mode: one forward pass over train
and validation. The model is built with a linear head whatever head the sweep trains, because the
head is what gets replaced. ``init="scratch"`` scores a randomly initialised network of the same
architecture: the control every pretrained score should beat.

Cost: the forward MACs of every image embedded (``cost.macs_per_image``) plus LogME's
O(N D^2 + D^3); both are reported with the seconds they took, so the score's price can be set
against the fine-tuning it is meant to save.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from xfer import cost, logme, models
from xfer.batches import batch_slices
from xfer.data.tensors import ImageSet
from xfer.device import autocast, backend_settings, seed_everything, synced_clock
from xfer.train import TrialConfig, set_up

KNN_K = 10


def head_input_features(model: torch.nn.Module, model_name: str, images: torch.Tensor, prep, *,
                        batch_size: int, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """(N, D) float32: what the model's linear head receives for each image, flattened."""
    head = model.get_submodule(models.head_parameter_prefixes(model_name, "linear")[0].rstrip("."))
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0].flatten(1).float()))
    model.eval()
    try:
        with torch.inference_mode(), autocast(images.device, amp_dtype):
            for batch in batch_slices(len(images), batch_size, drop_single=False):
                model(prep(images[batch]))
    finally:
        hook.remove()
    return torch.cat(captured).cpu().numpy() if captured else np.zeros((0, 0), np.float32)


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray,
                 eval_labels: np.ndarray, k: int = KNN_K) -> float:
    """Accuracy of a cosine-similarity k-NN classifier (votes weighted by similarity; k capped at
    the training set's size). Cost: one N_eval x N_train similarity matrix."""
    if len(train_labels) == 0 or len(eval_labels) == 0:
        raise ValueError("k-NN accuracy needs at least one training and one evaluation image")
    unit = lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = unit(eval_features.astype(np.float64)) @ unit(train_features.astype(np.float64)).T
    k = min(k, len(train_labels))
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    classes = np.unique(train_labels)
    votes = np.zeros((len(eval_labels), len(classes)))
    column = np.searchsorted(classes, train_labels[nearest])
    np.add.at(votes, (np.arange(len(eval_labels))[:, None], column),
              np.take_along_axis(similarity, nearest, axis=1))
    return float((classes[votes.argmax(axis=1)] == eval_labels).mean())


def score_transferability(config: TrialConfig, *, data: ImageSet | None = None, knn_k: int = KNN_K) -> dict:
    """LogME and k-NN accuracy of ``config``'s backbone (model, init, weights) on its split of
    the data (``config.n`` images, ``config.image_size``), with what they cost. The training
    fields of ``config`` (epochs, lr, ...) are unused. JSON-serialisable result."""
    start = time.perf_counter()
    config = replace(config, head="linear", train_layers="all").validate().resolved()
    device = torch.device(config.device)
    with backend_settings(device):
        seed_everything(config.seed)  # a scratch backbone's random init is seeded like a trial's
        trial = set_up(config, device, data)
        t0 = synced_clock(device)
        features = {name: head_input_features(trial.model, config.model, trial.split[name][0], trial.prep_eval,
                                              batch_size=config.eval_batch_size, amp_dtype=trial.amp_dtype)
                    for name in ("train", "val")}
        t1 = synced_clock(device)
    labels = {name: trial.split[name][1].cpu().numpy() for name in ("train", "val")}
    score = logme.logme(features["train"], labels["train"])
    knn = knn_accuracy(features["train"], labels["train"], features["val"], labels["val"], knn_k)
    t2 = time.perf_counter()
    images = len(labels["train"]) + len(labels["val"])
    macs = cost.macs_per_image_for(config.model, len(trial.facts.classes), "linear", trial.facts.input_size)
    weights = trial.facts.weights or {}
    return {"model": config.model, "init": config.init, "weights": config.weights if config.init == "pretrained"
            else None, "weights_sha256": weights.get("sha256"), "dataset": trial.facts.dataset,
            "n": config.n, "n_train": len(labels["train"]), "n_val": len(labels["val"]),
            "input_size": trial.facts.input_size, "feature_dim": int(features["train"].shape[1]),
            "logme": score, "knn_accuracy": knn, "knn_k": min(knn_k, len(labels["train"])),
            "embed_macs": int(macs * images), "embed_seconds": t1 - t0, "score_seconds": t2 - t1,
            "wall_time_s": time.perf_counter() - start, "device": trial.facts.device}
