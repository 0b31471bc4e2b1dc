"""The four other studies, each script's smoke preset end to end: generated data in the real
on-disk formats (CIFAR's python-pickle archives, an image folder with broken files), a real Ray
sweep, a real MLflow store, the report on the parent run. No network: --no-download.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_sweep
from helpers_data import write_cifar, write_image_folder

pytestmark = pytest.mark.slow


def _sweep(tmp: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=500)
    parents = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("xfer.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(c.info.status == "FINISHED" for c in children), [c.info.status for c in children]
    return client, parents[0], children


def _artifacts(client, run) -> set[str]:
    return {a.path for a in client.list_artifacts(run.info.run_id)}


def _report(client, parent) -> str:
    assert {"report.md", "frontier.png", "frontier.csv"} <= _artifacts(client, parent)
    return Path(client.download_artifacts(parent.info.run_id, "report.md")).read_text()


def _run(script: str, tmp: Path, cache: Path, ray_address: str, *args: str):
    # one trial at a time: ~6 CPU-s less than two (a second trial process's imports); the shared
    # smoke sweep and the milestone, forecast, S3 and node-loss sweeps run theirs concurrently.
    # The four sweeps join one Ray (conftest.OneNodeRay).
    done = run_sweep(script, ["--preset", "smoke", "--no-download", "--max-concurrent", "1", *args], tmp, cache,
                     ray_address=ray_address)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """Both CIFAR releases as their official .tar.gz archives, 32 px, learnable colours."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar10", n_train_per_batch=40, n_test=40, archive=True)
    write_cifar(root, "cifar100", n_train_per_batch=400, n_test=100, archive=True)
    return root


def test_cifar10_transfer_smoke_compares_the_two_arms_by_training_set_size(tmp_path, shared_cache,
                                                                            cifar_root, one_node_ray):
    _run("cifar10_transfer.py", tmp_path, shared_cache, one_node_ray, "--data-root", str(cifar_root))
    client, parent, children = _sweep(tmp_path, "cifar10_transfer")
    arms = Counter((c.data.params["arm"], c.data.params["model"], c.data.params["dataset_size"])
                   for c in children)
    assert arms == {("transfer", "resnet10", "40"): 1, ("transfer", "resnet10", "80"): 1,
                    ("scratch", "small_cnn", "40"): 1, ("scratch", "small_cnn", "80"): 1}
    for child in children:
        params = child.data.params
        assert params["n_train"] == params["dataset_size"]  # CIFAR: dataset_size counts training images
        assert params["dataset"].startswith("cifar10-") and params["schedule"] == "constant"
        # the study's validation_data was the test set: the 40 generated test images validate
        assert child.data.metrics["n_val"] == child.data.metrics["n_test"] == 40
        if params["arm"] == "transfer":
            assert params["head"] == "gap_mlp" and params["input_size"] == "64"  # 32 px upsampled x2
            assert params["weights"].endswith(".pt")  # offline-pretrained, not ImageNet
        lrs = [m.value for m in client.get_metric_history(child.info.run_id, "learning_rate")]
        assert len(lrs) >= 2 and lrs == pytest.approx([0.01] * len(lrs))  # "constant at 0.01 throughout"
    report = _report(client, parent)
    assert "## What pretraining is worth, by training-set size" in report
    assert "| 40 |" in report and "| 80 |" in report


def test_cifar100_archs_smoke_reports_each_head_with_its_training_time(tmp_path, shared_cache,
                                                                       cifar_root, one_node_ray):
    _run("cifar100_archs.py", tmp_path, shared_cache, one_node_ray, "--data-root", str(cifar_root))
    client, parent, children = _sweep(tmp_path, "cifar100_archs")
    heads = {c.data.params["arm"]: c.data.params["head"] for c in children}
    assert heads == {"efficientnet_b0": "mlp256", "resnet50": "mlp3x384", "alexnet": "linear"}
    inits = {c.data.params["arm"]: c.data.params["init"] for c in children}
    assert inits == {"efficientnet_b0": "pretrained", "resnet50": "pretrained", "alexnet": "scratch"}
    assert len({c.info.run_name for c in children}) == 3  # the arm keeps shared-model names apart
    for child in children:
        assert child.data.params["schedule"] == "plateau" and child.data.params["augment"] == "True"
        assert (child.data.params["plateau_factor"], child.data.params["plateau_patience"]) == ("0.5", "10")
        assert child.data.params["n_train"] == "200"
        assert child.data.metrics["train_time_s"] > 0
    report = _report(client, parent)
    assert "## Training time per model" in report and "× s / epoch" in report
    assert "its recall (macro)" in report


def test_folder_finetune_smoke_skips_broken_files_once_and_draws_roc_curves(tmp_path, shared_cache,
                                                                           one_node_ray):
    folder = tmp_path / "photos"
    written = write_image_folder(folder, classes=("cat", "dog", "fox"), per_class=12, size=40)
    done = _run("folder_finetune.py", tmp_path, shared_cache, one_node_ray, "--data", str(folder))
    for broken in written["corrupt"]:
        assert done.stdout.count(Path(broken).name) == 1, done.stdout[-3000:]  # reported once
    client, parent, children = _sweep(tmp_path, "folder_finetune")
    conditions = {(c.data.params["init"], c.data.params["train_layers"]) for c in children}
    assert conditions == {("scratch", "all"), ("pretrained", "classifier")}
    skipped = len(written["corrupt"]) + len(written["non_images"])
    for child in children:
        assert child.data.params["data_skipped_files"] == str(skipped)
        assert child.data.params["dataset"].startswith("folder-")
        assert {"roc_curve.json", "confusion_matrix.png"} <= _artifacts(client, child)
        assert 0 <= child.data.metrics["test_auc_roc_ovr"] <= 1
    report = _report(client, parent)
    assert "roc_curves.png" in _artifacts(client, parent)
    assert "## One-vs-rest ROC curves" in report and "F1 (macro)" in report


def test_probe_regimes_smoke_embeds_three_stages_and_scores_their_separation(tmp_path, shared_cache,
                                                                             cifar_root, one_node_ray):
    _run("probe_regimes.py", tmp_path, shared_cache, one_node_ray, "--data-root", str(cifar_root))
    client, parent, children = _sweep(tmp_path, "probe_regimes")
    regimes = {(c.data.params["init"], c.data.params["train_layers"]) for c in children}
    assert regimes == {(i, t) for i in ("pretrained", "scratch") for t in ("head", "last_block", "all")}
    for child in children:
        assert {"embeddings.json", "embedding_early.png", "embedding_middle.png",
                "embedding_late.png"} <= _artifacts(client, child)
        for stage in ("early", "middle", "late"):
            assert -1 <= child.data.metrics[f"silhouette_{stage}_features"] <= 1
    report = _report(client, parent)
    assert "## Feature separation by stage" in report
    assert "embeddings.png" in _artifacts(client, parent)
