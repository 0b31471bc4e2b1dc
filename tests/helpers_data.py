"""A tiny, easily learnable dataset in xfer's packed format, for training tests.

It is written exactly as ``xfer.data.tensors.load_packed`` reads it (``dataset.json`` plus
``packed/images_u8.npy`` N×H×W×3 uint8 and ``packed/labels_i64.npy``), so the tests exercise
the real loading path without the PDF generator. Each class is a coloured square at a
class-dependent position on a noisy background: a small CNN learns it in a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 60, 230], [230, 210, 40],
                     [200, 40, 200], [40, 210, 210], [250, 140, 20], [140, 140, 140]], dtype=np.uint8)


def write_blob_dataset(out: Path, *, n: int = 160, num_classes: int = 4, image_size: int = 32,
                       seed: int = 0, kind: str = "blobs", preset: str = "blobs") -> Path:
    """Write ``n`` images (classes cycled, so any prefix is balanced) and return ``out``."""
    if num_classes > len(_COLOURS):
        raise ValueError(f"at most {len(_COLOURS)} classes")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    images = rng.integers(0, 60, size=(n, image_size, image_size, 3), dtype=np.uint8)
    side = image_size // 3
    for i, label in enumerate(labels):
        # Position depends on the class (quadrant) plus jitter; colour depends on the class.
        row = (label // 2) % 2 * (image_size // 2) + rng.integers(0, image_size // 2 - side + 1)
        col = label % 2 * (image_size // 2) + rng.integers(0, image_size // 2 - side + 1)
        images[i, row:row + side, col:col + side] = _COLOURS[label]
    out = Path(out)
    (out / "packed").mkdir(parents=True, exist_ok=True)
    np.save(out / "packed" / "images_u8.npy", images)
    np.save(out / "packed" / "labels_i64.npy", labels)
    meta = {"kind": kind, "preset": preset, "seed": seed, "n": n, "image_size": image_size,
            "families": [f"class{c}" for c in range(num_classes)], "generator_version": "test"}
    (out / "dataset.json").write_text(json.dumps(meta))
    return out
