"""Data sources that are folders on disk: an image folder (one sub-folder per class, decoded and
packed once) and a dataset xfer already wrote (``xfer data ... --out DIR``).

Together because both are named by ``--data DIR`` and read their sizes from the folder itself,
cached per path (a folder scan lists every file).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from xfer.data.pdf.families import DEFAULT_GAMMA_BETA
from xfer.data.splits import HELDOUT, STUDY_SPLIT
from xfer.errors import UsageError
from xfer.sweep.cifar_source import CIFAR_SPLITS
from xfer.sweep.pdf_source import pdf_provenance
from xfer.sweep.source_base import FixedSplits, check_cached_dataset, provenance_entry, stratified_train_count

_FOLDER_NOTE = "not the study's dataset: the study's 1,800 clothing images are not public"


@dataclass(frozen=True)
class FolderData(FixedSplits):
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

    def check_cached(self, cache_root: Path, n: int) -> None:
        """The folder's packed cache, if it was built from these files already: its key is a
        digest of every file's path, size and mtime (a stat per file, as the run does)."""
        from xfer.data.folder import cache_key, scan_folder

        self._summary()  # the folder's own errors first (missing, empty, one class)
        check_cached_dataset(Path(cache_root) / cache_key(scan_folder(self.path), self.image_size, self.seed))

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.folder import ensure_folder

        return ensure_folder(cache_root, self.path, image_size=self.image_size, seed=self.seed,
                             progress=progress)

    def provenance(self, cache_root: Path) -> dict:
        return provenance_entry(self.describe(), None, _FOLDER_NOTE)


@dataclass(frozen=True)
class PackedData(FixedSplits):
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

    def check_cached(self, cache_root: Path, n: int) -> None:
        """Every file the run will read: dataset.json, the packed arrays, audit.json."""
        from xfer.data.layout import check_packed

        check_packed(self.path)

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

    def provenance(self, cache_root: Path) -> dict:
        """From what dataset.json says it was written from: PDF plots by their recipe, CIFAR
        by the md5s recorded when packing (older datasets: unknown), a folder never genuine."""
        meta, describe = self._meta(), self.describe()
        kind, val_is_test = meta.get("kind"), bool(meta.get("val_is_test", False))
        if kind == "pdf":
            return pdf_provenance(describe, str(meta.get("preset")),
                                   meta.get("gamma_beta", DEFAULT_GAMMA_BETA),
                                   bool(meta.get("tick_labels", True)), int(meta["image_size"]))
        if kind in CIFAR_SPLITS:
            from xfer.data.cifar import release_note

            recorded = meta.get("source_md5")
            genuine, note = release_note(kind, recorded if isinstance(recorded, dict) else None)
            if recorded is None:
                note = "not checked: written before xfer recorded its source files' md5s"
            return provenance_entry(describe, genuine, note, val_is_test)
        if kind == "folder":
            return provenance_entry(describe, None, _FOLDER_NOTE, val_is_test)
        return provenance_entry(describe, None, f"an xfer dataset of kind {kind!r}: not a study's "
                                           "published dataset as far as xfer knows", val_is_test)


# Validation and planning ask a source for its classes, sizes and description several times per
# trial; a folder scan lists every file (and imports torchvision), so each is done once per path.
@functools.lru_cache(maxsize=8)
def _folder_summary(path: str) -> tuple[int, int]:
    from xfer.data.folder import folder_summary

    return folder_summary(path)


@functools.lru_cache(maxsize=8)
def _packed_meta_text(path: str) -> str:
    from xfer.data.layout import is_packed_dataset, read_dataset_json

    if not is_packed_dataset(path):
        raise UsageError(f"--data {path}: not a complete xfer dataset (no dataset.json)")
    return json.dumps(read_dataset_json(path))  # checked: "corrupt dataset: PATH: why"


def _packed_meta(path: str) -> dict:
    return json.loads(_packed_meta_text(path))  # a fresh dict per call: callers may not share one
