"""Stratified, deterministic train/val/test splits (80:10:10 by default)."""

from __future__ import annotations

import numpy as np

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test


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
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng([seed, int(cls)])
        members = members[rng.permutation(len(members))]
        n_val = int(len(members) * fractions[1] + 0.5)
        n_test = int(len(members) * fractions[2] + 0.5)
        if n_val + n_test >= len(members):  # keep one training image per class
            n_test = max(0, min(n_test, len(members) - 1 - n_val))
            n_val = max(0, min(n_val, len(members) - 1 - n_test))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return {name: np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64)
            for name, p in parts.items()}
