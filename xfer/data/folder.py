"""An image folder (one sub-folder per class, as torchvision's ImageFolder and Keras'
``image_dataset_from_directory`` read it), decoded once and packed for xfer.

    SRC/cat/0001.jpg  SRC/cat/more/0002.png  SRC/dog/0001.jpeg  ...

Sorted, non-hidden sub-folders are the classes; files below them (recursively) with one of
torchvision's image extensions are the images. Hidden files and folders are ignored; any other
file is skipped and reported. A file that does not decode (corrupt, truncated, not really an
image) is skipped too: reported once, by name, and listed in dataset.json.

Resizing. Every image is resized as a whole to ``image_size``×``image_size``, bilinear, aspect
ratio not kept. That is what Keras' ``image_dataset_from_directory`` does by default
(``crop_to_aspect_ratio=False``, bilinear) and what the folder study did, so results compare
with it; a centre crop would cut off class evidence near the edges of wide images.

Splits. Stratified 80:10:10 from the seed (``xfer.data.splits``), laid out as fixed
``split_ranges`` (``[train | val | test]``, train ordered so every prefix is class-balanced).

Cost. Decoding is the bulk: a 12-megapixel JPEG takes ~100 ms at full size, ~15 ms with
libjpeg's draft mode (used here: it decodes at the smallest 1/2..1/8 scale still >= the target
size). Decoding runs in a thread pool, since PIL releases the GIL while it decodes. The decoded
images sit in memory once (N × image_size² × 3 bytes: 1.5 GB for 10,000 images at 224 px).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from xfer.data.packing import ensure_packed, fixed_split_layout, reusable, write_packed
from xfer.data.splits import stratified_split
from xfer.errors import UsageError

FOLDER_VERSION = 1  # bump when the packed pixels or layout of the same folder change
MIN_IMAGE_SIZE = 32  # px, as for the PDF plots
MIN_PER_CLASS = 3  # one image each for train, val and test
_REPORT_FILES = 10  # skipped files named in the progress line; all go into dataset.json


def image_extensions() -> tuple[str, ...]:
    # torchvision's list, so a folder reads as ImageFolder reads it. Imported here, not at the
    # top: it imports torch (~2 s), and `xfer --help` and the path checks should stay instant
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


@dataclass(frozen=True)
class FolderScan:
    root: Path  # resolved
    classes: list[str]
    files: list[list[str]]  # per class: image paths relative to root, POSIX, sorted
    skipped: list[dict] = field(default_factory=list)  # {"file": relpath, "reason": ...}
    fingerprint: str = ""  # sha256 of the resolved root and every image's path, size, mtime

    @property
    def num_images(self) -> int:
        return sum(len(f) for f in self.files)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def scan_folder(path: str | Path) -> FolderScan:
    """The classes and image files under ``path``, without decoding anything (a stat per file).
    UsageError for a missing path, a file, an empty folder, a one-class folder, or a class with
    fewer than 3 images."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"image folder {root} not found")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder (expected one sub-folder of images per class)")
    root = root.resolve()
    extensions = image_extensions()
    classes, files, skipped, stats = [], [], [], []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _hidden(entry.name):
            continue
        if not entry.is_dir():
            skipped.append({"file": entry.name, "reason": "not inside a class folder"})
            continue
        images = []
        for folder, dirs, names in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))  # sorted: a deterministic walk
            for name in sorted(n for n in names if not _hidden(n)):
                full = Path(folder, name)
                rel = full.relative_to(root).as_posix()
                if not name.lower().endswith(extensions):
                    skipped.append({"file": rel, "reason": "not an image file extension"})
                    continue
                stat = full.stat()
                images.append(rel)
                stats.append((rel, stat.st_size, stat.st_mtime_ns))
        classes.append(entry.name)
        files.append(sorted(images))
    example = f"{root}/cat/0001.jpg, {root}/dog/0001.jpg"
    if not any(files):
        raise UsageError(f"empty folder: {root} has no images in class sub-folders (expected one "
                         f"sub-folder per class, e.g. {example}; extensions {', '.join(extensions)})")
    with_images = [c for c, f in zip(classes, files) if f]
    if len(with_images) < 2:
        raise UsageError(f"one-class folder: {root} has images only in {with_images[0]!r}; a "
                         f"classifier needs at least 2 class sub-folders (e.g. {example})")
    for cls, images in zip(classes, files):
        if len(images) < MIN_PER_CLASS:
            raise UsageError(f"class {cls!r} in {root} has {len(images)} image(s); each class needs "
                             f"at least {MIN_PER_CLASS} (one each for train, val and test)")
    fingerprint = hashlib.sha256(json.dumps([str(root), sorted(stats)]).encode()).hexdigest()
    return FolderScan(root=root, classes=classes, files=files, skipped=skipped,
                      fingerprint=fingerprint)


def folder_summary(path: str | Path) -> tuple[int, int]:
    """(number of classes, number of image files): a scan only, nothing decoded, so it is cheap
    enough for planning and validating a sweep. Files that later fail to decode still count."""
    scan = scan_folder(path)
    return len(scan.classes), scan.num_images


# --- decoding ----------------------------------------------------------------------------------

def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as source:
        source.draft("RGB", (size, size))  # JPEG only: decode at a reduced scale >= size
        rgb = source.convert("RGB")  # palette, grey, CMYK -> RGB; alpha dropped, as Keras does
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _reason(exc: Exception, path: Path) -> str:
    message = str(exc).replace(repr(str(path)), "").replace(str(path), "").strip(" :")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _decode_all(scan: FolderScan, size: int, progress: Callable[[str], None] | None
                ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(images N×size×size×3 for every candidate, ok mask, failures). Failures are files PIL
    cannot decode; they never stop the build."""
    paths = [rel for class_files in scan.files for rel in class_files]
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> str | None:
        try:
            images[i] = _decode(scan.root / paths[i], size)
        except Exception as exc:  # decoders of arbitrary bytes raise anything (OSError, SyntaxError, ...)
            return _reason(exc, scan.root / paths[i])
        return None

    failures = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, reason in enumerate(pool.map(decode, range(len(paths)))):
            if reason is not None:
                failures.append({"file": paths[i], "reason": reason})
            if progress and ((i + 1) % 1000 == 0 or i + 1 == len(paths)):
                progress(f"decoded {i + 1}/{len(paths)} images")
    failed = {f["file"] for f in failures}
    ok = np.array([p not in failed for p in paths], dtype=bool)
    return images, ok, failures


def _report_skipped(skipped: list[dict], progress: Callable[[str], None] | None) -> None:
    """One line naming the skipped files (the first few, with reasons)."""
    if not progress or not skipped:
        return
    named = "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:_REPORT_FILES])
    more = f"; and {len(skipped) - _REPORT_FILES} more" if len(skipped) > _REPORT_FILES else ""
    progress(f"skipped {len(skipped)} file(s), all listed in dataset.json: {named}{more}")


# --- splitting and packing -------------------------------------------------------------------

def split_every_class(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """``stratified_split``, then one training image moved into val or test for any class that
    got none there: at 10% a class of 3 or 4 images rounds to zero, and a test split missing a
    class would never score it. Only classes of 3 or 4 images are affected."""
    splits = stratified_split(labels, seed)
    for name in ("val", "test"):
        for cls in np.setdiff1d(np.unique(labels), labels[splits[name]]):
            train = splits["train"]
            members = train[labels[train] == cls]
            if len(members) > 1:  # the last in file order: deterministic
                splits["train"] = train[train != members[-1]]
                splits[name] = np.sort(np.append(splits[name], members[-1]))
    return splits


def _identity(scan: FolderScan, image_size: int, seed: int) -> dict:
    return {"kind": "folder", "preset": scan.root.name, "seed": seed, "image_size": image_size,
            "generator_version": FOLDER_VERSION,
            "source": {"path": str(scan.root), "fingerprint": scan.fingerprint,
                       "image_files": scan.num_images}}


def check_options(image_size: int, seed: int) -> None:
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"--image-size must be at least {MIN_IMAGE_SIZE} px, got {image_size}")
    if not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed}")


def _pack(scan: FolderScan, out: Path, image_size: int, seed: int,
          progress: Callable[[str], None] | None) -> Path:
    identity = _identity(scan, image_size, seed)
    if reusable(out, identity):  # before decoding anything
        return out
    images, ok, failures = _decode_all(scan, image_size, progress)
    skipped = scan.skipped + failures
    _report_skipped(skipped, progress)
    labels_all = np.repeat(np.arange(len(scan.classes)), [len(f) for f in scan.files])
    counts = np.bincount(labels_all[ok], minlength=len(scan.classes))
    for cls, count in zip(scan.classes, counts):
        if count < MIN_PER_CLASS:
            raise UsageError(f"class {cls!r} in {scan.root} has {count} readable image(s) after "
                             f"skipping {len(failures)} unreadable file(s); each class needs at least "
                             f"{MIN_PER_CLASS} (one each for train, val and test)")
    good = np.flatnonzero(ok)
    labels = labels_all[good]
    order, ranges = fixed_split_layout(labels, split_every_class(labels, seed), seed)
    meta = {**identity, "classes": list(scan.classes), "n": int(len(good)),
            "class_counts": dict(zip(scan.classes, counts.tolist())),
            "split_ranges": ranges,
            "splits": {"fixed": True, "fractions": [0.8, 0.1, 0.1], "seed": seed, "stratified": True,
                       "train_order": "round-robin over classes: every prefix is class-balanced"},
            "resize": "whole image to image_size x image_size, bilinear, aspect ratio not kept",
            "skipped_files": skipped, "skipped_count": len(skipped)}
    # rows in split order; labels by row: write_packed gathers both through `order`
    labels_by_row = np.zeros(len(images), dtype=np.int64)
    labels_by_row[good] = labels
    return write_packed(out, images, labels_by_row, meta, progress, order=good[order])


def pack_folder(path: str | Path, out: str | Path, *, image_size: int = 224, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> Path:
    """Decode the image folder ``path`` and write it as a packed dataset at ``out`` with fixed
    splits; returns ``out``. An identical dataset already at ``out`` (same files, sizes and
    modification times, same options) is kept without decoding anything."""
    check_options(image_size, seed)
    return _pack(scan_folder(path), Path(out), image_size, seed, progress)


def cache_key(scan: FolderScan, image_size: int, seed: int) -> str:
    """A cache folder name that changes whenever the folder's files do (path, size, mtime)."""
    digest = hashlib.sha256(json.dumps([scan.fingerprint, image_size, seed, FOLDER_VERSION])
                            .encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", scan.root.name)[:40]
    return f"folder-{name}-{image_size}px-seed{seed}-{digest}"


def ensure_folder(cache_root: str | Path, path: str | Path, image_size: int = 224, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> Path:
    """The packed image folder under ``cache_root``, built at most once per machine and
    re-packed (under a new key) whenever a file is added, removed or changed."""
    check_options(image_size, seed)
    scan = scan_folder(path)
    return ensure_packed(cache_root, cache_key(scan, image_size, seed),
                         lambda target: _pack(scan, target, image_size, seed, progress))
