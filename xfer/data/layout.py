"""The on-disk layout of an xfer dataset folder (no torch here: generator workers import it).

    DIR/images/<name>.png      the images
    DIR/metadata.json          per-image entries (docs/pdf_dataset.md)
    DIR/packed/images_u8.npy   N×H×W×3 uint8: the PNGs decoded once, memory-mappable
    DIR/packed/labels_i64.npy  N int64 class indices
    DIR/audit.json             the separability audit
    DIR/dataset.json           identity and counts; written last, so it marks completeness

The readers here check each file as it is opened (``read_dataset_json``, ``open_packed``), so
a damaged dataset (a garbage dataset.json, a truncated .npy from a full disk or a bad copy) is
one line naming the file and what is wrong with it, "corrupt dataset: PATH: why", a
``UsageError`` (exit 2: the user can fix it by rewriting or deleting the folder), never a
traceback from deep inside numpy or a trial. Cost: the JSON parse, two .npy headers (a few
hundred bytes each), one stat per array and one min/max pass over the labels (8 bytes per
image: 80 kB for 10,000 images); the images' pixels are never read to check them.
"""

from __future__ import annotations

import json
from pathlib import Path

from xfer.errors import UsageError

PACKED_DIR = "packed"
PACKED_IMAGES = "images_u8.npy"
PACKED_LABELS = "labels_i64.npy"
DATASET_JSON = "dataset.json"
AUDIT_JSON = "audit.json"


def is_packed_dataset(root: str | Path) -> bool:
    """A folder is a complete dataset only when dataset.json exists: it is written last."""
    root = Path(root)
    return (root / DATASET_JSON).is_file() and (root / PACKED_DIR / PACKED_IMAGES).is_file()


def corrupt(path: str | Path, why: str) -> UsageError:
    """The one-line error for a damaged dataset file: it names the file and what is wrong."""
    return UsageError(f"corrupt dataset: {path}: {why}; write the dataset again (or delete the "
                      "folder if it is a cache)")


def read_json_file(path: str | Path, what: str = "dataset") -> object:
    """A JSON file's value; a damaged one (unreadable, not UTF-8, not JSON) raises a
    UsageError "corrupt WHAT: PATH: why"."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        why = f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})" if text.strip() else "empty"
    except (IsADirectoryError, NotADirectoryError):
        why = "not a regular file"
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        why = f"cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError) as exc:  # e.g. a number too long to parse, nesting too deep
        why = f"not JSON ({type(exc).__name__})"
    if what == "dataset":
        raise corrupt(path, why)
    raise UsageError(f"corrupt {what}: {path}: {why}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)


def read_dataset_json(root: str | Path) -> dict:
    """``root/dataset.json``, checked: a JSON object with the keys every reader uses (``n``,
    the class names) and, when present, ``image_size`` and the split layout's ranges."""
    path = Path(root) / DATASET_JSON
    meta = read_json_file(path)
    if not isinstance(meta, dict):
        raise corrupt(path, f"not a JSON object (a {type(meta).__name__})")
    for key in ("n", "image_size"):
        if (key == "n" or key in meta) and (not _is_int(meta.get(key)) or meta[key] <= 0):
            raise corrupt(path, f"{key!r} must be a positive integer, got {meta.get(key)!r}")
    names = meta.get("classes", meta.get("families"))
    if (not isinstance(names, list) or len(names) < 2
            or not all(isinstance(name, str) for name in names)):
        raise corrupt(path, f"'classes' (or 'families') must list at least two class names, got {names!r}")
    if "split_ranges" in meta:
        ranges = meta["split_ranges"]
        if not isinstance(ranges, dict) or not all(_pair(ranges.get(s)) for s in ("train", "val", "test")):
            raise corrupt(path, f"'split_ranges' must map train, val and test to [start, stop], got {ranges!r}")
    if meta.get("heldout_test") is not None and not _pair(meta["heldout_test"]):
        raise corrupt(path, f"'heldout_test' must be [start, stop], got {meta['heldout_test']!r}")
    if "seed" in meta and not _is_int(meta["seed"]):
        raise corrupt(path, f"'seed' must be an integer, got {meta['seed']!r}")
    return meta


def _npy_header(path: Path):
    """(shape, dtype, fortran_order, data offset) of a .npy file, from its header only."""
    import numpy as np

    try:
        with open(path, "rb") as src:
            version = np.lib.format.read_magic(src)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(src)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(src)
            return shape, dtype, fortran, src.tell()
    except (IsADirectoryError, NotADirectoryError):
        raise corrupt(path, "not a regular file") from None
    except OSError as exc:
        raise corrupt(path, f"cannot be read ({exc.strerror or exc})") from None
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise corrupt(path, f"not a NumPy .npy array ({first})") from None


def _checked_array(path: Path, mmap: bool):
    """A .npy array whose header is sane and whose bytes are all there (not truncated)."""
    import numpy as np

    if not path.is_file():
        raise corrupt(path, "missing" if not path.exists() else "not a regular file")
    shape, dtype, fortran, offset = _npy_header(path)
    if dtype.hasobject:
        raise corrupt(path, f"holds Python objects (dtype {dtype}), not numbers")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise corrupt(path, f"truncated: its header says {tuple(shape)} {dtype} ({expected} bytes "
                            f"with the header), the file has {size} bytes")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise corrupt(path, f"cannot be loaded ({first})") from None


def check_packed_arrays(root: Path, meta: dict, images, labels) -> None:
    """The packed arrays agree with each other and with dataset.json: N×S×S×3 uint8 images
    at the dataset's image size, one integer label per image, each a valid class index, and
    every range dataset.json names inside the arrays."""
    import numpy as np

    images_path, labels_path = root / PACKED_DIR / PACKED_IMAGES, root / PACKED_DIR / PACKED_LABELS
    size = meta.get("image_size")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise corrupt(images_path, f"expected N×H×W×3 uint8 images, got {images.shape} {images.dtype}")
    if size is not None and images.shape[1:3] != (size, size):
        raise corrupt(images_path, f"images are {images.shape[1]}×{images.shape[2]} px, dataset.json "
                                   f"says {size} px")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise corrupt(labels_path, f"expected one integer label per image, got {labels.shape} {labels.dtype}")
    rows = len(images)
    if len(labels) != rows:
        raise corrupt(labels_path, f"{len(labels)} labels for the {rows} images of {images_path.name}")
    classes = len(meta.get("classes", meta.get("families")))
    if rows and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise corrupt(labels_path, f"labels must be class indices 0..{classes - 1}, found "
                                   f"{int(labels.min())}..{int(labels.max())}")
    spans = dict(meta.get("split_ranges") or {})
    if meta.get("heldout_test") is not None:
        spans["heldout_test"] = meta["heldout_test"]
    for name, (start, stop) in spans.items():
        if not 0 <= start <= stop <= rows:
            raise corrupt(root / DATASET_JSON, f"{name} [{start}, {stop}] lies outside the packed "
                                               f"arrays' {rows} rows")
    if "split_ranges" not in meta and meta["n"] > rows:
        raise corrupt(root / DATASET_JSON, f"n is {meta['n']} but the packed arrays hold {rows} images")


def open_packed(root: str | Path, mmap: bool = True):
    """(images, labels, dataset.json) of a complete dataset folder, every file checked as it is
    opened. ``mmap``: memory-map the images (only the rows used are read later) instead of
    reading them all now. Labels are always read whole."""
    import numpy as np

    root = Path(root)
    meta = read_dataset_json(root)
    images = _checked_array(root / PACKED_DIR / PACKED_IMAGES, mmap=mmap)
    labels = np.asarray(_checked_array(root / PACKED_DIR / PACKED_LABELS, mmap=False))
    check_packed_arrays(root, meta, images, labels)
    audit = root / AUDIT_JSON
    if audit.exists():
        read_json_file(audit)  # the sweep prints it and the report reads it
    return images, labels, meta


def check_packed(root: str | Path) -> dict:
    """Check every file of a complete dataset folder without reading its pixels (what
    ``--dry-run`` does with the dataset a run would load); returns its dataset.json."""
    return open_packed(root, mmap=True)[2]
