"""The seed study's grid through `xfer train` processes: wall time, images/s, GPU utilisation.

Issue 9's goal is the 54 configurations of ``sweeps/pdf_grid.py --preset study`` (ResNet-50 at
256 px, SGD lr 0.01; epochs {10, 20, 50} x batch {4, 8, 16} x init {scratch, pretrained} x
dataset size {100, 1000, 10000}) on one H100 in <= 30 min. This runs the grid's trials as
``python -m xfer.cli train`` processes, ``--k`` at once (no Ray, no MLflow), longest first.

The whole grid trains 4.26 M images (80 epochs x 3 batch sizes x 2 inits x 8,876 training
images: n 100, 1000, 10000 train on 84, 792, 8000), about 1.4e17 FLOPs (5.3 GMACs per image
forward at 256 px, x3 for a training step, x2 FLOPs per MAC): 2,370 training images/s, or
76 TFLOP/s sustained, for 30 minutes. By default the benchmark runs a fraction and
extrapolates; ``--full`` runs all 54 as they are.

Fraction (default): configurations that differ only in epochs share one run, so 18 runs
(batch x init x n), each of ``--epochs-run`` epochs (default 2; or one count per dataset size,
e.g. 2,2,1). For each configuration c with E_c epochs, from its run r's process wall time and
epoch times (epoch_time_s: training plus validation):

    fixed_r  = process wall - sum of r's epoch times   (interpreter, imports, CUDA context,
                                                          data load, model build, test pass)
    T_c      = fixed_r + epoch_1,r + (E_c - 1) x mean(epoch_2.., r)
               (a 1-epoch run uses epoch_1,r for every epoch: an over-estimate by cuDNN's
               autotuning, small when an epoch is thousands of steps, as at n 10000)
    wall     = the makespan of the 54 T_c on k slots, longest first (what this script's own
               scheduler does); sum(T_c) / k is its lower bound

With epoch milestones (``--epoch-milestones`` in a sweep), the 54 configurations are 18 runs
of the longest budget, each also reporting epochs 10 and 20, so the grid's wall is the makespan
of the 18 ``T_r`` at E = 50 (plus two test passes each, a forward pass over 10% of n: inside the
noise). Both predictions are printed; ``--full --milestones`` runs those 18 as they are.

The epoch times are measured under the same packing k the prediction assumes, except in the
tail of the measured run, where fewer than k runs are left and each goes faster: the prediction
is optimistic by that much. The first epoch is kept apart because it carries cuDNN's autotuning.

What `xfer train` leaves out of a sweep trial (so the real sweep costs somewhat more): the
per-epoch test pass and metrics of ``report_test_each_epoch`` (a forward pass over 10% of n,
~4% of a step's compute), the per-epoch checkpoint (model + optimizer state to the host and to
storage), and Ray/MLflow. The pretrained arm starts from random stand-in weights in xfer's
weights file format (the GPU machine is offline): the same loading path and the same compute.

    python benchmarks/seed_grid.py --k 4                 # CUDA: 18 runs x 2 epochs, extrapolated
    python benchmarks/seed_grid.py --k 4 --epochs-run 2,2,1   # n 10000 runs 1 epoch (GPU suite)
    python benchmarks/seed_grid.py --k 4 --full          # CUDA: the real 54 configurations
    python benchmarks/seed_grid.py --k 4 --full --milestones   # CUDA: 18 runs of 50 epochs = the 54
    python benchmarks/seed_grid.py --smoke               # CPU: resnet10, 32 px, 4 configs, 2 runs

Needs only torch, torchvision and numpy: see benchmarks/packing.py for the stubs used when
ptflops or scipy is missing.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # packing.py, when imported from elsewhere

from packing import (GpuSampler, Trial, cpu_cores, exit_with, fail, missing_modules,  # noqa: E402
                     resolve_device, run_trials, write_dataset, write_standin_weights)

# sweeps/pdf_grid.py's `study` preset (tests/test_benchmarks_smoke.py checks they agree); copied,
# not imported, because importing the sweep pulls in Ray, which the GPU machine lacks.
SEED_GRID = {"epochs": [10, 20, 50], "batch_size": [4, 8, 16], "init": ["scratch", "pretrained"],
             "dataset_size": [100, 1000, 10000]}
SEED_FIXED = {"model": "resnet50", "lr": 0.01, "optimizer": "sgd", "image_size": 256}
# CI-sized: 4 configurations (epochs 1 and 3 x init), 2 runs.
SMOKE_GRID = {"epochs": [1, 3], "batch_size": [16], "init": ["scratch", "pretrained"],
              "dataset_size": [48]}
SMOKE_FIXED = {"model": "resnet10", "lr": 0.01, "optimizer": "sgd", "image_size": 32}
TARGET_WALL_S = 30 * 60  # issue 9
TRAIN_FRACTION = 0.8  # xfer.data.splits: 80:10:10


def configs(grid: dict) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def n_train(n: int) -> int:
    """Training images of the first n (xfer.data.splits.stratified_split, 8 balanced classes)."""
    from xfer.data.splits import stratified_split  # numpy only

    return len(stratified_split(np.arange(n) % 8, 0)["train"])


def epochs_per_size(text: str, sizes: list[int]) -> dict[int, int]:
    """``--epochs-run``: one count for every size, or one per size in order."""
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        counts = []
    if len(counts) == 1:
        counts = counts * len(sizes)
    if len(counts) != len(sizes) or min(counts) < 1:
        fail(f"--epochs-run must be one count >= 1 or one per dataset size {sizes}, got {text!r}")
    return dict(zip(sizes, counts))


def run_key(config: dict) -> tuple:
    return config["batch_size"], config["init"], config["dataset_size"]


def run_name(config: dict, epochs: int) -> str:
    return f"bs{config['batch_size']}-{config['init']}-n{config['dataset_size']}-ep{epochs}"


def makespan(durations: list[float], k: int) -> float:
    """Longest-first list scheduling on k slots (each job starts on the first free slot)."""
    slots = [0.0] * k
    for duration in sorted(durations, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots)


def predict(config: dict, run: dict) -> float:
    """T_c of the module docstring: ``config``'s duration from ``run``'s measurement."""
    epochs = [h["epoch_time_s"] for h in run["result"]["history"]]
    fixed = run["proc_wall_s"] - sum(epochs)
    steady = float(np.mean(epochs[1:])) if len(epochs) > 1 else epochs[0]
    return fixed + epochs[0] + (config["epochs"] - 1) * steady


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--k", type=int, default=1, help="trials at once on the device (default: 1)")
    parser.add_argument("--epochs-run", default="2",
                        help="epochs each of the 18 runs trains, then extrapolated: one count, or "
                             "one per dataset size, comma-separated (default: 2)")
    parser.add_argument("--full", action="store_true",
                        help="run all 54 configurations with their own epochs: nothing extrapolated")
    parser.add_argument("--milestones", action="store_true",
                        help="with --full: 18 runs of the longest budget, each also reporting the "
                             "shorter ones (--epoch-milestones), instead of 54 runs")
    parser.add_argument("--sizes", default=None,
                        help="only these dataset sizes, comma-separated (e.g. 100,1000); the "
                             "prediction then covers only them")
    parser.add_argument("--smoke", action="store_true",
                        help=f"CPU: {SMOKE_FIXED['model']} at {SMOKE_FIXED['image_size']} px, "
                             "4 configurations in 2 runs: checks it runs")
    parser.add_argument("--json-out", default=None, help="write the measurements here as JSON")
    parser.add_argument("--workdir", default=None,
                        help="folder for the dataset, weights and trials' JSON (default: temporary)")
    args = parser.parse_args(argv)
    if args.k < 1:
        fail(f"--k must be >= 1, got {args.k}")
    if args.smoke and args.device == "auto":
        args.device = "cpu"
    device = resolve_device(args.device)
    grid, fixed = (SMOKE_GRID, SMOKE_FIXED) if args.smoke else (dict(SEED_GRID), SEED_FIXED)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
        if not set(sizes) <= set(grid["dataset_size"]):
            fail(f"--sizes must be among {grid['dataset_size']}, got {args.sizes}")
        grid = {**grid, "dataset_size": sizes}
    all_configs = configs(grid)
    epochs_run = epochs_per_size(args.epochs_run, grid["dataset_size"])
    longest, shorter = max(grid["epochs"]), sorted(grid["epochs"])[:-1]
    if args.milestones and not args.full:
        fail("--milestones runs the grid as it is: use it with --full (without --full both "
             "predictions are printed anyway)")
    if args.full and args.milestones:  # one run per (batch, init, n) of the longest budget
        runs = {}
        for c in all_configs:
            runs.setdefault(run_name(c, longest), {**c, "epochs": longest, "milestones": shorter})
    elif args.full:
        runs = {run_name(c, c["epochs"]): c for c in all_configs}
    else:  # one run per (batch, init, n), of epochs_run[n] epochs
        measured = {}
        for c in all_configs:
            measured.setdefault(run_key(c), {**c, "epochs": epochs_run[c["dataset_size"]]})
        runs = {run_name(c, c["epochs"]): c for c in measured.values()}
    stubs = missing_modules()
    grid_images = sum(c["epochs"] * n_train(c["dataset_size"]) for c in all_configs)
    run_images = sum(c["epochs"] * n_train(c["dataset_size"]) for c in runs.values())

    with tempfile.TemporaryDirectory(prefix="xfer-seed-grid-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data = write_dataset(workdir / f"data-{max(grid['dataset_size'])}-{fixed['image_size']}",
                             max(grid["dataset_size"]), fixed["image_size"])
        weights = write_standin_weights(workdir / f"standin-{fixed['model']}.pt", fixed["model"])
        print(f"seed_grid: {len(all_configs)} configurations ({fixed['model']}, {fixed['image_size']} px), "
              f"{'all run as they are' if args.full else f'{len(runs)} runs (epochs by size: {epochs_run})'}, "
              f"k {args.k}, device {device}, {cpu_cores()} CPU cores; {run_images:,} of the grid's "
              f"{grid_images:,} training images" + (f"; stubbed in the trials: {', '.join(stubs)}" if stubs else ""),
              flush=True)
        trials = []
        for name, c in runs.items():
            flags = ["--data", str(data), "--n", str(c["dataset_size"]), "--model", fixed["model"],
                     "--init", c["init"], "--epochs", str(c["epochs"]), "--batch-size", str(c["batch_size"]),
                     "--lr", str(fixed["lr"]), "--optimizer", fixed["optimizer"], "--device", device]
            if c["init"] == "pretrained":
                flags += ["--weights", str(weights)]
            if c.get("milestones"):
                flags += ["--epoch-milestones", ",".join(map(str, c["milestones"]))]
            trials.append(Trial(name, flags, cost=c["epochs"] * c["dataset_size"]))
        started = time.perf_counter()
        with GpuSampler(device == "cuda") as gpu:
            finished = run_trials(trials, args.k, workdir=workdir,
                                  threads=max(1, cpu_cores() // args.k), stubs=stubs, verbose=True)
        wall = time.perf_counter() - started

    by_name = {f.name: f.row() for f in finished}
    failed = [f for f in finished if f.returncode != 0]
    print()
    print("| run | process s | start-up s | epoch 1 s | later epochs s (mean) | train img/s |")
    print("|---|---|---|---|---|---|")
    for name in runs:
        row = by_name[name]
        if row["returncode"]:
            print(f"| {name} | {row['proc_wall_s']:.1f} | failed: {row['error'][:90]} | | | |")
            continue
        history = [h["epoch_time_s"] for h in row["result"]["history"]]
        later = f"{np.mean(history[1:]):.2f}" if len(history) > 1 else "—"
        print(f"| {name} | {row['proc_wall_s']:.1f} | {row['proc_wall_s'] - row['result']['wall_time_s']:.1f} "
              f"| {history[0]:.2f} | {later} | "
              f"{row['result']['images_processed'] / row['result']['train_time_s']:.1f} |")
    images = sum(f.result.get("images_processed", 0) for f in finished)
    gpu_summary = gpu.summary()
    summary = {"benchmark": "seed_grid", "device": device, "k": args.k, "full": args.full,
               "milestones": args.milestones,
               "epochs_run": None if args.full else {str(n): e for n, e in epochs_run.items()},
               "model": fixed["model"],
               "image_size": fixed["image_size"], "grid": grid, "configs": len(all_configs),
               "runs": len(runs), "failed": len(failed), "stubbed_modules": stubs,
               "measured_wall_s": wall, "images": images, "images_per_s": images / wall,
               "grid_images": grid_images, "gpu": gpu_summary, "target_wall_s": TARGET_WALL_S,
               "required_images_per_s": grid_images / TARGET_WALL_S, "trials": by_name}
    print()
    print(f"measured: {len(runs)} runs, {len(failed)} failed, {wall:.1f} s wall, {images:,} training "
          f"images, {images / wall:.1f} images/s end to end" +
          (f"; GPU utilisation mean {gpu_summary['util_mean_pct']:.0f}% ({gpu_summary['source']}, "
           f"{gpu_summary['samples']} samples), peak memory {gpu_summary['mem_peak_mib'] or float('nan'):.0f} MiB"
           if gpu_summary["samples"] else ""))
    if not failed:
        if args.full:
            predicted, bound = wall, sum(by_name[n]["proc_wall_s"] for n in runs) / args.k
        else:
            measured_run = {run_key(c): by_name[run_name(c, epochs_run[c["dataset_size"]])]
                            for c in all_configs}
            durations = [predict(c, measured_run[run_key(c)]) for c in all_configs]
            predicted, bound = makespan(durations, args.k), sum(durations) / args.k
            folded = [predict({"epochs": longest}, run) for run in measured_run.values()]
            summary.update(predicted_milestones_wall_s=makespan(folded, args.k),
                           predicted_milestones_lower_bound_s=sum(folded) / args.k)
        summary.update(predicted_grid_wall_s=predicted, predicted_lower_bound_s=bound,
                       predicted_images_per_s=grid_images / predicted)
        target = ("" if args.smoke else
                  f"; issue 9's {TARGET_WALL_S // 60}-min target needs {grid_images / TARGET_WALL_S:.1f} "
                  f"images/s: {'met' if predicted <= TARGET_WALL_S else 'not met'}")
        print(f"{'grid wall (measured)' if args.full else 'predicted grid wall'}: {predicted / 60:.1f} min "
              f"for {len(all_configs)} configurations at k {args.k}"
              + (f" as {len(runs)} runs with epoch milestones" if args.milestones else "")
              + f" (sum / k: {bound / 60:.1f} min), {grid_images / predicted:.1f} images/s"
              + ("" if args.milestones else target))
        if "predicted_milestones_wall_s" in summary:
            folded_wall = summary["predicted_milestones_wall_s"]
            print(f"predicted grid wall with epoch milestones ({len(measured_run)} runs of {longest} "
                  f"epochs): {folded_wall / 60:.1f} min at k {args.k} (sum / k: "
                  f"{summary['predicted_milestones_lower_bound_s'] / 60:.1f} min)"
                  + ("" if args.smoke else f"; {TARGET_WALL_S // 60}-min target "
                     f"{'met' if folded_wall <= TARGET_WALL_S else 'not met'}"))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json_out}")
    return 1 if failed else 0


if __name__ == "__main__":
    exit_with(main, "seed_grid: interrupted before every run finished; nothing to extrapolate from")
