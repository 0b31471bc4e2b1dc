"""The CIFAR-10/100 data source: the official python-pickle release at 32 px, with validation
held out of the training set (or, as the CIFAR-10 study did, the official test set).

One module per kind of source, because each has its own sizes, cache key and provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xfer.errors import UsageError
from xfer.sweep.source_base import FixedSplits, check_cached_dataset, provenance_entry

CIFAR_SPLITS = {"cifar10": {"classes": 10, "train": 50_000, "test": 10_000, "val": 5_000},
          # the CIFAR-100 study held out 10,000 training images for validation
          "cifar100": {"classes": 100, "train": 50_000, "test": 10_000, "val": 10_000}}


@dataclass(frozen=True)
class CifarData(FixedSplits):
    """CIFAR-10 or CIFAR-100 at 32 px, from the python-pickle archive in ``root`` (downloaded
    there by torchvision when missing and ``download``; offline, place the archive there).
    ``root`` None: ``<cache>/downloads``. ``val_source`` "train": ``val_size`` training images
    are held out for validation (None: the study's hold-out, see the table); "test": all 50,000
    train and the official test set validates too, as the CIFAR-10 study's Keras
    ``validation_data=(x_test, y_test)`` did (selection then sees the test set)."""
    name: str = "cifar10"
    root: str | None = None
    val_size: int | None = None
    download: bool = True
    seed: int = 0
    image_size: int = 32
    val_source: str = "train"  # "train" | "test" (xfer.data.cifar.VAL_SOURCES)

    def __post_init__(self):
        from xfer.data.cifar import resolve_val_size

        if self.name not in CIFAR_SPLITS:
            raise UsageError(f"unknown CIFAR dataset {self.name!r} (valid: {', '.join(CIFAR_SPLITS)})")
        resolve_val_size(self.name, self.val_size, self.val_source)  # UsageError when they clash

    @property
    def val_is_test(self) -> bool:
        return self.val_source == "test"

    @property
    def holdout(self) -> int:
        """Training images held out for validation (0 when the test set validates)."""
        if self.val_is_test:
            return 0
        return CIFAR_SPLITS[self.name]["val"] if self.val_size is None else self.val_size

    def describe(self) -> str:
        if self.val_is_test:
            return (f"{self.name.upper()} (all {CIFAR_SPLITS[self.name]['train']} training images; the "
                    f"official test set is both validation and test, as the study's Keras "
                    f"validation_data: selection sees the test set), {self.image_size} px")
        return (f"{self.name.upper()} (official test set; {self.holdout} training images held out "
                f"for validation), {self.image_size} px")

    def num_classes(self) -> int:
        return CIFAR_SPLITS[self.name]["classes"]

    def train_pool(self) -> int:
        return CIFAR_SPLITS[self.name]["train"] - self.holdout

    def eval_pool(self) -> int:
        val = CIFAR_SPLITS[self.name]["test"] if self.val_is_test else self.holdout
        return val + CIFAR_SPLITS[self.name]["test"]

    def _root(self, cache_root: Path) -> Path:
        return Path(self.root) if self.root else Path(cache_root).parent / "downloads"

    def check_available(self, cache_root: Path) -> None:
        """Offline (``download`` off): the archive or its batches must be there already.
        Online, a failed download is reported when the dataset is prepared."""
        if not self.download:
            from xfer.data.cifar import check_present

            check_present(self._root(cache_root), self.name)

    def check_cached(self, cache_root: Path, n: int) -> None:
        """The packed dataset in the cache, if it was built already (``check_cached_dataset``)."""
        from xfer.data.cifar import packed_cache

        check_cached_dataset(packed_cache(cache_root, self.name, self.holdout, self.seed, self.val_source))

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.cifar import ensure_cifar

        return ensure_cifar(cache_root, self._root(cache_root), self.name,
                            val_size=self.holdout, seed=self.seed, download=self.download,
                            val_source=self.val_source, progress=progress)

    def provenance(self, cache_root: Path) -> dict:
        """Genuine when every file's md5 is the one torchvision publishes for the official
        archive: recorded when the dataset was packed, else read now (0.3 s), else unknown
        (before ``prepare``, with nothing extracted yet)."""
        from xfer.data.cifar import packed_cache, recorded_md5s, release_note

        packed = packed_cache(cache_root, self.name, self.holdout, self.seed, self.val_source)
        genuine, note = release_note(self.name, recorded_md5s(packed, self._root(cache_root), self.name))
        return provenance_entry(self.describe(), genuine, note, self.val_is_test)
