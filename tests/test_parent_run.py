"""The sweep's parent run as the MLflow UI shows it: summary metrics at step 0 (values, not
one-dot charts), the report's summary as its description, and report.html with its figures
inside. Checked on hand-made tables, on a hand-made store with known numbers, and on the shared
smoke sweep's real store."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import sweep_store
from test_report import sweep_runs
from test_report_html import Page, decoded
from test_tracking_runs import MACS_PER_IMAGE, build_store
from xfer import frontier as fr
from xfer.report import parent_summary as ps
from xfer.tracking import sweep_report as aggregate

FOOTER = "\n\nFull report: `report.html` (figures embedded) and `report.md` in this run's artifacts."


# --- the numbers, from hand-made tables ----------------------------------------------------------

def test_best_per_condition_and_the_gain_at_the_largest_budget_come_from_the_reports_analysis():
    runs = sweep_runs()  # pretrained n800 bs8: 3 seeds, val 0.92, 0.94, 0.90; scratch best n800 bs8 0.70
    metrics = ps.summary_metrics(fr.analyse(runs), runs, None)
    assert metrics["best_val_accuracy_pretrained"] == pytest.approx(0.92)
    assert metrics["chosen_test_accuracy_pretrained"] == pytest.approx(0.93)
    assert metrics["best_val_accuracy_scratch"] == pytest.approx(0.70)
    assert metrics["chosen_test_accuracy_scratch"] == pytest.approx(0.71)
    # both inits ran 6 epochs at 200 and 800 images: the gain is the one at 800
    gains = fr.analyse(runs).gains.set_index("dataset_size")
    assert metrics["pretraining_gain"] == pytest.approx(gains.loc[800, "gain"]) == pytest.approx(0.22)
    assert metrics["pretraining_gain_ci_low"] == gains.loc[800, "gain_low"]
    assert metrics["pretraining_gain_ci_high"] == gains.loc[800, "gain_high"]
    assert ps.gain_location(fr.analyse(runs).gains) == "dataset_size=800, epochs_run=6"


def test_totals_count_every_trial_once_and_no_milestone():
    runs = sweep_runs()
    # a 2-epoch milestone measured inside the first trial: its cost is already the trial's
    milestone = runs.iloc[[0]].assign(run_id="m1", milestone_of=runs["run_id"].iloc[0], epochs_run=2,
                                      train_macs=1e15, wall_time_s=1e6)
    with_milestone = pd.concat([runs.assign(milestone_of=None), milestone], ignore_index=True)
    failed = pd.DataFrame([{"run_id": "f1", "status": "FAILED", "milestone_of": None, "wall_time_s": 40.0},
                           {"run_id": "f2", "status": "KILLED", "milestone_of": None}])
    metrics = ps.summary_metrics(fr.analyse(runs), with_milestone, failed)
    assert metrics["total_train_macs"] == pytest.approx(runs["train_macs"].sum())
    assert metrics["total_trial_seconds"] == pytest.approx(runs["wall_time_s"].sum() + 40.0)
    assert (metrics["finished_trials"], metrics["failed_trials"]) == (10, 2)
    assert metrics["frontier_size"] == (fr.analyse(runs).frontier["scope"] == "all").sum() >= 1
    assert all(math.isfinite(v) for v in metrics.values())


def test_the_gain_row_is_the_largest_budget_then_the_largest_size():
    gains = pd.DataFrame({"dataset_size": [80, 400, 400, 80], "epochs_run": [6, 6, 2, "6 vs 50"],
                          "gain": [0.1, 0.2, 0.3, 0.4], "gain_low": [0.0] * 4, "gain_high": [0.5] * 4})
    assert ps.gain_at_largest_budget(gains)["gain"] == 0.4  # arms without a shared budget: 50 epochs
    assert ps.gain_at_largest_budget(gains.iloc[:3])["gain"] == 0.2
    assert ps.gain_location(gains.iloc[:3]) == "dataset_size=400, epochs_run=6"
    assert ps.gain_at_largest_budget(pd.DataFrame()) is None and ps.gain_location(pd.DataFrame()) == ""


def test_conditions_become_plain_metric_suffixes():
    assert ps.metric_suffix("pretrained/head") == "pretrained_head"
    assert ps.metric_suffix("scratch") == "scratch"


def test_the_description_keeps_whole_bullets_within_the_tag_limit(tmp_path):
    bullets = [f"- sentence {i}: " + "x" * 90 for i in range(50)]
    report_md = tmp_path / "report.md"
    report_md.write_text("# t\n\n## Summary\n\n" + "\n".join(bullets) + "\n\n## Next\n\n- not in the summary\n")
    assert ps.description(report_md, 8000) == "\n".join(bullets) + FOOTER
    short = ps.description(report_md, 1000)
    assert len(short) <= 1000 and short.endswith(FOOTER)
    lines = short[:-len(FOOTER)].splitlines()
    kept = len(lines) - 1
    assert lines[:kept] == bullets[:kept] and kept >= 5
    assert lines[-1] == f"- ... {50 - kept} more in report.md"


# --- a hand-made store with known numbers --------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def logged(store, tmp_path_factory):
    """``xfer frontier --log-to-parent``'s path on sweep s2: 9 finished trials, one failed."""
    out = tmp_path_factory.mktemp("report")
    path = aggregate.build_report("pdf_grid", "s2", out_dir=out, tracking_uri=store.uri, log_to_parent=True)
    return path, MlflowClient(store.uri).get_run(store.parents["s2"])


def test_the_parent_gets_the_summary_metrics_of_its_sweep(store, logged):
    path, parent = logged
    metrics = parent.data.metrics
    finished = [r for r in store.runs["s2"] if r["status"] == "FINISHED"]
    # the logged runs' own numbers (tests/test_tracking_runs.final_metrics), summed independently
    assert metrics["total_train_macs"] == pytest.approx(sum(3.0 * MACS_PER_IMAGE * r["n_train"] * r["epochs_run"]
                                                            for r in finished))
    assert metrics["total_trial_seconds"] == pytest.approx(sum(2.0 + 0.05 * r["n_train"] * r["epochs_run"]
                                                               / r["batch_size"] for r in finished))
    assert (metrics["finished_trials"], metrics["failed_trials"]) == (9, 1)
    # final val_accuracy equals test accuracy in this store: pretrained n400 bs4 0.92, scratch n400 bs4 0.70
    assert metrics["best_val_accuracy_pretrained"] == pytest.approx(0.92)
    assert metrics["best_val_accuracy_scratch"] == pytest.approx(0.70)
    # the gain and the frontier as the report's own files give them
    gains = pd.read_csv(path.parent / "pretraining_gain.csv")
    at = gains[(gains["dataset_size"] == 400) & (gains["epochs_run"].astype(float) == 4)].iloc[0]
    assert metrics["pretraining_gain"] == pytest.approx(at["gain"]) == pytest.approx(0.22)
    # these runs logged no n_test, so the gain has no interval: none is logged (not NaN)
    assert math.isnan(at["gain_low"]) and "pretraining_gain_ci_low" not in metrics
    assert "pretraining_gain_ci_high" not in metrics
    assert parent.data.tags[ps.GAIN_AT_TAG] == "dataset_size=400, epochs_run=4"
    front = pd.read_csv(path.parent / "frontier.csv")
    assert metrics["frontier_size"] == (front["scope"] == "all").sum()


def test_every_summary_metric_is_one_point_at_step_0(store, logged):
    _, parent = logged
    client = MlflowClient(store.uri)
    assert len(parent.data.metrics) >= 10
    for key in parent.data.metrics:
        assert [m.step for m in client.get_metric_history(parent.info.run_id, key)] == [0], key


def test_the_description_is_the_reports_summary(logged):
    path, parent = logged
    note = parent.data.tags[ps.NOTE_TAG]
    summary = ps.report_summary(path)
    assert note == "\n".join(summary) + FOOTER and len(summary) >= 3
    assert summary[0].startswith("- 9 runs finished (1 stopped early by the scheduler)")


def test_report_html_is_attached_with_its_figures_inside(store, logged, tmp_path):
    path, parent = logged
    client = MlflowClient(store.uri)
    assert {"report.md", "report.html"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    downloaded = client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))
    page = Page(open(downloaded, encoding="utf-8").read())
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", path.read_text())
    assert [i["alt"] for i in page.images] == [alt for alt, _ in links] and "frontier" in [a for a, _ in links]
    for image, (_, name) in zip(page.images, links):
        assert decoded(image["src"]) == (path.parent / name).read_bytes()


# --- the shared smoke sweep's real store ---------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_parent(smoke_sweep):
    client, _, parent, children = sweep_store(smoke_sweep[0])
    return client, parent, [r for r in children if r.data.tags.get("xfer.role") == "trial"]


def test_the_smoke_sweeps_parent_has_its_summary_metrics_at_step_0(smoke_parent):
    client, parent, trials = smoke_parent
    metrics = parent.data.metrics
    assert len(trials) == 8 and metrics["finished_trials"] == 8 and metrics["failed_trials"] == 0
    for condition in ("scratch", "pretrained"):
        assert 0 <= metrics[f"best_val_accuracy_{condition}"] <= 1
        assert 0 <= metrics[f"chosen_test_accuracy_{condition}"] <= 1
    assert metrics["pretraining_gain_ci_low"] <= metrics["pretraining_gain"] <= metrics["pretraining_gain_ci_high"]
    assert parent.data.tags[ps.GAIN_AT_TAG] == "dataset_size=96, epochs_run=3"  # the smoke grid's largest cell
    assert metrics["frontier_size"] >= 1
    assert metrics["total_train_macs"] == pytest.approx(sum(t.data.metrics["train_macs"] for t in trials))
    assert metrics["total_trial_seconds"] == pytest.approx(sum(t.data.metrics["wall_time_s"] for t in trials))
    for key in metrics:
        assert [m.step for m in client.get_metric_history(parent.info.run_id, key)] == [0], key


def test_the_smoke_sweeps_parent_has_the_summary_as_description_and_report_html(smoke_sweep, smoke_parent,
                                                                                tmp_path):
    client, parent, _ = smoke_parent
    run_id = parent.info.run_id
    report_md = client.download_artifacts(run_id, "report.md", str(tmp_path))
    note = parent.data.tags[ps.NOTE_TAG]
    assert note == "\n".join(ps.report_summary(report_md)) + FOOTER and note.startswith("- 8 runs finished")
    assert "\n".join(ps.report_summary(report_md)) in smoke_sweep[1].stdout  # what the sweep printed at its end
    page = Page(open(client.download_artifacts(run_id, "report.html", str(tmp_path)), encoding="utf-8").read())
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", open(report_md).read())
    assert "frontier" in [i["alt"] for i in page.images]
    assert len(page.images) == len(links) >= 3 and len(page.tables) >= 4
    for image in page.images:
        assert len(decoded(image["src"])) > 10_000  # a real figure, inside the page
