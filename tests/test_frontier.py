"""The pure frontier logic on hand-made runs tables: non-domination, ties, NaNs, seeds, the
target query, selection on validation only, test intervals and separation, the guards,
amortised pretraining and the break-even."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from xfer import frontier as fr
from xfer import stats
from xfer.errors import UsageError

_ids = itertools.count()


def run(init="scratch", acc=0.5, macs=1e9, *, val=None, seed=0, bs=4, size=100, epochs=10, epochs_run=None,
        layers="all", lr=0.01, **extra) -> dict:
    """One finished run; its validation accuracy is its test accuracy unless ``val`` says otherwise."""
    return {"run_id": f"r{next(_ids)}", "model": "resnet18", "init": init, "train_layers": layers,
            "dataset_size": size, "batch_size": bs, "epochs": epochs,
            "epochs_run": epochs if epochs_run is None else epochs_run, "lr": lr, "seed": seed,
            "test_accuracy": acc, "val_accuracy": acc if val is None else val, "train_macs": macs,
            "wall_time_s": 1.0, "gpu_seconds": 0.0, "test_loss": 1 - acc, **extra}


def points_of(*runs, cost="train_macs") -> pd.DataFrame:
    cleaned, _ = fr.clean_runs(pd.DataFrame(runs), cost)
    return fr.aggregate_seeds(cleaned)


def brute_force_non_dominated(cost, acc) -> np.ndarray:
    n = len(cost)
    return np.array([not any(cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or acc[j] > acc[i])
                             for j in range(n)) for i in range(n)])


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_is_exactly_the_non_dominated_set(seed):
    rng = np.random.default_rng(seed)
    # rounded to few values so that cost ties, accuracy ties and exact duplicates all occur
    cost = rng.integers(1, 8, 60).astype(float)
    acc = rng.integers(0, 6, 60) / 5
    mask = fr.pareto_mask(cost, acc)
    np.testing.assert_array_equal(mask, brute_force_non_dominated(cost, acc))
    assert mask.any()


def test_ties_identical_points_are_both_kept_and_weaker_twins_are_not():
    mask = fr.pareto_mask([1, 1, 1, 2, 3, 3], [0.5, 0.5, 0.4, 0.5, 0.7, 0.7])
    # identical (1, 0.5) twice: both kept; (1, 0.4) loses at equal cost; (2, 0.5) loses at equal
    # accuracy; (3, 0.7) twice: both kept
    assert mask.tolist() == [True, True, False, False, True, True]


def test_pareto_mask_refuses_nan():
    with pytest.raises(ValueError, match="finite"):
        fr.pareto_mask([1.0, np.nan], [0.5, 0.6])


def test_single_point_is_its_own_frontier_and_answers_the_target():
    points = points_of(run("pretrained", 0.8, 5e9))
    front = fr.frontiers(points)
    assert front["scope"].tolist() == ["all", "pretrained"]
    assert (front["train_macs"] == 5e9).all()
    answer = fr.cheapest_reaching(points, 0.75)
    assert answer.table["reached"].tolist() == [True]
    assert answer.sentences == ["pretrained reaches 75% validation accuracy at train_macs 5e+09 "
                                "(resnet18-pretrained-all-n100-bs4-ep10, test 80.0%: no interval)."]


def test_nan_inf_and_missing_values_are_dropped_and_counted_never_a_crash():
    runs = pd.DataFrame([run(acc=0.6, macs=1e9), run(acc=np.nan, macs=2e9), run(acc=0.7, macs=np.inf),
                         run(acc=0.8, macs=None), run(acc=0.9, macs=3e9)])
    runs.loc[len(runs)] = run(acc=0.7, val=np.nan, macs=4e9)  # validation is what selects: required
    runs.loc[len(runs)] = run(acc=np.nan, val=0.7, macs=4e9)  # test is what is reported: required too
    kept, dropped = fr.clean_runs(runs)
    assert kept["test_accuracy"].tolist() == [0.6, 0.9]
    assert dropped == {"no finite val_accuracy": 2, "no finite test_accuracy": 1, "no finite train_macs": 2}
    assert fr.format_dropped(dropped) == ("2 with no finite val_accuracy, 1 with no finite test_accuracy, "
                                          "2 with no finite train_macs")


def test_a_duplicated_run_counts_once():
    one = run(acc=0.7)
    kept, _ = fr.clean_runs(pd.DataFrame([one, one, run(acc=0.6, seed=1)]))
    points = fr.aggregate_seeds(kept)
    assert len(kept) == 2 and points["n_runs"].tolist() == [2]


@pytest.mark.parametrize("runs", [[], [run(acc=np.nan)], [run(acc=np.nan), run(macs=np.nan)]],
                         ids=["no runs", "one NaN run", "all NaN"])
def test_nothing_left_after_filtering_is_a_usage_error(runs):
    table = pd.DataFrame(runs, columns=list(run().keys()))
    with pytest.raises(UsageError, match="no finished run has a finite val_accuracy, a finite test_accuracy "
                                         "and a positive train_macs"):
        fr.clean_runs(table)


def test_gpu_seconds_of_a_cpu_sweep_says_why_and_what_to_use():
    with pytest.raises(UsageError, match=r"2 with gpu_seconds <= 0.*--cost train_macs"):
        fr.clean_runs(pd.DataFrame([run(), run()]), "gpu_seconds")


def test_unknown_cost_and_target_outside_0_1_are_usage_errors():
    with pytest.raises(UsageError, match=r"unknown cost metric 'flops' \(valid: train_macs, wall_time_s"):
        fr.check_cost("flops")
    for bad in (0, -0.1, 1.01, float("nan")):
        with pytest.raises(UsageError, match=r"\(0, 1\]"):
            fr.check_target(bad)
    assert fr.check_target(1) == 1.0 and fr.check_target(None) is None


def test_seeds_of_one_configuration_become_one_point_with_their_interval():
    points = points_of(run(acc=0.80, seed=0), run(acc=0.84, seed=1), run(acc=0.90, seed=2),
                       run(acc=0.70, bs=8, n_test=100), run(acc=0.6, bs=16, n_test=8, test_accuracy_ci_low=0.1,
                                                           test_accuracy_ci_high=0.9))
    three = points[points["n_runs"] == 3].iloc[0]
    assert three["test_accuracy"] == pytest.approx(np.mean([0.80, 0.84, 0.90]))
    assert three["test_accuracy_std"] == pytest.approx(np.std([0.80, 0.84, 0.90], ddof=1))
    assert (three["test_accuracy_min"], three["test_accuracy_max"]) == (0.80, 0.90)
    assert three["seeds"] == "0,1,2" and three["test_accuracies"] == (0.80, 0.84, 0.90)
    # mean ± t(0.975, 2) * s / sqrt(3) = 0.84667 ± 4.302653 * 0.050332 / 1.732051
    half = 4.302653 * np.std([0.80, 0.84, 0.90], ddof=1) / np.sqrt(3)
    assert (three["test_accuracy_ci_low"], three["test_accuracy_ci_high"]) == pytest.approx(
        (three["test_accuracy"] - half, three["test_accuracy"] + half), abs=1e-6)
    assert three["test_accuracy_ci_method"] == "seeds (t, 3 seeds)"
    assert three["test_loss"] == pytest.approx(1 - three["test_accuracy"])  # metrics averaged too
    assert len(three["run_ids"]) == 3
    # the learning curves show the seed closest to the mean validation accuracy (0.847): seed 1
    assert three["representative_run_id"] == three["run_ids"][1]
    single = points[points["label"] == "bs8"].iloc[0]  # one run, 70 of 100: Wilson
    assert (single["test_accuracy_ci_low"], single["test_accuracy_ci_high"]) == pytest.approx(
        stats.wilson_interval(70, 100))
    logged = points[points["label"] == "bs16"].iloc[0]  # the trainer's logged bounds win
    assert (logged["test_accuracy_ci_low"], logged["test_accuracy_ci_high"]) == (0.1, 0.9)
    assert single["test_accuracy_ci_method"] == "Wilson" and three["label"] == "bs4"
    assert single["config"] == "resnet18-scratch-all-n100-bs8-ep10"


def test_asha_stopped_run_is_a_cheaper_configuration_of_its_own():
    points = points_of(run(acc=0.8, macs=10e9, seed=0), run(acc=0.5, macs=3e9, epochs_run=3, seed=1))
    assert sorted(points["label"]) == ["ep10", "ep3/10"]
    assert points["n_runs"].tolist() == [1, 1]


def test_frontier_points_are_non_dominated_per_scope_and_conditions_split_by_train_layers():
    runs = [run("scratch", 0.5, 1e9), run("scratch", 0.7, 4e9, bs=8), run("scratch", 0.6, 5e9, bs=16),
            run("pretrained", 0.8, 2e9), run("pretrained", 0.85, 8e9, bs=8),
            run("pretrained", 0.75, 1e9, layers="head")]
    points = points_of(*runs)
    assert sorted(points["condition"].unique()) == ["pretrained/all", "pretrained/head", "scratch/all"]
    front = fr.frontiers(points)
    assert set(front["scope"]) == {"all", "pretrained/all", "pretrained/head", "scratch/all"}
    overall = front[front["scope"] == "all"]
    assert list(zip(overall["train_macs"], overall["val_accuracy"])) == [(1e9, 0.75), (2e9, 0.8), (8e9, 0.85)]
    scratch = front[front["scope"] == "scratch/all"]
    assert scratch["val_accuracy"].tolist() == [0.5, 0.7]  # 0.6 at 5e9 is dominated by 0.7 at 4e9
    for scope, group in front.groupby("scope"):
        members = points if scope == "all" else points[points["condition"] == scope]
        for _, p in group.iterrows():
            assert not ((members["train_macs"] <= p["train_macs"]) & (members["val_accuracy"] >= p["val_accuracy"])
                        & ((members["train_macs"] < p["train_macs"]) | (members["val_accuracy"] > p["val_accuracy"]))).any()


def test_other_cost_axes_change_the_frontier():
    runs = [run(acc=0.6, macs=1e9, wall_time_s=50.0), run(acc=0.7, macs=2e9, bs=8, wall_time_s=10.0)]
    by_macs = fr.frontiers(points_of(*runs), "train_macs")
    by_time = fr.frontiers(points_of(*runs, cost="wall_time_s"), "wall_time_s")
    assert len(by_macs[by_macs["scope"] == "all"]) == 2
    assert by_time[by_time["scope"] == "all"]["val_accuracy"].tolist() == [0.7]


def test_target_query_finds_the_cheapest_reaching_config_and_the_cost_ratio():
    points = points_of(run("scratch", 0.85, 10e9), run("scratch", 0.92, 40e9, bs=8),
                       run("scratch", 0.95, 80e9, bs=16),
                       run("pretrained", 0.91, 12.4e9), run("pretrained", 0.97, 30e9, bs=8))
    answer = fr.cheapest_reaching(points, 0.9)
    table = answer.table.set_index("init")
    assert answer.reference == "scratch"
    assert table.loc["scratch", "cost"] == 40e9 and table.loc["pretrained", "cost"] == 12.4e9
    assert table.loc["pretrained", "cost_ratio"] == pytest.approx(0.31)
    assert answer.sentences == [
        "pretrained reaches 90% validation accuracy at 0.31x the train_macs of scratch (1.24e+10 vs 4e+10: "
        "resnet18-pretrained-all-n100-bs4-ep10, test 91.0%: no interval; vs resnet18-scratch-all-n100-bs8-ep10, "
        "test 92.0%: no interval).",
        "The test set does not confirm that both reach 90%, so the 0.31x holds only within its noise."]


def test_target_query_says_when_an_init_never_reaches_it():
    points = points_of(run("scratch", 0.7, 1e9), run("pretrained", 0.91, 2e9))
    answer = fr.cheapest_reaching(points, 0.9)
    assert answer.table.set_index("init").loc["scratch", "reached"] == False  # noqa: E712
    assert np.isnan(answer.table["cost_ratio"]).all()
    assert "scratch never reaches 90% validation accuracy (its best is 70%" in " ".join(answer.sentences)
    nobody = fr.cheapest_reaching(points, 0.99)
    assert nobody.sentences == ["No init reaches 99% validation accuracy (best: pretrained 91%, scratch 70%)."]


def test_target_is_reached_despite_the_last_float_bit():
    points = points_of(run(acc=0.7 + 0.2))  # 0.8999999999999999
    assert fr.cheapest_reaching(points, 0.9).table["reached"].tolist() == [True]


def test_best_per_group_breaks_accuracy_ties_by_cost_and_common_target_is_the_weakest_best():
    points = points_of(run("scratch", 0.8, 5e9), run("scratch", 0.8, 2e9, bs=8), run("pretrained", 0.9, 1e9))
    best = fr.best_per_group(points).set_index("init")
    assert best.loc["scratch", "train_macs"] == 2e9
    assert fr.common_target(points) == 0.8
    assert fr.common_target(points[points["init"] == "scratch"]) is None


# --- selection on validation only ----------------------------------------------------------------

def test_the_run_with_the_best_test_accuracy_but_a_worse_validation_accuracy_is_not_best():
    # same cost; A is better on validation, B on test: every choice must take A
    a = run("scratch", acc=0.80, val=0.90, macs=1e9, bs=4, n_test=1000)
    b = run("scratch", acc=0.95, val=0.85, macs=1e9, bs=8, n_test=1000)
    p = run("pretrained", acc=0.97, val=0.95, macs=1e9, n_test=1000)
    analysis = fr.analyse(pd.DataFrame([a, b, p]), target=0.88)
    best = fr.best_per_group(analysis.points).set_index("init")
    assert best.loc["scratch", "config"].endswith("bs4-ep10")
    assert analysis.best.set_index("condition").loc["scratch", "test_accuracy"] == 0.80
    scratch_front = analysis.frontier[analysis.frontier["scope"] == "scratch"]
    assert scratch_front["config"].tolist() == ["resnet18-scratch-all-n100-bs4-ep10"]  # B is dominated on val
    hit = analysis.target.table.set_index("init").loc["scratch"]
    assert hit["config"].endswith("bs4-ep10") and hit["test_accuracy"] == 0.80
    gain = analysis.gains.iloc[0]
    assert gain["scratch_config"].endswith("bs4-ep10") and gain["gain"] == pytest.approx(0.17)
    assert fr.common_target(analysis.points) == 0.90  # scratch's best validation, not its best test


def test_a_target_straddled_by_the_test_interval_is_reached_within_noise():
    # 50 test images: 46/50 = 92% [81.2, 96.8] straddles 90%;
    # 1000 images: 95% [93.5, 96.2] is above 90%; 85% [82.7, 87.1] falls short
    assert fr.reach_on_test(0.92, *stats.wilson_interval(46, 50), 0.9) == "within noise"
    assert fr.reach_on_test(0.95, *stats.wilson_interval(950, 1000), 0.9) == "reaches"
    assert fr.reach_on_test(0.85, *stats.wilson_interval(850, 1000), 0.9) == "falls short"
    points = points_of(run("scratch", 0.92, 4e9, val=0.91, n_test=50), run("pretrained", 0.95, 1e9, val=0.93, n_test=1000))
    answer = fr.cheapest_reaching(points, 0.9)
    assert answer.table.set_index("init")["on_test"].to_dict() == {"pretrained": "reaches", "scratch": "within noise"}
    text = " ".join(answer.sentences)
    assert "test 92.0% [81.2, 96.8]: reaches 90% within noise" in text
    assert "test 95.0% [93.5, 96.2]: reaches 90%; vs" in text
    assert "The test set does not confirm that both reach 90%, so the 0.25x holds only within its noise." in text


# --- comparing on the test set --------------------------------------------------------------------

def predictions(correct: list[int], sha: str = "set1") -> dict:
    """A test_predictions.json: label 0 everywhere, predicted right where ``correct`` is 1."""
    return {"test_set_sha256": sha, "labels": [0] * len(correct), "predicted": [0 if c else 1 for c in correct]}


def test_the_pretraining_gain_is_paired_on_the_same_test_images():
    # 100 images: pretrained alone right on 10, scratch alone on 2, both on 50: +8 points,
    # exact McNemar [0.4, 11.5], p = 158/4096 (tests/test_stats.py has the hand count)
    pre, scr = run("pretrained", 0.60, 1e9, n_test=100), run("scratch", 0.52, 1e9, n_test=100)
    correct_pre = [1] * 10 + [0] * 2 + [1] * 50 + [0] * 38
    correct_scr = [0] * 10 + [1] * 2 + [1] * 50 + [0] * 38
    given = {pre["run_id"]: predictions(correct_pre), scr["run_id"]: predictions(correct_scr)}
    gain = fr.analyse(pd.DataFrame([pre, scr]), predictions=given).gains.iloc[0]
    assert gain["paired"] and gain["method"] == "paired: exact McNemar"
    assert gain["gain"] == pytest.approx(0.08) and gain["p_value"] == pytest.approx(158 / 4096)
    assert (gain["gain_low"], gain["gain_high"]) == pytest.approx((0.0038069, 0.1149930), abs=1e-6)
    assert gain["verdict"] == "pretrained better"
    # a different test set: not paired, and said so; the wider unpaired interval includes zero
    given[scr["run_id"]] = predictions(correct_scr, sha="set2")
    unpaired = fr.analyse(pd.DataFrame([pre, scr]), predictions=given).gains.iloc[0]
    assert not unpaired["paired"]
    assert unpaired["method"] == "not paired: different test sets; unpaired: Newcombe, from the two Wilson intervals"
    assert unpaired["verdict"] == "no detectable difference"
    expected = stats.unpaired_difference(0.60, 100, 0.52, 100)
    assert (unpaired["gain_low"], unpaired["gain_high"]) == pytest.approx((expected.low, expected.high))


def test_the_gain_is_computed_per_size_and_budget_of_the_same_model():
    runs = [run("scratch", 0.5, 1e9, size=100, epochs=4, n_test=500), run("pretrained", 0.7, 1e9, size=100, epochs=4, n_test=500),
            run("scratch", 0.6, 2e9, size=100, epochs=8, n_test=500), run("pretrained", 0.72, 2e9, size=100, epochs=8, n_test=500),
            run("pretrained", 0.9, 2e9, size=400, epochs=8, n_test=500)]  # no scratch at n400: no row
    gains = fr.analyse(pd.DataFrame(runs)).gains
    assert list(zip(gains["dataset_size"], gains["epochs_run"])) == [(100, 4), (100, 8)]
    assert gains["gain"].tolist() == pytest.approx([0.2, 0.12])


def test_arms_with_budgets_of_their_own_are_compared_per_size():
    """CIFAR-10's transfer arm trains 6 epochs and its scratch arm 50: at each size the two never
    share a budget, so each is taken at its best budget and the row says which."""
    runs = [run("pretrained", 0.8, 1e9, size=40, epochs=6, n_test=500),
            run("scratch", 0.5, 5e9, size=40, epochs=50, n_test=500),
            run("scratch", 0.55, 6e9, size=40, epochs=50, bs=8, n_test=500)]
    gains = fr.analyse(pd.DataFrame(runs)).gains
    assert list(zip(gains["dataset_size"], gains["epochs_run"])) == [(40, "6 vs 50")]
    assert gains["gain"].tolist() == pytest.approx([0.25])  # against the better scratch run


def test_frontier_points_the_test_set_cannot_separate_are_flagged():
    # 8 test images each: 6/8 at 1e9 vs 7/8 at 2e9 (better on validation too): the paired
    # interval of +1 image includes zero; 1000 images, 60% vs 90%: separable
    cheap, dear = run(acc=6 / 8, macs=1e9, n_test=8), run(acc=7 / 8, macs=2e9, bs=8, n_test=8)
    given = {cheap["run_id"]: predictions([1] * 6 + [0] * 2), dear["run_id"]: predictions([1] * 7 + [0])}
    analysis = fr.analyse(pd.DataFrame([cheap, dear]), predictions=given)
    overall = analysis.frontier[analysis.frontier["scope"] == "all"].set_index("label")
    assert overall.loc["bs4", "not_separable_from"] == "resnet18-scratch-all-n100-bs8-ep10"
    pair = analysis.pairs.iloc[0]
    assert not pair["separable"] and pair["method"] == "paired: exact McNemar"
    assert pair["accuracy_difference"] == pytest.approx(1 / 8) and pair["low"] < 0 < pair["high"]
    far = fr.analyse(pd.DataFrame([run(acc=0.6, macs=1e9, n_test=1000), run(acc=0.9, macs=2e9, bs=8, n_test=1000)]))
    assert (far.frontier["not_separable_from"] == "").all() and far.pairs["separable"].all()


# --- guards -----------------------------------------------------------------------------------------

def test_ceiling_and_chance_guards_fire_on_hand_made_runs():
    points = points_of(run(acc=0.875, n_test=8),  # [52.9, 97.8]: above the ceiling only within noise
                       run(acc=0.95, bs=8, n_test=1000),  # [93.5, 96.2]: entirely above 75%
                       run(acc=0.15, bs=16, n_test=100),  # [9.3, 23.3] holds 1/8
                       run(acc=0.01, bs=32, n_test=400))  # [0.4, 2.5]: below 1/8 beyond noise
    lines = fr.guards(points, ceiling=0.75, num_classes=8)
    assert len(lines) == 4
    seeds = lines.pop(1)  # every configuration ran one seed: its intervals cannot show seed noise
    assert seeds.startswith("One seed per configuration: every interval here is the test set's sampling "
                            "noise only.") and "--num-samples K" in seeds
    assert lines[0].startswith("resnet18-scratch-all-n100-bs8-ep10: test accuracy 95.0% [93.5, 96.2] lies entirely "
                               "above the dataset audit's Bayes accuracy ceiling of 75%. Likely causes: a test "
                               "set too small to measure it, test images leaking into training, or an audit "
                               "whose ceiling is wrong for this renderer.")
    assert lines[1] == ("At chance level (1/8 = 12.5% lies inside the 95% interval): 1 of 4: "
                        "resnet18-scratch-all-n100-bs16-ep10 15.0% [9.3, 23.3].")
    assert lines[2].startswith("Below chance level (12.5%) beyond noise") and "bs32" in lines[2]
    assert fr.guards(points, ceiling=None, num_classes=None) == [seeds]
    several = points.assign(n_runs=3)  # with seeds measured, no such warning
    assert not any(line.startswith("One seed") for line in fr.guards(several, 0.75, 8))
    # a plain runs table works too (the sweep's closing summary): intervals from n_test
    runs = pd.DataFrame([{"run_name": "t1", "test_accuracy": 0.125, "n_test": 8}])
    assert fr.guards(runs, 0.9, 8) == ["At chance level (1/8 = 12.5% lies inside the 95% interval): 1 of 1: "
                                       "t1 12.5% [2.2, 47.1]."]


# --- pretraining cost ---------------------------------------------------------------------------------

def test_amortised_pretraining_moves_the_cost_axis_and_the_break_even_is_exact():
    runs = pd.DataFrame([run("scratch", 0.90, 40e9, bs=8), run("scratch", 0.80, 10e9),
                         run("pretrained", 0.91, 10e9, pretrain_macs=300e9)])
    plain = fr.analyse(runs, target=0.9)
    # break-even: 300e9 / (40e9 - 10e9) = 10 uses; cheaper from 11 on
    assert plain.target.break_even.uses == pytest.approx(10.0)
    assert plain.target.break_even.sentence.startswith("Break-even at 90%: N = 10 uses. Pretraining (3e+11 MACs)")
    assert "pretrained is cheaper from 11 uses of the weights on" in plain.target.break_even.sentence
    assert plain.cost == "train_macs" and plain.target.table.set_index("init").loc["pretrained", "cost"] == 10e9
    amortised = fr.analyse(runs, target=0.9, amortize_pretraining=5)
    assert amortised.cost == fr.AMORTIZED
    table = amortised.target.table.set_index("init")
    assert table.loc["pretrained", "cost"] == pytest.approx(10e9 + 300e9 / 5)  # 7e10: dearer than scratch
    assert table.loc["scratch", "cost"] == 40e9  # scratch has no pretraining to share
    assert table.loc["pretrained", "cost_ratio"] == pytest.approx(70 / 40)
    assert fr.analyse(runs, target=0.9, amortize_pretraining=30).target.table.set_index("init").loc[
        "pretrained", "cost_ratio"] == pytest.approx(20 / 40)


def test_break_even_is_never_when_pretrained_is_not_cheaper_and_unknown_without_pretrain_macs():
    dear = pd.DataFrame([run("scratch", 0.9, 10e9), run("pretrained", 0.9, 20e9, pretrain_macs=1e12)])
    assert fr.analyse(dear, target=0.9).target.break_even.uses == float("inf")
    assert "never" in fr.analyse(dear, target=0.9).target.break_even.sentence
    unknown = pd.DataFrame([run("scratch", 0.9, 10e9), run("pretrained", 0.9, 5e9)])
    answer = fr.analyse(unknown, target=0.9).target.break_even
    assert np.isnan(answer.uses) and "logged no pretrain_macs" in answer.sentence
    assert fr.analyse(unknown, amortize_pretraining=2).unknown_pretrain_macs == 1
    assert fr.break_even_uses(4.2e11, 1.5e10, 5e10) == pytest.approx(12.0)  # 4.2e11 / (5e10 - 1.5e10)
    assert fr.break_even_uses(4.2e11, 5e10, 1.5e10) == float("inf")
    assert fr.amortized_cost(1e10, 4e11, 8) == pytest.approx(6e10)


@pytest.mark.parametrize("uses, cost, message", [(0, "train_macs", "whole number of uses >= 1, got 0"),
                                                 (2.5, "train_macs", "got 2.5"), (True, "train_macs", "got True"),
                                                 (3, "wall_time_s", "needs --cost train_macs, got --cost wall_time_s")])
def test_bad_amortisation_is_a_usage_error(uses, cost, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        fr.check_amortize(uses, cost)
