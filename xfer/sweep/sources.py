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
                                                              held out of the official train set,
                                                              or (val_source "test") the
                                                              official test set too
``FolderData``   training images (a balanced prefix)           80:10:10 of the folder, stratified
``PackedData``   as the packed dataset says (either above)
================ ============================================ ================================

A preset that does not sweep ``dataset_size`` trains on every training image.

``provenance(cache_root)`` says, for the replication card (the driver's study_card.json),
whether the images are the study's own: ``{"describe", "genuine", "note", "val_is_test"}``;
``genuine`` is True, False (a stand-in: comparing with the study's numbers is not meaningful)
or None (unknown: an image folder). Call it after ``prepare``: CIFAR is checked by md5.

Each kind of source is a module of its own (``pdf_source``, ``cifar_source``, ``folder_sources``,
what they share in ``source_base``); this one names them for the sweep scripts and turns
``--data`` into one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from xfer.data.splits import HELDOUT, SPLIT_CHOICES
from xfer.errors import UsageError
# Re-exported: the sweep scripts, the driver and the tests name every source from this module.
from xfer.sweep.cifar_source import CIFAR_SPLITS, CifarData
from xfer.sweep.folder_sources import FolderData, PackedData
from xfer.sweep.pdf_source import PdfData

__all__ = ["DATA_CHOICES", "CifarData", "DataSource", "FolderData", "PackedData", "PdfData",
           "apply_size_default", "source_from_option"]

DATA_CHOICES = ("pdf", "cifar10", "cifar100", "DIR (an image folder or an xfer dataset)")


DataSource = PdfData | CifarData | FolderData | PackedData


def source_from_option(value: str | None, default: DataSource, *, root: str | None = None,
                       download: bool = True, image_size: int | None = None,
                       test_size: int | None = None, split: str | None = None,
                       gamma_beta: str | None = None, tick_labels: bool | None = None) -> DataSource:
    """The source ``--data VALUE`` names, or the preset's ``default`` when not given.

    ``pdf``, ``cifar10``, ``cifar100``, or a folder: an xfer dataset (has dataset.json) or an
    image folder. ``--data-root`` and ``--no-download`` apply to CIFAR; ``--image-size`` to a
    folder (default: the preset's, else 224); ``--test-size``, ``--split``, ``--gamma-beta``
    and ``--no-tick-labels`` (``tick_labels`` False) to generated PDF plots (they override the
    preset's PdfData; None keeps its value; UsageError with any other data)."""
    source = _source_from_option(value, default, root=root, download=download, image_size=image_size)
    given = (("--test-size", test_size), ("--split", split), ("--gamma-beta", gamma_beta),
             ("--no-tick-labels", tick_labels))
    if all(v is None for _, v in given):
        return source
    flags = " and ".join(f for f, v in given if v is not None)
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
    return replace(source, split=split, test_size=source.test_size if test_size is None else test_size,
                   gamma_beta=source.gamma_beta if gamma_beta is None else gamma_beta,
                   tick_labels=source.tick_labels if tick_labels is None else tick_labels)


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
    if value in CIFAR_SPLITS:
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
