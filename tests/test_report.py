"""The report from hand-made tables (no MLflow): files, figures, and numbers that match the runs;
selection on validation, intervals everywhere, and sentences no surer than their intervals."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xfer import frontier as fr
from xfer import report, stats, uncertainty
from xfer.errors import UsageError

FAMILIES = ["beta", "chi2", "exponential", "gamma", "laplace", "normal", "uniform", "weibull"]
AUDIT = {"confusable": [{"classes": ["exponential", "gamma"], "reason": "same distribution"}],
         "bayes_accuracy_ceiling": 0.9375}
_ids = itertools.count()


def run(init, size, bs, acc, *, seed=0, epochs=6, epochs_run=None, lr=0.01) -> dict:
    epochs_run = epochs if epochs_run is None else epochs_run
    n_train = int(0.8 * size)
    train_time = 0.002 * n_train * epochs_run
    return {"run_id": f"run{next(_ids)}", "run_name": f"resnet18-{init}-all-n{size}-bs{bs}-ep{epochs}",
            "status": "FINISHED", "model": "resnet18", "init": init, "train_layers": "all",
            "dataset_size": size, "n_train": n_train, "batch_size": bs, "epochs": epochs, "lr": lr,
            "seed": seed, "epochs_run": epochs_run, "stopped_early": epochs_run < epochs,
            "test_accuracy": acc, "test_precision_macro": acc - 0.011, "test_recall_macro": acc - 0.022,
            "test_f1_macro": acc - 0.017, "test_auc_roc_ovr": min(1.0, acc + 0.04), "test_loss": 2 * (1 - acc),
            "train_accuracy": min(1.0, acc + 0.06), "val_accuracy": acc - 0.01, "n_test": 100, "n_val": 20,
            "train_time_s": train_time, "wall_time_s": train_time + 3.0,
            "train_macs": 3.0 * 37e6 * n_train * epochs_run, "macs_epochs_per_batch": 37e6 * epochs_run / bs,
            "gpu_seconds": 0.0,
            # silhouettes grow with accuracy, so the separation table has numbers to check
            **{f"silhouette_{stage}_{kind}": round(acc * k - 0.3, 4)
               for k, stage in ((0.2, "early"), (0.5, "middle"), (0.9, "late")) for kind in ("features", "2d")}}


def sweep_runs() -> pd.DataFrame:
    runs = [run("scratch", 200, 8, 0.52), run("scratch", 200, 16, 0.47),
            run("scratch", 800, 8, 0.71), run("scratch", 800, 16, 0.55, epochs_run=2),  # ASHA-stopped
            run("pretrained", 200, 8, 0.83), run("pretrained", 200, 16, 0.80),
            run("pretrained", 800, 16, 0.90)]
    runs += [run("pretrained", 800, 8, acc, seed=s) for s, acc in enumerate((0.93, 0.95, 0.91))]
    return pd.DataFrame(runs)


FAILED = pd.DataFrame([{"run_id": "bad", "run_name": "resnet18-pretrained-all-n800-bs32-ep6",
                        "status": "FAILED", "error": "ValueError: a|b is not allowed"}])


def history(epochs: int, accuracy: float) -> pd.DataFrame:
    steps = np.arange(1, epochs + 1)
    return pd.DataFrame({"train_accuracy": accuracy * steps / epochs + 0.05, "val_accuracy": accuracy * steps / epochs,
                         "train_loss": 2.0 / steps, "val_loss": 2.2 / steps}, index=pd.Index(steps, name="epoch"))


def confusion(accuracy: float) -> dict:
    matrix = np.eye(8, dtype=int) * 10
    e, g = FAMILIES.index("exponential"), FAMILIES.index("gamma")
    matrix[e, e], matrix[e, g] = 6, 4
    return {"classes": FAMILIES, "matrix": matrix.tolist()}


def roc(auc: float) -> dict:
    fpr = np.linspace(0, 1, 101)
    return {"fpr": fpr.tolist(), "tpr": np.clip(fpr ** (1 - auc) , 0, 1).tolist(), "auc": auc}


def embedding(n: int = 24) -> dict:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 8
    return {"method": "tsne", "n": n, "stages": {stage: {
        "module": stage, "dim": 16, "silhouette_features": 0.1, "silhouette_2d": 0.2,
        "points": (rng.normal(size=(n, 2)) + labels[:, None]).round(4).tolist(),
        "labels": labels.tolist()} for stage in ("early", "middle", "late")}}


# the parent run's study_card.json (xfer.report.card): with it the report holds every file
CARD = {"study": "pdf_grid", "preset": "seed", "study_preset": "seed", "departures": ["a full factorial"],
        "published": {"study": "000.txt", "title": "PDF plots", "results": [
            {"label": "pretrained", "match": {"init": "pretrained"}, "dataset_size": None,
             "metrics": {"test_accuracy": 0.9}}]},
        "data": {"describe": "pdf plots", "genuine": True, "note": "", "val_is_test": False}, "hardware": "cpu"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    runs = sweep_runs()
    detail = report.detail_run_ids(runs)
    groups = report.group_run_ids(runs)
    out = tmp_path_factory.mktemp("report")
    path = report.write_report(runs, FAILED, {r: history(6, 0.9) for r in detail},
                               {r: confusion(0.9) for r in detail}, out, target_accuracy=0.7,
                               audit=AUDIT, title="test sweep",
                               rocs={r: roc(0.9) for r in groups.values()},
                               embeddings={r: embedding() for r in groups.values()}, study_card=CARD)
    return path, runs, detail


def test_pretraining_gain_section_takes_the_best_of_each_init_by_validation_per_size(written):
    path, runs, _ = written
    table = md_table(path.read_text(), "## What pretraining is worth, by training-set size and budget")
    assert list(table["training images"]) == ["200", "800"] and set(table["epochs"]) == {"6"}
    points = fr.aggregate_seeds(runs)
    for size, row in zip((200, 800), table.itertuples()):
        best = points[points["dataset_size"] == size].sort_values("val_accuracy").groupby("init").tail(1).set_index("init")
        for init in ("scratch", "pretrained"):
            assert table.loc[row.Index, init].startswith(fr.point_accuracy_text(best.loc[init]))
            assert f"`{best.loc[init, 'config']}`" in table.loc[row.Index, init]
        # no predictions: unpaired, Newcombe from the two intervals (100 test images each)
        assert table.loc[row.Index, "method"] == "unpaired: Newcombe, from the two Wilson intervals"
        gain = best.loc["pretrained", "test_accuracy"] - best.loc["scratch", "test_accuracy"]
        assert table.loc[row.Index, "gain (points) [95% CI]"].startswith(f"{gain * 100:+.1f} points [")
        assert table.loc[row.Index, "verdict"] == "pretrained better"
    gains = pd.read_csv(path.parent / "pretraining_gain.csv")
    assert {"gain", "gain_low", "gain_high", "scratch_ci_low", "pretrained_ci_high", "verdict"} <= set(gains)


def test_roc_and_separation_sections_show_the_best_run_of_each_model_and_condition(written):
    path, runs, _ = written
    text = path.read_text()
    assert "## One-vs-rest ROC curves" in text and "![ROC curves](roc_curves.png)" in text
    table = md_table(text, "## Feature separation by stage")
    assert set(table["model / condition"]) == {"resnet18 pretrained", "resnet18 scratch"}
    points = fr.aggregate_seeds(runs)  # the best configuration by validation, its seeds averaged
    best = points.sort_values("val_accuracy", ascending=False).groupby("init").head(1)
    for _, run_row in best.iterrows():
        row = table[table["model / condition"] == f"resnet18 {run_row['init']}"].iloc[0]
        assert row["late (features / 2-D)"] == (f"{run_row['silhouette_late_features']:.3f} / "
                                                f"{run_row['silhouette_late_2d']:.3f}")
    assert "![embeddings](embeddings.png)" in text


def md_table(text: str, heading: str) -> pd.DataFrame:
    """The first markdown table after ``heading``, as strings."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in rows]
    return pd.DataFrame(cells[2:], columns=cells[0])


def assert_real_png(path, min_size=(800, 400)) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colours) > 50, f"{path.name} looks blank"


def test_every_file_is_written_and_every_figure_is_a_real_png(written):
    path, _, _ = written
    names = {p.name for p in path.parent.iterdir()}
    # the forecast needs three sizes and the transferability section scores: neither here
    from xfer.report import scaling_section, transferability_section

    only_with_more = {scaling_section.FILE_NAME, scaling_section.CSV_NAME, *transferability_section.FILE_NAMES}
    assert names == set(report.FILE_NAMES) - only_with_more
    text = path.read_text()
    for png in path.parent.glob("*.png"):
        assert_real_png(png)
        assert f"({png.name})" in text  # linked from report.md


def test_detail_runs_are_the_best_configuration_of_each_init_closest_to_its_mean(written):
    _, runs, detail = written
    by_id = runs.set_index("run_id")
    assert sorted(by_id.loc[detail, "init"]) == ["pretrained", "scratch"]
    assert sorted(by_id.loc[detail, "test_accuracy"]) == [0.71, 0.93]  # mean of 0.93, 0.95, 0.91 is 0.93


def test_frontier_csv_is_non_dominated_and_sorted_by_cost(written):
    path, _, _ = written
    front = pd.read_csv(path.parent / "frontier.csv")
    configs = pd.read_csv(path.parent / "configurations.csv")
    assert set(front["scope"]) == {"all", "scratch", "pretrained"}
    assert len(configs) == 8  # 10 runs, 3 of them seeds of one configuration
    for scope, group in front.groupby("scope"):
        pool = configs if scope == "all" else configs[configs["condition"] == scope]
        assert group["train_macs"].is_monotonic_increasing
        for _, p in group.iterrows():  # membership by validation accuracy
            dominated = ((pool["train_macs"] <= p["train_macs"]) & (pool["val_accuracy"] >= p["val_accuracy"])
                         & ((pool["train_macs"] < p["train_macs"]) | (pool["val_accuracy"] > p["val_accuracy"])))
            assert not dominated.any(), p["config"]
        # and every configuration off the frontier is dominated by one on it
        rest = pool[~pool["config"].isin(group["config"])]
        for _, q in rest.iterrows():
            assert ((group["train_macs"] <= q["train_macs"]) & (group["val_accuracy"] >= q["val_accuracy"])).any()
    for table in (front, configs):  # every accuracy comes with its interval
        assert (table["test_accuracy_ci_low"] <= table["test_accuracy"]).all()
        assert (table["test_accuracy"] <= table["test_accuracy_ci_high"]).all()


def test_best_configuration_table_holds_the_runs_numbers(written):
    path, runs, _ = written
    table = md_table(path.read_text(), "## Best configuration per condition and dataset size")
    assert len(table) == 4
    seeds = runs[(runs["init"] == "pretrained") & (runs["dataset_size"] == 800) & (runs["batch_size"] == 8)]
    row = table[(table["condition"] == "pretrained") & (table["images"] == "800")].iloc[0]
    interval = uncertainty.accuracy_interval(seeds)  # t across the seeds, widened by the test set's Wilson
    assert interval["test_accuracy_ci_method"].startswith("seeds (t, 3 seeds) and test images")
    assert row["test acc [95% CI]"] == fr.accuracy_text(seeds["test_accuracy"].mean(), interval["test_accuracy_ci_low"],
                                                        interval["test_accuracy_ci_high"]) + " (3 seeds)"
    assert row["train acc"] == f"{seeds['train_accuracy'].mean():.3f}"
    assert row["test loss"] == f"{seeds['test_loss'].mean():.3f}"
    assert (row["batch size"], row["lr"], row["epochs"]) == ("8", "0.01", "6")
    scratch = table[(table["condition"] == "scratch") & (table["images"] == "800")].iloc[0]
    assert scratch["test acc [95% CI]"] == "71.0% [61.5, 79.0]" and scratch["val acc"] == "0.700"  # 71 of 100


def test_metrics_and_time_tables_hold_the_runs_numbers(written):
    path, runs, _ = written
    text = path.read_text()
    metrics = md_table(text, "## Test metrics per model and condition")
    row = metrics[(metrics["condition"] == "scratch") & (metrics["images"] == "200")].iloc[0]
    assert (row["accuracy [95% CI]"], row["precision (macro)"], row["recall (macro)"], row["F1 (macro)"]) == \
        (fr.accuracy_text(0.52, *stats.wilson_interval(52, 100)), "0.509", "0.498", "0.503")
    times = md_table(text, "## Training time per model")
    scratch_800 = runs[(runs["init"] == "scratch") & (runs["dataset_size"] == 800)]
    row = times[(times["condition"] == "scratch") & (times["images"] == "800")].iloc[0]
    assert row["runs"] == "2"
    assert row["mean train_time_s"] == f"{scratch_800['train_time_s'].mean():.3f}"
    per_epoch = (scratch_800["train_time_s"] / scratch_800["epochs_run"]).mean()
    assert row["mean s / epoch"] == f"{per_epoch:.3f}"
    assert row["its test acc [95% CI]"] == "71.0% [61.5, 79.0]"  # the run best on validation (0.70 vs 0.54)


def test_summary_states_the_numbers(written):
    path, _, _ = written
    summary = path.read_text().split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "10 runs finished (1 stopped early by the scheduler) in 8 configurations; 1 run did not finish" in summary
    # n=800: pretrained (mean of 3 seeds 0.93: t interval [88.0, 98.0] widened by the Wilson interval
    # of its 100 test images) vs scratch 71 of 100: +22 points, unpaired
    assert ("At 800 images, best by validation accuracy: pretrained (resnet18-pretrained-all-n800-bs8-ep6, "
            "test 93.0% [84.6, 99.1]) vs scratch (resnet18-scratch-all-n800-bs8-ep6, test 71.0% [61.5, 79.0]): "
            "+22.0 points [") in summary
    assert "(unpaired: Newcombe, from the two Wilson intervals): pretrained better, at the same train_macs" in summary
    assert "At 200 images" in summary and "+31.0 points [" in summary
    # target 0.7 on validation: pretrained's cheapest is n200 bs16 (val 0.79), scratch's n800 bs8 (val 0.70)
    assert "pretrained reaches 70% validation accuracy at 0.25x the train_macs of scratch" in summary
    assert "test 71.0% [61.5, 79.0]: reaches 70% within noise" in summary
    assert "The test set does not confirm that both reach 70%, so the 0.25x holds only within its noise." in summary
    assert "No break-even at 70%: the pretrained runs logged no pretrain_macs" in summary
    assert "Bayes accuracy ceiling is 93.75%" in summary and "93.0% [84.6, 99.1] on the test set: at or below it" in summary


def test_summary_counts_epoch_milestone_runs_only_when_there_are_some(written, tmp_path):
    path, _, _ = written
    assert "epoch milestone" not in path.read_text()  # runs without the milestone_of column
    runs = sweep_runs().assign(milestone_of=None)
    runs.loc[[0, 2], "milestone_of"] = "trial_a"  # two runs measured inside a longer one
    text = report.write_report(runs, FAILED, {}, {}, tmp_path).read_text()
    assert ("- 2 runs of these are epoch milestones: the result as of epoch m inside a longer run "
            "of the same configuration (--epoch-milestones)") in text
    assert "their times and costs count up to epoch m." in text
    runs["milestone_of"] = None  # a sweep without milestones: no sentence
    assert "epoch milestone" not in report.write_report(runs, FAILED, {}, {}, tmp_path / "b").read_text()


def test_failed_runs_are_listed_with_their_error_not_plotted(written):
    path, _, _ = written
    table = md_table(path.read_text(), "## Runs left out")
    assert table.to_dict("records") == [{"run": "resnet18-pretrained-all-n800-bs32-ep6", "status": "FAILED",
                                         "error": "ValueError: a\\|b is not allowed"}]
    assert "bad" not in set(pd.read_csv(path.parent / "configurations.csv")["run_ids"])


def test_seed_spread_and_noise_are_reported(written):
    path, _, _ = written
    text = path.read_text()
    spread = md_table(text, "## Seed spread")
    assert spread[["runs", "seeds", "mean", "min", "max"]].values.tolist() == [["3", "0,1,2", "0.930", "0.910", "0.950"]]
    mean, t_low, t_high = stats.seed_interval([0.93, 0.95, 0.91])
    w_low, w_high = stats.wilson_interval(93, 100)  # the seeds share 100 test images
    low, high = mean - np.hypot(mean - t_low, mean - w_low), mean + np.hypot(t_high - mean, w_high - mean)
    assert spread[["95% CI low", "95% CI high"]].values.tolist() == [[f"{low:.3f}", f"{high:.3f}"]]
    assert low < t_low and high > t_high  # wider than the seeds' spread alone


def test_without_optional_inputs_only_what_can_be_drawn_is_written(tmp_path):
    (tmp_path / "learning_curves.png").write_bytes(b"stale")  # from an older report in the same folder
    runs = sweep_runs().drop(columns=["dataset_size"])
    path = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path, cost="wall_time_s")
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "report.html", "frontier.csv", "configurations.csv",
                                                    "frontier.png", "pretraining_gain.csv"}
    text = path.read_text()
    assert "size.png" not in text and "learning_curves.png" not in text and "Every run finished." in text
    assert_real_png(tmp_path / "frontier.png")
    front = pd.read_csv(tmp_path / "frontier.csv")
    assert front[front["scope"] == "all"]["wall_time_s"].is_monotonic_increasing


@pytest.mark.parametrize("bad, message", [({"target_accuracy": 1.5}, r"\(0, 1\]"),
                                          ({"cost": "flops"}, "unknown cost metric"),
                                          ({"amortize_pretraining": 0}, "whole number of uses >= 1"),
                                          ({"runs": "nan"}, "a finite test_accuracy")])
def test_bad_input_raises_before_anything_is_written(tmp_path, bad, message):
    runs = sweep_runs()
    if bad.pop("runs", None):
        runs["test_accuracy"] = np.nan
    with pytest.raises(UsageError, match=message):
        report.write_report(runs, FAILED, {}, {}, tmp_path / "out", **bad)
    assert not (tmp_path / "out").exists()


def test_crowded_frontier_labels_never_overlap_and_stay_inside(tmp_path):
    rng = np.random.default_rng(0)
    runs = pd.DataFrame([run(init, size, bs, float(np.clip(0.5 + 0.1 * np.log10(size) + (init == "pretrained") * 0.15
                                                             + rng.normal(0, 0.02), 0, 1)),
                             epochs=ep, lr=lr)
                         for init in ("scratch", "pretrained") for size in (100, 300, 1000, 3000)
                         for bs in (8, 32) for ep in (2, 4, 8) for lr in (0.01, 0.1)])
    analysis = fr.analyse(runs, "train_macs")
    figure = report.frontier_figure(analysis, ceiling=0.9375, target=0.8)
    ax = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text() in set(analysis.points["label"])]
    assert len(labels) >= len(analysis.frontier[analysis.frontier["scope"] == "all"]) // 2
    boxes = [t.get_window_extent(renderer) for t in labels]
    frame = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert any(np.allclose(line.get_ydata(), 0.9375) for line in ax.get_lines())  # the ceiling
    assert ax.get_xscale() == "log"


def predictions_for(correct: list[int], sha: str = "heldout-1") -> dict:
    return {"test_set_sha256": sha, "labels": [0] * len(correct), "predicted": [0 if c else 1 for c in correct]}


def small_sweep(pre_correct: int, scratch_correct: int, n_test: int = 8, val=(0.70, 0.75)
                ) -> tuple[pd.DataFrame, dict]:
    """A quick sweep: one scratch and one pretrained run on the same n_test held-out images,
    each right on its first images; pretrained 4x cheaper; ``val``: (scratch, pretrained)."""
    runs = pd.DataFrame([run("scratch", 100, 8, scratch_correct / n_test), run("pretrained", 100, 8, pre_correct / n_test)])
    runs["train_macs"] = [4e10, 1e10]
    runs["n_test"] = n_test
    runs["split"] = "heldout"
    runs["test_set_sha256"] = "heldout-1"
    runs["pretrain_macs"] = [0.0, 3e11]
    runs["pretrain_macs_basis"] = [None, "estimate: ImageNet recipe, 90 epochs x 1.28M images x 3 x forward MACs"]
    runs["val_accuracy"] = list(val)
    given = {runs["run_id"][0]: predictions_for([1] * scratch_correct + [0] * (n_test - scratch_correct)),
             runs["run_id"][1]: predictions_for([1] * pre_correct + [0] * (n_test - pre_correct))}
    return runs, given


def test_a_test_set_too_small_to_separate_is_said_and_no_winner_is_named(tmp_path):
    # 7/8 vs 6/8 on the same 8 images: 12.5 points, paired exact interval includes zero; scratch
    # is better on validation and 4x dearer, so both are on the frontier
    runs, given = small_sweep(6, 7, val=(0.80, 0.75))
    text = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path, predictions=given, audit={
        "bayes_accuracy_ceiling": 0.75}, num_classes=8, sweep_params={"scheduler": "fifo"}).read_text()
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    difference = stats.paired_difference([1] * 7 + [0], [1] * 6 + [0] * 2)  # scratch - pretrained
    assert (f"+12.5 points [{difference.low * 100:+.1f}, {difference.high * 100:+.1f}] (paired: exact McNemar): "
            "no detectable difference, at 4x the train_macs") in summary
    assert "The test set cannot separate the 2 configurations on the overall frontier" in summary
    assert "the frontier names no winner" in summary
    for claim in (" better", "beats", "winner:", "wins"):  # no win where the interval includes zero
        assert claim not in summary, claim
    # 87.5% [52.9, 97.8] is above the 75% ceiling only within noise: said, but no warning; the
    # only warning is that one seed per configuration leaves seed noise unmeasured
    warnings = [line for line in summary.splitlines() if "Warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("- Warning: One seed per configuration")
    assert "87.5% [52.9, 97.8] on the test set: above it, but within the interval's noise" in summary
    assert "Break-even at 75%: N = 10 uses." in summary  # the common target: pretrained's best validation
    table = md_table(text, "## What pretraining is worth")
    assert table["verdict"].tolist() == ["no detectable difference"]
    assert table["method"].tolist() == ["paired: exact McNemar"]


def test_guards_warn_in_the_summary(tmp_path):
    runs, given = small_sweep(950, 120, n_test=1000)  # 95% [93.5, 96.2] > 75%; 12% holds 1/8
    text = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path, predictions=given,
                               audit={"bayes_accuracy_ceiling": 0.75}, num_classes=8).read_text()
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert ("- Warning: resnet18-pretrained-all-n100-bs8-ep6: test accuracy 95.0% [93.5, 96.2] lies entirely above "
            "the dataset audit's Bayes accuracy ceiling of 75%. Likely causes:") in summary
    assert "- Warning: At chance level (1/8 = 12.5% lies inside the 95% interval): 1 of 2: " \
           "resnet18-scratch-all-n100-bs8-ep6 12.0% [10.1, 14.2]." in summary
    assert "pretrained better" in summary  # +83 points on 1000 images: a win, and said so


def test_how_it_was_measured_names_split_test_size_and_scheduler(tmp_path):
    runs, given = small_sweep(7, 6)
    text = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path, predictions=given, sweep_params={
        "scheduler": "asha", "scheduler_detail": "rungs compare trials of one dataset size and init",
        "search": "grid"}).read_text()
    section = text.split("## How it was measured", 1)[1].split("\n## ", 1)[0]
    assert "reads validation accuracy (20 images per run)" in section
    assert "- Test split: `heldout`: a fixed held-out test set" in section
    assert "- Test set size: 8 images per run; 1 distinct test set by sha256." in section
    assert "- Scheduler: `asha` (rungs compare trials of one dataset size and init); search: `grid`." in section
    assert "- Scheduler: not recorded" in report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path / "b").read_text()


def test_pretraining_cost_amortisation_and_break_even_in_the_report(tmp_path):
    runs, given = small_sweep(7, 7)  # both reach the same validation target; pretrained 1e10, scratch 4e10
    runs["val_accuracy"] = [0.75, 0.75]
    text = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path, predictions=given).read_text()
    section = text.split("## Pretrained weights and what they cost", 1)[1].split("\n## ", 1)[0]
    assert ("- Pretraining cost of `resnet18`: 3e+11 MACs; basis: estimate: ImageNet recipe, 90 epochs x 1.28M "
            "images x 3 x forward MACs.") in section
    assert "- Not counted on the cost axis (the default)" in section
    # 3e11 / (4e10 - 1e10) = 10 uses
    assert "- Break-even at 75%: N = 10 uses." in section and "cheaper from 11 uses of the weights on" in section
    assert "Break-even at 75%: N = 10 uses." in text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    amortised = report.write_report(runs, pd.DataFrame(), {}, {}, tmp_path / "n4", predictions=given,
                                    amortize_pretraining=4).read_text()
    assert "(cost: `train_macs_amortized`)" in amortised
    assert "each pretrained run costs train_macs + pretrain_macs / 4" in amortised
    configs = pd.read_csv(tmp_path / "n4" / "configurations.csv").set_index("condition")
    assert configs.loc["pretrained", "train_macs_amortized"] == pytest.approx(1e10 + 3e11 / 4)
    assert configs.loc["scratch", "train_macs_amortized"] == pytest.approx(4e10)
