"""Writing xfer's packed dataset folders: atomically, once per machine, with fixed splits.

Every dataset source (the PDF-plot generator, CIFAR, an image folder) ends up in the layout of
``xfer.data.layout``. This module holds what they share:

- ``write_atomically``: build into a hidden ``.NAME.partial-*`` sibling and rename it into
  place in one step, ``dataset.json`` last. A folder without ``dataset.json`` is never a
  dataset, so a killed build can't be mistaken for a complete one.
- ``ensure_packed``: build a cache entry at most once per machine. Concurrent callers (trials
  on one node) serialise on a file lock; leftovers of a killed build are deleted, never read.
- ``write_packed``: the packed arrays plus ``dataset.json`` from in-memory arrays.
- ``balanced_order`` / ``fixed_split_layout``: the "fixed splits" layout, ``[train | val |
  test]`` as contiguous ranges (``split_ranges`` in dataset.json), the train range ordered
  round-robin over classes so that its first n images are a class-balanced training set.

No torch here: generator workers import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from xfer.data.layout import PACKED_DIR, PACKED_IMAGES, PACKED_LABELS, is_packed_dataset
from xfer.errors import UsageError

SPLIT_NAMES = ("train", "val", "test")
_WRITE_CHUNK_BYTES = 64 << 20  # rows gathered per write: bounds the extra memory of `order`


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 16 MB blocks (~0.5 GB/s: 0.3 s for CIFAR-10's 184 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def packed_section(root: Path) -> dict:
    """The ``"packed"`` entry of dataset.json: where the arrays are and their fingerprint."""
    return {"images": f"{PACKED_DIR}/{PACKED_IMAGES}", "labels": f"{PACKED_DIR}/{PACKED_LABELS}",
            "layout": "N x H x W x 3 uint8",
            # pixels may depend on library versions (Pillow, FreeType, libjpeg), so compare
            # fingerprints only between builds made with one environment
            "images_sha256": sha256_file(root / PACKED_DIR / PACKED_IMAGES)}


def created_by() -> dict:
    from xfer import __version__
    from xfer.provenance import git_sha, package_versions

    return {"xfer": __version__, "git_sha": git_sha(), "packages": package_versions()}


def holds_dataset(root: Path, identity: dict) -> bool:
    """True when ``root`` is a complete dataset whose dataset.json agrees with every key of
    ``identity`` (compared after a JSON round trip, so tuples equal lists)."""
    if not is_packed_dataset(root):
        return False
    from xfer.data.layout import read_dataset_json

    existing = read_dataset_json(root)  # a damaged one: "corrupt dataset: PATH: why"
    wanted = json.loads(json.dumps(identity))
    return all(existing.get(key) == value for key, value in wanted.items())


def reusable(out: Path, identity: dict) -> bool:
    """True when ``out`` already holds this dataset, False when it is missing or an empty
    folder; a UsageError for anything else. Cheap: call it before reading any source data."""
    out = Path(out)
    if is_packed_dataset(out):
        if holds_dataset(out, identity):
            return True
        raise UsageError(f"--out {out} already holds a different dataset; choose another folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose another folder")
    return False


def write_atomically(out: str | Path, build: Callable[[Path], None], identity: dict
                     ) -> tuple[Path, bool]:
    """Run ``build(folder)`` in a hidden sibling of ``out`` and rename it to ``out``; returns
    (path, reused). ``build`` must write dataset.json last.

    An identical complete dataset already at ``out`` (see ``holds_dataset``) is reused without
    building; any other non-empty ``out`` is refused, so a typo never overwrites user data.
    """
    out = Path(out)
    if reusable(out, identity):
        return out, True
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable: {exc.strerror or exc}") from None
    try:
        build(partial)
        os.rename(partial, out)  # atomic; replaces `out` only if it is an empty folder
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out, False


def ensure_packed(cache_root: str | Path, key: str, build: Callable[[Path], object]) -> Path:
    """``cache_root/key``, built by ``build(target)`` at most once per machine.

    ``build`` writes the dataset to ``target`` (through ``write_atomically``, e.g. via
    ``write_packed``). Callers serialise on ``cache_root/key.lock``: the first builds, the rest
    wait and reuse. Leftovers of a killed build are deleted under the lock, never read.

    A build that fails (no download, a corrupt source) leaves nothing behind: its lock file is
    unlinked while still held (filelock >= 4 makes a waiter that locked the unlinked file try
    again on a fresh one), and the cache folders this call created are removed if empty.
    """
    from filelock import FileLock

    cache_root = Path(cache_root)
    created = [folder for folder in (cache_root, *cache_root.parents) if not folder.exists()]
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cache folder {cache_root} is not writable: {exc.strerror or exc}") from None
    target = cache_root / key
    lock_path = cache_root / f"{key}.lock"
    try:
        with FileLock(str(lock_path)):
            if is_packed_dataset(target):
                return target
            for leftover in cache_root.glob(f".{key}.partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            if target.exists():  # a folder with no dataset.json is never complete
                shutil.rmtree(target)
            try:
                build(target)
            except BaseException:
                lock_path.unlink(missing_ok=True)
                raise
    except BaseException:
        for folder in created:  # deepest first; only the empty ones
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return target


def write_packed(out: str | Path, images: np.ndarray, labels: np.ndarray, meta: dict,
                 progress: Callable[[str], None] | None = None, *,
                 order: np.ndarray | None = None) -> Path:
    """Write ``images`` (N×H×W×3 uint8) and ``labels`` as a packed dataset folder at ``out``.

    ``order`` (optional) lists the rows to write, in order: row i of the packed cache is
    ``images[order[i]]``. It is gathered in ~64 MB chunks, so laying a dataset out in split
    order never holds a second full copy in memory. dataset.json is ``meta`` plus the packed
    section and provenance, written last. An identical dataset at ``out`` (same ``meta``) is
    kept as it is; any other non-empty ``out`` is refused (UsageError).
    """
    if not isinstance(images, np.ndarray):
        images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be N x H x W x 3 uint8, got {images.dtype} {images.shape}")
    rows = np.arange(len(images)) if order is None else np.asarray(order, dtype=np.int64)
    if len(labels) != len(images) or len(rows) == 0:
        raise ValueError(f"need one label per image and at least one row, got {len(images)} "
                         f"images, {len(labels)} labels, {len(rows)} rows")
    if "split_ranges" in meta:
        check_split_ranges(meta["split_ranges"], len(rows))

    def build(root: Path) -> None:
        (root / PACKED_DIR).mkdir()
        packed = np.lib.format.open_memmap(root / PACKED_DIR / PACKED_IMAGES, mode="w+",
                                           dtype=np.uint8, shape=(len(rows), *images.shape[1:]))
        chunk = max(1, _WRITE_CHUNK_BYTES // max(1, images[0].nbytes))
        for start in range(0, len(rows), chunk):
            packed[start:start + chunk] = images[rows[start:start + chunk]]
        packed.flush()
        del packed
        np.save(root / PACKED_DIR / PACKED_LABELS, labels[rows])
        if progress:
            progress(f"packed {len(rows)} images")
        dataset = {**meta, "packed": packed_section(root), "created_by": created_by()}
        # Written last: its presence is what marks the folder as a complete dataset.
        (root / "dataset.json").write_text(json.dumps(dataset, indent=2))

    path, _ = write_atomically(out, build, meta)
    return path


# --- fixed splits ----------------------------------------------------------------------------

def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))``, round-robin over the classes (the k-th image of
    every class that still has one, in class order, then the (k+1)-th ...), each class shuffled
    by ``(seed, class)``. Every prefix is as balanced as the class sizes allow: counts differ by
    at most one until a class runs out."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)  # position of each image within its class
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        shuffled = members[np.random.default_rng([seed, int(cls)]).permutation(len(members))]
        rank[shuffled] = np.arange(len(members))
    return np.lexsort((labels, rank))  # by rank, then class


def fixed_split_layout(labels: np.ndarray, splits: dict[str, np.ndarray], seed: int
                       ) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The row order ``[train (balanced_order) | val | test]`` and its ``split_ranges``.

    ``splits`` are index arrays into ``labels`` that partition it; val and test keep their
    given order. Returns (order, {"train": [0, a], "val": [a, b], "test": [b, N]})."""
    labels = np.asarray(labels)
    train = np.asarray(splits["train"], dtype=np.int64)
    parts = [train[balanced_order(labels[train], seed)],
             np.asarray(splits["val"], dtype=np.int64), np.asarray(splits["test"], dtype=np.int64)]
    order = np.concatenate(parts)
    if len(order) != len(labels) or len(np.unique(order)) != len(labels):
        raise ValueError("splits must partition the dataset")
    ranges, start = {}, 0
    for name, part in zip(SPLIT_NAMES, parts):
        ranges[name] = [start, start + len(part)]
        start += len(part)
    return order, ranges


def check_split_ranges(ranges: dict, total: int) -> dict[str, tuple[int, int]]:
    """``split_ranges`` from dataset.json as {split: (start, stop)}, checked against the
    dataset's size: disjoint, inside [0, total], train non-empty."""
    try:
        parsed = {name: (int(ranges[name][0]), int(ranges[name][1])) for name in SPLIT_NAMES}
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError(f"split_ranges must map train, val and test to [start, stop], got {ranges!r}") from None
    spans = sorted(parsed.values())
    if (any(not 0 <= a <= b <= total for a, b in spans) or parsed["train"][0] == parsed["train"][1]
            or any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1))):
        raise ValueError(f"split_ranges {ranges!r} overlap, are empty for train, or leave [0, {total}]")
    return parsed
