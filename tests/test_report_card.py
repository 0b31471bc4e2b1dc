"""The report's fidelity sections (xfer.report.card): departures, the replication card beside the
study's published numbers, the dataset audit; the parent run's study_card.json as the sweep logs
it and `build_report` reads it; per-model learning curves."""

from __future__ import annotations

import json
import types

import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from test_report import history, md_table, run
from test_tracking_runs import build_store
from xfer import frontier as fr
from xfer import report
from xfer.report import card as report_card
from xfer.sweep import driver
from xfer.sweep.parent_run import log_study_card
from xfer.tracking import sweep_report as aggregate
from xfer.tracking.spool import SpoolingWriter

PUBLISHED = {
    "study": "001_study.txt", "title": "CIFAR-10 transfer", "source_hardware": "Tesla K80",
    "dataset": "CIFAR-10, 50,000 train / 10,000 test", "split": "validation = the official test set",
    "recipe": {"lr": 0.01, "momentum": 0},
    "results": [
        {"label": "ResNet50 transfer", "match": {"arm": "transfer"}, "dataset_size": None,
         "metrics": {"test_accuracy": 0.90, "train_time_s": 5000}},
        {"label": "CNN at 200", "match": {"arm": "scratch"}, "dataset_size": 200,
         "metrics": {"test_accuracy": 0.60, "train_time_s": 100}, "approximate": True, "note": "'about 60%'"},
        {"label": "VGG", "match": {"model": "vgg19"}, "dataset_size": None, "metrics": {"test_accuracy": 0.7}},
    ],
    "tables": [{"title": "Table 2: accuracy by size", "columns": ["size", "ResNet50", "CNN"],
                "rows": [["1%", "0.61", "0.40"], ["100%", "0.90", "0.75"]]}],
}
DEPARTURES = ["trains 45,000 images, not 50,000", "momentum 0.9 | not Keras' 0"]


def card(**changes) -> dict:
    data = {"describe": "CIFAR-10 (official archive)", "genuine": True, "note": "md5s match",
            "val_is_test": False}
    data.update(changes.pop("data", {}))
    return {"study": "cifar10_transfer", "preset": "study", "study_preset": "study",
            "departures": DEPARTURES, "published": PUBLISHED, "data": data,
            "hardware": "AMD EPYC (16 cores); GPU: NVIDIA H200", **changes}


def sweep() -> pd.DataFrame:
    """Transfer and scratch arms at 200 and 800 images. At 800 the transfer arm's bs16 has the
    better test accuracy (0.95) but the worse validation (0.80): the card must take bs8."""
    runs = [run("pretrained", 200, 8, 0.80), run("pretrained", 800, 8, 0.92), run("pretrained", 800, 16, 0.95),
            run("scratch", 200, 8, 0.55), run("scratch", 800, 8, 0.70)]
    table = pd.DataFrame(runs)
    table["arm"] = ["transfer"] * 3 + ["scratch"] * 2
    table.loc[2, "val_accuracy"] = 0.80
    table["split"] = "fixed"
    table["lr"] = 0.01
    return table


def write(tmp_path, study_card=None, runs=None, histories=None, **kwargs):
    runs = sweep() if runs is None else runs
    columns = list(fr.CONFIG_PARAMS) + (["arm"] if "arm" in runs else [])  # as load_sweep's: every param
    return report.write_report(runs, pd.DataFrame(), histories or {}, {}, tmp_path, study_card=study_card,
                               config_columns=columns, **kwargs).read_text()


def section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_genuine_data_at_the_study_preset_gives_differences_with_the_runs_interval(tmp_path):
    text = write(tmp_path, card())
    card_text = section(text, "## Replication card")
    assert "Study: `001_study.txt`: CIFAR-10 transfer." in card_text
    setting = md_table(card_text, "Study:")
    rows = setting.set_index("setting")
    assert rows.loc["hardware"].tolist() == ["Tesla K80", "AMD EPYC (16 cores); GPU: NVIDIA H200"]
    assert rows.loc["dataset", "this sweep"] == "CIFAR-10 (official archive) (md5s match)"
    assert rows.loc["recipe: lr"].tolist() == ["0.01", "0.01"] and rows.loc["recipe: momentum", "this sweep"] == "-"
    assert "not meaningful" not in card_text and "scales the study down" not in card_text
    results = md_table(card_text, "Published results beside")
    transfer = results[results["published result"] == "ResNet50 transfer"].iloc[0]
    # the study's full set is the sweep's largest size; bs8 is best on validation (0.91 > 0.80)
    assert transfer["images"] == "800"
    assert transfer["this sweep: configuration"] == "`resnet18-pretrained-all-n800-bs8-ep6`"
    assert transfer["this sweep [95% CI]"] == "92.0% [85.0, 95.9]"  # Wilson, 92 of 100
    assert transfer["difference (points)"] == ("+2.0 [-5.0, +5.9]: the study's value lies inside this "
                                               "sweep's interval")
    assert (transfer["study: time"], transfer["this sweep: time"]) == ("5000 s (train_time_s)", "7.68 s (train_time_s)")
    scratch = results[results["published result"] == "CNN at 200"].iloc[0]
    assert scratch["the study"] == "≈ test 60.00%" and scratch["study: time"] == "≈ 100 s (train_time_s)"
    assert "- CNN at 200: 'about 60%'" in card_text  # the study's own words beside its numbers
    assert scratch["this sweep [95% CI]"] == "55.0% [45.2, 64.4]"
    assert scratch["difference (points)"].startswith("-5.0 [-14.8, +4.4]")
    vgg = results[results["published result"] == "VGG"].iloc[0]
    assert vgg["difference (points)"] == "no matching configuration"
    csv = pd.read_csv(tmp_path / report_card.FILE_NAME).set_index("label")
    assert csv.loc["ResNet50 transfer", "difference"] == pytest.approx(0.02)
    assert csv.loc["ResNet50 transfer", "published_test_accuracy"] == 0.90
    assert csv.loc["CNN at 200", "run_train_time_s"] == pytest.approx(0.002 * 160 * 6)
    assert csv.loc["VGG", "comparison"] == "no matching configuration in this sweep"
    assert "Published: Table 2: accuracy by size" in card_text
    assert md_table(card_text, "Published: Table 2").values.tolist() == [["1%", "0.61", "0.40"],
                                                                         ["100%", "0.90", "0.75"]]


def test_stand_in_data_prints_both_numbers_but_no_difference(tmp_path):
    note = "stand-in: generated files, not the official CIFAR-10 archive"
    text = section(write(tmp_path, card(data={"genuine": False, "note": note})), "## Replication card")
    assert f"- not meaningful: {note}" in text
    results = md_table(text, "Published results beside")
    transfer = results[results["published result"] == "ResNet50 transfer"].iloc[0]
    assert transfer["the study"] == "test 90.00%" and transfer["this sweep [95% CI]"] == "92.0% [85.0, 95.9]"
    assert set(results["difference (points)"]) == {"not meaningful", "no matching configuration"}
    assert "points inside" not in text and "+2.0" not in text
    assert set(pd.read_csv(tmp_path / report_card.FILE_NAME)["comparison"]) == {
        "not meaningful", "no matching configuration in this sweep"}


def test_a_scaled_down_preset_is_compared_but_called_no_replication(tmp_path):
    text = section(write(tmp_path, card(preset="quick")), "## Replication card")
    assert "- preset quick scales the study down; differences are not a replication" in text
    assert md_table(text, "Study:").set_index("setting").loc["preset", "this sweep"] == "quick (scaled down)"
    results = md_table(text, "Published results beside")
    assert results["difference (points)"].iloc[0].startswith("+2.0 [")


def test_validation_on_the_test_set_is_a_warning(tmp_path):
    text = section(write(tmp_path, card(data={"val_is_test": True})), "## Replication card")
    assert ("- Warning: validation was the test set, as in the study: selection saw the test set, so test "
            "accuracies are optimistic") in text
    assert "validation = the test set" in md_table(text, "Study:").set_index("setting").loc["split", "this sweep"]


def test_departures_are_listed_verbatim_and_an_old_sweep_has_no_card(tmp_path):
    text = write(tmp_path / "a", card())
    assert section(text, "## Departures from the study").strip().splitlines()[-2:] == [
        f"- {d}" for d in DEPARTURES]
    old = write(tmp_path / "b", None)
    assert "## Replication card" not in old and "## Departures" not in old
    assert not (tmp_path / "b" / report_card.FILE_NAME).exists()


def test_a_match_key_the_sweep_did_not_log_is_ignored_and_said(tmp_path):
    runs = sweep().drop(columns="arm")  # a preset with one arm logs no `arm`
    table = report_card.card_table(card(), runs, fr.aggregate_seeds(runs))
    assert table["match_ignored"].tolist() == ["arm", "arm", ""]
    # without `arm`, the transfer result matches the best of both arms at 800 by validation
    assert table["run_config"].iloc[0] == "resnet18-pretrained-all-n800-bs8-ep6"


AUDIT = {"confusable": [{"classes": ["gamma", "chi2"], "reason": "same density"}],
         "bayes_accuracy_ceiling": 0.75, "tick_labels": True,
         "ceilings": {"with_tick_labels": 0.75, "without_tick_labels": 0.625},
         "identical": [{"classes": ["gamma", "chi2"], "reason": "gamma(1.5, rate 0.5) is chi2(3)",
                        "affected_fraction": 0.25}],
         "scale_only": [{"classes": ["laplace", "normal"], "reason": "scale", "affected_fraction": 0.25}],
         "empirical": {"method": "logistic regression", "per_class": 200, "image_size": 32, "seconds": 4.0,
                       "pairs": [{"classes": ["gamma", "chi2"], "accuracy": 0.5, "ci_low": 0.45, "ci_high": 0.55,
                                  "verdict": "chance", "expected": "chance", "agrees": True},
                                 {"classes": ["beta", "uniform"], "accuracy": 0.52, "ci_low": 0.47,
                                  "ci_high": 0.57, "verdict": "chance", "expected": "separable",
                                  "agrees": False}]}}


def test_the_audit_section_summary_and_figure_follow_the_audit(tmp_path):
    audit = {**AUDIT, "empirical": {**AUDIT["empirical"], "disagreements": [AUDIT["empirical"]["pairs"][1]]}}
    text = write(tmp_path, audit=audit)
    summary = section(text, "## Summary")
    assert ("Bayes accuracy ceiling is 75% (with tick labels 75%, without 62.5%; this dataset is rendered "
            "with them)") in summary
    assert "- Warning: the dataset audit's pixel check disagrees with its analytic categories for 1 class pair " \
           "(beta ~ uniform)" in summary
    audit_text = section(text, "## Dataset audit")
    assert "- Identical densities (indistinguishable in any rendering): gamma ~ chi2 (gamma(1.5, rate 0.5) is " \
           "chi2(3)), 25% of images." in audit_text
    assert "- Same shape up to location or scale (only the tick labels tell them apart): laplace ~ normal" in audit_text
    assert "2 pairs, 1 disagree with the analytic categories" in audit_text
    assert "  - Warning: beta ~ uniform: pairwise accuracy 52.0% [47.0, 57.0], verdict chance, the analytic " \
           "category expects separable" in audit_text
    # both ceilings on the frontier figure, the configured one marked
    analysis = fr.analyse(sweep(), "train_macs")
    ax = report.frontier_figure(analysis, ceiling=0.75, ceilings=report_card.ceiling_levels(audit)).axes[0]
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if "ceiling" in line.get_label()}
    assert lines == {"Bayes ceiling 0.75\n(audit; with tick labels, as rendered)": 0.75,
                     "ceiling without tick labels 0.625\n(not this dataset's rendering)": 0.625}


def test_the_ceiling_follows_the_configured_rendering_and_old_audits_keep_one_line():
    without = {**AUDIT, "tick_labels": False, "bayes_accuracy_ceiling": 0.625}
    assert [level for level, _, configured in report_card.ceiling_levels(without) if configured] == [0.625]
    assert report_card.ceiling_rendering(without).endswith("this dataset is rendered without them")
    old = {"confusable": [], "bayes_accuracy_ceiling": 0.9375}
    assert report_card.ceiling_levels(old) == [(0.9375, "Bayes ceiling (audit)", True)]
    assert report_card.ceiling_rendering(old) == "" and report_card.audit_lines(old) == []
    assert driver.audit_lines(AUDIT, "d") == [
        "dataset d: Bayes accuracy ceiling 0.750 (with tick labels; without: 0.625), confusable: gamma~chi2",
        "  audit: identical gamma~chi2; scale-only laplace~normal"]


def test_several_models_get_one_row_of_learning_curves_each(tmp_path):
    runs = []
    for model, init, accuracy in (("alexnet", "scratch", 0.4), ("resnet50", "pretrained", 0.8),
                                  ("efficientnet_b0", "pretrained", 0.85)):
        for batch in (8, 16):
            runs.append({**run(init, 800, batch, accuracy - 0.01 * (batch == 16)), "model": model})
    runs = pd.DataFrame(runs)
    detail = report.detail_run_ids(runs)
    by_id = runs.set_index("run_id")
    assert sorted(by_id.loc[detail, "model"]) == ["alexnet", "efficientnet_b0", "resnet50"]
    assert set(by_id.loc[detail, "batch_size"]) == {8}  # the best of each by validation
    text = write(tmp_path / "three", runs=runs, histories={r: history(6, 0.9) for r in detail})
    assert "Best configuration of each model and condition by validation accuracy, one row of panels per model" in text
    one = runs[runs["model"] == "resnet50"]
    write(tmp_path / "one", runs=one, histories={r: history(6, 0.9) for r in report.detail_run_ids(one)})
    with Image.open(tmp_path / "three" / "learning_curves.png") as three, \
            Image.open(tmp_path / "one" / "learning_curves.png") as single:
        assert three.size[1] > 2 * single.size[1]  # three rows of panels, not one


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("mlflow"))


def test_build_report_reads_the_study_card_the_sweep_logged_on_its_parent(store, tmp_path):
    parent = store.parents["s1"]
    # the sweep's own path: through the spool writer, straight to MLflow while it answers
    writer = SpoolingWriter(store.uri, tmp_path / "spool", {"parent_run_id": parent})
    the_card = card(data={"genuine": None, "note": "not the study's dataset"},
                    published={**PUBLISHED, "results": [{"label": "pretrained", "match": {"init": "pretrained"},
                                                         "dataset_size": None,
                                                         "metrics": {"test_accuracy": 0.65}}]})
    log_study_card(writer, parent, the_card)
    assert writer.pending == 0
    client = MlflowClient(store.uri)
    assert report_card.ARTIFACT in {a.path for a in client.list_artifacts(parent)}
    path = aggregate.build_report("pdf_grid", "s1", out_dir=tmp_path / "out", tracking_uri=store.uri,
                                  log_to_parent=True)
    text = path.read_text()
    assert "## Departures from the study" in text and f"- {DEPARTURES[0]}" in text
    results = md_table(section(text, "## Replication card"), "Published results beside")
    # s1: pretrained 0.70 at n100 (no n_test: no interval), 5 points above the published 65%
    assert results[["this sweep [95% CI]", "difference (points)"]].values.tolist() == [["70.0%", "+5.0"]]
    assert "- the data is not the study's (not the study's dataset)" in text
    logged = {a.path for a in client.list_artifacts(parent)}
    assert {report_card.FILE_NAME, "report.md", report_card.ARTIFACT} <= logged


def test_the_driver_builds_the_card_from_the_study_the_options_and_the_source(tmp_path):
    options = types.SimpleNamespace(preset="smoke")
    study = types.SimpleNamespace(name="pdf_grid", default_preset="seed", departures=("a", "b"),
                                  published={"study": "000.txt"})

    class Source:
        def describe(self):
            return "pdf plots"

        def provenance(self, cache_root):
            return {"describe": f"pdf plots in {cache_root.name}", "genuine": True, "note": "", "val_is_test": False}

    built = driver.study_card(study, options, Source(), tmp_path)
    assert {k: built[k] for k in ("study", "preset", "study_preset", "departures", "published")} == {
        "study": "pdf_grid", "preset": "smoke", "study_preset": "seed", "departures": ["a", "b"],
        "published": {"study": "000.txt"}}
    assert built["data"]["describe"] == f"pdf plots in {tmp_path.name}"
    assert "cores" in built["hardware"] and ("GPU" in built["hardware"])
    json.dumps(built)  # logged as JSON

    class Failing(Source):
        def provenance(self, cache_root):
            raise OSError("unreadable batch")

    bare = types.SimpleNamespace(name="x", default_preset="p", departures=(), published=None)  # Study's defaults
    built = driver.study_card(bare, options, Failing(), tmp_path)
    assert built["departures"] == [] and built["published"] is None
    assert built["data"]["genuine"] is None and "unreadable batch" in built["data"]["note"]


def test_the_card_waits_in_the_spool_while_mlflow_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection, at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    writer = SpoolingWriter("http://127.0.0.1:9", tmp_path / "spool", {"parent_run_id": "p1"}, echo=lambda _: None)
    log_study_card(writer, "p1", card())
    assert writer.pending == 1  # replayed with the rest when MLflow answers (xfer replay)
    stashed = list((tmp_path / "spool").rglob(report_card.ARTIFACT))
    assert len(stashed) == 1 and json.loads(stashed[0].read_text())["departures"] == DEPARTURES
