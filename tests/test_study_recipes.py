"""Each study script's recipe against what its study states (shared/studies/000-004), its list of
departures, and its card of published numbers. Pure config: the scripts are imported, their
presets resolved into trial configs and checked as TrialConfigs; nothing trains, no Ray.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from xfer.errors import UsageError
from xfer.sweep.study import (AXES, PRESETS, PUBLISHED_METRICS, SMOKE_PRETRAIN, SWEEP_ONLY_KEYS, Preset,
                              Study, load_published)
from xfer.train import TrialConfig

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = ("pdf_grid", "cifar10_transfer", "cifar100_archs", "folder_finetune", "probe_regimes")


@functools.lru_cache(maxsize=None)
def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", REPO / "sweeps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _configs(name: str, preset: str | None = None) -> list[TrialConfig]:
    """The preset's trials (the study's preset by default) as validated TrialConfigs, each with
    its sweep-only values (arm, dataset_size) kept alongside in ``.sweep``."""
    study = _module(name).STUDY
    configs = []
    for trial in study.preset(preset or study.default_preset).trials():
        fields = {k: v for k, v in trial.items() if k not in SWEEP_ONLY_KEYS}
        config = TrialConfig(data="unused", device="cpu", **fields).validate()
        object.__setattr__(config, "sweep", {k: trial.get(k) for k in SWEEP_ONLY_KEYS})
        configs.append(config)
    return configs


def _by_arm(configs) -> dict[str, list[TrialConfig]]:
    arms: dict[str, list[TrialConfig]] = {}
    for c in configs:
        arms.setdefault(c.sweep["arm"], []).append(c)
    return arms


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_the_same_preset_names_and_help_shows_them(name):
    study = _module(name).STUDY
    assert PRESETS == ("smoke", "quick", "study")
    assert tuple(study.presets)[:3] == PRESETS  # a script may add presets after these
    assert name == "pdf_grid" or tuple(study.presets) == PRESETS
    assert study.default_preset == "study"
    assert study.presets["smoke"].pretrained == SMOKE_PRETRAIN  # one smoke pretraining for all five
    # run as a user runs it, from another folder and without PYTHONPATH: the installed package,
    # not a sys.path line in the script, makes `xfer` importable
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(REPO / "sweeps" / f"{name}.py"), "--help"], cwd="/",
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "--preset{" + ",".join(study.presets) + "}" in "".join(done.stdout.split())
    for extra in set(study.presets) - set(PRESETS):  # each extra preset says what it runs
        assert f"{extra}: {study.presets[extra].description}" in " ".join(done.stdout.split())
    assert "sys.path" not in (REPO / "sweeps" / f"{name}.py").read_text()


def test_old_preset_names_are_aliases_of_the_standard_ones():
    assert _module("pdf_grid").STUDY.preset("seed") is _module("pdf_grid").STUDY.presets["study"]
    for name in SCRIPTS[1:]:
        study = _module(name).STUDY
        assert study.canonical("cpu") == "quick" and study.preset("cpu") is study.presets["quick"]
    with pytest.raises(UsageError, match="preset"):
        _module("pdf_grid").STUDY.preset("cpu")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_preset_resolves_to_valid_trial_configs(name):
    study = _module(name).STUDY
    assert study.name == name and study.default_preset in study.presets
    for preset_name, preset in study.presets.items():
        preset.validate(preset_name)
        assert _configs(name, preset_name), preset_name


@pytest.mark.parametrize("name", SCRIPTS)
def test_departures_are_listed_at_the_top_and_carried_by_the_study(name):
    module = _module(name)
    assert isinstance(module.DEPARTURES, list) and len(module.DEPARTURES) >= 4
    assert module.STUDY.departures == tuple(module.DEPARTURES)
    assert all(isinstance(d, str) and 20 < len(d) < 400 for d in module.DEPARTURES)
    source = (REPO / "sweeps" / f"{name}.py").read_text()
    assert source.index("DEPARTURES = [") < source.index("STUDY = Study(")  # at the top


# the key departures each script must name (lowercase substrings of the joined list)
KEY_DEPARTURES = {
    "pdf_grid": ("superset", "optimiser", "momentum 0.9", "split", "gamma's beta", "rate"),
    "cifar10_transfer": ("pytorch", "constant", "custom", "momentum 0", "early stopping",
                         "validation is the test set", "500", "5,000", "torchvision"),
    "cifar100_archs": ("pytorch", "alexnet trains from scratch", "efficientnet-b0", "patience",
                       "cross-fold", "v100", "momentum 0", "recall"),
    "folder_finetune": ("not public", "fc6-fc8", "split", "quadro p5000", "image size"),
    "probe_regimes": ("batch 128", "umap", "83.14%", "79.3%", "split", "momentum 0.9",
                      "not stated"),
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_departures_name_the_studys_key_differences(name):
    text = " ".join(_module(name).DEPARTURES).lower()
    missing = [k for k in KEY_DEPARTURES[name] if k not in text]
    assert not missing, missing


# --- 000: the PDF-plot grid ---------------------------------------------------------------------

def test_pdf_grid_seed_preset_is_a_superset_of_the_studys_final_runs():
    configs = _configs("pdf_grid")
    assert len(configs) == 54
    assert {c.model for c in configs} == {"resnet50"}
    assert {(c.optimizer, c.momentum, c.lr, c.schedule) for c in configs} == {("sgd", 0.9, 0.01, "constant")}
    cells = {(c.init, c.batch_size, c.epochs, c.sweep["dataset_size"]) for c in configs}
    assert {c.epochs for c in configs} == {10, 20, 50} and {c.batch_size for c in configs} == {4, 8, 16}
    for size in (100, 1000, 10000):  # the study's best per arm, at each size
        assert ("scratch", 4, 20, size) in cells and ("pretrained", 4, 10, size) in cells
    preset = _module("pdf_grid").STUDY.preset("seed")
    assert preset.data.image_size == 256 and preset.data.preset == "seed"
    doc = _module("pdf_grid").__doc__
    assert "tuned first" in doc and "superset" in doc


def test_pdf_grid_small_presets_state_their_optimiser_too():
    for preset in ("smoke", "quick"):
        assert {(c.optimizer, c.momentum) for c in _configs("pdf_grid", preset)} == {("sgd", 0.9)}


# --- 001: CIFAR-10, ResNet-50 transfer vs a small CNN ------------------------------------------

def test_cifar10_transfer_study_preset_is_keras_sgd_at_a_constant_0_01():
    configs = _configs("cifar10_transfer")
    assert {(c.optimizer, c.momentum, c.lr, c.schedule, c.batch_size) for c in configs} == {
        ("sgd", 0.0, 0.01, "constant", 64)}
    arms = _by_arm(configs)
    assert set(arms) == {"transfer", "scratch"}
    for c in arms["transfer"]:
        assert (c.model, c.init, c.head, c.epochs, c.train_layers) == (
            "resnet50", "pretrained", "gap_mlp", 6, "all")
        assert (c.image_size, c.resize_mode) == (224, "nearest")  # UpSampling2D x7 of 32 px
        assert c.early_stopping_patience == 0
    for c in arms["scratch"]:
        assert (c.model, c.init, c.epochs) == ("small_cnn", "scratch", 50)
        assert c.early_stopping_patience > 0  # early stopping (the study stopped at epoch 17)


def test_cifar10_transfer_trains_on_all_50000_and_validates_on_the_test_set():
    study = _module("cifar10_transfer").STUDY
    data = study.preset("study").data
    assert data.val_source == "test" and data.val_is_test and data.train_pool() == 50_000
    sizes = {c.sweep["dataset_size"] for c in _configs("cifar10_transfer")}
    assert sizes == {500, 5000, 50_000}  # 1%, 10%, 100%
    for preset in ("smoke", "cpu"):  # the small presets keep the study's data and optimiser
        assert study.preset(preset).data.val_source == "test"
        configs = _configs("cifar10_transfer", preset)
        assert {(c.momentum, c.schedule) for c in configs} == {(0.0, "constant")}
        assert {c.resize_mode for c in _by_arm(configs)["transfer"]} == {"nearest"}
    assert {c.sweep["dataset_size"] for c in _configs("cifar10_transfer", "cpu")} == {500, 5000}


# --- 002: CIFAR-100, three architectures -------------------------------------------------------

def test_cifar100_archs_study_preset_follows_the_papers_recipe():
    configs = _configs("cifar100_archs")
    arms = _by_arm(configs)
    assert {arm: (cs[0].model, cs[0].init) for arm, cs in arms.items()} == {
        "efficientnet_b0": ("efficientnet_b0", "pretrained"), "resnet50": ("resnet50", "pretrained"),
        "alexnet": ("alexnet", "scratch")}
    assert {(c.optimizer, c.momentum, c.lr, c.batch_size, c.epochs, c.augment) for c in configs} == {
        ("sgd", 0.0, 1e-3, 8, 25, True)}
    # lr halved on a val_loss plateau: the stated factor, Keras' default patience
    assert {(c.schedule, c.plateau_factor, c.plateau_patience) for c in configs} == {("plateau", 0.5, 10)}
    assert {c.resolved().weights for c in arms["alexnet"]} == {None}
    data = _module("cifar100_archs").STUDY.preset("study").data
    assert (data.name, data.val_source, data.holdout) == ("cifar100", "train", 10_000)
    assert data.train_pool() == 40_000
    for preset in ("smoke", "cpu"):
        configs = _configs("cifar100_archs", preset)
        assert {c.momentum for c in configs} == {0.0}
        assert {c.init for c in _by_arm(configs)["alexnet"]} == {"scratch"}


# --- 003: an image folder, scratch vs fine-tuned classifier ------------------------------------

def test_folder_finetune_finetuned_condition_trains_the_classifier_block():
    configs = _configs("folder_finetune")
    assert {c.model for c in configs} == {"resnet18", "vgg19", "inception_v3"}
    conditions = {(c.sweep["arm"], c.init, c.train_layers) for c in configs}
    assert conditions == {("scratch", "scratch", "all"), ("finetuned", "pretrained", "classifier")}
    assert {(c.optimizer, c.lr, c.batch_size, c.epochs, c.augment) for c in configs} == {
        ("adam", 1e-4, 32, 50, True)}
    for preset in ("smoke", "cpu"):
        finetuned = _by_arm(_configs("folder_finetune", preset))["finetuned"]
        assert {c.train_layers for c in finetuned} == {"classifier"}


# --- 004: ResNet-152 probe regimes -------------------------------------------------------------

def test_probe_regimes_study_preset_uses_batch_128_and_both_embeddings():
    configs = _configs("probe_regimes")
    assert {(c.train_layers, c.init) for c in configs} == {
        (t, i) for t in ("head", "last_block", "all") for i in ("pretrained", "scratch")}
    assert {(c.model, c.batch_size, c.epochs, c.image_size) for c in configs} == {("resnet152", 128, 10, 224)}
    assert {c.embeddings for c in configs} == {"tsne+umap"}
    assert {c.batch_size for c in _configs("probe_regimes", "cpu")} == {128}
    assert {c.embeddings for c in _configs("probe_regimes", "cpu")} == {"tsne+umap"}


# --- the published cards -----------------------------------------------------------------------

@pytest.mark.parametrize("name", SCRIPTS)
def test_each_study_carries_its_published_card(name):
    study = _module(name).STUDY
    card = study.published
    assert card == load_published(REPO / "sweeps" / "published" / f"{name}.json")
    assert card["study"].startswith(f"{SCRIPTS.index(name):03d}_") and card["study"].endswith(".txt")
    trials = study.preset(study.default_preset).trials()
    for row in card["results"]:  # every published row selects this run's trials by config
        assert set(row["metrics"]) <= set(PUBLISHED_METRICS)
        assert any(all(t.get(k) == v for k, v in row["match"].items()) for t in trials), row["label"]
    for table in card["tables"]:
        assert all(len(r) == len(table["columns"]) for r in table["rows"])


def _metric(card: dict, label_start: str, metric: str, size=None):
    rows = [r for r in card["results"] if r["label"].startswith(label_start)
            and (size is None or r["dataset_size"] == size)]
    assert len(rows) == 1, (label_start, size, [r["label"] for r in card["results"]])
    return rows[0]["metrics"][metric]


def test_pdf_grid_card_has_the_times_per_size():
    card = _module("pdf_grid").STUDY.published
    assert card["source_hardware"] == "not stated"
    for arm, times in (("Pre-trained", {100: 80, 1000: 400, 10000: 400}),
                       ("Scratch", {100: 186, 1000: 930, 10000: 930})):
        for size, seconds in times.items():
            assert _metric(card, arm, "wall_time_s", size) == seconds
    grid = {(c.init, c.batch_size, c.epochs, c.sweep["dataset_size"]) for c in _configs("pdf_grid")}
    for row in card["results"]:
        if row["dataset_size"] != 500:  # the baseline is not rerun; the final runs are in the grid
            m = row["match"]
            assert (m["init"], m["batch_size"], m["epochs"], row["dataset_size"]) in grid
    table = card["tables"][0]
    assert table["columns"][0] == "Density Distribution" and len(table["rows"]) == 8
    assert ["Gamma", "Alpha Beta", "(0, inf) (0, inf)", "(0, inf)"] in table["rows"]


def test_cifar10_transfer_card_headline_numbers():
    card = _module("cifar10_transfer").STUDY.published
    transfer, scratch = (next(r for r in card["results"] if r["match"] == {"arm": a})
                         for a in ("transfer", "scratch"))
    assert transfer["metrics"]["test_accuracy"] == 0.9533 and scratch["metrics"]["test_accuracy"] == 0.77
    assert transfer["metrics"]["params"] == 26_215_818 and scratch["metrics"]["params"] == 1_250_858
    assert (transfer["metrics"]["epochs_run"], scratch["metrics"]["epochs_run"]) == (6, 17)
    assert transfer["dataset_size"] == scratch["dataset_size"] == 50_000
    best = next(t for t in card["tables"] if t["title"] == "Parameter for best model")
    assert best["rows"][0] == ["RESNET50", "6", "0.01", "64", "92%", "95%", "95.33%", "0.1792"]
    assert card["recipe"]["batch_size"] == 64 and card["recipe"]["learning_rate"] == 0.01


def test_cifar100_archs_card_headline_numbers():
    card = _module("cifar100_archs").STUDY.published
    assert "V100" in card["source_hardware"]
    expected = {"efficientnet_b0": (0.85, 0.82, 313), "resnet50": (0.70, 0.69, 42),
                "alexnet": (0.61, 0.57, 55)}  # test accuracy, recall, training minutes
    for arm, (accuracy, recall, minutes) in expected.items():
        row = next(r for r in card["results"] if r["match"] == {"arm": arm})
        assert row["metrics"]["test_accuracy"] == accuracy and row["metrics"]["test_recall_macro"] == recall
        assert row["metrics"]["train_time_s"] == minutes * 60
    titles = [t["title"] for t in card["tables"]]
    assert titles == ["Table 1. Training time comparison.", "Table 2. Performance comparison.",
                      "Table 3. Result on unseen testing data."]
    assert card["tables"][1]["rows"][0] == ["EfficientNet-B0", "0.8823", "0.3902", "0.8329", "0.6751"]


def test_folder_finetune_card_holds_table_1():
    card = _module("folder_finetune").STUDY.published
    assert card["source_hardware"] == "NVIDIA Quadro P5000 (Paperspace)"
    table = card["tables"][0]
    assert table["columns"] == ["Model", "Condition", "F1 Score", "Accuracy", "Precision", "Recall"]
    assert len(table["rows"]) == 6
    assert table["rows"][5] == ["", "Fine-tuned", "0.8685", "86.66%", "0.8823", "0.8676"]
    accuracy = {(r["match"]["model"], r["match"]["arm"]): r["metrics"]["test_accuracy"]
                for r in card["results"]}
    assert accuracy == {("inception_v3", "scratch"): 0.7544, ("inception_v3", "finetuned"): 0.8333,
                        ("resnet18", "scratch"): 0.7194, ("resnet18", "finetuned"): 0.8316,
                        ("vgg19", "scratch"): 0.7444, ("vgg19", "finetuned"): 0.8666}


def test_probe_regimes_card_headline_numbers():
    card = _module("probe_regimes").STUDY.published
    test = {(r["match"]["train_layers"], r["match"]["init"]): r["metrics"]["test_accuracy"]
            for r in card["results"]}
    assert test[("head", "pretrained")] == 0.804 and test[("last_block", "pretrained")] == 0.9149
    assert test[("all", "pretrained")] == 0.9632 and test[("head", "scratch")] == 0.15
    assert card["recipe"]["batch_size"] == 128


# --- xfer.sweep.study: the card loader, the new axes, departures --------------------------------

def _card(**changes) -> dict:
    card = {"study": "x.txt", "title": "t", "source_hardware": "h", "dataset": "d", "split": "s",
            "recipe": {"lr": 0.01},
            "results": [{"label": "a", "match": {"arm": "a"}, "dataset_size": None,
                         "metrics": {"test_accuracy": 0.5}}],
            "tables": [{"title": "T", "columns": ["x", "y"], "rows": [["1", "2"]]}]}
    card.update(changes)
    return card


def test_load_published_reads_a_valid_card(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(_card(notes=["kept"])))
    assert load_published(path)["notes"] == ["kept"]


@pytest.mark.parametrize("text, problem", [
    (None, "no such file"),
    ("{not json", "not readable JSON"),
    (json.dumps([1]), "must be a JSON object"),
    (json.dumps({k: v for k, v in _card().items() if k != "split"}), "missing split"),
    (json.dumps(_card(results=[])), "results must be a non-empty list"),
    (json.dumps(_card(results=[{"label": "a", "match": {"colour": "red"}, "metrics": {"test_accuracy": 1}}])),
     "not trial keys"),
    (json.dumps(_card(results=[{"label": "a", "match": {}, "metrics": {"test_acc": 0.5}}])),
     "unknown metrics ['test_acc']"),
    (json.dumps(_card(results=[{"label": "a", "match": {}, "metrics": {"test_accuracy": "95%"}}])),
     "finite numbers"),
    (json.dumps(_card(tables=[{"title": "T", "columns": ["x", "y"], "rows": [["1"]]}])),
     "each row needs 2 plain cells"),
])
def test_load_published_names_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "card.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError) as error:
        load_published(path)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_momentum_and_resize_mode_are_axes_a_preset_may_sweep():
    assert {"momentum", "resize_mode"} <= set(AXES)
    preset = Preset(space={"momentum": [0.0, 0.9], "resize_mode": ["bilinear", "nearest"]},
                    fixed={"model": "resnet10", "dataset_size": 40})
    preset.validate("p")
    assert {(t["momentum"], t["resize_mode"]) for t in preset.trials()} == {
        (m, r) for m in (0.0, 0.9) for r in ("bilinear", "nearest")}


def test_study_keeps_departures_as_a_tuple_and_rejects_empty_ones():
    preset = Preset(space={"dataset_size": [40]})
    study = Study(name="s", presets={"p": preset}, default_preset="p", departures=["one line"])
    assert study.departures == ("one line",) and study.published is None
    assert replace(study, departures=()).departures == ()
    with pytest.raises(UsageError, match="departures"):
        Study(name="s", presets={"p": preset}, default_preset="p", departures=["  "])


def test_study_module_stays_free_of_ray_mlflow_and_torch():
    code = ("import sys, xfer.sweep.study; "
            "print(sorted(m for m in ('ray', 'mlflow', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"
