"""How fast a trial gets a PDF-plot dataset into memory: ``load_packed`` of N images.

Builds the dataset once in a cache folder (``--cache``, kept between runs; 10,000 images at
256 px are 1.97 GB packed), then times ``load_packed(dir, n)`` cold-ish (first read after
the build; the page cache may already hold it) and warm (best of 3).

    python benchmarks/load_speed.py [--n 10000] [--image-size 256] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xfer.data.pdf.generate import PdfDatasetSpec, ensure_dataset  # noqa: E402
from xfer.data.tensors import load_packed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xfer" / "datasets")
    args = parser.parse_args()
    spec = PdfDatasetSpec(n=args.n, preset="seed", image_size=args.image_size)
    started = time.perf_counter()
    root = ensure_dataset(args.cache, spec)
    built = time.perf_counter() - started
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        data = load_packed(root, n=args.n)
        times.append(time.perf_counter() - t0)
        del data
    size_gb = args.n * args.image_size ** 2 * 3 / 1e9
    print(f"{args.n} images at {args.image_size} px ({size_gb:.2f} GB uint8): build/reuse {built:.1f} s")
    print(f"load_packed: first {times[0]:.3f} s, warm best {min(times[1:]):.3f} s "
          f"({size_gb / min(times[1:]):.1f} GB/s)")


if __name__ == "__main__":
    main()
