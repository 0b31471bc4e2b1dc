"""The pure frontier logic on hand-made runs tables: non-domination, ties, NaNs, seeds, the
target query and the noise flags."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from xfer import frontier as fr
from xfer.errors import UsageError

_ids = itertools.count()


def run(init="scratch", acc=0.5, macs=1e9, *, seed=0, bs=4, size=100, epochs=10, epochs_run=None,
        layers="all", lr=0.01, **extra) -> dict:
    return {"run_id": f"r{next(_ids)}", "model": "resnet18", "init": init, "train_layers": layers,
            "dataset_size": size, "batch_size": bs, "epochs": epochs,
            "epochs_run": epochs if epochs_run is None else epochs_run, "lr": lr, "seed": seed,
            "test_accuracy": acc, "train_macs": macs, "wall_time_s": 1.0,
            "gpu_seconds": 0.0, "test_loss": 1 - acc, **extra}


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
    assert answer.sentences == ["pretrained reaches 75% at train_macs 5e+09 (resnet18-pretrained-all-n100-bs4-ep10)."]


def test_nan_inf_and_missing_values_are_dropped_and_counted_never_a_crash():
    runs = pd.DataFrame([run(acc=0.6, macs=1e9), run(acc=np.nan, macs=2e9), run(acc=0.7, macs=np.inf),
                         run(acc=0.8, macs=None), run(acc=0.9, macs=3e9)])
    kept, dropped = fr.clean_runs(runs)
    assert kept["test_accuracy"].tolist() == [0.6, 0.9]
    assert dropped == {"no finite test_accuracy": 1, "no finite train_macs": 2}
    assert fr.format_dropped(dropped) == "1 with no finite test_accuracy, 2 with no finite train_macs"


def test_a_duplicated_run_counts_once():
    one = run(acc=0.7)
    kept, _ = fr.clean_runs(pd.DataFrame([one, one, run(acc=0.6, seed=1)]))
    points = fr.aggregate_seeds(kept)
    assert len(kept) == 2 and points["n_runs"].tolist() == [2]


@pytest.mark.parametrize("runs", [[], [run(acc=np.nan)], [run(acc=np.nan), run(macs=np.nan)]],
                         ids=["no runs", "one NaN run", "all NaN"])
def test_nothing_left_after_filtering_is_a_usage_error(runs):
    table = pd.DataFrame(runs, columns=list(run().keys()))
    with pytest.raises(UsageError, match="no finished run has a finite test_accuracy and a positive train_macs"):
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


def test_seeds_of_one_configuration_become_one_point_with_their_spread():
    points = points_of(run(acc=0.80, seed=0), run(acc=0.84, seed=1), run(acc=0.90, seed=2),
                       run(acc=0.70, bs=8))
    three = points[points["n_runs"] == 3].iloc[0]
    assert three["test_accuracy"] == pytest.approx(np.mean([0.80, 0.84, 0.90]))
    assert three["test_accuracy_std"] == pytest.approx(np.std([0.80, 0.84, 0.90], ddof=1))
    assert (three["test_accuracy_min"], three["test_accuracy_max"]) == (0.80, 0.90)
    assert three["seeds"] == "0,1,2" and three["spread_source"] == "seeds"
    assert three["test_loss"] == pytest.approx(1 - three["test_accuracy"])  # metrics averaged too
    assert len(three["run_ids"]) == 3
    # the learning curves show the seed closest to the mean (0.847): seed 1
    assert three["representative_run_id"] == three["run_ids"][1]
    single = points[points["n_runs"] == 1].iloc[0]
    assert single["spread_source"] == "pooled"
    assert single["accuracy_spread"] == pytest.approx(three["test_accuracy_std"])
    assert single["label"] == "bs8" and three["label"] == "bs4"
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
    assert list(zip(overall["train_macs"], overall["test_accuracy"])) == [(1e9, 0.75), (2e9, 0.8), (8e9, 0.85)]
    scratch = front[front["scope"] == "scratch/all"]
    assert scratch["test_accuracy"].tolist() == [0.5, 0.7]  # 0.6 at 5e9 is dominated by 0.7 at 4e9
    for scope, group in front.groupby("scope"):
        members = points if scope == "all" else points[points["condition"] == scope]
        for _, p in group.iterrows():
            assert not ((members["train_macs"] <= p["train_macs"]) & (members["test_accuracy"] >= p["test_accuracy"])
                        & ((members["train_macs"] < p["train_macs"]) | (members["test_accuracy"] > p["test_accuracy"]))).any()


def test_other_cost_axes_change_the_frontier():
    runs = [run(acc=0.6, macs=1e9, wall_time_s=50.0), run(acc=0.7, macs=2e9, bs=8, wall_time_s=10.0)]
    by_macs = fr.frontiers(points_of(*runs), "train_macs")
    by_time = fr.frontiers(points_of(*runs, cost="wall_time_s"), "wall_time_s")
    assert len(by_macs[by_macs["scope"] == "all"]) == 2
    assert by_time[by_time["scope"] == "all"]["test_accuracy"].tolist() == [0.7]


def test_points_closer_than_their_seed_spread_are_flagged_and_far_ones_are_not():
    runs = [run(acc=0.80, macs=1e9, seed=0), run(acc=0.84, macs=1e9, seed=1),  # std 0.028
            run(acc=0.83, macs=2e9, bs=8),  # +0.01: noise
            run(acc=0.95, macs=4e9, bs=16)]  # +0.12: real
    front = fr.frontiers(points_of(*runs))
    overall = front[front["scope"] == "all"].set_index("label")
    assert overall.loc["bs8", "not_distinguishable_from"] == "resnet18-scratch-all-n100-bs4-ep10"
    assert overall.loc["bs4", "not_distinguishable_from"] == "resnet18-scratch-all-n100-bs8-ep10"
    assert overall.loc["bs16", "not_distinguishable_from"] == ""
    pairs = fr.noise_pairs(front)
    assert len(pairs) == 2  # the same pair on the `all` and the `scratch` frontier
    assert pairs.iloc[0]["accuracy_difference"] == pytest.approx(0.01)
    assert pairs.iloc[0]["noise"] == pytest.approx(np.hypot(np.std([0.8, 0.84], ddof=1), np.std([0.8, 0.84], ddof=1)))


def test_without_repeated_seeds_nothing_is_flagged():
    points = points_of(run(acc=0.80, macs=1e9), run(acc=0.8001, macs=2e9, bs=8))
    assert (points["spread_source"] == "none").all()
    assert (fr.frontiers(points)["not_distinguishable_from"] == "").all()
    assert fr.noise_pairs(fr.frontiers(points)).empty


def test_target_query_finds_the_cheapest_reaching_config_and_the_cost_ratio():
    points = points_of(run("scratch", 0.85, 10e9), run("scratch", 0.92, 40e9, bs=8),
                       run("scratch", 0.95, 80e9, bs=16),
                       run("pretrained", 0.91, 12.4e9), run("pretrained", 0.97, 30e9, bs=8))
    answer = fr.cheapest_reaching(points, 0.9)
    table = answer.table.set_index("init")
    assert answer.reference == "scratch"
    assert table.loc["scratch", "cost"] == 40e9 and table.loc["pretrained", "cost"] == 12.4e9
    assert table.loc["pretrained", "cost_ratio"] == pytest.approx(0.31)
    assert answer.sentences == ["pretrained reaches 90% at 0.31x the train_macs of scratch (1.24e+10 vs "
                                "4e+10: resnet18-pretrained-all-n100-bs4-ep10 vs resnet18-scratch-all-n100-bs8-ep10)."]


def test_target_query_says_when_an_init_never_reaches_it():
    points = points_of(run("scratch", 0.7, 1e9), run("pretrained", 0.91, 2e9))
    answer = fr.cheapest_reaching(points, 0.9)
    assert answer.table.set_index("init").loc["scratch", "reached"] == False  # noqa: E712
    assert np.isnan(answer.table["cost_ratio"]).all()
    assert "scratch never reaches 90% (its best is 70%" in " ".join(answer.sentences)
    nobody = fr.cheapest_reaching(points, 0.99)
    assert nobody.sentences == ["No init reaches 99% test accuracy (best: pretrained 91%, scratch 70%)."]


def test_target_is_reached_despite_the_last_float_bit():
    points = points_of(run(acc=0.7 + 0.2))  # 0.8999999999999999
    assert fr.cheapest_reaching(points, 0.9).table["reached"].tolist() == [True]


def test_best_per_group_breaks_accuracy_ties_by_cost_and_common_target_is_the_weakest_best():
    points = points_of(run("scratch", 0.8, 5e9), run("scratch", 0.8, 2e9, bs=8), run("pretrained", 0.9, 1e9))
    best = fr.best_per_group(points).set_index("init")
    assert best.loc["scratch", "train_macs"] == 2e9
    assert fr.common_target(points) == 0.8
    assert fr.common_target(points[points["init"] == "scratch"]) is None
