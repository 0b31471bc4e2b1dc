"""The dataset audit's time: analytic categories + ceilings, and the empirical check, on one core.

Builds a `seed`-preset dataset (default 256 px), then times ``audit_dataset`` on it as
``xfer data audit`` runs it: the analytic part alone (``empirical_per_class=0``) and the whole
audit at the empirical check's default size (160 images per family: 1,280 renders and 28
logistic regressions). Each is the best and the median of ``--repeats`` runs; the empirical
check's own seconds are split into rendering + features and fitting. A last row times the
analytic audit of a ``varied`` dataset's parameters (O(U^2 G), U = n distinct distributions),
which needs no images.

    python benchmarks/audit_speed.py [--image-size 256] [--per-class 160] [--repeats 3]
                                     [--gamma-beta rate] [--no-tick-labels] [--varied-n 10000]
                                     [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from xfer.data.pdf.audit import audit_dataset, audit_entries  # noqa: E402
from xfer.data.pdf.families import FAMILY_NAMES  # noqa: E402
from xfer.data.pdf.generate import PdfDatasetSpec, image_parameters, write_dataset  # noqa: E402
from xfer.data.pdf.separability import DEFAULT_PER_CLASS, pair_accuracies, render_features  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds)


def varied_parameters(n: int) -> tuple[list[str], list[list[float]]]:
    return image_parameters("varied", 0, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256, help="px (default 256)")
    parser.add_argument("--n", type=int, default=1000, help="dataset images (default 1000; the "
                        "seed preset has 8 distinct distributions whatever n is)")
    parser.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS,
                        help=f"empirical check's images per family (default {DEFAULT_PER_CLASS})")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument("--gamma-beta", default="rate", help="rate | scale (default rate)")
    parser.add_argument("--no-tick-labels", action="store_true", help="draw without tick labels")
    parser.add_argument("--varied-n", type=int, default=10000,
                        help="varied-preset images for the analytic-only row; 0 skips it (default 10000)")
    parser.add_argument("--smoke", action="store_true", help="32 px, 8 per class, 1 repeat: checks it runs")
    args = parser.parse_args()
    if args.smoke:
        args.image_size, args.n, args.per_class, args.repeats, args.varied_n = 32, 16, 8, 1, 200
    spec = PdfDatasetSpec(n=args.n, preset="seed", image_size=args.image_size, gamma_beta=args.gamma_beta,
                          tick_labels=not args.no_tick_labels)
    with tempfile.TemporaryDirectory() as tmp:
        root, _ = write_dataset(spec, Path(tmp) / "seed")
        audit_dataset(root, write=False, empirical_per_class=4)  # imports (sklearn, PIL fonts) warm
        analytic = timed(lambda: audit_dataset(root, write=False, empirical_per_class=0), args.repeats)
        results = []
        whole = timed(lambda: results.append(audit_dataset(root, write=False,
                                                           empirical_per_class=args.per_class)),
                      args.repeats)
    started = time.perf_counter()
    features = render_features(spec, args.per_class)
    rendering = time.perf_counter() - started
    started = time.perf_counter()
    pair_accuracies(features, list(FAMILY_NAMES))
    fitting = time.perf_counter() - started

    audit = results[-1]
    print(f"seed preset, {spec.image_size} px, gamma beta {spec.gamma_beta}, tick labels "
          f"{'on' if spec.tick_labels else 'off'}, {os.cpu_count()} cores (the audit uses one); "
          f"best / median of {args.repeats}")
    print(f"analytic audit (categories, both ceilings)        {analytic[0]:7.3f} / {analytic[1]:7.3f} s")
    print(f"whole audit, empirical check at {args.per_class} per class     "
          f"{whole[0]:7.3f} / {whole[1]:7.3f} s")
    print(f"  of which: render + features {rendering:.3f} s ({8 * args.per_class} images), "
          f"28 fits {fitting:.3f} s")
    print(f"  ceiling {audit['bayes_accuracy_ceiling']} (with / without tick labels: "
          f"{audit['ceilings']['with_tick_labels']} / {audit['ceilings']['without_tick_labels']}), "
          f"{len(audit['empirical']['disagreements'])} disagreements")
    if args.varied_n:
        labels, values = varied_parameters(args.varied_n)
        for size in (32, 64, 256):
            holder = []
            best, _ = timed(lambda: holder.append(audit_entries(labels, values, 100, size)), 1)
            c = holder[-1]["ceilings"]
            print(f"varied preset, {args.varied_n} images, {size:3d} px: analytic audit {best:6.2f} s; "
                  f"ceiling with tick labels {c['with_tick_labels']:.4f}, "
                  f"without {c['without_tick_labels']:.4f}")


if __name__ == "__main__":
    main()
