"""Write the PDF-plot dataset: deterministic, balanced, nested across sizes, parallel, atomic.

Determinism and nesting. Image k of family c is a pure function of (generator version, seed,
c, k): its own random generator draws its parameters (``varied``) and its observations. The
images are ordered round-robin over the families (k = 0 for all eight families, then k = 1,
...), so the first n images are balanced (counts differ by at most one) and the dataset of size
n is exactly the first n images of any larger one with the same seed. The size axis of a sweep
therefore compares like with like, and ``load_packed(dir, n=...)`` can cut any smaller size out
of one large build.

Atomicity. Everything is written into a hidden ``.NAME.partial-*`` sibling and renamed into
place in one step; ``dataset.json`` is written last. A folder without ``dataset.json`` is never
a dataset, so a killed build can't be mistaken for a complete one (``ensure_dataset`` deletes
the leftovers under its lock and rebuilds). Both mechanisms live in ``xfer.data.packing``,
shared with the CIFAR and image-folder writers.

Cost. Rendering is ~2-3 ms per 256 px image per core (see ``render``); PNG encoding is about
as much again. Work is split across all cores in chunks; each worker writes its rows straight
into the memory-mapped packed cache, so no pixel crosses a process boundary.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from xfer.data.pdf.families import FAMILY_NAMES, PRESETS, family
from xfer.data.layout import PACKED_DIR, PACKED_IMAGES, PACKED_LABELS
from xfer.data.packing import created_by, ensure_packed, packed_section, write_atomically
from xfer.errors import UsageError, choice_error

GENERATOR_VERSION = 1  # bump when images for the same (preset, seed) change
MIN_IMAGE_SIZE = 32
_CHUNK = 64  # images per worker task: ~0.3 s of work, small enough to balance two cores


@dataclass(frozen=True)
class PdfDatasetSpec:
    n: int
    preset: str = "seed"
    seed: int = 0
    image_size: int = 256  # px, square
    observations: int = 100  # sampled x values per image: the points the density is drawn at

    def validate(self) -> "PdfDatasetSpec":
        if self.preset not in PRESETS:
            raise choice_error("preset", self.preset, sorted(PRESETS))
        if not isinstance(self.n, int) or self.n < len(FAMILY_NAMES):
            raise UsageError(f"--n must be at least {len(FAMILY_NAMES)} (one image per family), got {self.n}")
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise UsageError(f"--image-size must be at least {MIN_IMAGE_SIZE} px, got {self.image_size}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.observations < 2:
            raise UsageError(f"observations must be >= 2, got {self.observations}")
        return self

    @property
    def key(self) -> str:
        """A folder name that identifies the dataset's content, for shared caches."""
        return (f"pdf-{self.preset}-seed{self.seed}-n{self.n}-{self.image_size}px"
                f"-obs{self.observations}-v{GENERATOR_VERSION}")

    def identity(self) -> dict:
        return {"kind": "pdf", **asdict(self), "generator_version": GENERATOR_VERSION}


def class_counts(n: int, num_classes: int = len(FAMILY_NAMES)) -> list[int]:
    """Balanced counts: the first n % k classes get one more. Monotone in n for every class."""
    return [n // num_classes + (c < n % num_classes) for c in range(num_classes)]


def image_key(position: int) -> tuple[int, int]:
    """(family index, index within family) of the image at ``position``: round-robin over the
    families, so the first n positions are balanced and a prefix of any larger dataset."""
    return position % len(FAMILY_NAMES), position // len(FAMILY_NAMES)


def plan(n: int) -> list[tuple[int, int]]:
    return [image_key(position) for position in range(n)]


def image_name(family_index: int, index: int) -> str:
    return f"{FAMILY_NAMES[family_index]}_{index:05d}"


def sample_image(spec: PdfDatasetSpec, family_index: int, index: int):
    """The parameters, sorted observations and densities of one image; pure function of its key."""
    name = FAMILY_NAMES[family_index]
    rng = np.random.default_rng([GENERATOR_VERSION, spec.seed, family_index, index])
    values = PRESETS[spec.preset](name, rng)
    fam = family(name)
    x = np.sort(fam.sample(rng, spec.observations, *values))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        y = fam.pdf(x, *values)
    finite = np.isfinite(y)  # an observation exactly at a singularity (beta, gamma < 1)
    return values, x[finite], y[finite]


def metadata_entry(family_index: int, values, x: np.ndarray) -> dict:
    fam = family(FAMILY_NAMES[family_index])
    return {
        "label": fam.name,
        "parameters": dict(fam.params),
        "values_parameters": [float(v) for v in values],
        "support": fam.support,
        "values_support": [float(f"{v:.7g}") for v in x],  # 7 significant digits: float32
    }


def _render_chunk(spec: PdfDatasetSpec, root: str, positions: range) -> dict[str, dict]:
    """Worker: render, save PNGs, fill the packed rows; returns the chunk's metadata."""
    from PIL import Image

    from xfer.data.pdf.render import render_plot

    root_path = Path(root)
    packed = np.load(root_path / PACKED_DIR / PACKED_IMAGES, mmap_mode="r+")
    entries = {}
    for position in positions:
        family_index, index = image_key(position)
        values, x, y = sample_image(spec, family_index, index)
        pixels = render_plot(x, y, spec.image_size)
        name = image_name(family_index, index)
        # compress_level 1: PNG encoding at level 6 costs more than drawing; files ~15% larger
        Image.fromarray(pixels).save(root_path / "images" / f"{name}.png", compress_level=1)
        packed[position] = pixels
        entries[name] = metadata_entry(family_index, values, x)
    packed.flush()
    return entries


def _build(spec: PdfDatasetSpec, root: Path, workers: int,
           progress: Callable[[str], None] | None) -> None:
    (root / "images").mkdir(parents=True)
    (root / PACKED_DIR).mkdir()
    np.lib.format.open_memmap(root / PACKED_DIR / PACKED_IMAGES, mode="w+", dtype=np.uint8,
                              shape=(spec.n, spec.image_size, spec.image_size, 3)).flush()
    chunks = [range(start, min(start + _CHUNK, spec.n)) for start in range(0, spec.n, _CHUNK)]
    started = time.perf_counter()
    metadata: dict[str, dict] = {}
    if workers <= 1 or len(chunks) == 1:
        results = (_render_chunk(spec, str(root), chunk) for chunk in chunks)
    else:
        # spawn, not fork: builds also run inside Ray workers, whose threads make fork unsafe.
        pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=get_context("spawn"))
        results = pool.map(_render_chunk, [spec] * len(chunks), [str(root)] * len(chunks), chunks)
    try:
        for done, entries in enumerate(results, start=1):
            metadata.update(entries)
            if progress and (done % 25 == 0 or done == len(chunks)):
                progress(f"rendered {min(done * _CHUNK, spec.n)}/{spec.n} images")
    finally:
        if workers > 1 and len(chunks) > 1:
            pool.shutdown(cancel_futures=True)
    elapsed = time.perf_counter() - started

    # metadata in plan order, whatever order the chunks finished in
    ordered = {image_name(f, i): metadata[image_name(f, i)] for f, i in plan(spec.n)}
    (root / "metadata.json").write_text(json.dumps(ordered))
    labels = np.array([f for f, _ in plan(spec.n)], dtype=np.int64)
    np.save(root / PACKED_DIR / PACKED_LABELS, labels)

    from xfer.data.pdf.audit import audit_dataset  # after metadata.json: the audit reads it

    audit_dataset(root, write=True, require_complete=False)

    from xfer.data.splits import SPLIT_FRACTIONS

    counts = class_counts(spec.n)
    dataset = {
        **spec.identity(),
        "families": list(FAMILY_NAMES),
        "class_counts": dict(zip(FAMILY_NAMES, counts)),
        "splits": {"fractions": list(SPLIT_FRACTIONS), "seed": spec.seed, "stratified": True},
        "packed": packed_section(root),
        "render_seconds": round(elapsed, 3),
        "render_workers": workers,
        "created_by": created_by(),
    }
    # Written last: its presence is what marks the folder as a complete dataset.
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))


def write_dataset(spec: PdfDatasetSpec, out: str | Path, workers: int | None = None,
                  progress: Callable[[str], None] | None = None) -> tuple[Path, bool]:
    """Write the dataset to ``out``; returns (path, reused). Reuses an identical complete
    dataset already there; refuses to touch any other non-empty folder."""
    spec.validate()
    return write_atomically(
        out, lambda root: _build(spec, root, workers or os.cpu_count() or 1, progress),
        identity=spec.identity())


def ensure_dataset(cache_root: str | Path, spec: PdfDatasetSpec, workers: int | None = None,
                   progress: Callable[[str], None] | None = None) -> Path:
    """The dataset for ``spec`` under ``cache_root``, built at most once per machine.

    Concurrent callers (trials on one node) serialise on a file lock: the first builds, the
    rest wait and reuse. Leftovers of a killed build are deleted under the lock, never read.
    """
    spec.validate()
    return ensure_packed(cache_root, spec.key,
                         lambda target: write_dataset(spec, target, workers=workers, progress=progress))
