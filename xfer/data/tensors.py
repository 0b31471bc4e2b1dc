"""A labelled image dataset held as one uint8 tensor, and the loader for xfer's packed cache.

Every dataset xfer trains on ends up as an :class:`ImageSet`: all images in one uint8 tensor
(N×3×H×W, 1 byte per channel, so 10,000 PDF plots at 256 px are 1.97 GB and fit on any GPU),
labels, class names, the deterministic split, and the identity that produced it.
Normalisation, resizing and augmentation happen later, on the training device, in batches.

Three split layouts exist on disk (see ``xfer.data.packing`` and ``xfer.data.pdf.generate``);
``identity["split"]`` says which one an ImageSet uses:

- heldout (the PDF plots, by default): the first rows are the pool, in an order whose every
  prefix is balanced; ``heldout_test`` in dataset.json names the rows after it, a test set
  drawn once from another seed. ``n`` is the first n pool images: train is the studies'
  80% of them and validation the other 20% (``xfer.data.splits.train_val_split``); the test
  set is every held-out row, the same images for every n.
- 80:10:10 (older PDF datasets, ``xfer data pdf --split 80:10:10``, and ``split="80:10:10"``
  on a held-out one): ``n`` is the first n images, split 80:10:10 by the dataset's seed.
- fixed (CIFAR, image folders): dataset.json's ``split_ranges`` fixes contiguous train, val and
  test ranges. ``n`` is the number of *training* images, the first n of the train range (which
  is ordered so every prefix is class-balanced); val and test are always complete, so every
  training-set size is scored on the same test images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xfer.data.layout import (DATASET_JSON, PACKED_DIR, PACKED_IMAGES, corrupt, is_packed_dataset,
                              open_packed)
from xfer.data.packing import SPLIT_NAMES, check_split_ranges
from xfer.data.splits import HELDOUT, SPLIT_CHOICES, STUDY_SPLIT, stratified_split, train_val_split
from xfer.errors import UsageError, choice_error

_HASH_CHUNK_BYTES = 64 << 20  # rows hashed per step in split_sha256: bounds its extra memory


def classes_of(meta: dict) -> list[str]:
    """Class names of a dataset.json: ``classes``, or ``families`` for the PDF plots."""
    return list(meta["classes"] if "classes" in meta else meta["families"])


def max_n(meta: dict) -> int:
    """The largest valid ``n`` for a dataset.json: the train range's length with fixed splits,
    else the dataset's size."""
    if "split_ranges" in meta:
        start, stop = meta["split_ranges"]["train"]
        return int(stop) - int(start)
    return int(meta["n"])


@dataclass
class ImageSet:
    # With fixed splits, ``images``/``labels`` may hold rows no split uses (the whole shared
    # array, viewed without a copy); only ``splits`` says which rows are in play.
    images: torch.Tensor  # uint8, N×3×H×W
    labels: torch.Tensor  # int64, N
    classes: list[str]
    identity: dict  # what produced it: dataset kind, preset, seed, n, image size, ...
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # "train"/"val"/"test" indices
    # heldout split: rows [0, pool_rows) of images/labels are the pool, in generation order,
    # so ``take(n)`` can cut any n up to it; the test rows lie elsewhere in the same tensor.
    pool_rows: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def fixed_splits(self) -> bool:
        return self.identity.get("split") == "fixed"

    @property
    def heldout(self) -> bool:
        return self.identity.get("split") == HELDOUT

    def take(self, n: int | None) -> "ImageSet":
        """The first n images with their own stratified split: exactly what
        ``load_packed(dir, n)`` returns (same prefix, same split seed, the dataset's).
        With a held-out test set, train and val from the first n pool images and the same
        test set. With fixed splits, the first n training images; val and test stay as they are.
        Never copies the images: the result views the same tensor."""
        if self.heldout:
            if n is None or n == self.identity.get("n"):
                return self
            if not 0 < n <= self.pool_rows:
                raise UsageError(f"--n must be between 1 and the {self.pool_rows} pool images "
                                 f"loaded (the held-out test set is not part of n), got {n}")
            splits = train_val_split(self.labels[:n].numpy(), self.identity.get("seed", 0))
            return ImageSet(images=self.images, labels=self.labels, classes=self.classes,
                            identity={**self.identity, "n": n},
                            splits={**splits, "test": self.splits["test"]}, pool_rows=self.pool_rows)
        if self.fixed_splits:
            train = self.splits["train"]
            if n is None or n == len(train):
                return self
            if not 0 < n <= len(train):
                raise UsageError(f"--n counts training images (this dataset has fixed splits): "
                                 f"between 1 and {len(train)}, got {n}")
            return ImageSet(images=self.images, labels=self.labels, classes=self.classes,
                            identity={**self.identity, "n": n},
                            splits={**self.splits, "train": train[:n]})
        if n is None or n == len(self.labels):
            return self
        if not 0 < n <= len(self.labels):
            raise UsageError(f"--n must be between 1 and the dataset's size {len(self.labels)}, got {n}")
        labels = self.labels[:n]
        return ImageSet(images=self.images[:n], labels=labels, classes=self.classes,
                        identity={**self.identity, "n": n},
                        splits=stratified_split(labels.numpy(), self.identity.get("seed", 0)))

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of one split, gathered once (a copy, contiguous in split order)."""
        index = torch.from_numpy(self.splits[name])
        return self.images[index], self.labels[index]

    def split_sha256(self, name: str) -> str:
        """Hex SHA-256 of one split: the header ``"N HxWxC uint8 NHWC\n"``, then its images'
        bytes (uint8, each image H x W x C, in split order), then its labels (int64,
        little-endian). Equal values mean the same images with the same labels in the same
        order, whatever the memory layout: the identity of a test set, so runs scored on the
        same images can be paired. Costs one pass over the split's pixels (~1 GB/s hashing
        plus the gather, in ~64 MB chunks): 1,000 test images at 256 px (197 MB) about 0.3 s,
        at 64 px about 15 ms."""
        import hashlib

        index = self.splits[name]
        height, width = self.images.shape[-2:]
        digest = hashlib.sha256(f"{len(index)} {height}x{width}x3 uint8 NHWC\n".encode())
        chunk = max(1, _HASH_CHUNK_BYTES // max(1, self.images[0].numel()))
        for start in range(0, len(index), chunk):
            rows = torch.from_numpy(np.asarray(index[start:start + chunk]))
            batch = self.images[rows].permute(0, 2, 3, 1).contiguous()  # NHWC, as packed
            digest.update(batch.numpy().tobytes())
        labels = self.labels[torch.from_numpy(np.asarray(index))].numpy().astype("<i8")
        digest.update(labels.tobytes())
        return digest.hexdigest()

    def channel_stats(self, split: str = "train") -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] units over one split: the normalisation for a
        model trained from scratch. Costs one pass over the split's pixels, in chunks so the
        float copy never exceeds ~64 MB."""
        index = self.splits[split]
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        count = 0
        chunk = max(1, (64 << 20) // max(1, self.images[0].numel() * 8))
        for start in range(0, len(index), chunk):
            batch = self.images[torch.from_numpy(index[start:start + chunk])].to(torch.float64)
            batch = batch / 255.0
            total += batch.sum(dim=(0, 2, 3))
            total_sq += (batch * batch).sum(dim=(0, 2, 3))
            count += batch.shape[0] * batch.shape[2] * batch.shape[3]
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()


def load_packed(root: str | Path, n: int | None = None, seed: int | None = None,
                split: str | None = None) -> ImageSet:
    """Load a dataset written by ``xfer data pdf`` from its packed uint8 cache.

    ``n`` takes the first n images. The generator orders images so that this prefix is the
    stratified, balanced dataset of size n with the same seed (see ``xfer.data.pdf.generate``).
    The arrays are memory-mapped, so only the prefix (plus a held-out test set) is read;
    10,000 images at 256 px load at disk/page-cache speed (about 0.3 s warm here). ``seed``
    picks the train/val split; it defaults to the dataset's own seed. ``split`` (PDF plots):
    "heldout" or "80:10:10", default the dataset's own (see the module docstring). With fixed
    splits (``split_ranges``), ``n`` counts training images and only those plus the val and
    test ranges are read.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data dir not found: {root}")
    if not is_packed_dataset(root):
        raise FileNotFoundError(
            f"{root} is not a complete xfer dataset (no dataset.json or {PACKED_DIR}/{PACKED_IMAGES});"
            " write one with `xfer data pdf|cifar10|cifar100|folder ... --out DIR`")
    images, labels, meta = open_packed(root, mmap=True)  # each file checked: "corrupt dataset: ..."
    return from_arrays(images, labels, meta, n=n, seed=seed, path=root, split=split)


def read_packed_arrays(root: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The whole packed cache as (images N×H×W×3 uint8, labels, dataset.json) numpy arrays,
    e.g. to put into Ray's object store once and share zero-copy between trials."""
    root = Path(root)
    images, labels, meta = open_packed(root, mmap=False)  # each file checked: "corrupt dataset: ..."
    meta["path"] = str(root.resolve())
    return images, labels, meta


def from_arrays(images: np.ndarray, labels: np.ndarray, meta: dict, n: int | None = None,
                seed: int | None = None, path: Path | None = None,
                split: str | None = None) -> ImageSet:
    """An ImageSet over the first ``n`` images of packed NHWC arrays, without copying them
    when they are already in memory (a memory map is read; a shared-memory array is viewed).
    With fixed splits, ``n`` is the number of training images; with a held-out test set, the
    number of pool images (see the module docstring). ``split``: see ``load_packed``."""
    if "split_ranges" in meta:
        if split not in (None, "fixed"):
            raise UsageError(f"this dataset has fixed splits (split_ranges in dataset.json); "
                             f"split {split!r} applies to PDF-plot datasets only")
        return _from_fixed_splits(images, labels, meta, n=n, seed=seed, path=path)
    held_out = meta.get("heldout_test")
    if split is not None and split not in SPLIT_CHOICES:
        raise choice_error("split", split, list(SPLIT_CHOICES))
    if split == HELDOUT and not held_out:
        raise UsageError("this dataset has no held-out test set (written before they existed, or "
                         "with --split 80:10:10); write one with `xfer data pdf --test-size N`")
    if held_out and split != STUDY_SPLIT:
        return _from_heldout(images, labels, meta, n=n, seed=seed, path=path)
    total = int(held_out[0]) if held_out else len(labels)  # 80:10:10 of the pool only
    if n is None:
        n = total
    if not 0 < n <= total:
        raise UsageError(f"--n must be between 1 and the dataset's size {total}, got {n}")
    prefix = images[:n]
    if isinstance(prefix, np.memmap):
        prefix = np.array(prefix)  # read the prefix from disk once
    label_array = np.asarray(labels[:n], dtype=np.int64)
    split_seed = meta["seed"] if seed is None else seed
    return ImageSet(images=_nchw(prefix), labels=torch.from_numpy(label_array.copy()),
                    classes=classes_of(meta), identity={**_identity(meta, n, path), "split": STUDY_SPLIT},
                    splits=stratified_split(label_array, split_seed))


def _from_heldout(images: np.ndarray, labels: np.ndarray, meta: dict, n: int | None,
                  seed: int | None, path: Path | None) -> ImageSet:
    """Train and val from the first ``n`` pool rows, test = every held-out row."""
    pool = int(meta["n"])
    test_start, test_stop = (int(v) for v in meta["heldout_test"])
    if not 0 < pool <= test_start < test_stop <= len(labels):
        raise _bad_meta(path, f"heldout_test {meta['heldout_test']!r} must lie after the {pool} "
                              f"pool rows and inside the dataset's {len(labels)} rows")
    n = pool if n is None else n
    if not 0 < n <= pool:
        raise UsageError(f"--n must be between 1 and the dataset's {pool} pool images (the "
                         f"held-out test set is not part of n), got {n}")
    if isinstance(images, np.memmap):
        # Read only the rows in play, two contiguous reads (the first n pool rows, then the
        # test rows), into one compact array; ``take`` can still cut any n' <= n from it.
        images = np.concatenate([np.asarray(images[:n]), np.asarray(images[test_start:test_stop])])
        labels = np.concatenate([np.asarray(labels[:n]), np.asarray(labels[test_start:test_stop])])
        pool_rows, test = n, np.arange(n, n + test_stop - test_start)
    else:
        # In memory already (e.g. Ray's object store): view the whole array, gather per split.
        pool_rows, test = pool, np.arange(test_start, test_stop)
    label_tensor = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    split_seed = meta["seed"] if seed is None else seed
    splits = train_val_split(label_tensor[:n].numpy(), split_seed)
    identity = {**_identity(meta, n, path), "split": HELDOUT, "test_size": test_stop - test_start,
                "test_seed": meta.get("test_seed")}
    return ImageSet(images=_nchw(images), labels=label_tensor, classes=classes_of(meta),
                    identity=identity, splits={**splits, "test": test}, pool_rows=pool_rows)


def _from_fixed_splits(images: np.ndarray, labels: np.ndarray, meta: dict, n: int | None,
                       seed: int | None, path: Path | None) -> ImageSet:
    try:
        ranges = check_split_ranges(meta["split_ranges"], len(labels))
    except ValueError as exc:
        raise _bad_meta(path, str(exc)) from None
    if seed is not None and seed != meta.get("seed"):
        raise UsageError(f"this dataset has fixed splits (split_ranges in dataset.json); its split "
                         f"cannot be redrawn with seed {seed}")
    train_start, train_stop = ranges["train"]
    n = train_stop - train_start if n is None else n
    if not 0 < n <= train_stop - train_start:
        raise UsageError(f"--n counts training images (this dataset has fixed splits): between 1 "
                         f"and the train split's {train_stop - train_start}, got {n}")
    spans = {"train": (train_start, train_start + n), "val": ranges["val"], "test": ranges["test"]}
    if isinstance(images, np.memmap):
        # Read only the rows in play, one contiguous read per split (CIFAR-10 at n=1,000:
        # 49 MB of train + val + test instead of 184 MB), into one compact array.
        images = np.concatenate([np.asarray(images[a:b]) for a, b in spans.values()])
        labels = np.concatenate([np.asarray(labels[a:b]) for a, b in spans.values()])
        offsets = np.cumsum([0] + [b - a for a, b in spans.values()])
        splits = {name: np.arange(offsets[i], offsets[i + 1]) for i, name in enumerate(SPLIT_NAMES)}
    else:
        # In memory already (e.g. Ray's object store): view the whole array, gather per split.
        splits = {name: np.arange(a, b) for name, (a, b) in spans.items()}
    identity = {**_identity(meta, n, path), "split": "fixed"}
    return ImageSet(images=_nchw(images), labels=torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()),
                    classes=classes_of(meta), identity=identity, splits=splits)


def _bad_meta(path: Path | None, why: str) -> ValueError:
    """A dataset.json that contradicts its arrays: "corrupt dataset: PATH: why" (a UsageError)
    when it came from a folder, else a plain ValueError (arrays handed in by the caller)."""
    return corrupt(Path(path) / DATASET_JSON, why) if path else ValueError(why)


def _nchw(images: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        # arrays from Ray's object store are read-only; xfer never writes to the source
        # images (batches are gathered copies), so the shared, zero-copy view is safe
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        image_tensor = torch.from_numpy(images)
    # NHWC in memory -> NCHW view with channels_last strides, which is what CUDA convs prefer.
    return image_tensor.permute(0, 3, 1, 2)


def _identity(meta: dict, n: int, path: Path | None) -> dict:
    return {"dataset": meta.get("kind", "pdf"), "preset": meta.get("preset"),
            "seed": meta.get("seed"), "n": n, "image_size": meta.get("image_size"),
            "generator_version": meta.get("generator_version"),
            "path": str(Path(path).resolve()) if path else meta.get("path")}
