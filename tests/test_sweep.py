"""The sweep through the real stack at small scale: Ray Tune, ASHA, MLflow on SQLite.

Each test runs `sweeps/pdf_grid.py --preset smoke` as a user would, in a subprocess with its
own MLflow store, and checks the store afterwards. (A driver killed mid-sweep and resumed:
tests/test_interrupts.py's chain, beside the other ways a sweep stops.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import SECRETS, run_sweep, smoke_layout, sweep_env, warm_runner

pytestmark = pytest.mark.slow

SPEC_EPOCH_METRICS = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s"}
SPEC_FINAL_METRICS = {"test_accuracy", "test_precision_macro", "test_recall_macro", "test_f1_macro",
                      "test_auc_roc_ovr", "epochs_run", "wall_time_s", "train_time_s",
                      "macs_per_image", "train_macs", "macs_epochs_per_batch", "gpu_seconds"}
SPEC_PARAMS = {"model", "init", "train_layers", "weights", "dataset_size", "n_train",
               "image_size", "epochs", "batch_size", "lr", "optimizer", "seed", "dataset"}
SMOKE_TRIALS = 8


def _runs(tmp: Path):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pdf_grid")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    return client, parents, children




def test_smoke_sweep_logs_one_parent_and_exactly_one_child_per_trial(smoke_sweep):
    tmp, done, _ = smoke_sweep
    client, parents, children = _runs(tmp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    sweep_id = parents[0].data.tags["xfer.sweep_id"]
    assert len(children) == SMOKE_TRIALS
    assert len({c.data.tags["xfer.trial_id"] for c in children}) == SMOKE_TRIALS
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["xfer.sweep_id"] == sweep_id
        assert child.info.status == "FINISHED"
    names = {c.info.run_name for c in children}
    assert "resnet10-pretrained-all-n96-bs16-ep3" in names and "resnet10-scratch-all-n48-bs16-ep1" in names
    assert "plan: preset smoke: 8 trials" in done.stdout and "best pretrained" in done.stdout


def test_children_carry_the_spec_params_metrics_and_artifacts(smoke_sweep):
    tmp, _, _ = smoke_sweep
    client, _, children = _runs(tmp)
    for child in children:
        assert SPEC_PARAMS <= set(child.data.params), SPEC_PARAMS - set(child.data.params)
        assert SPEC_FINAL_METRICS <= set(child.data.metrics), SPEC_FINAL_METRICS - set(child.data.metrics)
        assert SPEC_EPOCH_METRICS <= set(child.data.metrics)
        epochs_run = int(child.data.metrics["epochs_run"])
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert steps == list(range(1, epochs_run + 1))  # one value per epoch, step = epoch
        assert 0 <= child.data.metrics["test_accuracy"] <= 1
        assert child.data.metrics["train_macs"] > 0 and child.data.metrics["gpu_seconds"] == 0
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"confusion_matrix.json", "confusion_matrix.png", "test_predictions.json"} <= artifacts
        metrics = child.data.metrics
        assert metrics["test_accuracy_ci_low"] <= metrics["test_accuracy"] <= metrics["test_accuracy_ci_high"]
        assert metrics["n_test"] == 200 and child.data.params["split"] == "heldout"
        assert (metrics["pretrain_macs"] > 0) == (child.data.params["init"] == "pretrained")
    # one held-out test set for every dataset size: the runs can be paired image by image
    assert len({c.data.params["test_set_sha256"] for c in children}) == 1
    pretrained = [c for c in children if c.data.params["init"] == "pretrained"]
    assert all("offline" in c.data.params["weights"] or c.data.params["weights"].endswith(".pt")
               for c in pretrained)
    assert all(len(c.data.params.get("weights_sha256", "")) == 64 for c in pretrained)


def test_asha_compares_trials_only_within_their_dataset_size_and_init(smoke_sweep):
    """The smoke sweep runs the preset's ASHA. Its rungs compare a trial only with trials of
    its own dataset size and init: here its 1- or 3-epoch twin, the same run through epoch 1
    (constant lr, same seed), so none trails its group at rung 1 and none is stopped. One ASHA
    over all eight stops 3-epoch trials for their size or init (tests/test_schedulers.py
    checks that stopping within a group works, in Ray Tune too)."""
    tmp, _, _ = smoke_sweep
    _, parents, children = _runs(tmp)
    params = parents[0].data.params
    assert params["scheduler"] == "asha"
    assert params["scheduler_detail"] == "ASHA per (dataset_size, init), grace 1, reduction 2, rungs 1,2"
    stopped = [c.info.run_name for c in children
               if c.data.metrics["epochs_run"] < int(c.data.params["epochs"])]
    assert not stopped, f"stopped by a trial of another size or init: {stopped}"


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, shared_cache):
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--dry-run"], tmp_path, shared_cache)
    assert done.returncode == 0, done.stderr
    assert "8 trials" in done.stdout and "training MACs" in done.stdout and "time estimate" in done.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_resume_with_nothing_to_resume_is_a_usage_error(tmp_path, shared_cache):
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--resume"], tmp_path, shared_cache)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no interrupted sweep" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_the_sweep_writes_its_frontier_report_from_the_real_runs(smoke_sweep):
    import pandas as pd

    tmp, done, _ = smoke_sweep
    client, parents, children = _runs(tmp)
    sweep_id = parents[0].data.tags["xfer.sweep_id"]
    folder = tmp / "xfer_reports" / sweep_id
    assert f"report: {folder / 'report.md'}" in done.stdout
    for name in ("frontier.png", "size.png", "learning_curves.png", "confusion_matrices.png"):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.md", "frontier.csv", "frontier.png"} <= parent_artifacts

    points = pd.read_csv(folder / "configurations.csv")
    frontier = pd.read_csv(folder / "frontier.csv")
    overall = frontier[frontier["scope"] == "all"]
    for _, p in overall.iterrows():  # non-dominated among all configurations, on validation
        dominated = points[(points["train_macs"] <= p["train_macs"]) & (points["val_accuracy"] >= p["val_accuracy"])
                           & ((points["train_macs"] < p["train_macs"]) | (points["val_accuracy"] > p["val_accuracy"]))]
        assert dominated.empty
        assert p["test_accuracy_ci_low"] <= p["test_accuracy"] <= p["test_accuracy_ci_high"]
    report = (folder / "report.md").read_text()
    assert "## Pretrained weights" in report and "not ImageNet" in report
    assert "Test split: `heldout`" in report and "200 images per run; 1 distinct test set" in report
    run = children[0]  # the tables hold real numbers, with their Wilson intervals
    accuracy = run.data.metrics
    assert (f"{100 * accuracy['test_accuracy']:.1f}% [{100 * accuracy['test_accuracy_ci_low']:.1f}, "
            f"{100 * accuracy['test_accuracy_ci_high']:.1f}]") in report or run.info.run_name not in report
    assert "paired: exact McNemar" in report  # the gains pair runs on the same test images
    # the closing summary repeats the report's conclusions in the terminal
    assert "Every choice reads validation accuracy" in done.stdout
    # the audit decides the ceiling and the outlined pairs: at the study's parameters (gamma's
    # beta a rate) chi2 ~ gamma and exponential ~ weibull are one distribution each
    audit = json.loads((Path(run.data.params["dataset_path"]) / "audit.json").read_text())
    assert audit["bayes_accuracy_ceiling"] == 0.75
    assert {tuple(c["classes"]) for c in audit["confusable"]} == {("chi2", "gamma"), ("exponential", "weibull")}
    assert "Bayes accuracy ceiling is 75%" in report
    assert "Confusable as rendered (outlined in the confusion matrices): chi2 ~ gamma, exponential ~ weibull" in report
    assert "- audit: chi2 ~ gamma" in report.split("## Confusion matrices", 1)[1]
    # the study's departures and its replication card, from the parent run's study_card.json
    assert "study_card.json" in parent_artifacts and "replication_card.csv" in parent_artifacts
    assert "## Departures from the study" in report and "superset" in report
    card = report.split("## Replication card", 1)[1].split("\n## ", 1)[0]
    assert "000_6392b5b558675b4f.txt" in card and "scales the study down" in card


def test_xfer_frontier_answers_the_target_query_on_the_real_store(smoke_sweep, tmp_path):
    tmp, _, _ = smoke_sweep
    _, _, children = _runs(tmp)
    # the cheapest run of each init that reaches, on validation (what every choice reads), the
    # lowest validation accuracy both inits reach
    by_init = {}
    for c in children:
        by_init.setdefault(c.data.params["init"], []).append(c)
    target = min(max(c.data.metrics["val_accuracy"] for c in runs) for runs in by_init.values())
    done = warm_runner().run([sys.executable, "-m", "xfer.cli", "frontier", "--experiment", "pdf_grid",
                              "--target-accuracy", f"{max(target, 1e-6):.6f}", "--out", str(tmp_path / "r")],
                             timeout=300, env=sweep_env(tmp), cwd=tmp)
    assert done.returncode == 0, done.stderr
    section = (tmp_path / "r" / "report.md").read_text().split("## Cheapest configuration", 1)[1]
    answer = section.split("\n- ", 1)[1].splitlines()[0]  # the line for --target-accuracy
    for init, runs in by_init.items():
        cheapest = min((c for c in runs if c.data.metrics["val_accuracy"] >= target - 1e-9),
                       key=lambda c: c.data.metrics["train_macs"])
        assert init in answer and f"{cheapest.data.metrics['train_macs']:.3g}" in answer, answer


def test_a_crashed_trial_resumes_from_its_checkpoint_and_a_hopeless_one_is_failed(tmp_path, shared_cache,
                                                                                   one_node_ray):
    env = sweep_env(tmp_path, one_node_ray)
    # scratch n96 ep3 crashes once after epoch 2 and is retried from that checkpoint;
    # pretrained n96 ep3 crashes after epoch 1 on every attempt and ends FAILED
    env["XFER_INJECT_FAULT"] = "scratch-all-n96-bs16-ep3@2*1,pretrained-all-n96-bs16-ep3@1"
    env["XFER_INJECT_FAULT_DIR"] = str(tmp_path / "faults")
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--scheduler", "fifo", "--max-failures", "1",
                                     "--max-concurrent", "1"], tmp_path, shared_cache, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "7 trials finished, 1 failed" in done.stdout
    client, parents, children = _runs(tmp_path)
    assert len(children) == SMOKE_TRIALS  # the retry continued its run; no second one
    by_name = {c.info.run_name: c for c in children}
    recovered = by_name["resnet10-scratch-all-n96-bs16-ep3"]
    assert recovered.info.status == "FINISHED" and recovered.data.metrics["epochs_run"] == 3
    steps = [m.step for m in client.get_metric_history(recovered.info.run_id, "val_accuracy")]
    assert steps == [1, 2, 3]  # epoch 3 ran once, after the restore; nothing logged twice
    assert len(list((tmp_path / "faults").glob("resnet10-scratch-all-n96-bs16-ep3.*"))) == 1
    failed = by_name["resnet10-pretrained-all-n96-bs16-ep3"]
    assert failed.info.status == "FAILED"
    assert "CUDA out of memory" in failed.data.tags["xfer.error"]
    report = (tmp_path / "xfer_reports" / parents[0].data.tags["xfer.sweep_id"] / "report.md").read_text()
    left_out = report.split("## Runs left out", 1)[1]
    assert "resnet10-pretrained-all-n96-bs16-ep3" in left_out and "FAILED" in left_out


@pytest.mark.parametrize("search", ["tpe", "nsga2"])
def test_optuna_searches_sample_the_space_through_the_same_stack(search, tmp_path, shared_cache, one_node_ray):
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--search", search, "--num-samples", "3",
                                     "--scheduler", "fifo", "--no-report", "--max-concurrent", "1"],
                     tmp_path, shared_cache, ray_address=one_node_ray)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "plan: preset smoke: 3 trials" in done.stdout
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].data.params["search"] == search
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    for child in children:  # plain categorical values from the preset's space
        assert child.data.params["init"] in ("scratch", "pretrained")
        assert int(child.data.params["epochs"]) in (1, 3)
        assert int(child.data.params["dataset_size"]) in (48, 96)
        assert {"test_accuracy", "train_macs"} <= set(child.data.metrics)


def test_no_secret_from_the_environment_reaches_mlflow_or_the_sweep_files(smoke_sweep, smoke_ray_tmp):
    tmp_path, done, _ = smoke_sweep  # run with SECRETS in its environment
    secrets = SECRETS
    # Ray's own logs of this sweep: runtime envs, worker output, the GCS and raylet
    ray_logs = [path.read_bytes().decode(errors="replace") for path in smoke_ray_tmp.rglob("*")
                if path.is_file() and not path.is_symlink() and path.stat().st_size < 50 << 20]
    assert len(ray_logs) > 10, "Ray wrote no logs under RAY_TMPDIR: nothing was searched"
    client, parents, children = _runs(tmp_path)
    texts = [done.stdout, done.stderr]
    for run in parents + children:
        texts += [str(run.data.params), str(run.data.tags), str(run.data.metrics), run.info.run_name]
        for artifact in client.list_artifacts(run.info.run_id):
            if not artifact.is_dir:
                texts.append(Path(client.download_artifacts(run.info.run_id, artifact.path,
                                                            str(tmp_path / "dl-secrets"))).read_bytes().decode(errors="replace"))
    for path in smoke_layout(tmp_path)["storage"].rglob("*"):  # Ray's sweep state, xfer_sweep.json
        if path.is_file() and path.suffix in (".json", ".pkl", ".csv", ".md", ".txt", ".log", ""):
            texts.append(path.read_bytes().decode(errors="replace"))
    for path in (tmp_path / "xfer_reports").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode(errors="replace"))
    texts += ray_logs
    leaked = {name for name, value in secrets.items() for text in texts if value in text}
    assert not leaked, f"secrets leaked: {sorted(leaked)}"
