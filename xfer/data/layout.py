"""The on-disk layout of an xfer dataset folder (no torch here: generator workers import it).

    DIR/images/<name>.png      the images
    DIR/metadata.json          per-image entries (SPEC)
    DIR/packed/images_u8.npy   N×H×W×3 uint8: the PNGs decoded once, memory-mappable
    DIR/packed/labels_i64.npy  N int64 class indices
    DIR/audit.json             the separability audit
    DIR/dataset.json           identity and counts; written last, so it marks completeness
"""

from __future__ import annotations

from pathlib import Path

PACKED_DIR = "packed"
PACKED_IMAGES = "images_u8.npy"
PACKED_LABELS = "labels_i64.npy"


def is_packed_dataset(root: str | Path) -> bool:
    """A folder is a complete dataset only when dataset.json exists: it is written last."""
    root = Path(root)
    return (root / "dataset.json").is_file() and (root / PACKED_DIR / PACKED_IMAGES).is_file()
