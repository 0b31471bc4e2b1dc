"""The data-scaling forecast and the transferability scores on the real path: a Ray sweep of four
dataset sizes with both inits (tests/scripts/forecast_smoke.py, the forecast preset's shape at
smoke scale) writing to a real MLflow store; its report, its parent run's metrics, its
transferability runs, and `xfer forecast` reading it back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_xfer, sweep_env, sweep_store, warm_runner
from xfer.names import (CATCH_UP_N, CATCH_UP_WITHIN, FORECAST_AT, FORECAST_HOLDOUT_ERROR, ROLE_TAG,
                        ROLE_TRANSFERABILITY, TRANSFER_KEY_TAG)

pytestmark = pytest.mark.slow
SCRIPT = REPO / "tests" / "scripts" / "forecast_smoke.py"
EXPERIMENT = "forecast_smoke"


@pytest.fixture(scope="module")
def forecast_sweep(tmp_path_factory, shared_cache):
    tmp = tmp_path_factory.mktemp("forecast")
    done = warm_runner().run([sys.executable, str(SCRIPT), "--storage", str(tmp / "runs"), "--cache-dir",
                              str(shared_cache), "--progress-interval", "0", "--max-concurrent", "1"],
                             timeout=900, cwd=tmp, env=sweep_env(tmp))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp, done


def _xfer(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return run_xfer(*args, cwd=tmp, env=sweep_env(tmp))


def test_every_backbone_is_scored_on_every_size_before_the_trials_as_its_own_child_run(forecast_sweep):
    tmp, done = forecast_sweep
    _, _, parent, children = sweep_store(tmp, EXPERIMENT)
    scores = [r for r in children if r.data.tags.get(ROLE_TAG) == ROLE_TRANSFERABILITY]
    scored = sorted((r.data.params["init"], int(r.data.params["dataset_size"])) for r in scores)
    assert scored == sorted((init, n) for init in ("scratch", "pretrained") for n in (32, 48, 64, 96))
    assert len({r.data.tags[TRANSFER_KEY_TAG] for r in scores}) == 8
    for run in scores:
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) >= {"logme", "knn_accuracy", "embed_macs", "embed_seconds"}
        assert 0 <= run.data.metrics["knn_accuracy"] <= 1 and run.data.metrics["embed_macs"] > 0
    first_trial = min(r.info.start_time for r in children if r.data.tags.get(ROLE_TAG) == "trial")
    assert max(r.info.end_time for r in scores) <= first_trial
    assert "transferability: 8 of 8 backbone scores" in done.stdout
    assert parent.data.params[FORECAST_AT] == "192"


def test_the_report_shows_the_forecast_figure_the_crossover_the_holdout_and_the_scores(forecast_sweep):
    tmp, done = forecast_sweep
    [report] = (tmp / "xfer_reports").glob("*/report.md")
    text = report.read_text()
    assert "## Data-scaling forecast" in text and "![forecast](forecast.png)" in text
    assert (report.parent / "forecast.png").stat().st_size > 10_000
    assert "Hold-out check: each curve refitted without its largest size" in text
    assert text.count("off by") == 4  # both inits, both budgets
    assert "What the full grid would show at its sizes" in text and "n = 192" in text
    assert "of resnet10 pretrained" in text  # the crossover sentence, with its interval
    assert "## Transferability scores before fine-tuning" in text
    assert (report.parent / "transferability.png").is_file()
    # the forecast and scores are not trials: the frontier counts 16 configurations (8 trials,
    # each with its 1-epoch milestone), and no transferability run is among them
    configurations = (report.parent / "configurations.csv").read_text()
    assert "transferability" not in configurations and len(configurations.splitlines()) == 17


def test_the_parent_run_carries_the_catch_up_and_the_holdout_error(forecast_sweep):
    tmp, _ = forecast_sweep
    _, _, parent, _ = sweep_store(tmp, EXPERIMENT)
    metrics = parent.data.metrics
    assert CATCH_UP_WITHIN in metrics and FORECAST_HOLDOUT_ERROR in metrics
    assert 0 <= metrics[FORECAST_HOLDOUT_ERROR] <= 1
    if metrics[CATCH_UP_WITHIN] == 1.0:
        assert metrics[CATCH_UP_N] >= 32


def test_xfer_forecast_reads_the_sweep_back_and_writes_json(forecast_sweep):
    tmp, _ = forecast_sweep
    done = _xfer(tmp, "forecast", "--experiment", EXPERIMENT, "--json", str(tmp / "forecast.json"))
    assert done.returncode == 0, done.stderr
    assert "validation accuracy against dataset size (32, 48, 64, 96)" in done.stdout
    assert "hold-out: n=96" in done.stdout and "n=192 (forecast)" in done.stdout
    saved = json.loads((tmp / "forecast.json").read_text())
    assert len(saved["curves"]) == 4 and len(saved["catch_ups"]) == 2


def test_xfer_forecast_on_a_sweep_of_two_sizes_says_how_many_it_needs(smoke_sweep):
    tmp, _, _ = smoke_sweep
    done = _xfer(tmp, "forecast", "--experiment", "pdf_grid")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "needs at least 3 dataset sizes" in done.stderr and "measured 2 (48, 96)" in done.stderr
