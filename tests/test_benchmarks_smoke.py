"""The benchmark scripts run (with --smoke), so they cannot rot unnoticed."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import warm_runner

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_step_speed_smoke():
    done = warm_runner().run([sys.executable, str(ROOT / "benchmarks" / "step_speed.py"), "--smoke",
                              "--device", "cpu"], timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(resnet18|small_cnn) .* (\d+\.\d{3})$", done.stdout, flags=re.M)
    assert [model for model, _ in rows] == ["resnet18", "small_cnn"], done.stdout
    assert all(float(ratio) > 0 for _, ratio in rows)


@pytest.mark.slow
def test_load_sweep_smoke():
    """The load benchmark at 4 trials (the benchmark itself runs 200): the real stack
    (Ray Tune, the MLflow logger, SQLite), every trial's child run checked by the benchmark
    itself. Not timed."""
    done = warm_runner().run([sys.executable, str(ROOT / "benchmarks" / "load_sweep.py"), "--trials", "4"],
                             timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MLflow check: 1 parent run, 4 child runs, one per seed, FINISHED" in done.stdout
    assert re.search(r"^finished 4, failed 0;", done.stdout, flags=re.M), done.stdout
    rate = re.search(r"MLflow write rate: ([\d.]+) write calls/s, ([\d.]+) records/s", done.stdout)
    throughput = re.search(r"throughput: ([\d.]+) trials/min", done.stdout)
    assert rate and throughput, done.stdout
    assert min(float(rate.group(1)), float(rate.group(2)), float(throughput.group(1))) > 0


# --- issue 9's GPU benchmarks, in their CPU modes -----------------------------------------------

# The GPU machine has torch, torchvision and numpy only. This hides the packages xfer would
# otherwise find there, so a benchmark run under it takes the GPU machine's import path.
HIDE_PACKAGES = '''
import sys
from importlib.machinery import PathFinder

HIDDEN = {"ptflops", "scipy", "matplotlib", "filelock", "ray", "mlflow", "optuna", "pandas", "sklearn"}


class WithoutThem(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [WithoutThem if finder is PathFinder else finder for finder in sys.meta_path]
'''


def _gpu_machine_env(tmp_path: Path) -> dict:
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_PACKAGES)
    return dict(os.environ, PYTHONPATH=str(tmp_path / "hide"))


def _bench(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Cold: the GPU machine's environment hides packages as the interpreter starts."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_packing_smoke_measures_every_k_and_recommends_one(tmp_path):
    out = tmp_path / "packing.json"
    done = _bench("packing.py", "--smoke", "--json-out", str(out), "--workdir", str(tmp_path / "work"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^\| 1 \| 16 \| [\d.]+ \|", done.stdout, flags=re.M), done.stdout
    assert re.search(r"^\| 2 \| 16 \| ([\d.]+|—) \|", done.stdout, flags=re.M), done.stdout
    assert re.search(r"^recommended k \(batch 16, small_cnn 32 px, cpu\): [12] ", done.stdout, flags=re.M)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "packing" and result["stubbed_modules"] == []
    assert [(r["k"], r["batch_size"], r["failed"]) for r in result["rows"]] == [(1, 16, 0), (2, 16, 0)]
    for row in result["rows"]:
        assert row["images"] == row["k"] * 3 * 32  # 3 epochs of n 48's 32 training images each
        assert min(row["per_trial_images_per_s"], row["end_to_end_images_per_s"], row["wall_s"]) > 0
        assert row["threads_per_trial"] == max(1, len(os.sched_getaffinity(0)) // row["k"])  # cores split
        assert len(row["runs"]) == row["k"]
        assert all(set(run["epoch_end_s"]) == {"1", "2", "3"} for run in row["runs"])
    # one process always has a steady window: from its first epoch's end to its last's
    assert result["rows"][0]["steady_images_per_s"] > 0 and result["rows"][0]["steady_window_s"] > 0
    assert result["recommended_k"]["16"] in (1, 2)


@pytest.mark.slow
def test_seed_grid_smoke_runs_on_a_machine_without_ptflops_or_scipy(tmp_path):
    """The GPU machine's environment: xfer's `train` CLI needs scipy (for its parser) and
    ptflops (xfer.cost); the benchmark stubs both, says so, and trains for real."""
    out = tmp_path / "seed_grid.json"
    done = _bench("seed_grid.py", "--smoke", "--k", "2", "--json-out", str(out),
                  "--workdir", str(tmp_path / "work"), env=_gpu_machine_env(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stubbed in the trials: ptflops, scipy" in done.stdout
    for run in ("bs16-scratch-n48-ep2", "bs16-pretrained-n48-ep2"):
        assert re.search(rf"^\| {run} \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", done.stdout,
                         flags=re.M), done.stdout
    assert re.search(r"^predicted grid wall: [\d.]+ min for 4 configurations at k 2", done.stdout, flags=re.M)
    result = json.loads(out.read_text())
    assert (result["configs"], result["runs"], result["failed"]) == (4, 2, 0)
    assert result["images"] == 2 * 2 * 32  # 2 runs x 2 epochs x n 48's 32 training images
    assert result["grid_images"] == (1 + 3) * 2 * 32
    assert min(result["measured_wall_s"], result["images_per_s"], result["predicted_grid_wall_s"],
               result["predicted_lower_bound_s"]) > 0
    assert result["predicted_grid_wall_s"] >= result["predicted_lower_bound_s"]
    # folded into 2 runs of 3 epochs: less than the 4 runs of 1 and 3 epochs
    assert re.search(r"^predicted grid wall with epoch milestones \(2 runs of 3 epochs\): [\d.]+ min at k 2",
                     done.stdout, flags=re.M), done.stdout
    assert 0 < result["predicted_milestones_wall_s"] < result["predicted_grid_wall_s"]
    for trial in result["trials"].values():
        assert trial["returncode"] == 0 and trial["result"]["images_processed"] == 64
        assert trial["result"]["macs_per_image"] == 0  # the stub ptflops counts nothing


@pytest.mark.slow
def test_seed_grid_full_with_milestones_runs_one_trial_per_epochs_group(tmp_path):
    out = tmp_path / "seed_grid.json"
    done = _bench("seed_grid.py", "--smoke", "--full", "--milestones", "--k", "2", "--json-out", str(out),
                  "--workdir", str(tmp_path / "work"), env=_gpu_machine_env(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^grid wall \(measured\): [\d.]+ min for 4 configurations at k 2 as 2 runs with "
                     r"epoch milestones", done.stdout, flags=re.M), done.stdout
    result = json.loads(out.read_text())
    assert (result["configs"], result["runs"], result["failed"]) == (4, 2, 0)
    for trial in result["trials"].values():  # 3 epochs, and the 1-epoch result inside them
        assert trial["result"]["epochs_run"] == 3 and list(trial["result"]["milestones"]) == ["1"]
        assert trial["result"]["milestones"]["1"]["epochs_run"] == 1


def test_seed_grid_is_the_sweeps_seed_preset(monkeypatch):
    """benchmarks/seed_grid.py copies the grid (importing the sweep needs Ray); they must agree."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import seed_grid

    spec = importlib.util.spec_from_file_location("pdf_grid", ROOT / "sweeps" / "pdf_grid.py")
    pdf_grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pdf_grid)
    preset = pdf_grid.STUDY.presets["study"]
    assert preset.space == seed_grid.SEED_GRID
    assert {k: preset.fixed[k] for k in ("model", "lr", "optimizer")} == {
        k: seed_grid.SEED_FIXED[k] for k in ("model", "lr", "optimizer")}
    assert preset.data.image_size == seed_grid.SEED_FIXED["image_size"]
    assert len(seed_grid.configs(seed_grid.SEED_GRID)) == 54


def test_seed_grid_extrapolation_and_packing_window_by_hand(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import packing
    import seed_grid

    # 3 jobs of 4, 3, 3 s on 2 slots, longest first: 4 | 3 + 3 -> 6 s
    assert seed_grid.makespan([3.0, 4.0, 3.0], 2) == 6.0
    run = {"proc_wall_s": 10.0, "result": {"history": [{"epoch_time_s": 3.0}, {"epoch_time_s": 1.0},
                                                       {"epoch_time_s": 1.0}]}}
    # fixed 10 - 5 = 5 s, epoch 1 3 s, 9 more epochs at 1 s
    assert seed_grid.predict({"epochs": 10}, run) == pytest.approx(5 + 3 + 9)
    assert seed_grid.n_train(100) == 84 and seed_grid.n_train(10000) == 8000

    def finished(epoch_ends: list[float], per_epoch: int):
        f = packing.Finished("t", 0, 0.0, epoch_ends[-1] + 1,
                             {i + 1: t for i, t in enumerate(epoch_ends)})
        f.result = {"history": [{"epoch": i + 1, "epoch_time_s": 1.0, "images_processed": per_epoch * (i + 1)}
                                for i in range(len(epoch_ends))]}
        return f

    # two trials at 100 images/s each, overlapping from t=3 (second's first epoch) to t=5
    a, b = finished([1.0, 2.0, 3.0, 4.0, 5.0], 100), finished([3.0, 4.0, 5.0, 6.0], 100)
    rate, window = packing.steady_images_per_s([a, b])
    assert (rate, window) == (pytest.approx(200.0), pytest.approx(2.0))
    # no overlap: no window, not a made-up rate
    rate, window = packing.steady_images_per_s([finished([1.0, 2.0], 10), finished([5.0, 6.0], 10)])
    assert math.isnan(rate) and window == 0.0


@pytest.mark.slow
def test_step_speed_refuses_cuda_graphs_on_cpu_in_one_line(tmp_path):
    """Also checks that step_speed imports where ptflops and scipy are missing (the GPU machine)."""
    done = _bench("step_speed.py", "--device", "cpu", "--graphs", "off,capture", env=_gpu_machine_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "CUDA graphs need a CUDA device" in done.stderr


@pytest.mark.slow
def test_audit_speed_smoke():
    """The audit benchmark (RESULTS.md's audit_speed) runs end to end at 32 px, 8 per class."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "audit_speed.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "whole audit, empirical check at 8 per class" in done.stdout, done.stdout
    assert "0 disagreements" in done.stdout
