"""PDF-plot generation speed: xfer's generator vs the obvious matplotlib loop, same machine.

The naive loop is what a notebook does: for each image a new matplotlib figure, plot, savefig
PNG, close. Both sides draw the same sampled observations (``sample_image``), so the
comparison is rendering + encoding + bookkeeping only. xfer is timed twice: one process
(the renderer's own speed-up) and ``write_dataset`` on all cores (what users get, including
metadata, the packed cache, its checksum and the audit, and the worker start-up, which is
why the default size is a realistic 2,000 images). The naive loop's rate does not depend on
the dataset size, so it is measured on ``--naive-n`` images to keep the run short.

    python benchmarks/render_speed.py [--n 2000] [--naive-n 300] [--image-size 256] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from xfer.data.pdf.generate import PdfDatasetSpec, image_key, sample_image, write_dataset  # noqa: E402
from xfer.data.pdf.render import render_plot  # noqa: E402


def naive_loop(spec: PdfDatasetSpec, out: Path) -> float:
    samples = [sample_image(spec, *image_key(p)) for p in range(spec.n)]
    started = time.perf_counter()
    for position, (_, x, y) in enumerate(samples):
        fig = plt.figure(figsize=(spec.image_size / 100, spec.image_size / 100), dpi=100)
        ax = fig.add_subplot()
        ax.plot(x, y)
        ax.tick_params(labelsize=7 * spec.image_size / 256)
        fig.savefig(out / f"{position}.png")
        plt.close(fig)
    return time.perf_counter() - started


def xfer_one_process(spec: PdfDatasetSpec, out: Path) -> float:
    samples = [sample_image(spec, *image_key(p)) for p in range(spec.n)]
    render_plot(samples[0][1], samples[0][2], spec.image_size)  # font and locator caches
    started = time.perf_counter()
    for position, (_, x, y) in enumerate(samples):
        Image.fromarray(render_plot(x, y, spec.image_size)).save(out / f"{position}.png", compress_level=1)
    return time.perf_counter() - started


def xfer_generator(spec: PdfDatasetSpec, out: Path) -> float:
    started = time.perf_counter()
    write_dataset(spec, out / "dataset")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images xfer writes (default 2000)")
    parser.add_argument("--naive-n", type=int, default=300,
                        help="images the naive loop draws (default 300)")
    parser.add_argument("--image-size", type=int, default=256, help="px (default 256)")
    parser.add_argument("--smoke", action="store_true", help="16 images at 32 px: checks it runs")
    args = parser.parse_args()
    spec = PdfDatasetSpec(n=16 if args.smoke else args.n, preset="seed",
                          image_size=32 if args.smoke else args.image_size)
    naive_spec = PdfDatasetSpec(n=16 if args.smoke else min(args.naive_n, spec.n), preset="seed",
                                image_size=spec.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: Path(tmp) / name for name in ("naive", "one", "all")}
        for d in dirs.values():
            d.mkdir()
        naive = naive_loop(naive_spec, dirs["naive"])
        one = xfer_one_process(naive_spec, dirs["one"])
        full = xfer_generator(spec, dirs["all"])
    rate = {"naive": naive_spec.n / naive, "one": naive_spec.n / one, "all": spec.n / full}
    print(f"{spec.image_size} px on {os.cpu_count()} cores: naive and xfer 1-process on "
          f"{naive_spec.n} images, write_dataset on {spec.n}")
    print(f"naive matplotlib loop (1 process)       {rate['naive']:8.1f} images/s")
    print(f"xfer renderer (1 process)               {rate['one']:8.1f} images/s  "
          f"{rate['one'] / rate['naive']:5.1f}x")
    print(f"xfer write_dataset (all cores, + cache) {rate['all']:8.1f} images/s  "
          f"{rate['all'] / rate['naive']:5.1f}x")


if __name__ == "__main__":
    main()
