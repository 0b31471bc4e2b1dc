"""Orchestration overhead of a sweep: how much of its wall time is not training.

Runs ``sweeps/pdf_grid.py --preset quick`` (or ``smoke``) end to end in a fresh MLflow store
and cache, then reads the trials' ``train_time_s`` back from MLflow:

    overhead (issue 4's definition) = (sweep wall - sum of train_time_s) / sweep wall
    overhead per slot              = 1 - sum of train_time_s / (sweep wall x parallel trials)

The first ignores that trials run in parallel (2 at once on 2 cores), so it understates the
overhead; the second is the share of the machine's trial slots not spent training. The
sweep's own phase clock (dataset, weights, ray start, trials, report) says where the rest went.

    python benchmarks/sweep_overhead.py [--preset quick|smoke] [--warm]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "smoke"])
    parser.add_argument("--warm", action="store_true",
                        help="run once to fill the dataset/weights cache, then time a second run")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        cmd = [sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--preset", args.preset,
               "--storage", str(tmp / "runs"), "--cache-dir", str(tmp / "cache")]
        if args.warm:
            subprocess.run(cmd + ["--experiment", "warmup"], cwd=tmp, env=env, check=True,
                           capture_output=True)
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("pdf_grid")
        children = [r for r in client.search_runs([experiment.experiment_id])
                    if r.data.tags.get("xfer.role") == "trial"]
        train = sum(r.data.metrics["train_time_s"] for r in children)
        trial_wall = sum(r.data.metrics["wall_time_s"] for r in children)
        slots = int(re.search(r"with (\d+) trials at once", done.stdout).group(1))
        phases = re.search(r"failed, in \d+ s \((.*)\)", done.stdout).group(1)
    print(f"preset {args.preset} ({'warm' if args.warm else 'cold'} cache), {len(children)} trials, "
          f"{slots} at once, {os.cpu_count()} cores")
    print(f"sweep wall {wall:.1f} s; trials' train_time_s sum {train:.1f} s, wall_time_s sum {trial_wall:.1f} s")
    print(f"phases: {phases}")
    print(f"overhead (issue 4's definition): {(wall - train) / wall:.1%}")
    print(f"overhead per slot: {1 - train / (wall * slots):.1%}")


if __name__ == "__main__":
    main()
