"""Upper bounds on the sizes a user asks for, derived from what this machine has.

An image side, an image count or a trial count has no natural ceiling, and one zero too many
otherwise costs minutes before the OS refuses a 120 GB allocation (or a MemoryError after the
plan was printed). Each check estimates the bytes the request cannot do without and compares
them with this machine's memory (a container's cgroup limit where lower) or the free disk where
the output goes, and names both in one line (a UsageError: exit 2, nothing started).

The estimates are lower bounds on purpose: a refused request would surely fail, while one that
passes may still fail on what the estimate leaves out (a network's activations, the page
cache). A bound that refused work this machine can do would be worse than none.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from xfer.errors import UsageError

FLOAT32_RGB = 3 * 4  # bytes per pixel of an image as a float32 tensor (what a model is fed)
UINT8_RGB = 3  # bytes per pixel of a packed image (xfer.data.packing: N x H x W x 3 uint8)
RGBA_CANVAS = 4  # bytes per pixel of a matplotlib Agg canvas (a PDF plot being rendered)
# A trial's worker process: Python with torch and Ray imported is ~0.5-0.7 GB resident
# (measured: 0.74 GB peak on CPython 3.12, torch 2.9), before any data or model.
TRIAL_PROCESS_BYTES = 500_000_000
# What one trial costs the driver: Ray Tune's Trial object, its results and the searcher's
# record, the MLflow logger's state. An estimate (~1 MB), generous to the user: at 24 GB it
# still allows ~24000 trials, far more than one machine can train.
TRIAL_DRIVER_BYTES = 1_000_000


def memory_bytes() -> int:
    """This machine's memory, or the container's limit where that is lower (cgroup v2 / v1)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max": no limit; v1's "no limit" is a huge number, min() ignores it
            return min(physical, int(text))
    return physical


def free_disk_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem that ``path`` will be written to (its nearest existing
    ancestor: the path itself usually does not exist yet)."""
    path = Path(path).expanduser().absolute()
    for candidate in [path, *path.parents]:
        if candidate.is_dir():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def human_bytes(count: float) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.3g} {unit}" if count < 1000 * size else f"{count / size:,.0f} {unit}"
    return f"{count / 1e3:.3g} kB"


def check_memory(needed: float, flag: str, what: str) -> None:
    """UsageError when ``needed`` bytes exceed this machine's memory; ``what`` says what for,
    e.g. "--image-size 100000 needs ~120 GB for one batch of 1 image as float32 ..."."""
    have = memory_bytes()
    if needed > have:
        raise UsageError(f"{flag} needs at least {human_bytes(needed)} of memory for {what}; "
                         f"this machine has {human_bytes(have)}")


def check_disk(needed: float, path: str | Path, flag: str, what: str) -> None:
    """UsageError when ``needed`` bytes exceed the free disk where ``path`` will be written."""
    free = free_disk_bytes(path)
    if needed > free:
        raise UsageError(f"{flag} needs at least {human_bytes(needed)} of disk for {what}; "
                         f"{path} has {human_bytes(free)} free")


def check_image_batch(image_size: int, images: int, flag: str = "--image-size",
                      batch_flag: str = "") -> None:
    """One batch of ``images`` images of ``image_size`` px as the float32 tensor a model is fed:
    the least a trial needs, on the CPU or the GPU. ``batch_flag`` names where the batch size
    comes from, e.g. "--eval-batch-size"."""
    source = f" ({batch_flag})" if batch_flag else ""
    check_memory(images * image_size * image_size * FLOAT32_RGB, f"{flag} {image_size}",
                 f"one batch of {images} image(s){source} as float32 ({images} x 3 x {image_size} "
                 f"x {image_size} x 4 bytes)")


def check_packed_images(count: int, image_size: int, out: str | Path, flag: str,
                        in_memory: bool = False) -> None:
    """A packed dataset of ``count`` images (N x H x W x 3 uint8) on the disk at ``out`` and,
    when the packer holds the array in memory (``in_memory``), in memory too."""
    needed = count * image_size * image_size * UINT8_RGB
    what = (f"{count} packed images of {image_size} x {image_size} px ({count} x {image_size} x "
            f"{image_size} x 3 bytes)")
    if in_memory:
        check_memory(needed, flag, what)
    check_disk(needed, out, flag, what)


def check_trial_count(trials: int, flag: str) -> None:
    """A sweep's trials, each held by the driver (Ray Tune's Trial, its results, the searcher)."""
    check_memory(trials * TRIAL_DRIVER_BYTES, flag,
                 f"{trials} trials (~{human_bytes(TRIAL_DRIVER_BYTES)} each in the driver: Ray "
                 f"Tune's trial record, its results and the searcher's)")


def check_concurrent_trials(trials: int, flag: str = "--max-concurrent") -> None:
    """Trials running at once on this machine, each a worker process with torch loaded."""
    check_memory(trials * TRIAL_PROCESS_BYTES, f"{flag} {trials}",
                 f"{trials} trial processes at once (~{human_bytes(TRIAL_PROCESS_BYTES)} each: "
                 f"Python, torch and Ray, before any data)")
