"""Where a sweep's images come from: the data sources a preset (or ``--data``) names.

Each source is plain data until ``prepare``, which builds xfer's packed dataset once per machine
(under a file lock, in the cache) and returns its folder; trials then share it through Ray's
object store. What ``dataset_size`` means depends on the source, and the sources say so:

================ ============================================ ================================
source           dataset_size                                 splits
================ ============================================ ================================
``PdfData``      pool images (n), 80% of them train           heldout (default): train/val
                                                              80:20 of the first n, test a
                                                              held-out set drawn once; or the
                                                              studies' 80:10:10 of n
``CifarData``    training images (a balanced prefix)           official test set; validation
                                                              held out of the official train set
``FolderData``   training images (a balanced prefix)           80:10:10 of the folder, stratified
``PackedData``   as the packed dataset says (either above)
================ ============================================ ================================

A preset that does not sweep ``dataset_size`` trains on every training image.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path

from xfer.data.pdf.generate import DEFAULT_TEST_SIZE, MAX_IMAGES, check_test_size
from xfer.data.splits import HELDOUT, SPLIT_CHOICES, STUDY_SPLIT
from xfer.errors import UsageError

DATA_CHOICES = ("pdf", "cifar10", "cifar100", "DIR (an image folder or an xfer dataset)")
# Images of a class that a split needs before every class is in each of its parts: the studies'
# 80:10:10 needs 5 (one each in val and test); with a held-out test set train and val need one
# each (xfer.data.splits.train_val_split).
_PDF_MIN_PER_CLASS = {STUDY_SPLIT: 5, HELDOUT: 2}


@dataclass(frozen=True)
class PdfData:
    """The PDF-plot dataset, built once per machine (file lock) at the largest swept size;
    every smaller size is its prefix (see xfer.data.pdf.generate).

    ``split`` "heldout" (default): train and val come from each trial's first n images and
    every trial is tested on the same ``test_size`` images, generated from ``test_seed``
    (None: the dataset seed + 2^31, never a pool seed). "80:10:10": the studies' split of n."""
    preset: str = "seed"
    seed: int = 0
    image_size: int = 256  # px, as generated
    split: str = HELDOUT
    test_size: int = DEFAULT_TEST_SIZE  # held-out test images (split "heldout" only)
    test_seed: int | None = None

    fixed_splits = False

    def __post_init__(self):
        if self.split not in SPLIT_CHOICES:
            raise UsageError(f"unknown split {self.split!r} (valid: {', '.join(SPLIT_CHOICES)})")
        if self.heldout:
            check_test_size(self.test_size)
        if self.test_seed is not None and self.test_seed == self.seed:
            raise UsageError(f"test_seed must differ from the dataset seed {self.seed}: the same "
                             "seed draws the same images")

    @property
    def heldout(self) -> bool:
        return self.split == HELDOUT

    def describe(self) -> str:
        test = (f"test: {self.test_size} held-out images, the same for every size"
                if self.heldout else "split 80:10:10 of each size")
        return f"PDF plots, preset {self.preset}, seed {self.seed}, {self.image_size} px, {test}"

    def num_classes(self) -> int:
        return 8  # the eight density families

    def check_size(self, n) -> None:
        per_class = _PDF_MIN_PER_CLASS[self.split]
        low = self.num_classes() * per_class
        if not isinstance(n, int) or isinstance(n, bool) or n < low:
            parts = "train and val" if self.heldout else "train, val and test"
            raise UsageError(f"dataset_size must be an integer >= {low} ({per_class} images per "
                             f"class put one in each of {parts}, split {self.split}), got {n!r}")
        if n > MAX_IMAGES:
            raise UsageError(f"dataset_size must be at most {MAX_IMAGES} (the generator's bound), got {n}")

    def train_images(self, n: int) -> int:
        return stratified_train_count(n, self.num_classes(), self.seed, split=self.split)

    def eval_images(self, n: int) -> int:
        """Images evaluated per epoch: val, plus the test set (the held-out one, or 10% of n)."""
        return n - self.train_images(n) + (self.test_size if self.heldout else 0)

    def default_size(self) -> int:
        raise UsageError("the PDF-plot data needs a dataset_size: generated data has no natural size")

    def check_available(self, cache_root: Path) -> None:
        """Generated on demand: always available."""

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.pdf.generate import PdfDatasetSpec, ensure_dataset

        spec = PdfDatasetSpec(n=n, preset=self.preset, seed=self.seed, image_size=self.image_size,
                              test_size=self.test_size if self.heldout else 0,
                              test_seed=self.test_seed if self.heldout else None)
        return ensure_dataset(cache_root, spec, progress=progress)


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


class _FixedSplits:
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


_CIFAR = {"cifar10": {"classes": 10, "train": 50_000, "test": 10_000, "val": 5_000},
          # the CIFAR-100 study held out 10,000 training images for validation
          "cifar100": {"classes": 100, "train": 50_000, "test": 10_000, "val": 10_000}}


@dataclass(frozen=True)
class CifarData(_FixedSplits):
    """CIFAR-10 or CIFAR-100 at 32 px, from the python-pickle archive in ``root`` (downloaded
    there by torchvision when missing and ``download``; offline, place the archive there).
    ``root`` None: ``<cache>/downloads``. ``val_size`` None: the study's hold-out (table)."""
    name: str = "cifar10"
    root: str | None = None
    val_size: int | None = None
    download: bool = True
    seed: int = 0
    image_size: int = 32

    def __post_init__(self):
        if self.name not in _CIFAR:
            raise UsageError(f"unknown CIFAR dataset {self.name!r} (valid: {', '.join(_CIFAR)})")

    @property
    def holdout(self) -> int:
        return _CIFAR[self.name]["val"] if self.val_size is None else self.val_size

    def describe(self) -> str:
        return (f"{self.name.upper()} (official test set; {self.holdout} training images held out "
                f"for validation), {self.image_size} px")

    def num_classes(self) -> int:
        return _CIFAR[self.name]["classes"]

    def train_pool(self) -> int:
        return _CIFAR[self.name]["train"] - self.holdout

    def eval_pool(self) -> int:
        return self.holdout + _CIFAR[self.name]["test"]

    def _root(self, cache_root: Path) -> Path:
        return Path(self.root) if self.root else Path(cache_root).parent / "downloads"

    def check_available(self, cache_root: Path) -> None:
        """Offline (``download`` off): the archive or its batches must be there already.
        Online, a failed download is reported when the dataset is prepared."""
        if not self.download:
            from xfer.data.cifar import check_present

            check_present(self._root(cache_root), self.name)

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.cifar import ensure_cifar

        return ensure_cifar(cache_root, self._root(cache_root), self.name, val_size=self.holdout,
                            seed=self.seed, download=self.download, progress=progress)


@dataclass(frozen=True)
class FolderData(_FixedSplits):
    """An image folder, one sub-folder per class (torchvision's ImageFolder layout), decoded
    once and resized to ``image_size``; unreadable files are reported by name and skipped."""
    path: str | None = None
    image_size: int = 224
    seed: int = 0

    def _summary(self) -> tuple[int, int]:
        if not self.path:
            raise UsageError("this study needs --data DIR: an image folder with one sub-folder per class")
        return _folder_summary(self.path)

    def check_available(self, cache_root: Path) -> None:
        self._summary()  # UsageError for a missing, empty or one-class folder

    def describe(self) -> str:
        classes, images = self._summary()
        return f"image folder {self.path} ({classes} classes, {images} files), resized to {self.image_size} px"

    def num_classes(self) -> int:
        return self._summary()[0]

    def train_pool(self) -> int:
        # before decoding, an estimate: unreadable files are only found then, and the exact
        # size is checked again once the folder is packed
        from xfer.data.splits import SPLIT_FRACTIONS

        return max(1, int(self._summary()[1] * SPLIT_FRACTIONS[0]))

    def eval_pool(self) -> int:
        return self._summary()[1] - self.train_pool()

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.folder import ensure_folder

        return ensure_folder(cache_root, self.path, image_size=self.image_size, seed=self.seed,
                             progress=progress)


@dataclass(frozen=True)
class PackedData(_FixedSplits):
    """A dataset xfer already wrote (``xfer data pdf|cifar10|cifar100|folder --out DIR``)."""
    path: str = ""

    def _meta(self) -> dict:
        return _packed_meta(self.path)

    @property
    def fixed_splits(self) -> bool:  # type: ignore[override]
        return "split_ranges" in self._meta()

    @property
    def image_size(self) -> int:
        return int(self._meta()["image_size"])

    def check_available(self, cache_root: Path) -> None:
        self._meta()

    def describe(self) -> str:
        meta = self._meta()
        return f"xfer dataset {self.path} ({meta.get('kind', '?')}, {meta.get('n', '?')} images)"

    def num_classes(self) -> int:
        from xfer.data.tensors import classes_of

        return len(classes_of(self._meta()))

    def train_pool(self) -> int:
        from xfer.data.tensors import max_n

        return max_n(self._meta())

    def eval_pool(self) -> int:
        ranges = self._meta().get("split_ranges", {})
        return sum(stop - start for name, (start, stop) in ranges.items() if name != "train")

    def _held_out(self) -> int:
        """Rows of a PDF dataset's held-out test set (0: the studies' 80:10:10 layout)."""
        held_out = self._meta().get("heldout_test")
        return int(held_out[1]) - int(held_out[0]) if held_out else 0

    def check_size(self, n) -> None:
        if self.fixed_splits:
            return super().check_size(n)
        if not isinstance(n, int) or not 0 < n <= self.train_pool():
            raise UsageError(f"dataset_size must be an integer from 1 to {self.train_pool()}, got {n!r}")

    def train_images(self, n: int) -> int:
        if self.fixed_splits:
            return n
        return stratified_train_count(n, self.num_classes(), int(self._meta().get("seed", 0)),
                                      split=HELDOUT if self._held_out() else STUDY_SPLIT)

    def eval_images(self, n: int) -> int:
        if self.fixed_splits:
            return self.eval_pool()
        return n - self.train_images(n) + self._held_out()

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        return Path(self.path).resolve()


DataSource = PdfData | CifarData | FolderData | PackedData


# Validation and planning ask a source for its classes, sizes and description several times per
# trial; a folder scan lists every file (and imports torchvision), so each is done once per path.
@functools.lru_cache(maxsize=8)
def _folder_summary(path: str) -> tuple[int, int]:
    from xfer.data.folder import folder_summary

    return folder_summary(path)


@functools.lru_cache(maxsize=8)
def _packed_meta_text(path: str) -> str:
    from xfer.data.layout import is_packed_dataset

    if not is_packed_dataset(path):
        raise UsageError(f"--data {path}: not a complete xfer dataset (no dataset.json)")
    return (Path(path) / "dataset.json").read_text()


def _packed_meta(path: str) -> dict:
    return json.loads(_packed_meta_text(path))  # a fresh dict per call: callers may not share one


def source_from_option(value: str | None, default: DataSource, *, root: str | None = None,
                       download: bool = True, image_size: int | None = None,
                       test_size: int | None = None, split: str | None = None) -> DataSource:
    """The source ``--data VALUE`` names, or the preset's ``default`` when not given.

    ``pdf``, ``cifar10``, ``cifar100``, or a folder: an xfer dataset (has dataset.json) or an
    image folder. ``--data-root`` and ``--no-download`` apply to CIFAR; ``--image-size`` to a
    folder (default: the preset's, else 224); ``--test-size`` and ``--split`` to generated PDF
    plots (they override the preset's PdfData; UsageError with any other data)."""
    source = _source_from_option(value, default, root=root, download=download, image_size=image_size)
    if test_size is None and split is None:
        return source
    flags = " and ".join(f for f, v in (("--test-size", test_size), ("--split", split)) if v is not None)
    if not isinstance(source, PdfData):
        what = {CifarData: f"{getattr(source, 'name', '').upper()} (official test set)",
                FolderData: "an image folder (fixed held-out split)",
                PackedData: "a dataset already written (it keeps the split it was written with; "
                            "write another with `xfer data pdf --test-size N --split S`)"}[type(source)]
        raise UsageError(f"{flags} apply to generated PDF-plot data only, not to {what}")
    split = split or source.split
    if split not in SPLIT_CHOICES:
        raise UsageError(f"unknown --split {split!r} (valid: {', '.join(SPLIT_CHOICES)})")
    if test_size is not None and split != HELDOUT:
        raise UsageError(f"--test-size applies to --split heldout only, not to split {split}")
    return replace(source, split=split, test_size=source.test_size if test_size is None else test_size)


def _source_from_option(value: str | None, default: DataSource, *, root: str | None,
                        download: bool, image_size: int | None) -> DataSource:
    if value is None:
        if isinstance(default, CifarData) and (root or not download):
            return replace(default, root=root or default.root, download=download)
        if isinstance(default, FolderData) and image_size:
            return replace(default, image_size=image_size)
        return default
    if value == "pdf":
        return default if isinstance(default, PdfData) else PdfData()
    if value in _CIFAR:
        base = default if isinstance(default, CifarData) and default.name == value else CifarData(value)
        return replace(base, root=root or base.root, download=download)
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"--data {value}: no such folder (valid: {', '.join(DATA_CHOICES)})")
    if not path.is_dir():
        raise UsageError(f"--data {value}: not a folder (valid: {', '.join(DATA_CHOICES)})")
    if (path / "dataset.json").exists():
        return PackedData(str(path.resolve()))
    size = image_size or (default.image_size if isinstance(default, FolderData) else 224)
    return FolderData(str(path.resolve()), image_size=size)


def apply_size_default(trials: list[dict], source: DataSource) -> list[dict]:
    """Trials of a preset that does not sweep ``dataset_size`` train on every training image."""
    missing = [t for t in trials if t.get("dataset_size") is None]
    if not missing:
        return trials
    size = source.default_size()
    return [{**t, "dataset_size": size} if t.get("dataset_size") is None else t for t in trials]

