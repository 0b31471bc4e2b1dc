"""Write the PDF-plot dataset: deterministic, balanced, nested across sizes, parallel, atomic.

Determinism and nesting. Image k of family c is a pure function of (generator version, seed,
c, k): its own random generator draws its parameters (``varied``) and its observations. The
images are ordered round-robin over the families (k = 0 for all eight families, then k = 1,
...), so the first n images are balanced (counts differ by at most one) and the dataset of size
n is exactly the first n images of any larger one with the same seed. The size axis of a sweep
therefore compares like with like, and ``load_packed(dir, n=...)`` can cut any smaller size out
of one large build.

Held-out test set. With ``test_size`` > 0 the folder holds, after the n pool images, a test
set of ``test_size`` images drawn the same way from another seed (``test_seed``; default
``seed + TEST_SEED_OFFSET``). Images are a pure function of (version, seed, family, k), so the
test images are the pool images of that other seed: different draws, disjoint from every
training size, and the same test set whatever n a trial takes. Rows ``[n, n + test_size)``
of the packed cache hold them (``heldout_test`` in dataset.json), named ``test_<family>_k``.
``test_size`` 0 writes the studies' layout, split 80:10:10 within n (``split`` "80:10:10").

Bounds. An image's name carries its index within its family in five digits, as the study
named them (``beta_00000``), so one seed's stream holds at most ``MAX_PER_FAMILY`` = 100,000
images per family: ``MAX_IMAGES`` = 800,000 pool images, and as many test images. That is far
beyond what a trial can hold anyway (800,000 images at 256 px are 157 GB; every trial holds the
whole test set), so the bound never limits a real study and keeps names fixed-width and sorted.
Pool seeds are below ``TEST_SEED_OFFSET`` (2^31), so a default test seed is never any
dataset's pool seed.

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

from xfer.data.pdf.families import DEFAULT_GAMMA_BETA, FAMILY_NAMES, PRESETS, check_gamma_beta, family
from xfer.data.layout import PACKED_DIR, PACKED_IMAGES, PACKED_LABELS
from xfer.data.packing import created_by, ensure_packed, packed_section, write_atomically
from xfer.data.splits import HELDOUT, SPLIT_FRACTIONS, STUDY_SPLIT
from xfer.errors import UsageError, choice_error

GENERATOR_VERSION = 2  # bump when images for the same (preset, seed) change (2: the study's gamma)
MIN_IMAGE_SIZE = 32
_CHUNK = 64  # images per worker task: ~0.3 s of work, small enough to balance two cores
MAX_PER_FAMILY = 100_000  # image names carry the index within a family in five digits
MAX_IMAGES = MAX_PER_FAMILY * len(FAMILY_NAMES)  # per seed: the pool, and the test set
TEST_SEED_OFFSET = 2 ** 31  # pool seeds lie below it; default test seed = seed + offset
DEFAULT_TEST_SIZE = 1000  # `xfer data pdf` and the sweeps' PdfData: Wilson 95% CI ~ +-3 points
TEST_PREFIX = "test_"  # held-out images' names: test_beta_00000, ...


@dataclass(frozen=True)
class PdfDatasetSpec:
    n: int
    preset: str = "seed"
    seed: int = 0
    image_size: int = 256  # px, square
    observations: int = 100  # sampled x values per image: the points the density is drawn at
    test_size: int = 0  # held-out test images after the pool; 0: the studies' 80:10:10 of n
    test_seed: int | None = None  # None: seed + TEST_SEED_OFFSET (see the module docstring)
    gamma_beta: str = DEFAULT_GAMMA_BETA  # how gamma's beta is read: rate | scale (families.py)
    tick_labels: bool = True  # False: frame and curve only, no tick marks or labels (render.py)

    def validate(self) -> "PdfDatasetSpec":
        if self.preset not in PRESETS:
            raise choice_error("preset", self.preset, sorted(PRESETS))
        if not isinstance(self.n, int) or self.n < len(FAMILY_NAMES):
            raise UsageError(f"--n must be at least {len(FAMILY_NAMES)} (one image per family), got {self.n}")
        if self.n > MAX_IMAGES:
            raise UsageError(f"--n must be at most {MAX_IMAGES} ({MAX_PER_FAMILY} per family: the "
                             f"generator names images with five digits), got {self.n}")
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise UsageError(f"--image-size must be at least {MIN_IMAGE_SIZE} px, got {self.image_size}")
        if not 0 <= self.seed < TEST_SEED_OFFSET:
            raise UsageError(f"--seed must be >= 0 and < 2^31 ({TEST_SEED_OFFSET}), got {self.seed}")
        check_gamma_beta(self.gamma_beta)
        if not isinstance(self.tick_labels, bool):
            raise UsageError(f"tick_labels must be true or false, got {self.tick_labels!r}")
        if self.observations < 2:
            raise UsageError(f"observations must be >= 2, got {self.observations}")
        check_test_size(self.test_size, allow_none=True)
        if self.test_seed is not None:
            if not isinstance(self.test_seed, int) or self.test_seed < 0:
                raise UsageError(f"--test-seed must be an integer >= 0, got {self.test_seed}")
            if self.test_seed == self.seed:
                raise UsageError(f"--test-seed must differ from --seed ({self.seed}): the same seed "
                                 "draws the same images, so the test set would be the training images")
        return self

    @property
    def split(self) -> str:
        return HELDOUT if self.test_size else STUDY_SPLIT

    @property
    def resolved_test_seed(self) -> int:
        return self.seed + TEST_SEED_OFFSET if self.test_seed is None else self.test_seed

    @property
    def rows(self) -> int:
        """Rows of the packed cache: the pool, then the held-out test set."""
        return self.n + self.test_size

    @property
    def key(self) -> str:
        """A folder name that identifies the dataset's content, for shared caches."""
        held_out = f"-test{self.test_size}-tseed{self.resolved_test_seed}" if self.test_size else ""
        rendering = ("" if self.gamma_beta == DEFAULT_GAMMA_BETA else f"-gamma{self.gamma_beta}") + \
            ("" if self.tick_labels else "-noticks")
        return (f"pdf-{self.preset}-seed{self.seed}-n{self.n}-{self.image_size}px"
                f"-obs{self.observations}{rendering}{held_out}-v{GENERATOR_VERSION}")

    def identity(self) -> dict:
        base = {"kind": "pdf", **asdict(self), "generator_version": GENERATOR_VERSION}
        del base["test_size"], base["test_seed"]
        if not self.test_size:
            # The studies' layout, with the keys datasets written before held-out test sets
            # had, so those are still recognised as this dataset; "heldout_test": None tells it
            # apart from a held-out dataset of the same pool (compared with ``.get``).
            return {**base, "heldout_test": None}
        return {**base, "split": HELDOUT, "test_size": self.test_size,
                "test_seed": self.resolved_test_seed, "heldout_test": [self.n, self.rows]}


def check_test_size(test_size, allow_none: bool = False) -> int:
    """``test_size`` if the generator can draw it: a whole number from one image per family
    to ``MAX_IMAGES`` (0 too, meaning no held-out set, when ``allow_none``); else UsageError."""
    if allow_none and test_size == 0:
        return 0
    if not isinstance(test_size, int) or isinstance(test_size, bool) or test_size < len(FAMILY_NAMES):
        raise UsageError(f"--test-size must be an integer >= {len(FAMILY_NAMES)} (one test image "
                         f"per family), got {test_size!r}")
    if test_size > MAX_IMAGES:
        raise UsageError(f"--test-size must be at most {MAX_IMAGES} ({MAX_PER_FAMILY} per family: "
                         f"the generator names images with five digits), got {test_size}")
    return test_size


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


def row_key(spec: PdfDatasetSpec, row: int) -> tuple[int, int, int, str]:
    """(seed, family index, index within family, name) of packed row ``row``: pool rows first,
    then the held-out test rows, which are the pool of the test seed, round-robin likewise."""
    if row < spec.n:
        family_index, index = image_key(row)
        return spec.seed, family_index, index, image_name(family_index, index)
    family_index, index = image_key(row - spec.n)
    return spec.resolved_test_seed, family_index, index, TEST_PREFIX + image_name(family_index, index)


def image_parameters(preset: str, seed: int, n: int) -> tuple[list[str], list[list[float]]]:
    """The family and parameter values of the first ``n`` images of (preset, seed), as
    :func:`sample_image` draws them, without sampling or rendering: what the audit needs."""
    labels, values = [], []
    for position in range(n):
        family_index, index = image_key(position)
        name = FAMILY_NAMES[family_index]
        labels.append(name)
        values.append(list(PRESETS[preset](name, _image_rng(seed, family_index, index))))
    return labels, values


def _image_rng(seed: int, family_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([GENERATOR_VERSION, seed, family_index, index])


def sample_image(spec: PdfDatasetSpec, family_index: int, index: int, seed: int | None = None):
    """The parameters, sorted observations and densities of one image; pure function of its key
    (``seed``: the spec's own unless given, e.g. the test seed)."""
    name = FAMILY_NAMES[family_index]
    seed = spec.seed if seed is None else seed
    rng = _image_rng(seed, family_index, index)
    values = PRESETS[spec.preset](name, rng)
    fam = family(name, spec.gamma_beta)
    x = np.sort(fam.sample(rng, spec.observations, *values))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        y = fam.pdf(x, *values)
    finite = np.isfinite(y)  # an observation exactly at a singularity (beta, gamma < 1)
    return values, x[finite], y[finite]


def metadata_entry(family_index: int, values, x: np.ndarray,
                   gamma_beta: str = DEFAULT_GAMMA_BETA) -> dict:
    """One image's metadata, in the study's structure, plus ``gamma_beta``: how the dataset
    reads gamma's beta (on every image, so an entry copied out of the file still says it)."""
    fam = family(FAMILY_NAMES[family_index], gamma_beta)
    return {
        "label": fam.name,
        "parameters": dict(fam.params),
        "values_parameters": [float(v) for v in values],
        "support": fam.support,
        "values_support": [float(f"{v:.7g}") for v in x],  # 7 significant digits: float32
        "gamma_beta": gamma_beta,
    }


def _render_chunk(spec: PdfDatasetSpec, root: str, positions: range) -> dict[str, dict]:
    """Worker: render, save PNGs, fill the packed rows; returns the chunk's metadata."""
    from PIL import Image

    from xfer.data.pdf.render import render_plot

    root_path = Path(root)
    packed = np.load(root_path / PACKED_DIR / PACKED_IMAGES, mmap_mode="r+")
    entries = {}
    for position in positions:
        seed, family_index, index, name = row_key(spec, position)
        values, x, y = sample_image(spec, family_index, index, seed=seed)
        pixels = render_plot(x, y, spec.image_size, tick_labels=spec.tick_labels)
        # compress_level 1: PNG encoding at level 6 costs more than drawing; files ~15% larger
        Image.fromarray(pixels).save(root_path / "images" / f"{name}.png", compress_level=1)
        packed[position] = pixels
        entries[name] = metadata_entry(family_index, values, x, spec.gamma_beta)
    packed.flush()
    return entries


def _build(spec: PdfDatasetSpec, root: Path, workers: int,
           progress: Callable[[str], None] | None) -> None:
    (root / "images").mkdir(parents=True)
    (root / PACKED_DIR).mkdir()
    np.lib.format.open_memmap(root / PACKED_DIR / PACKED_IMAGES, mode="w+", dtype=np.uint8,
                              shape=(spec.rows, spec.image_size, spec.image_size, 3)).flush()
    chunks = [range(start, min(start + _CHUNK, spec.rows)) for start in range(0, spec.rows, _CHUNK)]
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
                progress(f"rendered {min(done * _CHUNK, spec.rows)}/{spec.rows} images")
    finally:
        if workers > 1 and len(chunks) > 1:
            pool.shutdown(cancel_futures=True)
    elapsed = time.perf_counter() - started

    # metadata in row order, whatever order the chunks finished in
    keys = [row_key(spec, row) for row in range(spec.rows)]
    ordered = {name: metadata[name] for _, _, _, name in keys}
    (root / "metadata.json").write_text(json.dumps(ordered))
    labels = np.array([f for _, f, _, _ in keys], dtype=np.int64)
    np.save(root / PACKED_DIR / PACKED_LABELS, labels)

    from xfer.data.pdf.audit import audit_dataset  # after metadata.json: the audit reads it

    audit_dataset(root, write=True, require_complete=False, gamma_beta=spec.gamma_beta,
                  tick_labels=spec.tick_labels, preset=spec.preset, seed=spec.seed,
                  image_size=spec.image_size, observations=spec.observations)

    counts = class_counts(spec.n)
    if spec.test_size:
        splits = {"train_val": "the 80:10:10 split's train, and its val and test as val (80:20), "
                               "of the first n pool images",
                  "fractions": list(SPLIT_FRACTIONS), "seed": spec.seed, "stratified": True,
                  "test": "heldout_test rows, the same for every n"}
        held_out = {"test_class_counts": dict(zip(FAMILY_NAMES, class_counts(spec.test_size)))}
    else:
        splits = {"fractions": list(SPLIT_FRACTIONS), "seed": spec.seed, "stratified": True}
        held_out = {"split": STUDY_SPLIT}
    dataset = {
        **spec.identity(),
        **held_out,
        "families": list(FAMILY_NAMES),
        "class_counts": dict(zip(FAMILY_NAMES, counts)),
        "splits": splits,
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
