"""A labelled image dataset held as one uint8 tensor, and the loader for xfer's packed cache.

Every dataset xfer trains on ends up as an :class:`ImageSet`: all images in one uint8 tensor
(N×3×H×W, 1 byte per channel, so 10,000 PDF plots at 256 px are 1.97 GB and fit on any GPU),
labels, class names, the deterministic 80:10:10 split, and the identity that produced it.
Normalisation, resizing and augmentation happen later, on the training device, in batches.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xfer.data.layout import PACKED_DIR, PACKED_IMAGES, PACKED_LABELS, is_packed_dataset
from xfer.data.splits import stratified_split
from xfer.errors import UsageError


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8, N×3×H×W
    labels: torch.Tensor  # int64, N
    classes: list[str]
    identity: dict  # what produced it: dataset kind, preset, seed, n, image size, ...
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # "train"/"val"/"test" indices

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def take(self, n: int | None) -> "ImageSet":
        """The first n images with their own stratified split: exactly what
        ``load_packed(dir, n)`` returns (same prefix, same split seed, the dataset's)."""
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


def load_packed(root: str | Path, n: int | None = None, seed: int | None = None) -> ImageSet:
    """Load a dataset written by ``xfer data pdf`` from its packed uint8 cache.

    ``n`` takes the first n images. The generator orders images so that this prefix is the
    stratified, balanced dataset of size n with the same seed (see ``xfer.data.pdf.generate``).
    The arrays are memory-mapped, so only the prefix is read; 10,000 images at 256 px load
    at disk/page-cache speed (about 0.3 s warm here). ``seed`` picks the split; it defaults to
    the dataset's own seed.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data dir not found: {root}")
    if not is_packed_dataset(root):
        raise FileNotFoundError(
            f"{root} is not a complete xfer dataset (no dataset.json or {PACKED_DIR}/{PACKED_IMAGES});"
            " write one with `xfer data pdf --out DIR --n N`")
    meta = json.loads((root / "dataset.json").read_text())
    images = np.load(root / PACKED_DIR / PACKED_IMAGES, mmap_mode="r")
    labels = np.load(root / PACKED_DIR / PACKED_LABELS)
    return from_arrays(images, labels, meta, n=n, seed=seed, path=root)


def read_packed_arrays(root: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The whole packed cache as (images N×H×W×3 uint8, labels, dataset.json) numpy arrays,
    e.g. to put into Ray's object store once and share zero-copy between trials."""
    root = Path(root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["path"] = str(root.resolve())
    return (np.load(root / PACKED_DIR / PACKED_IMAGES), np.load(root / PACKED_DIR / PACKED_LABELS),
            meta)


def from_arrays(images: np.ndarray, labels: np.ndarray, meta: dict, n: int | None = None,
                seed: int | None = None, path: Path | None = None) -> ImageSet:
    """An ImageSet over the first ``n`` images of packed NHWC arrays, without copying them
    when they are already in memory (a memory map is read; a shared-memory array is viewed)."""
    total = len(labels)
    if n is None:
        n = total
    if not 0 < n <= total:
        raise UsageError(f"--n must be between 1 and the dataset's size {total}, got {n}")
    prefix = images[:n]
    if isinstance(prefix, np.memmap):
        prefix = np.array(prefix)  # read the prefix from disk once
    with warnings.catch_warnings():
        # arrays from Ray's object store are read-only; xfer never writes to the source
        # images (batches are gathered copies), so the shared, zero-copy view is safe
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        image_tensor = torch.from_numpy(prefix)
    # NHWC in memory -> NCHW view with channels_last strides, which is what CUDA convs prefer.
    image_tensor = image_tensor.permute(0, 3, 1, 2)
    label_array = np.asarray(labels[:n], dtype=np.int64)
    split_seed = meta["seed"] if seed is None else seed
    identity = {"dataset": meta.get("kind", "pdf"), "preset": meta.get("preset"),
                "seed": meta.get("seed"), "n": n, "image_size": meta.get("image_size"),
                "generator_version": meta.get("generator_version"),
                "path": str(Path(path).resolve()) if path else meta.get("path")}
    return ImageSet(images=image_tensor, labels=torch.from_numpy(label_array.copy()),
                    classes=list(meta["families"]), identity=identity,
                    splits=stratified_split(label_array, split_seed))
