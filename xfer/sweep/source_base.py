"""What every sweep data source shares: the provenance entry the replication card reads, the
sizes of sources whose val/test stay fixed, the exact train count of a stratified split, and the
check of a dataset the run would reuse from the cache.

Separate from the sources themselves (``xfer.sweep.pdf_source``, ``cifar_source``,
``folder_sources``) so each of them depends on this one module and not on the others.
"""

from __future__ import annotations

from pathlib import Path

from xfer.data.splits import HELDOUT, STUDY_SPLIT
from xfer.errors import UsageError


def provenance_entry(describe: str, genuine: bool | None, note: str, val_is_test: bool = False) -> dict:
    return {"describe": describe, "genuine": genuine, "note": note, "val_is_test": val_is_test}


def stratified_train_count(n: int, num_classes: int, seed: int, split: str = STUDY_SPLIT) -> int:
    """Training images the stratified split gives the first n of a round-robin (balanced)
    dataset: exact, since per-class rounding matters at small n (8 classes, n=40: 24, not 32).
    The same for both splits from 5 images per class on (heldout trains on the 80:10:10
    split's train); below, heldout moves one image per class to validation."""
    import numpy as np

    from xfer.data.splits import stratified_split, train_val_split

    labels = np.arange(n) % num_classes
    if split == HELDOUT:
        return len(train_val_split(labels, seed)["train"])
    return len(stratified_split(labels, seed)["train"])


class FixedSplits:
    """Sources whose ``dataset_size`` counts training images and whose val/test stay fixed."""
    fixed_splits = True

    def train_pool(self) -> int:  # pragma: no cover - each source defines it
        raise NotImplementedError

    def eval_pool(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def check_size(self, n) -> None:
        pool = self.train_pool()
        if not isinstance(n, int) or isinstance(n, bool) or not self.num_classes() <= n <= pool:
            raise UsageError(f"dataset_size (training images) must be an integer from "
                             f"{self.num_classes()} (one per class) to {pool}, got {n!r}")

    def train_images(self, n: int) -> int:
        return n

    def eval_images(self, n: int) -> int:
        return self.eval_pool()

    def default_size(self) -> int:
        return self.train_pool()


def check_cached_dataset(folder: Path) -> None:
    """A dataset the run would reuse from the cache is checked now, file by file, so that
    ``--dry-run`` fails where the run would ("corrupt dataset: PATH: why"). Absent or
    incomplete (no dataset.json): nothing to check, the run builds it."""
    from xfer.data.layout import check_packed, is_packed_dataset

    if is_packed_dataset(folder):
        check_packed(folder)
