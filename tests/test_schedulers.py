"""ASHA per group of comparable trials, the seed preset as the study ran it, and selection on
validation only: the scheduler and searchers a sweep builds, without training anything."""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, sweep_env, warm_runner

ASHA = dict(time_attr="epoch", metric="val_accuracy", mode="max", max_t=8, grace_period=1,
            reduction_factor=2)
STOP, CONTINUE = "STOP", "CONTINUE"


def _trial(trial_id: str, **config):
    return SimpleNamespace(trial_id=trial_id, config=config)


def _pdf_grid():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pdf_grid_study", REPO / "sweeps" / "pdf_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


def test_trials_in_different_groups_never_stop_each_other():
    from ray.tune.schedulers import ASHAScheduler

    from xfer.sweep.schedulers import GroupedASHA

    # one strong trial, then three weak ones, each in a group of its own
    trials = [_trial("big-pre", dataset_size=10000, init="pretrained"),
              _trial("small-pre", dataset_size=100, init="pretrained"),
              _trial("big-scr", dataset_size=10000, init="scratch"),
              _trial("small-scr", dataset_size=100, init="scratch")]
    accuracy = {"big-pre": 0.95, "small-pre": 0.4, "big-scr": 0.3, "small-scr": 0.2}
    grouped, pooled = GroupedASHA(("dataset_size", "init"), **ASHA), ASHAScheduler(**ASHA)
    for scheduler in (grouped, pooled):
        for trial in trials:
            scheduler.on_trial_add(None, trial)
    decisions = {"grouped": [], "pooled": []}
    for epoch in (1, 2, 4):
        for trial in trials:
            result = {"epoch": epoch, "val_accuracy": accuracy[trial.trial_id]}
            decisions["grouped"].append(grouped.on_trial_result(None, trial, result))
            decisions["pooled"].append(pooled.on_trial_result(None, trial, dict(result)))
    assert set(decisions["grouped"]) == {CONTINUE}
    assert STOP in decisions["pooled"]  # one pool would have stopped the weak groups
    assert "4 groups, num_stopped=0" in grouped.debug_string()


def test_within_a_group_it_decides_exactly_as_asha_on_that_group_alone():
    """Random results from three groups, interleaved: each decision equals that of an ASHA
    that sees only the trial's own group."""
    from ray.tune.schedulers import ASHAScheduler

    from xfer.sweep.schedulers import GroupedASHA

    rng = random.Random(0)
    groups = [(100, "scratch"), (100, "pretrained"), (1000, "scratch")]
    trials = [_trial(f"t{i}", dataset_size=n, init=init, batch_size=4 * (1 + i % 3))
              for i, (n, init) in enumerate(groups * 4)]
    grouped = GroupedASHA(("dataset_size", "init"), **ASHA)
    alone = {group: ASHAScheduler(**ASHA) for group in groups}
    for trial in trials:
        grouped.on_trial_add(None, trial)
        alone[(trial.config["dataset_size"], trial.config["init"])].on_trial_add(None, trial)
    epochs = {t.trial_id: 0 for t in trials}
    live = list(trials)
    stops = 0
    while live:
        trial = rng.choice(live)
        epochs[trial.trial_id] += 1
        result = {"epoch": epochs[trial.trial_id], "val_accuracy": rng.random()}
        decision = grouped.on_trial_result(None, trial, result)
        expected = alone[(trial.config["dataset_size"], trial.config["init"])].on_trial_result(
            None, trial, dict(result))
        assert decision == expected
        if decision == STOP:
            stops += 1
            grouped.on_trial_complete(None, trial, result)
            live.remove(trial)
    assert stops > len(trials) / 3  # ASHA did stop trials below their group's rungs
    assert sorted(epochs.values())[0] < ASHA["max_t"] == sorted(epochs.values())[-1]


def test_the_group_of_a_trial_is_read_through_its_arm():
    from xfer.sweep.schedulers import GroupedASHA
    from xfer.sweep.study import ARM, ARMS_TABLE

    arms = {"transfer": {"init": "pretrained", "epochs": 6}, "scratch": {"init": "scratch", "epochs": 50}}
    scheduler = GroupedASHA(("dataset_size", "init"), **ASHA)
    key = scheduler.group_key(_trial("a", **{ARM: "transfer", ARMS_TABLE: arms, "dataset_size": 500}))
    assert key == (("dataset_size", 500), ("init", "pretrained"))


def test_a_requeued_trial_and_a_removed_one_are_handed_to_their_group():
    from xfer.sweep.schedulers import GroupedASHA

    scheduler = GroupedASHA(("init",), **ASHA)
    first, second = _trial("a", init="scratch"), _trial("b", init="scratch")
    for trial in (first, second):
        scheduler.on_trial_add(None, trial)
    scheduler.on_trial_result(None, first, {"epoch": 1, "val_accuracy": 0.9})
    scheduler.on_trial_error(None, first)
    scheduler.on_trial_add(None, first)  # what Tune does to a trial it retries
    assert scheduler.on_trial_result(None, second, {"epoch": 1, "val_accuracy": 0.1}) == STOP
    scheduler.on_trial_remove(None, first)  # the wrong group's ASHA would raise KeyError
    scheduler.on_trial_complete(None, second, {"epoch": 1, "val_accuracy": 0.1})
    assert scheduler._group_of == {}


def test_metric_and_mode_given_to_tune_reach_every_group():
    from xfer.sweep.schedulers import GroupedASHA

    kwargs = {k: v for k, v in ASHA.items() if k not in ("metric", "mode")}
    scheduler = GroupedASHA(("init",), **kwargs)
    assert scheduler.set_search_properties("val_accuracy", "max")
    assert not scheduler.set_search_properties("test_accuracy", "max")  # set once, as ASHA
    for init in ("scratch", "pretrained"):
        scheduler.on_trial_add(None, _trial(init, init=init))
    assert scheduler.metric == "val_accuracy"
    assert {asha.metric for asha in scheduler._groups.values()} == {"val_accuracy"}


def test_the_seed_preset_runs_18_trials_for_its_54_configurations_under_fifo():
    study = _pdf_grid()
    declared = study.preset("seed")
    assert len(declared.trials()) == 54 and declared.scheduler == "fifo" and declared.epoch_milestones
    preset = declared.for_run("seed")
    trials = preset.trials()
    assert len(trials) == 18
    assert {t["epochs"] for t in trials} == {50}
    assert sum(1 + len(t["epoch_milestones"]) for t in trials) == 54
    assert preset.scheduler_plan("fifo").describe() == "FIFO: every trial runs to its budget"
    assert declared.for_run("seed", epoch_milestones=True) == preset  # the flag adds nothing more
    smoke = study.preset("smoke")  # presets without the default keep their axis unless asked
    assert smoke.for_run("smoke") is smoke and len(smoke.for_run("smoke", True).trials()) == 4


def test_asha_on_the_seed_preset_compares_within_size_and_init_at_rungs_10_20_40():
    from ray.tune.schedulers import ASHAScheduler

    from xfer.sweep.schedulers import GroupedASHA, build_scheduler

    plan = _pdf_grid().preset("seed").for_run("seed").scheduler_plan("asha")
    assert plan.describe() == "ASHA per (dataset_size, init), grace 10, reduction 2, rungs 10,20,40"
    scheduler = build_scheduler(plan)
    assert isinstance(scheduler, GroupedASHA) and scheduler.group_keys == ("dataset_size", "init")
    asha = ASHAScheduler(metric="val_accuracy", mode="max", **scheduler._asha_kwargs)
    rays_rungs = sorted(milestone for milestone, _ in asha._brackets[0]._rungs)
    assert [r for r in rays_rungs if r < plan.max_t] == plan.rungs()
    assert scheduler.metric == "val_accuracy"


def test_group_keys_are_only_those_the_sweep_varies():
    from xfer.sweep.study import Preset

    one_size = Preset(space={"init": ["scratch", "pretrained"], "epochs": [2, 4]},
                      fixed={"dataset_size": 100})
    assert one_size.scheduler_plan("asha").group_keys == ("init",)
    assert one_size.scheduler_plan("asha", seeds=3).group_keys == ("init", "seed")
    pooled = Preset(space={"lr": [0.1, 0.01], "epochs": [1, 4]}).scheduler_plan("asha")
    assert pooled.describe() == "ASHA over all trials in one pool, grace 1, reduction 2, rungs 1,2"
    single = Preset(space={"init": ["scratch", "pretrained"], "epochs": [3]}).scheduler_plan("asha")
    assert single.rungs() == [] and "no trial stops early" in single.describe()


# --- what the sweep hands Ray ----------------------------------------------------------------------

def _options(**changes):
    from xfer.sweep.options import SweepOptions

    values = dict(preset="smoke", num_samples=None, search="grid", scheduler="asha",
                  max_concurrent=None, gpus_per_trial=0.0, cpus_per_trial=1.0, storage="runs",
                  experiment="pdf_grid", resume=False, dry_run=False, cache_dir=Path("cache"),
                  max_failures=0, report=False)
    return SweepOptions(**{**values, **changes})


@pytest.mark.parametrize("search", ["grid", "tpe", "nsga2"])
def test_every_search_and_asha_select_on_validation_accuracy(search):
    from xfer.sweep.schedulers import GroupedASHA
    from xfer.sweep.tune_run import _search

    study = _pdf_grid()
    param_space, config = _search(study.preset("smoke"), _options(search=search), study, weights={})
    assert isinstance(config.scheduler, GroupedASHA) and config.scheduler.metric == "val_accuracy"
    if search != "grid":
        metric = config.search_alg._metric
        assert metric == (["val_accuracy", "train_macs"] if search == "nsga2" else "val_accuracy")


def test_fifo_is_ray_fifo():
    from ray.tune.schedulers import FIFOScheduler

    from xfer.sweep.tune_run import _search

    study = _pdf_grid()
    _, config = _search(study.preset("smoke"), _options(scheduler="fifo"), study, weights={})
    assert type(config.scheduler) is FIFOScheduler


# --- through Ray Tune itself -----------------------------------------------------------------------

RAY_SWEEP = textwrap.dedent("""
    import json, sys
    import ray
    from ray import tune
    from xfer.sweep.schedulers import GroupedASHA

    ARMS = {"a_best": {"dataset_size": 1000, "init": "pretrained", "acc": 0.9},
            "a_worse": {"dataset_size": 1000, "init": "pretrained", "acc": 0.1},
            "b_best": {"dataset_size": 100, "init": "scratch", "acc": 0.2},
            "b_worse": {"dataset_size": 100, "init": "scratch", "acc": 0.15}}

    def trainable(config):
        acc = config["arms"][config["arm"]]["acc"]
        for epoch in range(1, 5):
            tune.report({"epoch": epoch, "val_accuracy": acc})

    # as xfer's sweeps start Ray and Tune (xfer/sweep/tune_run.py): no idle workers prestarted,
    # one worker reused from trial to trial
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False})
    scheduler = GroupedASHA(("dataset_size", "init"), time_attr="epoch", metric="val_accuracy",
                            mode="max", max_t=4, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(trainable, param_space={"arm": tune.grid_search(list(ARMS)), "arms": ARMS},
                       tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1,
                                                   reuse_actors=True),
                       run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0))
    results = tuner.fit()
    print(json.dumps({r.config["arm"]: r.metrics["epoch"] for r in results}))
    ray.shutdown()
""")


@pytest.mark.slow
def test_a_real_tune_run_stops_only_within_groups(tmp_path):
    """In Ray Tune, trials run one at a time in grid order: each group's best comes first.
    b_best (0.2) trails a_best (0.9) but is in another group: it runs to its budget; one ASHA
    over all four would have stopped it at epoch 1 (0.2 < the median of 0.9 and 0.1)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="xg", dir="/tmp"))  # short: Ray's socket paths are capped
    try:
        env = {**sweep_env(tmp_path), "RAY_TMPDIR": str(ray_tmp), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
        script = tmp_path / "tune_groups.py"  # a script, so that it can be forked warm
        script.write_text(RAY_SWEEP)
        done = warm_runner().run([sys.executable, str(script), str(tmp_path / "runs")], env=env,
                                 cwd=tmp_path, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = json.loads(done.stdout.strip().splitlines()[-1])
    assert epochs == {"a_best": 4, "a_worse": 1, "b_best": 4, "b_worse": 1}
