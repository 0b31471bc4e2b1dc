"""Stratified, deterministic splits: the studies' 80:10:10 of n, and train/val of n for a
dataset whose test set is held out (drawn once, outside n)."""

from __future__ import annotations

import numpy as np

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test

# How a PDF-plot dataset is split (``split`` in dataset.json, the ImageSet's identity and the
# run param): "heldout" trains and validates on the first n images (``train_val_split``) and
# tests on a held-out set drawn once for the whole study; "80:10:10" is the studies' own split
# of the first n (``stratified_split``), its test set shrinking with n. CIFAR and image folders
# say "fixed" (see xfer.data.packing).
HELDOUT = "heldout"
STUDY_SPLIT = "80:10:10"
SPLIT_CHOICES = (HELDOUT, STUDY_SPLIT)


def stratified_split(labels: np.ndarray, seed: int,
                     fractions: tuple[float, float, float] = SPLIT_FRACTIONS
                     ) -> dict[str, np.ndarray]:
    """Index arrays ``{"train", "val", "test"}`` that partition ``range(len(labels))``.

    Each class is shuffled with its own generator, seeded by ``(seed, class)``, and cut at
    the fractions: every split holds each class in proportion, and the same seed always gives
    the same split. Per class, val and test get ``round(m * fraction)`` items and train the
    rest (half rounds up), so tiny classes keep at least one training image. The indices come back sorted, so
    slicing a tensor with them reads memory in order.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    labels = np.asarray(labels)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls, members in _shuffled_classes(labels, seed):
        n_val, n_test = _held_counts(len(members), fractions)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return _sorted(parts)


def train_val_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Index arrays ``{"train", "val"}`` that partition ``range(len(labels))``, for datasets
    whose test set is held out elsewhere.

    Train is exactly the training split of ``stratified_split(labels, seed)`` (the studies'
    80:10:10), so the model sees the same images, and the same number of them, as under the
    studies' split; the studies' 10% test share joins their 10% validation (80:20). A class
    too small for 80:10:10 to hold any of it out (2-4 images) gives one image to validation,
    so every class with two images is validated. Sorted indices, like ``stratified_split``.
    """
    labels = np.asarray(labels)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for cls, members in _shuffled_classes(labels, seed):
        held = sum(_held_counts(len(members), SPLIT_FRACTIONS))  # the study's val + test
        if held == 0 and len(members) >= 2:
            held = 1
        parts["val"].append(members[:held])
        parts["train"].append(members[held:])
    return _sorted(parts)


def _shuffled_classes(labels: np.ndarray, seed: int):
    """(class, its indices shuffled by its own generator ``(seed, class)``), class by class."""
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        yield cls, members[np.random.default_rng([seed, int(cls)]).permutation(len(members))]


def _held_counts(m: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(val, test) images of a class of ``m``: ``round(m * fraction)``, half up, keeping one
    training image."""
    n_val = int(m * fractions[1] + 0.5)
    n_test = int(m * fractions[2] + 0.5)
    if n_val + n_test >= m:  # keep one training image per class
        n_test = max(0, min(n_test, m - 1 - n_val))
        n_val = max(0, min(n_val, m - 1 - n_test))
    return n_val, n_test


def _sorted(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64)
            for name, p in parts.items()}
