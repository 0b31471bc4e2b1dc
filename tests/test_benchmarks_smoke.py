"""The benchmark scripts run (with --smoke), so they cannot rot unnoticed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_step_speed_smoke():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_speed.py"), "--smoke",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(resnet18|small_cnn) .* (\d+\.\d{3})$", done.stdout, flags=re.M)
    assert [model for model, _ in rows] == ["resnet18", "small_cnn"], done.stdout
    assert all(float(ratio) > 0 for _, ratio in rows)


@pytest.mark.slow
def test_load_sweep_smoke():
    """The load benchmark at 12 trials: the real stack (Ray Tune, the MLflow logger, SQLite),
    every trial's child run checked by the benchmark itself. Not timed."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_sweep.py"), "--trials", "12"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MLflow check: 1 parent run, 12 child runs, one per seed, FINISHED" in done.stdout
    assert re.search(r"^finished 12, failed 0;", done.stdout, flags=re.M), done.stdout
    rate = re.search(r"MLflow write rate: ([\d.]+) write calls/s, ([\d.]+) records/s", done.stdout)
    throughput = re.search(r"throughput: ([\d.]+) trials/min", done.stdout)
    assert rate and throughput, done.stdout
    assert min(float(rate.group(1)), float(rate.group(2)), float(throughput.group(1))) > 0
