"""CIFAR-10 and CIFAR-100 from the official python-pickle release, packed for xfer.

Source format (https://www.cs.toronto.edu/~kriz/cifar.html), as torchvision reads it:

    cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   labels "labels",
                                                                       names "label_names"
    cifar-100-python/{train, test, meta}                               labels "fine_labels",
                                                                       names "fine_label_names"

Each batch is a pickled dict whose "data" is N×3072 uint8, one image per row, channel-planar:
1024 red values (32×32, row-major), then 1024 green, then 1024 blue.

Splits. The official test set is the test split. Validation (``val_source``):

- "train" (default): ``val_size`` images of the official train set are held out, stratified
  (the CIFAR-100 study held out 10,000; 5,000 is the common CIFAR-10 choice);
- "test": every training image trains and the official test set is the validation split too,
  as Keras' ``validation_data=(x_test, y_test)`` made it in the CIFAR-10 study. Model selection
  (ASHA, the best trial) then sees the test set; dataset.json says so (``val_is_test``).

The packed layout is ``[train | val | test]`` with fixed ``split_ranges``, so ``n`` in training
means "the first n training images" (class-balanced) and every size is scored on the same
10,000 test images. Split ranges never overlap, so with ``val_source`` "test" the val rows are
a copy of the test rows: 30 MB more on disk and in the object store, no change to any reader.

Provenance. Packing records each source file's md5 (``source_md5``); ``official_release``
compares them with the md5s torchvision publishes for the official archive, so a report can
tell the real CIFAR from a stand-in (the tests' generated files).

Cost. Reading is ~0.5 s for CIFAR-10 (184 MB of pickles), md5 ~0.3 s; packing writes 184 MB
(214 MB with val_source "test") once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from xfer.data.packing import ensure_packed, fixed_split_layout, reusable, write_packed
from xfer.errors import UsageError, choice_error

CIFAR_VERSION = 1  # bump when the packed layout of the same (name, val_size, seed) changes
VAL_SOURCES = ("train", "test")  # where the validation split comes from (module docstring)
DEFAULT_VAL_SOURCE = "train"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_SIDE = 32  # px; CIFAR images are 32×32


@dataclass(frozen=True)
class CifarFormat:
    name: str  # "cifar10" | "cifar100"
    title: str  # for messages
    folder: str  # the extracted folder
    archive: str  # the .tar.gz that holds it
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: str
    names_key: str
    default_val_size: int
    torchvision_class: str

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


FORMATS = {
    "cifar10": CifarFormat("cifar10", "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "batches.meta", "labels", "label_names", 5000, "CIFAR10"),
    "cifar100": CifarFormat("cifar100", "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                            ("train",), ("test",), "meta", "fine_labels", "fine_label_names",
                            10000, "CIFAR100"),
}


def cifar_format(name: str) -> CifarFormat:
    if name not in FORMATS:
        raise choice_error("CIFAR dataset", name, sorted(FORMATS))
    return FORMATS[name]


def check_val_source(value: str) -> str:
    if value not in VAL_SOURCES:
        raise choice_error("val_source", value, VAL_SOURCES)
    return value


# --- reading -------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only. The CIFAR batches are pickles,
    and an arbitrary pickle runs arbitrary code when loaded (torchvision loads them with plain
    ``pickle.load``); refusing every other global makes a hostile file an error instead."""

    _ALLOWED: ClassVar[frozenset] = frozenset({
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode")})  # how protocol-2 pickles from Python 3 store bytes

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # written by numpy < 2 (the official files)
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _str(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys. latin1, as torchvision does: the files were
    written by Python 2, whose byte strings latin1 maps 1:1 onto str (keys may stay bytes when
    a file was written that way; both are accepted)."""
    try:
        with open(path, "rb") as handle:
            entry = _ArraysOnly(handle, encoding="latin1").load()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a damaged pickle raises anything from EOFError to KeyError
        raise UsageError(f"{path} is not a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise UsageError(f"{path} is not a CIFAR python pickle (holds a {type(entry).__name__}, not a dict)")
    return {_str(key): value for key, value in entry.items()}


def _read_batch(path: Path, labels_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    data, labels = entry.get("data"), entry.get(labels_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
        shape = getattr(data, "shape", type(data).__name__)
        raise UsageError(f"{path}: 'data' must be an N x 3072 array, got {shape}")
    if data.dtype != np.uint8 and not (np.issubdtype(data.dtype, np.integer)
                                       and data.min(initial=0) >= 0 and data.max(initial=0) <= 255):
        raise UsageError(f"{path}: 'data' must hold uint8 pixels, got {data.dtype}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (len(data),):
        raise UsageError(f"{path}: {labels_key!r} must list one label per image ({len(data)})")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UsageError(f"{path}: labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    # channel-planar rows -> N×3×32×32 -> NHWC, the packed layout
    images = data.astype(np.uint8, copy=False).reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _folder(root: Path, fmt: CifarFormat) -> Path:
    """The extracted folder: ``root/<folder>``, or ``root`` itself when the user named it."""
    if root.name == fmt.folder and not (root / fmt.folder).is_dir():
        return root
    return root / fmt.folder


def _missing(folder: Path, fmt: CifarFormat) -> list[str]:
    return [name for name in fmt.files if not (folder / name).is_file()]


def read_cifar(root: str | Path, name: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train images N×32×32×3 uint8, train labels, test images, test labels, class names)
    from the extracted folder under ``root``. A missing or malformed file is a UsageError
    naming it."""
    fmt = cifar_format(name)
    folder = _folder(Path(root), fmt)
    missing = _missing(folder, fmt)
    if missing:
        raise UsageError(f"{fmt.title} is incomplete in {folder}: missing {', '.join(missing)}")
    names = _unpickle(folder / fmt.meta_file).get(fmt.names_key)
    if not isinstance(names, (list, tuple)) or len(names) < 2:
        raise UsageError(f"{folder / fmt.meta_file}: {fmt.names_key!r} must list the class names")
    classes = [_str(n) for n in names]

    def read(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_batch(folder / f, fmt.labels_key, len(classes)) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_images, train_labels = read(fmt.train_files)
    test_images, test_labels = read(fmt.test_files)
    return train_images, train_labels, test_images, test_labels, classes


# --- finding or fetching the files -----------------------------------------------------------

def _not_found(root: Path, fmt: CifarFormat, folder: Path, why: str) -> UsageError:
    return UsageError(
        f"{fmt.title} not found in {root}{why}: expected {folder}/{{{', '.join(fmt.files)}}} "
        f"or the archive {root / fmt.archive} (download it from {CIFAR_URL})")


def _extract(archive: Path, root: Path, fmt: CifarFormat) -> None:
    """Extract the archive's CIFAR files into ``root/<folder>``. Goes through a hidden
    temporary folder, so a killed extraction leaves no half-written batch behind, and only the
    expected files are moved into place. ``filter="data"`` (Python >= 3.11.4 / 3.12) refuses
    absolute paths, ``..`` and links out of the folder; older Pythons get the same check by hand."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".xfer-extract-") as temp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(temp, filter="data")
                else:
                    for member in tar.getmembers():
                        target = os.path.realpath(os.path.join(temp, member.name))
                        if not (member.isfile() or member.isdir()) or \
                                not target.startswith(os.path.realpath(temp) + os.sep):
                            raise tarfile.TarError(f"unsafe member {member.name!r}")
                    tar.extractall(temp)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UsageError(f"cannot extract {archive}: {exc}") from None
        extracted = Path(temp) / fmt.folder
        missing = _missing(extracted, fmt)
        if missing:
            raise UsageError(f"{archive} does not hold {fmt.folder}/{{{', '.join(missing)}}}; "
                             f"expected the {fmt.title} python version from {CIFAR_URL}")
        _move_files(extracted, root / fmt.folder, fmt)


def _move_files(source: Path, target: Path, fmt: CifarFormat) -> None:
    target.mkdir(exist_ok=True)
    for name in fmt.files:
        os.replace(source / name, target / name)


def _download(root: Path, fmt: CifarFormat) -> None:
    """Fetch with torchvision's own CIFAR loader (URL and MD5 check are its), into a hidden
    temporary folder under ``root``, then move the files into place. A failed download leaves
    ``root`` as it was (and removes it if this call created it)."""
    from torchvision import datasets

    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = tempfile.mkdtemp(dir=root, prefix=".xfer-download-")
    except OSError as exc:
        raise UsageError(f"--root {root} is not writable: {exc.strerror or exc}") from None
    try:
        loader = getattr(datasets, fmt.torchvision_class)
        loader(temp, train=True, download=True)
        loader(temp, train=False, download=True)  # finds the files: no second download
        _move_files(Path(temp) / fmt.folder, root / fmt.folder, fmt)
        if (Path(temp) / fmt.archive).is_file():  # kept, as torchvision keeps it
            os.replace(Path(temp) / fmt.archive, root / fmt.archive)
    except (OSError, RuntimeError) as exc:  # URLError and socket errors are OSErrors
        shutil.rmtree(temp, ignore_errors=True)
        if created:
            shutil.rmtree(root, ignore_errors=True)
        detail = " ".join(str(exc).split())  # one line, whatever the network stack said
        raise UsageError(f"could not download {fmt.title} into {root} ({type(exc).__name__}: {detail}); "
                         f"offline, place {fmt.archive} from {CIFAR_URL} in {root}") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    shutil.rmtree(temp, ignore_errors=True)


def check_present(root: str | Path, name: str) -> None:
    """UsageError, naming the expected files, unless ``root`` holds the extracted batches or
    the archive: what a caller that may not download checks before starting anything."""
    fmt = cifar_format(name)
    root = Path(root).expanduser()
    folder = _folder(root, fmt)
    if _missing(folder, fmt) and not (root / fmt.archive).is_file():
        raise _not_found(root, fmt, folder, " and downloading is off")


def locate_or_fetch(root: str | Path, name: str, download: bool) -> Path:
    """The complete extracted folder of ``name`` under ``root``: used as it is, else extracted
    from the archive in ``root``, else (``download``) fetched by torchvision. Offline and
    missing: a UsageError naming the expected files, the archive and where to get it."""
    fmt = cifar_format(name)
    root = Path(root).expanduser()
    folder = _folder(root, fmt)
    if not _missing(folder, fmt):
        return folder
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is not a folder")
    if (root / fmt.archive).is_file():
        _extract(root / fmt.archive, root, fmt)
        return root / fmt.folder
    if not download:
        missing = _missing(folder, fmt)
        why = "" if len(missing) == len(fmt.files) else f" (missing {', '.join(missing)})"
        raise _not_found(root, fmt, folder, why + " and downloading is off")
    _download(root, fmt)
    return root / fmt.folder


# --- provenance: the official release or a stand-in ---------------------------------------------

def file_md5(path: Path) -> str:
    """Hex md5 of a file in 16 MB blocks (~0.6 GB/s: 0.3 s for CIFAR-10's 184 MB). md5 because
    it is what torchvision publishes for the archive's files, not for security."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def source_md5s(folder: Path, name: str) -> dict[str, str]:
    """{file: md5} of every file ``name``'s release holds, read from its extracted folder."""
    return {file: file_md5(Path(folder) / file) for file in cifar_format(name).files}


def published_md5s(name: str) -> dict[str, str]:
    """{file: md5} of the official release, as torchvision publishes them (its ``train_list``,
    ``test_list`` and ``meta``): the one table of the real files' checksums xfer already has."""
    from torchvision import datasets

    loader = getattr(datasets, cifar_format(name).torchvision_class)
    table = {file: md5 for file, md5 in [*loader.train_list, *loader.test_list]}
    table[loader.meta["filename"]] = loader.meta["md5"]
    return table


def official_release(name: str, md5s: dict[str, str]) -> tuple[bool, list[str]]:
    """(True, []) when every file of the release has the md5 torchvision publishes for it, else
    (False, the files that differ or are missing from ``md5s``)."""
    published = published_md5s(name)
    differ = [file for file in cifar_format(name).files
              if md5s.get(file) is None or md5s.get(file) != published.get(file)]
    return not differ, differ


def recorded_md5s(packed: str | Path | None, root: str | Path, name: str) -> dict[str, str] | None:
    """The release's md5s: as recorded in the packed dataset ``packed`` when it was written,
    else read from the extracted files under ``root`` now (0.3 s for CIFAR-10), else None
    (neither packed nor extracted yet: ask again after preparing the dataset)."""
    import json

    meta_path = Path(packed) / "dataset.json" if packed else None
    if meta_path is not None and meta_path.is_file():
        recorded = json.loads(meta_path.read_text()).get("source_md5")
        if isinstance(recorded, dict):
            return recorded
    folder = _folder(Path(root).expanduser(), cifar_format(name))
    if _missing(folder, cifar_format(name)):
        return None
    return source_md5s(folder, name)


def release_note(name: str, md5s: dict[str, str] | None) -> tuple[bool | None, str]:
    """(genuine, one-line note) for a replication card: True for the official files, False
    for anything else (generated test files, a damaged or altered copy), None when unchecked."""
    fmt = cifar_format(name)
    if md5s is None:
        return None, f"not checked: the {fmt.title} files' md5s are unknown (not read yet)"
    genuine, differ = official_release(name, md5s)
    if genuine:
        return True, f"the official {fmt.title} archive (every file's md5 matches torchvision's)"
    return False, (f"stand-in: generated files, not the official {fmt.title} archive (md5 of "
                   f"{', '.join(differ)} differs from torchvision's published one)")


# --- packing -----------------------------------------------------------------------------------

def holdout(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) index arrays: exactly ``val_size`` images, stratified (each class's share by
    largest remainder, so 5,000 of CIFAR-10 is 500 per class), drawn by ``(seed, class)``. Each
    class keeps at least one training image."""
    classes, counts = np.unique(labels, return_counts=True)
    if not 0 < val_size <= len(labels) - len(classes):
        raise UsageError(f"--val-size must be between 1 and {len(labels) - len(classes)} (the "
                         f"training set has {len(labels)} images in {len(classes)} classes), got {val_size}")
    exact = counts * val_size / len(labels)
    quota = np.minimum(np.floor(exact).astype(np.int64), counts - 1)
    for i in np.argsort(-(exact - quota), kind="stable"):  # hand out the remainder
        if quota.sum() == val_size:
            break
        quota[i] += quota[i] < counts[i] - 1
    while quota.sum() < val_size:  # only when the caps bit: fill wherever room is left
        quota[np.argmax(counts - 1 - quota)] += 1
    val = []
    for cls, take in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        # tag 1: a stream of its own, independent of the train order's (seed, class)
        val.append(members[np.random.default_rng([seed, int(cls), 1]).permutation(len(members))[:take]])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val), val


def _identity(fmt: CifarFormat, root: Path, val_size: int, seed: int,
              val_source: str = DEFAULT_VAL_SOURCE) -> dict:
    identity = {"kind": fmt.name, "preset": "official", "seed": seed, "val_size": val_size,
                "image_size": _SIDE, "generator_version": CIFAR_VERSION,
                "source": {"root": str(root.resolve()), "files": [f"{fmt.folder}/{f}" for f in fmt.files]}}
    if val_source != DEFAULT_VAL_SOURCE:
        # only then: a "train" identity stays what it was, so datasets packed before val_source
        # existed are still reused; "test" has val_size 0 (nothing held out of train), so the
        # two never match each other
        identity["val_source"] = val_source
    return identity


def resolve_val_size(name: str, val_size: int | None, val_source: str) -> int:
    """Training images held out for validation: ``val_size`` (None: the release's default) with
    val_source "train", 0 with "test" (which takes no ``val_size``); else UsageError."""
    fmt = cifar_format(name)
    if check_val_source(val_source) == "test":
        if val_size:
            raise UsageError(f"val_size ({val_size}) applies to val_source 'train' only: with "
                             "'test' the official test set is the validation split")
        return 0
    val_size = fmt.default_val_size if val_size is None else val_size
    if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size < 1:
        raise UsageError(f"--val-size must be a positive integer, got {val_size}")
    return val_size


def pack_cifar(root: str | Path, name: str, out: str | Path, *, val_size: int | None = None,
               seed: int = 0, download: bool = True, val_source: str = DEFAULT_VAL_SOURCE,
               progress: Callable[[str], None] | None = None) -> Path:
    """Write ``name`` ("cifar10" | "cifar100") from ``root`` as a packed dataset at ``out``
    with fixed splits ``[train | val | test]``; returns ``out``. An identical dataset already
    at ``out`` is kept without reading anything. ``val_source`` "test": see the module docstring
    (``val_size`` must then be None)."""
    fmt = cifar_format(name)
    val_size = resolve_val_size(name, val_size, val_source)
    if not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed}")
    root = Path(root).expanduser()
    identity = _identity(fmt, _folder(root, fmt).parent, val_size, seed, val_source)
    if reusable(Path(out), identity):  # before any download or read
        return Path(out)
    folder = locate_or_fetch(root, name, download)
    train_images, train_labels, test_images, test_labels, classes = read_cifar(folder.parent, name)
    if progress:
        progress(f"read {fmt.title}: {len(train_labels)} train + {len(test_labels)} test images, "
                 f"{len(classes)} classes")
    counts = np.bincount(np.concatenate([train_labels, test_labels]), minlength=len(classes))
    test_rows = np.arange(len(test_labels))
    if val_source == "test":
        # [train | test as val | test]: split ranges may not overlap, so val is a copy
        images = np.concatenate([train_images, test_images, test_images])
        labels = np.concatenate([train_labels, test_labels, test_labels])
        train = np.arange(len(train_labels))
        val, test = len(train_labels) + test_rows, len(train_labels) + len(test_labels) + test_rows
        val_text = ("the official test set (rows copied from the test split), as the study's Keras "
                    "validation_data=(x_test, y_test): selection sees the test set")
    else:
        images = np.concatenate([train_images, test_images])
        labels = np.concatenate([train_labels, test_labels])
        train, val = holdout(train_labels, val_size, seed)
        test = len(train_labels) + test_rows
        val_text = f"{val_size} images held out of the official train set, stratified, seed {seed}"
    order, ranges = fixed_split_layout(labels, {"train": train, "val": val, "test": test}, seed)
    meta = {**identity, "classes": classes, "n": int(len(labels)),  # rows, a copied val included
            "class_counts": dict(zip(classes, counts.tolist())),  # distinct images
            "split_ranges": ranges, "val_source": val_source, "val_is_test": val_source == "test",
            "source_md5": source_md5s(folder, name),
            "splits": {"fixed": True, "test": "official test set", "val": val_text,
                       "train_order": "round-robin over classes: every prefix is class-balanced"}}
    return write_packed(out, images, labels, meta, progress, order=order)


def cache_key(name: str, val_size: int, seed: int, val_source: str = DEFAULT_VAL_SOURCE) -> str:
    if val_source == "test":
        return f"{name}-official-valtest-seed{seed}-v{CIFAR_VERSION}"
    return f"{name}-official-val{val_size}-seed{seed}-v{CIFAR_VERSION}"


def packed_cache(cache_root: str | Path, name: str, val_size: int | None = None, seed: int = 0,
                 val_source: str = DEFAULT_VAL_SOURCE) -> Path:
    """Where ``ensure_cifar`` keeps this dataset under ``cache_root`` (built or not)."""
    val_size = resolve_val_size(name, val_size, val_source)
    return Path(cache_root) / cache_key(name, val_size, seed, val_source)


def ensure_cifar(cache_root: str | Path, root: str | Path, name: str, val_size: int | None = None,
                 seed: int = 0, download: bool = True, val_source: str = DEFAULT_VAL_SOURCE,
                 progress: Callable[[str], None] | None = None) -> Path:
    """The packed ``name`` under ``cache_root``, built at most once per machine."""
    val_size = resolve_val_size(name, val_size, val_source)
    return ensure_packed(cache_root, cache_key(name, val_size, seed, val_source),
                         lambda target: pack_cifar(root, name, target, val_size=val_size,
                                                   seed=seed, download=download,
                                                   val_source=val_source, progress=progress))
